"""A study's results: per-prompt scores read from every run, the comparisons with their intervals, the
final score per arm, curves, and the run matrix; written as ``results.json`` (every statistic),
``timings.json`` (the run matrix with times), ``results.md`` (the tables, ready to paste) and ``study.html``.

Scores are paired by prompt: a run's evaluation at step k writes ``train/eval/step_<k>.jsonl`` with the gold
score (and, where the training reward is learned, the proxy) of every eval prompt; every arm and seed scores
the same prompts, so a comparison uses per-prompt differences between the arm and the baseline of the same
seed. Statistics are :mod:`datarl.metrics.compare` (``scipy.stats.bootstrap``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.io import write_bytes
from datarl.metrics.compare import MIN_SEEDS, decide, iqm, seed_interval, stratified_interval
from datarl.pipeline.ledger import file_digest
from datarl.study.plan import read_compact
from datarl.study.spec import HIGHER_IS_BETTER, METRICS, RATIO_METRICS, SEED_ONLY_METRICS, RunSpec, StudySpec

__all__ = ["RunScores", "load_run_scores", "write_compact", "compute_results", "run_matrix", "results_markdown"]

IQM_MIN_SEEDS = 5  # below this the per-seed values are listed instead


@dataclass
class RunScores:
    """One run's evaluations: step -> task -> prompt key -> score, for gold and for the hacking gap; and its
    cost so far after each step (``progress``: step -> ``rollouts``, ``seconds`` of PPO steps)."""

    arm: str
    seed: int
    gold: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    gap: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    progress: dict[int, dict[str, float]] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    world: dict[str, str] = field(default_factory=dict)  # WORLD_STAGES -> digest of what it built
    finished: bool = False

    @property
    def steps(self) -> list[int]:
        return sorted(self.gold)

    def last(self, kind: str) -> dict[str, dict[str, float]]:
        """Per task, per prompt: ``gold`` or ``gap`` at the last evaluation, or ``gap_growth`` (the gap at the
        last evaluation minus the gap at the first, for prompts evaluated at both)."""
        table = self.gold if kind == "gold" else self.gap
        if not table:
            return {}
        final = table[max(table)]
        if kind != "gap_growth":
            return final
        first = table[min(table)]
        return {
            task: {p: v - first[task][p] for p, v in rows.items() if p in first.get(task, {})}
            for task, rows in final.items()
        }


def load_run_scores(run: RunSpec) -> RunScores:
    """Every evaluation of the run: from its compact results once it has finished (see
    :func:`write_compact`), else from its run directory (none yet: empty)."""
    compact = read_compact(run)
    if compact is not None and compact.get("config") == run.mapping:
        return RunScores(
            run.arm,
            run.seed,
            gold=_int_steps(compact["gold"]),
            gap=_int_steps(compact["gap"]),
            progress=_int_steps(compact.get("progress") or {}),  # absent in compact results before it existed
            stages=compact["stages"],
            world=compact.get("world") or {},  # absent in compact results written before it existed
            finished=True,
        )
    return _from_run_dir(run)


def _int_steps(table: Mapping[str, Any]) -> dict[int, dict[str, dict[str, float]]]:
    return {int(step): tasks for step, tasks in table.items()}


def write_compact(run: RunSpec, seconds: float) -> None:
    """The finished run's compact results (config, per-prompt gold and gap at every evaluation, the stages'
    times), gzipped JSON at :attr:`RunSpec.compact_path` (byte-identical for identical runs: no timestamp in
    the gzip header; times are in ``stages`` and ``seconds`` only). The stages' fingerprints are kept so a
    later session that recomputes the shared stages can check it got the same ones."""
    scores = _from_run_dir(run)
    blob = {
        "config": run.mapping,
        "arm": run.arm,
        "seed": run.seed,
        "seconds": round(seconds, 1),
        "gold": {str(k): v for k, v in sorted(scores.gold.items())},
        "gap": {str(k): v for k, v in sorted(scores.gap.items())},
        "progress": {str(k): v for k, v in sorted(scores.progress.items())},
        "world": scores.world,
        "stages": {
            stage: {k: entry[k] for k in ("fingerprint", "seconds", "shared_from", "saved_seconds") if k in entry}
            for stage, entry in scores.stages.items()
        },
    }
    data = json.dumps(blob, sort_keys=True).encode()
    os.makedirs(os.path.dirname(run.compact_path), exist_ok=True)
    write_bytes(run.compact_path, gzip.compress(data, mtime=0))


def _from_run_dir(run: RunSpec) -> RunScores:
    out = RunScores(run.arm, run.seed)
    eval_dir = os.path.join(run.run_dir, "train", "eval")
    names = sorted(os.listdir(eval_dir)) if os.path.isdir(eval_dir) else []
    for name in names:
        if not (name.startswith("step_") and name.endswith(".jsonl")):
            continue
        step = int(name[5:-6])
        gold: dict[str, dict[str, float]] = {}
        gap: dict[str, dict[str, float]] = {}
        with open(os.path.join(eval_dir, name), encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                item = json.loads(line)
                task, key = str(item.get("task")), str(item.get("id") or item["index"])
                if item.get("gold") is None:
                    continue
                gold.setdefault(task, {})[key] = float(item["gold"])
                if item.get("proxy") is not None:
                    gap.setdefault(task, {})[key] = float(item["proxy"]) - float(item["gold"])
        out.gold[step] = gold
        if gap:
            out.gap[step] = gap
    out.progress = _progress(os.path.join(run.run_dir, "train", "metrics.jsonl"))
    ledger = os.path.join(run.run_dir, "stages.json")
    if os.path.exists(ledger):
        with open(ledger, encoding="utf-8") as fh:
            out.stages = json.load(fh)
        out.world = _world(out.stages)
    return out


WORLD_STAGES = ("synth", "sft", "bt", "genrm")
"""The stages whose outputs make a run's world (the suite and the models trained on it). Their fingerprints
are of their configs, but a model's weights also depend on the machine's floating-point sums (the thread count
among them), so runs of one study that rebuilt a stage elsewhere can differ with equal fingerprints: the
digests of what these stages built tell."""


def _world(stages: Mapping[str, Any]) -> dict[str, str]:
    """Per world stage that ran: a digest of its outputs (a model directory: its weight files only; metadata
    such as build times left out)."""
    out = {}
    for stage in WORLD_STAGES:
        paths = (stages.get(stage) or {}).get("outputs") or []
        if paths and all(os.path.exists(p) for p in paths):
            out[stage] = _digest(paths)
    return out


def _digest(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for path in paths:
        if os.path.isdir(path):
            names = sorted(
                os.path.join(root, f)
                for root, _, files in os.walk(path)
                for f in files
                if f.endswith((".safetensors", ".bin"))
            )
        else:
            names = [path]
        for name in names:
            h.update(file_digest(name).encode())
    return h.hexdigest()[:16]


def world_check(runs: Sequence[RunScores]) -> dict[str, Any]:
    """Whether every run of the study had the same world (:data:`WORLD_STAGES`): ``same``, ``mixed`` (the
    groups of runs per world) or ``unverified`` (some runs carry no digests: results written before they
    were recorded)."""
    known = [r for r in runs if r.world]
    unknown = sorted(f"{r.arm}/seed-{r.seed}" for r in runs if not r.world and (r.finished or r.stages))
    groups: dict[str, list[str]] = {}
    for r in known:
        key = json.dumps(r.world, sort_keys=True)
        groups.setdefault(key, []).append(f"{r.arm}/seed-{r.seed}")
    if len(groups) > 1:
        return {"status": "mixed", "groups": [sorted(g) for g in groups.values()], "unverified": unknown}
    return {"status": "unverified" if unknown else "same", "unverified": unknown}


def _progress(path: str) -> dict[int, dict[str, float]]:
    """After each completed step: rollouts so far (``difficulty/rollouts``, logged since the difficulty state
    exists) and the summed seconds of the PPO steps (``perf/step_s``: evaluations excluded, and a resumed run's
    steps count once). Empty when the run logged no rollout counts."""
    if not os.path.exists(path):
        return {}
    out: dict[int, dict[str, float]] = {0: {"rollouts": 0.0, "seconds": 0.0}}
    seconds = 0.0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if "difficulty/rollouts" not in row:
                return {}
            seconds += float(row.get("perf/step_s") or 0.0)
            out[int(row["step"]) + 1] = {"rollouts": float(row["difficulty/rollouts"]), "seconds": round(seconds, 3)}
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _r(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def _paired(a: Mapping[str, float], b: Mapping[str, float]) -> list[float]:
    return [a[k] - b[k] for k in sorted(set(a) & set(b))]


def _steps_to(run: RunScores, task: str, target: float) -> tuple[int, bool]:
    """First eval step whose mean gold on ``task`` reaches ``target``; (censored step, False) if none."""
    steps = run.steps
    for step in steps:
        values = list(run.gold[step].get(task, {}).values())
        if values and _mean(values) >= target - 1e-12:
            return step, True
    gap = steps[-1] - steps[-2] if len(steps) > 1 else 1
    return (steps[-1] + gap if steps else 0), False


OVERALL = "overall"  # a comparison "task": the macro average over the tasks every run of both arms evaluated


def _compare_prompts(kind: str, arm: list[RunScores], base: list[RunScores], task: str) -> dict[str, Any] | None:
    """Per-prompt paired differences at the last evaluation; ``overall`` gives every task equal weight (the
    strata are then (seed, task): the mean of their means is the mean over seeds of the macro average)."""
    strata, per_seed, n = [], {}, 0
    base_by_seed = {r.seed: r for r in base}
    pairs = [(run, base_by_seed[run.seed]) for run in arm if run.seed in base_by_seed]
    if task == OVERALL:
        common = [set(r.last(kind)) & set(o.last(kind)) for r, o in pairs]
        tasks = sorted(set.intersection(*common)) if common else []
    else:
        tasks = [task]
    for run, other in pairs:
        per_task = [_paired(run.last(kind).get(t, {}), other.last(kind).get(t, {})) for t in tasks]
        per_task = [d for d in per_task if d]
        if per_task:
            strata.extend(per_task)
            per_seed[run.seed] = _mean([_mean(d) for d in per_task])
            n = max(n, sum(len(d) for d in per_task))
    if not strata:
        return None
    est, low, high = stratified_interval(strata, seed=0)
    out = {"difference": est, "low": low, "high": high, "per_seed": per_seed, "prompts": n}
    _, out["seed_low"], out["seed_high"] = seed_interval(list(per_seed.values()), seed=0)
    return out


def _per_seed_result(per_seed: dict[int, float], not_reached: int) -> dict[str, Any] | None:
    """A metric with one value per seed: their mean and its interval over seeds (the only interval)."""
    if not per_seed:
        return None
    est, low, high = seed_interval(list(per_seed.values()), seed=0)
    return {
        "difference": est,
        "low": low,
        "high": high,
        "seed_low": low,
        "seed_high": high,
        "per_seed": per_seed,
        "not_reached": not_reached,
    }


def _cost(run: RunScores, step: int, reached: bool, key: str) -> float | None:
    """``key`` (rollouts or seconds) spent up to ``step``; a run that never reached the target is charged its
    total plus one evaluation interval's worth at its average rate (as :func:`_steps_to` adds an interval)."""
    if reached:
        return (run.progress.get(step) or {}).get(key)
    last = max(run.progress) if run.progress else None
    if not last:
        return None
    return run.progress[last][key] * step / last


def _compare_cost(arm: list[RunScores], base: list[RunScores], task: str, key: str) -> dict[str, Any] | None:
    """Per seed, the arm's cost (rollouts or seconds) to reach the baseline's final mean gold over the
    baseline's own cost to reach it; the mean ratio and its interval over seeds."""
    per_seed, not_reached = {}, 0
    base_by_seed = {r.seed: r for r in base}
    for run in arm:
        other = base_by_seed.get(run.seed)
        final = list(other.last("gold").get(task, {}).values()) if other is not None and other.steps else []
        if not final or not run.steps or not run.progress or not other.progress:
            continue
        target = _mean(final)
        mine = _cost(run, *_steps_to(run, task, target), key)
        step, reached = _steps_to(other, task, target)
        theirs = _cost(other, step, reached, key)
        if mine is None or not theirs:
            continue
        not_reached += not _steps_to(run, task, target)[1]
        per_seed[run.seed] = mine / theirs
    return _per_seed_result(per_seed, not_reached)


def _compare_steps(arm: list[RunScores], base: list[RunScores], task: str) -> dict[str, Any] | None:
    per_seed, not_reached = {}, 0
    base_by_seed = {r.seed: r for r in base}
    for run in arm:
        other = base_by_seed.get(run.seed)
        if other is None or not other.steps or not run.steps:
            continue
        final = list(other.last("gold").get(task, {}).values())
        if not final:
            continue
        target = _mean(final)
        mine, reached = _steps_to(run, task, target)
        theirs, _ = _steps_to(other, task, target)
        not_reached += not reached
        per_seed[run.seed] = float(mine - theirs)
    return _per_seed_result(per_seed, not_reached)


def compute_results(spec: StudySpec, runs: Sequence[RunScores]) -> dict[str, Any]:
    """Every number of the study, from the runs' per-prompt scores (see the module docstring)."""
    by_arm: dict[str, list[RunScores]] = {a: [r for r in runs if r.arm == a] for a in spec.arms}
    comparisons = []
    for comp in spec.comparisons:
        arm, base = by_arm[comp.arm], by_arm[comp.vs]
        kind = {"hacking_gap": "gap", "hacking_gap_growth": "gap_growth"}.get(comp.metric, "gold")
        tasks = list(comp.tasks) or sorted({t for r in arm + base for t in r.last(kind)})
        for task in tasks:
            if comp.metric == "steps_to_baseline":
                found = _compare_steps(arm, base, task)
            elif comp.metric in RATIO_METRICS:
                found = _compare_cost(arm, base, task, comp.metric.split("_")[0])
            else:
                found = _compare_prompts(kind, arm, base, task)
            row: dict[str, Any] = {"metric": comp.metric, "arm": comp.arm, "vs": comp.vs, "task": task}
            if found is None:
                comparisons.append({**row, "verdict": "no data"})
                continue
            est, low, high = found["difference"], found["low"], found["high"]
            null = 1.0 if comp.metric in RATIO_METRICS else 0.0  # a ratio is decided against 1
            sign = [v for v in found["per_seed"].values() if est != null and (v > null) == (est > null) and v != null]
            n_seeds = len(found["per_seed"])
            call, why = decide(
                est - null,
                (low - null, high - null),
                (found["seed_low"] - null, found["seed_high"] - null),
                n_seeds,
                HIGHER_IS_BETTER[comp.metric],
            )
            why = why.replace("exclude 0", "exclude 1") if null else why
            widths = [(high - low) / 2] + (
                [(found["seed_high"] - found["seed_low"]) / 2] if n_seeds >= MIN_SEEDS else []
            )
            row.update(
                {
                    "difference": _r(est),
                    "low": _r(low),
                    "high": _r(high),
                    "half_width": _r(max(widths)),
                    "per_seed": {str(k): _r(v) for k, v in sorted(found["per_seed"].items())},
                    "seeds": n_seeds,
                    "seeds_agreeing": len(sign),
                    "verdict": call,
                    "why": why,
                    **{k: found[k] for k in ("prompts", "not_reached") if k in found},
                    **{k: _r(found[k]) for k in ("seed_low", "seed_high") if k in found},
                }
            )
            comparisons.append(row)
    final: dict[str, dict[str, Any]] = {}
    for arm, arm_runs in by_arm.items():
        tasks = sorted({t for r in arm_runs for t in r.last("gold")})
        for task in tasks:
            strata = {r.seed: list(r.last("gold").get(task, {}).values()) for r in arm_runs}
            strata = {s: v for s, v in strata.items() if v}
            est, low, high = stratified_interval(list(strata.values()), seed=0)
            per_seed = {str(s): _r(_mean(v)) for s, v in sorted(strata.items())}
            entry = {"mean": _r(est), "low": _r(low), "high": _r(high), "per_seed": per_seed}
            if len(strata) >= IQM_MIN_SEEDS:
                entry["iqm"] = _r(iqm([_mean(v) for v in strata.values()]))
            final.setdefault(arm, {})[task] = entry
    return {
        "study": spec.path,
        "study_dir": spec.study_dir,
        "digest": spec.digest(),
        "seeds": list(spec.seeds),
        "baseline": spec.baseline,
        "arms": list(spec.arms),
        "metrics": {m: METRICS[m] for m in sorted({c.metric for c in spec.comparisons})},
        "interval": "95% percentile bootstraps (scipy.stats.bootstrap, 2000 resamples, rng seed 0): the "
        "difference's interval resamples prompts within each seed; 'seeds alone' resamples the per-seed "
        f"differences ({', '.join(SEED_ONLY_METRICS)} have only the latter; the ratios' are of the mean ratio)",
        "comparisons": comparisons,
        "final": final,
        "curves": {arm: _curves(arm_runs, "gold") for arm, arm_runs in by_arm.items()},
        "hacking_gap": {arm: _curves(arm_runs, "gap") for arm, arm_runs in by_arm.items()},
        "runs": [{"arm": r.arm, "seed": r.seed, "evaluated_steps": r.steps} for r in runs],
        "world": world_check(runs),
    }


def run_matrix(runs: Sequence[RunScores]) -> dict[str, Any]:
    """``timings.json``: each run's status and seconds, and what linking the shared stages saved (times vary
    between machines and between an interrupted study and a whole one, so they are not in ``results.json``)."""
    return {"runs": [_run_row(r) for r in runs], "sharing": _sharing(runs)}


def _curves(runs: Sequence[RunScores], kind: str) -> dict[str, Any]:
    """task -> steps, and the mean/min/max over seeds of the per-run mean at each step."""
    out: dict[str, Any] = {}
    tasks = sorted({t for r in runs for step in (r.gold if kind == "gold" else r.gap).values() for t in step})
    for task in tasks:
        by_step: dict[int, list[float]] = {}
        for r in runs:
            for step, table in (r.gold if kind == "gold" else r.gap).items():
                if table.get(task):
                    by_step.setdefault(step, []).append(_mean(list(table[task].values())))
        steps = sorted(by_step)
        out[task] = {
            "steps": steps,
            "mean": [_r(_mean(by_step[s])) for s in steps],
            "min": [_r(min(by_step[s])) for s in steps],
            "max": [_r(max(by_step[s])) for s in steps],
            "runs": [len(by_step[s]) for s in steps],
        }
    return out


def _run_row(run: RunScores) -> dict[str, Any]:
    computed = sum(float(e.get("seconds") or 0) for e in run.stages.values() if not e.get("shared_from"))
    saved = sum(float(e.get("saved_seconds") or 0) for e in run.stages.values() if e.get("shared_from"))
    return {
        "arm": run.arm,
        "seed": run.seed,
        "status": "finished" if run.finished else ("started" if run.stages else "not started"),
        "last_step": run.steps[-1] if run.steps else None,
        "computed_seconds": round(computed, 1),
        "linked_seconds_saved": round(saved, 1),
        "stages": {
            s: ("linked" if e.get("shared_from") else f"{e.get('seconds', 0)} s") for s, e in run.stages.items()
        },
    }


def _sharing(runs: Sequence[RunScores]) -> dict[str, Any]:
    rows = [_run_row(r) for r in runs]
    computed = sum(r["computed_seconds"] for r in rows)
    saved = sum(r["linked_seconds_saved"] for r in rows)
    return {
        "computed_seconds": round(computed, 1),
        "saved_seconds": round(saved, 1),
        "alone_seconds": round(computed + saved, 1),
        "note": "saved: the seconds the linked stages took where they were computed, once per run that linked them",
    }


def _f(x: Any, digits: int = 3, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _world_lines(check: Mapping[str, Any]) -> list[str]:
    if check.get("status") == "mixed":
        groups = "; ".join(", ".join(g) for g in check["groups"])
        return [
            f"**Warning: the runs did not share one world** (suite or models built differently: {groups}); "
            "comparisons across these groups mix the effect with the difference in worlds.",
            "",
        ]
    if check.get("unverified"):
        return [f"World not verified for {', '.join(check['unverified'])} (results written before digests).", ""]
    return []


def results_markdown(results: Mapping[str, Any], timings: Mapping[str, Any]) -> str:
    """The tables of ``results.json`` and ``timings.json`` as Markdown."""
    lines = [
        f"# Study `{os.path.basename(results['study'])}`",
        "",
        f"Seeds {results['seeds']}; baseline `{results['baseline']}`; {results['interval']}. A difference is "
        f"called better or worse only with at least {MIN_SEEDS} seeds and when both intervals exclude 0; "
        "otherwise the larger half-width is the smallest difference this study could have resolved.",
        "",
        *_world_lines(results.get("world") or {}),
        "## Comparisons",
        "",
        "| metric | arm vs baseline | task | difference [95% CI] | per seed | seeds agreeing | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in results["comparisons"]:
        if c.get("verdict") == "no data":
            lines.append(f"| {c['metric']} | {c['arm']} vs {c['vs']} | {c['task']} | – | – | – | no data |")
            continue
        digits = 1 if c["metric"] == "steps_to_baseline" else 2 if c["metric"] in RATIO_METRICS else 3
        sg = c["metric"] not in RATIO_METRICS  # a ratio (x) is unsigned; a difference signed
        x = "" if sg else "x"
        ci = f"{_f(c['difference'], digits, sg)}{x} [{_f(c['low'], digits, sg)}, {_f(c['high'], digits, sg)}]"
        seeds = ", ".join(f"{k}: {_f(v, digits, sg)}{x}" for k, v in c["per_seed"].items())
        if c.get("seed_low") is not None and c["metric"] not in SEED_ONLY_METRICS:
            seeds += f"; seeds alone [{_f(c['seed_low'], digits, sg)}, {_f(c['seed_high'], digits, sg)}]"
        call = c["verdict"]
        if call == "no difference resolved" and c.get("half_width") is not None:
            call += f" (±{_f(c['half_width'], digits)}; {c['why']})"
        lines.append(
            f"| {c['metric']} | {c['arm']} vs {c['vs']} | {c['task']} | {ci} | {seeds} | "
            f"{c['seeds_agreeing']}/{c['seeds']} | {call} |"
        )
    lines += ["", "## Final gold per arm (last evaluation)", "", "| arm | task | mean [95% CI] | per seed | IQM |"]
    lines.append("|---|---|---|---|---|")
    for arm, tasks in results["final"].items():
        for task, e in tasks.items():
            seeds = ", ".join(f"{k}: {_f(v)}" for k, v in e["per_seed"].items())
            lines.append(
                f"| {arm} | {task} | {_f(e['mean'])} [{_f(e['low'])}, {_f(e['high'])}] | {seeds} | {_f(e.get('iqm'))} |"
            )
    lines += [
        "",
        "## Runs",
        "",
        "| run | status | last step | computed (s) | saved by linking (s) |",
        "|---|---|---|---|---|",
    ]
    for r in timings["runs"]:
        lines.append(
            f"| {r['arm']}/seed-{r['seed']} | {r['status']} | {r['last_step'] if r['last_step'] is not None else '–'} "
            f"| {r['computed_seconds']:.0f} | {r['linked_seconds_saved']:.0f} |"
        )
    s = timings["sharing"]
    lines += [
        "",
        f"Shared stages: {s['computed_seconds']:.0f} s computed in all; the runs alone would have taken "
        f"{s['alone_seconds']:.0f} s ({s['saved_seconds']:.0f} s saved by linking).",
        "",
    ]
    return "\n".join(lines)
