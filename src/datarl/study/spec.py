"""A study file: a base pipeline config, named arms as overrides of it, seeds, a baseline and comparisons.

```yaml
study_dir: runs/studies/smoke   # where runs, shared stages and results go (relative to the cwd)
base: ../demo.yaml              # a pipeline config (relative to this file), or the config itself as a mapping
overrides: {train.ppo.steps: 10}  # applied to every arm, before the arm's own
seeds: [0, 1]
seed_keys: [train.seed]         # what a seed sets (default: PPO's seed; the data and rewards stay shared)
arms:
  random: {select.strategy: random}
  prepo: {}                     # the base as it is
baseline: random
comparisons:                    # default: every arm vs the baseline on gold, every evaluated task
  - {metric: gold, tasks: [math, code]}
  - {metric: hacking_gap, tasks: [general]}
share: [synth, sft, pairs, bt, genrm, references, pool_scores, select]   # stages computed once where equal (default)
```

Overrides are dotted keys (``train.ppo.steps: 10``) or nested mappings (``train: {ppo: {steps: 10}}``);
a nested mapping merges into the base, any other value replaces. Every mistake is a one-line
:class:`StudyError` before any work: an unknown key (with a did-you-mean), an override of a section that
does not exist, an arm whose config the pipeline's own checks reject, two equal arms, a baseline that is not
an arm, no seeds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datarl.config import did_you_mean, load_config
from datarl.errors import ConfigError, UserError
from datarl.pipeline.config import PipelineConfig, pipeline_config_from_mapping

__all__ = [
    "METRICS",
    "RATIO_METRICS",
    "SEED_ONLY_METRICS",
    "SHAREABLE",
    "Comparison",
    "RunSpec",
    "StudyError",
    "StudySpec",
    "load_study",
    "apply_overrides",
]

METRICS = {
    "gold": "gold score per eval prompt at the last evaluation (higher is better)",
    "hacking_gap": "training reward minus gold per eval prompt at the last evaluation (lower is better)",
    "hacking_gap_growth": "the hacking gap per eval prompt at the last evaluation minus at the first (lower is "
    "better); unlike the gap itself, comparable across reward sources whose scores have different scales",
    "steps_to_baseline": "PPO steps until the run's mean gold first reaches the baseline's final mean gold, "
    "same seed (lower is better)",
    "rollouts_to_baseline": "rollouts (sampled responses) until the run's mean gold first reaches the baseline's "
    "final mean gold, as a ratio to the baseline's rollouts to the same gold, same seed (lower is better)",
    "seconds_to_baseline": "PPO step seconds (rollout, reward and update; evaluations excluded) until the run's "
    "mean gold first reaches the baseline's final mean gold, as a ratio to the baseline's, same seed "
    "(lower is better)",
}
HIGHER_IS_BETTER = {
    "gold": True,
    "hacking_gap": False,
    "hacking_gap_growth": False,
    "steps_to_baseline": False,
    "rollouts_to_baseline": False,
    "seconds_to_baseline": False,
}
RATIO_METRICS = ("rollouts_to_baseline", "seconds_to_baseline")
"""Metrics reported as a ratio arm / baseline (decided on whether its interval excludes 1)."""
SEED_ONLY_METRICS = ("steps_to_baseline", *RATIO_METRICS)
"""Metrics with one value per seed (no per-prompt interval)."""
SHAREABLE = ("synth", "sft", "pairs", "bt", "genrm", "references", "pool_scores", "select")
_KEYS = ("study_dir", "base", "overrides", "seeds", "seed_keys", "arms", "baseline", "comparisons", "share")
_COMPARISON_KEYS = ("metric", "tasks", "arms", "vs")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOP = tuple(f for f in PipelineConfig.__dataclass_fields__ if f != "run_dir")


class StudyError(UserError):
    """A mistake in a study file or its study directory."""


@dataclass(frozen=True)
class Comparison:
    """One question: ``arm`` vs ``vs`` on ``metric`` for each of ``tasks`` (empty: every task with data)."""

    metric: str
    arm: str
    vs: str
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSpec:
    """One (arm, seed) run: its pipeline config (as a mapping with absolute paths) and its directory."""

    arm: str
    seed: int
    mapping: dict[str, Any]
    run_dir: str

    @property
    def name(self) -> str:
        return f"{self.arm}/seed-{self.seed}"

    @property
    def compact_path(self) -> str:
        """``STUDY_DIR/compact/<arm>/seed-<k>.json.gz``: the finished run's config, per-prompt scores and
        times (run_dir is ``STUDY_DIR/runs/<arm>/seed-<k>``). Its presence marks the run finished; it is small
        enough to commit, so a later session (or machine) aggregates the study without the run directories."""
        study_dir = os.path.dirname(os.path.dirname(os.path.dirname(self.run_dir)))
        return os.path.join(study_dir, "compact", self.arm, f"seed-{self.seed}.json.gz")

    def config(self) -> PipelineConfig:
        return pipeline_config_from_mapping(self.mapping, base_dir=self.run_dir, where=self.name, run_dir=self.run_dir)


@dataclass(frozen=True)
class StudySpec:
    """A loaded, checked study (see the module docstring for the file).

    path: the study file. study_dir: absolute. arms: name -> merged pipeline mapping (before seeds).
    runs: every (arm, seed), arms in file order, then seeds. share: stages computed once where equal.
    """

    path: str
    study_dir: str
    seeds: tuple[int, ...]
    seed_keys: tuple[str, ...]
    baseline: str
    arms: dict[str, dict[str, Any]]
    comparisons: tuple[Comparison, ...]
    share: tuple[str, ...]
    runs: tuple[RunSpec, ...] = field(default=())

    def digest(self) -> str:
        """What makes the runs: the arms' configs, the seeds and what they set (not the comparisons)."""
        blob = json.dumps({"arms": self.arms, "seeds": self.seeds, "seed_keys": self.seed_keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def run_dir(self, arm: str, seed: int) -> str:
        return os.path.join(self.study_dir, "runs", arm, f"seed-{seed}")


def _fail(path: str, message: str) -> StudyError:
    return StudyError(f"{path}: {message}")


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``base`` with ``overrides`` (dotted keys or nested mappings) merged in; unknown sections are errors."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        parts = str(key).split(".")
        if parts[0] not in _TOP:
            hint = did_you_mean([parts[0]], _TOP)
            raise StudyError(
                f"{where}: override {key!r}: a pipeline config has no section or key {parts[0]!r}{hint}; "
                f"it has {', '.join(_TOP)}"
            )
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise StudyError(f"{where}: override {key!r}: {'.'.join(parts[: i + 1])} is not a mapping")
            node = child
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
            node[last] = _merge(dict(node[last]), value)
        else:
            node[last] = copy.deepcopy(value)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), Mapping):
            base[k] = _merge(dict(base[k]), v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def _base_mapping(path: str, data: dict[str, Any]) -> dict[str, Any]:
    """The base pipeline config with its relative data/policy paths made absolute (relative to its file)."""
    base = data.get("base")
    here = os.path.dirname(os.path.abspath(path))
    if isinstance(base, str):
        base_path = os.path.normpath(os.path.join(here, base))
        if not os.path.isfile(base_path):
            raise _fail(path, f"base: {base_path}: no such pipeline config")
        try:
            mapping, where = load_config(base_path), os.path.dirname(base_path)
        except ConfigError as exc:
            raise _fail(path, f"base: {exc}") from None
    elif isinstance(base, Mapping):
        mapping, where = dict(base), here
    else:
        raise _fail(path, "base: give a pipeline config file (path relative to the study file) or a mapping")
    mapping.pop("run_dir", None)  # every run gets its own under the study directory
    return _absolute_paths(mapping, where)


def _absolute_paths(mapping: dict[str, Any], here: str) -> dict[str, Any]:
    """Data files and a policy directory, made absolute from ``here`` (the file that gave them)."""
    if isinstance(mapping.get("data"), Mapping):
        mapping["data"] = {k: os.path.normpath(os.path.join(here, str(v))) for k, v in mapping["data"].items()}
    policy = str(mapping.get("policy") or "tiny")
    if policy != "tiny" and os.path.exists(os.path.join(here, policy)):
        mapping["policy"] = os.path.normpath(os.path.join(here, policy))
    return mapping


def _seeds(path: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(path, "seeds: give a non-empty list of integer seeds, e.g. [0, 1]")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
        raise _fail(path, f"seeds: every seed must be an integer >= 0, got {value}")
    if len(set(value)) != len(value):
        raise _fail(path, f"seeds: {value} repeats a seed")
    return tuple(value)


def _comparisons(path: str, value: Any, arms: list[str], baseline: str) -> tuple[Comparison, ...]:
    others = [a for a in arms if a != baseline]
    if value is None:
        return tuple(Comparison("gold", a, baseline) for a in others)
    if not isinstance(value, list) or not value:
        raise _fail(path, "comparisons: give a list of {metric, tasks, arms, vs} mappings")
    out = []
    for i, item in enumerate(value):
        where = f"comparisons[{i}]"
        if not isinstance(item, Mapping):
            raise _fail(path, f"{where}: must be a mapping with metric (and optionally tasks, arms, vs)")
        unknown = sorted(set(item) - set(_COMPARISON_KEYS))
        if unknown:
            raise _fail(
                path,
                f"{where}: unknown key(s) {unknown}{did_you_mean(unknown, _COMPARISON_KEYS)}; "
                f"allowed: {', '.join(_COMPARISON_KEYS)}",
            )
        metric = item.get("metric")
        if metric not in METRICS:
            hint = did_you_mean([str(metric)], METRICS)
            raise _fail(path, f"{where}: metric {metric!r} is not one of {', '.join(METRICS)}{hint}")
        vs = item.get("vs", baseline)
        chosen = item.get("arms", [a for a in arms if a != vs])
        tasks = item.get("tasks", [])
        if isinstance(chosen, str):
            chosen = [chosen]
        if isinstance(tasks, str):
            tasks = [tasks]
        for name in [vs, *chosen]:
            if name not in arms:
                raise _fail(path, f"{where}: {name!r} is not an arm{did_you_mean([str(name)], arms)}; arms: {arms}")
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise _fail(path, f"{where}: tasks: a list of task names is required")
        out.extend(Comparison(str(metric), a, vs, tuple(tasks)) for a in chosen if a != vs)
    return tuple(out)


def load_study(path: str, study_dir: str | None = None) -> StudySpec:
    """Read and check a study file: every mistake is a :class:`StudyError` before any work."""
    from datarl.pipeline.checks import check

    try:
        data = load_config(path)
    except ConfigError as exc:
        raise StudyError(str(exc)) from None
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise _fail(path, f"unknown key(s) {unknown}{did_you_mean(unknown, _KEYS)}; allowed: {', '.join(_KEYS)}")
    seeds = _seeds(path, data.get("seeds"))
    seed_keys = data.get("seed_keys", ["train.seed"])
    if isinstance(seed_keys, str):
        seed_keys = [seed_keys]
    if not isinstance(seed_keys, list) or not seed_keys or not all(isinstance(k, str) for k in seed_keys):
        raise _fail(path, "seed_keys: a list of dotted keys a seed sets (e.g. [train.seed, select.seed])")
    arms_in = data.get("arms")
    if not isinstance(arms_in, Mapping) or len(arms_in) < 2:
        raise _fail(path, "arms: give at least two named arms (name: {overrides}); an arm of {} is the base")
    for name, over in arms_in.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(path, f"arms: {name!r}: use letters, digits, '_', '.' or '-' (it names a folder)")
        if over is not None and not isinstance(over, Mapping):
            raise _fail(path, f"arms.{name}: a mapping of overrides is required, got {type(over).__name__}")
    baseline = data.get("baseline")
    arm_names = list(arms_in)
    if baseline not in arms_in:
        raise _fail(
            path, f"baseline: {baseline!r} is not an arm{did_you_mean([str(baseline)], arm_names)}; arms: {arm_names}"
        )
    share = data.get("share", list(SHAREABLE))
    if not isinstance(share, list) or any(s not in SHAREABLE for s in share):
        bad = [s for s in share if s not in SHAREABLE] if isinstance(share, list) else share
        raise _fail(path, f"share: {bad} cannot be shared; shareable stages: {', '.join(SHAREABLE)}")
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise _fail(path, "overrides: a mapping of overrides applied to every arm is required")
    base = apply_overrides(_base_mapping(path, data), overrides, f"{path}: overrides")
    root = os.path.abspath(study_dir or data.get("study_dir") or os.path.join("runs", "studies", _stem(path)))
    arms: dict[str, dict[str, Any]] = {}
    here = os.path.dirname(os.path.abspath(path))
    for name, over in arms_in.items():
        arms[name] = _absolute_paths(apply_overrides(base, dict(over or {}), f"{path}: arms.{name}"), here)
    for i, a in enumerate(arm_names):
        for b in arm_names[:i]:
            if arms[a] == arms[b]:
                raise _fail(path, f"arms {b!r} and {a!r} are equal (the same pipeline config); drop one")
    runs = []
    for name in arm_names:
        for seed in seeds:
            run_dir = os.path.join(root, "runs", name, f"seed-{seed}")
            mapping = apply_overrides(arms[name], {k: seed for k in seed_keys}, f"{path}: seed_keys")
            runs.append(RunSpec(name, seed, mapping, run_dir))
    for name in arm_names:  # the pipeline's own checks, once per arm (seeds only change seed_keys)
        run = next(r for r in runs if r.arm == name)
        try:
            check(run.config())
        except UserError as exc:
            raise _fail(path, f"arm {name!r}: {exc}") from None
    spec = StudySpec(
        path=os.path.abspath(path),
        study_dir=root,
        seeds=seeds,
        seed_keys=tuple(seed_keys),
        baseline=str(baseline),
        arms=arms,
        comparisons=_comparisons(path, data.get("comparisons"), arm_names, str(baseline)),
        share=tuple(share),
        runs=tuple(runs),
    )
    return spec


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
