"""rtv.code and threads in stdio programs: the stdio runner ends a program the way CPython does at interpreter
exit (Py_FinalizeEx): it waits for non-daemon threads (threading._shutdown), runs the atexit handlers, then
flushes and leaves. The contest idiom ``threading.stack_size(...)`` + ``threading.Thread(target=main).start()``
(a big stack for deep recursion) must pass; daemon threads are not waited for, as in CPython; a thread that never
ends is a timeout within the wall limit. The assert harness is unchanged: a thread still alive after its tests
fails the run (test_code_adversarial.py, ``stray_thread``)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap

import pytest

from datarl.rewards.code import score_code
from datarl.sandbox import SandboxConfig, run_job

CFG = SandboxConfig(cpu_seconds=2, wall_seconds=3)
_d = textwrap.dedent

# first line n, then n integers: print their sum
SUM = {
    "type": "stdio",
    "cases": [
        {"input": "3\n1 2 3\n", "output": "6\n"},
        {"input": "1\n-5\n", "output": "-5\n"},
        {"input": "0\n\n", "output": "0\n"},
    ],
}
HEAD = "import sys, threading, time\nsys.setrecursionlimit(1 << 25)\nthreading.stack_size(1 << 27)\n"
READ = "    n = int(input())\n    a = list(map(int, input().split()))\n"


def _main(body: str, start: str = "threading.Thread(target=main).start()\n", pre: str = "    time.sleep(0.2)\n"):
    """HEAD, then ``def main()`` (a sleep, the input, ``body``), then ``start``."""
    return HEAD + "def main():\n" + pre + READ + body + start


# (tests, code, expected score, expected failure, why)
ROWS = [
    pytest.param(
        SUM,
        _main("    print(sum(a))\n"),
        1.0,
        None,
        "the contest idiom: stack_size + Thread(target=main); the module ends before main prints and "
        "CPython waits for the non-daemon thread",
        id="thread_main_stack_size_sleep",
    ),
    pytest.param(
        SUM,
        _main(
            "    def depth(i):\n        return 0 if i == 100000 else 1 + depth(i + 1)\n"
            "    print(sum(a) + depth(0) - 100000)\n"
        ),
        1.0,
        None,
        "100000-deep recursion in the big-stack thread (what the idiom is for)",
        id="thread_main_recursion",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a) + 1)\n"),
        0.0,
        "wrong_answer",
        "the thread is waited for and its wrong answer is judged",
        id="thread_main_wrong_answer",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n", "threading.Thread(target=main, daemon=True).start()\n"),
        0.0,
        "wrong_answer",
        "a daemon thread is not waited for (CPython neither): its late answer is lost",
        id="daemon_thread_prints_late",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n    while True:\n        pass\n"),
        0.0,
        "timeout",
        "a non-daemon thread that spins forever after printing: cut by the CPU/wall limit",
        id="thread_never_ends_busy",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n    threading.Event().wait()\n"),
        0.0,
        "timeout",
        "a non-daemon thread blocked forever after printing: cut by the wall limit",
        id="thread_never_ends_blocked",
    ),
    pytest.param(
        SUM,
        HEAD
        + READ.replace("    ", "")
        + _d("""
        def answer():
            time.sleep(0.2)
            print(sum(a))
        threading.Thread(target=answer).start()
        exit()
        """),
        1.0,
        None,
        "exit() in the main thread after reading the input: CPython still waits for the thread, "
        "which prints the answer",
        id="main_exit_while_thread_prints",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n", "threading.Thread(target=main).start()\nsys.exit()\n"),
        1.0,
        None,
        "sys.exit() while the thread has not read its input yet: waited for, stdin still open",
        id="main_sys_exit_while_thread_reads",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n", "threading.Thread(target=main).start()\nexit()\n"),
        0.0,
        "wrong_answer",
        "exit() closes sys.stdin (site's Quitter): the waited-for thread's input() raises "
        "ValueError, printed by threading.excepthook; status 0, no answer (CPython alike)",
        id="main_exit_closes_stdin_under_thread",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n", "threading.Thread(target=main).start()\nsys.exit(3)\n"),
        0.0,
        "runtime_error",
        "sys.exit(3) in the main thread keeps its status 3 after the thread prints",
        id="main_exit3_while_thread_prints",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n", "threading.Thread(target=main).start()\nraise ValueError\n"),
        0.0,
        "runtime_error",
        "an uncaught exception in the main thread: status 1 after the wait",
        id="main_raises_while_thread_prints",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n    raise ValueError('late')\n"),
        1.0,
        None,
        "an exception in the thread after the answer: threading.excepthook prints it to stderr and the "
        "status stays 0 (CPython)",
        id="thread_raises_after_print",
    ),
    pytest.param(
        SUM,
        _main("    raise ValueError('early')\n    print(sum(a))\n"),
        0.0,
        "wrong_answer",
        "an exception in the thread before the answer: status 0, no output",
        id="thread_raises_before_print",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n    sys.exit(1)\n"),
        1.0,
        None,
        "sys.exit(1) in a thread only ends that thread (CPython): status 0",
        id="thread_sys_exit1",
    ),
    pytest.param(
        SUM,
        _main("    print(sum(a))\n", "t = threading.Thread(target=main)\nt.start()\nt.join()\n", ""),
        1.0,
        None,
        "the explicit join: unchanged",
        id="thread_joined",
    ),
    pytest.param(
        SUM,
        _main("    threading.Thread(target=lambda: (time.sleep(0.1), print(sum(a)))).start()\n"),
        1.0,
        None,
        "a thread started by the waited-for thread is waited for too",
        id="nested_threads",
    ),
    pytest.param(
        SUM,
        _main(
            "    print(sum(a))\n", "import concurrent.futures\nconcurrent.futures.ThreadPoolExecutor(1).submit(main)\n"
        ),
        1.0,
        None,
        "an executor that is never shut down: threading's atexit hook joins its worker",
        id="executor_not_shut_down",
    ),
    pytest.param(
        SUM,
        _d("""
        import atexit, io, sys
        buf = io.StringIO()
        sys.stdout = buf
        @atexit.register
        def write():
            sys.__stdout__.write(buf.getvalue())
        n = int(input())
        print(sum(map(int, input().split())))
        """),
        1.0,
        None,
        "the buffered-output idiom: the answer is written to sys.__stdout__ by an atexit handler",
        id="atexit_writes_buffered_output",
    ),
    pytest.param(
        SUM,
        "import atexit\natexit.register(print, 'extra')\n" + READ.replace("    ", "") + "print(sum(a))\n",
        0.0,
        "wrong_answer",
        "atexit handlers run after the module, as in CPython: their output counts",
        id="atexit_prints_extra_line",
    ),
    pytest.param(
        SUM,
        "import atexit, sys\natexit.register(sys.exit, 0)\n" + READ.replace("    ", "") + "print(sum(a))\nexit(1)\n",
        0.0,
        "runtime_error",
        "a SystemExit in an atexit handler is printed and ignored: the status stays 1",
        id="atexit_cannot_change_status",
    ),
]


@pytest.mark.parametrize("tests,code,score,failure,why", ROWS)
def test_threads_at_exit(tests, code, score, failure, why):
    r = score_code({"task": "code", "tests": tests}, "```python\n" + code + "```", config=CFG)
    assert (r.score, r.failure) == (score, failure), (why, r.info)
    if score:
        assert r.info["passed"] == r.info["total"] == len(tests["cases"])


@pytest.mark.parametrize(
    "code",
    [
        _main("    print(sum(a))\n    while True:\n        pass\n"),
        _main(
            "    print(sum(a), flush=True)\n    threading.Event().wait()\n",
            "threading.Thread(target=main).start()\nsys.exit()\n",
        ),
    ],
    ids=["busy", "blocked_after_sys_exit"],
)
def test_thread_that_never_ends_is_cut_by_the_limits(code):
    """Busy: RLIMIT_CPU's SIGXCPU (a ``timeout``); blocked: the fork server's wall clock. Either way within the
    wall limit, and never an ``exited`` with status 0 (which would let its printed answer pass)."""
    got = run_job({"runner": "run_exec", "payload": {"code": code}, "stdin": "1\n5\n"}, CFG)
    assert got["status"] == "timeout" or got.get("signal") == signal.SIGXCPU, got
    assert got["wall_seconds"] < CFG.wall_seconds + 1.0, got


_ADDR = re.compile(r" at 0x[0-9a-f]+")


@pytest.mark.parametrize(
    "code",
    [
        _main("    print(sum(a))\n"),
        _main("    print(sum(a))\n", "threading.Thread(target=main, daemon=True).start()\n"),
        _main("    print(sum(a))\n", "threading.Thread(target=main).start()\nexit()\n"),
        _main("    print(sum(a))\n", "threading.Thread(target=main).start()\nexit(4)\n"),
        _main("    print(sum(a))\n", "threading.Thread(target=main).start()\nexit('bye')\n"),
        _main("    print(sum(a))\n", "threading.Thread(target=main).start()\nraise ValueError('main')\n"),
        _main("    print(sum(a))\n    raise ValueError('late')\n"),
        _main("    print(sum(a))\n    sys.exit(2)\n"),
        _main(
            "    print(sum(a))\n", "import concurrent.futures\nconcurrent.futures.ThreadPoolExecutor(1).submit(main)\n"
        ),
        "import atexit, io, sys\nbuf = io.StringIO()\nsys.stdout = buf\n"
        "atexit.register(lambda: sys.__stdout__.write(buf.getvalue()))\nprint(6)\n",
        # a handler that raises from Python: a C function raising here (atexit.register(sys.exit, 3)) would show the
        # runner's frame in the sandbox's "Exception ignored" traceback, where CPython's shows none (same status)
        "import atexit, sys\natexit.register(print, 'first registered, runs last')\natexit.register(print, 'second')\n"
        "atexit.register(lambda: sys.exit(3))\natexit.register(lambda: 1 / 0)\nprint('body')\nexit(5)\n",
        "import atexit, threading, time\natexit.register(print, 'atexit')\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\nprint('module')\n",
        # the runner prints an uncaught exception from the program's own frame on, as CPython does
        "def f():\n    raise KeyError(1)\nf()\n",
        "x = (\n",
    ],
    ids=[
        "thread_main",
        "daemon",
        "exit",
        "exit4",
        "exit_message",
        "main_raises",
        "thread_raises",
        "thread_sys_exit",
        "executor",
        "atexit_buffer",
        "atexit_order_and_errors",
        "threads_before_atexit",
        "traceback_frames",
        "syntax_error",
    ],
)
def test_exit_status_and_output_match_cpython(code):
    """Threads and atexit at exit against this CPython with site (``python -I -c``); tracebacks name the file
    ``<string>`` there and ``main.py`` in the sandbox, and object addresses differ."""
    stdin = "3\n1 2 3\n"
    want = subprocess.run([sys.executable, "-I", "-c", code], input=stdin, capture_output=True, text=True, timeout=30)
    got = run_job({"runner": "run_exec", "payload": {"code": code}, "stdin": stdin}, CFG)
    want_err = _ADDR.sub(" at 0x?", want.stderr.replace('File "<string>"', 'File "main.py"'))
    assert (got["exit_code"], got["stdout"], _ADDR.sub(" at 0x?", got["stderr"])) == (
        want.returncode,
        want.stdout,
        want_err,
    )
