"""``datarl score``: score a file of records with the router, in parallel, safely.

Guarantees:
- the output keeps input order; records without a ``response`` pass through unscored;
- bad input lines go to ``OUTPUT.errors.jsonl`` with the reason (``strict``: refuse
  the whole file before any work starts);
- every item has a wall-clock limit enforced by killing its worker, so one
  pathological answer cannot stall the run; a timed-out item scores 0 with
  ``reward_info.failure = "timeout"``;
- a ``bt`` reward model whose mapping is fitted on the records being scored gets one fit
  over the whole file, whatever the engine cuts it into (``rewards.bt.refit``);
- the output is written to a temporary file and renamed into place only when the
  run completes, so an interrupted run (Ctrl-C, SIGTERM) leaves no half-written
  output and no worker processes.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from datarl.errors import InputError
from datarl.executors.engine import LocalEngine
from datarl.io import progress_bar, write_records
from datarl.records import LoadResult, Record, format_errors, load_records, write_errors
from datarl.rewards.base import RewardResult
from datarl.rewards.bt import mapping_problem, refit
from datarl.rewards.router import Router, RouterConfig


@dataclass(frozen=True)
class ScoreOptions:
    """Options of one scoring run.

    workers: worker processes (default: CPU count).
    timeout_s: wall-clock seconds one item may take; the worker is killed past it.
    strict: refuse the whole file if any line is bad, before scoring anything.
    progress: show a progress bar (None: only when stderr is a terminal).
    router: which source scores which task, with source options.
    engine: ``local`` (forked worker processes) or ``ray`` (Ray Data actor pools; ``pip install 'datarl[ray]'``).
    ray: a ``datarl.executors.ray_engine.RayOptions`` for ``engine="ray"`` (None: its defaults, a local Ray).
    layout: read the input in this layout (``datarl.layouts.LAYOUT_NAMES``) instead of detecting it.
    """

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout_s: float = 30.0
    strict: bool = False
    progress: bool | None = None
    router: RouterConfig = field(default_factory=RouterConfig)
    engine: str = "local"
    ray: Any = None
    layout: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")


@dataclass
class ScoreSummary:
    """Counts and means of one run (printed by the CLI, returned to callers)."""

    input: str
    output: str
    errors_path: str | None
    lines: int = 0
    bad_lines: int = 0
    scored: int = 0
    unscored: int = 0  # valid records without a response
    seconds: float = 0.0
    by_task: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    by_source: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    failures: Counter = field(default_factory=Counter)

    def add(self, task: str, source: str, reward: float, failure: str | None) -> None:
        self.scored += 1
        for table, key in ((self.by_task, task), (self.by_source, source)):
            table[key][0] += 1
            table[key][1] += reward
        if failure:
            self.failures[failure] += 1

    def format(self) -> str:
        rate = self.scored / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"scored {self.scored} of {self.lines} lines from {self.input} -> {self.output} "
            f"in {self.seconds:.1f} s ({rate:.1f} items/s)"
        ]
        if self.unscored:
            out.append(f"passed through unscored (no response): {self.unscored}")
        if self.bad_lines:
            out.append(f"bad input lines: {self.bad_lines} (see {self.errors_path})")
        for title, table in (("task", self.by_task), ("source", self.by_source)):
            if table:
                out.append(f"  {title:<12} {'count':>8} {'mean reward':>12}")
                for key in sorted(table):
                    n, total = table[key]
                    out.append(f"  {key:<12} {int(n):>8} {total / n if n else 0.0:>12.4f}")
        if self.failures:
            out.append("  failure classes: " + ", ".join(f"{k}={v}" for k, v in self.failures.most_common()))
        return "\n".join(out)


def load_for_scoring(
    path: str,
    router: RouterConfig,
    *,
    layout: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> LoadResult:
    """Load ``path``; a record whose task the router cannot score is a bad line too. ``layout`` and
    ``announce`` as for :func:`datarl.records.load_records`."""

    def routed(rec: Record) -> tuple[str, str] | None:
        return router.record_problem(rec.to_dict()) if rec.response is not None else None

    return load_records(path, extra_check=routed, layout=layout, announce=announce)


def score_file(
    input_path: str,
    output_path: str,
    options: ScoreOptions | None = None,
    *,
    announce: Callable[[str], None] | None = None,
) -> ScoreSummary:
    """Score every record of ``input_path`` that has a response; write ``output_path``. ``announce`` gets the
    input's layout mapping when it is not a datarl file."""
    options = options or ScoreOptions()
    if options.engine == "ray":
        from datarl.executors.ray_engine import import_ray

        import_ray()  # a missing Ray is a one-line error before any work
    if os.path.abspath(input_path) == os.path.abspath(output_path):
        raise InputError("output must differ from input (the input is read while the output is written)")
    loaded = load_for_scoring(input_path, options.router, layout=options.layout, announce=announce)
    errors_path = output_path + ".errors.jsonl"
    if loaded.errors and options.strict:
        raise InputError(
            f"{len(loaded.errors)} bad line(s) in {input_path}; nothing was scored (--strict):\n"
            + format_errors(loaded.errors)
        )
    summary = ScoreSummary(
        input_path,
        output_path,
        errors_path if loaded.errors else None,
        lines=loaded.total_lines,
        bad_lines=len(loaded.errors),
    )
    to_score = [r.to_dict() for r in loaded.records if r.response is not None]
    summary.unscored = len(loaded.records) - len(to_score)
    start = time.perf_counter()
    engine = _engine(options, len(to_score))
    bar = progress_bar(len(to_score), options.progress)
    try:
        results = (
            engine.stream(to_score, [r["response"] for r in to_score])
            if isinstance(engine, LocalEngine)
            else iter(engine.score(to_score, [r["response"] for r in to_score]))
        )
        if _fits_bt(options.router):  # one fit over the whole file, whatever the engine cuts it into
            results = iter(refit(list(results)))
        write_records(output_path, _merge(loaded.records, results, summary, bar))
        write_errors(errors_path, loaded.errors)
    finally:
        if bar is not None:
            bar.close()
        engine.close()  # stops and reaps the workers even on Ctrl-C
    summary.seconds = time.perf_counter() - start
    return summary


def _fits_bt(router: RouterConfig) -> bool:
    """Whether a routed ``bt`` source fits its mapping on the records it scores (then the results are gathered
    and refitted together; else they stream)."""
    routed = {*router.table.values(), *router.fallbacks.values()}
    return "bt" in routed and mapping_problem(dict(router.options.get("bt", {}))) is not None


def _engine(options: ScoreOptions, items: int) -> Any:
    """The engine the options ask for: local workers (no more than there are items) or Ray."""
    if options.engine == "ray":
        from datarl.executors.ray_engine import RayScoringEngine

        return RayScoringEngine(options.router, timeout_s=options.timeout_s, options=options.ray)
    return LocalEngine(Router(options.router), workers=min(options.workers, max(1, items)), timeout_s=options.timeout_s)


def _merge(
    records: list[Record], results: Iterator[RewardResult], summary: ScoreSummary, bar: Any
) -> Iterator[dict[str, Any]]:
    for rec in records:
        row = dict(rec.raw)
        row.setdefault("id", rec.id)
        if rec.response is None:
            yield row
            continue
        result = next(results)
        row.update({"reward": result.score, "reward_source": result.source, "reward_info": result.info})
        summary.add(rec.task, result.source, float(result.score), result.info.get("failure"))
        if bar is not None:
            bar.update(1)
        yield row
