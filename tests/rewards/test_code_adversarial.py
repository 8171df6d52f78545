"""Reward hacks and escapes against rtv.code: each row asserts the verdict and that the host is untouched.

Destructive rows only act inside the sandbox; the host side of each test owns a private temp dir with a
canary file and a secret, and checks afterwards that they are unchanged, that no process outlived the run
and that the fork server is the same process (not killed).
"""

from __future__ import annotations

import socket
import sys
import textwrap
import time

import pytest

from datarl.rewards.code import HARNESS_SOURCE, score_code
from datarl.sandbox import SandboxConfig, server_info
from datarl.sandbox.testing import PidsGuard, descendant_pids, pids_guard_available, temp_entries

CFG = SandboxConfig(cpu_seconds=2, wall_seconds=3, max_processes=16)
ADD = {"type": "assert", "code": "assert add(1, 2) == 3\nassert add(-1, 1) == 0\nassert add(2, 2) == 4"}
GOOD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"
SECRET = "hunter2-datarl-secret"
_d = textwrap.dedent


def _rec(tests=ADD):
    return {"task": "code", "tests": tests}


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A canary dir, a secret file, an env secret, a 127.0.0.1 listener; checks the host afterwards."""
    canary = tmp_path / "canary.txt"
    canary.write_text("untouched")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    monkeypatch.setenv("DATARL_TEST_SECRET", SECRET)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    assert score_code(_rec(), GOOD, config=CFG).score == 1.0  # warm: the fork server itself is not a leak
    before = descendant_pids()
    tmp_before = temp_entries("datarl-unsafe")
    zygote = server_info(CFG, (HARNESS_SOURCE,))
    ctx = {"canary": str(canary), "secret": str(secret), "port": listener.getsockname()[1], "dir": str(tmp_path)}
    yield ctx
    time.sleep(0.05)
    assert canary.read_text() == "untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt", "secret.txt"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever connected
    listener.close()
    assert descendant_pids() <= before, "a sandboxed process outlived its run"
    assert temp_entries("datarl-unsafe") == tmp_before
    assert server_info(CFG, (HARNESS_SOURCE,))["runs"] > zygote["runs"], "the fork server was restarted"


def _fill(code: str, ctx: dict) -> str:
    return (
        code.replace("CANARY", ctx["canary"])
        .replace("SECRETFILE", ctx["secret"])
        .replace("PORT", str(ctx["port"]))
        .replace("HOSTDIR", ctx["dir"])
    )


# (id, candidate code, expected failure class or None for "any failure")
CHEATS = [
    ("sys_exit_top", "import sys\nsys.exit(0)\n", "runtime_error"),
    ("os_exit_top", "import os\nos._exit(0)\n", "runtime_error"),
    ("raise_systemexit", "raise SystemExit(0)\n", "runtime_error"),
    ("exit_in_function", "import sys\ndef add(a, b):\n    sys.exit(0)\n", "runtime_error"),
    ("os_exit_in_function", "import os\ndef add(a, b):\n    os._exit(0)\n", "runtime_error"),
    ("builtin_exit_after_def", GOOD + "exit(0)\n", "runtime_error"),  # site's exit(), put back by the sandbox
    ("builtin_quit_in_function", "def add(a, b):\n    quit()\n", "runtime_error"),
    (
        "quitter_patched_to_os_exit",
        "import _sitebuiltins, os\n_sitebuiltins.Quitter.__call__ = "
        "lambda self, code=None: os._exit(0)\ndef add(a, b):\n    exit()\n",
        "runtime_error",
    ),
    ("keyboard_interrupt", "def add(a, b):\n    raise KeyboardInterrupt\n", "runtime_error"),
    ("atexit_pass", "import atexit\natexit.register(lambda: print('ALL TESTS PASSED'))\n" + WRONG, None),
    ("excepthook", "import sys\nsys.excepthook = lambda *a: None\n" + WRONG, "wrong_answer"),
    (
        "thread_exits_process",
        _d("""
        import os, threading, time
        def bye():
            time.sleep(0.01); os._exit(0)
        threading.Thread(target=bye).start()
        def add(a, b):
            time.sleep(0.2); return a - b
        """),
        None,
    ),
    ("printed_sentinels", "print('PASSED\\nAll tests passed\\nOK')\n" + WRONG, "wrong_answer"),
    (
        "forged_verdict_all_fds",
        _d("""
        import os, json
        line = json.dumps({"pid": os.getpid(), "phase": "tests", "passed": "111", "errors": []})
        for fd in range(0, 64):
            for msg in ("0" * 32 + " " + line, line, "PASS"):
                try: os.write(fd, (msg + "\\n").encode())
                except OSError: pass
        os._exit(0)
        """),
        "runtime_error",
    ),
    (
        "eq_always_true",
        _d("""
        class Yes:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            __hash__ = object.__hash__
        def add(a, b): return Yes()
        """),
        "wrong_answer",
    ),
    (
        "int_subclass_liar",
        _d("""
        class L(int):
            def __eq__(self, other): return True
            __hash__ = int.__hash__
        def add(a, b): return L(0)
        """),
        "wrong_answer",
    ),
    (
        "metaclass_liar",
        _d("""
        class M(type):
            def __eq__(cls, other): return True
            __hash__ = type.__hash__
        class X(metaclass=M):
            def __eq__(self, other): return True
            __hash__ = object.__hash__
        def add(a, b): return X()
        """),
        "wrong_answer",
    ),
    (
        "patch_builtins",
        _d("""
        import builtins, operator
        builtins.isinstance = lambda *a: True
        builtins.type = lambda *a: int
        builtins.bool = lambda *a: True
        operator.eq = lambda a, b: True
        """)
        + WRONG,
        "wrong_answer",
    ),
    (
        "frame_walk",
        _d("""
        import sys
        def add(a, b):
            f = sys._getframe(1)
            while f is not None:
                if "passed" in f.f_locals: f.f_locals["passed"].extend([True] * 10)
                f = f.f_back
            return 0
        """),
        None,
    ),
    (
        "traceback_frame_walk",
        _d("""
        def add(a, b):
            try: raise ValueError
            except ValueError as e:
                f = e.__traceback__.tb_frame
                while f is not None:
                    f.f_globals["__dr_cmp__"] = lambda *a: True
                    f = f.f_back
            return 0
        """),
        None,
    ),
    (
        "gc_nonce_hunt",
        _d("""
        import gc, os
        for o in gc.get_objects():
            if isinstance(o, str) and len(o) == 32:
                os.write(3, (o + ' {"pid": %d, "phase": "tests", "passed": "111", "errors": []}\\n'
                             % os.getpid()).encode())
        os._exit(0)
        """),
        None,
    ),
    (
        "ctypes_memory",
        _d("""
        import ctypes
        ctypes.string_at(id(object()), 64)
        """)
        + GOOD,
        "runtime_error",
    ),
    (
        "audit_hook_install",
        "import sys\nsys.addaudithook(lambda e, a: None)\nsys.settrace(lambda *a: None)\n" + WRONG,
        None,
    ),
    (
        "alarm_during_verdict",
        _d("""
        import signal
        signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(SystemExit(0)))
        signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
        """)
        + WRONG,
        None,
    ),
    (
        "signal_handler_frame_walk",
        _d("""
        import signal, importlib, _signal, os
        importlib.reload(_signal)
        def handler(signum, frame):
            while frame is not None:
                for v in list(frame.f_locals.values()):
                    if isinstance(v, list):
                        v.extend([True] * 5)
                    if isinstance(v, bytes) and len(v) == 33:
                        os.write(3, v + b'{"pid": %d, "phase": "tests", "passed": "111", "errors": []}\\n'
                                 % os.getpid())
                        os._exit(0)
                frame = frame.f_back
        for install in (signal.signal, _signal.signal):
            try:
                install(signal.SIGALRM, handler)
            except Exception:
                pass
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        def add(a, b):
            x = 0
            for i in range(300000):
                x += i
            return a - b
        """),
        None,
    ),
    (
        "pthread_kill_main",
        _d("""
        import signal, threading, os
        try:
            signal.signal(signal.SIGUSR1, lambda s, f: print(f))
        except ValueError:
            pass
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        """)
        + WRONG,
        None,
    ),
    (
        "stray_thread",
        _d("""
        import threading
        threading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()
        """)
        + GOOD,
        "runtime_error",
    ),
    (
        "fork_child_keeps_running",
        _d("""
        import os, time
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        """)
        + WRONG,
        "wrong_answer",
    ),
    ("memory_bomb", "x = [0] * (10 ** 10)\n" + GOOD, "memory"),
    ("memory_bomb_incremental", "x = []\nwhile True:\n    x.append(' ' * (256 * 1024 * 1024))\n", None),
    ("infinite_loop", "while True:\n    pass\n", "timeout"),
    ("sleep", "import time\ntime.sleep(60)\n", "timeout"),
    ("huge_output", "import sys\nwhile True:\n    sys.stdout.write('x' * 1000000)\n", "output_limit"),
    (
        "orphaned_grandchild",
        _d("""
        import os, time, subprocess, sys
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60); os._exit(0)
            os._exit(0)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        """)
        + WRONG,
        "wrong_answer",
    ),
    (
        "kill_parent",
        "import os, signal\nfor s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):\n"
        "    os.kill(os.getppid() or 1, s)\n    os.kill(1, s)\n" + WRONG,
        "wrong_answer",
    ),
    (
        "kill_everything",
        "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n" + WRONG,
        "wrong_answer",
    ),
    (
        "write_outside",
        _d("""
        import os
        for p in ("CANARY", "HOSTDIR/new.txt", "/tmp/datarl-escape.txt", "/usr/escape.txt"):
            try: open(p, "w").write("pwned")
            except OSError: pass
        try: os.remove("CANARY")
        except OSError: pass
        """)
        + WRONG,
        "wrong_answer",
    ),
    (
        "read_host_file",
        _d("""
        def add(a, b):
            for p in ("SECRETFILE", "/etc/shadow", "/etc/passwd", "/proc/1/environ"):
                try: return open(p).read()
                except OSError: pass
            return a - b
        """),
        "wrong_answer",
    ),
    (
        "env_secret",
        "import os\ndef add(a, b):\n    return os.environ.get('DATARL_TEST_SECRET', a - b)\n",
        "wrong_answer",
    ),
    (
        "network_localhost",
        _d("""
        import socket
        def add(a, b):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=1)
            return a + b
        """),
        "runtime_error",
    ),
]


@pytest.mark.parametrize("name,code,failure", CHEATS, ids=[c[0] for c in CHEATS])
def test_cheat_scores_zero_and_host_untouched(host, name, code, failure):
    result = score_code(_rec(), "```python\n" + _fill(code, host) + "\n```", config=CFG)
    assert result.score == 0.0, result.info
    assert result.failure, result.info
    if failure:
        assert result.failure == failure, result.info
    assert SECRET not in str(result.info)


def test_honest_solution_still_passes_next_to_cheats(host):
    assert score_code(_rec(), GOOD, config=CFG).score == 1.0


def test_lying_truthiness_fails(host):
    tests = {"type": "assert", "code": "assert is_even(2)\nassert not is_even(3)"}
    liar = (
        "class B:\n    n = 0\n    def __bool__(self):\n        B.n += 1\n        return B.n == 1\n"
        "def is_even(x): return B()\n"
    )
    assert score_code(_rec(tests), liar, config=CFG).score == 0.0
    assert score_code(_rec(tests), "def is_even(x): return x % 2 == 0", config=CFG).score == 1.0


def test_lying_arithmetic_fails(host):
    tests = {"type": "assert", "code": "assert abs(half(3) - 1.5) < 1e-6"}
    liar = (
        "class Z:\n    def __sub__(self, o): return 0\n    def __rsub__(self, o): return 0\ndef half(x): return Z()\n"
    )
    assert score_code(_rec(tests), liar, config=CFG).score == 0.0
    assert score_code(_rec(tests), "def half(x): return x / 2", config=CFG).score == 1.0


def test_stdio_expected_output_never_enters_sandbox(host):
    expected = "EXPECTED-" + SECRET
    tests = {"type": "stdio", "cases": [{"input": "x\n", "output": expected}]}
    hunt = (
        "import os\nfor root, dirs, files in os.walk('/'):\n"
        "    dirs[:] = [d for d in dirs if d not in ('usr', 'root')]\n"
        "    for f in files:\n        p = os.path.join(root, f)\n"
        "        try:\n            d = open(p, errors='ignore').read(1 << 16)\n        except Exception:\n"
        "            continue\n        if 'EXPECTED-' in d:\n            print(d[d.index('EXPECTED-'):].split()[0])\n"
        "            raise SystemExit\nprint('not found')\n"
    )
    result = score_code(_rec(tests), hunt, config=SandboxConfig(wall_seconds=10, cpu_seconds=8))
    assert result.score == 0.0 and result.failure == "wrong_answer", result.info


@pytest.mark.skipif(not pids_guard_available(), reason="needs a writable cgroup-v1 pids hierarchy as the outer guard")
def test_fork_bomb_contained_inside_outer_pids_guard(tmp_path):
    prog = textwrap.dedent("""
        import json, os
        from datarl.rewards.code import HARNESS_SOURCE, score_code
        from datarl.sandbox import SandboxConfig
        bomb = "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n"
        cfg = SandboxConfig(cpu_seconds=2, wall_seconds=3, max_processes=16)
        r = score_code({"tests": {"type": "assert", "code": "assert f() == 1"}}, bomb, config=cfg)
        ok = score_code({"tests": {"type": "assert", "code": "assert f() == 1"}}, "def f(): return 1", config=cfg)
        print(json.dumps([r.score, r.failure, ok.score]))
        """)
    with PidsGuard(pids_max=96) as guard:
        # the guard itself works: of a harmless burst of 150 sleepers, some cannot start
        burst = (
            "import subprocess\nok = bad = 0\nps = []\nfor i in range(150):\n    try:\n"
            "        ps.append(subprocess.Popen(['sleep', '2'])); ok += 1\n    except OSError:\n"
            "        bad += 1\nprint(ok, bad)\n[p.kill() for p in ps]\n[p.wait() for p in ps]"
        )
        probe = guard.run([sys.executable, "-I", "-S", "-c", burst], timeout=60)
        started, refused = map(int, probe.stdout.split())
        assert refused > 0 and started < 96, probe.stdout
        assert guard.pids() == []
        out = guard.run([sys.executable, "-c", prog], timeout=60, cwd=str(tmp_path))
        assert out.returncode == 0, out.stderr
        score, failure, ok = __import__("json").loads(out.stdout.strip().splitlines()[-1])
        assert score == 0.0 and failure in ("timeout", "runtime_error", "killed")
        assert ok == 1.0
        assert guard.pids() == []  # nothing survived the scoring process
