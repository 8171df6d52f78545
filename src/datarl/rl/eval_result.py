"""One evaluation's results as data, and the one writer and reader of their flat ``eval.jsonl`` form.

An ``eval.jsonl`` line is flat (TensorBoard and W&B take flat scalars)::

    {"step": 10, "gold/math": 0.41, "gold/math/ci95_low": 0.38, "gold/math/ci95_high": 0.44, "gold/math/n": 2100,
     "gold/mean": 0.52, "gain/math": 0.02, "gain/math/ci95_low": 0.006, "gain/math/ci95_high": 0.031,
     "proxy/general": ..., "hacking/gap/general": ..., ...}

:meth:`EvalResult.to_row` is the only code that writes ``gold/*`` and ``gain/*`` keys and
:meth:`EvalResult.from_row` the only code that reads them back; everything else (the trainer's summary, the
report) uses the typed fields. Other keys (``proxy/*``, ``hacking/*``, ``diversity/*``, ``eval/*``) are plain
metric series and travel in ``metrics`` unchanged. The reader is tolerant: a missing or non-finite value is
None, a task without a mean is left out, so a half-written or older line still reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TaskScore", "Gain", "EvalResult", "number"]


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, None, NaN, text, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _count(value: Any) -> int | None:
    v = number(value)
    return int(v) if v is not None else None


@dataclass(frozen=True)
class TaskScore:
    """The gold score of one task: the mean over ``n`` eval prompts with its 95% interval."""

    mean: float
    n: int | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "ci95_low": self.ci95_low, "ci95_high": self.ci95_high}


@dataclass(frozen=True)
class Gain:
    """The paired difference of one task's gold against step 0, over the same ``n`` prompts."""

    diff: float
    ci95_low: float | None = None
    ci95_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "ci95_low": self.ci95_low, "ci95_high": self.ci95_high}


@dataclass(frozen=True)
class EvalResult:
    """One evaluation: gold per task, paired gains vs step 0 (from the second evaluation on), other metrics."""

    step: int
    gold: Mapping[str, TaskScore] = field(default_factory=dict)
    gains: Mapping[str, Gain] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gold_mean(self) -> float | None:
        """The unweighted mean of the tasks' gold scores (what picks the best checkpoint), or None."""
        return sum(s.mean for s in self.gold.values()) / len(self.gold) if self.gold else None

    def to_row(self) -> dict[str, Any]:
        """The flat ``eval.jsonl`` line."""
        row: dict[str, Any] = {"step": self.step}
        for task, s in self.gold.items():
            row.update(
                {
                    f"gold/{task}": s.mean,
                    f"gold/{task}/ci95_low": s.ci95_low,
                    f"gold/{task}/ci95_high": s.ci95_high,
                    f"gold/{task}/n": s.n,
                }
            )
        if self.gold:
            row["gold/mean"] = self.gold_mean
        for task, g in self.gains.items():
            row.update(
                {f"gain/{task}": g.diff, f"gain/{task}/ci95_low": g.ci95_low, f"gain/{task}/ci95_high": g.ci95_high}
            )
        row.update(self.metrics)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EvalResult:
        """Read a flat ``eval.jsonl`` line back (see the module docstring for what it tolerates)."""
        gold: dict[str, TaskScore] = {}
        gains: dict[str, Gain] = {}
        metrics: dict[str, Any] = {}
        for key, value in row.items():
            family, _, rest = key.partition("/")
            if family == "gold" and rest and "/" not in rest and rest != "mean":
                mean = number(value)
                if mean is not None:
                    gold[rest] = TaskScore(
                        mean,
                        _count(row.get(f"{key}/n")),
                        number(row.get(f"{key}/ci95_low")),
                        number(row.get(f"{key}/ci95_high")),
                    )
            elif family == "gain" and rest and "/" not in rest:
                diff = number(value)
                if diff is not None:
                    gains[rest] = Gain(diff, number(row.get(f"{key}/ci95_low")), number(row.get(f"{key}/ci95_high")))
            elif family not in ("gold", "gain", "step"):
                metrics[key] = value
        step = _count(row.get("step"))
        return cls(step if step is not None else -1, gold, gains, metrics)
