"""The router: the only place that knows which reward source scores which task.

:mod:`datarl.rewards.router_config` holds the table (task -> source, with an optional fallback) and its
checks; :class:`Router` scores with it. Every response is first checked for validity
(:mod:`datarl.rewards.validity`: empty, cut off or looping responses score 0 with ``failure:
invalid_response`` before any source, judge or verifier, sees them); then the task's source scores it; then,
where the task has a fallback and the source's verdict is in ``FALLBACK_ON`` (the verifier says wrong or finds
no answer), the fallback decides, and ``reward_info`` keeps both verdicts (``verdicts``) and which decided
(``decided_by``). Sources are imported lazily so that a worker pays only for what it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from datarl.rewards.base import SCORING_ERRORS, RewardResult
from datarl.rewards.router_config import (
    DEFAULT_TABLE,
    SOURCES,
    Problem,
    RouterConfig,
    RouterConfigError,
    Source,
)
from datarl.rewards.validity import INVALID, invalid_reason

__all__ = [
    "Router",
    "RouterConfig",
    "RouterConfigError",
    "SOURCES",
    "DEFAULT_TABLE",
    "Source",
    "Problem",
    "FALLBACK_ON",
]

_NO_SOURCE = Source("none", "", "")
FALLBACK_ON = frozenset({"wrong_answer", "no_answer"})
"""The verdicts of a task's source that ask its fallback: the verifier says wrong, or finds no answer."""


class Router:
    """Scores a record with the source its task is routed to. Never raises on model output."""

    def __init__(self, config: RouterConfig | None = None) -> None:
        self.config = config or RouterConfig()
        self._fns: dict[str, Callable[..., RewardResult]] = {}

    def _fn(self, source: str) -> Callable[..., RewardResult]:
        if source not in self._fns:
            spec = SOURCES[source]
            self._fns[source] = getattr(importlib.import_module(spec.module), spec.function)
        return self._fns[source]

    def warm_up(self) -> None:
        """Import every routed source and run its ``warm_up`` now: a process that scores calls this once,
        before it forks its workers (they inherit it) or scores its first item."""
        for source in sorted(set(self.config.table.values())):
            try:
                self._fn(source)
                spec = SOURCES[source]
                if spec.warm_up:
                    getattr(importlib.import_module(spec.module), spec.warm_up)()
            except ImportError:
                pass  # reported per record by score()

    def is_batched(self, task: str) -> bool:
        """Whether the source of ``task`` is model-based (score it with :meth:`score_many`, in-process)."""
        return SOURCES.get(self.config.source_for(task) or "", _NO_SOURCE).batched is not None

    def score_many(
        self, records: Sequence[Mapping[str, Any]], responses: Sequence[str], *, fallback: bool = True
    ) -> list[RewardResult]:
        """Score many records in this process, in order; batched sources get one call per source, and so do
        fallbacks (with ``fallback``)."""
        out: list[RewardResult | None] = [None] * len(records)
        groups: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            task = str(record.get("task"))
            invalid = self._invalid(record, responses[i])
            if invalid is not None:
                out[i] = invalid
            elif self.is_batched(task):
                groups.setdefault(str(self.config.source_for(task)), []).append(i)
            else:
                out[i] = self.score(record, responses[i], fallback=False)
        for source, idx in groups.items():
            for i, result in zip(
                idx, self._score_batch(source, [records[i] for i in idx], [responses[i] for i in idx])
            ):
                out[i] = result
        results = [r for r in out if r is not None]
        return self.apply_fallbacks(records, responses, results) if fallback else results

    def score(self, record: Mapping[str, Any], response: str, *, fallback: bool = True) -> RewardResult:
        """Score one response: an invalid one (:mod:`~datarl.rewards.validity`) is 0 before any source sees it;
        with ``fallback`` (default), a task's fallback source is asked here too (a model fallback then loads
        its model in this process: engines pass False and batch the fallbacks themselves)."""
        invalid = self._invalid(record, response)
        if invalid is not None:
            return invalid
        task = str(record.get("task"))
        source = self.config.source_for(task)
        if source is None:
            return RewardResult(
                0.0, "none", {"failure": "no_source", "error": self.config.missing_source_message(task)}
            )
        result = self._score_one(source, record, response)
        if fallback and self.needs_fallback(record, result):
            return self._merged(record, result, self._score_one(str(self.config.fallback_for(task)), record, response))
        return result

    def needs_fallback(self, record: Mapping[str, Any], result: RewardResult) -> bool:
        """Whether ``record``'s task has a fallback and its source's verdict calls for it (``FALLBACK_ON``)."""
        return self.config.fallback_for(str(record.get("task"))) is not None and result.failure in FALLBACK_ON

    def apply_fallbacks(
        self, records: Sequence[Mapping[str, Any]], responses: Sequence[str], results: Sequence[RewardResult]
    ) -> list[RewardResult]:
        """``results`` with every verdict that calls for a fallback replaced by the merged verdict; each fallback
        source is asked once for all its items (one batch for a model source)."""
        out = list(results)
        groups: dict[str, list[int]] = {}
        for i, (record, result) in enumerate(zip(records, results)):
            if self.needs_fallback(record, result):
                groups.setdefault(str(self.config.fallback_for(str(record.get("task")))), []).append(i)
        for source, idx in groups.items():
            if SOURCES[source].batched is not None:
                second = self._score_batch(source, [records[i] for i in idx], [responses[i] for i in idx])
            else:
                second = [self._score_one(source, records[i], responses[i]) for i in idx]
            for i, result in zip(idx, second):
                out[i] = self._merged(records[i], results[i], result)
        return out

    def _invalid(self, record: Mapping[str, Any], response: Any) -> RewardResult | None:
        reason = invalid_reason(record, response)
        if reason is None:
            return None
        task = str(record.get("task")) if isinstance(record, Mapping) else "None"
        source = self.config.source_for(task) or "none"
        return RewardResult(
            0.0, source, {"failure": INVALID, "invalid": reason, "routed_by": f"task={task} -> {source}"}
        )

    def _score_one(self, source: str, record: Mapping[str, Any], response: str) -> RewardResult:
        try:
            fn = self._fn(source)
        except ImportError as exc:
            return RewardResult(
                0.0, source, {"failure": "source_unavailable", "error": f"cannot import {source}: {exc}"}
            )
        opts = dict(self.config.options.get(source, {}))
        try:
            result = fn(record, response, **opts)
        except Exception as exc:  # a source must not raise; if one does, report it, don't crash the run
            return RewardResult(0.0, source, {"failure": "internal_error", "error": f"{type(exc).__name__}: {exc}"})
        info = dict(result.info)
        info.setdefault("routed_by", f"task={record.get('task')} -> {source}")
        return RewardResult(float(result.score), result.source, info)

    def _score_batch(
        self, source: str, records: Sequence[Mapping[str, Any]], responses: Sequence[str]
    ) -> list[RewardResult]:
        spec = SOURCES[source]
        opts = dict(self.config.options.get(source, {}))
        try:
            fn = getattr(importlib.import_module(spec.module), str(spec.batched))
            results = fn(list(records), list(responses), **opts)
        except Exception as exc:  # as in score(): report, never crash the run
            results = [
                RewardResult(0.0, source, {"failure": "internal_error", "error": f"{type(exc).__name__}: {exc}"})
                for _ in records
            ]
        out = []
        for record, result in zip(records, results):
            info = dict(result.info)
            info.setdefault("routed_by", f"task={record.get('task')} -> {source}")
            out.append(RewardResult(float(result.score), result.source, info))
        return out

    def _merged(self, record: Mapping[str, Any], first: RewardResult, second: RewardResult) -> RewardResult:
        """The verifier's verdict and the fallback's, and which decided. The fallback decides (1.0 when its score
        is above 0.5, else 0.0: a verifier's reward stays binary) unless it failed (a judge that is down): then
        the verifier's verdict stands, flagged with ``fallback_error``."""
        task = record.get("task")
        verdicts = {
            r.source: {"score": r.score, **{k: v for k, v in r.info.items() if k != "routed_by"}}
            for r in (first, second)
        }
        routed = f"task={task} -> {first.source}, fallback {second.source}"
        if second.failure is not None and second.failure in SCORING_ERRORS:
            error = second.info.get("error") or second.failure
            info = {
                **first.info,
                "verdicts": verdicts,
                "decided_by": first.source,
                "fallback_error": error,
                "routed_by": routed,
            }
            return RewardResult(first.score, first.source, info)
        accepted = second.score > 0.5
        info = {"verdicts": verdicts, "decided_by": second.source, "fallback_score": second.score, "routed_by": routed}
        if not accepted:
            info["failure"] = first.failure or "wrong_answer"
        return RewardResult(1.0 if accepted else 0.0, second.source, info)
