"""IFEval checkers, form families: detectable format, combination, start/end, case, punctuation.

Same conventions as :mod:`datarl.rewards.ifeval.checkers`: ``(response, args) ->
bool`` over validated arguments, IFEval's semantics, linear time where IFEval's
regex would be quadratic on degenerate output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from datarl.rewards.ifeval.checkers import Checker, compare
from datarl.rewards.ifeval.text import compile_user_pattern, detect_language, iter_words

CONSTRAINED_RESPONSE_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

_WHITESPACE_RUN = re.compile(r"\s*")
_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


# --- detectable format ------------------------------------------------------------


def _count_line_items(value: str, marker: str, star_bullet: bool) -> int:
    """Matches of IFEval's ``^\\s*\\*[^\\*].*$`` (star) or ``^\\s*-.*$`` (dash), re.M.

    The regexes retry at every line start of a long whitespace run, which is
    quadratic on output such as a million newlines. All line starts inside one
    whitespace run see the same first non-space character, so one test per run
    gives the same count as ``re.findall``.
    """
    n = len(value)
    count = 0
    pos = 0
    while True:
        k = _WHITESPACE_RUN.match(value, pos).end()  # type: ignore[union-attr]
        if k < n and value[k] == marker and (not star_bullet or (k + 1 < n and value[k + 1] != "*")):
            count += 1
            # ".*$" runs to the end of the line after the consumed characters; the
            # star pattern's "[^\*]" may itself be a newline.
            end = value.find("\n", k + (2 if star_bullet else 1))
            if end < 0:
                return count
            # The next try is at `end` if it is a line start, else after the newline.
            pos = end if value[end - 1] == "\n" else end + 1
        else:
            newline = value.find("\n", k)
            if newline < 0:
                return count
            pos = newline + 1


def format_number_bullet_lists(value: str, a: Mapping[str, Any]) -> bool:
    """Exactly N lines that start with ``*`` (not ``**``) or ``-``."""
    total = _count_line_items(value, "*", True) + _count_line_items(value, "-", False)
    return total == a["num_bullets"]


def format_constrained_response(value: str, a: Mapping[str, Any]) -> bool:
    """One of IFEval's three fixed answers occurs in the response."""
    value = value.strip()
    return any(option in value for option in CONSTRAINED_RESPONSE_OPTIONS)


def format_number_highlighted_sections(value: str, a: Mapping[str, Any]) -> bool:
    """At least N ``*highlighted*`` spans; ``**bold**`` spans count once more each."""
    count = sum(1 for m in _HIGHLIGHT.finditer(value) if m.group().strip("*").strip())
    count += sum(
        1 for m in _DOUBLE_HIGHLIGHT.finditer(value) if m.group().removeprefix("**").removesuffix("**").strip()
    )
    return count >= a["num_highlights"]


def format_multiple_sections(value: str, a: Mapping[str, Any]) -> bool:
    """At least N sections, each introduced by ``<splitter> <number>``."""
    pattern = compile_user_pattern(a["section_spliter"], 0, r"\s?", r"\s?\d+\s?")
    return len(pattern.split(value)) - 1 >= a["num_sections"]


def format_json_format(value: str, a: Mapping[str, Any]) -> bool:
    """The response, less an optional Markdown code fence, parses as JSON."""
    value = (
        value.strip()
        .removeprefix("```json")
        .removeprefix("```Json")
        .removeprefix("```JSON")
        .removeprefix("```")
        .removesuffix("```")
        .strip()
    )
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        # RecursionError: deeply nested brackets, which IFEval would crash on.
        return False
    return True


def format_title(value: str, a: Mapping[str, Any]) -> bool:
    """A non-blank ``<<title>>`` on one line."""
    # Same as IFEval's findall(r"<<[^\n]+>>") without its quadratic backtracking:
    # on a line, the only match starts at the first "<<" and ends at the last
    # ">>" at least one character later; if that fails, no match is on the line.
    for line in value.split("\n"):
        start = line.find("<<")
        if start < 0:
            continue
        end = line.rfind(">>")
        if end >= start + 3 and line[start : end + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


# --- combination --------------------------------------------------------------------


def combination_two_responses(value: str, a: Mapping[str, Any]) -> bool:
    """Two different non-empty responses separated by ``******``."""
    parts = value.split("******")
    valid = []
    for index, part in enumerate(parts):
        if not part.strip():
            if index not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def combination_repeat_prompt(value: str, a: Mapping[str, Any]) -> bool:
    """The response starts with the prompt to repeat (case-insensitive)."""
    return value.strip().lower().startswith(a["prompt_to_repeat"].strip().lower())


# --- start / end --------------------------------------------------------------------


def startend_end_checker(value: str, a: Mapping[str, Any]) -> bool:
    """The response ends with the phrase (case-insensitive, outer quotes ignored)."""
    return value.strip().strip('"').lower().endswith(a["end_phrase"].strip().lower())


def startend_quotation(value: str, a: Mapping[str, Any]) -> bool:
    """The whole response is wrapped in double quotes."""
    value = value.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


# --- change case --------------------------------------------------------------------


def case_capital_word_frequency(value: str, a: Mapping[str, Any]) -> bool:
    """Count of all-capital tokens (``nltk.word_tokenize``) against the threshold."""
    threshold = a["capital_frequency"]
    # An all-capital token holds at least one upper-case character and tokens do
    # not overlap, so with fewer such characters than the threshold the count is
    # known to be below it without tokenizing (long lower-case output).
    if sum(map(str.isupper, value)) < threshold:
        return compare(0, a["capital_relation"], threshold)
    count = 0
    # Both relations are decided once the count reaches the threshold.
    for token in iter_words(value):
        if token.isupper():
            count += 1
            if count >= threshold:
                break
    return compare(count, a["capital_relation"], threshold)


def case_english_capital(value: str, a: Mapping[str, Any]) -> bool:
    """All upper case and English (undetectable language counts as English)."""
    if not value.isupper():
        return False
    detected = detect_language(value)
    return detected is None or detected == "en"


def case_english_lowercase(value: str, a: Mapping[str, Any]) -> bool:
    """All lower case and English (undetectable language counts as English)."""
    if not value.islower():
        return False
    detected = detect_language(value)
    return detected is None or detected == "en"


# --- punctuation --------------------------------------------------------------------


def punctuation_no_comma(value: str, a: Mapping[str, Any]) -> bool:
    """No ASCII comma anywhere."""
    return "," not in value


FORMAT_CHECKERS: dict[str, Checker] = {
    "detectable_format:number_bullet_lists": format_number_bullet_lists,
    "detectable_format:constrained_response": format_constrained_response,
    "detectable_format:number_highlighted_sections": format_number_highlighted_sections,
    "detectable_format:multiple_sections": format_multiple_sections,
    "detectable_format:json_format": format_json_format,
    "detectable_format:title": format_title,
    "combination:two_responses": combination_two_responses,
    "combination:repeat_prompt": combination_repeat_prompt,
    "startend:end_checker": startend_end_checker,
    "startend:quotation": startend_quotation,
    "change_case:capital_word_frequency": case_capital_word_frequency,
    "change_case:english_capital": case_english_capital,
    "change_case:english_lowercase": case_english_lowercase,
    "punctuation:no_comma": punctuation_no_comma,
}
