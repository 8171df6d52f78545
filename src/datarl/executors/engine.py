"""Scoring engines: where the router's rewards are computed, behind one interface.

A :class:`ScoringEngine` scores ``responses[i]`` for ``records[i]`` and returns the results in order;
``close()`` stops whatever it started. Two implementations:

- :class:`LocalEngine` (here): model sources (BT, GenRM) are scored in this process in batches, many
  items per forward pass; every other source in forked worker processes with a per-item wall-clock
  limit (:class:`~datarl.executors.local.WorkerPool`: a worker past the limit is killed and replaced and
  the item scores 0 with ``failure: timeout``; a crashed worker's item is retried once). The router is
  bound into the worker function (the workers fork with it), never held in a global. Workers fork on
  first use and serve every later call, so PPO's per-step scoring, the server's batches and Pre-PPO's
  chunks pay for imports and sandbox fork servers once.
- :class:`~datarl.executors.ray_engine.RayScoringEngine`: the same per-item work on Ray Data actor pools.

Trainer, evaluation, Pre-PPO, ``datarl score`` and the server receive an engine and call only
:meth:`ScoringEngine.score`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from datarl.executors.local import Outcome, WorkerPool
from datarl.rewards.base import RewardResult
from datarl.rewards.router import Router

__all__ = ["ScoringEngine", "LocalEngine", "score_item", "outcome_result"]


class ScoringEngine(Protocol):
    """Scores responses with a router; the results come back in input order."""

    def score(self, records: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> list[RewardResult]: ...

    def close(self) -> None: ...


def score_item(router: Router, record: Mapping[str, Any]) -> dict[str, Any]:
    """What a worker process runs for one item: ``record["response"]`` scored by ``router``, as plain data
    (it crosses a pipe)."""
    result = router.score(record, record.get("response") or "", fallback=False)  # fallbacks: batched in the engine
    return {"reward": result.score, "reward_source": result.source, "reward_info": result.info}


def outcome_result(router: Router, record: Mapping[str, Any], outcome: Outcome) -> RewardResult:
    """A worker's outcome as a reward: its value, or a 0 that names the failure (``timeout``,
    ``worker_crashed``, ``internal_error``) and the source that would have scored it."""
    if outcome.ok:
        v = outcome.value
        return RewardResult(float(v["reward"]), v["reward_source"], v["reward_info"])
    source = router.config.source_for(str(record.get("task"))) or "none"
    failure = outcome.failure if outcome.failure != "error" else "internal_error"
    return RewardResult(0.0, source, {"failure": failure, "error": outcome.error})


class LocalEngine:
    """Model sources in this process in batches; the other sources in forked workers with per-item limits.

    router: the router every item is scored with (bound into the workers when they fork).
    workers: worker processes (>= 1).
    timeout_s: wall-clock seconds one item may take in a worker.
    Use as a context manager, or call :meth:`close` (stops the workers, killing busy ones).
    """

    def __init__(self, router: Router, *, workers: int = 1, timeout_s: float = 30.0) -> None:
        self.router = router
        router.warm_up()  # imports and warm-ups happen once here; the workers inherit them when they fork
        self.pool = WorkerPool(functools.partial(score_item, router), workers=workers, timeout_s=timeout_s)

    def score(self, records: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> list[RewardResult]:
        """Every result, in order; the tasks' fallbacks are asked afterwards, in this process, one batch each."""
        results = list(self._stream(records, responses))
        return self.router.apply_fallbacks(records, responses, results)

    def stream(self, records: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> Iterator[RewardResult]:
        """:meth:`score`, yielding each result as soon as it and all before it are done (for progress bars and
        streamed output). Model sources are scored first, in one batch per source. With fallbacks configured the
        results come once all are done (the fallbacks are batched over the whole call)."""
        if self.router.config.fallbacks:
            yield from self.score(records, responses)
            return
        yield from self._stream(records, responses)

    def _stream(self, records: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> Iterator[RewardResult]:
        router = self.router
        batched = [i for i, r in enumerate(records) if router.is_batched(str(r.get("task")))]
        done: dict[int, RewardResult] = {}
        if batched:  # score_many would ask fallbacks too: the caller does, once for everything
            scored = router.score_many([records[i] for i in batched], [responses[i] for i in batched], fallback=False)
            done.update(zip(batched, scored))
        rest = [i for i in range(len(records)) if i not in done]
        outcomes = self.pool.imap({**records[i], "response": responses[i]} for i in rest)
        try:
            pending = iter(zip(rest, outcomes))
            for i in range(len(records)):
                if i not in done:
                    j, outcome = next(pending)
                    done[j] = outcome_result(router, records[j], outcome)
                yield done.pop(i)
        finally:
            outcomes.close()  # an abandoned stream (an error, Ctrl-C) leaves no item in flight

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
