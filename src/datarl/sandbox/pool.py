"""Caller side of the sandbox: one warm fork server per calling process, started lazily and reused.

A scoring worker calls :func:`run`; the first call starts the fork server (``zygote.py``) for that process
and configuration, later calls reuse it, and it is recycled every ``runs_per_worker`` runs or after any
protocol failure. A fork server dies with its caller: the boot process has PR_SET_PDEATHSIG=SIGKILL (when
started from the main thread), the fork server has PR_SET_PDEATHSIG on the boot process, it also exits on
EOF of its command pipe, and as pid 1 of its pid namespace its exit kills every process in it. Its /tmp is
a tmpfs inside its own mount namespace, so nothing is ever left on the host disk.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from datarl.errors import UserError
from datarl.sandbox.config import SandboxConfig

log = logging.getLogger("datarl.sandbox")
_ZYGOTE_SRC = (
    Path(__file__).with_name("namespaces.py").read_text() + "\n" + Path(__file__).with_name("zygote.py").read_text()
)
_PR_SET_PDEATHSIG = 1
_RETRY_UNAVAILABLE_S = 60.0
_UNSAFE_BANNER = (
    "!!! datarl sandbox: NO ISOLATION (--unsafe-no-isolation): model-written code runs on this "
    "host with rlimits only; it can read your files, see your processes and use the network !!!"
)


def _warn_unsafe() -> None:
    """Loud on purpose: on stderr directly (logging may be unconfigured) and in the log."""
    sys.stderr.write(_UNSAFE_BANNER + "\n")
    sys.stderr.flush()
    log.warning(_UNSAFE_BANNER)


class SandboxUnavailable(UserError, RuntimeError):
    """Namespaces cannot be created here and unsafe mode was not allowed."""


def _base_python() -> str:
    exe = os.path.realpath(sys.executable)
    return exe if os.access(exe, os.X_OK) else sys.executable


def _pdeathsig() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Server:
    """One fork server process and its command pipes."""

    def __init__(self, config: SandboxConfig, preload: tuple[str, ...]) -> None:
        self.config = config
        self.preload = preload
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.info: dict[str, Any] = {}
        self.unavailable: tuple[float, str] | None = None  # (when, why): do not respawn for every record

    # -- framing with deadlines (the server is trusted, but may die or hang)
    def _send(self, obj: Any) -> None:
        assert self.proc and self.proc.stdin
        data = json.dumps(obj).encode()
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc and self.proc.stdout
        fd, buf = self.proc.stdout.fileno(), b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("sandbox server did not answer in time")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError("sandbox server exited")
            buf += chunk
        return buf

    def _recv(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        (size,) = struct.unpack(">I", self._read(4, deadline))
        return json.loads(self._read(size, deadline))

    def start(self) -> None:
        if self.unavailable and time.monotonic() - self.unavailable[0] < _RETRY_UNAVAILABLE_S:
            raise SandboxUnavailable(self.unavailable[1])
        try:
            self._start()
            self.unavailable = None
        except SandboxUnavailable as e:
            self.unavailable = (time.monotonic(), str(e))
            raise

    def _start(self) -> None:
        cfg = self.config
        isolate = True
        if cfg.allow_unsafe and not namespaces_available():
            isolate = False
            _warn_unsafe()
        in_main = threading.current_thread() is threading.main_thread()
        debug = os.environ.get("DATARL_SANDBOX_DEBUG")
        self.proc = subprocess.Popen(
            [cfg.python or _base_python(), "-I", "-S", "-B", "-c", _ZYGOTE_SRC],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if debug else subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            close_fds=True,
            start_new_session=True,
            preexec_fn=_pdeathsig if in_main else None,
            bufsize=0,
        )
        try:
            self._send({"isolate": isolate, "preload": list(self.preload)})
            if isolate:
                msg = self._recv(15)
                if "error" in msg:
                    raise SandboxUnavailable(f"cannot create sandbox namespaces: {msg['error']}")
                self._write_maps(self.proc.pid)
                self._send({"go": True, "map_root": os.geteuid() == 0})
            msg = self._recv(15)
            if "error" in msg or not msg.get("ready"):
                raise SandboxUnavailable(f"sandbox failed to start: {msg.get('error', msg)}")
            self.info = msg
        except BaseException:
            self.kill()
            raise
        self.runs = 0

    def _write_maps(self, pid: int) -> None:
        """ns root -> an unprivileged host uid: root is exempt from RLIMIT_NPROC and owns host files."""
        if os.geteuid() == 0:
            uid = gid = self.config.sandbox_uid
        else:
            uid, gid = os.geteuid(), os.getegid()
            Path(f"/proc/{pid}/setgroups").write_text("deny")
        Path(f"/proc/{pid}/uid_map").write_text(f"0 {uid} 1\n")
        Path(f"/proc/{pid}/gid_map").write_text(f"0 {gid} 1\n")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        if not self.alive() or self.runs >= self.config.runs_per_worker:
            self.close()
            self.start()
        self.runs += 1
        try:
            self._send(job)
            return self._recv(self.config.wall_seconds + 15)
        except (OSError, EOFError, TimeoutError, ValueError) as e:
            self.kill()
            return {"status": "sandbox_error", "error": f"{type(e).__name__}: {e}"}

    def close(self, timeout: float = 2.0) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # the boot process: its death SIGKILLs the fork server, whose death empties the namespace
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        self.proc = None


_lock = threading.Lock()
_servers: dict[tuple[Any, ...], _Server] = {}
_owner = os.getpid()


def _forget_inherited() -> None:
    """In a forked child: drop the parent's servers (closing our copies of their pipes, so the parent's
    servers still see EOF when the parent dies) and start fresh ones on demand."""
    global _owner
    for server in _servers.values():
        if server.proc is not None:
            for f in (server.proc.stdin, server.proc.stdout):
                try:
                    if f:
                        f.close()
                except OSError:
                    pass
            server.proc = None
    _servers.clear()
    _owner = os.getpid()


os.register_at_fork(after_in_child=_forget_inherited)


def run(job: dict[str, Any], config: SandboxConfig, preload: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run one job on this process's warm fork server for ``config``.

    job: ``{"runner": name, "payload": {...}, "stdin": str | None}``; limits are taken from ``config``.
    Returns the server's reply: status (``exited``, ``timeout``, ``output_limit``, ``sandbox_error``),
    exit_code or signal, stdout, stderr (tail), wall_seconds and the runner's verdict (or None).
    Raises SandboxUnavailable when isolation cannot be set up and ``config.allow_unsafe`` is False.
    """
    key = config.server_key() + (preload,)
    with _lock:
        if os.getpid() != _owner:
            _forget_inherited()
        server = _servers.get(key)
        if server is None:
            server = _servers[key] = _Server(config, preload)
        server.config = config
        full = dict(job, limits=config.limits(), sandbox_uid=config.sandbox_uid)
        return server.run(full)


def server_info(config: SandboxConfig, preload: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the fork server for ``config`` reported at start (starting it if needed)."""
    key = config.server_key() + (preload,)
    with _lock:
        server = _servers.get(key)
        if server is None:
            server = _servers[key] = _Server(config, preload)
        if not server.alive():
            server.start()
        assert server.proc is not None
        return dict(server.info, runs=server.runs, boot_pid=server.proc.pid)


def shutdown() -> None:
    """Stop every fork server of this process (also registered with atexit)."""
    with _lock:
        for server in _servers.values():
            server.close()
        _servers.clear()


atexit.register(shutdown)

_ns_ok: bool | None = None


def namespaces_available() -> bool:
    """Can this process create user+mount+pid+net namespaces? (probed once with util-linux-free unshare(2))."""
    global _ns_ok
    if _ns_ok is None:
        probe = (
            "import ctypes,os,sys;l=ctypes.CDLL(None,use_errno=True);"
            "sys.exit(0 if l.unshare(0x10000000|0x20000|0x40000000|0x8000000|0x20000000)==0 else 1)"
        )
        try:
            _ns_ok = (
                subprocess.run(
                    [_base_python(), "-I", "-S", "-c", probe],
                    timeout=20,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ).returncode
                == 0
            )
        except (OSError, subprocess.TimeoutExpired):
            _ns_ok = False
    return _ns_ok
