"""The fork server that lives inside the sandbox. Stdlib only: its source is sent to ``python -I -S -c``.

Stages (see ``datarl.sandbox`` for what each buys):
  BOOT   the process the caller starts. Loads the runners (imports happen here, while the host file system
         is still visible), unshare(2)s user/mount/net/ipc/uts/pid namespaces, waits for the caller to
         write its uid/gid map (ns root -> an unprivileged host uid), builds a read-only root on a tmpfs,
         pivot_root(2)s into it, becomes the mapped uid, forks the ZYGOTE and waits for it.
  ZYGOTE pid 1 of the new pid namespace. Mounts /proc, makes itself non-dumpable, then serves jobs read
         from the caller pipe, one at a time: fork a CHILD, watch it, kill everything else in the
         namespace, reap, reply. EOF on the caller pipe means "shut down" (pid 1 exiting kills the namespace).
  CHILD  per run: own mount + ipc namespace with a fresh tmpfs /tmp, rlimits, all capabilities dropped,
         no_new_privs, then the runner named by the job.
"""

import fcntl
import json
import os
import resource
import select
import signal
import struct
import sys
import time

try:  # as a module (linters, tests); inside the sandbox namespaces.py is prepended to this source
    from datarl.sandbox.namespaces import *  # noqa: F401,F403
except ImportError:
    pass

RES_FD = 3  # the runner's verdict channel inside the child
TASK_FD = 4  # the child's /proc/self/task, opened before /proc is hidden (runners count threads with it)
NONCE_FD = 5  # the run's nonce, written by the fork server after the fork (so no inherited frame holds it)


def send(fd, obj):
    data = json.dumps(obj).encode()
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


# ---------------------------------------------------------------- BOOT
def boot():
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    cfg = recv(ctl_in)
    _install_quitters()
    runners = {"run_exec": run_exec}
    for src in cfg["preload"]:
        # a private copy of the builtins: a candidate that patches the builtins module cannot reach the runner
        ns = {
            "__name__": "datarl_runner",
            "__builtins__": dict(vars(__builtins__) if not isinstance(__builtins__, dict) else __builtins__),
        }
        exec(compile(src, "<runner>", "exec"), ns)
        runners.update(ns.get("RUNNERS", {}))
    os.environ.clear()
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"})
    if cfg["isolate"]:
        try:
            check_rc(
                LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID),
                "unshare",
            )
        except OSError as e:
            send(ctl_out, {"error": str(e)})
            return 1
        send(ctl_out, {"unshared": os.getpid()})
        go = recv(ctl_in)
        if not go or not go.get("go"):
            return 1
        try:
            build_root(go.get("map_root", False))
        except OSError as e:
            send(ctl_out, {"error": "building the sandbox root failed: %s" % e})
            return 1
    pid = os.fork()
    if pid == 0:
        try:
            zygote(ctl_in, ctl_out, cfg, runners)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(0)
    os.close(ctl_in)
    os.close(ctl_out)
    while True:
        try:
            os.waitpid(pid, 0)
            return 0
        except ChildProcessError:
            return 0


def _install_quitters():
    """``-S`` skips site, and with it the builtins exit() and quit() that contest programs end with. site's own
    Quitter (repr, sys.stdin closed, then SystemExit(code)) goes into the builtins module here, once: every run
    is a fork, so stdio programs and the assert harness's candidates get it, and a run that patches it changes
    only its own copy. To the harness it is just another SystemExit, caught per test."""
    import _sitebuiltins
    import builtins

    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")  # site's text on POSIX
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


# ---------------------------------------------------------------- ZYGOTE: serve jobs
def zygote(ctl_in, ctl_out, cfg, runners):
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    isolated = bool(cfg["isolate"])
    nested_userns = None
    if isolated:
        pivot_root("/tmp")
        try:  # per user namespace limit: programs in the sandbox cannot create user namespaces of their own
            with open("/proc/sys/user/max_user_namespaces", "w") as f:
                f.write("0")
            nested_userns = False
        except OSError:
            nested_userns = True
    prctl(PR_SET_DUMPABLE, 0)
    with open("/proc/self/uid_map") as f:
        uid_map = f.read().split()
    send(
        ctl_out,
        {
            "ready": True,
            "pid": os.getpid(),
            "isolated": isolated,
            "uid_map": uid_map,
            "euid": os.geteuid(),
            "nested_userns": nested_userns,
        },
    )
    while True:
        job = recv(ctl_in)
        if job is None:
            _kill_all(None, isolated)
            return
        try:
            reply = run_job(job, ctl_in, runners, isolated)
        except Exception as e:  # a bug here must not hang the caller
            _kill_all(None, isolated)
            reply = {"status": "sandbox_error", "error": repr(e)}
        send(ctl_out, reply)
        if reply.get("status") == "caller_gone":
            return


def _kill_all(pid, isolated):
    """Kill every process of the run. As pid 1 of our namespace kill(-1) reaches exactly those."""
    if isolated and os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
    elif pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def run_job(job, ctl_in, runners, isolated):
    limits = job["limits"]
    runner = runners[job["runner"]]
    workdir = None if isolated else _make_workdir()
    (out_r, out_w), (err_r, err_w), (res_r, res_w), (n_r, n_w) = os.pipe(), os.pipe(), os.pipe(), os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(out_r), os.close(err_r), os.close(res_r), os.close(n_w)
            _child_setup(job, limits, out_w, err_w, res_w, n_r, isolated, workdir)
            runner(job["payload"], RES_FD, NONCE_FD, isolated)
        finally:
            os._exit(120)
    for fd in (out_w, err_w, res_w, n_r):
        os.close(fd)
    nonce = os.urandom(16).hex()
    try:
        os.write(n_w, nonce.encode() + b"\n")
    except OSError:  # the child is already gone
        pass
    os.close(n_w)
    try:
        reply = _watch(pid, out_r, err_r, res_r, ctl_in, limits, start)
    finally:
        _kill_all(pid, isolated)
        for fd in (out_r, err_r, res_r):
            os.close(fd)
        if workdir:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    reply["verdict"] = _find_verdict(reply.pop("res"), nonce, pid)
    return reply


def _watch(pid, out_r, err_r, res_r, ctl_in, limits, start):
    pidfd = os.pidfd_open(pid)
    bufs = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
    live = set(bufs)
    deadline = start + limits["wall_seconds"]
    cap, status, wstatus, total = limits["output_bytes"], None, None, 0
    try:
        while status is None:
            left = deadline - time.monotonic()
            if left <= 0:
                status = "timeout"
                break
            ready, _, _ = select.select([pidfd, ctl_in] + sorted(live), [], [], left)
            for fd in ready:
                if fd == pidfd:
                    wstatus = os.waitpid(pid, 0)[1]
                    status = "exited"
                elif fd == ctl_in:
                    status = "caller_gone"
                else:
                    total += _read_some(fd, bufs, live, res_r)
                    if total > cap:
                        status = "output_limit"
        if status == "exited":  # what the child wrote before exiting is already in the pipes
            for fd in sorted(live):
                os.set_blocking(fd, False)
                try:
                    while fd in live and total <= cap:
                        total += _read_some(fd, bufs, live, res_r)
                except BlockingIOError:
                    pass
            if total > cap:
                status = "output_limit"
    finally:
        os.close(pidfd)
    reply = {"status": status, "wall_seconds": round(time.monotonic() - start, 4), "res": bytes(bufs[res_r])}
    reply["stdout"] = bytes(bufs[out_r][:cap]).decode("utf-8", "replace")
    reply["stderr"] = bytes(bufs[err_r][-8192:]).decode("utf-8", "replace")
    reply["output_bytes"] = total
    if wstatus is not None:
        if os.WIFSIGNALED(wstatus):
            reply["signal"] = os.WTERMSIG(wstatus)
        else:
            reply["exit_code"] = os.WEXITSTATUS(wstatus)
    return reply


def _read_some(fd, bufs, live, res_r):
    """Read one chunk into its buffer; returns bytes counted against the output cap."""
    data = os.read(fd, 65536)
    if not data:
        live.discard(fd)
        return 0
    if fd == res_r:
        if len(bufs[fd]) < 4 * 1024 * 1024:
            bufs[fd] += data
        return 0
    if len(bufs[fd]) < 16 * 1024 * 1024:
        bufs[fd] += data
    return len(data)


def _find_verdict(res, nonce, pid):
    """The last line carrying this run's nonce and the child's own pid; anything else is ignored."""
    prefix = (nonce + " ").encode()
    for line in reversed(res.split(b"\n")):
        if line.startswith(prefix):
            try:
                verdict = json.loads(line[len(prefix) :])
            except ValueError:
                return None
            return verdict if isinstance(verdict, dict) and verdict.get("pid") == pid else None
    return None


def _make_workdir():
    import tempfile

    return tempfile.mkdtemp(prefix="datarl-unsafe-")


# ---------------------------------------------------------------- CHILD: limits, then the runner
def _child_setup(job, limits, out_w, err_w, res_w, nonce_r, isolated, workdir):
    os.setsid()
    stdin = job.get("stdin")
    if stdin is None:
        in_fd = os.open("/dev/null", os.O_RDONLY)
    else:
        in_fd = os.memfd_create("stdin", 0)
        data = stdin.encode()
        while data:
            data = data[os.write(in_fd, data) :]
        os.lseek(in_fd, 0, 0)
    task_fd = os.open("/proc/self/task", os.O_RDONLY | os.O_DIRECTORY)
    # move every source above the targets first, so no dup2 below can clobber another source
    sources = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (in_fd, out_w, err_w, res_w, task_fd, nonce_r)]
    for target, fd in enumerate(sources):  # 0 stdin, 1 stdout, 2 stderr, RES_FD, TASK_FD, NONCE_FD
        os.dup2(fd, target)
    os.closerange(NONCE_FD + 1, 65536)
    if isolated:
        check_rc(LIBC.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare run")
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,nr_inodes=4096,mode=0777" % limits["tmp_bytes"])
        # no /proc for the candidate: nothing to learn about other processes, no /proc/self/mem
        mount("tmpfs", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    os.chdir("/tmp" if isolated else workdir)
    nproc = limits["max_processes"] + (3 if isolated else 0)
    if not isolated:  # outside a user namespace RLIMIT_NPROC counts every process of the uid
        if os.geteuid() == 0:  # best effort: a root namespace without that uid mapped cannot drop
            uid = job.get("sandbox_uid", 65534)
            try:
                os.chown(workdir, uid, uid)
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            except OSError:
                pass
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    cpu = max(1, int(limits["cpu_seconds"] + 0.999))
    for res, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (limits["address_space_bytes"],) * 2),
        (resource.RLIMIT_FSIZE, (limits["file_size_bytes"],) * 2),
        (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, value)
    if isolated:
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)


def run_exec(payload, res_fd, nonce_fd, isolated):
    """Generic runner: execute a program as ``__main__`` (stdio tasks, probes); the exit status is the result.

    It ends the way ``python main.py`` does (Py_RunMain, then Py_FinalizeEx): the module code, or its
    SystemExit / uncaught exception read into a status first (an ``exit("message")`` text or the traceback is
    written then); then :func:`_finalize` waits for the non-daemon threads and runs the atexit handlers; then
    sys.stdout/stderr (and the original streams) are flushed and the process leaves with ``os._exit``. Daemon
    threads are not waited for; a thread that never ends is cut by the fork server's wall-clock (or CPU) limit,
    a ``timeout``."""
    code = 0
    os.close(nonce_fd)
    import atexit

    atexit._clear()  # handlers inherited from the fork server are not the program's (none today)
    try:
        sys.argv = ["main.py"]
        exec(compile(payload["code"], "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as e:
        code = _exit_status(e.code)
    except BaseException as e:
        import traceback

        tb = e.__traceback__
        # from the program's own frame on, as CPython prints it (a SyntaxError from compile has no frame of its own)
        traceback.print_exception(type(e), e, tb.tb_next if tb is not None else None)
        code = 1
    _finalize(atexit)
    # flush_std_files, then what CPython's teardown flushes when it frees the original streams: a program that
    # swaps sys.stdout for a buffer and writes it to sys.__stdout__ from an atexit handler prints its answer
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code & 0xFF)


def _finalize(atexit):
    """Py_FinalizeEx's first steps, in its order, for the program in this process:

    1. wait_for_thread_shutdown: ``threading._shutdown()``, only when the program imported threading (looked
       up in sys.modules, as CPython does); it runs threading's own atexit hooks (concurrent.futures) and joins
       every non-daemon thread. An exception a thread raised was already printed by threading.excepthook and
       leaves the exit status alone; an error from _shutdown itself is reported and ignored.
    2. the atexit handlers, last registered first (``atexit._run_exitfuncs`` is the function CPython calls: a
       handler's exception, SystemExit included, is printed as "Exception ignored in atexit callback").
    Neither step changes the exit status, as in CPython. Stdio runs only: the assert harness never gets here
    (it leaves with os._exit and fails a run whose threads are still alive)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            _report_ignored("Exception ignored on threading shutdown")
    try:
        atexit._run_exitfuncs()
    except BaseException:
        _report_ignored("Exception ignored in atexit")


def _report_ignored(what):
    try:
        import traceback

        sys.stderr.write(what + ":\n")
        traceback.print_exc()
    except BaseException:
        pass


def _exit_status(code):
    """CPython's reading of SystemExit.code: None is 0; an int is its C long (255 past that range), of which
    the OS keeps the low byte; anything else (``exit("message")``) is written to stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        code = int.__index__(code)  # the value C reads: an int subclass's operators play no part
        return code & 0xFF if -(2**63) <= code < 2**63 else 255
    try:
        text = str(code) + "\n"
        if sys.stderr is None:  # CPython then writes to the C stderr, never to stdout
            os.write(2, text.encode("utf-8", "backslashreplace"))
        else:
            sys.stderr.write(text)
    except BaseException:
        pass
    return 1


if __name__ == "__main__":
    sys.exit(boot())
