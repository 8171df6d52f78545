"""The 25 IFEval instruction ids, their arguments, and validation.

IFEval fills a missing argument with a random value and raises on a bad relation;
a reward must be a function of its input, so here a missing or ill-typed
argument is a problem to report, never a coin toss. ``None`` (and NaN, as
pandas writes missing Parquet ints) means "absent": IFEval's own Hugging Face
release stores every kwarg key on every instruction, mostly as None.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from datarl.rewards.ifeval.checkers import RELATIONS

# Argument kinds.
INT = "int"  # an integer >= 0 (an integral float is accepted)
STR = "str"  # a string, stripped, non-empty
RAW_STR = "raw_str"  # a string kept as given, non-blank
LOWER_STR = "lower_str"  # a string, lowercased, non-blank
STR_LIST = "str_list"  # a non-empty list of non-empty strings
RELATION = "relation"  # "less than" or "at least"
LETTER = "letter"  # a single non-space character, lowercased
LANGUAGE = "language"  # a langdetect language code such as "en"

ARG_SPECS: dict[str, dict[str, str]] = {
    "keywords:existence": {"keywords": STR_LIST},
    "keywords:frequency": {"keyword": STR, "frequency": INT, "relation": RELATION},
    "keywords:forbidden_words": {"forbidden_words": STR_LIST},
    "keywords:letter_frequency": {
        "letter": LETTER,
        "let_frequency": INT,
        "let_relation": RELATION,
    },
    "language:response_language": {"language": LANGUAGE},
    "length_constraints:number_sentences": {"num_sentences": INT, "relation": RELATION},
    "length_constraints:number_paragraphs": {"num_paragraphs": INT},
    "length_constraints:number_words": {"num_words": INT, "relation": RELATION},
    "length_constraints:nth_paragraph_first_word": {
        "num_paragraphs": INT,
        "nth_paragraph": INT,
        "first_word": LOWER_STR,
    },
    "detectable_content:number_placeholders": {"num_placeholders": INT},
    "detectable_content:postscript": {"postscript_marker": STR},
    "detectable_format:number_bullet_lists": {"num_bullets": INT},
    "detectable_format:constrained_response": {},
    "detectable_format:number_highlighted_sections": {"num_highlights": INT},
    "detectable_format:multiple_sections": {"section_spliter": STR, "num_sections": INT},
    "detectable_format:json_format": {},
    "detectable_format:title": {},
    "combination:two_responses": {},
    "combination:repeat_prompt": {"prompt_to_repeat": RAW_STR},
    "startend:end_checker": {"end_phrase": STR},
    "startend:quotation": {},
    "change_case:capital_word_frequency": {
        "capital_frequency": INT,
        "capital_relation": RELATION,
    },
    "change_case:english_capital": {},
    "change_case:english_lowercase": {},
    "punctuation:no_comma": {},
}

INSTRUCTION_IDS: tuple[str, ...] = tuple(ARG_SPECS)

Parsed = list[tuple[str, dict[str, Any]]]


@functools.lru_cache(maxsize=1)
def _language_codes() -> frozenset[str]:
    # The profile file names are the codes; listing them avoids loading profiles.
    from langdetect.detector_factory import PROFILES_DIRECTORY

    return frozenset(os.listdir(PROFILES_DIRECTORY))


def suggest_id(unknown: str) -> str | None:
    """The known id closest to ``unknown``, if any is close."""
    text = str(unknown).strip().lower()
    for known in INSTRUCTION_IDS:
        if text == known.split(":", 1)[1] or text == known.lower():
            return known
    close = difflib.get_close_matches(text, INSTRUCTION_IDS, n=1, cutoff=0.6)
    if close:
        return close[0]
    tails = {known.split(":", 1)[1]: known for known in INSTRUCTION_IDS}
    close = difflib.get_close_matches(text.split(":")[-1], list(tails), n=1, cutoff=0.6)
    return tails[close[0]] if close else None


def _is_absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _norm_int(value: Any) -> tuple[Any, str | None]:
    number = _as_int(value)
    if number is None:
        return None, f"must be an integer, got {_describe(value)}"
    if number < 0:
        return None, f"must be >= 0, got {number}"
    return number, None


def _norm_text(transform: Callable[[str], str]) -> Callable[[Any], tuple[Any, str | None]]:
    def norm(value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, str):
            return None, f"must be a string, got {_describe(value)}"
        if not value.strip():
            return None, "must not be blank"
        return transform(value), None

    return norm


def _norm_str_list(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        return None, f"must be a non-empty list of strings, got {_describe(value)}"
    if not all(isinstance(item, str) and item for item in value):
        return None, f"must hold only non-empty strings, got {_describe(list(value))}"
    return list(value), None


def _norm_relation(value: Any) -> tuple[Any, str | None]:
    if value not in RELATIONS:
        return None, f"must be 'less than' or 'at least', got {_describe(value)}"
    return value, None


def _norm_letter(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or len(value) != 1 or value.isspace():
        return None, f"must be a single character, got {_describe(value)}"
    return value.lower(), None


def _norm_language(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or value not in _language_codes():
        known = ", ".join(sorted(_language_codes()))
        return None, f"must be a langdetect language code ({known}), got {_describe(value)}"
    return value, None


_NORMALISERS: dict[str, Callable[[Any], tuple[Any, str | None]]] = {
    INT: _norm_int,
    STR: _norm_text(str.strip),
    RAW_STR: _norm_text(lambda s: s),
    LOWER_STR: _norm_text(lambda s: s.strip().lower()),
    STR_LIST: _norm_str_list,
    RELATION: _norm_relation,
    LETTER: _norm_letter,
    LANGUAGE: _norm_language,
}


def _parse_one(index: int, iid: str, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    spec = ARG_SPECS[iid]
    where = f"kwargs[{index}]"
    problems: list[str] = []
    args: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in spec and not _is_absent(value):
            expected = ", ".join(spec) or "none"
            problems.append(f"{where}: unexpected argument {key!r} for {iid} (expected: {expected})")
    for key, kind in spec.items():
        value = raw.get(key)
        if _is_absent(value):
            problems.append(f"{where}.{key}: missing (required by {iid})")
            continue
        normalised, problem = _NORMALISERS[kind](value)
        if problem:
            problems.append(f"{where}.{key}: {problem}")
        else:
            args[key] = normalised
    nth, total = args.get("nth_paragraph"), args.get("num_paragraphs")
    if iid.endswith("nth_paragraph_first_word") and nth is not None and total is not None:
        if not 1 <= nth <= total:
            problems.append(f"{where}.nth_paragraph: must be in 1..num_paragraphs ({total}), got {nth}")
    return args, problems


def parse_instructions(instruction_id_list: Any, kwargs: Any) -> tuple[Parsed, list[str]]:
    """Validated, normalised ``(id, args)`` pairs and the problems found.

    The pairs are only meaningful when the problem list is empty.
    """
    problems: list[str] = []
    if isinstance(instruction_id_list, str) or not isinstance(instruction_id_list, Sequence):
        return [], [f"instruction_id_list: must be a list of instruction ids, got {_describe(instruction_id_list)}"]
    if not instruction_id_list:
        problems.append("instruction_id_list: must not be empty")
    if isinstance(kwargs, (str, Mapping)) or not isinstance(kwargs, Sequence):
        problems.append(f"kwargs: must be a list of dicts (one per instruction), got {_describe(kwargs)}")
        kwargs = None
    elif len(kwargs) != len(instruction_id_list):
        problems.append(
            f"kwargs: has {len(kwargs)} entries but instruction_id_list has "
            f"{len(instruction_id_list)}; they must pair up one to one"
        )
    parsed: Parsed = []
    for index, iid in enumerate(instruction_id_list):
        if not isinstance(iid, str) or iid not in ARG_SPECS:
            hint = suggest_id(iid) if isinstance(iid, str) else None
            extra = f" (did you mean {hint!r}?)" if hint else ""
            problems.append(f"instruction_id_list[{index}]: unknown instruction id {iid!r}{extra}")
            continue
        if kwargs is None or index >= len(kwargs):
            continue
        raw = kwargs[index]
        if _is_absent(raw):
            raw = {}
        if not isinstance(raw, Mapping):
            problems.append(f"kwargs[{index}]: must be a dict of arguments, got {_describe(raw)}")
            continue
        args, found = _parse_one(index, iid, raw)
        problems.extend(found)
        parsed.append((iid, args))
    return parsed, problems
