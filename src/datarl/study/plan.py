"""What a study will do before it does it: the run matrix, which stages are shared, what is left, and a
time estimate from measured costs.

A stage's *plan key* is its fingerprint computed from configs alone: its config section (run directory
written as ``$RUN_DIR``), the contents of files from outside the run (your data, your pairs), and its
upstream stages' keys. Runs whose key for a shareable stage is equal get the same outputs, so the stage is
computed once (by a *leader* run) and linked into the others. Stages are computed in *waves*, one per
shareable stage in pipeline order, so a stage's leader finds every stage before it already stored.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datarl.pipeline.ledger import Ledger, fingerprint
from datarl.pipeline.stages import STAGES
from datarl.pipeline.store import run_relative
from datarl.study.spec import RunSpec, StudySpec

__all__ = ["Plan", "make_plan", "measured_costs", "estimate_seconds", "describe", "run_finished", "read_compact"]
_STAGE_NAMES = list(STAGES)


def plan_keys(run: RunSpec) -> dict[str, str]:
    """Stage -> plan key for every stage the run's pipeline has (synth and sft only on the embedded default)."""
    cfg = run.config()
    ledger = Ledger(os.path.join(cfg.run_dir, "stages.json"))
    keys: dict[str, str] = {}
    upstream: list[str] = []
    for stage, make in STAGES.items():
        fn, section, inputs = make(cfg, ledger)
        if fn is None:
            continue
        outside = [p for p in inputs if not os.path.abspath(p).startswith(cfg.run_dir + os.sep)]
        keys[stage] = fingerprint(run_relative(section, cfg.run_dir), outside, upstream)
        upstream.append(keys[stage])
    return keys


def next_stage(stage: str) -> str | None:
    i = _STAGE_NAMES.index(stage)
    return _STAGE_NAMES[i + 1] if i + 1 < len(_STAGE_NAMES) else None


def run_finished(run: RunSpec) -> bool:
    """The run went to the end with this config (its compact results exist: :attr:`RunSpec.compact_path`)."""
    compact = read_compact(run)
    return compact is not None and compact.get("config") == run.mapping


def read_compact(run: RunSpec) -> dict[str, Any] | None:
    """The run's compact results (``None`` when it has not finished)."""
    if not os.path.exists(run.compact_path):
        return None
    with gzip.open(run.compact_path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


@dataclass(frozen=True)
class Plan:
    """keys: run name -> stage -> plan key. waves: (stage, leader runs) in order; each leader computes the
    stage (stopping before the next) where it is not stored yet. finished: runs already done."""

    spec: StudySpec
    keys: dict[str, dict[str, str]]
    waves: list[tuple[str, list[RunSpec]]]
    finished: list[str]

    def groups(self, stage: str) -> dict[str, list[str]]:
        """Plan key -> the runs that share it, for ``stage``."""
        out: dict[str, list[str]] = {}
        for run in self.spec.runs:
            key = self.keys[run.name].get(stage)
            if key is not None:
                out.setdefault(key, []).append(run.name)
        return out


def make_plan(spec: StudySpec) -> Plan:
    keys = {run.name: plan_keys(run) for run in spec.runs}
    finished = [run.name for run in spec.runs if run_finished(run)]
    waves: list[tuple[str, list[RunSpec]]] = []
    for stage in _STAGE_NAMES:
        if stage not in spec.share:
            continue
        leaders: dict[str, RunSpec | None] = {}
        for run in spec.runs:
            key = keys[run.name].get(stage)
            if key is None or run.name in finished:
                continue
            if _done(run, stage):
                leaders[key] = None  # computed already (an earlier, interrupted study): nothing to do
            leaders.setdefault(key, run)  # the first run in matrix order computes it
        waves.append((stage, [run for run in leaders.values() if run is not None]))
    return Plan(spec, keys, waves, finished)


def _done(run: RunSpec, stage: str) -> bool:
    path = os.path.join(run.run_dir, "stages.json")
    return os.path.exists(path) and stage in Ledger(path).done


def measured_costs(run_dirs: list[str]) -> dict[str, float]:
    """Seconds per stage (``train``: per PPO step) computed (not linked) in these runs, averaged."""
    seen: dict[str, list[float]] = {}
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "stages.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            ledger = json.load(fh)
        for stage, entry in ledger.items():
            if entry.get("shared_from") or entry.get("seconds") is None:
                continue
            seconds = float(entry["seconds"])
            if stage == "train":
                steps = _ppo_steps(run_dir)
                if not steps:
                    continue
                seconds /= steps
            seen.setdefault(stage, []).append(seconds)
    return {stage: sum(v) / len(v) for stage, v in seen.items()}


def _ppo_steps(run_dir: str) -> int:
    path = os.path.join(run_dir, "train", "config.json")
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as fh:
        return int(((json.load(fh).get("ppo") or {}).get("steps")) or 0)


def _steps(mapping: Mapping[str, Any]) -> int:
    return int(((mapping.get("train") or {}).get("ppo") or {}).get("steps") or 40)


def estimate_seconds(plan: Plan, costs: Mapping[str, float], parallel: int = 1) -> tuple[float, float, list[str]]:
    """``(compute, wall, unknown)``: the seconds of work left (shared stages once, the rest per unfinished run),
    the wall time with ``parallel`` runs at once (a wave's leaders and the runs to the end share the slots;
    costs are taken as measured, so measure at the parallelism you will use), and the stages with no cost."""
    compute, wall, unknown = 0.0, 0.0, set()
    for stage, leaders in plan.waves:
        if stage not in costs:
            if leaders:
                unknown.add(stage)
            continue
        compute += costs[stage] * len(leaders)
        wall += costs[stage] * -(-len(leaders) // max(1, parallel))
    per_run = 0.0
    for run in plan.spec.runs:
        if run.name in plan.finished:
            continue
        for stage in plan.keys[run.name]:
            if stage in plan.spec.share or _done(run, stage):
                continue
            if stage not in costs:
                unknown.add(stage)
            else:
                per_run += costs[stage] * (_steps(run.mapping) if stage == "train" else 1)
    return compute + per_run, wall + per_run / max(1, parallel), sorted(unknown, key=_STAGE_NAMES.index)


def describe(plan: Plan, costs: Mapping[str, float], parallel: int = 1) -> str:
    """The ``--dry-run`` text: the matrix, what is shared, what is left, the estimate."""
    spec = plan.spec
    lines = [f"study {spec.path} -> {spec.study_dir}", f"runs ({len(spec.runs)}): arms x seeds {list(spec.seeds)}"]
    for run in spec.runs:
        state = "finished" if run.name in plan.finished else "to run"
        base = " (baseline)" if run.arm == spec.baseline else ""
        lines.append(f"  {run.name:<32} {state}{base}  {run.run_dir}")
    lines.append("stages (computed once per distinct config, linked into the runs that share it):")
    for stage in _STAGE_NAMES:
        groups = plan.groups(stage)
        if not groups:
            continue
        runs = sum(len(g) for g in groups.values())
        how = "shared" if stage in spec.share else "per run"
        lines.append(f"  {stage:<11} {how:<8} computed {len(groups) if stage in spec.share else runs}x for {runs} runs")
    compute, wall, unknown = estimate_seconds(plan, costs, parallel)
    estimate = f"about {wall / 60:.1f} min with --parallel {parallel} ({compute / 60:.1f} min of runs' work)"
    estimate += ", from measured costs"
    if unknown:
        estimate += f"; not counted (no measured cost yet): {', '.join(unknown)}"
    lines.append(f"time left: {estimate}")
    return "\n".join(lines)
