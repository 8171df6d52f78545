"""``rtv.math``: rule-based math verifier (answer extraction + equivalence).

Extraction (:func:`extract_answer`, in :mod:`datarl.rewards.math_extract`) picks,
in order: the last ``\\boxed{}``/``\\fbox{}``; else the last of ``The answer is``,
``Answer:``, ``#### N``, ``A: N``; else the last bare number (``last_number``,
reported in ``info`` because it is a guess).

Equivalence (:func:`is_equivalent`) runs in three tiers:

1. Both answers normalise to plain numbers (``1,000``, ``10{,}000``, ``0.5``,
   ``\\dfrac{1}{2}``, ``12\\frac{3}{5}``, ``25\\%``, ``1.5\\times10^{3}``, ``\\$18``,
   ``18\\text{ cm}``): compared as exact ``Fraction``s. A percentage matches its
   number or its number / 100.
2. Otherwise both are parsed by math-verify (signal timeouts OFF: SIGALRM only
   works on the main thread; the calling worker enforces wall-clock limits).
   Floats are turned into exact rationals, and where both sides are numeric we
   decide ourselves instead of trusting math-verify's rounding:
   - numbers: exact for rationals, else equal to 40 significant digits. math-verify
     rounds to 6 decimals and chops small differences, so it accepts ``0.1`` for
     ``0.1000001`` and ``1/2^99`` for ``1/2^98``; a relative comparison does not.
   - tuples, matrices, intervals and sets of numbers: element-wise with the same
     rule; an interval never matches a set written with braces (math-verify
     accepts ``(1,2)`` for ``\\{1,2\\}``).
   - anything symbolic (``4a-2``, ``x=3``, ``\\sqrt{2}\\pi``): math-verify's ``verify``.
3. Normalised strings are equal (text answers, pathological inputs).

A relative tolerance is never implied: ``rel_tol`` (default None = exact) must be
passed explicitly and applies to numeric comparisons only.

Pathological answers (huge power towers, deep nesting, huge literals, over
``MAX_SYMBOLIC_CHARS``) never reach sympy; see :func:`is_pathological`.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from typing import Any, Mapping

from datarl.rewards.base import RewardResult
from datarl.rewards.math_extract import (
    MAX_ANSWER_CHARS,
    Extraction,
    exact_number,
    extract_answer,
    is_pathological,
    normalize_answer,
    string_key,
)

__all__ = ["Extraction", "extract_answer", "is_equivalent", "score_math", "SOURCE"]

SOURCE = "rtv.math"
_EXACT_DIGITS = 50  # evaluation precision for irrational closed forms
_EXACT_REL = 1e-40  # two closed forms agreeing to 40 digits are taken as equal

# math-verify warns once that its timeouts are off; that is deliberate here.
logging.getLogger("math_verify").setLevel(logging.ERROR)


class _Unparseable(Exception):
    """The answer has no numeric or symbolic reading."""


def _engine() -> tuple[Any, Any]:
    # Imported lazily: it costs ~0.4 s and pure-number datasets never need it.
    from math_verify import parse, verify

    return parse, verify


def _guarded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call into math-verify/sympy; any failure, including its BaseException timeout, is None."""
    from math_verify.errors import TimeoutException

    try:
        return fn(*args, **kwargs)
    except (Exception, TimeoutException, RecursionError):
        return None


def _to_sympy(answer: str) -> Any:
    """Parse a normalised answer to a sympy object with floats made exact rationals."""
    import sympy

    parse, _ = _engine()
    parsed = _guarded(parse, f"${answer}$", parsing_timeout=None)
    if not parsed:
        parsed = _guarded(parse, answer, parsing_timeout=None)
    for item in parsed or []:
        if isinstance(item, (sympy.Basic, sympy.MatrixBase)):
            floats = item.atoms(sympy.Float)
            if floats:
                item = item.xreplace({f: sympy.Rational(str(f)) for f in floats})
            return item
    raise _Unparseable(answer)


def _is_scalar(expr: Any) -> bool:
    import sympy

    if not isinstance(expr, sympy.Expr) or isinstance(expr, (sympy.Tuple, sympy.MatrixBase, sympy.MatrixExpr)):
        return False  # immutable matrices are Exprs too, but are compared element-wise
    return bool(expr.is_number)


def _numbers_equal(a: Any, b: Any, rel_tol: float | None) -> bool:
    """Exact (or ``rel_tol``) comparison of two sympy numbers; no absolute rounding."""
    import sympy

    if rel_tol is None and isinstance(a, sympy.Rational) and isinstance(b, sympy.Rational):
        return bool(a == b)
    if a == b:
        return True
    # Everything stays in sympy's 50-digit floats: Python floats overflow on 2^2009.
    na, nb = abs(sympy.N(a, _EXACT_DIGITS)), abs(sympy.N(b, _EXACT_DIGITS))
    if not (na.is_finite and nb.is_finite):
        return False  # 1/0 (zoo) and oo are only equal to themselves, handled by a == b
    diff = abs(sympy.N(a - b, _EXACT_DIGITS))
    tol = _EXACT_REL if rel_tol is None else rel_tol
    scale = max(na, nb)
    return bool(diff == 0 or (scale > 0 and diff <= tol * scale))


def _numeric_leaves(expr: Any) -> list[Any] | None:
    """Flat numeric elements of a tuple/matrix, or None when any element is symbolic."""
    import sympy

    if isinstance(expr, sympy.MatrixBase):
        items = list(expr)
    elif isinstance(expr, (sympy.Tuple, sympy.FiniteSet)):
        items = list(expr.args)
    else:
        return None
    return items if all(_is_scalar(x) for x in items) else None


def _structures_equal(gold: Any, pred: Any, rel_tol: float | None) -> bool | None:
    """Decide numeric containers ourselves; None hands the pair to math-verify."""
    import sympy

    if isinstance(gold, sympy.Interval) and isinstance(pred, sympy.Interval):
        ends = (gold.start, gold.end, pred.start, pred.end)
        if not all(_is_scalar(e) or e in (sympy.oo, -sympy.oo) for e in ends):
            return None
        return (
            gold.left_open == pred.left_open
            and gold.right_open == pred.right_open
            and _numbers_equal(gold.start, pred.start, rel_tol)
            and _numbers_equal(gold.end, pred.end, rel_tol)
        )
    g, p = _numeric_leaves(gold), _numeric_leaves(pred)
    if g is None or p is None or type(gold) is not type(pred):
        return None
    if len(g) != len(p) or getattr(gold, "shape", None) != getattr(pred, "shape", None):
        return False
    if isinstance(gold, sympy.FiniteSet):  # unordered: match each gold element once
        left = list(p)
        for x in g:
            hit = next((i for i, y in enumerate(left) if _numbers_equal(x, y, rel_tol)), None)
            if hit is None:
                return False
            left.pop(hit)
        return True
    return all(_numbers_equal(x, y, rel_tol) for x, y in zip(g, p))


def _braced_set(text: str) -> bool:
    return "\\{" in text or "\\lbrace" in text or "\\set" in text


def _unwrap_assignment(answer: str) -> tuple[str | None, str]:
    """``x = 3`` -> (``x``, ``3``); anything else -> (None, answer)."""
    m = re.fullmatch(r"\s*([A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*=\s*([^=<>]+)", answer)
    return (m.group(1), m.group(2).strip()) if m else (None, answer)


def _symbolic_equal(gold: str, pred: str, rel_tol: float | None) -> bool:
    import sympy

    g_expr = _to_sympy(gold)
    try:
        p_expr = _to_sympy(pred)
    except _Unparseable:
        return False
    if _is_scalar(g_expr) and _is_scalar(p_expr):
        return _numbers_equal(g_expr, p_expr, rel_tol)
    if _is_scalar(g_expr) != _is_scalar(p_expr) and all(isinstance(e, sympy.Expr) for e in (g_expr, p_expr)):
        return False  # a number never equals an expression in free variables; skip simplify()
    interval = (sympy.Interval, sympy.Union)
    if (isinstance(g_expr, interval) and _braced_set(pred)) or (isinstance(p_expr, interval) and _braced_set(gold)):
        return False  # an interval is never a finite set, whatever the rounding
    decided = _structures_equal(g_expr, p_expr, rel_tol)
    if decided is not None:
        return decided
    _, verify = _engine()
    return bool(_guarded(verify, g_expr, p_expr, timeout_seconds=None))


def _number_variants(value: Fraction, percent: bool) -> list[Fraction]:
    return [value, value / 100] if percent else [value]


def _fractions_equal(a: Fraction, b: Fraction, rel_tol: float | None) -> bool:
    if rel_tol is None:
        return a == b
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


def _compare(gold: str, pred: str, rel_tol: float | None) -> bool:
    """Equivalence of two extracted answers; raises ``_Unparseable`` for an unreadable gold."""
    g_norm, p_norm = normalize_answer(gold), normalize_answer(pred)
    if not g_norm:
        raise _Unparseable(gold)
    if not p_norm:
        return False
    if string_key(g_norm) == string_key(p_norm):
        return True
    g_var, g_val = _unwrap_assignment(g_norm)
    p_var, p_val = _unwrap_assignment(p_norm)
    if g_var is not None and p_var is not None and g_var != p_var:
        return False  # x=3 is not y=3
    g_num, p_num = exact_number(g_val), exact_number(p_val)
    if g_num is not None and p_num is not None:
        return any(
            _fractions_equal(a, b, rel_tol)
            for a in _number_variants(*g_num)
            for b in _number_variants(*p_num)
        )
    if is_pathological(g_norm) or is_pathological(p_norm):
        return False  # their strings already differ, and sympy must never evaluate them
    if g_var is not None and p_var is not None:
        return _symbolic_equal(g_val, p_val, rel_tol)
    return _symbolic_equal(g_norm, p_norm, rel_tol)


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


def score_math(record: Mapping[str, Any], response: str, *, rel_tol: float | None = None,
               step_credit: float = 0.0) -> RewardResult:
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
        except _Unparseable:
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
