"""The sandbox engine: config validation, containment probes, lifecycle (caller death, fork, recycling),
refusal without namespaces, and a 2,000-program load test (slow)."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from datarl.rewards.code import score_code
from datarl.sandbox import SandboxConfig, format_check, run_job, sandbox_check, server_info
from datarl.sandbox.testing import descendant_pids, temp_entries

ECHO = {"runner": "run_exec", "payload": {"code": "print(input())"}, "stdin": "hi\n"}


@pytest.mark.parametrize(
    "field,value",
    [
        ("cpu_seconds", 0),
        ("wall_seconds", -1),
        ("address_space_bytes", 1024),
        ("max_processes", 0),
        ("open_files", 3),
        ("output_bytes", True),
        ("sandbox_uid", 0),
        ("runs_per_worker", 0),
    ],
)
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        SandboxConfig(**{field: value})


def test_config_defaults_documented():
    cfg = SandboxConfig()
    assert cfg.address_space_bytes == 2 * 1024**3 and not cfg.allow_unsafe
    for name in cfg.limits():
        assert name in SandboxConfig.__doc__


def test_sandbox_check_all_ok():
    rows = sandbox_check(SandboxConfig(wall_seconds=1.0, cpu_seconds=1.0, max_processes=8))
    report = format_check(rows)
    assert all(ok for _, ok, _ in rows), report
    assert report.endswith("all checks passed")
    assert {"no network (127.0.0.1 listener unreachable)", "host files hidden", "process limit"} <= {
        name for name, _, _ in rows
    }


def test_runs_are_private_to_each_other():
    cfg = SandboxConfig()
    write = {
        "runner": "run_exec",
        "payload": {"code": "open('/tmp/left', 'w').write('x')\nimport os\nprint(os.getcwd(), os.listdir('.'))"},
    }
    first = run_job(write, cfg)
    assert first["stdout"].strip() == "/tmp ['left']"
    second = run_job({"runner": "run_exec", "payload": {"code": "import os\nprint(os.listdir('/tmp'))"}}, cfg)
    assert second["stdout"].strip() == "[]"


def test_recycles_fork_server():
    cfg = SandboxConfig(runs_per_worker=3)
    boots = set()
    for _ in range(7):
        assert run_job(ECHO, cfg)["stdout"] == "hi\n"
        boots.add(server_info(cfg)["boot_pid"])
    assert len(boots) == 3


def _fork_child(queue):
    r = run_job(ECHO, SandboxConfig())
    queue.put((r["stdout"], server_info(SandboxConfig())["boot_pid"]))


def test_forked_caller_gets_its_own_server():
    cfg = SandboxConfig()
    assert run_job(ECHO, cfg)["stdout"] == "hi\n"
    mine = server_info(cfg)["boot_pid"]
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_fork_child, args=(q,))
    p.start()
    out, theirs = q.get(timeout=30)
    p.join(30)
    assert out == "hi\n" and theirs != mine
    assert run_job(ECHO, cfg)["stdout"] == "hi\n" and server_info(cfg)["boot_pid"] == mine


_CALLER = textwrap.dedent("""
    import json, os, sys, threading, time
    from datarl.sandbox import SandboxConfig, run_job
    from datarl.sandbox.testing import descendant_pids
    cfg = SandboxConfig(wall_seconds=60, cpu_seconds=60)
    job = {"runner": "run_exec", "payload": {"code": "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n"
           "    time.sleep(600)\\ntime.sleep(600)"}}
    def go():
        run_job(job, cfg)
    t = threading.Thread(target=go, daemon=True)
    if sys.argv[1] == "main":
        run_job({"runner": "run_exec", "payload": {"code": "pass"}}, cfg)  # server started by the main thread
    t.start()
    deadline = time.monotonic() + 20
    while len(descendant_pids()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    print(json.dumps(sorted(descendant_pids())), flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("started_by", ["main", "thread"])
def test_sigkilled_caller_leaves_no_processes(started_by):
    proc = subprocess.Popen([sys.executable, "-c", _CALLER, started_by], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert len(pids) >= 4  # boot, fork server, the run, its setsid'd child
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [
            p
            for p in pids
            if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        ]
    assert not alive, f"left behind: {alive}"


def _no_userns(code: str) -> subprocess.CompletedProcess:
    """Run python code where creating user namespaces is forbidden (max_user_namespaces=0)."""
    script = f'echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} -c "$0"'
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c", script, code], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare to simulate")
def test_refuses_without_namespaces_unless_unsafe_allowed():
    code = textwrap.dedent("""
        import json
        from datarl.rewards.code import score_code
        from datarl.sandbox import SandboxConfig
        rec = {"tests": {"type": "assert", "code": "assert f() == 1"}}
        a = score_code(rec, "def f(): return 1")
        b = score_code(rec, "def f(): return 1", config=SandboxConfig(allow_unsafe=True))
        print(json.dumps([a.score, a.failure, b.score, b.failure]))
    """)
    out = _no_userns(code)
    if out.returncode != 0 and "max_user_namespaces" in out.stderr:
        pytest.skip("cannot disable user namespaces here")
    a_score, a_failure, b_score, b_failure = json.loads(out.stdout.strip().splitlines()[-1])
    assert (a_score, a_failure) == (0.0, "sandbox_unavailable")
    assert "NO ISOLATION" in out.stderr or "unsafe" in out.stderr.lower()
    assert (b_score, b_failure) == (1.0, None)


# ---------------------------------------------------------------- load (slow)
def _load_worker(item):
    kind, i = item
    cfg = SandboxConfig(cpu_seconds=1, wall_seconds=1.5, runs_per_worker=150)
    tests = {"type": "assert", "code": f"assert f({i}) == {i * 3}\nassert f(0) == 0"}
    code = {
        "pass": "def f(x):\n    return 3 * x",
        "fail": "def f(x):\n    return 2 * x",
        "error": "def f(x):\n    return x / 0",
        "timeout": "def f(x):\n    while True: pass",
        "sleep": "import time\ndef f(x):\n    time.sleep(10)",
        "membomb": "x = [0] * (10 ** 10)",
        "membomb_touch": "x = bytearray(1 << 30) + bytearray(1 << 30)",
        "orphan": "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(30)\ndef f(x): return 3 * x",
    }[kind]
    r = score_code({"tests": tests}, code, config=cfg)
    return kind, r.score, r.failure, os.getpid()


@pytest.mark.slow
def test_load_2000_programs_no_leaks():
    kinds = (
        ["pass"] * 1150
        + ["fail"] * 400
        + ["error"] * 200
        + ["timeout"] * 40
        + ["sleep"] * 20
        + ["membomb"] * 150
        + ["membomb_touch"] * 10
        + ["orphan"] * 30
    )
    items = [(k, i) for i, k in enumerate(kinds)]
    random.Random(0).shuffle(items)
    before_pids, before_tmp = descendant_pids(), temp_entries("datarl")
    ctx = multiprocessing.get_context("fork")  # spawn cannot import this test module by name
    start = time.monotonic()
    with ctx.Pool(2, maxtasksperchild=40) as pool:  # 40 chunks of 8: scoring workers are recycled too
        results = pool.map(_load_worker, items, chunksize=8)
    wall = time.monotonic() - start
    assert len(results) == 2000
    expected = {
        "pass": (1.0, None),
        "fail": (0.0, "wrong_answer"),
        "error": (0.0, "runtime_error"),
        "timeout": (0.0, "timeout"),
        "sleep": (0.0, "timeout"),
        "membomb": (0.0, "memory"),
        "orphan": (1.0, None),
    }
    for kind, score, failure, _ in results:
        if kind == "membomb_touch":
            assert score == 0.0 and failure in ("memory", "timeout")
        else:
            assert (score, failure) == expected[kind], (kind, score, failure)
    assert len({pid for *_, pid in results}) >= 4  # worker processes were recycled
    time.sleep(0.5)
    assert descendant_pids() <= before_pids
    assert temp_entries("datarl") <= before_tmp
    print(f"2000 programs in {wall:.1f} s")
