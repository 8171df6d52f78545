"""rtv.code: extraction, test shapes, failure classes, partial credit, strict comparisons, validation."""

from __future__ import annotations

import collections

import pytest

from datarl.rewards.code import extract_code, score_code
from datarl.rewards.code_tests import outputs_match, split_assert_tests, validate_tests
from datarl.sandbox import SandboxConfig

FAST = SandboxConfig(cpu_seconds=1, wall_seconds=2)
SQUARE = {"type": "assert", "code": "assert sq(2) == 4\nassert sq(3) == 9\nassert sq(-1) == 1\nassert sq(0) == 0"}


def rec(tests):
    return {"id": "t", "task": "code", "tests": tests}


@pytest.mark.parametrize(
    "response,code,origin",
    [
        ("```python\nx = 1\n```\ntext\n```python\nx = 2\n```", "x = 2\n", "fenced_python"),
        ("Here:\n```py\nx = 3\n```", "x = 3\n", "fenced_python"),
        ("```\nx = 4\n```", "x = 4\n", "fenced"),
        ("```python\nx = 5\n```\n```\nnot code\n```", "x = 5\n", "fenced_python"),
        ("x = 6", "x = 6", "response"),
        ("```python\nx = 7\n", "x = 7\n", "fenced_python"),  # truncated generation: unclosed fence
    ],
)
def test_extract_code(response, code, origin):
    assert extract_code(response) == (code, origin)


def test_pass_and_info():
    r = score_code(rec(SQUARE), "Sure!\n```python\ndef sq(x):\n    return x * x\n```")
    assert r.score == 1.0 and r.source == "rtv.code" and r.failure is None
    assert r.info["extracted"] == "def sq(x):\n    return x * x\n"
    assert r.info["extracted_from"] == "fenced_python"
    assert r.info["passed"] == r.info["total"] == 4
    assert [t["passed"] for t in r.info["tests"]] == [True] * 4


def test_partial_credit():
    wrong = "def sq(x):\n    return x * 2"  # right for 0 and 2 only
    assert score_code(rec(SQUARE), wrong).score == 0.0
    r = score_code(rec(SQUARE), wrong, partial_credit=True)
    assert r.score == 0.5 and r.failure == "wrong_answer"
    assert [t["passed"] for t in r.info["tests"]] == [True, False, False, True]
    assert r.info["tests"][1]["error"].startswith("AssertionError")


@pytest.mark.parametrize(
    "code,failure",
    [
        ("def sq(x) return x", "syntax_error"),
        ("def sq(x):\n    return x / 0", "runtime_error"),
        ("import nonexistent_module_xyz", "runtime_error"),
        ("def sq(x):\n    return x + 1", "wrong_answer"),
        ("def sq(x):\n    while True: pass", "timeout"),
        ("import time\ndef sq(x):\n    time.sleep(30)", "timeout"),
        ("def sq(x):\n    return [0] * (10 ** 10)", "memory"),
        ("def sq(x):\n    print('y' * 10 ** 7)", "output_limit"),
        ("import os, signal\ndef sq(x):\n    os.kill(os.getpid(), signal.SIGSEGV)", "killed"),
        ("", "no_code"),
        ("```python\n\n```", "no_code"),
    ],
)
def test_failure_classes(code, failure):
    r = score_code(rec(SQUARE), code, config=FAST)
    assert r.score == 0.0 and r.failure == failure, r.info


def test_setup_and_entry_point_check_function():
    tests = {
        "type": "assert",
        "setup": "import math\nK = 10",
        "entry_point": "f",
        "code": "def check(candidate):\n    assert candidate(2) == math.sqrt(4) * K\n",
    }
    assert score_code(rec(tests), "def f(x):\n    return x * K").score == 1.0
    assert score_code(rec(tests), "def f(x):\n    return x").score == 0.0


def test_plain_value_comparisons_accept_honest_answers():
    tests = {
        "type": "assert",
        "code": "\n".join(
            [
                "assert f()[0] == [1, 2]",
                "assert f()[1] == (1, 'a')",
                "assert f()[2] == {'a': 1}",
                "assert f()[3] == {1, 2}",
                "assert abs(f()[4] - 0.3) < 1e-9",
                "assert f()[5] == {'x': 2}",
                "assert f()[6] is None",
                "assert f()[7] == True",
                "assert 2 in f()[0]",
                "assert 'b' in f()[8]",
                "assert f()[9] == (3, 4)",
                "assert f()[10] != 5",
                "assert f()[11]",
                "assert not f()[12]",
                "assert 1 < f()[13] <= 3",
            ]
        ),
    }
    code = (
        "import collections\nP = collections.namedtuple('P', 'x y')\n"
        "def f():\n    d = collections.defaultdict(int); d['x'] += 2\n"
        "    return [[1, 2], (1, 'a'), {'a': 1}, {1, 2}, 0.1 + 0.2, d, None, True, 'abc', P(3, 4), 4,"
        " [0], '', 3]\n"
    )
    r = score_code(rec(tests), code)
    assert r.score == 1.0, r.info


def test_bool_and_int_subclass_values_compare_by_value():
    tests = {"type": "assert", "code": "assert f() == 3\nassert g() == True"}
    code = "class I(int):\n    pass\ndef f(): return I(3)\ndef g(): return 1"
    assert score_code(rec(tests), code).score == 1.0


def test_stdio_tests():
    tests = {"type": "stdio", "cases": [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"}]}
    good = "a, b = map(int, input().split())\nprint(a + b)   "
    r = score_code(rec(tests), good)
    assert r.score == 1.0 and r.info["passed"] == 2, r.info
    r = score_code(rec(tests), "a, b = map(int, input().split())\nprint(a * b)", partial_credit=True)
    assert r.score == 0.0 and r.failure == "wrong_answer"
    r = score_code(rec(tests), "import sys\nprint(5)\nsys.exit(3)", partial_credit=True)
    assert r.score == 0.0 and r.failure == "runtime_error"
    r = score_code(rec(tests), "print(5)", partial_credit=True)
    assert r.score == 0.5
    assert score_code(rec(tests), "print(", partial_credit=True).failure == "syntax_error"


def test_stdio_float_tolerance():
    cases = [{"input": "", "output": "0.3333333\n"}]
    code = "print(1/3)"
    assert score_code(rec({"type": "stdio", "cases": cases}), code).score == 0.0
    assert score_code(rec({"type": "stdio", "cases": cases, "float_tolerance": 1e-6}), code).score == 1.0


def test_outputs_match():
    assert outputs_match("a  \nb\n\n\n", "a\nb")
    assert not outputs_match("a\nb", "a\nc")
    assert not outputs_match(" a", "a")  # leading whitespace matters
    assert outputs_match("1.0000001 x", "1.0 x", 1e-6)
    assert not outputs_match("1.1 x", "1.0 x", 1e-6)


@pytest.mark.parametrize(
    "tests,problem",
    [
        (None, "must be an object"),
        ({"type": "junit"}, "tests.type"),
        ({"type": "assert"}, "tests.code"),
        ({"type": "assert", "code": "assert (("}, "does not parse"),
        ({"type": "assert", "code": "x = 1"}, "no top-level assert"),
        ({"type": "assert", "code": "assert 1", "entry_point": "not valid"}, "entry_point"),
        ({"type": "assert", "code": "assert 1", "setup": 3}, "setup"),
        ({"type": "stdio", "cases": []}, "non-empty list"),
        ({"type": "stdio", "cases": [{"input": "1"}]}, "cases[0].output"),
        ({"type": "stdio", "cases": [{"input": "", "output": ""}], "float_tolerance": -1}, "float_tolerance"),
    ],
)
def test_validate_tests_reports_problems(tests, problem):
    problems = validate_tests(tests)
    assert problems and any(problem in p for p in problems), problems
    r = score_code(rec(tests), "x = 1")
    assert r.score == 0.0 and r.failure == "invalid_tests"


def test_validate_tests_accepts_both_shapes():
    assert validate_tests(SQUARE) == []
    assert validate_tests({"type": "assert", "code": "def check(c):\n    assert c(1)\n", "entry_point": "f"}) == []
    assert validate_tests({"type": "stdio", "cases": [{"input": "", "output": "1"}]}) == []


def test_assert_rewrite_shape():
    items = split_assert_tests("import math\nassert f(1) == 2\ndef check(c):\n    assert abs(c(1) - 2) < 1\n", "f")
    assert [t for _, t in items] == [False, True, False, True]
    assert "__dr_cmp__(('==',), f(1), 2)" in items[1][0]
    assert "__dr_p__(c(1)) - 2" in items[2][0]
    assert items[3][0] == "check(f)"


def test_never_raises_on_odd_input():
    for response in (None, 123, "\x00\x00", "```python\n\x00\n```", "def f(:\n" * 1000, "(" * 100000):
        r = score_code(rec(SQUARE), response)  # type: ignore[arg-type]
        assert r.score == 0.0 and r.failure


def test_config_from_mapping():
    r = score_code(rec(SQUARE), "def sq(x): return x*x", config={"wall_seconds": 5, "cpu_seconds": 2})
    assert r.score == 1.0
    with pytest.raises(ValueError):
        score_code(rec(SQUARE), "x", config={"wall_seconds": -1})


def test_counter_and_deque_results():
    tests = {"type": "assert", "code": "assert f() == {'a': 2}\nassert list(g()) == [1, 2]"}
    code = "import collections\ndef f(): return collections.Counter('aa')\ndef g(): return collections.deque([1, 2])"
    assert score_code(rec(tests), code).score == 1.0
    assert collections  # imported for readers: these are the stdlib types the harness trusts


def test_stdlib_features_work_under_the_harness():
    """The harness blocks frame/gc/ctypes introspection; common stdlib that touches it must still work."""
    code = """
import dataclasses, enum, functools, typing, collections, re, itertools, heapq, logging, json, fractions
T = typing.TypeVar("T")
P = collections.namedtuple("P", "x y")
class N(typing.NamedTuple):
    a: int
class Color(enum.Enum):
    RED = 1
E2 = enum.Enum("E2", "A B")
@dataclasses.dataclass(frozen=True)
class D:
    x: int
    y: typing.List[int] = dataclasses.field(default_factory=list)
@functools.lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
logging.getLogger("x").warning("logged")
def f():
    return [P(1, 2).x, N(3).a, Color.RED.value, E2.B.value, D(5).x, fib(30), len(re.findall("a", "aa")),
            list(itertools.islice(itertools.count(), 2)), heapq.nsmallest(1, [3, 1]), json.loads("[1]"),
            fractions.Fraction(1, 2)]
"""
    tests = {
        "type": "assert",
        "code": "from fractions import Fraction\n"
        "assert f() == [1, 3, 1, 2, 5, 832040, 2, [0, 1], [1], [1], Fraction(1, 2)]",
    }
    r = score_code(rec(tests), code)
    assert r.score == 1.0, r.info


def test_unittest_style_class_tests_are_rewritten_without_name_mangling():
    tests = {
        "type": "assert",
        "code": "class T:\n    def run(self):\n        assert f() == 1\nT().run()\nassert f() == 1",
    }
    assert score_code(rec(tests), "def f(): return 1").score == 1.0
