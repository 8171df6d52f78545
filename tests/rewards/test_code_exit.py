"""rtv.code and the builtins exit()/quit(): the sandbox runs ``python -I -S``, which skips site, so the
sandbox puts site's exit/quit back (issue 15). Contest programs that end with ``exit()`` must pass; an exit
still cannot fake a pass: an assert-style candidate that exits before or during the tests scores 0, and a
stdio program is judged by what it printed and by its exit status (nonzero fails the case, like a judge's
runtime-error verdict)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from datarl.rewards.code import score_code
from datarl.sandbox import SandboxConfig, run_job

CFG = SandboxConfig(cpu_seconds=2, wall_seconds=3)
_d = textwrap.dedent

# first line n, then n integers: print their sum
SUM = {
    "type": "stdio",
    "cases": [
        {"input": "3\n1 2 3\n", "output": "6\n"},
        {"input": "1\n-5\n", "output": "-5\n"},
        {"input": "0\n\n", "output": "0\n"},
    ],
}
# one number a line until 0: print each doubled; the lines after 0 are not part of the query
QUERIES = {
    "type": "stdio",
    "cases": [{"input": "1\n2\n0\n99\n", "output": "2\n4\n"}, {"input": "7\n0\n", "output": "14\n"}],
}
VOWELS = {
    "type": "assert",
    "code": "assert count_vowels('hello') == 2\nassert count_vowels('sky') == 0\nassert count_vowels('AEIOU xyz') == 5",
}
VOWELS_FN = "def count_vowels(s):\n    return sum(c in 'aeiouAEIOU' for c in s)\n"
READ_SUM = "n = int(input())\na = list(map(int, input().split()))\n"

# (tests, code, expected score, expected failure, why)
ROWS = [
    pytest.param(
        SUM,
        READ_SUM + "print(sum(a))\nexit()\n",
        1.0,
        None,
        "exit() after the answer: the usual contest ending",
        id="stdio_exit_after_print",
    ),
    pytest.param(
        SUM, READ_SUM + "print(sum(a))\nquit()\n", 1.0, None, "quit() is the same Quitter", id="stdio_quit_after_print"
    ),
    pytest.param(
        SUM, READ_SUM + "print(sum(a))\nexit(0)\n", 1.0, None, "exit(0): status 0", id="stdio_exit0_after_print"
    ),
    pytest.param(
        SUM,
        "import sys\ninput = sys.stdin.readline\n" + READ_SUM + "print(sum(a))\nsys.exit()\n",
        1.0,
        None,
        "sys.exit() never depended on site",
        id="stdio_sys_exit_after_print",
    ),
    pytest.param(
        SUM,
        _d("""
        def main():
            n = int(input())
            a = list(map(int, input().split()))
            print(sum(a))
            exit()

        if __name__ == "__main__":
            main()
        """),
        1.0,
        None,
        "exit() inside main() after printing; the program runs as __main__",
        id="stdio_exit_in_function",
    ),
    pytest.param(
        SUM,
        _d("""
        n = int(input())
        if n == 0:
            print(0)
            exit()
        a = list(map(int, input().split()))
        print(sum(a))
        """),
        1.0,
        None,
        "an early exit() for an edge case, after printing its answer",
        id="stdio_early_exit_edge_case",
    ),
    pytest.param(
        SUM,
        _d("""
        import sys
        data = sys.stdin.read().split()
        sys.stdout.write(str(sum(map(int, data[1:1 + int(data[0])]))) + "\\n")
        exit()
        """),
        1.0,
        None,
        "buffered stdout is flushed on exit(), as in CPython",
        id="stdio_buffered_write_then_exit",
    ),
    pytest.param(
        QUERIES,
        _d("""
        while True:
            x = int(input())
            if x == 0:
                quit()
            print(2 * x)
        """),
        1.0,
        None,
        "quit() at the sentinel ends the input early; the rest is ignored",
        id="stdio_quit_in_loop",
    ),
    pytest.param(
        SUM,
        READ_SUM + "exit()\nprint(sum(a))\n",
        0.0,
        "wrong_answer",
        "exit() before printing ends the output empty",
        id="stdio_exit_before_print",
    ),
    pytest.param(
        SUM,
        READ_SUM + "print(sum(a) + 1)\nexit(0)\n",
        0.0,
        "wrong_answer",
        "exit(0) after a wrong answer: status 0 proves nothing, the output is judged",
        id="stdio_exit0_after_wrong_answer",
    ),
    pytest.param(
        SUM,
        READ_SUM + "print(sum(a))\nexit('done')\n",
        0.0,
        "runtime_error",
        "exit('done') prints 'done' to stderr with status 1: a nonzero status fails the case even with "
        "the right output (the verifier's policy, a judge's runtime error)",
        id="stdio_exit_message",
    ),
    pytest.param(
        SUM,
        READ_SUM + "print(sum(a))\nexit(1)\n",
        0.0,
        "runtime_error",
        "exit(1): nonzero status",
        id="stdio_exit1_after_print",
    ),
    pytest.param(
        SUM,
        _d("""
        try:
            n = int(input())
            a = list(map(int, input().split()))
            print(sum(a))
            exit()
        except:
            pass
        print("done")
        """),
        0.0,
        "wrong_answer",
        "a bare except swallows the SystemExit (as in CPython): an extra line",
        id="stdio_bare_except_swallows_exit",
    ),
    pytest.param(
        SUM,
        "try:\n    exit()\nexcept SystemExit:\n    pass\n" + READ_SUM + "print(sum(a))\n",
        0.0,
        "runtime_error",
        "exit() closes sys.stdin as site's Quitter does: a caught exit() then input() is a ValueError in CPython too",
        id="stdio_input_after_caught_exit",
    ),
    pytest.param(
        VOWELS,
        VOWELS_FN + "exit()\n",
        0.0,
        "runtime_error",
        "exit() at module level after the def: the tests never run",
        id="assert_exit_after_def",
    ),
    pytest.param(
        VOWELS, "exit()\n" + VOWELS_FN, 0.0, "runtime_error", "exit() before the def", id="assert_exit_before_def"
    ),
    pytest.param(
        VOWELS, VOWELS_FN + "exit(0)\n", 0.0, "runtime_error", "exit(0) is no pass either", id="assert_exit0_after_def"
    ),
    pytest.param(
        VOWELS,
        "def count_vowels(s):\n    quit()\n",
        0.0,
        "runtime_error",
        "quit() inside the function under test: every test catches a SystemExit",
        id="assert_quit_in_function",
    ),
    pytest.param(
        VOWELS,
        "def count_vowels(s):\n    n = sum(c in 'aeiouAEIOU' for c in s)\n    print(n)\n    exit(0)\n",
        0.0,
        "runtime_error",
        "prints the right value, then exit(0) instead of returning it",
        id="assert_exit0_in_function_after_print",
    ),
    pytest.param(
        VOWELS,
        "def count_vowels(s):\n    return len(s)\nexit(0)\n",
        0.0,
        "runtime_error",
        "a wrong function and exit(0)",
        id="assert_wrong_then_exit0",
    ),
    pytest.param(
        VOWELS,
        VOWELS_FN + "if __name__ == '__main__':\n    print(count_vowels(input()))\n    exit()\n",
        1.0,
        None,
        "a __main__ block with exit() is not run: the candidate module is not __main__",
        id="assert_main_guard_with_exit",
    ),
    pytest.param(
        VOWELS,
        "def count_vowels(s):\n    if not isinstance(s, str):\n        exit('expected a string')\n"
        "    return sum(c in 'aeiouAEIOU' for c in s)\n",
        1.0,
        None,
        "exit() only on bad input, never taken",
        id="assert_exit_on_bad_input_not_taken",
    ),
    pytest.param(
        VOWELS,
        "try:\n    exit()\nexcept SystemExit:\n    pass\n" + VOWELS_FN,
        1.0,
        None,
        "a caught exit() is harmless; without the builtin this was a NameError",
        id="assert_caught_exit_at_module_level",
    ),
]


@pytest.mark.parametrize("tests,code,score,failure,why", ROWS)
def test_exit_and_quit(tests, code, score, failure, why):
    r = score_code({"task": "code", "tests": tests}, "```python\n" + code + "```", config=CFG)
    assert (r.score, r.failure) == (score, failure), (why, r.info)
    if score:
        assert r.info["passed"] == r.info["total"] == len(tests.get("cases") or [0] * 3)


def test_exit_message_goes_to_stderr():
    r = score_code({"task": "code", "tests": SUM}, READ_SUM + "print(sum(a))\nexit('done')\n", config=CFG)
    assert r.info["tests"][0]["stderr"] == "done\n", r.info


@pytest.mark.parametrize(
    "code",
    [
        "exit()",
        "exit(None)",
        "quit(3)",
        "exit(True)",
        "exit(256)",
        "import sys\nsys.exit(-1)",
        "import sys\nsys.exit(2 ** 70)",
        "exit('bye')",
        "exit([1, 2])",
        "import sys\nsys.stderr = None\nexit('x')",
        "print(repr(exit))\nprint(repr(quit))",
        "import sys\ntry:\n    exit()\nexcept SystemExit:\n    print(sys.stdin.closed)",
    ],
)
def test_exit_status_and_output_match_cpython(code):
    """The sandbox's exit/quit and its reading of SystemExit against this CPython with site."""
    want = subprocess.run([sys.executable, "-I", "-c", code], input="", capture_output=True, text=True, timeout=30)
    got = run_job({"runner": "run_exec", "payload": {"code": code}, "stdin": ""}, CFG)
    assert (got["exit_code"], got["stdout"], got["stderr"]) == (want.returncode, want.stdout, want.stderr)


def test_a_run_cannot_change_exit_for_the_next_run():
    """Every run is a fork of the fork server: a patched Quitter or builtin dies with its run."""
    patch = (
        "import _sitebuiltins, builtins\n_sitebuiltins.Quitter.__call__ = lambda self, code=None: print(6)\n"
        "builtins.quit = None\n"
    )
    assert score_code({"task": "code", "tests": VOWELS}, patch + VOWELS_FN, config=CFG).score == 1.0
    r = score_code({"task": "code", "tests": SUM}, READ_SUM + "exit()\nquit()\nprint(sum(a))\n", config=CFG)
    assert (r.score, r.failure) == (0.0, "wrong_answer"), r.info
