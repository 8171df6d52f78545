"""``datarl study STUDY.yaml``: run what is missing of a study, then its statistics.

1. The study directory is checked against the study file (a directory made by another study is an error)
   and every run gets its run file.
2. Shared stages are computed in waves, one per shareable stage: the first run of each group of equal stages
   computes it (up to the next stage) and the store links it into the others.
3. Every unfinished run goes to the end (``--parallel N`` at once, or one Ray task each); a finished run is
   marked and skipped next time, an interrupted one resumes from its ledger and checkpoints.
4. ``results.json``, ``timings.json``, ``results.md`` and ``study.html`` from every run's per-prompt scores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from datarl.io import write_json, write_text
from datarl.study.execute import Task, write_run_file
from datarl.study.html import study_html
from datarl.study.plan import Plan, describe, make_plan, measured_costs, next_stage
from datarl.study.results import (
    RunScores,
    compute_results,
    load_run_scores,
    results_markdown,
    run_matrix,
    write_compact,
)
from datarl.study.spec import RunSpec, StudyError, StudySpec

__all__ = ["run_study", "dry_run", "write_results", "STUDY_FILE"]

STUDY_FILE = "study.json"


def _claim(spec: StudySpec) -> None:
    """Make ``spec.study_dir`` this study's, or refuse one made by a different study."""
    path = os.path.join(spec.study_dir, STUDY_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            made = json.load(fh)
        if made.get("digest") != spec.digest():
            raise StudyError(
                f"{spec.study_dir}: made by a different study ({made.get('study_file')}: other arms, seeds or "
                "base config); give this study another study_dir (or --study-dir), or delete that folder"
            )
    os.makedirs(spec.study_dir, exist_ok=True)
    write_json(path, {"digest": spec.digest(), "study_file": spec.path, "arms": spec.arms, "seeds": list(spec.seeds)})


def _coalesce(plan: Plan) -> list[list[Task]]:
    """Waves as task lists; consecutive waves with the same leaders become one (fewer process starts)."""
    out: list[tuple[list[str], str]] = []
    leaders_of: dict[str, RunSpec] = {}
    for stage, leaders in plan.waves:
        names = [r.name for r in leaders]
        leaders_of.update({r.name: r for r in leaders})
        if not names:
            continue
        if out and out[-1][0] == names:
            out[-1] = (names, stage)
        else:
            out.append((names, stage))
    return [[(leaders_of[n], next_stage(stage)) for n in names] for names, stage in out]


def write_results(spec: StudySpec, runs: list[RunScores]) -> dict[str, Any]:
    """``results.json``, ``timings.json``, ``results.md`` and ``study.html`` in the study directory."""
    results, timings = compute_results(spec, runs), run_matrix(runs)
    write_json(os.path.join(spec.study_dir, "results.json"), results)
    write_json(os.path.join(spec.study_dir, "timings.json"), timings)
    write_text(os.path.join(spec.study_dir, "results.md"), results_markdown(results, timings))
    write_text(os.path.join(spec.study_dir, "study.html"), study_html(results, timings))
    return results


def dry_run(spec: StudySpec, costs_from: list[str] = (), parallel: int = 1) -> str:
    """The run matrix, what is shared, and a time estimate (nothing is written)."""
    plan = make_plan(spec)
    costs = measured_costs([r.run_dir for r in spec.runs] + list(costs_from))
    return describe(plan, costs, parallel)


def run_study(spec: StudySpec, executor: Any, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run what is missing, then write the results; returns ``results.json``'s content."""
    _claim(spec)
    for run in spec.runs:
        write_run_file(run, spec.study_dir, spec.share)
    plan = make_plan(spec)
    for name in plan.finished:
        log(f"{name}: finished earlier, skipped")
    total = len(spec.runs) - len(plan.finished)
    start = time.perf_counter()

    def check(failed: list[str]) -> None:
        if failed:
            raise StudyError(f"{len(failed)} run(s) failed: " + "; ".join(failed))

    for tasks in _coalesce(plan):
        stop = tasks[0][1]
        log(f"shared stages up to {stop or 'the end'}: {', '.join(r.name for r, _ in tasks)}")
        check(executor.run(tasks, lambda run, s, err: log(f"  {run.name}: {'FAILED' if err else 'done'} in {s:.0f} s")))
    done = [0]

    def finished(run: RunSpec, seconds: float, error: str | None) -> None:
        if error is None:
            write_compact(run, seconds)
            done[0] += 1
        log(
            f"[{done[0]}/{total}] {run.name}: {'FAILED: ' + error if error else 'finished'} in {seconds:.0f} s "
            f"(study {time.perf_counter() - start:.0f} s)"
        )

    todo = [(run, None) for run in spec.runs if run.name not in plan.finished]
    if todo:
        log(f"runs to the end: {len(todo)}")
    check(executor.run(todo, finished))
    results = write_results(spec, [load_run_scores(r) for r in spec.runs])
    log(f"results: {os.path.join(spec.study_dir, 'results.md')} and study.html")
    return results
