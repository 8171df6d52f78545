"""``datarl score``: score a file of records with the router, in parallel, safely.

Guarantees:
- the output keeps input order; records without a ``response`` pass through unscored;
- bad input lines go to ``OUTPUT.errors.jsonl`` with the reason (``strict``: refuse
  the whole file before any work starts);
- every item has a wall-clock limit enforced by killing its worker, so one
  pathological answer cannot stall the run; a timed-out item scores 0 with
  ``reward_info.failure = "timeout"``;
- the output is written to a temporary file and renamed into place only when the
  run completes, so an interrupted run (Ctrl-C, SIGTERM) leaves no half-written
  output and no worker processes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from datarl.executors import Outcome, WorkerPool, map_ordered
from datarl.records import LoadResult, Record, RecordError, format_errors, load_records
from datarl.rewards.base import RewardResult
from datarl.rewards.router import Router, RouterConfig

_ROUTER: Router | None = None  # set in the parent before workers fork


class InputError(Exception):
    """Bad user input (file missing, strict mode with bad lines); the message says what to fix."""


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
    """

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout_s: float = 30.0
    strict: bool = False
    progress: bool | None = None
    router: RouterConfig = field(default_factory=RouterConfig)
    engine: str = "local"
    ray: Any = None

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
        out = [f"scored {self.scored} of {self.lines} lines from {self.input} -> {self.output} "
               f"in {self.seconds:.1f} s ({rate:.1f} items/s)"]
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


def _score_item(record: dict[str, Any]) -> dict[str, Any]:
    assert _ROUTER is not None
    result = _ROUTER.score(record, record.get("response") or "")
    return {"reward": result.score, "reward_source": result.source, "reward_info": result.info}


class RewardWorkers:
    """Scoring worker processes kept for many :func:`score_responses` calls with one router (PPO
    scores every step: the workers, their imports and their warm sandbox servers are made once).
    Close it when done (or use it as a context manager)."""

    def __init__(self, router: Router, *, workers: int, timeout_s: float) -> None:
        global _ROUTER
        _ROUTER = router  # inherited by the workers, which fork on first use
        router.warm_up()
        self.router = router
        self.pool = WorkerPool(_score_item, workers=workers, timeout_s=timeout_s)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> "RewardWorkers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def score_responses(router: Router, records: Sequence[dict[str, Any]], responses: Sequence[str], *,
                    workers: int = 1, timeout_s: float = 30.0,
                    pool: RewardWorkers | None = None) -> list[RewardResult]:
    """Score ``responses[i]`` for ``records[i]``, in order: what PPO, Pre-PPO and best-of-N call.

    Model-based sources (BT, GenRM) run here in batches, in the process that holds the model;
    every other source runs in ``workers`` forked processes with a per-item wall-clock limit, as
    in ``datarl score`` (a timed-out item scores 0 with ``failure: timeout``); ``pool`` reuses
    long-lived workers made for this router instead of forking new ones.
    """
    global _ROUTER
    if pool is not None and pool.router is not router:
        raise ValueError("pool was made for another router")
    out: list[RewardResult | None] = [None] * len(records)
    batched = [i for i, r in enumerate(records) if router.is_batched(str(r.get("task")))]
    if batched:
        for i, result in zip(batched, router.score_many([records[i] for i in batched],
                                                        [responses[i] for i in batched])):
            out[i] = result
    rest = [i for i in range(len(records)) if out[i] is None]
    if rest:
        items = ({**records[i], "response": responses[i]} for i in rest)
        if pool is not None:
            outcomes = pool.pool.imap(items)
        else:
            _ROUTER = router
            router.warm_up()
            outcomes = map_ordered(_score_item, items, workers=min(workers, len(rest)), timeout_s=timeout_s)
        try:
            for i, outcome in zip(rest, outcomes):
                if outcome.ok:
                    v = outcome.value
                    out[i] = RewardResult(float(v["reward"]), v["reward_source"], v["reward_info"])
                else:
                    source = router.config.source_for(str(records[i].get("task"))) or "none"
                    failure = outcome.failure if outcome.failure != "error" else "internal_error"
                    out[i] = RewardResult(0.0, source, {"failure": failure, "error": outcome.error})
        finally:
            outcomes.close()
    return [r for r in out if r is not None]


def load_for_scoring(path: str, router: RouterConfig) -> LoadResult:
    """Load ``path``; a record whose task the router cannot score is a bad line too."""

    def routed(rec: Record) -> tuple[str, str] | None:
        return router.record_problem(rec.to_dict()) if rec.response is not None else None

    try:
        return load_records(path, extra_check=routed)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def score_file(input_path: str, output_path: str, options: ScoreOptions | None = None) -> ScoreSummary:
    """Score every record of ``input_path`` that has a response; write ``output_path``."""
    global _ROUTER
    options = options or ScoreOptions()
    if options.engine == "ray":
        from datarl.executors.ray_engine import import_ray

        import_ray()  # a missing Ray is a one-line error before any work
    if os.path.abspath(input_path) == os.path.abspath(output_path):
        raise InputError("output must differ from input (the input is read while the output is written)")
    loaded = load_for_scoring(input_path, options.router)
    errors_path = output_path + ".errors.jsonl"
    if loaded.errors and options.strict:
        raise InputError(f"{len(loaded.errors)} bad line(s) in {input_path}; nothing was scored (--strict):\n"
                         + format_errors(loaded.errors))
    summary = ScoreSummary(input_path, output_path, errors_path if loaded.errors else None,
                           lines=loaded.total_lines, bad_lines=len(loaded.errors))
    to_score = [r for r in loaded.records if r.response is not None]
    summary.unscored = len(loaded.records) - len(to_score)
    start = time.perf_counter()
    if options.engine == "ray":
        outcomes = _ray_outcomes(to_score, options)
    else:
        _ROUTER = Router(options.router)
        _ROUTER.warm_up()  # imports happen once here and are inherited by the forked workers
        outcomes = map_ordered(_score_item, (r.to_dict() for r in to_score),
                               workers=min(options.workers, max(1, len(to_score))), timeout_s=options.timeout_s)
    bar = progress_bar(len(to_score), options.progress)
    try:
        write_records_atomic(output_path, _merge(loaded.records, outcomes, summary, options, bar))
        _write_errors(errors_path, loaded.errors)
    finally:
        if bar is not None:
            bar.close()
        outcomes.close()  # stops and reaps the workers even on Ctrl-C
    summary.seconds = time.perf_counter() - start
    return summary


def _ray_outcomes(records: list[Record], options: ScoreOptions) -> Iterator[Outcome]:
    """The Ray engine's results as the local pool's outcomes (all scored before the first is yielded)."""
    from datarl.executors.ray_engine import RayEngine, RayOptions

    dicts = [r.to_dict() for r in records]
    with RayEngine(options.ray or RayOptions()) as engine:
        results = engine.score_responses(options.router, dicts, [d.get("response") or "" for d in dicts],
                                         options.timeout_s)
    for i, res in enumerate(results):
        yield Outcome(i, True, {"reward": res.score, "reward_source": res.source, "reward_info": res.info})


def _merge(records: list[Record], outcomes: Iterator[Any], summary: ScoreSummary,
           options: ScoreOptions, bar: Any) -> Iterator[dict[str, Any]]:
    for rec in records:
        row = dict(rec.raw)
        row.setdefault("id", rec.id)
        if rec.response is None:
            yield row
            continue
        outcome = next(outcomes)
        if outcome.ok:
            row.update(outcome.value)
        else:
            source = options.router.source_for(rec.task) or "none"
            failure = outcome.failure if outcome.failure != "error" else "internal_error"
            row.update({"reward": 0.0, "reward_source": source,
                        "reward_info": {"failure": failure, "error": outcome.error}})
        summary.add(rec.task, row["reward_source"], float(row["reward"]), row["reward_info"].get("failure"))
        if bar is not None:
            bar.update(1)
        yield row


def progress_bar(total: int, enabled: bool | None, *, initial: int = 0, unit: str = "item",
                 desc: str | None = None) -> Any:
    """A tqdm bar on stderr, or None when ``enabled`` is False (None: only when stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: workers are forked while the bar runs
    return tqdm(total=total, initial=initial, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)


def write_records_atomic(path: str, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` as JSONL (or Parquet by extension) to ``path`` via a temp file and a rename:
    readers never see a half-written file, and an interrupted write leaves nothing behind."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(f"{path}: output directory {directory} does not exist")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        if path.endswith(".parquet"):
            _write_parquet(tmp, list(rows))
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_parquet(path: str, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # reward_info differs per source; store it as JSON text so the schema is stable.
    flat = [{**r, "reward_info": json.dumps(r["reward_info"])} if "reward_info" in r else r for r in rows]
    pq.write_table(pa.Table.from_pylist(flat), path)


def _write_errors(path: str, errors: list[RecordError]) -> None:
    if not errors:
        if os.path.exists(path):
            os.unlink(path)  # a stale side file from an earlier run would describe another input
        return
    write_records_atomic(path, (e.to_dict() for e in errors))
