"""Responses no source should score: empty, cut off, or a loop (CompassVerifier's "invalid" class).

The router asks :func:`invalid_reason` before any source (verifier or judge) sees a response; an invalid
response scores 0 with ``failure: invalid_response`` and ``invalid: <reason>``, so it is never on par with a
reference however a judge would have read it, and a looping ``18 18 18 ...`` never earns a math reward by its
last number. Pure and linear in the response's length (only the tail is examined for loops).

- ``empty``: no characters but whitespace.
- ``truncated``: the record says the response was cut off (``response_finished: false``, what
  ``datarl generate`` and the PPO rollouts write) before the model ended it.
- ``repeated``: the response ends in a loop: its last characters are one unit of at most
  ``MAX_LOOP_UNIT`` characters repeated ``MIN_LOOP_REPEATS`` or more times, covering at least
  ``MIN_LOOP_SHARE`` of the response (and at least ``MIN_LOOP_CHARS`` characters); or one word repeated
  back to back ``MIN_LOOP_REPEATS`` or more times at its end.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["invalid_reason", "INVALID", "MAX_LOOP_UNIT", "MIN_LOOP_REPEATS", "MIN_LOOP_SHARE"]

INVALID = "invalid_response"
MAX_LOOP_UNIT = 40
MIN_LOOP_REPEATS = 4
MIN_LOOP_SHARE = 0.4
MIN_LOOP_CHARS = 24
_TAIL_CHARS = 4000
_WORD_LOOP_RE = re.compile(rf"(?:^|\s)(\S+)(?:\s+\1){{{MIN_LOOP_REPEATS - 1},}}\s*$")


def _loop_length(text: str) -> int:
    """How many characters at the end of ``text`` are one short unit repeated (0 when none is)."""
    best = 0
    n = len(text)
    for unit in range(1, min(MAX_LOOP_UNIT, n // MIN_LOOP_REPEATS) + 1):
        tail = text[n - unit :]
        length = unit
        while length + unit <= n and text[n - length - unit : n - length] == tail:
            length += unit
        if length // unit >= MIN_LOOP_REPEATS:
            best = max(best, length)
    return best


def invalid_reason(record: Mapping[str, Any] | None, response: Any) -> str | None:
    """Why ``response`` is invalid (``empty``, ``truncated``, ``repeated``), or None. Never raises."""
    if not isinstance(response, str) or not response.strip():
        return "empty"
    if isinstance(record, Mapping) and record.get("response_finished") is False:
        return "truncated"
    tail = response.rstrip()[-_TAIL_CHARS:]
    looped = _loop_length(tail)
    if looped >= MIN_LOOP_CHARS and looped >= MIN_LOOP_SHARE * len(response.strip()):
        return "repeated"
    if _WORD_LOOP_RE.search(tail[-400:]):
        words = tail.split()
        run = 1
        while run < len(words) and words[-run - 1] == words[-1]:
            run += 1
        if run >= MIN_LOOP_REPEATS and run >= MIN_LOOP_SHARE * len(words):
            return "repeated"
    return None
