"""The reward contract shared by every source (DESIGN section 3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class RewardResult:
    """One scored response.

    score: reward in [0, 1].
    source: the source that produced it, e.g. ``rtv.math``.
    info: JSON-serialisable details: extracted answer, per-test results, judge
        probabilities, and ``failure`` (a short class such as ``no_answer``) when
        the response failed for a reason worth counting.
    """

    score: float
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def failure(self) -> str | None:
        value = self.info.get("failure")
        return str(value) if value else None


# Failure classes that mean the reward system, not the response, failed: a missing judge, model or
# reference, a broken sandbox, a crash. A reward with one of these is not evidence about the response
# (Pre-PPO never counts it as "hard", the server flags it, PPO logs it as reward/errors).
SCORING_ERRORS = frozenset(
    {
        "internal_error",
        "judge_error",
        "no_reference",
        "source_unavailable",
        "no_source",
        "unknown_task",
        "sandbox_unavailable",
        "sandbox_error",
        "model_unavailable",
        "bad_option",
        "no_prompt",
        "invalid_tests",
        "bad_instructions",
        "worker_crashed",
    }
)


class RewardFn(Protocol):
    """A reward source: must not raise on any model output."""

    def __call__(self, record: Mapping[str, Any], response: str) -> RewardResult: ...
