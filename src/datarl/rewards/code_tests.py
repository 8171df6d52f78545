"""Test-side helpers of ``rtv.code``: validating a record's ``tests``, splitting assert-style test code into
tests, and rewriting its asserts so they compare plain values (see ``code_harness`` for the runtime half).

The rewrite, applied to every ``assert`` in the test code (module level and inside ``check``):
  ``assert a == b``        -> ``assert __dr_cmp__(("==",), a, b)``   (all comparison operators, chained too)
  ``assert x`` / ``not x`` -> ``assert __dr_truth__(x)``               (and/or/not are kept, operands rewritten)
  ``f(x) - y`` in an assert -> ``__dr_p__(f(x)) - y``                 (arithmetic on a call's result sees a plain
                                                                      value, so a lying ``__sub__`` is not used)
Names end in ``__`` so class bodies (unittest style) do not mangle them.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Mapping
from typing import Any

_OPNAMES = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


def _call(name: str, args: list[ast.expr]) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args, keywords=[])


class _PlainOperands(ast.NodeTransformer):
    """Wrap calls used directly as arithmetic operands in ``__dr_p__``."""

    def _wrap(self, node: ast.expr) -> ast.expr:
        return _call("__dr_p__", [node]) if isinstance(node, ast.Call) else node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        node.left, node.right = self._wrap(node.left), self._wrap(node.right)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.op, ast.Not):
            node.operand = self._wrap(node.operand)
        return node


def _operand(node: ast.expr) -> ast.expr:
    return _PlainOperands().visit(node)


def _truthify(node: ast.expr) -> ast.expr:
    if isinstance(node, ast.Compare):
        ops = ast.Tuple(elts=[ast.Constant(_OPNAMES[type(op)]) for op in node.ops], ctx=ast.Load())
        return _call("__dr_cmp__", [ops, _operand(node.left)] + [_operand(c) for c in node.comparators])
    if isinstance(node, ast.BoolOp):
        return ast.BoolOp(op=node.op, values=[_truthify(v) for v in node.values])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ast.UnaryOp(op=ast.Not(), operand=_truthify(node.operand))
    return _call("__dr_truth__", [_operand(node)])


class _AssertRewriter(ast.NodeTransformer):
    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        node.test = _truthify(node.test)
        return node


@functools.lru_cache(maxsize=4096)
def split_assert_tests(code: str, entry_point: str | None) -> tuple[tuple[str, bool], ...]:
    """Test code -> ((statement source, is_test), ...) with asserts rewritten.

    Each top-level ``assert`` is one test; other top-level statements (imports, ``def check``) run in order
    and a failure there fails every later test. With ``entry_point`` and a ``check`` function that the code
    does not call itself, ``check(<entry_point>)`` is appended as the test (HumanEval's shape).
    Raises SyntaxError for test code that does not parse (``validate_tests`` reports it).
    """
    tree = _AssertRewriter().visit(ast.parse(code))
    items: list[tuple[str, bool]] = []
    calls_check = False
    defines_check = False
    for stmt in tree.body:
        ast.fix_missing_locations(stmt)
        is_test = isinstance(stmt, ast.Assert)
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "check":
            defines_check = True
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "check"
        ):
            calls_check, is_test = True, True
        items.append((ast.unparse(stmt), is_test))
    if entry_point and defines_check and not calls_check:
        items.append((f"check({entry_point})", True))
    return tuple(items)


def validate_tests(tests: Any) -> list[str]:
    """Human-readable problems with a record's ``tests`` field (empty list: valid)."""
    if not isinstance(tests, Mapping):
        return [f"tests must be an object, got {type(tests).__name__}"]
    kind = tests.get("type")
    if kind == "assert":
        return _validate_assert(tests)
    if kind == "stdio":
        return _validate_stdio(tests)
    return [f"tests.type must be 'assert' or 'stdio', got {kind!r}"]


def _validate_assert(tests: Mapping[str, Any]) -> list[str]:
    problems = []
    code = tests.get("code")
    if not isinstance(code, str) or not code.strip():
        problems.append("tests.code must be a non-empty string of Python test code")
    else:
        try:
            items = split_assert_tests(code, tests.get("entry_point") or None)
            if not any(is_test for _, is_test in items):
                problems.append(
                    "tests.code has no top-level assert and no check(...) call "
                    "(give entry_point for HumanEval-style check functions)"
                )
        except SyntaxError as e:
            problems.append(f"tests.code does not parse: line {e.lineno}: {e.msg}")
    setup = tests.get("setup")
    if setup is not None:
        if not isinstance(setup, str):
            problems.append("tests.setup must be a string")
        else:
            try:
                ast.parse(setup)
            except SyntaxError as e:
                problems.append(f"tests.setup does not parse: line {e.lineno}: {e.msg}")
    ep = tests.get("entry_point")
    if ep is not None and (not isinstance(ep, str) or not ep.isidentifier()):
        problems.append(f"tests.entry_point must be a Python identifier, got {ep!r}")
    return problems


def _validate_stdio(tests: Mapping[str, Any]) -> list[str]:
    problems = []
    cases = tests.get("cases")
    if not isinstance(cases, list) or not cases:
        return ["tests.cases must be a non-empty list of {input, output}"]
    for i, case in enumerate(cases):
        if not isinstance(case, Mapping):
            problems.append(f"tests.cases[{i}] must be an object")
            continue
        for key in ("input", "output"):
            if not isinstance(case.get(key), str):
                problems.append(f"tests.cases[{i}].{key} must be a string")
    tol = tests.get("float_tolerance")
    if tol is not None and (
        isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0 or not math.isfinite(tol)
    ):
        problems.append("tests.float_tolerance must be a non-negative number")
    return problems


def normalise_output(text: str) -> list[str]:
    """Lines without trailing whitespace, trailing empty lines dropped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(got: str, expected: str, float_tolerance: float | None = None) -> bool:
    """Compare stdout with the expected output after normalising trailing whitespace; with a tolerance,
    tokens that both parse as floats may differ by that much (absolute or relative)."""
    a, b = normalise_output(got), normalise_output(expected)
    if a == b:
        return True
    if not float_tolerance or len(a) != len(b):
        return False
    for la, lb in zip(a, b):
        ta, tb = la.split(), lb.split()
        if len(ta) != len(tb):
            return False
        for x, y in zip(ta, tb):
            if x == y:
                continue
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                return False
            if not math.isclose(fx, fy, rel_tol=float_tolerance, abs_tol=float_tolerance):
                return False
    return True
