"""Namespace, mount and capability primitives for the fork server (stdlib + ctypes only).

Sent into the sandbox as source, prepended to ``zygote.py``; see ``datarl.sandbox`` for what they buy.
"""

import ctypes
import os
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 28, 38, 47
SECUREBITS_LOCKED_ALL = 0x2F  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED and their locks
_SYSCALLS = {"x86_64": (155, 126), "aarch64": (41, 91)}  # (pivot_root, capset)
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
LIBC.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def check_rc(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def _b(s):
    return None if s is None else os.fsencode(s)


def mount(src, target, fstype, flags, data=None):
    check_rc(LIBC.mount(_b(src), _b(target), _b(fstype), flags, _b(data)), "mount " + target)


def prctl(option, arg=0):
    check_rc(LIBC.prctl(option, arg, 0, 0, 0), "prctl %d" % option)


def _bind_sources():
    """(path in sandbox, O_PATH fd, is_dir, mount flags to keep): opened while still host uid."""
    paths = [
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/lib32",
        os.path.realpath(sys.base_prefix),
        os.path.dirname(os.path.realpath(sys.executable)),
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
    ]
    keep = (
        (1024, MS_NOATIME),
        (2048, MS_NODIRATIME),
        (4096, MS_RELATIME),
        (2, MS_NOSUID),
        (4, MS_NODEV),
        (8, MS_NOEXEC),
    )
    out, links, seen = [], [], set()
    for path in paths:
        if path in seen or not os.path.lexists(path):
            continue
        seen.add(path)
        if os.path.islink(path) and path.count("/") == 1:
            links.append((path, os.readlink(path)))
            continue
        if any(path.startswith(p + "/") for p in seen if os.path.isdir(p) and not os.path.islink(p)):
            continue
        flags = 0
        f_flag = os.statvfs(path).f_flag
        for st, ms in keep:
            if f_flag & st:
                flags |= ms
        out.append((path, os.open(path, os.O_PATH), os.path.isdir(path), flags))
    return out, links


def build_root(map_root):
    binds, links = _bind_sources()
    if map_root:
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    os.umask(0o022)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = "/tmp"
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for path, target in links:
        os.symlink(target, root + path)
    for path, fd, is_dir, flags in binds:
        dst = root + path
        if is_dir:
            os.makedirs(dst, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))
        mount("/proc/self/fd/%d" % fd, dst, None, MS_BIND | MS_REC)
        if not path.startswith("/dev/"):
            mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | flags)
        os.close(fd)
    for d in ("tmp", "proc", "old"):
        os.makedirs(root + "/" + d, exist_ok=True)
    os.symlink("/tmp", root + "/dev/shm")


def pivot_root(root):
    # /proc must be mounted by a process of the new pid namespace while the host /proc is still visible
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    pivot, _ = _SYSCALLS[os.uname().machine]
    os.chdir(root)
    check_rc(LIBC.syscall(pivot, b".", b"old"), "pivot_root")
    os.chdir("/")
    check_rc(LIBC.umount2(b"/old", 2), "umount old root")
    os.rmdir("/old")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_capabilities():
    """No capabilities now or after any exec: bounding and ambient sets cleared, securebits locked."""
    prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_ALL)
    for cap in range(64):
        if LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    LIBC.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0)
    _, capset = _SYSCALLS[os.uname().machine]
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    check_rc(LIBC.syscall(capset, header, data), "capset")
