"""TRL reward callables: datarl's reward sources as ``reward_funcs`` of TRL's ``GRPOTrainer`` (TRL >= 1.x).

TRL calls each reward function as ``fn(prompts=..., completions=..., completion_ids=..., **columns)``, where
``columns`` holds every dataset column but ``prompt`` (one value per completion) plus ``trainer_state``,
``log_extra`` and ``log_metric``; completions are strings, or lists of chat messages for a chat dataset.
A function returns one float per completion, or ``None`` where it does not apply (TRL leaves it out of
that row's sum). TRL logs each function under its ``__name__`` (``rewards/<name>/mean``) and awaits an
``async`` one on its own event loop, concurrently with the other async functions.

Usage::

    from datasets import Dataset
    from datarl.integrations.trl import datarl_reward, rtv_code, rtv_math, trl_rows

    dataset = Dataset.from_list(trl_rows(records))            # prompt, task, id, datarl_record
    trainer = GRPOTrainer(model=..., reward_funcs=[rtv_math, rtv_code], train_dataset=dataset, args=...)

The record to score against comes from the ``datarl_record`` column (the record as JSON text, as
:func:`trl_rows` writes it; a single text column because Arrow would otherwise pad the per-task
``tests``/``kwargs`` structs with nulls), else from the datarl columns the dataset has (``task``,
``ground_truth``, ``tests``, ``instruction_id_list``, ``kwargs``, ``reference``...), with the prompt from
``prompts``. A chat completion is scored on its last assistant message.

Callables (module level; the router config comes from ``DATARL_REWARD_CONFIG``, read at the first call):

| name | source | applies to (else ``None``) |
|---|---|---|
| ``rtv_math``, ``rtv_code``, ``rtv_ifeval`` | the verifier | task ``math`` / ``code`` / ``ifeval`` |
| ``genrm_gt`` (+ ``genrm_gt_async``) | judge vs ground truth | task ``math`` |
| ``genrm_bon`` (+ ``genrm_bon_async``) | judge vs best-of-N reference | task ``general`` |
| ``bt`` | Bradley-Terry model | task ``general`` |
| ``datarl_reward`` (+ ``datarl_reward_async``) | the router table | every task that has a source |

:func:`reward_func` builds others (``tasks=``, source ``options=`` such as ``{"judge": "judge/"}``,
``config=``, ``asynchronous=``, ``workers=``). Scoring never raises on model output; a row whose datarl
record is broken scores 0 (and is logged). A row routed to a learned source that has no model configured
(``datarl_reward`` on a ``general`` row with the default table and no judge) raises ``ValueError`` at once:
that is a configuration error, and a silent 0 would train on it. By default the verifiers run in the
calling process; with ``workers >= 1`` they run in forked worker processes with a per-item wall-clock
limit (``timeout_s``), as in ``datarl score``, so a pathological answer cannot stall training.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from datarl.records import KNOWN_FIELDS, Record, parse_record

__all__ = [
    "RewardFunc",
    "AsyncRewardFunc",
    "reward_func",
    "trl_rows",
    "completion_text",
    "DEFAULT_TASKS",
    "CONFIG_ENV",
    "RECORD_COLUMN",
    "rtv_math",
    "rtv_code",
    "rtv_ifeval",
    "genrm_gt",
    "genrm_gt_async",
    "genrm_bon",
    "genrm_bon_async",
    "bt",
    "datarl_reward",
    "datarl_reward_async",
]

log = logging.getLogger("datarl.trl")
CONFIG_ENV = "DATARL_REWARD_CONFIG"
RECORD_COLUMN = "datarl_record"
# Which tasks each source scores when it is used on its own (the paper's assignment).
DEFAULT_TASKS: dict[str, tuple[str, ...]] = {
    "rtv.math": ("math",),
    "rtv.code": ("code",),
    "rtv.ifeval": ("ifeval",),
    "genrm.gt": ("math",),
    "genrm.bon": ("general",),
    "bt": ("general",),
}
_DROP = ("response", "reward", "reward_source", "reward_info")


def trl_rows(records: Sequence[Record | Mapping[str, Any]], *, chat: bool = True) -> list[dict[str, Any]]:
    """Dataset rows for TRL: ``prompt`` (chat messages when ``chat``), ``task``, ``id``, ``datarl_record``."""
    rows = []
    for i, item in enumerate(records):
        rec = item.to_dict() if isinstance(item, Record) else dict(item)
        prompt = rec.get("prompt")
        if chat and isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        kept = {k: v for k, v in rec.items() if k not in _DROP}
        rows.append(
            {
                "prompt": prompt,
                "task": rec.get("task"),
                "id": str(rec.get("id", f"record-{i}")),
                RECORD_COLUMN: json.dumps(kept, ensure_ascii=False, default=str),
            }
        )
    return rows


def completion_text(completion: Any) -> str:
    """The text to score: a string as is; for chat messages, the last assistant message's text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        msgs = [m for m in completion if isinstance(m, Mapping)]
        assistant = [m for m in msgs if m.get("role") == "assistant"] or msgs
        content = assistant[-1].get("content") if assistant else ""
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        return "" if content is None else str(content)
    return "" if completion is None else str(completion)


def _load(config: str | Mapping[str, Any] | None) -> dict[str, Any]:
    from datarl.config import load_config

    path = (os.environ.get(CONFIG_ENV) or None) if config is None else config
    data = load_config(path) if isinstance(path, str) else dict(path or {})
    reward = data.get("reward", data)  # a whole run config, or just its reward section
    return {k: reward[k] for k in ("router", "sources") if k in reward}


class RewardFunc:
    """A TRL reward function over one datarl source, or over the router table (``source=None``).

    source: a router source name (``rtv.math``, ``genrm.bon``...), or None for the routed table.
    name: ``__name__`` (TRL logs under it); default: the source with ``_`` for ``.``, or ``datarl_reward``.
    tasks: tasks this source scores (default :data:`DEFAULT_TASKS`); other rows get ``None``.
    options: the source's options, over those of the config's ``sources:`` section.
    config: a config path or mapping (``reward:`` section, or ``router:``/``sources:``); default: the file
        named by ``DATARL_REWARD_CONFIG`` if set, else the default router.
    workers: 0 = score in this process; >= 1 = verifiers in that many forked processes, each item limited
        to ``timeout_s`` seconds (model sources always run in this process, batched).
    """

    def __init__(
        self,
        source: str | None = None,
        *,
        name: str | None = None,
        tasks: Sequence[str] | None = None,
        options: Mapping[str, Any] | None = None,
        config: str | Mapping[str, Any] | None = None,
        workers: int = 0,
        timeout_s: float = 30.0,
    ) -> None:
        from datarl.rewards.router import SOURCES

        if source is not None and source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; use one of {', '.join(sorted(SOURCES))} or None (routed)")
        if workers < 0 or timeout_s <= 0:
            raise ValueError("workers must be >= 0 and timeout_s > 0")
        self.source = source
        self.tasks = tuple(tasks) if tasks is not None else DEFAULT_TASKS.get(source or "", ())
        if source is not None and not self.tasks:
            raise ValueError(f"give tasks= for source {source!r}: the tasks whose rows it scores")
        self.options = dict(options or {})
        self.config = config
        self.workers, self.timeout_s = workers, timeout_s
        self.__name__ = name or (source.replace(".", "_") if source else "datarl_reward")
        self._router: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, name={self.__name__!r}, tasks={self.tasks!r})"

    def __getstate__(self) -> dict[str, Any]:  # picklable: the router and lock are rebuilt on first use
        return {k: v for k, v in self.__dict__.items() if k not in ("_router", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _router=None, _lock=threading.Lock())

    @property
    def router(self) -> Any:
        """The router this function scores with, built on first use (a bad config raises here, once)."""
        with self._lock:
            if self._router is None:
                from datarl.rewards.router import Router, RouterConfig

                cfg = _load(self.config)
                if self.source is None:
                    config = RouterConfig.from_mapping(cfg)
                else:
                    opts = {**dict((cfg.get("sources") or {}).get(self.source) or {}), **self.options}
                    config = RouterConfig(table={t: self.source for t in self.tasks}, options={self.source: opts})
                config.check_batch_use()  # TRL asks for rewards a batch at a time
                self._router = Router(config)
            return self._router

    def _record(self, i: int, prompts: Sequence[Any], columns: Mapping[str, Any]) -> dict[str, Any] | None:
        """Row ``i``'s record; None for a row that is not a datarl record; ValueError for a broken one."""

        def col(name: str) -> Any:
            values = columns.get(name)
            return values[i] if isinstance(values, (list, tuple)) and i < len(values) else None

        text = col(RECORD_COLUMN)
        if isinstance(text, str) and text:
            obj = json.loads(text)
        else:
            obj = {k: col(k) for k in KNOWN_FIELDS if col(k) is not None}
            obj.setdefault("prompt", prompts[i] if i < len(prompts) else None)
        if not isinstance(obj, dict) or obj.get("task") is None:
            return None
        parsed = parse_record(obj, path="trl", line=i + 1, default_id=f"trl-row-{i}")
        if not isinstance(parsed, Record):
            raise ValueError(f"{parsed.field}: {parsed.message}")
        return parsed.to_dict()

    def score(
        self, prompts: Sequence[Any], completions: Sequence[Any], columns: Mapping[str, Any]
    ) -> list[float | None]:
        """One reward per completion, ``None`` where this function does not apply."""
        router = self.router
        out: list[float | None] = [None] * len(completions)
        todo: list[tuple[int, dict[str, Any]]] = []
        for i in range(len(completions)):
            try:
                rec = self._record(i, prompts, columns)
            except Exception as exc:  # broken data must not stop training: 0, and say so
                log.warning("%s: row %d: bad datarl record (%s); scored 0", self.__name__, i, exc)
                out[i] = 0.0
                continue
            if rec is not None and router.config.source_for(rec["task"]) is not None:
                missing_model = router.config.model_problem(str(rec["task"]))
                if missing_model:
                    raise ValueError(
                        f"{self.__name__}: row {i}: {missing_model} (or pass it as options= / "
                        f"config= to reward_func, or set {CONFIG_ENV})"
                    )
                todo.append((i, rec))
        if todo:
            recs, texts = [r for _, r in todo], [completion_text(completions[i]) for i, _ in todo]
            if self.workers:
                from datarl.executors.engine import LocalEngine

                with LocalEngine(router, workers=self.workers, timeout_s=self.timeout_s) as engine:
                    results = engine.score(recs, texts)
            else:
                results = router.score_many(recs, texts)
            for (i, _), result in zip(todo, results):
                out[i] = float(result.score)
        return out

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **columns: Any
    ) -> list[float | None]:
        return self.score(prompts, completions, columns)


class AsyncRewardFunc(RewardFunc):
    """:class:`RewardFunc` as a coroutine (TRL awaits it): scoring runs in a thread, so a judge's model
    calls or HTTP requests overlap with TRL's other async reward functions."""

    async def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],  # type: ignore[override]
        completion_ids: Any = None,
        **columns: Any,
    ) -> list[float | None]:
        return await asyncio.to_thread(self.score, prompts, completions, columns)


def reward_func(source: str | None = None, *, asynchronous: bool = False, **kwargs: Any) -> RewardFunc:
    """A reward function for ``source`` (None = the routed table); ``kwargs`` as for :class:`RewardFunc`."""
    return (AsyncRewardFunc if asynchronous else RewardFunc)(source, **kwargs)


rtv_math = RewardFunc("rtv.math")
rtv_code = RewardFunc("rtv.code")
rtv_ifeval = RewardFunc("rtv.ifeval")
genrm_gt = RewardFunc("genrm.gt")
genrm_gt_async = AsyncRewardFunc("genrm.gt")
genrm_bon = RewardFunc("genrm.bon")
genrm_bon_async = AsyncRewardFunc("genrm.bon")
bt = RewardFunc("bt")
datarl_reward = RewardFunc(None)
datarl_reward_async = AsyncRewardFunc(None)
