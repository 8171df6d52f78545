"""``rtv.ifeval``: the instruction-following verifier (IFEval's 25 instruction types).

Records carry IFEval's fields: ``instruction_id_list`` (ids such as
``punctuation:no_comma``) and ``kwargs`` (one dict of arguments per instruction;
None values mean "absent"). ``score_ifeval`` gives 1.0 when every instruction is
followed and 0.0 otherwise, with IFEval's per-instruction strict and loose
results in ``info``. Strict checks the response as is; loose (IFEval's upper
bound) passes an instruction if any of eight variants passes: the response, with
its first line, last line or both removed, each with and without asterisks.

Semantics are IFEval's (``google-research/instruction_following_eval``), with
three deliberate departures, all on inputs where IFEval itself would be random
or crash: a missing or ill-typed argument is reported (``bad_instructions``)
instead of replaced by a random value; a keyword that is not a valid regex is
matched literally; a checker that fails internally scores that instruction False
(recorded in ``info["checker_errors"]``). Nothing is downloaded at run time;
see :mod:`datarl.rewards.ifeval.text`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datarl.errors import UserError
from datarl.rewards.base import RewardResult
from datarl.rewards.ifeval.checkers import CONTENT_CHECKERS, Checker
from datarl.rewards.ifeval.formats import FORMAT_CHECKERS
from datarl.rewards.ifeval.spec import INSTRUCTION_IDS, Parsed, parse_instructions

__all__ = [
    "INSTRUCTION_IDS",
    "MODES",
    "SOURCE",
    "InvalidInstructionsError",
    "check_instructions",
    "score_ifeval",
    "warm_up",
    "validate_instructions",
]

SOURCE = "rtv.ifeval"
MODES = ("strict", "loose")

_CHECKERS: dict[str, Checker] = {**CONTENT_CHECKERS, **FORMAT_CHECKERS}
assert set(_CHECKERS) == set(INSTRUCTION_IDS), "every id needs exactly one checker"


class InvalidInstructionsError(UserError, ValueError):
    """The record's instructions cannot be checked; ``problems`` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def validate_instructions(instruction_id_list: Any, kwargs: Any) -> list[str]:
    """Human-readable problems with a record's instructions; empty when they are fine.

    Each problem names its field (``instruction_id_list[2]``, ``kwargs[0].num_words``)
    so a record validator can report ``file:line: field: problem``.
    """
    return parse_instructions(instruction_id_list, kwargs)[1]


def _loose_variants(response: str) -> list[str]:
    """IFEval's seven loose variants besides the response itself."""
    lines = response.split("\n")
    no_first = "\n".join(lines[1:]).strip()
    no_last = "\n".join(lines[:-1]).strip()
    no_both = "\n".join(lines[1:-1]).strip()
    variants = [
        response.replace("*", ""),
        no_first,
        no_last,
        no_both,
        no_first.replace("*", ""),
        no_last.replace("*", ""),
        no_both.replace("*", ""),
    ]
    # A checker is a function of its text, so an identical variant cannot change
    # the answer; without asterisks half the variants repeat.
    unique: list[str] = []
    for variant in variants:
        if variant not in unique:
            unique.append(variant)
    return unique


def _follows(iid: str, args: dict[str, Any], text: str, errors: list[str]) -> bool:
    """One IFEval check; a blank text never follows (as in IFEval)."""
    if not text.strip():
        return False
    try:
        return bool(_CHECKERS[iid](text, args))
    except Exception as exc:  # a checker bug must not take down a batch
        errors.append(f"{iid}: {type(exc).__name__}: {exc}"[:300])
        return False


def _evaluate(parsed: Parsed, response: str, errors: list[str]) -> tuple[list[bool], list[bool]]:
    """Strict and loose results; loose re-checks only what strict failed."""
    strict = [_follows(iid, args, response, errors) for iid, args in parsed]
    loose = list(strict)
    variants: list[str] | None = None
    for index, (iid, args) in enumerate(parsed):
        if loose[index]:
            continue
        if variants is None:
            variants = _loose_variants(response)
        loose[index] = any(_follows(iid, args, v, errors) for v in variants if v != response)
    return strict, loose


def _parse_record(record: Mapping[str, Any]) -> tuple[Parsed, list[str]]:
    if not isinstance(record, Mapping):
        return [], [f"record: must be a mapping, got {type(record).__name__}"]
    if "instruction_id_list" not in record:
        return [], ["instruction_id_list: missing"]
    return parse_instructions(record.get("instruction_id_list"), record.get("kwargs"))


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def check_instructions(record: Mapping[str, Any], response: str, *, mode: str = "strict") -> list[bool]:
    """Per-instruction results in IFEval's order (``strict`` or ``loose``).

    Raises :class:`InvalidInstructionsError` when the record's instructions are
    invalid (see :func:`validate_instructions`), never because of the response;
    a non-string response is checked as empty text.
    """
    _check_mode(mode)
    parsed, problems = _parse_record(record)
    if problems:
        raise InvalidInstructionsError(problems)
    text = response if isinstance(response, str) else ""
    errors: list[str] = []
    if mode == "strict":
        return [_follows(iid, args, text, errors) for iid, args in parsed]
    return _evaluate(parsed, text, errors)[1]


def score_ifeval(record: Mapping[str, Any], response: str, *, mode: str = "strict") -> RewardResult:
    """1.0 when every instruction is followed in ``mode``, else 0.0. Never raises on data.

    ``info``: ``mode``, ``instruction_id_list``, ``follow_instruction_list`` (strict,
    IFEval's order), ``follow_instruction_list_loose``; on 0.0 also ``failure``
    (``instruction_not_followed`` with ``failed_instructions``, or
    ``bad_instructions`` with ``problems`` and ``explanation``).
    """
    _check_mode(mode)
    parsed, problems = _parse_record(record)
    if problems:
        return RewardResult(
            0.0,
            SOURCE,
            {
                "mode": mode,
                "failure": "bad_instructions",
                "problems": problems,
                "explanation": "; ".join(problems),
                "follow_instruction_list": [],
                "follow_instruction_list_loose": [],
            },
        )
    info: dict[str, Any] = {"mode": mode, "instruction_id_list": [iid for iid, _ in parsed]}
    if not isinstance(response, str):
        info["response_type"] = type(response).__name__
        response = ""
    errors: list[str] = []
    strict, loose = _evaluate(parsed, response, errors)
    chosen = strict if mode == "strict" else loose
    info["follow_instruction_list"] = strict
    info["follow_instruction_list_loose"] = loose
    if errors:
        info["checker_errors"] = errors
    if all(chosen):
        return RewardResult(1.0, SOURCE, info)
    info["failure"] = "instruction_not_followed"
    info["failed_instructions"] = [iid for (iid, _), ok in zip(parsed, chosen) if not ok]
    return RewardResult(0.0, SOURCE, info)


def warm_up() -> None:
    """Build what the checkers load lazily (NLTK's Punkt model, langdetect's profiles: ~0.6 s) now, so forked
    scoring workers inherit it instead of each paying it on its first item (measured in ``datarl serve``:
    ``bench/serve_load.py --tasks ifeval`` 131 -> 665 items/s)."""
    from datarl.rewards.ifeval.text import detect_language, split_sentences, word_tokenize

    split_sentences("Warm up. Done.")
    word_tokenize("warm up")
    detect_language("warm up the language detector")
