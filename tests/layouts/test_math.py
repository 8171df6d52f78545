"""GSM8K and MATH as published load as math records and score with rtv.math, from hand-written fixtures."""

from __future__ import annotations

from datarl.records import load_records
from datarl_testing import LAYOUT_DATA, layout_rows, score_layout, write_rows


def test_gsm8k_loads_with_the_number_after_the_hashes(tmp_path):
    lines: list[str] = []
    loaded = load_records(str(LAYOUT_DATA / "gsm8k.jsonl"), announce=lines.append)
    assert lines == ["layout gsm8k: task=math, prompt<-question, ground_truth<-answer (after ####)"]
    assert not loaded.errors
    rows = layout_rows("gsm8k.jsonl")
    assert [r.task for r in loaded.records] == ["math"] * 3
    assert [r.prompt for r in loaded.records] == [row["question"] for row in rows]
    assert [r.ground_truth for r in loaded.records] == ["72", "10", "1880"]  # "#### 1,880" reads 1880
    assert loaded.records[0].to_dict()["answer"] == rows[0]["answer"]  # upstream columns are carried through


def test_gsm8k_scores_right_one_wrong_zero_and_keeps_its_columns(tmp_path):
    rows = layout_rows("gsm8k.jsonl")
    right = ["She sold 48 + 24 = 72 clips.\n#### 72", "The answer is $10.", "It bought \\boxed{1880} books."]
    wrong = ["#### 96", "The answer is 12.", "\\boxed{1200}"]
    scored, lines = score_layout(tmp_path, rows + rows, right + wrong)
    assert len(lines) == 1 and lines[0].startswith("layout gsm8k:")
    assert [r["reward"] for r in scored] == [1.0] * 3 + [0.0] * 3
    assert {r["reward_source"] for r in scored} == {"rtv.math"}
    assert scored[0]["task"] == "math" and scored[0]["ground_truth"] == "72"


def test_gsm8k_parquet_loads_the_same_records(tmp_path):
    rows = layout_rows("gsm8k.jsonl")
    from_jsonl = load_records(str(LAYOUT_DATA / "gsm8k.jsonl")).records
    from_parquet = load_records(write_rows(tmp_path / "gsm8k.parquet", rows)).records
    assert [r.to_dict() | {"id": ""} for r in from_parquet] == [r.to_dict() | {"id": ""} for r in from_jsonl]


def test_gsm8k_bad_rows_name_the_gsm8k_column(tmp_path):
    rows = layout_rows("gsm8k.jsonl")
    bad = [
        rows[0],
        {"question": "How many?", "answer": "Three, as worked out above."},
        {"question": "", "answer": "#### 4"},
        {"question": "How many?", "answer": "#### "},
    ]
    loaded = load_records(write_rows(tmp_path / "gsm8k.jsonl", bad))
    assert len(loaded.records) == 1
    got = [(e.line, e.field, e.message) for e in loaded.errors]
    assert got[0][:2] == (2, "answer") and "'#### N'" in got[0][2]
    assert got[1][:2] == (3, "question") and "empty" in got[1][2]
    assert got[2][:2] == (4, "answer") and "nothing follows" in got[2][2]


def test_math_takes_the_last_box_of_the_solution(tmp_path):
    loaded = load_records(str(LAYOUT_DATA / "math.jsonl"))
    assert not loaded.errors
    assert loaded.layout is not None and loaded.layout.layout.name == "math"
    assert [r.ground_truth for r in loaded.records] == ["12", "\\frac{2}{3}", "[2,5) \\cup (5,\\infty)"]
    assert loaded.records[1].to_dict()["type"] == "Algebra"


def test_math_scores_right_one_wrong_zero(tmp_path):
    rows = layout_rows("math.jsonl")
    right = ["So the value is $\\boxed{12}$.", "The ratio is \\boxed{2/3}.", "\\boxed{[2,5)\\cup(5,\\infty)}"]
    wrong = ["\\boxed{144}", "\\boxed{6}", "\\boxed{[2,\\infty)}"]
    scored, _ = score_layout(tmp_path, rows + rows, right + wrong)
    assert [r["reward"] for r in scored] == [1.0] * 3 + [0.0] * 3


def test_a_math_solution_without_a_box_is_a_bad_row(tmp_path):
    rows = layout_rows("math.jsonl") + [{"problem": "What is 1+1?", "level": "Level 1", "solution": "It is 2."}]
    loaded = load_records(write_rows(tmp_path / "math.jsonl", rows))
    (err,) = loaded.errors
    assert (err.line, err.field) == (4, "solution") and "\\boxed" in err.message
