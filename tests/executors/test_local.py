"""The local pool: order, per-item timeouts, crashes, and no leftover processes."""

from __future__ import annotations

import os
import time

import pytest

from datarl.executors import map_ordered


def _square(x: int) -> int:
    return x * x


def _slow_on_negative(x: int) -> int:
    if x < 0:
        time.sleep(60)
    return x


def _crash_on_seven(x: int) -> int:
    if x == 7:
        os._exit(3)
    return x


def _raise_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def _children(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return {int(p) for p in fh.read().split()}
    except OSError:
        return set()


def test_keeps_input_order_with_many_workers():
    out = list(map_ordered(_square, range(200), workers=3, timeout_s=10))
    assert [o.index for o in out] == list(range(200))
    assert [o.value for o in out] == [x * x for x in range(200)]
    assert all(o.ok for o in out)


def test_timeout_kills_only_the_slow_item_and_the_rest_complete():
    items = [1, 2, -1, 4, 5, -2, 7]
    start = time.monotonic()
    out = list(map_ordered(_slow_on_negative, items, workers=2, timeout_s=0.5))
    assert time.monotonic() - start < 10
    assert [o.ok for o in out] == [x >= 0 for x in items]
    assert [o.failure for o in out if not o.ok] == ["timeout", "timeout"]
    assert [o.value for o in out if o.ok] == [1, 2, 4, 5, 7]


def test_crashing_worker_is_replaced_and_item_reported_after_one_retry():
    out = list(map_ordered(_crash_on_seven, range(12), workers=2, timeout_s=10))
    assert [o.index for o in out] == list(range(12))
    bad = [o for o in out if not o.ok]
    assert len(bad) == 1 and bad[0].index == 7 and bad[0].failure == "worker_crashed"


def test_exception_in_fn_is_an_error_outcome_not_a_crash():
    out = list(map_ordered(_raise_on_three, range(6), workers=2, timeout_s=10))
    assert out[3].failure == "error" and "ValueError: three" in out[3].error
    assert [o.value for o in out if o.ok] == [0, 1, 2, 4, 5]


def test_recycling_workers_still_scores_everything():
    out = list(map_ordered(_square, range(50), workers=2, timeout_s=10, recycle_after=5))
    assert [o.value for o in out] == [x * x for x in range(50)]


def test_closing_early_leaves_no_worker_processes():
    before = _children(os.getpid())
    gen = map_ordered(_slow_on_negative, [1, -1, -1, 2], workers=2, timeout_s=30)
    assert next(gen).value == 1
    gen.close()
    time.sleep(0.2)
    assert _children(os.getpid()) - before == set()


def test_rejects_zero_workers():
    with pytest.raises(ValueError):
        list(map_ordered(_square, [1], workers=0, timeout_s=1))


def _torch_sum(n: int) -> float:
    import torch

    return float(torch.ones(256, 256).matmul(torch.ones(256, 256)).sum()) + n


def test_workers_can_use_torch_after_the_parent_did():
    """Regression: a forked child entering the parent's OpenMP pool hung until the item timeout."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    torch.ones(512, 512).matmul(torch.ones(512, 512))  # the parent's thread pool is now live
    start = time.monotonic()
    out = list(map_ordered(_torch_sum, range(4), workers=2, timeout_s=20))
    assert all(o.ok for o in out) and time.monotonic() - start < 15


PARENT = """
import os, sys, time
from datarl.executors import WorkerPool

def pid_and_child(_):
    import subprocess
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # e.g. a sandbox
    return os.getpid(), child.pid

pool = WorkerPool(pid_and_child, workers=2, timeout_s=30)
print(" ".join(f"{a} {b}" for o in pool.imap([0, 1]) for a, b in [o.value]), flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_and_their_children_exit_when_the_parent_is_killed(tmp_path):
    """Row for a bug: a `datarl train` killed with SIGKILL left its reward workers (and their sandboxes) running
    for good, blocked on a pipe whose other end was still open in a sibling worker."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in parent.stdout.readline().split()]
        assert len(pids) == 4 and all(_alive(p) for p in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), [p for p in pids if _alive(p)]
