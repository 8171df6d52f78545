"""Isolation for model-written code: one warm fork server per calling process, every run in namespaces.

What it covers (Linux, no root needed, no setuid helper; util-linux is not even required: it calls
unshare(2) itself, the same kernel mechanism ``unshare``/bubblewrap use):
- user namespace: the sandbox's root is mapped to one unprivileged host uid (``SandboxConfig.sandbox_uid``,
  65534, when the caller is root; the caller's own uid otherwise), so it owns no host file and the kernel
  applies RLIMIT_NPROC to it (root is exempt from RLIMIT_NPROC: **process counts are bounded by
  RLIMIT_NPROC under that unprivileged uid, counted per user namespace**, not by a pids cgroup);
- pid namespace: the fork server is pid 1; after every run it kill(-1)s and reaps everything left, so no
  orphans or zombies survive a run, and when it dies (caller gone) the kernel kills the whole namespace;
- network namespace with no interface up (not even loopback): no connections anywhere, 127.0.0.1 included;
- mount namespace: pivot_root into a read-only tmpfs root holding only read-only binds of /usr, /bin,
  /lib*, the interpreter's prefix, /etc/ld.so.cache, /etc/localtime and the /dev/null, zero, full,
  random, urandom nodes; no host /home, /root, /tmp, /etc or /work is visible; each run gets its own
  mount namespace with a fresh size-capped tmpfs at /tmp (its working directory) and an empty /proc;
- ipc and uts namespaces (per run for ipc: no SysV objects survive a run);
- no nested user namespaces (max_user_namespaces=0 inside), so no way back to capabilities;
- per run: all capabilities dropped (bounding, ambient, securebits locked), no_new_privs, non-dumpable;
  rlimits for CPU seconds, address space (default 2 GiB), processes, file size, open files, core=0;
  a wall-clock limit enforced by the fork server (CPU limit plus wall limit: ``sleep`` cannot stall it);
  stdout+stderr capped (``output_limit``); a cleared environment (PATH, LANG, HOME=/tmp only);
  ``python -I -S``: no site-packages, no PYTHON* variables; of what site adds to the builtins only
  ``exit``/``quit`` are put back (site's own Quitter: contest programs end with ``exit()``), not ``help``,
  ``copyright``, ``credits`` or ``license``;
- nothing is written to the host disk, so a SIGKILLed caller leaves no temp dirs; its fork server dies
  with it (PR_SET_PDEATHSIG chain plus EOF on the command pipe).

What it does not cover:
- the kernel itself (a kernel exploit escapes any namespace sandbox); no seccomp filter is installed, so
  every syscall is reachable, including the non-namespaced ones (kernel keyrings of the sandbox uid);
- CPU and memory bandwidth: a run can slow its neighbours down until its CPU or wall limit hits;
- RLIMIT_AS bounds address space per process, not the sum over a run's processes (bounded by
  max_processes x address_space_bytes); tmpfs pages count toward ``tmp_bytes`` only;
- without user namespaces (``allow_unsafe=True``, the CLI's ``--unsafe-no-isolation``) only rlimits, a
  private working directory, the uid drop (when root) and process-group kill apply: the program can read
  the host's files and use the network. Refused unless explicitly allowed, and logged loudly.
- bubblewrap is not used even when installed: the warm fork server needs CAP_SYS_ADMIN inside its own
  user namespace to give each run a fresh mount namespace and /tmp (bubblewrap drops it), and, when the
  caller is root, an ns-root mapped to an unprivileged uid, which bubblewrap cannot map. Where unprivileged
  user namespaces are restricted (Ubuntu 23.10+ AppArmor ``apparmor_restrict_unprivileged_userns``) the
  sandbox reports itself unavailable; ``datarl sandbox-check`` says so.
- the verdict of assert-style tests is computed in-process by the harness (``datarl.rewards.code_harness``
  lists its defences); CPython audit hooks are not a security boundary.

``datarl sandbox-check`` (:func:`sandbox_check` / :func:`format_check`) prints the active isolation and
runs containment probes.
"""

from datarl.sandbox.check import format_check, sandbox_check
from datarl.sandbox.config import SandboxConfig
from datarl.sandbox.pool import SandboxUnavailable, namespaces_available, server_info, shutdown
from datarl.sandbox.pool import run as run_job

__all__ = [
    "SandboxConfig",
    "SandboxUnavailable",
    "run_job",
    "server_info",
    "shutdown",
    "namespaces_available",
    "sandbox_check",
    "format_check",
]
