"""String side of ``rtv.math``: answer extraction, normalisation, exact numbers, input guards.

Nothing here imports sympy or math-verify, so everything in this module runs in
linear time on any input; :mod:`datarl.rewards.math` adds the symbolic engine.

Extraction precedence (first rule that finds something wins):

1. ``\\boxed{...}`` / ``\\fbox{...}`` with nested braces; the LAST balanced one wins
   (models restate and correct themselves; an unterminated box at a truncated end
   is skipped).
2. Explicit markers: ``The (final) answer is ...``, ``Answer: ...``, GSM8K's
   ``#### N`` and a line starting ``A: N``. When several occur, the one that
   appears LAST in the response wins, for the same reason as 1.
3. ``last_number``: the last bare number in the response. It is a weak guess, so
   the method is reported and callers can count or refuse it.

Only the last ``MAX_RESPONSE_CHARS`` characters of a response are searched:
answers sit at the end, and the cap bounds the work on a runaway 5 MB output.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_RESPONSE_CHARS = 100_000
"""Extraction looks at this many trailing characters of a response."""

MAX_ANSWER_CHARS = 1_000
"""Extracted answers are cut to this length; longer ones are not answers."""

MAX_SYMBOLIC_CHARS = 400
"""Answers longer than this are compared as strings only, never given to sympy."""

MAX_BRACE_DEPTH = 24
MAX_EXPONENT_LOG10 = 4.0  # refuse a^b with numeric |b| > 10^4: 10^(10^10) has 10^10 digits
MAX_SYMBOLIC_EXPONENT = 32  # with variables around, (x+y+1)^30 already costs sympy a second
MAX_NUMBER_DIGITS = 300

METHODS = ("boxed", "the_answer_is", "answer_colon", "gsm8k_hashes", "a_colon", "last_number")


@dataclass(frozen=True)
class Extraction:
    """An answer pulled out of a response, and the rule that found it (one of ``METHODS``)."""

    answer: str
    method: str


# --------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*(\{)?")
_THE_ANSWER_RE = re.compile(r"the\s+(?:final\s+)?answer\s+is\s*:?", re.IGNORECASE)
_ANSWER_COLON_RE = re.compile(r"(?<![A-Za-z])(?:final\s+)?answer\s*\**\s*:\s*\**", re.IGNORECASE)
_HASHES_RE = re.compile(r"####")
_A_COLON_RE = re.compile(r"^[ \t*]*A\s*:", re.MULTILINE)
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")


def _balanced(text: str, open_at: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_at``, or None when unbalanced."""
    depth = 0
    i = open_at
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":  # \{ and \} are literal braces, not grouping
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


def _brace_pairs(text: str) -> dict[int, int]:
    """Map each balanced ``{`` index to its ``}`` in one linear pass (``\\{`` is literal)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in re.finditer(r"\\.|[{}]", text, re.DOTALL):
        c = m.group(0)
        if c == "{":
            stack.append(m.start())
        elif c == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def _last_boxed(text: str) -> str | None:
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    pairs = _brace_pairs(text)
    for m in reversed(matches):
        if m.group(1):
            end = pairs.get(m.end() - 1)
            if end is not None:
                return text[m.end() : end]
        else:  # \boxed 5
            tok = re.match(r"[^\s$]+", text[m.end() : m.end() + MAX_ANSWER_CHARS])
            if tok:
                return tok.group(0)
    return None


def _math_span(s: str) -> str | None:
    """The first ``$...$``, ``\\(...\\)`` or ``\\[...\\]`` span at the start of ``s``."""
    for open_, close in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(open_):
            end = s.find(close, len(open_))
            if end > len(open_):
                return s[len(open_) : end]
    return None


def _marker_value(tail: str) -> str:
    """The answer written after a marker: a leading math span, else up to the sentence end."""
    s = tail.lstrip(" \t*:")
    span = _math_span(s)
    if span is not None:
        return span.strip()
    box = _last_boxed(s.split("\n", 1)[0])
    if box is not None:
        return box
    line = s.split("\n", 1)[0]
    # A sentence ends at ". " (not inside a decimal like 3.5) or at the line end.
    cut = re.search(r"\.(?:\s|$)", line)
    if cut:
        line = line[: cut.start()]
    return line.strip().strip("*").strip()


def _last_marker(text: str) -> Extraction | None:
    best: tuple[int, str, str] | None = None
    for method, pattern in (
        ("the_answer_is", _THE_ANSWER_RE),
        ("answer_colon", _ANSWER_COLON_RE),
        ("gsm8k_hashes", _HASHES_RE),
        ("a_colon", _A_COLON_RE),
    ):
        # Only the last few occurrences can win; bounding them keeps junk input linear.
        for m in list(pattern.finditer(text))[-3:][::-1]:
            value = _marker_value(text[m.end() : m.end() + 2 * MAX_ANSWER_CHARS])
            if value:
                if best is None or m.start() >= best[0]:
                    best = (m.start(), method, value)
                break
    if best is None:
        return None
    return Extraction(best[2][:MAX_ANSWER_CHARS], best[1])


def extract_answer(response: str) -> Extraction | None:
    """Find the final answer in a model response, or None when there is none.

    Never raises: non-string input returns None. See the module docstring for the
    precedence; the method is returned so a weak ``last_number`` guess stays visible.
    """
    if not isinstance(response, str) or not response:
        return None
    text = response[-MAX_RESPONSE_CHARS:]
    boxed = _last_boxed(text)
    if boxed is not None and boxed.strip():
        return Extraction(boxed.strip()[:MAX_ANSWER_CHARS], "boxed")
    marked = _last_marker(text)
    if marked is not None:
        return marked
    last = None
    for last in _NUMBER_RE.finditer(text):
        pass
    if last is not None:
        return Extraction(last.group(0)[:MAX_ANSWER_CHARS], "last_number")
    return None


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


def _drop_words(s: str) -> str:
    """Drop unit words around a number (``18 dollars``, ``about 5``), keeping math words."""
    m = _TRAILING_WORDS_RE.match(s)
    if m and not any(w.lower().rstrip(".") in _MATH_WORDS for w in m.group(2).split()):
        s = m.group(1)
    m = _LEADING_WORDS_RE.match(s)
    if m and not any(w.lower() in _MATH_WORDS for w in m.group(1).split()):
        s = m.group(2)
    return s


def normalize_answer(answer: str) -> str:
    """Strip presentation noise that never changes a value.

    Dollar signs and math delimiters, ``\\left``/``\\right``, LaTeX spacing,
    ``\\dfrac``/``\\tfrac``, ``{,}`` and ``1,000``-style thousands separators,
    degree marks, unit words and ``\\text{ cm}`` after a number.
    """
    s = answer.strip().replace("\u2212", "-")  # Unicode minus sign
    for open_, close in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(open_) and s.endswith(close):
            s = s[len(open_) : -len(close)]
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:left|right|displaystyle|big|Big|bigg|Bigg)(?![A-Za-z])", "", s)
    # LaTeX spacing; a "\\\\" row break is matched first so "\\\\ 2" keeps its break.
    s = re.sub(r"\\\\|\\[,!;: ]|~", lambda m: m.group(0) if m.group(0) == "\\\\" else "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("{,}", ",")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree", "", s)
    s = s.replace("\\%", "%")
    stripped = _UNIT_TEXT_RE.sub("", s).strip()
    if stripped and re.search(r"[\d}]", stripped):
        s = stripped
    s = _TEXT_CMD_RE.sub(r"\1", s)  # \text{(A)}, \textbf{5}: keep the content
    s = s.strip().rstrip(".;,").strip()
    s = _drop_words(s)
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?", s):
        s = s.replace(",", "")
    return re.sub(r"\s+", " ", s).strip()


def string_key(answer: str) -> str:
    """Whitespace-free form for the last-resort string comparison.

    Case is dropped only for plain words (``Devon``/``devon``): in math ``X`` and
    ``x`` are different variables.
    """
    key = re.sub(r"\s+", "", answer)
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


# ------------------------------------------------------------------------------ guards


def _operand_end(s: str, i: int) -> int:
    """End index of the exponent operand starting at ``i`` (after ``^`` or ``**``)."""
    n = len(s)
    while i < n and s[i] == " ":
        i += 1
    if i >= n:
        return i
    if s[i] == "{":
        end = _balanced(s, i)
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
        if not m.group(1) and before.endswith((")", "}")):
            return True
    return False
