"""String side of ``rtv.math``: repair, normalisation, exact numbers and input guards.

Nothing here imports sympy or math-verify, so everything in this module runs in
linear time on any input; :mod:`datarl.rewards.math` adds the symbolic engine and
:mod:`datarl.rewards.math_extract` finds the answer in a response.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_ANSWER_CHARS = 1_000
"""Extracted answers are cut to this length; longer ones are not answers."""

MAX_SYMBOLIC_CHARS = 400
"""Answers longer than this are compared as strings only, never given to sympy."""

MAX_BRACE_DEPTH = 24
MAX_EXPONENT_LOG10 = 4.0  # refuse a^b with numeric |b| > 10^4: 10^(10^10) has 10^10 digits
MAX_SYMBOLIC_EXPONENT = 32  # with variables around, (x+y+1)^30 already costs sympy a second
MAX_NUMBER_DIGITS = 300


def balanced_close(text: str, open_at: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_at``, or None when unbalanced (``\\{`` is literal)."""
    depth = 0
    i = open_at
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


# ------------------------------------------------------------------------------ repair

# Ground truths that went through a JSON or Python string without escaping lost the backslash
# of \frac, \text, \right... to a control character ("\x0crac"). Only a control character
# followed by the rest of a LaTeX command is repaired; a real tab or newline stays.
_EATEN = {
    "\x0c": "f",
    "\x08": "b",
    "\x07": "a",
    "\x0b": "v",
    "\t": "t",
    "\r": "r",
}
_EATEN_RE = re.compile(
    "\x0c(?=rac|box|orall)|\x08(?=egin|inom|ar|eta|ig)|\x07(?=lpha|pprox)|\x0b(?=ec|arphi)"
    "|\t(?=ext|imes|heta|an|au|frac|riangle)|\r(?=ight|ho|angle)"
)
# A doubled backslash before a command name ("\\frac" from double escaping). "\\" alone is a
# matrix row break, so only names that are never the first letters of a row are repaired.
_DOUBLED_RE = re.compile(
    r"(?<!\\)\\\\(?=(?:frac|dfrac|pi|sqrt|cdot|times|left|right|bigg?|Bigg?|infty|text|sin|cos|tan|ln|log)\b)"
)
_UNICODE = {
    "∞": r"\infty ",
    "∪": r"\cup ",
    "∩": r"\cap ",
    "≤": r"\le ",
    "≥": r"\ge ",
    "＞": ">",
    "＜": "<",
    "π": r"\pi ",
    "√": r"\sqrt",
    "×": r"\times ",
    "·": r"\cdot ",
    "⋅": r"\cdot ",
    "∈": r"\in ",
    "≠": r"\ne ",
    "±": r"\pm ",
    "÷": r"\div ",
    "，": ",",
    "（": "(",
    "）": ")",
    "：": ":",
    "∅": r"\emptyset ",
    "≈": r"\approx ",
    "\u2212": "-",
    "∀": r"\forall ",
    "∃": r"\exists ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
_SYNONYMS = [
    (re.compile(r"\\(?:leqslant|leq)(?![A-Za-z])"), r"\\le"),
    (re.compile(r"\\(?:geqslant|geq)(?![A-Za-z])"), r"\\ge"),
    (re.compile(r"\\neq(?![A-Za-z])"), r"\\ne"),
    (re.compile(r"\\[dt]binom(?![A-Za-z])"), r"\\binom"),
    (
        re.compile(
            r"\\(?:text|mathrm|operatorname)\s*\{\s*(sin|cos|tan|cot|sec|csc|ln|log|exp|arcsin|arccos|arctan)\s*\}"
        ),
        r"\\\1",
    ),
    (re.compile(r"(?<![\w}])\+\s*\\infty"), r"\\infty"),  # "(1, +\infty)"
    (re.compile(r"<sup>(.{1,40}?)</sup>"), r"^{\1}"),
    (re.compile(r"<sub>(.{1,40}?)</sub>"), r"_{\1}"),
]


def repair_latex(text: str) -> str:
    """Undo damage that never changes what an answer means: eaten or doubled backslashes,
    Unicode symbols (``∞``, ``∪``, ``≤``, ``π``), synonyms (``\\leqslant``, ``\\geq``, ``\\dbinom``,
    ``\\text{sin}``) and HTML ``<sup>``/``<sub>``."""
    s = _EATEN_RE.sub(lambda m: "\\" + _EATEN[m.group(0)], text)
    s = _DOUBLED_RE.sub(r"\\", s)
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s)
    for pattern, repl in _SYNONYMS:
        s = pattern.sub(repl, s)
    return s


# ------------------------------------------------------------------------ normalisation

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
# Unit text only at the end ("18\text{ cm}^2"): "5\text{ or }6" must not become "5 6".
_UNIT_TEXT_RE = re.compile(r"(?:\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z .\-/]*\}(?:\^\{?\d\}?)?)+$")
_MATH_WORDS = frozenset(
    "pi sqrt sin cos tan cot sec csc log ln exp arcsin arccos arctan infty inf oo and or i e".split()
)
# Words are separated by mandatory whitespace so the regex cannot backtrack exponentially.
_WORD = r"[A-Za-z]{2,}\.?(?:\^\d)?"
_TRAILING_WORDS_RE = re.compile(rf"^(.*?[\d}}])\s*({_WORD}(?:\s+{_WORD})*)\s*$")
_LEADING_WORDS_RE = re.compile(r"^((?:[A-Za-z]{2,}\s+)+)(-?\d.*)$")
# A quantifier after the answer ("(n, 1) for all positive integers n", "k\pi, k \in \mathbb{Z}") says
# where a parameter ranges, not what the answer is. Clauses that add conditions ("where c has no
# prime factor...") are kept: they can be what makes an answer wrong.
_QUANTIFIER_RE = re.compile(
    r"\s*[,;]?\s*(?:\\quad\s*)*(?:(?:for|where|with)\s+(?:all|any|every|each|some)\b"
    r"|(?:for|where|with)\s+(?:an?\s+)?(?:arbitrary\s+)?(?:positive\s+|nonnegative\s+|non-negative\s+)?"
    r"(?:integers?|reals?|natural numbers?)\b|(?:for|where|with)?\s*[A-Za-z]\s*\\in\s*\\mathbb\s*\{?[ZNRQ]\}?\s*$)"
    r".*$"
)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")


def _drop_words(s: str) -> str:
    """Drop unit words around a number (``18 dollars``, ``about 5``), keeping math words."""
    m = _TRAILING_WORDS_RE.match(s)
    if m and not any(w.lower().rstrip(".") in _MATH_WORDS for w in m.group(2).split()):
        s = m.group(1)
    m = _LEADING_WORDS_RE.match(s)
    if m and not re.match(r"\d+\s*:", m.group(2)) and not any(w.lower() in _MATH_WORDS for w in m.group(1).split()):
        s = m.group(2)
    return s


def has_degree_mark(answer: str) -> bool:
    """Whether an answer is written in degrees (``30^\\circ``, ``30°``); normalisation drops the mark."""
    return bool(_DEGREE_RE.search(answer))


def normalize_answer(answer: str) -> str:
    """Strip presentation noise that never changes a value.

    :func:`repair_latex`, then dollar signs and math delimiters, ``\\left``/``\\right``,
    LaTeX spacing, ``\\dfrac``/``\\tfrac``, ``{,}``, ``,\\!`` and ``1,000``-style thousands
    separators, degree marks, ordinal suffixes, unit words, ``\\text{ cm}`` after a number,
    and a trailing quantifier (``for some integer t``, ``k \\in \\mathbb{Z}``).
    """
    s = repair_latex(answer.strip())
    for open_, close in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(open_) and s.endswith(close):
            s = s[len(open_) : -len(close)]
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:left|right|displaystyle|big|Big|bigg|Bigg)(?![A-Za-z])", "", s)
    # "32,\! 349" and "10{,}000": a thousands separator followed by LaTeX or plain spacing.
    s = re.sub(r"(\d)\s*(?:\{,\}|,)\s*(?:\\!\s*)+(?=\d{3}(?!\d))", r"\1,", s)
    # LaTeX spacing; a "\\\\" row break is matched first so "\\\\ 2" keeps its break.
    s = re.sub(r"\\\\|\\[,!;: ]|~", lambda m: m.group(0) if m.group(0) == "\\\\" else "", s)
    s = re.sub(r"\\q?quad(?![A-Za-z])", " ", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("{,}", ",")
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\%", "%")
    stripped = _UNIT_TEXT_RE.sub("", s).strip()
    if stripped and re.search(r"[\d}]", stripped):
        s = stripped
    s = _TEXT_CMD_RE.sub(r"\1", s)  # \text{(A)}, \textbf{5}: keep the content
    kept = _QUANTIFIER_RE.sub("", s).strip()
    if kept and re.search(r"[\d\\=(]", kept):
        s = kept
    s = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", r"\1", s)  # "15th day" -> "15 day"
    s = re.sub(r"(?<=[}\w])\.(?=\s*[\])]\s*$)", "", s)  # "\sqrt{2}.]" -> "\sqrt{2}]"
    s = s.strip().rstrip(".;,").strip()
    s = _drop_words(s)
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?", s):
        s = s.replace(",", "")
    return re.sub(r"\s+", " ", s).strip()


def string_key(answer: str) -> str:
    """Whitespace-free form for the last-resort string comparison.

    Braces around one character after ``^`` or ``_`` are dropped (``3^{x}`` is ``3^x``).
    Case is dropped only for plain words (``Devon``/``devon``): in math ``X`` and
    ``x`` are different variables.
    """
    key = re.sub(r"\s+", "", answer)
    key = re.sub(r"([\^_])\{(\w)\}", r"\1\2", key)
    return key.lower() if re.fullmatch(r"[A-Za-z]{2,}", key) else key


# ------------------------------------------------------------------------ exact numbers

_NUM = r"-?(?:\d+(?:\.\d*)?|\.\d+)"
_DECIMAL_RE = re.compile(rf"[+]?({_NUM})")
_SLASH_RE = re.compile(rf"({_NUM})\s*/\s*({_NUM})")
_FRAC_RE = re.compile(rf"(-?)\\frac\s*(?:\{{\s*({_NUM})\s*\}}|(\d))\s*(?:\{{\s*({_NUM})\s*\}}|(\d))")
_MIXED_RE = re.compile(r"(-?)(\d+)\s*(?:\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}|\s(\d+)\s*/\s*(\d+))")
_SCI_RE = re.compile(rf"({_NUM})\s*(?:\\times|\\cdot|\*|×)\s*10\s*\^\s*\{{?\s*([-+]?\d+)\s*\}}?")
_E_RE = re.compile(rf"({_NUM})[eE]([-+]?\d+)")


def _frac(text: str) -> Fraction | None:
    if len(text.replace("-", "").split(".")[0]) > MAX_NUMBER_DIGITS:
        return None
    return Fraction(text)


def exact_number(answer: str) -> tuple[Fraction, bool] | None:
    """``(value, is_percent)`` when a normalised answer is a plain number, else None.

    Covers integers, decimals, ``a/b``, ``\\frac{a}{b}``, mixed numbers
    ``12\\frac{3}{5}``, scientific notation and a trailing ``%``. Values are exact
    ``Fraction``s, so no rounding ever makes two different numbers equal.
    """
    s = answer.strip()
    percent = s.endswith("%")
    if percent:
        s = s[:-1].strip()
    if len(s) > 2 * MAX_NUMBER_DIGITS:
        return None
    value: Fraction | None = None
    try:
        if m := _DECIMAL_RE.fullmatch(s):
            value = _frac(m.group(1))
        elif m := _SLASH_RE.fullmatch(s):
            den = _frac(m.group(2))
            num = _frac(m.group(1))
            value = None if not den or num is None else num / den
        elif m := _MIXED_RE.fullmatch(s):
            whole = int(m.group(2))
            num, den = int(m.group(3) or m.group(5)), int(m.group(4) or m.group(6))
            if den and len(m.group(0)) < MAX_NUMBER_DIGITS:
                value = (whole + Fraction(num, den)) * (-1 if m.group(1) else 1)
        elif m := _FRAC_RE.fullmatch(s):
            num = _frac(m.group(2) or m.group(3))
            den = _frac(m.group(4) or m.group(5))
            if den and num is not None:
                value = num / den * (-1 if m.group(1) else 1)
        elif (m := _SCI_RE.fullmatch(s)) or (m := _E_RE.fullmatch(s)):
            exp = int(m.group(2))
            mant = _frac(m.group(1))
            if abs(exp) <= 1000 and mant is not None:
                value = mant * Fraction(10) ** exp
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None if value is None else (value, percent)


@dataclass(frozen=True)
class WrittenDecimal:
    """A plain decimal as written (``117.95``, ``0.0667``, ``300``, ``6.67%``): its exact value,
    how many digits follow the point and how many significant figures it shows."""

    value: Fraction
    places: int
    figures: int
    percent: bool


_WRITTEN_DECIMAL_RE = re.compile(r"([+-]?)(\d{1,40})(?:\.(\d{1,40}))?(%?)")


def written_decimal(answer: str) -> WrittenDecimal | None:
    """The :class:`WrittenDecimal` of a normalised answer that is a plain decimal, else None.

    Trailing zeros of an integer count as significant (``300`` shows three figures)."""
    m = _WRITTEN_DECIMAL_RE.fullmatch(answer.strip())
    if not m:
        return None
    sign, whole, frac, percent = m.groups()
    frac = frac or ""
    value = Fraction(f"{sign}{whole}.{frac or 0}")
    figures = len((whole + frac).lstrip("0")) or 1
    return WrittenDecimal(value, len(frac), figures, bool(percent))


# ------------------------------------------------------------------------------ guards


def _operand_end(s: str, i: int) -> int:
    """End index of the exponent operand starting at ``i`` (after ``^`` or ``**``)."""
    n = len(s)
    while i < n and s[i] == " ":
        i += 1
    if i >= n:
        return i
    if s[i] == "{":
        end = balanced_close(s, i)
        return n if end is None else end + 1
    if s[i] == "\\":
        m = re.match(r"\\[A-Za-z]+", s[i:])
        return i + (len(m.group(0)) if m else 2)
    m = re.match(r"-?\d+(?:\.\d+)?|\(?[^\s]", s[i:])
    return i + (len(m.group(0)) if m else 1)


def _log10_magnitude(expr: str) -> float | None:
    """log10 of a numeric power tower like ``10^{10^{10}}``; None if it is not one."""
    parts = [p.lstrip("+-") for p in re.split(r"\^|\*\*", re.sub(r"[{}()\s]", "", expr))]
    if not parts or not all(re.fullmatch(r"\d+(?:\.\d+)?", p) for p in parts):
        return None
    log = math.log10(max(float(parts[-1][:300]), 1.0)) if len(parts[-1]) < 300 else float(len(parts[-1]))
    for base in reversed(parts[:-1]):
        b = float(base[:300]) if len(base) < 300 else 1e300
        if b <= 1.0:
            return 0.0
        if log > 300:  # the exponent alone has more than 300 digits
            return math.inf
        log = 10**log * math.log10(b)
    return log


def _symbolic_group(text: str) -> bool:
    """Whether the bracketed group that ``text`` ends with holds a variable (``(k - 1)``):
    its factorial stays symbolic, unlike ``(10^{10})!``."""
    depth = 0
    for i in range(len(text) - 1, max(-1, len(text) - 200), -1):
        depth += (text[i] in ")}") - (text[i] in "({")
        if depth == 0:
            inner = re.sub(r"\\[A-Za-z]+", "", text[i:])
            return bool(re.search(r"[A-Za-z]", inner))
    return False


def is_pathological(answer: str) -> bool:
    """True when an answer could make sympy hang or blow up memory; it is then string-compared.

    Refused: answers over ``MAX_SYMBOLIC_CHARS``, brace nesting deeper than
    ``MAX_BRACE_DEPTH``, integer literals over ``MAX_NUMBER_DIGITS`` digits,
    numeric exponents above ``10**MAX_EXPONENT_LOG10``, or above
    ``MAX_SYMBOLIC_EXPONENT`` when the answer has variables (so ``9^9^9^9`` and
    ``10^{10^{10^{10}}}`` are never evaluated) and factorials of anything but a
    small literal. The worker timeout is the backstop for anything this misses.
    """
    if len(answer) > MAX_SYMBOLIC_CHARS:
        return True
    depth = 0
    for c in answer:
        depth += (c == "{") - (c == "}")
        if depth > MAX_BRACE_DEPTH:
            return True
    if re.search(rf"\d{{{MAX_NUMBER_DIGITS},}}", answer):
        return True
    has_variables = bool(re.search(r"(?<![\\A-Za-z])[A-Za-z]", re.sub(r"\\[A-Za-z]+", " ", answer)))
    for m in re.finditer(r"\^|\*\*", answer):
        operand = answer[m.end() : _operand_end(answer, m.end())]
        # Follow a right-associative tower: 9^9^9^9 has operand 9^9^9.
        end = m.end() + len(operand)
        while True:
            nxt = re.match(r"\s*(\^|\*\*)", answer[end:])
            if not nxt:
                break
            stop = _operand_end(answer, end + nxt.end())
            operand = answer[m.end() : stop]
            end = stop
        mag = _log10_magnitude(operand)
        if mag is not None and mag > MAX_EXPONENT_LOG10:
            return True
        if mag is not None and has_variables and mag > math.log10(MAX_SYMBOLIC_EXPONENT):
            return True
    for m in re.finditer(r"(\d*)\s*!(?!=)", answer):
        before = answer[: m.start()].rstrip()
        if m.group(1) and int(m.group(1)[:6]) > 1000:
            return True
        if not m.group(1) and before.endswith((")", "}")) and not _symbolic_group(before):
            return True
    return False
