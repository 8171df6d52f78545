"""Tables for ``rtv.math``: extraction, equivalence, scoring, garbage and hang inputs.

Rows are shaped like real model outputs; every bug found becomes a row (DESIGN section 6).
"""

from __future__ import annotations

import time

import pytest

from datarl.rewards.math import Extraction, extract_answer, is_equivalent, score_math
from datarl.rewards.math_extract import MAX_RESPONSE_CHARS
from datarl.rewards.math_text import is_pathological, normalize_answer

# ----------------------------------------------------------------------------- extraction

EXTRACTION = [
    # (response, answer, method)
    ("So the total is $\\boxed{18}$.", "18", "boxed"),
    ("First I get \\boxed{3}. Wait, recheck: \\boxed{4}.", "4", "boxed"),  # last box wins
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}", "boxed"),  # nested braces
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}", "boxed"),  # escaped braces are not grouping
    ("\\[\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}\\]", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "boxed"),
    ("The area is \\fbox{25}", "25", "boxed"),
    ("Thus \\boxed 5", "5", "boxed"),
    ("I claim \\boxed{3} and then \\boxed{4", "3", "boxed"),  # truncated last box is skipped
    ("The answer is 6. Formatted: \\boxed{7}", "7", "boxed"),  # boxed beats a later-looking marker
    ("\\boxed{5} is wrong; the answer is 6", "6", "the_answer_is"),  # a later marker beats an earlier box
    ("So, the answer is 42.", "42", "the_answer_is"),
    ("The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}", "the_answer_is"),
    ("Therefore, the answer is: 3.5.", "3.5", "the_answer_is"),
    ("the answer is -7\n", "-7", "the_answer_is"),
    ("Answer: 12", "12", "answer_colon"),
    ("**Answer:** $x = 3$", "x = 3", "answer_colon"),
    ("Final Answer: 1,000 apples", "1,000 apples", "answer_colon"),
    ("Answer: \\(\\dfrac{1}{2}\\)", "\\dfrac{1}{2}", "answer_colon"),
    ("answer: (1, 2]", "(1, 2]", "answer_colon"),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72", "gsm8k_hashes"),
    ("16 - 3 - 4 = <<16-3-4=9>>9 eggs\n9 * 2 = $<<9*2=18>>18\nA: 18", "18", "a_colon"),
    ("He loses 3.5 pounds.\nA: -3.5", "-3.5", "a_colon"),
    ("The answer is 5.\nAnswer: 6", "6", "answer_colon"),  # the later marker wins
    ("Answer: 6\nOn reflection the answer is 5.", "5", "the_answer_is"),
    ("I think it's 5 and then 6", "6", "last_number"),
    ("Total = $1,250.", "1,250", "last_number"),
    ("so 3/4 of them", "3/4", "last_number"),
]


@pytest.mark.parametrize(("response", "answer", "method"), EXTRACTION)
def test_extract_answer(response: str, answer: str, method: str) -> None:
    assert extract_answer(response) == Extraction(answer, method)


@pytest.mark.parametrize("response", ["", "no numbers here", "\\boxed{unterminated", "\\boxed{}"])
def test_extract_nothing(response: str) -> None:
    assert extract_answer(response) is None


# ---------------------------------------------------------------------------- equivalence

EQUIVALENCE = [
    # (gold, prediction, expected)
    # math-verify false positives this module fixes
    ("1/2^98", "1/2^99", False),
    ("\\frac{1}{2^{98}}", "\\frac{1}{2^{99}}", False),
    ("0.1000001", "0.1", False),
    ("\\{1,2\\}", "(1,2)", False),
    ("\\{1,2\\}", "(1,2]", False),
    ("\\frac{1}{3}", "0.333333", False),  # exact unless rel_tol is given
    ("(1/2^98, 1)", "(1/2^99, 1)", False),
    ("\\begin{pmatrix}0.1000001\\\\2\\end{pmatrix}", "\\begin{pmatrix}0.1\\\\2\\end{pmatrix}", False),
    ("[0.1000001, 2]", "[0.1, 2]", False),
    ("\\frac{1}{0}", "5", False),  # zoo: oo <= tol * oo must not pass for "equal"
    ("\\infty", "10^{100}", False),
    ("2^{2009}", "2^{2008}", False),  # 600-digit numbers must not overflow to inf == inf
    # integers, separators, decimals
    ("1000", "1,000", True),
    ("10{,}000", "10000", True),
    ("10000", "10\\,000", True),
    ("1234567", "1,234,567", True),
    ("-5", "-5", True),
    ("-5", "5", False),
    ("3.50", "3.5", True),
    ("0.5", ".5", True),
    ("7", "7.0", True),
    ("7", "7.01", False),
    # fractions and mixed numbers
    ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
    ("\\frac{1}{2}", "\\tfrac12", True),
    ("\\frac12", "0.5", True),
    ("-\\frac{3}{4}", "\\frac{-3}{4}", True),
    ("\\frac{3}{4}", "6/8", True),
    ("\\frac{3}{4}", "\\frac{4}{3}", False),
    ("12\\frac{3}{5}", "12.6", True),
    ("12\\frac{3}{5}", "\\frac{63}{5}", True),
    ("1\\frac{1}{4}", "1 1/4", True),
    ("1\\frac{1}{4}", "5/4", True),
    # percentages
    ("25\\%", "25", True),
    ("25", "25\\%", True),
    ("0.25", "25\\%", True),
    ("25\\%", "0.25", True),
    ("25\\%", "26\\%", False),
    ("12.5", "12.5%", True),
    # units and text noise
    ("18", "18 dollars", True),
    ("18", "\\$18", True),
    ("18", "18\\text{ cm}", True),
    ("18", "18\\text{ cm}^2", True),
    ("18", "\\$18.00", True),
    ("5", "5\\mbox{ inches}", True),
    ("18", "19 dollars", False),
    ("30", "5 \\text{ or } 6", False),  # only trailing unit text is dropped, never "5 6" -> 56 or 30
    ("18", "18 \\text{ square } \\text{cm}", True),
    ("-5", "\u22125", True),  # Unicode minus
    # degrees
    ("30", "30^\\circ", True),
    ("30^\\circ", "30", True),
    ("45", "45^{\\circ}", True),
    ("30", "30°", True),
    # scientific notation
    ("1.5\\times10^{3}", "1500", True),
    ("1500", "1.5e3", True),
    ("3\\times 10^{-5}", "0.00003", True),
    ("3\\times 10^{-5}", "0.0003", False),
    # radicals, pi, closed forms
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    ("\\pi", "3.14159", False),
    ("2\\pi", "2\\pi", True),
    ("\\frac{\\pi}{2}", "\\pi/2", True),
    ("1/2^98", "2^{-98}", True),
    ("2^{2009}", "2^{2009}", True),
    # expressions and equations
    ("4a-2", "-2+4a", True),
    ("4a-2", "4a+2", False),
    ("x^2+2x+1", "(x+1)^2", True),
    ("3", "x=3", True),
    ("x=3", "3", True),
    ("x=3", "y=3", False),
    ("y=2x+1", "y=1+2x", True),
    ("1+i", "i+1", True),
    # intervals, sets, tuples
    ("(1,2]", "(1, 2]", True),
    ("(1,2]", "[1,2]", False),
    ("(1,2]", "(1,2)", False),
    ("[2,\\infty)", "[2, \\infty)", True),
    ("(-\\infty,2)\\cup(3,\\infty)", "(-\\infty, 2) \\cup (3, \\infty)", True),
    ("x\\in[2,5]", "[2,5]", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\{1,2,3\\}", "\\{1,2\\}", False),
    ("(3,-1)", "(3, -1)", True),
    ("(3,-1)", "(-1,3)", False),
    ("(1,2)", "\\left(1,2\\right)", True),
    # matrices
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\3\\end{pmatrix}", False),
    ("\\begin{pmatrix}1/2\\\\2\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", "\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", True),
    ("\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", "\\begin{pmatrix}1 & 3\\\\2 & 4\\end{pmatrix}", False),
    # text answers
    ("\\text{Devon}", "Devon", True),
    ("\\text{(A)}", "(A)", True),
    ("5", "five", False),
    # pathological: compared as strings, never evaluated
    ("10^{10^{10^{10}}}", "10^{10^{10^{10}}}", True),
    ("10^{10^{10^{10}}}", "9^9^9^9", False),
    ("5", "9^9^9^9", False),
]


@pytest.mark.parametrize(("gold", "pred", "expected"), EQUIVALENCE)
def test_is_equivalent(gold: str, pred: str, expected: bool) -> None:
    assert is_equivalent(gold, pred) is expected


def test_enough_new_format_rows() -> None:
    # The brief asks for >= 60 rows of formats not in the shared agreement files.
    assert len(EQUIVALENCE) + len(EXTRACTION) >= 100


@pytest.mark.parametrize(
    ("gold", "pred", "rel_tol", "expected"),
    [
        ("\\frac{1}{3}", "0.333", 1e-2, True),
        ("\\frac{1}{3}", "0.333", 1e-4, False),
        ("100", "101", 0.01, True),
        ("100", "102", 0.01, False),
        ("\\pi", "3.1416", 1e-4, True),
        ("\\pi", "3.1416", None, False),
        ("(1,2)", "(1.001,2)", 1e-2, True),
        ("0.1000001", "0.1", 1e-5, True),
        ("0.1000001", "0.1", 1e-8, False),
        ("25\\%", "0.2501", 1e-3, True),
        ("4a-2", "4a-2.0001", 0.5, False),  # tolerance is for numbers, not symbolic forms
    ],
)
def test_rel_tol(gold: str, pred: str, rel_tol: float | None, expected: bool) -> None:
    assert is_equivalent(gold, pred, rel_tol=rel_tol) is expected


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.1"])
def test_rel_tol_must_be_valid(bad: object) -> None:
    with pytest.raises(ValueError):
        is_equivalent("1", "1", rel_tol=bad)  # type: ignore[arg-type]


def test_normalize_keeps_math_words() -> None:
    assert normalize_answer("2 pi") == "2 pi"
    assert normalize_answer("18 dollars") == "18"
    assert normalize_answer("1,000") == "1000"


# -------------------------------------------------------------------------------- scoring

SCORING = [
    # (gold, response, score, failure, method)
    ("18", "She makes 9 * 2 = $<<9*2=18>>18\nA: 18", 1.0, None, "a_colon"),
    ("18", "9 * 2 = 20\nA: 20", 0.0, "wrong_answer", "a_colon"),
    ("\\frac{1}{2}", "Thus the probability is $\\boxed{\\dfrac{1}{2}}$.", 1.0, None, "boxed"),
    ("72", "So she sold 72 clips", 1.0, None, "last_number"),
    ("72", "I do not know.", 0.0, "no_answer", None),
    ("", "\\boxed{1}", 0.0, "bad_ground_truth", "boxed"),
    ("\\frac{", "\\boxed{1}", 0.0, "bad_ground_truth", "boxed"),
]


@pytest.mark.parametrize(("gold", "response", "score", "failure", "method"), SCORING)
def test_score_math(gold: str, response: str, score: float, failure: str | None, method: str | None) -> None:
    result = score_math({"task": "math", "ground_truth": gold}, response)
    assert result.source == "rtv.math"
    assert result.score == score
    assert result.failure == failure
    assert result.info["extraction_method"] == method
    assert result.info["ground_truth"] == gold
    assert set(result.info) >= {"extracted", "extraction_method", "ground_truth"}


def test_score_reports_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datarl.rewards.math as m

    def boom(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(m, "_compare", boom)
    result = score_math({"ground_truth": "1"}, "\\boxed{1}")
    assert result.score == 0.0
    assert result.failure == "internal_error"
    assert "kaboom" in result.info["error"]


def test_math_verify_timeout_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    # math-verify's TimeoutException derives from BaseException; it must not escape.
    from math_verify.errors import TimeoutException

    import datarl.rewards.math as m

    def slow(*args: object, **kwargs: object) -> bool:
        raise TimeoutException("too slow")

    monkeypatch.setattr(m, "_compare", slow)
    assert is_equivalent("1", "2") is False
    assert score_math({"ground_truth": "1"}, "\\boxed{2}").failure == "internal_error"


def test_keyboard_interrupt_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import datarl.rewards.math as m

    def interrupt(*args: object, **kwargs: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(m, "_compare", interrupt)
    with pytest.raises(KeyboardInterrupt):
        score_math({"ground_truth": "1"}, "\\boxed{1}")


# ------------------------------------------------------------------- garbage and hang inputs

GARBAGE = [
    None,
    0,
    b"\x00\xff",
    "",
    "\x00\xff\ufffd" * 1000,
    "x" * 5_000_000,
    "1" * 5_000_000,
    "\\boxed{" * 10_000,
    "{" * 100_000 + "}" * 100_000,
    "\\boxed{" + "{" * 5_000 + "1" + "}" * 5_001,
    "\\boxed{" + "\\frac{" * 60 + "1" + "}{2}" * 60 + "}",
    "Answer: " * 200_000,
    "\\boxed{10^{10^{10^{10}}}}",
    "\\boxed{9^9^9^9}",
    "\\boxed{9**9**9**9}",
    "\\boxed{2^{2^{100}}}",
    "\\boxed{(10^{10})!}",
    "\\boxed{100000!}",
    "\\boxed{(x+1)^{9999}}",
    "\\boxed{(x+y+1)^{200}}",
    "\\boxed{1" + "0" * 10_000 + "}",
    "\\boxed{" + "1+" * 1_000 + "1}",
    "\\boxed{5 " + "a" * 900 + "!}",  # once made the unit-word regex backtrack
    "The answer is 5 " + "ab " * 300 + "!",
]


@pytest.mark.parametrize("response", GARBAGE, ids=lambda r: repr(r)[:30])
@pytest.mark.parametrize("gold", ["18", "x^2+1", "7^{7^{7^{7}}}"])
def test_garbage_never_raises_and_is_fast(gold: str, response: object) -> None:
    start = time.perf_counter()
    result = score_math({"ground_truth": gold}, response)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert result.score == 0.0
    assert result.failure in {"no_answer", "wrong_answer"}
    assert elapsed < 15.0, f"took {elapsed:.2f}s"  # a hang guard (well under 1 s on an idle core), not a timing test


@pytest.mark.parametrize(
    ("gold", "pred"),
    [(None, "1"), ("1", None), (b"1", "1"), ("9^9^9^9", "9^9^9^9 "), ("{" * 50_000, "}" * 50_000)],
)
def test_is_equivalent_never_raises(gold: object, pred: object) -> None:
    assert isinstance(is_equivalent(gold, pred), bool)  # type: ignore[arg-type]


def test_score_bad_records_never_raise() -> None:
    assert score_math({}, "\\boxed{1}").failure == "bad_ground_truth"
    assert score_math(None, "\\boxed{1}").failure == "bad_ground_truth"  # type: ignore[arg-type]
    assert score_math({"ground_truth": 18}, "\\boxed{18}").score == 1.0  # a JSON int gold is fine


def test_extraction_reads_only_the_tail() -> None:
    response = "\\boxed{1}" + " " * MAX_RESPONSE_CHARS + "so 2"
    assert extract_answer(response) == Extraction("2", "last_number")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("10^{10^{10^{10}}}", True),
        ("9^9^9^9", True),
        ("2^{100000}", True),
        ("(x+1)^{100}", True),
        ("(10^{10})!", True),
        ("2^{2009}", False),
        ("x^{2}+1", False),
        ("10^{-5}", False),
        ("5!", False),
        ("x != 3", False),
    ],
)
def test_is_pathological(answer: str, expected: bool) -> None:
    assert is_pathological(answer) is expected


# ----------------------------------------------------------------------------- step credit

TWO_STEPS = {"ground_truth": "30", "reference": "12 + 5 = 17\n17 + 13 = 30\n#### 30"}
STEP_CREDIT = [
    # (record, response, score, matched)
    (TWO_STEPS, "12 + 5 = 17\n17 + 13 = 30\n#### 30", 1.0, None),  # right: full reward, no step count
    (TWO_STEPS, "12 + 5 = 17\n17 + 13 = 31\n#### 31", 0.25, 1),  # first step right, second wrong
    (TWO_STEPS, "12 + 5 = 18\n18 + 13 = 31\n#### 31", 0.0, 0),
    (TWO_STEPS, "12 + 5 = 18\n17 + 13 = 30\n#### 31", 0.0, 0),  # credit only from the first step on
    (TWO_STEPS, "12 + 5 = 17\n17 + 13 = 30\n#### 29", 0.5, 2),  # every step right, answer line wrong
    (TWO_STEPS, "1 + 1 = 2\n12 + 5 = 17\n#### 17", 0.0, 0),  # a padded step does not earn credit
    (TWO_STEPS, "So 12+5=17 then 17 + 13 = 3,1\n#### 31", 0.25, 1),
    # GSM8K calculator annotations, in the reference and in the response
    (
        {"ground_truth": "18", "reference": "16 - 3 - 4 = <<16-3-4=9>>9 eggs\n9 * 2 = $<<9*2=18>>18\n#### 18"},
        "She has 16 - 3 - 4 = <<16-3-4=9>>9 left, so 9 * 2 = $<<9*2=16>>16\n#### 16",
        0.25,
        1,
    ),
    ({"ground_truth": "30", "reference": "The answer is 30."}, "12 + 5 = 17\n#### 17", 0.0, None),  # no steps
    ({"ground_truth": "30"}, "12 + 5 = 17\n#### 17", 0.0, None),
]


@pytest.mark.parametrize(("record", "response", "score", "matched"), STEP_CREDIT)
def test_step_credit(record: dict, response: str, score: float, matched: int | None) -> None:
    result = score_math(record, response, step_credit=0.5)
    assert result.score == pytest.approx(score)
    assert (result.info.get("steps") or {}).get("matched") == matched
    assert score_math(record, response).score == (1.0 if score == 1.0 else 0.0)  # off by default


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5", True])
def test_step_credit_must_be_valid(bad: object) -> None:
    with pytest.raises(ValueError, match="step_credit"):
        score_math(TWO_STEPS, "#### 30", step_credit=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("response", GARBAGE, ids=lambda r: repr(r)[:30])
def test_step_credit_garbage_never_raises_and_is_fast(response: object) -> None:
    start = time.perf_counter()
    result = score_math(TWO_STEPS, response, step_credit=0.5)  # type: ignore[arg-type]
    assert 0.0 <= result.score < 1.0
    assert time.perf_counter() - start < 15.0  # hang guard


# ------------------------------------------------ issue 15: undefined values, times, ratios

# (gold, response, score): two undefined or infinite values are never equal; clock times compare as times.
UNDEFINED_AND_TIMES = [
    ("12:00", "The hands overlap again after 12 hours, so the clock shows $\\boxed{1:00}$.", 0.0),
    ("12:00", "The hands overlap again after 12 hours, so the clock shows $\\boxed{12:00}$.", 1.0),
    ("3:00", "Counting back 4 hours from 7:00, the time was $\\boxed{11:00}$.", 0.0),
    ("2:30 PM", "The train arrives 5 hours after 9:30 AM, at $\\boxed{14:30}$.", 1.0),
    ("2:30 PM", "The train arrives at $\\boxed{2:30 \\text{ AM}}$.", 0.0),
    ("9:45", "She wakes up at $\\boxed{9:45 \\text{ a.m.}}$", 1.0),
    ("12:00", "The answer is $\\boxed{12}$.", 0.0),  # a time is not its hour
    ("5", "Dividing by $x - 2 = 0$ gives $\\boxed{\\frac{5}{0}}$.", 0.0),
    ("\\frac{1}{0}", "So the slope is $\\boxed{\\frac{2}{0}}$.", 0.0),
    ("0/0", "The limit form is $\\boxed{\\frac{0}{0}}$.", 0.0),
    ("\\infty", "The sum diverges to $\\boxed{-\\infty}$.", 0.0),
    ("\\infty", "The sum diverges, so it is $\\boxed{+\\infty}$.", 1.0),
    ("∞", "The limit is $\\boxed{\\infty}$.", 1.0),
    ("(-\\infty, 3)", "So $x \\in \\boxed{(-\\infty, 4)}$.", 0.0),
    ("(1, \\frac{1}{0})", "The point is $\\boxed{(1, \\frac{3}{0})}$.", 0.0),
    ("\\frac{x}{0}", "Then $f(x) = \\boxed{\\frac{y}{0}}$.", 0.0),
    ("\\text{undefined}", "The slope is $\\boxed{\\frac{1}{0}}$.", 0.0),
    ("1:30", "The ratio is $\\boxed{1/30}$.", 0.0),  # a time, not a ratio
    ("2:1", "The ratio of boys to girls is $\\boxed{2}$.", 1.0),
    ("5:8", "So the ratio is $\\boxed{\\dfrac{5}{8}}$.", 1.0),
    ("1:2", "The ratio simplifies to $\\boxed{2:4}$.", 1.0),
    ("5:8", "So the ratio is $\\boxed{5:6}$.", 0.0),
]


@pytest.mark.parametrize(("gold", "response", "score"), UNDEFINED_AND_TIMES)
def test_undefined_values_and_times(gold: str, response: str, score: float) -> None:
    assert score_math({"ground_truth": gold}, response).score == score


# -------------------------------------------- issue 15: thousands separators and reader forms

READER_FORMS = [
    # (gold, prediction, expected)
    # LaTeX thousands separators with spacing
    ("32349", "32,\\! 349", True),
    ("32349", "32,\\!349", True),
    ("1000000", "1,\\!000,\\!000", True),
    ("12345.67", "12,\\! 345.67", True),
    ("123", "1,\\! 23", False),  # two digits after the mark: no thousands separator
    ("2349", "2, 349", False),  # a plain comma and a space is a list
    # functions and parameters with other names
    ("f(z)=z", "f(x)=x", True),
    ("f(n) = 2 n+1007", "f(m) = 2m + 1007", True),
    ("f(z)=z", "f(x)=x+1", False),
    ("x = k\\pi", "n\\pi", True),
    ("x = k\\pi", "2n\\pi", False),
    ("(-32 + 3x, 64 - 5x)", "(-32 + 3t, 64 - 5t) \\text{ for some integer } t", True),
    ("x", "y", False),  # a bare unknown is never renamed
    # lists: order, labels, tuple assignments, units per item
    ("16,3,1,1", "w=16, d=3, a=1, b=1", True),
    ("16,3,1,1", "w=16, d=3, a=2, b=2", False),
    ("16,3,1,1", "16, 3, 1", False),  # a multiset: the repeated 1 counts
    ("7,14,18", "Paolo: 18, Qing: 14, Rayna: 7", True),
    ("x=1, y=2", "x=2, y=1", False),  # both labelled alike: compared by label
    ("f(n)=n, g(n)=1", "(f(n), g(n)) = (n, 1) \\text{ for all positive integers } n", True),
    ("f(n)=n, g(n)=1", "(f(n), g(n)) = (n, 2)", False),
    ("10,11,12,-2,-1", "Sequence 1: -2, -1 and Sequence 2: 10, 11, 12", True),
    ("40, 60, 10", "40 \\text{ red}, 60 \\text{ blue}, 10 \\text{ green}", True),
    ("3 \\pm 2\\sqrt{2}", "3 + 2\\sqrt{2},\\ 3 - 2\\sqrt{2}", True),
    ("3 \\pm 2\\sqrt{2}", "3 + 2\\sqrt{2},\\ 3 + 4\\sqrt{3}", False),
    ("b < a < d < c", "b, a, d, c", True),
    ("b < a < d < c", "a, b, c, d", False),
    # vectors and tuples
    ("\\begin{pmatrix} -7 \\\\ 16 \\\\ 5 \\end{pmatrix}", "(-7,16,5)", True),
    ("\\begin{pmatrix} -7 \\\\ 16 \\\\ 5 \\end{pmatrix}", "(-7,16,7)", False),
    # conditions, set-builder notation and intervals
    ("[\\frac{1}{2}, 8]", "0.5 \\leq x \\leq 8", True),
    ("[\\frac{1}{2}, 8]", "0.5 \\leq x < 8", False),
    ("\\{x|-1 < x < 1\\}", "(-1, 1)", True),
    ("\\{x | x < \\frac{3}{2}\\} - \\{-6\\}", "(-\\infty, -6) \\cup (-6, \\dfrac{3}{2})", True),
    ("\\{x | x < \\frac{3}{2}\\} - \\{-6\\}", "(-\\infty, \\dfrac{3}{2})", False),
    ("a \\leqslant -2 \\text{ or } a = 1", "(-\\infty, -2] \\cup \\{1\\}", True),
    ("a \\leqslant -2 \\text{ or } a = 1", "(-\\infty, -2] \\cup \\{2\\}", False),
    ("-4<m\\leq0", "(-4, 0]", True),
    ("x \\in [2, 5)", "[2,5)", True),
    ("x \\in [2, 5)", "[2,5]", False),
    ("(-∞, -3) ∪ (3, +∞)", "(-\\infty, -3) \\cup (3, \\infty)", True),
    # equations against their solved forms
    ("y + 1 = - (2x - 1)^2", "-4x^2 + 4x - 2", True),
    ("y + 1 = - (2x - 1)^2", "-4x^2 + 4x - 1", False),
    ("2x - y + 1 = 0", "y = 2x + 1", True),
    ("2x - y + 1 = 0", "y = 2x - 1", False),
    # rounded decimals
    ("30.52", "\\dfrac{1587}{52}", True),
    ("30.52", "\\dfrac{1687}{52}", False),
    ("0.458", "\\dfrac{27}{59}", True),
    ("21.93", "21 \\dfrac{13}{14}", True),
    ("6.67", "20:3", True),
    ("6.67\\%", "\\dfrac{1}{15}", True),
    ("117.95\\%", "118\\%", True),
    ("117.95\\%", "110\\%", False),
    ("165.47", "165.5 \\text{ grams}", True),
    ("2.653 \\ \\mathrm{m}", "2.65", True),
    ("299.94", "300", True),
    ("0.458", "0.46", False),  # two figures are too few to call a rounding
    ("0.5", "0.46", False),  # a one-figure decimal may be exact
    ("300", "299.94", False),  # an integer ground truth is exact
    ("\\frac{600}{7}", "85.71", False),  # so is a fraction: no approximation without rel_tol
    ("\\frac{1 + \\sqrt{97}}{8} \\approx 1.36", "\\dfrac{1 + \\sqrt{97}}{8}", True),
    ("\\frac{1 + \\sqrt{97}}{8} \\approx 1.36", "1.36", True),
    ("\\frac{1 + \\sqrt{97}}{8} \\approx 1.36", "\\dfrac{1 + \\sqrt{97}}{10}", False),
    # degrees and radians
    ("\\frac{\\pi}{6}", "30^\\circ", True),
    ("\\frac{\\pi}{6}", "60^\\circ", False),
    # eaten and doubled backslashes in ground truths, HTML and Unicode
    (
        "[\x0crac{1}{{e}^{2}}- \x0crac{1}{6}, \x0crac{1}{e}- \x0crac{1}{3})",
        "\\left[ \\dfrac{6 - e^2}{6e^2}, \\dfrac{3 - e}{3e} \\right)",
        True,
    ),
    (
        "f(x) = \\text{sin}\\bigg(\\\\frac{\\\\pi}{2}x + \\\\frac{\\\\pi}{6}\\\\bigg)",
        "\\sin\\left( \\dfrac{\\pi}{2}x + \\dfrac{\\pi}{6} \\right)",
        True,
    ),
    ("∀x＞0, 3<sup>x</sup>≥x<sup>2</sup>", "\\forall x > 0, 3^x \\geq x^2", True),
    ("∀x＞0, 3<sup>x</sup>≥x<sup>2</sup>", "\\forall x > 0, 3^x \\geq x", False),  # math-verify read both as 3
    # identities sympy cannot prove, checked at probe points
    ("2 \\arcsin \\sqrt{a}", "\\arccos\\left(1 - 2a\\right)", True),
    ("2 \\arcsin \\sqrt{a}", "\\arccos\\left(1 - 3a\\right)", False),
    ("|x|", "x", False),
    ("\\frac{d !}{2 k(d-k) !}", "\\dfrac{\\dbinom{d}{k} (k - 1)!}{2}", True),
    # sentences, choices, ordinals
    ("The transformed function $f(x+1)-1$ is odd.", "odd", True),
    ("The transformed function $f(x+1)-1$ is odd.", "even", False),
    ("The function is not odd.", "odd", False),
    ("\\text{(B)}", "B", True),
    ("15th Day", "15", True),
    ("\\text{only }x=0", "0", True),
]


@pytest.mark.parametrize(("gold", "pred", "expected"), READER_FORMS)
def test_reader_forms(gold: str, pred: str, expected: bool) -> None:
    assert is_equivalent(gold, pred) is expected
