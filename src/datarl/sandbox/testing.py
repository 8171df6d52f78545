"""Helpers for testing the sandbox safely: an outer pids-cgroup guard and process/temp-dir accounting.

Fork-bomb tests run only inside :class:`PidsGuard`: a cgroup-v1 ``pids`` group (``pids.max`` small) that
the test subprocess joins before it execs, so even a sandbox bug cannot exhaust the machine's pid space.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

PIDS_ROOT = Path("/sys/fs/cgroup/pids")


def pids_guard_available() -> bool:
    """True when a cgroup-v1 pids hierarchy is mounted and we may create groups in it."""
    return (PIDS_ROOT / "cgroup.procs").exists() and os.access(PIDS_ROOT, os.W_OK)


class PidsGuard:
    """A pids cgroup with ``pids.max``; run subprocesses inside it; ``close()`` kills what is left in it."""

    def __init__(self, pids_max: int = 64) -> None:
        if not pids_guard_available():
            raise RuntimeError("no writable cgroup-v1 pids hierarchy at /sys/fs/cgroup/pids")
        self.path = PIDS_ROOT / f"datarl-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(pids_max))

    def _join(self) -> None:  # runs in the child between fork and exec
        with open(self.path / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def run(self, args: Sequence[str], timeout: float, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), preexec_fn=self._join, timeout=timeout, capture_output=True, text=True, **kw)

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def close(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:  # only processes inside our own guard group
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        self.path.rmdir()

    def __enter__(self) -> PidsGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def descendant_pids(root: int | None = None) -> set[int]:
    """Pids of every live (non-zombie) descendant of ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parent[int(entry)] = int(fields[1])
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def temp_entries(prefix: str = "datarl") -> set[str]:
    """Names in the host temp dir starting with ``prefix`` (the sandbox must never leave any)."""
    import tempfile

    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(prefix)}
