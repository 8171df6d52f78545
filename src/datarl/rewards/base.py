"""The reward contract shared by every source (DESIGN section 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol


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


class RewardFn(Protocol):
    """A reward source: must not raise on any model output."""

    def __call__(self, record: Mapping[str, Any], response: str) -> RewardResult: ...
