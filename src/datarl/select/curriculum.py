"""The curriculum: which tasks PPO draws its prompts from at each step (PAPER section 5).

A curriculum is a list of phases, each active until a step boundary (exclusive). A phase
either fixes the task mixture (``tasks: {code: 1.0}``), uses the *natural* mixture of the
training prompts (each task in proportion to its prompt count), or ramps linearly from the
previous phase's mixture to the natural one over its own steps. The default follows the
paper's schedule, scaled from its 4,000 steps to the run's length::

    [0, 12.5%)      code only
    [12.5%, 25%)    code + math, 50/50
    [25%, 37.5%)    linear ramp to the natural mixture
    [37.5%, end)    the natural mixture of the full prompt set

``curriculum: none`` is one natural phase: every step draws uniformly from all prompts.

Config (the ``curriculum:`` section of a run config)::

    curriculum:
      phases:
        - {until_step: 5, tasks: {code: 1.0}}
        - {until_step: 10, tasks: {code: 0.5, math: 0.5}}
        - {until_step: 15, ramp: natural}
        - {tasks: natural}             # the last phase has no end

The sampler (:class:`CurriculumSampler`) is deterministic given its seed: the per-step task
counts come from the mixture by largest remainder (no sampling noise in the realised mixture),
and each task's prompts are drawn from a seeded permutation, epoch after epoch, so no prompt
repeats before every prompt of its task has been drawn. Its whole state is a small dict
(``state_dict`` / ``load_state_dict``), so a resumed run draws exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.errors import UserError
from datarl.records import TASKS

Admit = Callable[[int, int], bool]
"""A filter on drawn prompts: ``admit(record_index, step)``; False passes the prompt over."""

__all__ = [
    "Phase",
    "CurriculumConfig",
    "CurriculumError",
    "CurriculumSampler",
    "Admit",
    "natural_mixture",
    "paper_default",
    "NATURAL",
]

NATURAL = "natural"
# The paper's schedule in steps of a 4,000-step run (PAPER section 5, our reconstruction).
_PAPER_STEPS = 4000
_PAPER_BOUNDS = (500, 1000, 1500)


class CurriculumError(UserError, ValueError):
    """A curriculum that cannot run; the message says what to change."""


@dataclass(frozen=True)
class Phase:
    """One phase of the curriculum.

    until_step: first step *after* this phase (exclusive); ``None`` for the last phase only.
    tasks: task -> relative weight, or ``"natural"`` for the training set's own mixture.
    ramp: ``"natural"`` to interpolate linearly from the previous phase's mixture (at its
        last step) to the natural mixture over this phase; then ``tasks`` must be unset.
    """

    until_step: int | None = None
    tasks: Mapping[str, float] | str | None = NATURAL
    ramp: str | None = None

    def describe(self) -> str:
        if self.ramp:
            return "ramp to natural"
        if self.tasks == NATURAL:
            return "natural mixture"
        return " + ".join(f"{t} {w:g}" for t, w in dict(self.tasks or {}).items())


@dataclass(frozen=True)
class CurriculumConfig:
    """A validated list of phases (see the module docstring)."""

    phases: tuple[Phase, ...] = field(default_factory=lambda: (Phase(),))

    def __post_init__(self) -> None:
        phases = tuple(self.phases)
        object.__setattr__(self, "phases", phases)
        if not phases:
            raise CurriculumError("curriculum: give at least one phase (or 'curriculum: none')")
        last_end = 0
        for i, ph in enumerate(phases):
            where = f"curriculum.phases[{i}]"
            final = i == len(phases) - 1
            if ph.until_step is None and not final:
                raise CurriculumError(f"{where}: only the last phase may leave out until_step")
            if ph.until_step is not None:
                if isinstance(ph.until_step, bool) or not isinstance(ph.until_step, int):
                    raise CurriculumError(f"{where}: until_step must be an integer step, got {ph.until_step!r}")
                if ph.until_step <= last_end:
                    raise CurriculumError(
                        f"{where}: until_step {ph.until_step} must be greater than the previous "
                        f"phase's ({last_end}); list phases in training order"
                    )
                last_end = ph.until_step
            if ph.ramp is not None:
                if ph.ramp != NATURAL:
                    raise CurriculumError(f"{where}: ramp must be 'natural', got {ph.ramp!r}")
                if i == 0:
                    raise CurriculumError(f"{where}: a ramp needs a previous phase to ramp from")
                if ph.until_step is None:
                    raise CurriculumError(f"{where}: a ramp needs until_step (where it reaches the natural mixture)")
                continue
            if ph.tasks == NATURAL:
                continue
            if not isinstance(ph.tasks, Mapping) or not ph.tasks:
                raise CurriculumError(f"{where}: tasks must map task names to weights, or be 'natural'")
            for task, weight in ph.tasks.items():
                if task not in TASKS:
                    raise CurriculumError(f"{where}: unknown task {task!r}; use one of {', '.join(TASKS)}")
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                    raise CurriculumError(f"{where}: weight of {task!r} must be a number >= 0, got {weight!r}")
            if sum(float(w) for w in ph.tasks.values()) <= 0:
                raise CurriculumError(f"{where}: task weights must not all be 0")

    @classmethod
    def from_value(cls, value: Any, total_steps: int) -> CurriculumConfig:
        """From a config value: ``None``/``"paper"`` (default), ``"none"``, or ``{phases: [...]}``."""
        if value is None or value == "paper":
            return paper_default(total_steps)
        if value in ("none", False):
            return cls()
        if not isinstance(value, Mapping) or set(value) - {"phases"}:
            raise CurriculumError("curriculum: must be 'paper', 'none' or a mapping with 'phases:'")
        raw = value.get("phases")
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise CurriculumError("curriculum.phases: must be a list of phases")
        phases = []
        for i, ph in enumerate(raw):
            if not isinstance(ph, Mapping) or set(ph) - {"until_step", "tasks", "ramp"}:
                raise CurriculumError(
                    f"curriculum.phases[{i}]: a phase is a mapping with until_step, and tasks or ramp; got {ph!r}"
                )
            ramp = ph.get("ramp")
            if ramp is not None and "tasks" in ph:
                raise CurriculumError(f"curriculum.phases[{i}]: give tasks or ramp, not both")
            phases.append(
                Phase(until_step=ph.get("until_step"), tasks=None if ramp else ph.get("tasks", NATURAL), ramp=ramp)
            )
        return cls(tuple(phases))

    def tasks_named(self) -> set[str]:
        """Every task a phase gives a positive weight."""
        out: set[str] = set()
        for ph in self.phases:
            if isinstance(ph.tasks, Mapping):
                out |= {t for t, w in ph.tasks.items() if float(w) > 0}
        return out

    def phase_index(self, step: int) -> int:
        for i, ph in enumerate(self.phases):
            if ph.until_step is None or step < ph.until_step:
                return i
        return len(self.phases) - 1  # past the last boundary: stay in the last phase

    def mixture(self, step: int, natural: Mapping[str, float]) -> dict[str, float]:
        """Task weights (summing to 1) at ``step``, given the natural mixture."""
        i = self.phase_index(step)
        ph = self.phases[i]
        if ph.ramp:
            start = self.phases[i - 1].until_step or 0
            end = ph.until_step or start + 1
            frm = self.mixture(start - 1, natural)
            frac = (step - start + 1) / max(1, end - start)
            frac = min(1.0, max(0.0, frac))
            keys = set(frm) | set(natural)
            return _normalise({k: (1 - frac) * frm.get(k, 0.0) + frac * natural.get(k, 0.0) for k in keys})
        if ph.tasks == NATURAL:
            return dict(natural)
        return _normalise({t: float(w) for t, w in dict(ph.tasks or {}).items()})


def _normalise(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(w for w in weights.values() if w > 0)
    return {k: w / total for k, w in sorted(weights.items()) if w > 0}


def paper_default(total_steps: int) -> CurriculumConfig:
    """The paper's schedule (code; code + math; ramp; natural) scaled to ``total_steps``."""
    if total_steps < 1:
        raise CurriculumError("total_steps must be >= 1")
    bounds = []
    for b in _PAPER_BOUNDS:
        step = max(bounds[-1] + 1 if bounds else 1, round(b * total_steps / _PAPER_STEPS))
        bounds.append(step)
    return CurriculumConfig(
        (
            Phase(bounds[0], {"code": 1.0}),
            Phase(bounds[1], {"code": 0.5, "math": 0.5}),
            Phase(bounds[2], None, ramp=NATURAL),
            Phase(None, NATURAL),
        )
    )


def natural_mixture(tasks: Sequence[str]) -> dict[str, float]:
    """Each task's share of the prompts."""
    counts = Counter(tasks)
    return {t: n / len(tasks) for t, n in sorted(counts.items())} if tasks else {}


def _allocate(mixture: Mapping[str, float], n: int) -> dict[str, int]:
    """``n`` prompts split by ``mixture`` with the largest-remainder rule (ties: task name)."""
    quotas = {t: w * n for t, w in mixture.items()}
    counts = {t: int(q) for t, q in quotas.items()}
    left = n - sum(counts.values())
    for t in sorted(quotas, key=lambda t: (-(quotas[t] - counts[t]), t))[:left]:
        counts[t] += 1
    return {t: c for t, c in counts.items() if c}


class CurriculumSampler:
    """Draws ``prompts_per_step`` record indices per step following the curriculum.

    records: the training prompts (anything with a ``task`` key/attribute).
    config: the phases; checked against the data here (a phase that names a task without prompts
        is an error before any training).
    """

    def __init__(self, tasks: Sequence[str], config: CurriculumConfig, prompts_per_step: int, seed: int = 0) -> None:
        if prompts_per_step < 1:
            raise CurriculumError("prompts_per_step must be >= 1")
        self.config = config
        self.prompts_per_step = prompts_per_step
        self.seed = seed
        self.by_task: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            self.by_task.setdefault(str(t), []).append(i)
        if not self.by_task:
            raise CurriculumError("the training set has no prompts")
        missing = sorted(self.config.tasks_named() - set(self.by_task))
        if missing:
            raise CurriculumError(
                f"the curriculum names task(s) {missing} but the training prompts have none "
                f"(they have {sorted(self.by_task)}); add such prompts or change the phases"
            )
        self.natural = natural_mixture([str(t) for t in tasks])
        self._order: dict[str, list[int]] = {}
        self._pos: dict[str, int] = {t: 0 for t in self.by_task}
        self._epoch: dict[str, int] = {t: 0 for t in self.by_task}
        self.step = 0
        self.passed_over = 0  # drawn prompts an ``admit`` filter refused
        self.forced = 0  # prompts taken although refused (every prompt of their task was refused)

    def _perm(self, task: str) -> list[int]:
        if task not in self._order:
            order = list(self.by_task[task])
            random.Random(f"{self.seed}:{task}:{self._epoch[task]}").shuffle(order)
            self._order[task] = order
        return self._order[task]

    def _take(self, task: str, k: int, admit: Admit | None = None, step: int = 0) -> list[int]:
        """The next ``k`` prompts of ``task`` in its permutation (a new one each epoch). With ``admit``, a
        prompt it refuses is passed over (and counted in ``self.passed_over``); after a whole epoch's worth of
        refusals in a row, the rest of the share is taken as drawn (counted in ``self.forced``), so a task whose
        every prompt is refused still fills its share."""
        out: list[int] = []
        refused = 0
        while len(out) < k:
            perm = self._perm(task)
            if self._pos[task] >= len(perm):
                self._epoch[task] += 1
                self._pos[task] = 0
                self._order.pop(task, None)
                continue
            index = perm[self._pos[task]]
            self._pos[task] += 1
            if admit is not None and not admit(index, step):
                refused += 1
                if refused <= len(perm):
                    self.passed_over += 1
                    continue
                admit = None  # every prompt of the task refused: the rest of its share is taken as drawn
            if admit is None and refused:
                self.forced += 1
            out.append(index)
            if admit is not None:
                refused = 0
        return out

    def mixture(self, step: int) -> dict[str, float]:
        return self.config.mixture(step, self.natural)

    def next_batch(self, admit: Admit | None = None) -> tuple[list[int], dict[str, Any]]:
        """The next step's record indices and what to log (phase, target and realised mixture). ``admit(index,
        step)``: a filter on the drawn prompts (a difficulty policy; see :meth:`_take`)."""
        step = self.step
        target = self.mixture(step)
        counts = _allocate(target, self.prompts_per_step)
        indices = [i for task in sorted(counts) for i in self._take(task, counts[task], admit, step)]
        self.step += 1
        phase = self.config.phase_index(step)
        info = {
            "curriculum/phase": phase,
            "curriculum/phase_name": self.config.phases[phase].describe(),
            **{f"curriculum/target/{t}": w for t, w in target.items()},
            **{f"curriculum/realised/{t}": counts.get(t, 0) / self.prompts_per_step for t in self.by_task},
        }
        return indices, info

    def extra(self, k: int, admit: Admit | None = None) -> list[int]:
        """``k`` more prompts for the step just drawn (dynamic sampling), in its mixture; the step stays."""
        step = max(0, self.step - 1)
        counts = _allocate(self.mixture(step), k)
        return [i for task in sorted(counts) for i in self._take(task, counts[task], admit, step)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "pos": dict(self._pos),
            "epoch": dict(self._epoch),
            "seed": self.seed,
            "passed_over": self.passed_over,
            "forced": self.forced,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("seed") != self.seed or set(state.get("pos", {})) != set(self.by_task):
            raise CurriculumError("the saved sampler state does not match these prompts or this seed")
        self.step = int(state["step"])
        self._pos = {t: int(v) for t, v in state["pos"].items()}
        self._epoch = {t: int(v) for t, v in state["epoch"].items()}
        self.passed_over = int(state.get("passed_over", 0))
        self.forced = int(state.get("forced", 0))
        self._order = {}

    def ordered(self, steps: int) -> list[list[int]]:
        """The batches of the next ``steps`` steps (advances the sampler): the curriculum as row order."""
        return [self.next_batch()[0] for _ in range(steps)]
