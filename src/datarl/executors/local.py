"""A local process pool with a hard per-item timeout.

Why not ``multiprocessing.Pool`` or ``concurrent.futures``: neither can stop one item
that hangs (math-verify on a pathological answer, a stuck judge call). Here each worker
holds at most one item at a time; the parent knows when it was sent, and a worker that
overruns its deadline is killed (its whole process group) and replaced, the item is
reported as timed out, and the rest go on. A worker that dies (OOM killer, segfault) is
replaced the same way and its item retried once before it is reported as crashed.

Workers are forked from the parent after ``setup`` has run there, so imports made by
``setup`` (math-verify costs ~0.35 s) are paid once, not once per worker. Workers
ignore SIGINT: Ctrl-C reaches the parent, which stops them all and leaves nothing
behind. A parent killed outright (``kill -9``, the OOM killer) cannot stop them, so each
worker watches its parent and, once it is gone, kills its own process group (itself and
any sandbox it started) within about a second.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What happened to one item: ``ok`` with ``value``, or ``failure`` in
    (``timeout``, ``worker_crashed``, ``error``) with ``error`` text."""

    index: int
    ok: bool
    value: Any = None
    failure: str | None = None
    error: str | None = None
    seconds: float = 0.0


PARENT_POLL_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """In a worker: when the parent is gone (re-parented to init or a subreaper), kill the whole group."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        try:
            if os.getpgid(0) == os.getpid():  # only a group of our own (setpgid may have failed)
                os.killpg(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)

    threading.Thread(target=watch, name="datarl-parent-watch", daemon=True).start()


def _worker_main(conn: Connection, fn: Callable[[Any], Any], parent: int) -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        # A forked child must not enter the parent's OpenMP thread pool (it hangs forever);
        # one intra-op thread per worker is also the right share of the cores.
        torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.setpgid(0, 0)  # own process group: a timeout kills the worker and anything it spawned
    except OSError:
        pass
    _exit_with_parent(parent)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        index, item = msg
        start = time.perf_counter()
        try:
            value = fn(item)
            reply = (index, True, value, None, time.perf_counter() - start)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
            reply = (index, False, None, detail, time.perf_counter() - start)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[[Any], Any]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.item: tuple[int, Any] | None = None
        self.started = 0.0
        self.done = 0

    def send(self, index: int, item: Any) -> None:
        self.item = (index, item)
        self.started = time.monotonic()
        self.conn.send((index, item))

    def kill(self) -> None:
        pid = self.proc.pid
        if pid is not None and self.proc.is_alive():
            for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    target()
                except (ProcessLookupError, PermissionError):
                    pass
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def map_ordered(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    workers: int,
    timeout_s: float,
    recycle_after: int = 0,
) -> Iterator[Outcome]:
    """Apply ``fn`` to every item in worker processes; yield outcomes in input order.

    fn: a picklable-by-fork callable; it runs in the workers.
    workers: number of processes (>= 1).
    timeout_s: wall-clock seconds one item may take before its worker is killed.
    recycle_after: replace a worker after this many items (0 = never), to bound leaks.
    """
    pool = WorkerPool(fn, workers=workers, timeout_s=timeout_s, recycle_after=recycle_after)
    try:
        yield from pool.imap(items)
    finally:
        pool.close()


class WorkerPool:
    """Workers that outlive one batch of items: ``imap`` may be called again and again (PPO scores
    every step with the same pool, so forked workers and their warm sandboxes are made once).

    The guarantees are those of :func:`map_ordered`: one item in flight per worker, a hard
    per-item timeout that kills and replaces the worker, a crashed worker's item retried once.
    Workers fork lazily on first use, so state set before the first ``imap`` is inherited.
    """

    def __init__(self, fn: Callable[[Any], Any], *, workers: int, timeout_s: float, recycle_after: int = 0) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.fn, self.size, self.timeout_s, self.recycle_after = fn, workers, timeout_s, recycle_after
        self._ctx = mp.get_context("fork")
        self._pool: list[_Worker] = []

    def close(self) -> None:
        """Stop every worker (busy ones are killed)."""
        for w in self._pool:
            if w.item is not None:
                w.kill()
            else:
                w.stop()
        self._pool = []

    def imap(self, items: Iterable[Any]) -> Iterator[Outcome]:
        """Outcomes of ``fn`` on ``items``, in input order."""
        pending = iter(enumerate(items))
        results: dict[int, Outcome] = {}
        retried: set[int] = set()
        retry_queue: list[tuple[int, Any]] = []
        next_out = 0
        exhausted = False

        def next_item() -> tuple[int, Any] | None:
            nonlocal exhausted
            if retry_queue:
                return retry_queue.pop(0)
            if exhausted:
                return None
            try:
                return next(pending)
            except StopIteration:
                exhausted = True
                return None

        def feed(worker: _Worker) -> None:
            job = next_item()
            if job is None:
                worker.item = None
            else:
                worker.send(*job)

        timeout_s = self.timeout_s
        pool = self._pool
        try:
            while len(pool) < self.size:
                pool.append(_Worker(self._ctx, self.fn))
            for w in pool:
                feed(w)
            while True:
                busy = [w for w in pool if w.item is not None]
                while next_out in results:
                    yield results.pop(next_out)
                    next_out += 1
                if not busy:
                    break
                now = time.monotonic()
                wait_s = max(0.0, min(w.started + timeout_s - now for w in busy))
                ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=wait_s)
                now = time.monotonic()
                for i, w in enumerate(pool):
                    if w.item is None:
                        continue
                    index, item = w.item
                    replace = False
                    if w.conn in ready:
                        try:
                            idx, ok, value, err, secs = w.conn.recv()
                        except (EOFError, OSError):
                            idx = None
                        if idx is not None:
                            results[idx] = Outcome(idx, ok, value, None if ok else "error", err, secs)
                            w.done += 1
                            w.item = None
                            if self.recycle_after and w.done >= self.recycle_after:
                                w.stop()
                                replace = True
                            else:
                                feed(w)
                            if not replace:
                                continue
                    if w.item is not None and (w.proc.sentinel in ready or not w.proc.is_alive()):
                        w.kill()
                        if index in retried:
                            results[index] = Outcome(
                                index,
                                False,
                                None,
                                "worker_crashed",
                                f"worker exited with code {w.proc.exitcode} twice on this item",
                                now - w.started,
                            )
                        else:
                            retried.add(index)
                            retry_queue.append((index, item))
                        replace = True
                    elif w.item is not None and now - w.started >= timeout_s:
                        w.kill()
                        results[index] = Outcome(
                            index,
                            False,
                            None,
                            "timeout",
                            f"item exceeded the {timeout_s:g} s timeout; its worker was killed",
                            now - w.started,
                        )
                        replace = True
                    if replace:
                        pool[i] = _Worker(self._ctx, self.fn)
                        feed(pool[i])
        finally:
            # An abandoned batch (error, Ctrl-C, early close) leaves no item in flight for the next one.
            for w in pool:
                if w.item is not None:
                    w.kill()
            self._pool = [w for w in pool if w.item is None]
