"""Tests for ``rtv.ifeval``: one table of (instruction, kwargs, response, expected), then edge cases."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time

import pytest

from datarl.rewards.ifeval import (
    INSTRUCTION_IDS,
    InvalidInstructionsError,
    check_instructions,
    formats,
    score_ifeval,
    validate_instructions,
)
from datarl.rewards.ifeval.checkers import content_number_placeholders
from datarl.rewards.ifeval.text import count_sentences, detect_language, word_tokenize

LT, AL = "less than", "at least"
FR = "Bonjour, je m'appelle Marie et j'habite à Paris. J'aime beaucoup lire des livres le soir."
RU = "Привет, как дела? Я живу в Москве и очень люблю читать книги."
EN = "This is a plain English sentence about the weather, which is quite nice today."

# (instruction id, kwargs, response, strict result)
CASES = [
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "I love Apple PIE.", True),
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "I love apples.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": AL}, "A cat and a Cat.", True),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": AL}, "One cat.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": LT}, "One cat.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "A badge is fine.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "This is BAD.", False),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": AL}, "Zig zag", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": AL}, "zebra", False),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": LT}, "zebra", True),
    # A non-letter is counted literally (old IFEval swapped in a random letter).
    ("keywords:letter_frequency", {"letter": "!", "let_frequency": 2, "let_relation": AL}, "Hi!!", True),
    ("language:response_language", {"language": "fr"}, FR, True),
    ("language:response_language", {"language": "fr"}, EN, False),
    ("language:response_language", {"language": "en"}, "12345 67890", True),  # undetectable
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LT}, "One. Two.", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LT}, "One. Two. Three.", False),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": AL}, "Dr. Smith came. He sat. Bye.", True),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": AL}, "Dr. Smith came. He sat.", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\nB", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nA\n***\nB\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\n\n***\nB", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n\nB", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": AL}, "one two three four five", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": AL}, "one two-three", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": LT}, "one two-three", True),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"},
        'First one.\n\n"Then, the second.',
        True,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "First one.\n\nNow the second.",
        False,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "First.\n\nThen two.\n\nThree.",
        False,
    ),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name] at [address]", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name] at [add\nress]", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\n\nP.S. Bye.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi. PS bye", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\np. p. s. bye", True),
    ("detectable_content:postscript", {"postscript_marker": "Note:"}, "Hi.\nnote: bye", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "Intro\n* a\n  - b\n**bold**", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n- b\n* c", False),
    ("detectable_format:constrained_response", {}, "Well... My answer is no.", True),
    ("detectable_format:constrained_response", {}, "My answer is nope.", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*a* and **b**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*a* and * * and *\nb*", False),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\na\nSection 2\nb",
        True,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "SECTION 1\na\nSection 2\nb",
        False,
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', True),
    ("detectable_format:json_format", {}, "{a: 1}", False),
    ("detectable_format:title", {}, "<<My Title>>\nText.", True),
    ("detectable_format:title", {}, "<<  >> and <<a\nb>>", False),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "A******\n******B", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "  say HI. Hi there!", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "Hi there! Say hi.", False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, 'Done. any other questions?"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Bye.", False),
    ("startend:quotation", {}, ' "hello" ', True),
    ("startend:quotation", {}, '"', False),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": AL}, "I'M HERE NOW", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": AL}, "Hello World FOO", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LT}, "NASA is cool", True),
    ("change_case:english_capital", {}, EN.upper(), True),
    ("change_case:english_capital", {}, EN, False),
    ("change_case:english_capital", {}, RU.upper(), False),
    # langdetect reads all-caps French as English; IFEval inherits the quirk.
    ("change_case:english_capital", {}, FR.upper(), True),
    ("change_case:english_lowercase", {}, EN.lower(), True),
    ("change_case:english_lowercase", {}, EN, False),
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
]


def _record(iid: str, kwargs: dict, prompt: str = "Prompt.") -> dict:
    return {"prompt": prompt, "instruction_id_list": [iid], "kwargs": [kwargs]}


def test_table_covers_every_instruction_type_both_ways() -> None:
    assert len(INSTRUCTION_IDS) == 25
    seen = {(iid, expected) for iid, _, _, expected in CASES}
    for iid in INSTRUCTION_IDS:
        assert (iid, True) in seen and (iid, False) in seen, iid


@pytest.mark.parametrize("iid,kwargs,response,expected", CASES)
def test_instruction(iid: str, kwargs: dict, response: str, expected: bool) -> None:
    record = _record(iid, kwargs)
    assert validate_instructions(record["instruction_id_list"], record["kwargs"]) == []
    assert check_instructions(record, response) == [expected]
    result = score_ifeval(record, response)
    assert result.source == "rtv.ifeval"
    assert result.score == (1.0 if expected else 0.0)
    assert result.info["follow_instruction_list"] == [expected]
    if not expected:
        assert result.failure == "instruction_not_followed"
        assert result.info["failed_instructions"] == [iid]


# --- strict vs loose -----------------------------------------------------------------

LOOSE_CASES = [
    ("startend:quotation", {}, 'Here you go:\n"Hello world"'),
    ("detectable_format:json_format", {}, 'Sure!\n{"a": 1}\nHope this helps.'),
    ("startend:end_checker", {"end_phrase": "The end."}, "Story.\nThe end.**"),
    ("punctuation:no_comma", {}, "Sure, here it is:\nNo commas here"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "**Title**\n* only item\n*Footer*"),
]


@pytest.mark.parametrize("iid,kwargs,response", LOOSE_CASES)
def test_loose_rescues_what_strict_fails(iid: str, kwargs: dict, response: str) -> None:
    record = _record(iid, kwargs)
    assert check_instructions(record, response, mode="strict") == [False]
    assert check_instructions(record, response, mode="loose") == [True]
    strict, loose = score_ifeval(record, response), score_ifeval(record, response, mode="loose")
    assert (strict.score, loose.score) == (0.0, 1.0)
    assert strict.info["follow_instruction_list_loose"] == [True]
    assert loose.info["follow_instruction_list"] == [False]
    assert loose.info["mode"] == "loose" and "failure" not in loose.info


def test_multi_instruction_order_and_failed_ids() -> None:
    record = {
        "prompt": "p",
        "instruction_id_list": ["punctuation:no_comma", "startend:quotation", "detectable_format:title"],
        "kwargs": [{}, {}, {}],
    }
    result = score_ifeval(record, '"<<T>> one, two"')
    assert result.info["follow_instruction_list"] == [False, True, True]
    assert result.info["failed_instructions"] == ["punctuation:no_comma"]
    assert result.info["instruction_id_list"] == record["instruction_id_list"]


# --- edge cases ----------------------------------------------------------------------


@pytest.mark.parametrize("response", ["", "   \n\t "])
def test_blank_response_follows_nothing(response: str) -> None:
    record = _record("punctuation:no_comma", {})
    for mode in ("strict", "loose"):
        result = score_ifeval(record, response, mode=mode)
        assert result.score == 0.0
        assert result.info["follow_instruction_list"] == [False]


def test_kwargs_with_none_values_as_in_hf_ifeval() -> None:
    all_keys = dict.fromkeys(
        ["num_highlights", "relation", "num_words", "keywords", "language", "prompt_to_repeat", "end_phrase"]
    )
    record = {
        "prompt": "p",
        "instruction_id_list": ["detectable_format:number_highlighted_sections", "punctuation:no_comma"],
        "kwargs": [{**all_keys, "num_highlights": 1}, dict(all_keys)],
    }
    assert validate_instructions(record["instruction_id_list"], record["kwargs"]) == []
    assert score_ifeval(record, "*one* highlight").score == 1.0
    # NaN is how pandas writes a missing Parquet int; an integral float is an int.
    assert (
        validate_instructions(
            ["length_constraints:number_words"], [{"num_words": 3.0, "relation": AL, "num_bullets": float("nan")}]
        )
        == []
    )


BAD_INSTRUCTIONS = [
    (["punctuation:nocomma"], [{}], "did you mean 'punctuation:no_comma'"),
    (["no_comma"], [{}], "did you mean 'punctuation:no_comma'"),
    (["punctuation:no_comma"], {}, "kwargs: must be a list of dicts"),
    (["punctuation:no_comma"], [{}, {}], "has 2 entries but instruction_id_list has 1"),
    (
        ["length_constraints:number_words"],
        [{"num_words": "300", "relation": AL}],
        "kwargs[0].num_words: must be an integer",
    ),
    (["length_constraints:number_words"], [{"num_words": True, "relation": AL}], "must be an integer"),
    (
        ["length_constraints:number_words"],
        [{"num_words": 300, "relation": "more than"}],
        "kwargs[0].relation: must be 'less than' or 'at least'",
    ),
    (["length_constraints:number_words"], [{"num_words": 300}], "kwargs[0].relation: missing"),
    (["length_constraints:number_words"], [{"num_words": -1, "relation": AL}], "must be >= 0"),
    (["punctuation:no_comma"], [{"num_words": 3}], "unexpected argument 'num_words'"),
    (["punctuation:no_comma"], ["oops"], "kwargs[0]: must be a dict"),
    (["keywords:existence"], [{"keywords": "apple"}], "non-empty list of strings"),
    (["keywords:letter_frequency"], [{"letter": "ab", "let_frequency": 1, "let_relation": AL}], "single character"),
    (["language:response_language"], [{"language": "english"}], "langdetect language code"),
    (["startend:end_checker"], [{"end_phrase": "  "}], "must not be blank"),
    (
        ["length_constraints:nth_paragraph_first_word"],
        [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "x"}],
        "must be in 1..num_paragraphs",
    ),
    ("punctuation:no_comma", [{}], "instruction_id_list: must be a list"),
    ([], [], "must not be empty"),
    ([42], [{}], "unknown instruction id 42"),
]


@pytest.mark.parametrize("ids,kwargs,message", BAD_INSTRUCTIONS)
def test_bad_instructions_are_reported_never_raised(ids: object, kwargs: object, message: str) -> None:
    problems = validate_instructions(ids, kwargs)
    assert any(message in p for p in problems), problems
    record = {"prompt": "p", "instruction_id_list": ids, "kwargs": kwargs, "response": "x"}
    result = score_ifeval(record, "some response")
    assert result.score == 0.0 and result.failure == "bad_instructions"
    assert message in result.info["explanation"]
    with pytest.raises(InvalidInstructionsError):
        check_instructions(record, "some response")


def test_record_shapes_that_never_raise() -> None:
    assert score_ifeval({}, "x").failure == "bad_instructions"
    assert score_ifeval("not a record", "x").failure == "bad_instructions"  # type: ignore[arg-type]
    record = _record("punctuation:no_comma", {})
    result = score_ifeval(record, None)  # type: ignore[arg-type]
    assert result.score == 0.0 and result.info["response_type"] == "NoneType"
    with pytest.raises(ValueError):
        score_ifeval(record, "x", mode="lenient")


def test_invalid_user_regex_is_matched_literally() -> None:
    record = _record("keywords:existence", {"keywords": ["f(x"]})
    assert score_ifeval(record, "Let f(x) = 2.").score == 1.0
    assert score_ifeval(record, "Let f x = 2.").score == 0.0


def test_checker_crash_scores_false_and_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    import datarl.rewards.ifeval as ifeval

    def boom(value: str, args: object) -> bool:
        raise RuntimeError("bug")

    monkeypatch.setitem(ifeval._CHECKERS, "punctuation:no_comma", boom)
    result = score_ifeval(_record("punctuation:no_comma", {}), "fine")
    assert result.score == 0.0
    assert "RuntimeError: bug" in result.info["checker_errors"][0]


def test_deeply_nested_json_is_not_json() -> None:
    record = _record("detectable_format:json_format", {})
    assert score_ifeval(record, "[" * 100_000 + "]" * 100_000).score == 0.0


# --- the linear rewrites agree with IFEval's regexes -------------------------------------


def _random_texts(alphabet: str, count: int = 3000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(count)]


def test_bullet_scan_matches_ifeval_regex() -> None:
    for text in _random_texts("*- \n\ta"):
        star = len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE))
        dash = len(re.findall(r"^\s*-.*$", text, flags=re.MULTILINE))
        assert formats._count_line_items(text, "*", True) == star, repr(text)
        assert formats._count_line_items(text, "-", False) == dash, repr(text)


def test_title_scan_matches_ifeval_regex() -> None:
    for text in _random_texts("<> \na"):
        titles = re.findall(r"<<[^\n]+>>", text)
        expected = any(t.lstrip("<").rstrip(">").strip() for t in titles)
        assert formats.format_title(text, {}) == expected, repr(text)


def test_placeholder_scan_matches_ifeval_regex() -> None:
    for text in _random_texts("[] \na"):
        count = len(re.findall(r"\[.*?\]", text))
        assert content_number_placeholders(text, {"num_placeholders": count}), repr(text)
        assert not content_number_placeholders(text, {"num_placeholders": count + 1}), repr(text)


def test_postscript_search_matches_ifeval_findall() -> None:
    for text in _random_texts("pPsS. \n"):
        lowered = text.lower()
        expected = bool(re.findall(r"\s*p\.\s?s\..*$", lowered, flags=re.MULTILINE))
        assert formats_postscript(text, "P.S.") == expected, repr(text)


def formats_postscript(text: str, marker: str) -> bool:
    from datarl.rewards.ifeval.checkers import content_postscript

    return content_postscript(text, {"postscript_marker": marker})


# --- offline text helpers, determinism, size ----------------------------------------------


def test_sentence_and_word_helpers_work_offline() -> None:
    assert count_sentences("Dr. Smith went home. He was tired.") == 2
    assert word_tokenize("I'm HERE, (ok).") == ["I", "'m", "HERE", ",", "(", "ok", ")", "."]


def _detect_many(texts: list[str]) -> list[str | None]:
    return [detect_language(t) for t in texts]


AMBIGUOUS = ["ok", "hello mundo", "pizza pasta", "ciao bella", "no", "Guten Tag bonjour", "1 2 3 a"]


def test_language_detection_is_deterministic_across_calls_and_processes() -> None:
    first = _detect_many(AMBIGUOUS)
    for _ in range(5):
        assert _detect_many(AMBIGUOUS) == first
    # A fresh interpreter (as a spawned worker is) must give the same answers.
    code = (
        "import json, sys; from datarl.rewards.ifeval.text import detect_language; "
        "print(json.dumps([detect_language(t) for t in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(AMBIGUOUS)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == first


def test_five_megabyte_response_finishes_quickly() -> None:
    paragraph = (
        "The quick brown fox jumps over the lazy dog. It was NOT amused, said Dr. Smith.\n"
        "* A bullet with a [placeholder] and *highlight* <<title>>\nSection 1\n\n"
    )
    response = paragraph * (5_000_000 // len(paragraph))
    kwargs = {
        "keywords:existence": {"keywords": ["fox"]},
        "keywords:frequency": {"keyword": "fox", "frequency": 3, "relation": AL},
        "keywords:forbidden_words": {"forbidden_words": ["cat"]},
        "keywords:letter_frequency": {"letter": "q", "let_frequency": 5, "let_relation": LT},
        "language:response_language": {"language": "en"},
        "length_constraints:number_sentences": {"num_sentences": 5, "relation": LT},
        "length_constraints:number_paragraphs": {"num_paragraphs": 3},
        "length_constraints:number_words": {"num_words": 100, "relation": LT},
        "length_constraints:nth_paragraph_first_word": {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "the"},
        "detectable_content:number_placeholders": {"num_placeholders": 2},
        "detectable_content:postscript": {"postscript_marker": "P.S."},
        "detectable_format:number_bullet_lists": {"num_bullets": 3},
        "detectable_format:number_highlighted_sections": {"num_highlights": 2},
        "detectable_format:multiple_sections": {"section_spliter": "Section", "num_sections": 2},
        "combination:repeat_prompt": {"prompt_to_repeat": "The quick"},
        "startend:end_checker": {"end_phrase": "the end"},
        "change_case:capital_word_frequency": {"capital_frequency": 3, "capital_relation": LT},
    }
    record = {
        "prompt": "p",
        "instruction_id_list": list(INSTRUCTION_IDS),
        "kwargs": [kwargs.get(iid, {}) for iid in INSTRUCTION_IDS],
    }
    start = time.perf_counter()
    result = score_ifeval(record, response, mode="loose")
    elapsed = time.perf_counter() - start
    assert len(result.info["follow_instruction_list"]) == 25
    assert "checker_errors" not in result.info
    assert elapsed < 30, f"{elapsed:.1f}s"
