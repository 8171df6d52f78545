"""The synthetic suite: seeded splits (train, pool, eval) and writing them to disk.

``build_suite(cfg)`` returns ``{"train": [...], "pool": [...], "eval": [...]}`` of
record dicts (with ``reference``, without ``response``). Every (split, task) pair
draws from its own ``random.Random`` seeded by ``f"{seed}:{split}:{task}"``, so the
same config gives byte-identical files and changing one count leaves the other
tasks' records unchanged.

- ``train``: the SFT / RL training prompts, difficulty mix ``difficulty_weights``.
- ``pool``: the "newly collected" prompts Pre-PPO selects from. It skews to the
  extremes (``pool_difficulty_weights``: many easy and many hard) and a fraction
  (``pool_duplicate_fraction``) repeats train prompts verbatim under new ids, so that
  selection has something to find.
- ``eval``: ``difficulty_weights`` mix; no eval prompt text occurs in train or pool
  (nor twice in eval). Math has seven times ``eval_per_task`` eval prompts by default
  (``eval_by_task``; 2,100 at the default 300): PPO's math gains on the tiny policy are 1-3
  points, which 300 prompts cannot tell from noise (docs/results.md).

``sft_records(cfg, suite)`` draws the SFT demonstrations' prompts (``train_per_task`` per
task, ids ``synth-sft-<n>``) from their own streams: never an eval prompt, and a train or
pool prompt only where a task's prompt space is too small (general), so the SFT policy has
not seen the prompts PPO trains on, as in the paper, where the RL prompts are new to the SFT
model.

Difficulty counts per split and task are exact (largest remainder), then shuffled.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from datarl.records import TASKS
from datarl.synth import code_tasks, general_tasks, ifeval_tasks, math_tasks
from datarl.synth.rubric import PASS_THRESHOLD, REFERENCE_THRESHOLD

__all__ = ["SynthConfig", "build_suite", "sft_records", "write_suite", "SPLITS", "GENERATORS"]

SPLITS = ("train", "pool", "eval")
GENERATORS: dict[str, Callable[[random.Random, int], dict[str, Any]]] = {
    "math": math_tasks.generate,
    "code": code_tasks.generate,
    "ifeval": ifeval_tasks.generate,
    "general": general_tasks.generate,
}
_EVAL_TRIES_PER_RECORD = 50
MATH_EVAL_FACTOR = 7  # math eval records per eval_per_task, unless eval_by_task says otherwise


@dataclass(frozen=True)
class SynthConfig:
    """What ``datarl synth`` generates.

    seed: master seed; the same config gives byte-identical files.
    train_per_task: records per task in ``train``.
    pool_per_task: records per task in ``pool`` (duplicates of train included).
    eval_per_task: records per task in ``eval``.
    eval_by_task: eval counts for the tasks named, in place of ``eval_per_task``. None (the
        default) means ``{"math": 7 * eval_per_task}``; ``{}`` gives every task ``eval_per_task``.
    tasks: which of ``math``, ``code``, ``ifeval``, ``general`` to generate.
    difficulty_weights: relative weights of difficulty 1, 2, 3 in train and eval.
    pool_difficulty_weights: the same for the pool's fresh records (easy- and hard-heavy).
    pool_duplicate_fraction: share of each task's pool that copies train prompts, in [0, 1).
    """

    seed: int = 0
    train_per_task: int = 600
    pool_per_task: int = 200
    eval_per_task: int = 300
    eval_by_task: Mapping[str, int] | None = None
    tasks: tuple[str, ...] = TASKS
    difficulty_weights: tuple[float, float, float] = (0.4, 0.4, 0.2)
    pool_difficulty_weights: tuple[float, float, float] = (0.35, 0.2, 0.45)
    pool_duplicate_fraction: float = 0.15

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        for name in ("train_per_task", "pool_per_task", "eval_per_task"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        tasks = tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        if not tasks or len(set(tasks)) != len(tasks) or any(t not in TASKS for t in tasks):
            raise ValueError(f"tasks must be distinct names from {TASKS}, got {self.tasks!r}")
        if self.eval_by_task is None:
            object.__setattr__(self, "eval_by_task", {"math": MATH_EVAL_FACTOR * self.eval_per_task})
        if not isinstance(self.eval_by_task, Mapping):
            raise ValueError(f"eval_by_task must map task names to counts, got {self.eval_by_task!r}")
        for task, value in self.eval_by_task.items():
            if task not in TASKS:
                raise ValueError(f"eval_by_task: unknown task {task!r}; tasks are {TASKS}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"eval_by_task.{task} must be an integer >= 0, got {value!r}")
        object.__setattr__(self, "eval_by_task", dict(sorted(self.eval_by_task.items())))
        for name in ("difficulty_weights", "pool_difficulty_weights"):
            weights = tuple(float(w) for w in getattr(self, name))
            if len(weights) != 3 or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(
                    f"{name} must be 3 non-negative weights (difficulty 1, 2, 3) "
                    f"with a positive sum, got {getattr(self, name)!r}"
                )
            object.__setattr__(self, name, weights)
        if not 0.0 <= self.pool_duplicate_fraction < 1.0:
            raise ValueError(f"pool_duplicate_fraction must be in [0, 1), got {self.pool_duplicate_fraction!r}")
        if self.pool_duplicate_fraction > 0 and self.pool_per_task and not self.train_per_task:
            raise ValueError("pool_duplicate_fraction > 0 needs train_per_task > 0 (duplicates copy train)")

    def eval_count(self, task: str) -> int:
        """How many eval records ``task`` gets."""
        return self.eval_by_task.get(task, self.eval_per_task)


def _difficulties(rng: random.Random, count: int, weights: tuple[float, ...]) -> list[int]:
    """Exactly ``count`` difficulties in proportion to ``weights`` (largest remainder), shuffled."""
    total = sum(weights)
    quotas = [count * w / total for w in weights]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda i: (quotas[i] - counts[i], -i), reverse=True)
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    levels = [level for level, n in enumerate(counts, start=1) for _ in range(n)]
    rng.shuffle(levels)
    return levels


def _rng(cfg: SynthConfig, *parts: str) -> random.Random:
    return random.Random(":".join([str(cfg.seed), *parts]))


def _draw(
    cfg: SynthConfig,
    split: str,
    task: str,
    count: int,
    weights: tuple[float, ...],
    banned: set[str] | None = None,
    avoid: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """``count`` records of ``task`` from the ``(split, task)`` stream. With ``banned``, none has a prompt in
    it (and each drawn prompt is added to it); a prompt in ``avoid`` is taken only when
    ``_EVAL_TRIES_PER_RECORD`` draws found nothing better (the first such draw)."""
    rng = _rng(cfg, split, task)
    out: list[dict[str, Any]] = []
    for level in _difficulties(rng, count, weights):
        if banned is None:
            out.append(GENERATORS[task](rng, level))
            continue
        fallback = None
        for _ in range(_EVAL_TRIES_PER_RECORD):
            record = GENERATORS[task](rng, level)
            if record["prompt"] in banned:
                continue
            if record["prompt"] not in avoid:
                break
            fallback = fallback or record
        else:
            if fallback is None:
                raise ValueError(
                    f"could not draw a {task} {split} prompt of difficulty {level} unseen in the "
                    f"other splits after {_EVAL_TRIES_PER_RECORD} tries; ask for fewer records"
                )
            record = fallback
        banned.add(record["prompt"])
        out.append(record)
    return out


def build_suite(cfg: SynthConfig) -> dict[str, list[dict[str, Any]]]:
    """The three splits as lists of record dicts with ids ``synth-<split>-<n>``."""
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for task in cfg.tasks:
        train = _draw(cfg, "train", task, cfg.train_per_task, cfg.difficulty_weights)
        n_dup = round(cfg.pool_per_task * cfg.pool_duplicate_fraction) if train else 0
        pool = _draw(cfg, "pool", task, cfg.pool_per_task - n_dup, cfg.pool_difficulty_weights)
        dup_rng = _rng(cfg, "pool-duplicates", task)
        pool += (
            [dict(r) for r in dup_rng.sample(train, n_dup)]
            if n_dup <= len(train)
            else [dict(dup_rng.choice(train)) for _ in range(n_dup)]
        )
        seen = {r["prompt"] for r in train} | {r["prompt"] for r in pool}
        splits["train"] += train
        splits["pool"] += pool
        splits["eval"] += _draw(cfg, "eval", task, cfg.eval_count(task), cfg.difficulty_weights, banned=seen)
    for split, records in splits.items():
        _rng(cfg, split, "order").shuffle(records)
        splits[split] = [{"id": f"synth-{split}-{i:05d}", **r} for i, r in enumerate(records)]
    return splits


def sft_records(cfg: SynthConfig, suite: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The SFT prompts (with references): ``train_per_task`` per task, never an eval prompt and
    none twice; a train or pool prompt only where a task's prompt space is too small to avoid
    it (``general`` of difficulty 1 and 2 has 480 distinct prompts each)."""
    drawn = {r["prompt"] for r in suite.get("eval", [])}  # grows with every SFT prompt drawn
    others = {r["prompt"] for split, records in suite.items() if split != "eval" for r in records}
    out: list[dict[str, Any]] = []
    for task in cfg.tasks:
        out += _draw(cfg, "sft", task, cfg.train_per_task, cfg.difficulty_weights, banned=drawn, avoid=others)
    _rng(cfg, "sft", "order").shuffle(out)
    return [{"id": f"synth-sft-{i:05d}", **r} for i, r in enumerate(out)]


def _counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    def tally(key: str) -> dict[str, int]:
        return dict(sorted(Counter(str(r.get(key)) for r in records).items()))

    return {"total": len(records), "task": tally("task"), "domain": tally("domain"), "difficulty": tally("difficulty")}


def write_suite(cfg: SynthConfig, out_dir: str) -> dict[str, str]:
    """Write ``train.jsonl``, ``pool.jsonl``, ``eval.jsonl`` and ``manifest.json`` to ``out_dir``.

    Returns ``{"train": path, "pool": path, "eval": path, "manifest": path}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    suite = build_suite(cfg)
    paths: dict[str, str] = {}
    for split, records in suite.items():
        path = os.path.join(out_dir, f"{split}.jsonl")
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        paths[split] = path
    train_prompts = {r["prompt"] for r in suite["train"]}
    manifest = {
        "generator": "datarl.synth",
        "config": asdict(cfg),
        "files": {split: f"{split}.jsonl" for split in SPLITS},
        "counts": {split: _counts(records) for split, records in suite.items()},
        "pool_prompts_in_train": sum(r["prompt"] in train_prompts for r in suite["pool"]),
        "gold": {
            "math": "rtv.math",
            "code": "rtv.code",
            "ifeval": "rtv.ifeval (strict)",
            "general": f"gold.rubric (pass >= {PASS_THRESHOLD}; references >= {REFERENCE_THRESHOLD})",
        },
    }
    paths["manifest"] = os.path.join(out_dir, "manifest.json")
    with open(paths["manifest"], "w", encoding="utf-8", newline="\n") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return paths
