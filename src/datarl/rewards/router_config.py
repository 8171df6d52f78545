"""The router's configuration: the sources, the table task -> source (with fallbacks), and every check of it.

The table is declarative (task -> source name) and comes from config; each source
has its own options. A task missing from the table is an error for that record, never
a silent 0.

Config shape (YAML or JSON; every key optional)::

    router:            # task -> source, or {source, fallback}
      math: {source: rtv.math, fallback: genrm.gt}   # the judge only where the verifier says wrong
      ifeval: rtv.ifeval
    sources:           # source -> keyword options passed to its scoring function
      rtv.math: {rel_tol: null}
      rtv.ifeval: {mode: strict}
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.errors import UserError


@dataclass(frozen=True)
class Source:
    """One reward source: where its scoring function lives and what it needs.

    name: the name a router table uses (``rtv.math``).
    module, function: the scoring function ``function(record, response, **options) -> RewardResult``.
    options: the option names it accepts (``sources.<name>:`` in a config).
    batched: for model sources, the batched function (same options, lists in, a list out): scored in the
        process that holds the model, many items per forward pass, never one per worker.
    model_option: the option that names a learned source's model (its absence is a config error).
    makes_model: the command that makes that model (for the error message).
    model_hint: what else the model option accepts (for the same message).
    needs: the record field the source compares the response with (its absence is a bad record).
    needs_hint: how to give that field.
    warm_up: a function of ``module`` every scoring process calls once before its first item.
    batch_check: a function of ``module`` taking the source's options and returning why the source would not
        give a stable reward to callers that score one batch at a time (PPO, ``datarl serve``), or None.
    """

    name: str
    module: str
    function: str
    options: tuple[str, ...] = ()
    batched: str | None = None
    model_option: str | None = None
    makes_model: str | None = None
    model_hint: str = ""
    needs: str | None = None
    needs_hint: str = ""
    warm_up: str | None = None
    batch_check: str | None = None


_BON_HINT = "add best-of-N references first: datarl build-references FILE -o OUT --bt BT_DIR"
SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("rtv.math", "datarl.rewards.math", "score_math", ("rel_tol", "step_credit")),
        Source("rtv.ifeval", "datarl.rewards.ifeval", "score_ifeval", ("mode",), warm_up="warm_up"),
        Source("rtv.code", "datarl.rewards.code", "score_code", ("partial_credit", "config")),
        Source(
            "bt",
            "datarl.rewards.bt",
            "score_bt",
            ("model", "mapping", "scale", "shift"),
            batched="score_bt_batch",
            model_option="model",
            makes_model="datarl train-bt",
            model_hint=", or any Hugging Face sequence-classification reward model: a directory or a hub id in "
            "the local cache",
            batch_check="mapping_problem",
        ),
        Source(
            "genrm.gt",
            "datarl.rewards.genrm",
            "score_genrm_gt",
            ("judge", "max_answer_chars"),
            batched="score_genrm_gt_batch",
            model_option="judge",
            makes_model="datarl train-genrm",
            needs="ground_truth",
            needs_hint="give the final answer",
        ),
        Source(
            "genrm.bon",
            "datarl.rewards.genrm",
            "score_genrm_bon",
            ("judge", "max_answer_chars"),
            batched="score_genrm_bon_batch",
            model_option="judge",
            makes_model="datarl train-genrm",
            needs="reference",
            needs_hint=_BON_HINT,
        ),
        # The synthetic suite's hidden rubric (general records only): an experiment's no-hacking control.
        Source("gold.rubric", "datarl.synth.gold", "score_rubric"),
    )
}

# The paper's routing: verifiers where a task has one, the judge against best-of-N references otherwise.
DEFAULT_TABLE: dict[str, str] = {
    "math": "rtv.math",
    "ifeval": "rtv.ifeval",
    "code": "rtv.code",
    "general": "genrm.bon",
}


@dataclass(frozen=True)
class Problem:
    """Why some records (``records``: their indices; empty for a config problem) cannot be scored."""

    field: str
    message: str
    records: tuple[int, ...]


def _model_exists(spec: str) -> bool:
    """A model option's value names something loadable: a path, an alias a package ships, or a hub id in the
    local Hugging Face cache."""
    if os.path.exists(spec):
        return True
    from datarl.models.loading import ALIASES, hub_cached_file

    return spec in ALIASES or hub_cached_file(spec) is not None


class RouterConfigError(UserError, ValueError):
    """A router config that cannot work; the message says how to fix it."""


def _probe_options(source: str, opts: Mapping[str, Any]) -> None:
    """Check a rule-based source's option values now, by scoring an empty item with them: a bad
    value (``rel_tol: abc``) is a config error, where scoring would report every item as an
    internal error. Rule sources check their options before they look at the item."""
    spec = SOURCES[source]
    try:
        getattr(importlib.import_module(spec.module), spec.function)({}, "", **dict(opts))
    except ImportError:
        return  # an optional dependency is missing: scoring reports it per item (source_unavailable)
    except (ValueError, TypeError) as exc:
        raise RouterConfigError(f"sources.{source}: {exc}") from None


@dataclass(frozen=True)
class RouterConfig:
    """Which source scores each task, and each source's options.

    table: task -> source name (a key of ``SOURCES``).
    options: source name -> keyword arguments for that source's scoring function.
    fallbacks: task -> the source asked when the task's source says the response is wrong or has no
        answer (``FALLBACK_ON``): TinyV's verifier-first mode, ``math -> rtv.math, fallback genrm.gt``.
    """

    table: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TABLE))
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fallbacks: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for task, source in self.table.items():
            if source not in SOURCES:
                raise RouterConfigError(
                    f"router: task {task!r} points at unknown source {source!r}; "
                    f"available sources: {', '.join(sorted(SOURCES))}"
                )
        for task, fallback in self.fallbacks.items():
            source = self.table.get(task)
            if source is None:
                raise RouterConfigError(f"router.{task}: a fallback without a source; give both {{source, fallback}}")
            if fallback not in SOURCES:
                raise RouterConfigError(
                    f"router.{task}.fallback: unknown source {fallback!r}; available: {', '.join(sorted(SOURCES))}"
                )
            if fallback == source:
                raise RouterConfigError(
                    f"router.{task}: {source} falls back to itself (a fallback loop); name another source"
                )
        for source, opts in self.options.items():
            if source not in SOURCES:
                raise RouterConfigError(f"sources: unknown source {source!r}; available: {', '.join(sorted(SOURCES))}")
            if not isinstance(opts, Mapping):
                raise RouterConfigError(f"sources.{source}: options must be a mapping")
            allowed = SOURCES[source].options
            for key in opts:
                if key not in allowed:
                    raise RouterConfigError(
                        f"sources.{source}: unknown option {key!r}; allowed: {', '.join(allowed) or 'none'}"
                    )
            if opts and SOURCES[source].model_option is None:
                _probe_options(source, opts)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> RouterConfig:
        """Build from a config dict: the default table updated by ``router:``."""
        data = data or {}
        unknown = set(data) - {"router", "sources"}
        if unknown:
            raise RouterConfigError(f"unknown config section(s) {sorted(unknown)}; expected 'router' and 'sources'")
        table = dict(DEFAULT_TABLE)
        fallbacks: dict[str, str] = {}
        overrides = data.get("router") or {}
        if not isinstance(overrides, Mapping):
            raise RouterConfigError("router: must map task names to source names")
        for task, source in overrides.items():
            if isinstance(source, Mapping):  # {source: rtv.math, fallback: genrm.gt}
                unknown_keys = set(source) - {"source", "fallback"}
                if unknown_keys or not source.get("source"):
                    raise RouterConfigError(
                        f"router.{task}: give {{source: SOURCE, fallback: SOURCE}} (got keys {sorted(source)})"
                    )
                table[str(task)] = str(source["source"])
                if source.get("fallback") not in (None, "none"):
                    fallbacks[str(task)] = str(source["fallback"])
            elif source in (None, "none"):
                table.pop(task, None)
            else:
                table[str(task)] = str(source)
        options = data.get("sources") or {}
        if not isinstance(options, Mapping):
            raise RouterConfigError("sources: must map source names to option mappings")
        return cls(table=table, options={k: dict(v or {}) for k, v in options.items()}, fallbacks=fallbacks)

    def source_for(self, task: str) -> str | None:
        return self.table.get(task)

    def fallback_for(self, task: str) -> str | None:
        return self.fallbacks.get(task)

    def record_problem(self, record: Mapping[str, Any]) -> tuple[str, str] | None:
        """Why this router cannot score ``record`` (``(field, message)``), or None: no source for its
        task, a learned source without its model, or a record without what its source compares with."""
        task = str(record.get("task"))
        source = self.source_for(task)
        if source is None:
            return ("task", self.missing_source_message(task))
        missing_model = self.model_problem(task)
        if missing_model:
            return ("task", missing_model)
        for name in filter(None, (source, self.fallback_for(task))):
            spec = SOURCES[name]
            if spec.needs and not str(record.get(spec.needs) or "").strip():
                return (spec.needs, f"missing; {name} compares the response with it; {spec.needs_hint}")
        return None

    def model_problem(self, task: str) -> str | None:
        """Why ``task``'s source (or its fallback) cannot score at all here (a learned source with no model
        set), or None."""
        for role, source in (("is routed", self.source_for(task)), ("falls back", self.fallback_for(task))):
            spec = SOURCES.get(source or "")
            if (
                spec is not None
                and spec.model_option
                and not dict(self.options.get(spec.name, {})).get(spec.model_option)
            ):
                return (
                    f"task {task!r} {role} to {source}, which needs a model: set "
                    f"sources.{source}.{spec.model_option} in the config (a directory made by `{spec.makes_model}`"
                    f"{spec.model_hint})"
                )
        return None

    def preflight(self, records: Sequence[Mapping[str, Any]]) -> list[Problem]:
        """Every reason these records cannot be scored, before any work: per problem, the records it
        concerns (a task without a source, a learned source without its model, records lacking the field
        their source compares with), then model options that name no directory, alias or endpoint."""
        grouped: dict[tuple[str, str], list[int]] = {}
        for i, record in enumerate(records):
            problem = self.record_problem(record)
            if problem is not None:
                grouped.setdefault(problem, []).append(i)
        problems = [Problem(f, m, tuple(idx)) for (f, m), idx in grouped.items()]
        for source in sorted({*self.table.values(), *self.fallbacks.values()}):
            spec = SOURCES[source]
            value = dict(self.options.get(source, {})).get(spec.model_option) if spec.model_option else None
            if isinstance(value, str) and not _model_exists(value):
                problems.append(
                    Problem(
                        f"sources.{source}.{spec.model_option}",
                        f"{value}: no such model directory, alias or hub id in the local Hugging Face cache "
                        "(nothing is downloaded at run time)",
                        (),
                    )
                )
        return problems

    def batch_problems(self) -> list[str]:
        """Why routed sources would not give a stable reward to a caller that scores one batch at a time (PPO,
        ``datarl serve``): e.g. a ``bt`` model without a stored mapping, whose logistic is fitted per call."""
        problems = []
        for source in sorted({*self.table.values(), *self.fallbacks.values()}):
            spec = SOURCES[source]
            if spec.batch_check is None:
                continue
            check = getattr(importlib.import_module(spec.module), spec.batch_check)
            problem = check(dict(self.options.get(source, {})))
            if problem:
                problems.append(problem)
        return problems

    def check_batch_use(self) -> None:
        """Raise :class:`RouterConfigError` with the first of :meth:`batch_problems` (callers that score one
        batch at a time call this once, before any scoring)."""
        for problem in self.batch_problems():
            raise RouterConfigError(problem)

    def missing_source_message(self, task: str) -> str:
        return (
            f"no reward source is configured for task {task!r}; add one under 'router:' in the config "
            f"(available sources: {', '.join(sorted(SOURCES))})"
        )
