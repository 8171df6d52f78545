"""IFEval checkers, content families: keywords, language, length, detectable content.

Each checker is ``(response, args) -> bool`` over arguments already validated and
normalised by :mod:`datarl.rewards.ifeval.spec` (so a checker never sees a None or
a wrong type). Semantics follow Google's IFEval ``instructions.py``; where IFEval
uses a regular expression that can go quadratic on degenerate output (long runs
of brackets or whitespace), the checker computes the same answer in linear time,
and the comment says why the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from datarl.rewards.ifeval.text import (
    compile_user_pattern,
    count_sentences,
    count_words,
    detect_language,
)

Checker = Callable[[str, Mapping[str, Any]], bool]

LESS_THAN = "less than"
AT_LEAST = "at least"
RELATIONS = (LESS_THAN, AT_LEAST)

_PARAGRAPH_DIVIDER = re.compile(r"\s?\*\*\*\s?")
_PPS_MARKER = re.compile(r"p\.\s?p\.\s?s")
_PS_MARKER = re.compile(r"p\.\s?s\.")


def compare(actual: int, relation: str, threshold: int) -> bool:
    """IFEval's two relations: ``less than`` is <, ``at least`` is >=."""
    if relation == LESS_THAN:
        return actual < threshold
    return actual >= threshold


# --- keywords -------------------------------------------------------------------


def keywords_existence(value: str, a: Mapping[str, Any]) -> bool:
    """Every keyword (a regex, case-insensitive) occurs somewhere."""
    return all(compile_user_pattern(k, re.IGNORECASE).search(value) for k in a["keywords"])


def keywords_frequency(value: str, a: Mapping[str, Any]) -> bool:
    """Occurrences of the keyword (regex, case-insensitive, non-overlapping)."""
    pattern = compile_user_pattern(a["keyword"], re.IGNORECASE)
    count = sum(1 for _ in pattern.finditer(value))
    return compare(count, a["relation"], a["frequency"])


def keywords_forbidden_words(value: str, a: Mapping[str, Any]) -> bool:
    """No forbidden word occurs as a whole word (case-insensitive)."""
    for word in a["forbidden_words"]:
        if compile_user_pattern(word, re.IGNORECASE, r"\b", r"\b").search(value):
            return False
    return True


def keywords_letter_frequency(value: str, a: Mapping[str, Any]) -> bool:
    """Occurrences of one letter, case-insensitive (IFEval lowercases both)."""
    return compare(value.lower().count(a["letter"]), a["let_relation"], a["let_frequency"])


# --- language -------------------------------------------------------------------


def language_response_language(value: str, a: Mapping[str, Any]) -> bool:
    """langdetect's verdict equals the code; undetectable text counts as followed."""
    detected = detect_language(value)
    return detected is None or detected == a["language"]


# --- length constraints ----------------------------------------------------------


def length_number_sentences(value: str, a: Mapping[str, Any]) -> bool:
    """Punkt sentence count against the threshold."""
    threshold = a["num_sentences"]
    return compare(count_sentences(value, limit=threshold), a["relation"], threshold)


def length_number_paragraphs(value: str, a: Mapping[str, Any]) -> bool:
    """Exactly N paragraphs divided by ``***``; an empty inner paragraph fails."""
    paragraphs = _PARAGRAPH_DIVIDER.split(value)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False
    return count == a["num_paragraphs"]


def length_number_words(value: str, a: Mapping[str, Any]) -> bool:
    """``\\w+`` word count against the threshold."""
    return compare(count_words(value), a["relation"], a["num_words"])


_FIRST_WORD_STOP = frozenset(".,?!'\"")


def length_nth_paragraph_first_word(value: str, a: Mapping[str, Any]) -> bool:
    """N paragraphs split on a blank line, and paragraph n starts with the word."""
    paragraphs = value.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    nth = a["nth_paragraph"]
    if nth > count:
        return False
    # IFEval indexes the raw split, empty pieces included, as we do.
    paragraph = paragraphs[nth - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = []
    for char in word:
        if char in _FIRST_WORD_STOP:
            break
        first.append(char.lower())
    return count == a["num_paragraphs"] and "".join(first) == a["first_word"]


# --- detectable content -----------------------------------------------------------


def content_number_placeholders(value: str, a: Mapping[str, Any]) -> bool:
    """At least N ``[...]`` placeholders (``\\[.*?\\]``, within one line)."""
    # Same count as re.findall(r"\[.*?\]"): on each line take the next "[" and the
    # first "]" after it; once a "[" has no "]" later on its line, no later "[" on
    # that line has one either. The regex is quadratic on a long line of "[".
    count = 0
    for line in value.split("\n"):
        pos = 0
        while True:
            start = line.find("[", pos)
            if start < 0:
                break
            end = line.find("]", start + 1)
            if end < 0:
                break
            count += 1
            pos = end + 1
    return count >= a["num_placeholders"]


def content_postscript(value: str, a: Mapping[str, Any]) -> bool:
    """A postscript marker occurs (case-insensitive) anywhere in the response."""
    # IFEval's findall(r"\s*" + marker + r".*$", re.M) is non-empty exactly when
    # the marker itself matches somewhere: "\s*" may match nothing and ".*$" always
    # matches. Searching the marker alone avoids the quadratic "\s*" scan.
    marker = a["postscript_marker"]
    lowered = value.lower()
    if marker == "P.P.S":
        return _PPS_MARKER.search(lowered) is not None
    if marker == "P.S.":
        return _PS_MARKER.search(lowered) is not None
    return compile_user_pattern(marker.lower(), re.MULTILINE).search(lowered) is not None


CONTENT_CHECKERS: dict[str, Checker] = {
    "keywords:existence": keywords_existence,
    "keywords:frequency": keywords_frequency,
    "keywords:forbidden_words": keywords_forbidden_words,
    "keywords:letter_frequency": keywords_letter_frequency,
    "language:response_language": language_response_language,
    "length_constraints:number_sentences": length_number_sentences,
    "length_constraints:number_paragraphs": length_number_paragraphs,
    "length_constraints:number_words": length_number_words,
    "length_constraints:nth_paragraph_first_word": length_nth_paragraph_first_word,
    "detectable_content:number_placeholders": content_number_placeholders,
    "detectable_content:postscript": content_postscript,
}
