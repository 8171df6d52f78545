"""``rtv.math``: rule-based math verifier (answer extraction + equivalence).

Extraction (:func:`extract_answer`, :mod:`datarl.rewards.math_extract`): the final group
of boxes; a later ``The answer is``/``Answer:``/``#### N``/``A: N`` marker; else the last
bare number (``last_number``, reported in ``info`` because it is a guess).

Equivalence (:func:`is_equivalent`) reads both answers the way a careful reader does:

1. Normalisation (:mod:`datarl.rewards.math_text`) drops what never changes a value:
   delimiters, spacing, thousands separators (``32,\\! 349``), units, ``\\text{}``, degree
   marks, quantifiers like ``for some integer t``; it repairs eaten backslashes and Unicode.
2. Reader forms (:mod:`datarl.rewards.math_forms`): clock times compare as times (never as
   ``1/0``), ratios as quotients, lists item by item as multisets (labels like ``w=16`` or
   ``Paolo: 18`` dropped unless both sides label every item, then by label), a tuple against
   the list of its elements, degrees against radians.
3. Both answers plain numbers (``1,000``, ``\\dfrac{1}{2}``, ``12\\frac{3}{5}``, ``25\\%``,
   ``1.5\\times10^{3}``): exact ``Fraction``s; a percentage matches its number or its number
   / 100; a ground truth written as a decimal is matched by an exact value that rounds to it
   (``\\dfrac{27}{59}`` for ``0.458``) or by itself given to fewer places (``118\\%`` for
   ``117.95\\%``), with at least three significant figures shown (see ``math_forms``).
4. Otherwise sympy through math-verify (:mod:`datarl.rewards.math_sympy`): exact numbers,
   undefined values never equal, sets from conditions, equations against solved forms,
   renamed parameters, then math-verify's ``verify``.

An exact ground truth (``\\frac{600}{7}``, ``\\pi``) is never matched by a decimal
approximation (``85.71``, ``3.14159``) unless ``rel_tol`` is passed; ``rel_tol`` (default
None = exact) applies to numeric comparisons only.

Pathological answers (huge power towers, deep nesting, huge literals, over
``MAX_SYMBOLIC_CHARS``) never reach sympy; see :func:`is_pathological`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from datarl.rewards.base import RewardResult
from datarl.rewards.math_extract import Extraction, extract_answer
from datarl.rewards.math_forms import (
    braced_elements,
    clock_time,
    label_of,
    list_items,
    match_all,
    order_chain,
    ratio_quotient,
    rounded_from,
    rounds_to,
    same_time,
    split_top,
    stated_predicate,
    tuple_elements,
)
from datarl.rewards.math_sympy import Unparseable, numeric_value, symbolic_equal
from datarl.rewards.math_text import (
    MAX_ANSWER_CHARS,
    WrittenDecimal,
    exact_number,
    has_degree_mark,
    is_pathological,
    normalize_answer,
    string_key,
    written_decimal,
)

__all__ = ["Extraction", "extract_answer", "is_equivalent", "score_math", "SOURCE"]

SOURCE = "rtv.math"


def _unwrap_assignment(answer: str) -> tuple[str | None, str]:
    """``x = 3`` -> (``x``, ``3``); anything else -> (None, answer)."""
    m = re.fullmatch(r"\s*([A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*=\s*([^=<>]+)", answer)
    return (m.group(1), m.group(2).strip()) if m else (None, answer)


def _number_variants(value: Fraction, percent: bool) -> list[Fraction]:
    return [value, value / 100] if percent else [value]


def _decimal_readings(written: WrittenDecimal) -> list[WrittenDecimal]:
    """``6.67%`` reads as 6.67 and as 0.0667; a plain decimal as itself."""
    if not written.percent:
        return [written]
    return [written, WrittenDecimal(written.value / 100, written.places + 2, written.figures, False)]


def _fractions_equal(a: Fraction, b: Fraction, rel_tol: float | None) -> bool:
    if rel_tol is None:
        return a == b
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


def _rounded_match(gold: str, pred: str, pred_values: list[Fraction]) -> bool:
    """A decimal ground truth matched by a value that rounds to it, or by itself to fewer places."""
    g_written = written_decimal(gold)
    if g_written is None:
        return False
    p_written = written_decimal(pred)
    for g in _decimal_readings(g_written):
        if any(rounds_to(g, v) for v in pred_values):
            return True
        if p_written is not None and any(rounded_from(g, p) for p in _decimal_readings(p_written)):
            return True
    return False


def _single_equal(gold: str, pred: str, rel_tol: float | None) -> bool:
    """Equivalence of two normalised answers that list one thing each."""
    if string_key(gold) == string_key(pred):
        return True
    g_var, g_val = _unwrap_assignment(gold)
    p_var, p_val = _unwrap_assignment(pred)
    if g_var is not None and p_var is not None and g_var != p_var:
        return False  # x=3 is not y=3
    g_num, p_num = exact_number(g_val), exact_number(p_val)
    if g_num is not None and p_num is not None:
        if any(_fractions_equal(a, b, rel_tol) for a in _number_variants(*g_num) for b in _number_variants(*p_num)):
            return True
        return rel_tol is None and _rounded_match(g_val, p_val, _number_variants(*p_num))
    if is_pathological(gold) or is_pathological(pred):
        return False  # their strings already differ, and sympy must never evaluate them
    if rel_tol is None and p_num is None and written_decimal(g_val) is not None:
        value = numeric_value(p_val)  # an exact closed form against a rounded decimal
        if value is not None and _rounded_match(g_val, p_val, [value]):
            return True
    if g_var is not None or p_var is not None:
        if symbolic_equal(g_val, p_val, rel_tol):
            return True
        if g_var is not None and p_var is not None:
            return False
    return symbolic_equal(gold, pred, rel_tol)


def _multiset_equal(gold: list[str], pred: list[str], rel_tol: float | None) -> bool:
    return match_all(gold, pred, lambda g, p: _single_equal(g, p, rel_tol))


def _labeled(item: str) -> tuple[str | None, str]:
    """An item's label and its value, normalised on its own (``40 \\text{ candies}`` -> ``40``)."""
    label, value = label_of(item)
    return label, normalize_answer(value) or value


def _string_key_equal(a: str, b: str) -> bool:
    return string_key(a) == string_key(b)


def _lists_equal(gold: list[str], pred: list[str], rel_tol: float | None) -> bool:
    """Two lists: by label when both sides label every item alike, else their values as multisets."""
    g_labeled, p_labeled = [_labeled(i) for i in gold], [_labeled(i) for i in pred]
    g_labels, p_labels = [k for k, _ in g_labeled], [k for k, _ in p_labeled]
    if None not in g_labels and None not in p_labels and len(set(g_labels)) == len(g_labels):
        if sorted(g_labels) == sorted(p_labels):  # type: ignore[type-var]
            p_by = dict(p_labeled)
            return all(_single_equal(v, p_by[k], rel_tol) for k, v in g_labeled)
    return _multiset_equal([v for _, v in g_labeled], [v for _, v in p_labeled], rel_tol)


def _one_against_many(one: str, many: list[str], rel_tol: float | None, one_is_gold: bool) -> bool | None:
    """A tuple against the list of its elements, or a braced set against a list; None otherwise."""
    values = [_labeled(i)[1] for i in many]
    elements = tuple_elements(one)
    if elements is not None and len(elements) == len(values):
        pairs = zip(elements, values) if one_is_gold else zip(values, elements)
        return all(_single_equal(g, p, rel_tol) for g, p in pairs)
    elements = braced_elements(one)
    if elements is not None:
        return _multiset_equal(elements, values, rel_tol) if one_is_gold else _multiset_equal(values, elements, rel_tol)
    return None


def _degrees_as_radians(gold_raw: str, gold: str, pred_raw: str, pred: str) -> tuple[str, str]:
    """``30^\\circ`` against ``\\frac{\\pi}{6}``: the degree side in radians (a mark alone is dropped)."""
    g_deg, p_deg = has_degree_mark(gold_raw), has_degree_mark(pred_raw)
    if p_deg and not g_deg and "\\pi" in gold and exact_number(pred) is not None:
        pred = f"\\frac{{{pred}\\pi}}{{180}}"
    elif g_deg and not p_deg and "\\pi" in pred and exact_number(gold) is not None:
        gold = f"\\frac{{{gold}\\pi}}{{180}}"
    return gold, pred


def _compare_one(gold_raw: str, pred_raw: str, rel_tol: float | None) -> bool:
    g_time, p_time = clock_time(gold_raw), clock_time(pred_raw)
    if g_time is not None or p_time is not None:
        return g_time is not None and p_time is not None and same_time(g_time, p_time)
    gold, pred = normalize_answer(gold_raw), normalize_answer(pred_raw)
    if not gold:
        raise Unparseable(gold_raw)
    if not pred:
        return False
    if string_key(gold) == string_key(pred):
        return True
    gold, pred = ratio_quotient(gold) or gold, ratio_quotient(pred) or pred
    gold, pred = _degrees_as_radians(gold_raw, gold, pred_raw, pred)
    g_chain, p_chain = order_chain(gold), order_chain(pred)
    if (g_chain is None) != (p_chain is None):  # "b < a < d < c" against "b, a, d, c"
        g_items, p_items = g_chain or split_top(gold), p_chain or split_top(pred)
        return len(g_items) == len(p_items) and all(map(_string_key_equal, g_items, p_items))
    g_items, p_items = list_items(gold), list_items(pred)
    if len(g_items) == 1 and len(p_items) == 1:
        return _single_equal(gold, pred, rel_tol)
    if len(g_items) > 1 and len(p_items) > 1:
        return _lists_equal(g_items, p_items, rel_tol)
    decided = (
        _one_against_many(gold, p_items, rel_tol, True)
        if len(g_items) == 1
        else _one_against_many(pred, g_items, rel_tol, False)
    )
    return decided if decided is not None else _single_equal(gold, pred, rel_tol)


_APPROX_RE = re.compile(r"\\approx|≈")


def _compare(gold: str, pred: str, rel_tol: float | None) -> bool:
    """Equivalence of two extracted answers; raises ``Unparseable`` for an unreadable gold.

    A ground truth ``X \\approx Y`` is matched by an answer equal to either side, and a ground truth
    written as a sentence (``The function is odd.``) also by what it states (``odd``)."""
    readings = [r for r in split_top(gold, _APPROX_RE) if r.strip()] or [gold]
    stated = stated_predicate(gold.replace("$", ""))
    if stated is not None:
        readings.append(stated)
    unreadable: Unparseable | None = None
    for reading in readings:
        try:
            if _compare_one(reading, pred, rel_tol):
                return True
        except Unparseable as exc:
            unreadable = exc
    if unreadable is not None and len(readings) == 1:
        raise unreadable
    return False


def _check_rel_tol(rel_tol: float | None) -> None:
    """A bad tolerance is a configuration bug, not model output: fail loudly, once."""
    if rel_tol is not None and not (isinstance(rel_tol, (int, float)) and 0 <= rel_tol < 1):
        raise ValueError(f"rel_tol must be None or a float in [0, 1), got {rel_tol!r}")


def is_equivalent(gold: str, pred: str, *, rel_tol: float | None = None) -> bool:
    """Whether an extracted answer ``pred`` equals the ground truth ``gold``.

    Exact by default: different numbers are never equal however close (pass
    ``rel_tol``, e.g. ``1e-6``, to accept ``|a - b| <= rel_tol * max(|a|, |b|)``).
    Never raises on answers; an unreadable gold or prediction is simply not
    equivalent. Raises ``ValueError`` only for an invalid ``rel_tol`` (a config bug).
    """
    _check_rel_tol(rel_tol)
    if not isinstance(gold, str) or not isinstance(pred, str):
        return False
    try:
        return _compare(gold[:MAX_ANSWER_CHARS], pred[:MAX_ANSWER_CHARS], rel_tol)
    except (Exception, RecursionError):
        return False
    except BaseException as exc:  # math-verify's TimeoutException; keep Ctrl-C and exit working
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        return False


# One worked step: "12 + 5 = 17" (a line of the synthetic suite's references and of model
# answers) or a GSM8K calculator annotation "<<12+5=17>>"; the group is the step's result.
_STEP_RE = re.compile(r"(?:<<[^<>=]{1,200}=\s*|\d\s*[-+*/x\u00d7\u00f7]\s*\d[\d,.]*\s*=\s*)(-?\d[\d,]*(?:\.\d+)?)")


def step_results(text: str) -> list[Fraction]:
    """The results of the worked steps in ``text``, in order (see ``_STEP_RE``)."""
    out: list[Fraction] = []
    for match in _STEP_RE.finditer(text[:20_000]):
        number = exact_number(match.group(1).replace(",", ""))
        if number is not None:
            out.append(number[0])
    return out


def _step_credit(record: Mapping[str, Any], response: str) -> dict[str, int] | None:
    """How many of the reference's steps the response reproduces in order from the first
    (``{"matched", "steps"}``), or None when the reference has no worked steps."""
    reference = record.get("reference")
    steps = step_results(reference) if isinstance(reference, str) else []
    if not steps:
        return None
    matched = 0
    for got, want in zip(step_results(response), steps):
        if got != want:
            break
        matched += 1
    return {"matched": matched, "steps": len(steps)}


def score_math(
    record: Mapping[str, Any], response: str, *, rel_tol: float | None = None, step_credit: float = 0.0
) -> RewardResult:
    """Score one math response against ``record["ground_truth"]``: 1.0 if equivalent, else 0.0.

    ``step_credit`` (in [0, 1), default 0: off) is a training option like code's partial credit:
    a wrong answer earns ``step_credit`` times the share of the reference's worked steps
    (``a op b = c`` lines, or GSM8K ``<<a*b=c>>`` annotations) whose results the response
    reproduces in order from the first step; ``info["steps"]`` says how many. A right answer
    is always 1.0, and a record whose reference has no worked steps scores as without it.

    ``info`` carries ``extracted``, ``extraction_method`` (``last_number`` marks a
    guess), ``ground_truth`` and, on a miss, ``failure``: ``no_answer``,
    ``wrong_answer``, ``bad_ground_truth`` or ``internal_error`` (with ``error``).
    Never raises on model output or a malformed record (only on an invalid ``rel_tol``).
    """
    _check_rel_tol(rel_tol)
    if isinstance(step_credit, bool) or not isinstance(step_credit, (int, float)) or not 0 <= step_credit < 1:
        raise ValueError(f"step_credit must be a number in [0, 1), got {step_credit!r}")
    info: dict[str, Any] = {"extracted": None, "extraction_method": None, "ground_truth": None}
    try:
        gold = record.get("ground_truth") if isinstance(record, Mapping) else None
        info["ground_truth"] = gold if gold is None or isinstance(gold, str) else str(gold)
        extraction = extract_answer(response) if isinstance(response, str) else None
        if extraction is not None:
            info["extracted"] = extraction.answer
            info["extraction_method"] = extraction.method
        if not isinstance(info["ground_truth"], str) or not info["ground_truth"].strip():
            info["failure"] = "bad_ground_truth"
            return RewardResult(0.0, SOURCE, info)
        if extraction is None:
            info["failure"] = "no_answer"
            return RewardResult(0.0, SOURCE, info)
        try:
            ok = _compare(info["ground_truth"][:MAX_ANSWER_CHARS], extraction.answer, rel_tol)
        except Unparseable:
            info["failure"] = "bad_ground_truth"
            return RewardResult(0.0, SOURCE, info)
        if ok:
            return RewardResult(1.0, SOURCE, info)
        info["failure"] = "wrong_answer"
        credit = _step_credit(record, response) if step_credit else None
        if credit is None:
            return RewardResult(0.0, SOURCE, info)
        info["steps"] = credit
        return RewardResult(step_credit * credit["matched"] / credit["steps"], SOURCE, info)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        info["failure"] = "internal_error"
        info["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return RewardResult(0.0, SOURCE, info)
