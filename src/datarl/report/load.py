"""Reading a run directory for the report: tolerant of missing files, bad lines and absent keys.

Layout (written by ``datarl train`` and ``datarl select``): ``config.json``, ``metrics.jsonl`` (one line per
PPO step), ``eval.jsonl`` (one line per evaluation; step 0 = the policy before training), optional
``summary.json`` and ``selection/report.json``. Every problem found becomes a line in ``RunData.problems``
shown in the report header; only a missing run directory is an error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datarl.errors import UserError
from datarl.rl.eval_result import EvalResult, number

TASK_ORDER = ("math", "code", "ifeval", "general")
Z95 = 1.959964


class ReportError(UserError):
    """The report cannot be written at all (e.g. the run directory does not exist)."""


@dataclass
class RunData:
    run_dir: Path
    config: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    judges: dict[str, dict[str, Any]] = field(default_factory=dict)  # judge directory -> its datarl_genrm.json
    problems: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[EvalResult]:
        """``evals`` read as evaluation results (gold per task, paired gains)."""
        return [EvalResult.from_row(row) for row in self.evals]


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name}: unreadable ({exc}); ignored")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name}: expected a JSON object, got {type(data).__name__}; ignored")
        return None
    return data


def _read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows, bad = [], 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        problems.append(f"{path.name}: unreadable ({exc}); ignored")
        return []
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1  # a run killed mid-write leaves a partial last line
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)) and not isinstance(row["step"], bool):
            rows.append(row)
        else:
            bad += 1
    if bad:
        problems.append(f"{path.name}: {bad} unreadable line(s) (bad JSON or no 'step') skipped")
    rows.sort(key=lambda r: r["step"])
    return rows


def load_run(run_dir: str | Path) -> RunData:
    """Read everything the report shows; raises :class:`ReportError` only when ``run_dir`` is not a directory."""
    path = Path(run_dir)
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise ReportError(f"run directory {path} {what}; pass the directory `datarl train` wrote")
    run = RunData(run_dir=path)
    run.config = _read_json(path / "config.json", run.problems)
    run.metrics = _read_jsonl(path / "metrics.jsonl", run.problems)
    run.evals = _read_jsonl(path / "eval.jsonl", run.problems)
    run.summary = _read_json(path / "summary.json", run.problems)
    run.selection = _read_json(path / "selection" / "report.json", run.problems)
    run.judges = _read_judges(run.config, path, run.problems)
    for name, present in (
        ("config.json", run.config is not None),
        ("metrics.jsonl", bool(run.metrics)),
        ("eval.jsonl", bool(run.evals)),
    ):
        if not present:
            run.problems.append(f"{name}: missing or empty")
    return run


def series(rows: Iterable[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows that have a finite number under ``key``."""
    xs, ys = [], []
    for row in rows:
        y = number(row.get(key))
        if y is not None:
            xs.append(float(row["step"]))
            ys.append(y)
    return xs, ys


def ordered(names: Iterable[str]) -> list[str]:
    """Tasks in the usual order (math, code, ifeval, general), others after them alphabetically."""
    unique = set(names)
    known = [t for t in TASK_ORDER if t in unique]
    return known + sorted(unique - set(known))


def suffixes(rows: Iterable[Mapping[str, Any]], pattern: str) -> list[str]:
    """The ``<name>`` parts of keys matching ``pattern`` (a regex with one group), e.g. ``gold/([^/]+)``."""
    rx = re.compile(pattern)
    found = {m.group(1) for row in rows for key in row if (m := rx.fullmatch(key))}
    return ordered(found)


def _read_judges(config: Mapping[str, Any] | None, run_dir: Path, problems: list[str]) -> dict[str, dict[str, Any]]:
    """The metadata of every local GenRM judge the run's reward sources name (``sources.genrm.*.judge``)."""
    sources = find_key(config, "sources")
    judges: dict[str, dict[str, Any]] = {}
    if not isinstance(sources, Mapping):
        return judges
    for name, opts in sources.items():
        spec = opts.get("judge") if isinstance(opts, Mapping) and str(name).startswith("genrm.") else None
        if not isinstance(spec, str) or spec in judges:
            continue
        found = [d / "datarl_genrm.json" for d in (Path(spec), run_dir / spec) if (d / "datarl_genrm.json").is_file()]
        if found:
            meta_path = found[0]
            meta = _read_json(meta_path, problems)
            if meta is not None:
                judges[spec] = meta
    return judges


def find_key(config: Mapping[str, Any] | None, key: str) -> Any:
    """The first value under ``key`` in a nested config, shallowest first; None if absent."""
    level: list[Mapping[str, Any]] = [config] if isinstance(config, Mapping) else []
    while level:
        for node in level:
            if key in node:
                return node[key]
        level = [v for node in level for v in node.values() if isinstance(v, Mapping)]
    return None


# ----------------------------------------------------------------------------- before / after


def gold_tasks(results: Iterable[EvalResult]) -> list[str]:
    """The tasks with a gold score in any evaluation, in the usual order."""
    return ordered(task for r in results for task in r.gold)


def _stat_from_eval(result: EvalResult, task: str) -> dict[str, Any] | None:
    score = result.gold.get(task)
    return None if score is None else {**score.to_dict(), "step": result.step}


def _mean_gold(result: EvalResult, tasks: list[str]) -> float:
    values = [result.gold[t].mean for t in tasks if t in result.gold]
    return sum(values) / len(values) if values else -math.inf


def before_after(run: RunData) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, int | None]]:
    """Per task, the gold score before training, after (final) and at the best evaluation, and the paired
    differences ``gain_after`` / ``gain_best`` ({diff, low, high, paired}) where the run computed them.

    ``summary.json``'s blocks win where present; otherwise they are read from ``eval.jsonl``: before = step 0
    (else the first evaluation), after = the last, best = ``summary.best_step`` or the evaluation with the
    highest mean gold over tasks. Returns (tasks, {task: {"before", "after", "best": stat or None}},
    {"after": step, "best": step}).
    """
    evals, summary = run.results, run.summary or {}
    tasks = gold_tasks(evals)
    for block in ("before", "after", "best"):
        if isinstance(summary.get(block), Mapping):
            tasks = ordered([*tasks, *summary[block]])
    rows: dict[str, EvalResult | None] = {"before": None, "after": None, "best": None}
    if evals:
        rows["before"] = next((r for r in evals if r.step == 0), evals[0])
        rows["after"] = evals[-1]
        best_step = summary.get("best_step")
        rows["best"] = next((r for r in evals if r.step == best_step), None) or max(
            evals, key=lambda r: _mean_gold(r, tasks)
        )
    after, best = rows["after"], rows["best"]
    steps = {
        "after": after.step if after else summary.get("steps"),
        "best": best.step if best else summary.get("best_step"),
    }
    if isinstance(summary.get("best_step"), int):
        steps["best"] = summary["best_step"]
    table: dict[str, dict[str, Any]] = {}
    for task in tasks:
        table[task] = {}
        for block, row in rows.items():
            given = (summary.get(block) or {}).get(task) if isinstance(summary.get(block), Mapping) else None
            if isinstance(given, Mapping) and number(given.get("mean")) is not None:
                table[task][block] = {k: given.get(k) for k in ("mean", "ci95_low", "ci95_high", "n")}
            else:
                table[task][block] = _stat_from_eval(row, task) if row else None
        for block in ("after", "best"):  # the paired difference vs step 0, where the run computed it
            given = (
                (summary.get(f"gain_{block}") or {}).get(task)
                if isinstance(summary.get(f"gain_{block}"), Mapping)
                else None
            )
            result = rows[block]
            if not isinstance(given, Mapping) and result is not None and task in result.gains:
                given = result.gains[task].to_dict()
            gain = None
            if isinstance(given, Mapping) and None not in (
                number(given.get(k)) for k in ("diff", "ci95_low", "ci95_high")
            ):
                gain = {
                    "diff": number(given["diff"]),
                    "low": number(given["ci95_low"]),
                    "high": number(given["ci95_high"]),
                    "paired": True,
                }
            table[task][f"gain_{block}"] = gain
    return tasks, table, steps


def difference(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, float] | None:
    """after - before, with an approximate 95% CI: each interval's half-width / 1.96 taken as its standard
    error, combined as independent (normal approximation; Wilson intervals are not symmetric)."""
    if not before or not after:
        return None
    b, a = number(before.get("mean")), number(after.get("mean"))
    if a is None or b is None:
        return None
    out = {"diff": a - b}
    ses = []
    for stat in (before, after):
        lo, hi = number(stat.get("ci95_low")), number(stat.get("ci95_high"))
        if lo is None or hi is None:
            return out
        ses.append((hi - lo) / (2 * Z95))
    half = Z95 * math.hypot(*ses)
    out.update(low=a - b - half, high=a - b + half)
    return out
