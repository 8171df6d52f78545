"""Limits and switches for the code sandbox (one frozen dataclass, every field validated)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class SandboxConfig:
    """Resource limits for one sandboxed program run, and how the sandbox is set up.

    cpu_seconds: RLIMIT_CPU of the run (soft; the kernel sends SIGKILL one second later).
    wall_seconds: wall-clock limit of the run, enforced by the fork server (so ``sleep`` cannot stall a worker).
    address_space_bytes: RLIMIT_AS of the run (default 2 GiB); allocations beyond it raise MemoryError.
    max_processes: processes/threads the run may have alive at once, on top of the harness itself
        (RLIMIT_NPROC counted for the sandbox's own unprivileged uid in its own user namespace).
    file_size_bytes: RLIMIT_FSIZE: the largest file the run may write.
    open_files: RLIMIT_NOFILE of the run.
    output_bytes: cap on stdout + stderr captured from one run; exceeding it kills the run (``output_limit``).
    tmp_bytes: size of the private tmpfs mounted at /tmp (the run's working directory).
    sandbox_uid: host uid the sandbox runs as when the caller is root (root is exempt from RLIMIT_NPROC,
        so the candidate must not run as host root). A non-root caller's own uid is used.
    runs_per_worker: the fork server is recycled (a fresh one started) after this many runs.
    allow_unsafe: when namespaces are unavailable, run with rlimits only instead of refusing
        (the CLI's ``--unsafe-no-isolation``). Never the default.
    python: interpreter for the fork server; empty means the base interpreter of this venv
        (the sandbox runs it with ``-I -S``: no site-packages, no user site, no PYTHON* env vars).
    """

    cpu_seconds: float = 5.0
    wall_seconds: float = 10.0
    address_space_bytes: int = 2 * GIB
    max_processes: int = 16
    file_size_bytes: int = 16 * MIB
    open_files: int = 64
    output_bytes: int = 1 * MIB
    tmp_bytes: int = 64 * MIB
    sandbox_uid: int = 65534
    runs_per_worker: int = 1000
    allow_unsafe: bool = False
    python: str = ""

    def __post_init__(self) -> None:
        positive = (
            "cpu_seconds",
            "wall_seconds",
            "address_space_bytes",
            "max_processes",
            "file_size_bytes",
            "open_files",
            "output_bytes",
            "tmp_bytes",
            "runs_per_worker",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"SandboxConfig.{name} must be a positive number, got {value!r}")
        if self.open_files < 16:
            raise ValueError("SandboxConfig.open_files must be >= 16 (the interpreter needs a few)")
        if self.address_space_bytes < 256 * MIB:
            raise ValueError("SandboxConfig.address_space_bytes must be >= 256 MiB (the interpreter needs it)")
        if not (0 < self.sandbox_uid < 2**31):
            raise ValueError("SandboxConfig.sandbox_uid must be a non-root uid")

    def limits(self) -> dict[str, Any]:
        """The per-run limits as the fork server receives them."""
        d = asdict(self)
        for k in ("sandbox_uid", "runs_per_worker", "allow_unsafe", "python"):
            d.pop(k)
        return d

    def server_key(self) -> tuple[Any, ...]:
        """Fields that require a different fork server when they change."""
        return (self.sandbox_uid, self.allow_unsafe, self.python)
