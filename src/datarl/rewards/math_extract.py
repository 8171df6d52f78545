"""Answer extraction for ``rtv.math``: which part of a response is its final answer.

Nothing here imports sympy or math-verify, so it runs in linear time on any input.

Precedence:

1. The final group of ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces; an unterminated box
   at a truncated end is skipped). The group is the last box and the boxes just before it
   that only a connector separates (``,``, ``and``, ``or``, ``\\quad``, ``$ $``, ``y =``):
   ``\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}`` reads ``(2, 2), (6, 2)``
   (method ``boxed_group``). Boxes with prose between them are steps, and only the last
   counts; a response that boxes every candidate at the end is read as the list of all of
   them, which matches a ground truth only if it has exactly those parts.
2. Explicit markers: ``The (final) answer is ...``, ``Answer: ...``, GSM8K's ``#### N``
   and a line starting ``A: N``; the one that appears LAST wins. A marker that comes after
   the last box wins over it when its value looks like an answer (a digit, LaTeX, or a
   choice letter): models box an intermediate result and then state the final one.
   A marker followed by a sentence (``Final Answer: The largest $n$ is 34.``) gives what
   follows the sentence's last ``is``/``are``/``=``, or its one math span or number.
3. ``last_number``: the last bare number in the response. It is a weak guess, so
   the method is reported and callers can count or refuse it.

Only the last ``MAX_RESPONSE_CHARS`` characters of a response are searched:
answers sit at the end, and the cap bounds the work on a runaway 5 MB output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datarl.rewards.math_text import MAX_ANSWER_CHARS

MAX_RESPONSE_CHARS = 100_000
"""Extraction looks at this many trailing characters of a response."""

MAX_GROUP_BOXES = 20
"""At most this many boxes are read together as one final answer."""

METHODS = ("boxed", "boxed_group", "the_answer_is", "answer_colon", "gsm8k_hashes", "a_colon", "last_number")


@dataclass(frozen=True)
class Extraction:
    """An answer pulled out of a response, and the rule that found it (one of ``METHODS``)."""

    answer: str
    method: str


_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*(\{)?")
_THE_ANSWER_RE = re.compile(r"the\s+(?:final\s+)?answer\s+is\s*:?", re.IGNORECASE)
_ANSWER_COLON_RE = re.compile(r"(?<![A-Za-z])(?:final\s+)?answer\s*\**\s*:\s*\**", re.IGNORECASE)
_HASHES_RE = re.compile(r"####")
_A_COLON_RE = re.compile(r"^[ \t*]*A\s*:", re.MULTILINE)
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
# What may stand between two boxes of one final answer: punctuation, math delimiters, spacing,
# "and"/"or" (plain or in \text), and a short label ("x = \boxed{2}, y = \boxed{3}").
_CONNECTOR_RE = re.compile(
    r"(?:\s|[,;&$.]|\\[()\[\]]|\\q?quad(?![A-Za-z])|\\[,;:! ]|\\text\s*\{\s*(?:and|or|,)?\s*\}"
    r"|(?<![A-Za-z])(?:and|or)(?![A-Za-z])|(?<![A-Za-z\\])[A-Za-z](?:_\{?\w{1,3}\}?)?\s*=)*"
)
_MAX_CONNECTOR_CHARS = 60
_CHOICE_RE = re.compile(r"\(?[A-Ea-e]\)?")
# A copula outside math spans: what follows the last one is the stated value.
_COPULA_RE = re.compile(r"(?<![A-Za-z])(?:is|are|was|were|equals|be|becomes)(?![A-Za-z])|=")


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


def _boxes_backwards(text: str) -> list[tuple[int, int, str]]:
    """Complete boxes as ``(start, end, content)``, last first; unterminated ones are skipped."""
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return []
    pairs = _brace_pairs(text)
    out = []
    for m in reversed(matches):
        if m.group(1):
            end = pairs.get(m.end() - 1)
            if end is not None:
                out.append((m.start(), end + 1, text[m.end() : end]))
        else:  # \boxed 5
            tok = re.match(r"[^\s$]+", text[m.end() : m.end() + MAX_ANSWER_CHARS])
            if tok:
                out.append((m.start(), m.end() + tok.end(), tok.group(0)))
    return out


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``, ``\\boxed 5``) in ``text``,
    stripped; None when there is none. How MATH's solutions give their final answer."""
    for _, _, content in _boxes_backwards(text):
        if content.strip():
            return content.strip()
    return None


def _final_boxes(text: str) -> tuple[int, list[str]] | None:
    """The end of the last box and the contents of the final group, in reading order."""
    boxes = _boxes_backwards(text)
    if not boxes:
        return None
    group = [boxes[0]]
    for box in boxes[1:]:
        if box[1] > group[-1][0] or len(group) >= MAX_GROUP_BOXES:
            break  # a box nested in the one after it, or enough
        between = text[box[1] : group[-1][0]]
        if len(between) > _MAX_CONNECTOR_CHARS or not _CONNECTOR_RE.fullmatch(between):
            break
        group.append(box)
    contents = [b[2].strip() for b in reversed(group) if b[2].strip()]
    return (boxes[0][1], contents) if contents else None


def _math_spans(s: str) -> list[tuple[int, int, str]]:
    """``$...$``, ``\\(...\\)`` and ``\\[...\\]`` spans as ``(start, end, content)``.

    A ``$`` pair around prose (``$18 every day at $``) is money, not math, and is skipped."""
    spans = []
    for m in re.finditer(r"\$\$(.+?)\$\$|\$([^$]+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", s):
        content = next(g for g in m.groups() if g is not None)
        if len(re.findall(r"(?<![\\A-Za-z])[A-Za-z]{3,}", content)) >= 2:
            continue
        spans.append((m.start(), m.end(), content.strip()))
    return spans


def _reduce_sentence(value: str) -> str:
    """The answer stated by a sentence after a marker, or ``value`` when it is not a sentence."""
    spans = _math_spans(value)
    if len(spans) == 1 and spans[0][0] == 0 and not value[spans[0][1] :].strip(" .,;"):
        return spans[0][2]
    masked = value
    for start, end, _ in reversed(spans):
        masked = masked[:start] + "\x00" * (end - start) + masked[end:]
    if len(re.findall(r"[A-Za-z]{2,}", masked)) < 2:
        return value  # "1,000 apples", "x = 3": not a sentence
    copulas = list(_COPULA_RE.finditer(masked))
    if copulas:
        at = copulas[-1].end()
        tail = value[at:].strip()
        lead: list[str] = []
        for start, end, content in spans:  # "is $-2$ at $x = 1$": the spans right after the copula
            if start >= at and re.fullmatch(r"(?:\s|[,;]|and|or)*" if lead else r"\s*", value[at:start]):
                lead.append(content)
                at = end
        if lead:
            return ", ".join(lead)
        if re.search(r"[\d\\$]", tail):
            return tail
    if len(spans) == 1:
        return spans[0][2]
    numbers = _NUMBER_RE.findall(masked)
    return numbers[0] if len(numbers) == 1 else value


def _marker_value(tail: str) -> str:
    """The answer written after a marker: a box on its line, else its sentence reduced."""
    line = tail.lstrip(" \t*:").split("\n", 1)[0]
    boxed = _final_boxes(line)
    if boxed is not None:
        return ", ".join(boxed[1])
    # A sentence ends at ". " (not inside a decimal like 3.5) or at the line end.
    cut = re.search(r"\.(?:\s|$)", line)
    if cut:
        line = line[: cut.start()]
    return _reduce_sentence(line.strip().strip("*").strip()).strip()


def _last_marker(text: str) -> tuple[int, Extraction] | None:
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
    return best[0], Extraction(best[2][:MAX_ANSWER_CHARS], best[1])


def _answer_like(value: str) -> bool:
    return bool(re.search(r"[\d\\]", value) or _CHOICE_RE.fullmatch(value.strip()))


def extract_answer(response: str) -> Extraction | None:
    """Find the final answer in a model response, or None when there is none.

    Never raises: non-string input returns None. See the module docstring for the
    precedence; the method is returned so a weak ``last_number`` guess stays visible.
    """
    if not isinstance(response, str) or not response:
        return None
    text = response[-MAX_RESPONSE_CHARS:]
    boxed = _final_boxes(text)
    marked = _last_marker(text)
    if marked is not None and (boxed is None or (marked[0] >= boxed[0] and _answer_like(marked[1].answer))):
        return marked[1]
    if boxed is not None:
        contents = boxed[1]
        if len(set(contents)) == 1:
            return Extraction(contents[0][:MAX_ANSWER_CHARS], "boxed")
        return Extraction(", ".join(contents)[:MAX_ANSWER_CHARS], "boxed_group")
    last = None
    for match in _NUMBER_RE.finditer(text):
        last = match
    if last is not None:
        return Extraction(last.group(0)[:MAX_ANSWER_CHARS], "last_number")
    return None
