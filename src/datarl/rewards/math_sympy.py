"""Symbolic side of ``rtv.math``: parsing with math-verify and deciding equality with sympy.

math-verify's signal timeouts are OFF here (SIGALRM only works on the main thread); the
calling worker enforces wall-clock limits. Floats are turned into exact rationals, and where
both sides are numeric we decide ourselves instead of trusting math-verify's rounding:

- numbers: exact for rationals, else equal to 40 significant digits. math-verify rounds to 6
  decimals and chops small differences, so it accepts ``0.1`` for ``0.1000001`` and
  ``1/2^99`` for ``1/2^98``; a relative comparison does not.
- undefined values never equal anything: ``1/0`` (``zoo``), ``0/0`` (``nan``) and any
  expression dividing by zero. ``oo`` equals ``oo`` only.
- tuples, matrices, intervals and sets of numbers: element-wise with the same rule; an
  interval never matches a set written with braces (math-verify accepts ``(1,2)`` for
  ``\\{1,2\\}``); a one-column or one-row matrix matches the tuple of its entries.
- conditions on one variable (``0.5 \\le x \\le 8``, ``a \\le -2 \\text{ or } a = 1``,
  ``\\{x | -1 < x < 1\\}``, ``x \\in [2, 5)``) are the sets they describe.
- an equation matches its solved form (``y + 1 = -(2x-1)^2`` and ``-4x^2+4x-2``), and two
  equations match when one is a non-zero multiple of the other.
- expressions sympy cannot prove equal are compared as functions at a few probe points, complex
  values included (``2\\arcsin\\sqrt{a}`` and ``\\arccos(1-2a)``); any disagreement, or a value
  defined on one side only, refuses.
- answers that differ only by the names of their free parameters (``f(z)=z`` and ``f(x)=x``,
  ``k\\pi`` and ``n\\pi``; at most ``MAX_RENAMED`` names) are equal.
- anything else symbolic: math-verify's ``verify``.

math-verify reads a bare number out of LaTeX it cannot parse (``\\forall x > 0, 3^x \\ge x``
parses as ``3``); such a lossy parse counts as no parse.
"""

from __future__ import annotations

import itertools
import logging
import re
from fractions import Fraction
from typing import Any

from datarl.rewards.math_forms import match_all, split_top

MAX_RENAMED = 2
"""At most this many free names are matched up between two answers."""

_EXACT_DIGITS = 50  # evaluation precision for irrational closed forms
_EXACT_REL = 1e-40  # two closed forms agreeing to 40 digits are taken as equal

# math-verify warns once that its timeouts are off; that is deliberate here.
logging.getLogger("math_verify").setLevel(logging.ERROR)


class Unparseable(Exception):
    """The answer has no numeric or symbolic reading."""


_CONFIG: list[Any] = []


def _engine() -> tuple[Any, Any]:
    # Imported lazily: it costs ~0.4 s and pure-number datasets never need it.
    from math_verify import parse, verify

    return parse, verify


def _extraction_config() -> list[Any]:
    """math-verify's defaults without its unit stripping: that deletes the letters ``t``, ``m``,
    ``o`` and ``rd`` wherever they stand (``-32+3t`` parsed as ``-29``); units are gone by now."""
    if not _CONFIG:
        from latex2sympy2_extended.math_normalization import NormalizationConfig
        from math_verify import ExprExtractionConfig, LatexExtractionConfig

        norm = NormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        )
        _CONFIG.extend([LatexExtractionConfig(normalization_config=norm), ExprExtractionConfig()])
    return _CONFIG


def guarded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call into math-verify/sympy; any failure, including its BaseException timeout, is None."""
    from math_verify.errors import TimeoutException

    try:
        return fn(*args, **kwargs)
    except (Exception, TimeoutException, RecursionError):
        return None


_FUNCTION_WORDS = r"pi|sqrt|sin|cos|tan|cot|sec|csc|log|ln|exp|arcsin|arccos|arctan|e|i"


def _lossy(answer: str, expr: Any) -> bool:
    """A bare number parsed out of an answer that has variables or relations in it."""
    import sympy

    if not (isinstance(expr, sympy.Expr) and expr.is_number):
        return False
    bare = re.sub(r"\\[A-Za-z]+", " ", answer)
    bare = re.sub(rf"(?<![A-Za-z])(?:{_FUNCTION_WORDS})(?![A-Za-z])", " ", bare)
    return bool(re.search(r"[A-Za-z<>=|:]", bare))


def to_sympy(answer: str) -> Any:
    """Parse a normalised answer to a sympy object with floats made exact rationals."""
    import sympy

    parse, _ = _engine()
    config = _extraction_config()
    parsed = guarded(parse, f"${answer}$", extraction_config=config, parsing_timeout=None)
    if not parsed:
        parsed = guarded(parse, answer, extraction_config=config, parsing_timeout=None)
    for item in parsed or []:
        if isinstance(item, (sympy.Basic, sympy.MatrixBase)):
            if _lossy(answer, item):
                break
            floats = item.atoms(sympy.Float)
            if floats:
                item = item.xreplace({f: sympy.Rational(str(f)) for f in floats})
            return item
    raise Unparseable(answer)


def undefined(expr: Any) -> bool:
    """Whether an expression holds ``zoo``, ``nan`` or a division by zero anywhere."""
    import sympy

    if not isinstance(expr, sympy.Basic):
        return False
    if expr.has(sympy.zoo, sympy.nan):
        return True
    return any(isinstance(a, sympy.Pow) and a.base == 0 and a.exp.is_negative for a in sympy.preorder_traversal(expr))


def _is_scalar(expr: Any) -> bool:
    import sympy

    if not isinstance(expr, sympy.Expr) or isinstance(expr, (sympy.Tuple, sympy.MatrixBase, sympy.MatrixExpr)):
        return False  # immutable matrices are Exprs too, but are compared element-wise
    return bool(expr.is_number)


def numbers_equal(a: Any, b: Any, rel_tol: float | None) -> bool:
    """Exact (or ``rel_tol``) comparison of two sympy numbers; no absolute rounding."""
    import sympy

    if undefined(a) or undefined(b):
        return False  # 1/0 == 2/0 and nan == nan are true in sympy, never in arithmetic
    if rel_tol is None and isinstance(a, sympy.Rational) and isinstance(b, sympy.Rational):
        return bool(a == b)
    if a == b:
        return True
    # Everything stays in sympy's 50-digit floats: Python floats overflow on 2^2009.
    na, nb = abs(sympy.N(a, _EXACT_DIGITS)), abs(sympy.N(b, _EXACT_DIGITS))
    if not (na.is_finite and nb.is_finite):
        return False  # oo and -oo are only equal to themselves, handled by a == b
    diff = abs(sympy.N(a - b, _EXACT_DIGITS))
    tol = _EXACT_REL if rel_tol is None else rel_tol
    scale = max(na, nb)
    return bool(diff == 0 or (scale > 0 and diff <= tol * scale))


def numeric_value(answer: str) -> Fraction | None:
    """A closed form's real value to 50 digits as a ``Fraction`` (for rounding checks), else None."""
    import sympy

    try:
        expr = to_sympy(answer)
    except Unparseable:
        return None
    if not _is_scalar(expr) or undefined(expr):
        return None
    value = guarded(sympy.N, expr, _EXACT_DIGITS)
    if value is None or not value.is_real or not value.is_finite:
        return None
    return Fraction(str(value))


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


def _vector(expr: Any) -> bool:
    import sympy

    return isinstance(expr, sympy.MatrixBase) and 1 in expr.shape


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
            and numbers_equal(gold.start, pred.start, rel_tol)
            and numbers_equal(gold.end, pred.end, rel_tol)
        )
    g, p = _numeric_leaves(gold), _numeric_leaves(pred)
    if g is None or p is None:
        return None
    vector_vs_tuple = (_vector(gold) and isinstance(pred, sympy.Tuple)) or (
        _vector(pred) and isinstance(gold, sympy.Tuple)
    )
    if type(gold) is not type(pred) and not vector_vs_tuple:
        return None
    if len(g) != len(p) or (not vector_vs_tuple and getattr(gold, "shape", None) != getattr(pred, "shape", None)):
        return False
    if isinstance(gold, sympy.FiniteSet):  # unordered: match each gold element once
        return match_all(g, p, lambda x, y: numbers_equal(x, y, rel_tol))
    return all(numbers_equal(x, y, rel_tol) for x, y in zip(g, p))


def _braced_set(text: str) -> bool:
    return "\\{" in text or "\\lbrace" in text or "\\set" in text


# ------------------------------------------------------------------------- conditions

_RELATION_RE = re.compile(r"<|>|\\[lg]eq?(?![A-Za-z])|\\ne(?![A-Za-z])|\\[lg]t(?![A-Za-z])")
_SET_BUILDER_RE = re.compile(
    r"\\\{\s*([A-Za-z])\s*(?:\||\\mid|:)\s*(.+?)\\\}(?:\s*(?:-|\\setminus|\\backslash)\s*(\\\{.+\\\}))?"
)
_IN_RE = re.compile(r"([A-Za-z])\s*\\in\s*(.+)")
_OR_RE = re.compile(r"(?<![A-Za-z])or(?![A-Za-z])")
_AND_RE = re.compile(r"(?<![A-Za-z])and(?![A-Za-z])")


def _atom_set(atom: str, variable: list[Any]) -> Any:
    """The set of one condition like ``a \\le -2``, ``-1 < x < 1`` or ``a = 1``, or None."""
    import sympy

    try:
        expr = to_sympy(atom)
    except Unparseable:
        return None
    if not isinstance(expr, (sympy.Rel, sympy.And)) or len(expr.free_symbols) != 1:
        return None
    symbol = next(iter(expr.free_symbols))
    if variable and variable[0] != symbol:
        return None
    variable[:1] = [symbol]
    return guarded(lambda: expr.as_set())


def condition_set(answer: str) -> Any:
    """The set an answer describes by conditions on one variable, or None when it does not."""
    import sympy

    m = _SET_BUILDER_RE.fullmatch(answer.strip())
    body, minus = (m.group(2), m.group(3)) if m else (answer, None)
    if not m:
        inside = _IN_RE.fullmatch(answer.strip())
        if inside:
            return as_set(inside.group(2))
        if not _RELATION_RE.search(answer) and not (_OR_RE.search(answer) and "=" in answer):
            return None
    variable: list[Any] = []
    union = []
    for part in split_top(body, _OR_RE):
        sets = [_atom_set(atom, variable) for atom in split_top(part, _AND_RE)]
        if not sets or any(s is None for s in sets):
            return None
        union.append(sympy.Intersection(*sets) if len(sets) > 1 else sets[0])
    result = sympy.Union(*union) if len(union) > 1 else union[0]
    if minus is not None:
        removed = as_set(minus)
        if removed is None:
            return None
        result = sympy.Complement(result, removed)
    return result


def as_set(answer: str) -> Any:
    """An answer read as a set of numbers: a condition, an interval, a union, ``\\{1, 2\\}``; else None."""
    import sympy

    described = condition_set(answer)
    if described is not None:
        return described
    try:
        expr = to_sympy(answer)
    except Unparseable:
        return None
    return expr if isinstance(expr, sympy.Set) and not undefined(expr) else None


def _sets_equal(a: Any, b: Any) -> bool:
    import sympy

    empty = sympy.S.EmptySet
    return bool(guarded(lambda: sympy.Complement(a, b) == empty and sympy.Complement(b, a) == empty))


# -------------------------------------------------------------------------- equations


def _equations_equal(gold: Any, pred: Any) -> bool:
    """An equation and its solved form, or two equations that are multiples of each other."""
    import sympy

    if isinstance(gold, sympy.Eq) and isinstance(pred, sympy.Eq):
        ratio = guarded(sympy.simplify, (gold.lhs - gold.rhs) / (pred.lhs - pred.rhs))
        return bool(ratio is not None and ratio.is_number and ratio != 0 and ratio.is_finite)
    equation, solved = (gold, pred) if isinstance(gold, sympy.Eq) else (pred, gold)
    if not isinstance(equation, sympy.Eq) or not isinstance(solved, sympy.Expr):
        return False
    unknowns = equation.free_symbols - solved.free_symbols
    if len(unknowns) != 1 or equation.atoms(sympy.core.function.AppliedUndef):
        return False  # f(x) = ... is a definition, not an equation to solve
    unknown = next(iter(unknowns))
    if not guarded(lambda: (equation.lhs - equation.rhs).is_polynomial(unknown)):
        return False  # solving transcendental equations can take sympy minutes
    solutions = guarded(sympy.solve, equation, unknown)
    if not solutions or len(solutions) != 1:
        return False
    return bool(guarded(lambda: sympy.simplify(solutions[0] - solved) == 0))


def _renamings(gold: Any, pred: Any) -> list[dict[Any, Any]]:
    """Substitutions that give ``pred``'s unshared free names ``gold``'s (at most ``MAX_RENAMED``)."""
    import sympy

    if not isinstance(gold, sympy.Basic) or not isinstance(pred, sympy.Basic):
        return []
    if isinstance(gold, sympy.Symbol) or isinstance(pred, sympy.Symbol):
        return []  # "y" for "x" names another unknown; "2y+1" for "2x+1" is the same answer
    own_g = sorted(gold.free_symbols - pred.free_symbols, key=str)
    own_p = sorted(pred.free_symbols - gold.free_symbols, key=str)
    if not own_g or len(own_g) != len(own_p) or len(own_g) > MAX_RENAMED:
        return []
    return [dict(zip(own_p, perm)) for perm in itertools.permutations(own_g)]


# Where two expressions are compared as functions: different values per variable, both signs,
# inside and outside [0, 1] (so |x| against x, or sqrt(x^2) against x, disagree somewhere).
_PROBES = ("0.13", "0.37", "0.71", "1.7", "2.9", "-0.6", "-1.9")
_MIN_PROBES = 5


def _value_at(expr: Any, point: dict[Any, Any]) -> Any:
    """``expr`` evaluated to 30 digits at ``point`` (None when sympy fails)."""
    import sympy

    return guarded(lambda: sympy.N(expr.xreplace(point), 30))


def _same_function(gold: Any, pred: Any) -> bool:
    """Expressions in the same variables (at most 3) that agree at every probe point, complex values
    included: identities sympy cannot prove (``2\\arcsin\\sqrt{a}`` and ``\\arccos(1-2a)``)."""
    import sympy

    if not (isinstance(gold, sympy.Expr) and isinstance(pred, sympy.Expr)) or gold.free_symbols != pred.free_symbols:
        return False
    symbols = sorted(gold.free_symbols, key=str)
    if not symbols or len(symbols) > 3 or gold.atoms(sympy.core.function.AppliedUndef):
        return False
    agreed = 0
    for k in range(len(_PROBES)):
        point = {s: sympy.Rational(_PROBES[(k + 3 * j) % len(_PROBES)]) for j, s in enumerate(symbols)}
        a, b = _value_at(gold, point), _value_at(pred, point)
        if a is None or b is None or not (a.is_number and b.is_number):
            return False
        finite_a, finite_b = bool(a.is_finite) and not undefined(a), bool(b.is_finite) and not undefined(b)
        if finite_a != finite_b:
            return False
        if not finite_a:
            continue
        if abs(a - b) > 1e-15 * max(1, abs(a), abs(b)):
            return False
        agreed += 1
    return agreed >= _MIN_PROBES


def _verified(gold: Any, pred: Any, rel_tol: float | None) -> bool:
    import sympy

    if undefined(gold) or undefined(pred):
        return False
    if _is_scalar(gold) and _is_scalar(pred):
        return numbers_equal(gold, pred, rel_tol)
    if _is_scalar(gold) != _is_scalar(pred) and all(isinstance(e, sympy.Expr) for e in (gold, pred)):
        return False  # a number never equals an expression in free variables; skip simplify()
    decided = _structures_equal(gold, pred, rel_tol)
    if decided is not None:
        return decided
    _, verify = _engine()
    if guarded(verify, gold, pred, timeout_seconds=None):
        return True
    return _equations_equal(gold, pred) or _same_function(gold, pred)


def symbolic_equal(gold: str, pred: str, rel_tol: float | None) -> bool:
    """Equality of two normalised answers by their symbolic readings (see the module docstring).

    Raises :class:`Unparseable` when the ground truth has no reading."""
    import sympy

    g_set, p_set = condition_set(gold), condition_set(pred)
    if g_set is not None or p_set is not None:
        g_set = g_set if g_set is not None else as_set(gold)
        p_set = p_set if p_set is not None else as_set(pred)
        if g_set is not None and p_set is not None:
            return _sets_equal(g_set, p_set)
    g_expr = to_sympy(gold)
    try:
        p_expr = to_sympy(pred)
    except Unparseable:
        return False
    interval = (sympy.Interval, sympy.Union)
    if (isinstance(g_expr, interval) and _braced_set(pred)) or (isinstance(p_expr, interval) and _braced_set(gold)):
        return False  # an interval is never a finite set, whatever the rounding
    if _verified(g_expr, p_expr, rel_tol):
        return True
    return any(_verified(g_expr, guarded(p_expr.xreplace, sub), rel_tol) for sub in _renamings(g_expr, p_expr))
