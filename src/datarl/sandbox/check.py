"""``datarl sandbox-check``: report the active isolation and run a few containment probes."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable

from datarl.sandbox.config import SandboxConfig
from datarl.sandbox.pool import SandboxUnavailable, namespaces_available, run, server_info

CheckRow = tuple[str, bool, str]

# (name, program, how to read the reply): each program prints what it managed to do
_PROBES: list[tuple[str, str, Callable[[dict, dict], tuple[bool, str]]]] = [
    (
        "host files hidden",
        "import os, json, sys\nhost = json.loads(sys.stdin.read())['file']\n"
        "print(sorted(os.listdir('/')))\n"
        "for p in (host, '/etc/passwd', '/etc/hostname', '/home', '/work', '/proc/1/environ', '/root/.bashrc'):\n"
        "    print(p, os.path.exists(p))",
        lambda r, c: (" True" not in r.get("stdout", "") and r.get("exit_code") == 0, r.get("stdout", "").strip()),
    ),
    (
        "root file system read-only",
        "import os\nfor p in ('/usr/datarl_probe', '/datarl_probe'):\n"
        "    try:\n        open(p, 'w').write('x'); print('WROTE', p)\n"
        "    except OSError as e:\n        print('denied', p, e.errno)",
        lambda r, c: (
            "WROTE" not in r.get("stdout", "") and "denied" in r.get("stdout", ""),
            r.get("stdout", "").strip(),
        ),
    ),
    (
        "no network (127.0.0.1 listener unreachable)",
        "import socket, sys\ns = socket.socket()\n"
        "s.settimeout(2)\ntry:\n"
        "    s.connect(('127.0.0.1', __import__('json').loads(sys.stdin.read())['port']))\n    print('CONNECTED')\n"
        "except OSError as e:\n    print('refused', e.errno)",
        lambda r, c: (
            "CONNECTED" not in r.get("stdout", "") and "refused" in r.get("stdout", ""),
            r.get("stdout", "").strip(),
        ),
    ),
    (
        "environment cleared",
        "import os\nprint(sorted(os.environ))",
        lambda r, c: (
            "DATARL_PROBE_SECRET" not in r.get("stdout", "") and r.get("exit_code") == 0,
            r.get("stdout", "").strip(),
        ),
    ),
    (
        "process limit",
        "import os, time\nn = 0\nfor i in range(200):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n"
        "    n += 1\nprint(n)",
        lambda r, c: (
            r.get("stdout", "").strip().isdigit() and int(r["stdout"]) <= c["max_processes"],
            f"forked {r.get('stdout', '').strip()} of 200 (limit {c['max_processes']})",
        ),
    ),
    (
        "address-space limit",
        "try:\n    b = bytearray(3 * 1024**3)\n    print('ALLOCATED')\nexcept MemoryError:\n    print('MemoryError')",
        lambda r, c: (r.get("stdout", "").strip() == "MemoryError", r.get("stdout", "").strip()),
    ),
    (
        "nested namespaces refused",
        "import ctypes\nprint(ctypes.CDLL(None).unshare(0x10000000))",
        lambda r, c: (
            r.get("stdout", "").strip() == "-1",
            f"unshare(CLONE_NEWUSER) returned {r.get('stdout', '').strip()}",
        ),
    ),
    (
        "wall-clock limit",
        "import time\ntime.sleep(60)",
        lambda r, c: (r.get("status") == "timeout", f"status {r.get('status')} after {r.get('wall_seconds')} s"),
    ),
    (
        "CPU limit",
        "while True:\n    pass",
        lambda r, c: (
            r.get("signal") == 24 or r.get("status") == "timeout",
            f"status {r.get('status')}, signal {r.get('signal')}",
        ),
    ),
    (
        "output cap",
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        lambda r, c: (r.get("status") == "output_limit", f"status {r.get('status')}"),
    ),
]


def sandbox_check(config: SandboxConfig | None = None) -> list[CheckRow]:
    """Rows of (check, ok, detail): the active isolation first, then containment probes."""
    config = config or SandboxConfig(wall_seconds=3.0, cpu_seconds=2.0, max_processes=8)
    rows: list[CheckRow] = [
        (
            "user namespaces available",
            namespaces_available(),
            "unshare(CLONE_NEWUSER|NEWNS|NEWPID|NEWNET|NEWIPC) from an unprivileged-able call",
        )
    ]
    try:
        info = server_info(config)
    except SandboxUnavailable as e:
        rows.append(("sandbox starts", False, str(e)))
        return rows
    isolated = bool(info.get("isolated"))
    uid_map = info.get("uid_map", [])
    rows.append(
        (
            "isolation",
            isolated,
            "user, pid, net, mount, ipc, uts namespaces; pivot_root to a read-only root"
            if isolated
            else "NONE: --unsafe-no-isolation (rlimits only)",
        )
    )
    host_uid = int(uid_map[1]) if len(uid_map) >= 2 else -1
    rows.append(
        (
            "runs as an unprivileged host uid",
            host_uid > 0,
            f"sandbox root = host uid {host_uid}; process limit: RLIMIT_NPROC in its own user namespace",
        )
    )
    rows.append(("fork server pid 1 of its pid namespace", info.get("pid") == 1, f"pid {info.get('pid')}"))
    rows.append(
        (
            "no nested user namespaces",
            info.get("nested_userns") is False,
            "max_user_namespaces=0 inside the sandbox"
            if info.get("nested_userns") is False
            else "could not disable: programs may create nested user namespaces",
        )
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    os.environ["DATARL_PROBE_SECRET"] = "s3cret"
    limits = config.limits()
    fd, host_file = tempfile.mkstemp(prefix="datarl-probe-")
    os.close(fd)
    stdin = json.dumps({"port": port, "file": host_file})
    try:
        for name, code, judge in _PROBES:
            reply = run({"runner": "run_exec", "payload": {"code": code}, "stdin": stdin}, config)
            ok, detail = judge(reply, limits)
            rows.append((name, bool(ok), detail[:300]))
    finally:
        listener.close()
        os.unlink(host_file)
        os.environ.pop("DATARL_PROBE_SECRET", None)
    return rows


def format_check(rows: list[CheckRow]) -> str:
    """Human-readable report; the last line says whether every check passed."""
    lines = [f"[{'ok' if ok else 'FAIL'}] {name}: {detail}" for name, ok, detail in rows]
    bad = sum(1 for _, ok, _ in rows if not ok)
    lines.append("all checks passed" if not bad else f"{bad} check(s) FAILED")
    return "\n".join(lines)
