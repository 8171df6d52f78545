"""What every GenRM judge backend shares: the verdict tokens, how a ground truth is shown to the judge,
the backend protocol, its error, and the read-out of P("A") from two logits.

Both :mod:`datarl.rewards.genrm` (the scoring functions) and :mod:`datarl.rewards.genrm_backends` (the
HF and OpenAI-compatible backends) import from here; neither imports the other's internals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from datarl.errors import UserError

__all__ = ["VERDICTS", "GT_FORMAT", "JudgeError", "JudgeBackend", "readout"]

VERDICTS = ("A", "B")
GT_FORMAT = "#### {ground_truth}"


class JudgeError(UserError):
    """A judge that cannot be built or called (bad spec, checkpoint without verdict tokens...)."""


class JudgeBackend(Protocol):
    """Returns, for each judge prompt, ``(P("A") renormalised over the two verdict tokens, details)``.

    A failed item has an ``Exception`` instance instead of the probability (never a guess);
    ``details`` is a small JSON-able dict (truncation, attempts, missing verdict tokens).
    """

    name: str
    gt_format: str

    def verdict_probs(self, prompts: Sequence[str]) -> list[tuple[float | Exception, dict[str, Any]]]: ...


def readout(logit_a: float, logit_b: float) -> float:
    """P("A") renormalised over the two verdict tokens, from their logits or log-probs."""
    top = max(logit_a, logit_b)
    ea, eb = math.exp(logit_a - top), math.exp(logit_b - top)
    return ea / (ea + eb)
