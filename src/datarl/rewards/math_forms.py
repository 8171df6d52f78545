"""Answer forms a reader accepts, on the string side of ``rtv.math`` (no sympy here).

Each function reads one form out of a *normalised* answer (see
:func:`datarl.rewards.math_text.normalize_answer`):

- clock times (``1:00``, ``12:30 p.m.``): compared as times, never as the division
  ``1/00``, which made every ``H:00`` equal to every other;
- ratios (``20:3``, ``1 : (4/3)``): the quotient, when the right side is not zero;
- lists (``(2, 2), (6, 2)``; ``7 \\text{ and } -5``; ``3 \\pm 2\\sqrt{2}``) split into items,
  with labels (``w=16``, ``Paolo: 18``, ``Sequence 1: -2``) and tuple assignments
  (``(f(n), g(n)) = (n, 1)``) taken apart;
- rounded decimals: a ground truth written as a decimal (``30.52``, ``6.67\\%``) is matched by
  an exact answer that rounds to it, and an answer given to fewer places (``118\\%`` for
  ``117.95\\%``) is accepted when it shows at least ``MIN_FIGURES`` significant figures and
  drops at most ``MAX_DROPPED_FIGURES`` of the ground truth's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

from datarl.rewards.math_text import WrittenDecimal

T = TypeVar("T")

MIN_FIGURES = 3
"""A rounded answer or ground truth must show at least this many significant figures."""

MAX_DROPPED_FIGURES = 2
"""An answer may round away at most this many of the ground truth's significant figures."""

MAX_ITEMS = 20
"""Lists longer than this are left to the symbolic engine as a whole."""


# ------------------------------------------------------------------------------- times

_TIME_RE = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?\s*(?:(a|p)\.?\s*m\.?)?", re.IGNORECASE)


@dataclass(frozen=True)
class ClockTime:
    """A time of day: minutes after midnight (or after 12 when no meridiem is written)."""

    hour: int
    minute: int
    second: int
    meridiem: str | None  # "a", "p" or None


def clock_time(answer: str) -> ClockTime | None:
    """The time an answer like ``1:00``, ``12:30 PM``, ``2:30 \\text{ a.m.}`` or ``13:05:59`` names, else None.

    Reads the answer before normalisation, which drops ``PM`` as a unit word."""
    text = re.sub(r"\\(?:text|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", answer)
    text = re.sub(r"\\[,;:! ]|\$|~", " ", text)
    m = _TIME_RE.fullmatch(text.strip())
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2))
    meridiem = m.group(4).lower() if m.group(4) else None
    if hour > 24 or (meridiem and not 1 <= hour <= 12):
        return None
    return ClockTime(hour, minute, int(m.group(3) or 0), meridiem)


def same_time(a: ClockTime, b: ClockTime) -> bool:
    """Equal times; ``1:00 PM`` is ``13:00``, and a time without a meridiem matches either half-day."""
    if (a.minute, a.second) != (b.minute, b.second):
        return False

    def hours(t: ClockTime) -> set[int]:
        if t.meridiem is None:
            return {t.hour % 24} if t.hour > 12 or t.hour == 0 else {t.hour % 12, t.hour % 12 + 12}
        return {t.hour % 12 + (12 if t.meridiem == "p" else 0)}

    return bool(hours(a) & hours(b))


# ------------------------------------------------------------------------------ ratios

_RATIO_RE = re.compile(r"([^:]{1,80}?)\s*:\s*([^:]{1,80})")


def ratio_quotient(answer: str) -> str | None:
    """``a:b`` as the LaTeX quotient ``\\frac{a}{b}``; None for times, labels and a zero ``b``."""
    s = answer.strip()
    if clock_time(s) is not None:
        return None
    m = _RATIO_RE.fullmatch(s)
    if not m or re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", s)):
        return None  # "Paolo: 18" is a label, "x : y" is not a number
    left, right = m.group(1).strip(), m.group(2).strip()
    if not left or not right or re.fullmatch(r"[-+]?0*(?:\.0*)?", right):
        return None
    return f"\\frac{{{left}}}{{{right}}}"


# ------------------------------------------------------------------------------- lists

_OPEN, _CLOSE = "([{", ")]}"
_ITEM_SEP_RE = re.compile(r"[,;]|(?<![A-Za-z])and(?![A-Za-z])")
_LABEL_COLON_RE = re.compile(r"([A-Za-z][A-Za-z0-9 ]{0,30}?)\s*:\s*(\S.*)")
_LABEL_EQ_RE = re.compile(r"([A-Za-z][A-Za-z0-9]*(?:_\{?\w{1,6}\}?)?(?:\([^()=]{0,20}\))?|\\[A-Za-z]+)\s*=\s*([^=<>]+)")
_TUPLE_ASSIGN_RE = re.compile(r"\((.+)\)\s*=\s*\((.+)\)")


def split_top(s: str, sep: str | re.Pattern[str] = ",") -> list[str]:
    """Split on ``sep`` (a string or a pattern) outside ``()``, ``[]``, ``{}`` and ``\\{ \\}``;
    intervals like ``(1,2]`` stay whole."""
    pattern = sep if isinstance(sep, re.Pattern) else re.compile(re.escape(sep))
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif depth == 0 and (m := pattern.match(s, i)) and m.end() > i:
            parts.append(s[start:i])
            start = i = m.end()
            continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _expand(item: str) -> list[str]:
    """One item into the values it lists: a tuple assignment, a ``\\pm``, or itself."""
    m = _TUPLE_ASSIGN_RE.fullmatch(item)
    if m:
        names, values = split_top(m.group(1)), split_top(m.group(2))
        if len(names) == len(values) > 1 and all(_LABEL_EQ_RE.fullmatch(f"{n}=0") for n in names):
            return [f"{n} = {v}" for n, v in zip(names, values)]
    if item.count("\\pm") == 1 and not item.strip().startswith("\\pm"):
        return [item.replace("\\pm", "+"), item.replace("\\pm", "-")]
    return [item]


def list_items(answer: str) -> list[str]:
    """The items of a listed answer, or ``[answer]`` when it lists one thing.

    Items are separated by top-level commas, semicolons and ``and``; each is expanded by
    tuple assignment and ``\\pm``. Empty items make the answer one item (``1,`` is not a list).
    """
    items: list[str] = []
    for item in split_top(answer, _ITEM_SEP_RE):
        items.extend(_expand(item))
    if len(items) > MAX_ITEMS or any(not i for i in items):
        return [answer]
    return items


def match_all(gold: list[T], pred: list[T], same: Callable[[T, T], bool]) -> bool:
    """Whether every gold item is matched by its own pred item, in any order (a multiset comparison;
    for an equivalence relation, taking the first match is as good as searching)."""
    if len(gold) != len(pred):
        return False
    left = list(pred)
    for g in gold:
        hit = next((i for i, p in enumerate(left) if same(g, p)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def order_chain(answer: str) -> list[str] | None:
    """The terms of an ordering ``b < a < d < c`` (three or more plain terms), else None."""
    for op in ("<", ">"):
        terms = split_top(answer, op)
        if len(terms) >= 3 and all(re.fullmatch(r"[A-Za-z](?:_\{?\w{1,3}\}?)?|\\[A-Za-z]+", t) for t in terms):
            return terms
    return None


def label_of(item: str) -> tuple[str | None, str]:
    """``(label, value)`` of ``w=16``, ``f(n) = n``, ``Paolo: 18``; ``(None, item)`` otherwise."""
    for pattern in (_LABEL_EQ_RE, _LABEL_COLON_RE):
        m = pattern.fullmatch(item.strip())
        if m and m.group(2).strip():
            return re.sub(r"\s+", "", m.group(1)), m.group(2).strip()
    return None, item


def tuple_elements(item: str) -> list[str] | None:
    """The elements of a parenthesised tuple ``(a, b, c)``, else None."""
    s = item.strip()
    if len(s) < 2 or s[0] != "(" or s[-1] != ")" or len(split_top(s[1:-1])) < 2:
        return None
    if split_top(s, ",") != [s]:
        return None  # "(1, 2), (3, 4)" is two tuples
    return split_top(s[1:-1])


def braced_elements(item: str) -> list[str] | None:
    """The elements of a set written ``\\{a, b\\}``, else None."""
    s = item.strip()
    if not (s.startswith("\\{") and s.endswith("\\}")) or split_top(s, ",") != [s]:
        return None
    inner = s[2:-2]
    return None if "|" in inner or "\\mid" in inner else split_top(inner)


# ----------------------------------------------------------------------------- rounding


def round_half_up(value: Fraction, places: int) -> Fraction:
    """``value`` rounded to ``places`` decimals, halves away from zero (as people round)."""
    scale = Fraction(10) ** places
    scaled = abs(value) * scale
    rounded = int(scaled + Fraction(1, 2))
    return (rounded / scale) * (1 if value >= 0 else -1)


def rounds_to(written: WrittenDecimal, value: Fraction) -> bool:
    """Whether an exact ``value`` rounds to a decimal ``written`` to at least ``MIN_FIGURES`` figures."""
    if written.places < 1 or written.figures < MIN_FIGURES:
        return False  # "0.5" or "300" may well be exact: never read them as roundings
    return round_half_up(value, written.places) == written.value


def rounded_from(gold: WrittenDecimal, pred: WrittenDecimal) -> bool:
    """Whether ``pred`` is the decimal ``gold`` given to fewer places (``118`` for ``117.95``)."""
    if gold.places < 1 or pred.places >= gold.places or pred.figures < MIN_FIGURES:
        return False
    if gold.figures - pred.figures > MAX_DROPPED_FIGURES:
        return False
    return round_half_up(gold.value, pred.places) == pred.value


# ---------------------------------------------------------------------------- sentences

_COPULA_RE = re.compile(r"(?<![A-Za-z])(?:is|are|was|were|will be)(?![A-Za-z])")
_NEGATION_RE = re.compile(r"(?:not|never|no|neither|none)(?![A-Za-z])", re.IGNORECASE)


def stated_predicate(answer: str) -> str | None:
    """What a ground truth written as a sentence says (``The function f(x+1)-1 is odd.`` -> ``odd``),
    or None: at least four words, a copula, and a short predicate that is not a negation."""
    if len(re.findall(r"[A-Za-z]{2,}", answer)) < 4:
        return None
    copulas = list(_COPULA_RE.finditer(answer))
    if not copulas:
        return None
    tail = answer[copulas[-1].end() :].strip().rstrip(".").strip()
    if not tail or len(tail.split()) > 3 or _NEGATION_RE.match(tail):
        return None
    return tail
