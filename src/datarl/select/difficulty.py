"""A per-prompt difficulty state, from Pre-PPO's scores through every PPO rollout, and the online policies on it.

The state (:class:`DifficultyState`) holds, per training prompt (by record id): how many rollouts it has had,
their mean reward, its pass rate (tasks routed to a verifier, ``rtv.*``: a sample passes when its reward is at
least ``pass_threshold``), the step it was last trained on, the class of each of its last ``window`` visits
(a visit is one step's group of samples for it) and its difficulty class:

- a visit is ``solved`` (every sample passed), ``failed`` (no sample passed and all rewards equal), ``flat``
  (a task without a verifier whose samples all got the same reward) or ``mixed`` (anything else: the group has
  a spread of rewards, so a group baseline learns from it);
- a prompt is ``unseen`` (no rollouts yet), ``easy`` (pass rate >= ``easy_at``), ``hard`` (pass rate <=
  ``hard_at``), ``normal``, or ``dropped`` (taken out for good by ``drop_pass_rate``). Tasks without a verifier
  are ``normal`` once seen.

It is seeded before step 0 (``seed_from``): ``auto`` takes the ``prepo.rewards`` that ``datarl select``
writes into the records it keeps (the SFT policy's samples; original prompts have none and start unseen); a
path takes a ``datarl select`` scores file (``OUT.scores.jsonl``, which covers the whole pool) or the
``difficulty.jsonl`` a finished run wrote (a next run starts where the last ended). Seeded rollouts count for
the pass rate but are no visits (they came from another policy, not from this training).

Policies on it, each off by default (the paper's setup trains on whatever the curriculum draws):

- ``skip`` (GRESO): a drawn prompt whose last ``window`` visits were all ``solved``/``failed``/``flat``
  (groups that teach a group baseline nothing) is passed over, unless a draw with probability ``readmit``
  admits it; the sampler draws the next prompt of that task instead.
- ``drop_pass_rate`` (ScaleRL): a verifier prompt whose pass rate, over at least ``drop_min_rollouts``
  rollouts, reaches this value is never drawn again.
- ``dynamic_sampling`` (DAPO; ``grpo``/``rloo`` only): after scoring, groups with no spread of rewards are
  set aside and more prompts are drawn, sampled and scored, up to ``max_rounds`` more rounds, until the step
  has ``prompts_per_step`` groups with a spread; a step still short is filled with the set-aside groups (their
  group advantage is 0; only the KL term moves them), so the batch keeps its size.

Every random choice (re-admission) is a pure function of the run seed, the step and the prompt id, so a run
resumed from a checkpoint (which saves the state) decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datarl.errors import ConfigError
from datarl.io import write_records

__all__ = [
    "DifficultyConfig",
    "DifficultyState",
    "VISIT_CLASSES",
    "visit_class",
    "read_seed_file",
]

VISIT_CLASSES = ("solved", "failed", "flat", "mixed")
"""How one visit's group of samples came out (see the module doc)."""
UNINFORMATIVE = frozenset({"solved", "failed", "flat"})
"""Visit classes whose group has no spread of rewards: a group baseline learns nothing from them."""
SPREAD_EPS = 1e-6


@dataclass(frozen=True)
class DifficultyConfig:
    """The ``difficulty:`` section of a train config (everything off by default but the bookkeeping).

    seed_from: ``auto`` (the records' ``prepo.rewards``, written by ``datarl select``), ``none``, or the path
        of a ``datarl select`` scores file or of a run's ``difficulty.jsonl``.
    window: visits that ``skip`` looks back over (k).
    pass_threshold: a sample of a verifier task passes when its reward is at least this.
    easy_at, hard_at: pass rates at or above / at or below which a prompt is ``easy`` / ``hard``.
    skip: pass over prompts whose last ``window`` visits had no spread of rewards (GRESO).
    readmit: with ``skip``, the probability that such a prompt is admitted anyway (it may have changed).
    drop_pass_rate: drop a verifier prompt for good once its pass rate reaches this (ScaleRL: 0.9); null: never.
    drop_min_rollouts: rollouts a prompt needs before ``drop_pass_rate`` can drop it.
    dynamic_sampling: DAPO's filter of groups without a spread of rewards, with more draws to fill the step
        (``advantage: grpo`` or ``rloo`` only).
    max_rounds: with ``dynamic_sampling``, extra draw rounds per step at most (each draws the shortfall).
    """

    seed_from: str = "auto"
    window: int = 2
    pass_threshold: float = 1.0
    easy_at: float = 0.9
    hard_at: float = 0.1
    skip: bool = False
    readmit: float = 0.1
    drop_pass_rate: float | None = None
    drop_min_rollouts: int = 8
    dynamic_sampling: bool = False
    max_rounds: int = 3

    def __post_init__(self) -> None:
        for name in ("easy_at", "hard_at", "readmit", "pass_threshold"):
            _unit(name, getattr(self, name))
        if self.drop_pass_rate is not None:
            _unit("drop_pass_rate", self.drop_pass_rate)
        if self.hard_at >= self.easy_at:
            raise ValueError(f"hard_at ({self.hard_at}) must be below easy_at ({self.easy_at})")
        for name in ("window", "drop_min_rollouts", "max_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("skip", "dynamic_sampling"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.seed_from, str) or not self.seed_from:
            raise ValueError("seed_from must be 'auto', 'none' or a file path")


def _unit(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def visit_class(rewards: Sequence[float], verified: bool, pass_threshold: float) -> str:
    """One visit's class from its group's rewards (see the module doc)."""
    if not rewards:
        return "flat"
    flat = max(rewards) - min(rewards) <= SPREAD_EPS
    if verified:
        passes = sum(r >= pass_threshold for r in rewards)
        if passes == len(rewards):
            return "solved"
        if passes == 0 and flat:
            return "failed"
        return "mixed"
    return "flat" if flat else "mixed"


def _blank() -> dict[str, Any]:
    """A prompt's entry before any rollout."""
    return {
        "rollouts": 0,
        "reward_sum": 0.0,
        "passes": 0,
        "visits": 0,
        "last_step": None,
        "history": [],
        "dropped": False,
        "skipped": 0,
    }


def _unit_draw(*parts: Any) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def read_seed_file(path: str, ids: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per training prompt id, ``{"task", "rewards"}`` or (a run's ``difficulty.jsonl``) the saved entry, from
    ``path``. ``ids``: training id -> task. Errors (ConfigError) when the file is unreadable, is neither kind,
    shares no prompt with the training set (a scores file of another pool), or gives a prompt another task."""
    from datarl.select.prepo import SelectError
    from datarl.select.prepo_engine import parse_scores

    where = f"difficulty.seed_from: {path}"
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror})") from None
    first = text.split("\n", 1)[0]
    entries: dict[str, dict[str, Any]] = {}
    if '"datarl_prepo_scores"' in first:
        try:
            _, scored = parse_scores(text, path)
        except SelectError as exc:
            raise ConfigError(f"difficulty.seed_from: {exc}") from None
        entries = {pid: {"task": e.get("task"), "rewards": e.get("rewards") or []} for pid, e in scored.items()}
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                entries[str(row["id"])] = {**row, "saved": True}
            except (ValueError, KeyError, TypeError):
                raise ConfigError(
                    f"{where}, line {n}: neither a datarl scores file nor a run's difficulty.jsonl "
                    "(each line a JSON object with an 'id')"
                ) from None
    shared = [pid for pid in entries if pid in ids]
    if not shared:
        raise ConfigError(
            f"{where}: none of its {len(entries)} prompt ids is a training prompt: it was made for another "
            "pool or training set; pass the scores file of the selection that made data.train (or seed_from: none)"
        )
    for pid in shared:
        task = entries[pid].get("task")
        if task is not None and str(task) != ids[pid]:
            raise ConfigError(
                f"{where}: prompt {pid} has task {task!r} there but {ids[pid]!r} in data.train: "
                "the file belongs to another data set"
            )
    return {pid: entries[pid] for pid in shared}


class DifficultyState:
    """The per-prompt state of one run (see the module doc); ``records`` are the training records.

    verified_tasks: tasks routed to a verifier (their samples pass or fail); seed: the run seed (re-admission
    draws derive from it).
    """

    def __init__(
        self,
        cfg: DifficultyConfig,
        records: Sequence[Mapping[str, Any]],
        verified_tasks: set[str] | frozenset[str],
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.seed = seed
        self.verified = frozenset(verified_tasks)
        self.ids = [str(r.get("id")) for r in records]
        self.tasks = {str(r.get("id")): str(r.get("task")) for r in records}
        self.domains = {str(r.get("id")): str(r.get("domain") or r.get("task")) for r in records}
        self.entries: dict[str, dict[str, Any]] = {}
        self.rollouts = 0  # rollouts of this training (not the seed's)
        self.seeded = 0
        seeds: dict[str, dict[str, Any]] = {}
        if cfg.seed_from == "auto":
            for r in records:
                rewards = (r.get("prepo") or {}).get("rewards") if isinstance(r.get("prepo"), Mapping) else None
                if rewards:
                    seeds[str(r.get("id"))] = {"rewards": rewards}
        elif cfg.seed_from != "none":
            seeds = read_seed_file(cfg.seed_from, self.tasks)
        for pid, seed_entry in seeds.items():
            self._seed(pid, seed_entry)

    def _entry(self, pid: str) -> dict[str, Any]:
        if pid not in self.entries:
            self.entries[pid] = _blank()
        return self.entries[pid]

    def _seed(self, pid: str, seed_entry: Mapping[str, Any]) -> None:
        e = self._entry(pid)
        if seed_entry.get("saved"):  # a run's difficulty.jsonl: its counts carry over, visits included
            for key in ("rollouts", "reward_sum", "passes", "visits", "dropped"):
                if key in seed_entry and seed_entry[key] is not None:
                    e[key] = seed_entry[key]
            e["history"] = list(seed_entry.get("history") or [])[-self.cfg.window :]
            self.seeded += int(e["rollouts"])
            return
        rewards = [float(x) for x in seed_entry.get("rewards") or [] if isinstance(x, int | float) and math.isfinite(x)]
        e["rollouts"] += len(rewards)
        e["reward_sum"] += sum(rewards)
        e["passes"] += sum(x >= self.cfg.pass_threshold for x in rewards)
        self.seeded += len(rewards)

    # -- what the sampler and the trainer ask -----------------------------------------------------------------

    def pass_rate(self, pid: str) -> float | None:
        e = self.entries.get(pid)
        if e is None or not e["rollouts"] or self.tasks.get(pid) not in self.verified:
            return None
        return e["passes"] / e["rollouts"]

    def difficulty(self, pid: str) -> str:
        e = self.entries.get(pid)
        if e is not None and e["dropped"]:
            return "dropped"
        if e is None or not e["rollouts"]:
            return "unseen"
        rate = self.pass_rate(pid)
        if rate is None:
            return "normal"
        return "easy" if rate >= self.cfg.easy_at else "hard" if rate <= self.cfg.hard_at else "normal"

    def admit(self, index: int, step: int) -> bool:
        """Whether the sampler may take training record ``index`` at ``step`` (always, with no policy on)."""
        pid = self.ids[index]
        e = self.entries.get(pid)
        if e is None:
            return True
        if e["dropped"]:
            return False
        if not self.cfg.skip:
            return True
        history = e["history"]
        if len(history) < self.cfg.window or not all(c in UNINFORMATIVE for c in history[-self.cfg.window :]):
            return True
        if _unit_draw(self.seed, "readmit", step, pid) < self.cfg.readmit:
            return True
        e["skipped"] += 1
        return False

    def spread(self, rewards: Sequence[float]) -> bool:
        """Whether a group has a spread of rewards (what dynamic sampling keeps)."""
        return bool(rewards) and max(rewards) - min(rewards) > SPREAD_EPS

    def observe(self, step: int, groups: Sequence[tuple[int, Sequence[float]]]) -> dict[str, float]:
        """Record one step's groups (training record index, its samples' rewards); the step's metrics: per task,
        per domain (where the records name one finer than the task) and overall, the share of groups that were
        solved / failed / flat / mixed; and the rollout counts."""
        counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(VISIT_CLASSES, 0))
        for index, rewards in groups:
            pid = self.ids[index]
            task = self.tasks[pid]
            verified = task in self.verified
            cls = visit_class(rewards, verified, self.cfg.pass_threshold)
            e = self._entry(pid)
            e["rollouts"] += len(rewards)
            e["reward_sum"] += float(sum(rewards))
            e["passes"] += sum(r >= self.cfg.pass_threshold for r in rewards) if verified else 0
            e["visits"] += 1
            e["last_step"] = step
            e["history"] = [*e["history"], cls][-self.cfg.window :]
            rate = self.pass_rate(pid)
            if (
                self.cfg.drop_pass_rate is not None
                and rate is not None
                and e["rollouts"] >= self.cfg.drop_min_rollouts
                and rate >= self.cfg.drop_pass_rate
            ):
                e["dropped"] = True
            self.rollouts += len(rewards)
            counts[task][cls] += 1
            if self.domains[pid] != task:
                counts[self.domains[pid]][cls] += 1
            counts["all"][cls] += 1
        out: dict[str, float] = {}
        for task, by_class in sorted(counts.items()):
            total = sum(by_class.values())
            for cls, n in by_class.items():
                out[f"difficulty/{task}/{cls}"] = n / total
        return {**out, **self.totals()}

    def totals(self) -> dict[str, float]:
        """Rollouts of this training so far, prompts dropped, times a prompt was skipped (metric names)."""
        return {
            "difficulty/rollouts": float(self.rollouts),
            "difficulty/dropped": float(sum(e["dropped"] for e in self.entries.values())),
            "difficulty/skipped": float(sum(e["skipped"] for e in self.entries.values())),
        }

    # -- checkpoints and the end of a run ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"rollouts": self.rollouts, "seeded": self.seeded, "entries": self.entries}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rollouts = int(state["rollouts"])
        self.seeded = int(state["seeded"])
        self.entries = {str(k): dict(v) for k, v in state["entries"].items()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per training prompt (training order, one per id): the state a next run can start from."""
        out, seen = [], set()
        for pid in self.ids:
            if pid in seen:
                continue
            seen.add(pid)
            e = self.entries.get(pid) or _blank()
            out.append(
                {
                    "id": pid,
                    "task": self.tasks[pid],
                    "difficulty": self.difficulty(pid),
                    "rollouts": e["rollouts"],
                    "mean_reward": e["reward_sum"] / e["rollouts"] if e["rollouts"] else None,
                    "pass_rate": self.pass_rate(pid),
                    "passes": e["passes"] if self.tasks[pid] in self.verified else None,
                    "reward_sum": e["reward_sum"],
                    "visits": e["visits"],
                    "last_step": e["last_step"],
                    "history": e["history"],
                    "dropped": e["dropped"],
                    "skipped": e["skipped"],
                }
            )
        return out

    def summary(self) -> dict[str, Any]:
        """Prompts per task and difficulty class, and the rollout counts."""
        by: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for pid in dict.fromkeys(self.ids):
            by[self.tasks[pid]][self.difficulty(pid)] += 1
        return {
            "rollouts": self.rollouts,
            "seeded_rollouts": self.seeded,
            "classes": {t: dict(c) for t, c in sorted(by.items())},
        }

    def write(self, run_dir: str) -> str:
        """``RUN_DIR/difficulty.jsonl`` (atomically); its path."""
        path = os.path.join(run_dir, "difficulty.jsonl")
        write_records(path, self.rows())
        return path
