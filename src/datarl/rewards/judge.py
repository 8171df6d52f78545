"""What every GenRM judge backend shares: the verdict tokens, how a ground truth is shown to the judge,
the backend protocol, its error, the read-out of P("A") from two logits, and the verdict a reply's text
states (for endpoints that return no logprobs).

Both :mod:`datarl.rewards.genrm` (the scoring functions) and :mod:`datarl.rewards.genrm_backends` (the
HF and OpenAI-compatible backends) import from here; neither imports the other's internals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

from datarl.errors import UserError

__all__ = [
    "VERDICTS",
    "GT_FORMAT",
    "GT_VERDICTS",
    "READOUTS",
    "JudgeError",
    "JudgeBackend",
    "check_gt_verdict",
    "readout",
    "text_verdict",
]

VERDICTS = ("A", "B")
GT_FORMAT = "#### {ground_truth}"
GT_VERDICTS = ("slot", "match")
"""How a judge is asked about a ground truth: ``slot`` (which of slots A and B is better, as for every other
reference) or ``match`` (does the answer reach the reference's result, A = yes, B = no; see
:data:`datarl.rewards.genrm.MATCH_TEMPLATE`)."""
READOUTS = ("logits", "logprobs", "text")
"""Where a verdict's P("A") came from, finest first: a local model's logits, an endpoint's log-probs (both
continuous), or the reply's text (0 or 1 per order: a lower-resolution readout)."""


class JudgeError(UserError):
    """A judge that cannot be built or called (bad spec, checkpoint without verdict tokens...)."""


class JudgeBackend(Protocol):
    """Returns, for each judge prompt, ``(P("A") renormalised over the two verdict tokens, details)``.

    A failed item has an ``Exception`` instance instead of the probability (never a guess);
    ``details`` is a small JSON-able dict (truncation, attempts, missing verdict tokens) and may name its
    ``readout`` (one of :data:`READOUTS`); without one, the backend's ``readout`` attribute applies.
    """

    name: str
    gt_format: str
    readout: str
    # Optional: ``gt_verdict`` (one of GT_VERDICTS; "slot" when absent).

    def verdict_probs(self, prompts: Sequence[str]) -> list[tuple[float | Exception, dict[str, Any]]]: ...


def check_gt_verdict(value: str) -> str:
    """``value`` if it is one of :data:`GT_VERDICTS`, else a :class:`JudgeError` that lists them."""
    if value not in GT_VERDICTS:
        raise JudgeError(f"gt_verdict must be one of {list(GT_VERDICTS)}, got {value!r}")
    return value


def readout(logit_a: float, logit_b: float) -> float:
    """P("A") renormalised over the two verdict tokens, from their logits or log-probs."""
    top = max(logit_a, logit_b)
    ea, eb = math.exp(logit_a - top), math.exp(logit_b - top)
    return ea / (ea + eb)


_MARKUP = re.compile(r"[*_`#\"'\[\](){}<>]")
_STATED = re.compile(
    r"(?i:(?:the\s+)?(?:final\s+)?(?:better\s+)?(?:answer|verdict|choice|option)\s*(?:is\s*)?[:=-]?\s*)?"
    r"([AB])\b(.*)$"
)


def text_verdict(reply: str) -> str | None:
    """The verdict (``A`` or ``B``) a judge's reply states in its first non-empty line: the letter alone or
    before punctuation (``A``, ``B.``, ``**A**``, ``[[B]]``, ``A - it is right``), or after ``Answer``,
    ``Verdict``, ``Choice`` (``Answer: B``, ``The better answer is A``). Anything else (``A is better``,
    ``A or B``, prose) is None: a reply that is not plainly a verdict is never guessed at."""
    lines = [line for line in str(reply).splitlines() if line.strip()]
    if not lines:
        return None
    m = _STATED.match(_MARKUP.sub(" ", lines[0]).strip())
    if m is None:
        return None
    rest = m.group(2).strip()
    return m.group(1) if not rest or rest[0] in ".,;:!?-" else None
