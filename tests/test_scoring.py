"""`score_file`: order, side files, strictness, timeouts, and what bad input produces."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from datarl.errors import InputError
from datarl.executors import engine as engine_module
from datarl.rewards.router import RouterConfig
from datarl.scoring import ScoreOptions, score_file

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _write(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _math(i: int, response: str | None, gt: str = "4") -> dict:
    rec = {"id": f"m{i}", "task": "math", "prompt": "2+2?", "ground_truth": gt}
    if response is not None:
        rec["response"] = response
    return rec


def test_scores_in_input_order_and_keeps_user_fields(tmp_path):
    rows = [dict(_math(i, f"#### {4 if i % 3 else 5}"), label=i % 3 != 0) for i in range(40)]
    out = tmp_path / "out.jsonl"
    summary = score_file(_write(tmp_path / "in.jsonl", rows), str(out), ScoreOptions(workers=2, progress=False))
    got = _read(out)
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    assert [r["reward"] for r in got] == [1.0 if r["label"] else 0.0 for r in rows]
    assert all(r["reward_source"] == "rtv.math" for r in got)
    assert summary.scored == 40 and summary.by_task["math"][0] == 40
    assert not (tmp_path / "out.jsonl.errors.jsonl").exists()


def test_bad_lines_go_to_side_file_and_the_rest_is_scored(tmp_path):
    rows = [
        _math(0, "4"),
        '{"task": "math", "prompt": "x", "ground',
        _math(2, "4", gt=None),
        {"task": "poetry", "prompt": "x", "response": "y"},
        _math(4, "The answer is 4."),
    ]
    rows[2].pop("ground_truth")
    out = tmp_path / "out.jsonl"
    summary = score_file(_write(tmp_path / "in.jsonl", rows), str(out), ScoreOptions(workers=1, progress=False))
    assert [r["id"] for r in _read(out)] == ["m0", "m4"]
    errors = _read(str(out) + ".errors.jsonl")
    assert [(e["line"], e["field"]) for e in errors] == [(2, "(line)"), (3, "ground_truth"), (4, "task")]
    assert all(e["text"] for e in errors)
    assert summary.bad_lines == 3


def test_strict_refuses_the_whole_file_and_writes_nothing(tmp_path):
    path = _write(tmp_path / "in.jsonl", [_math(0, "4"), "{oops"])
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match=r"in.jsonl:2: \(line\): not valid JSON"):
        score_file(path, str(out), ScoreOptions(strict=True, progress=False))
    assert not out.exists() and not Path(str(out) + ".errors.jsonl").exists()


def test_records_without_response_pass_through_unscored(tmp_path):
    rows = [_math(0, None), _math(1, "4"), {"task": "general", "prompt": "Describe rain."}]
    out = tmp_path / "out.jsonl"
    summary = score_file(_write(tmp_path / "in.jsonl", rows), str(out), ScoreOptions(workers=1, progress=False))
    got = _read(out)
    assert len(got) == 3 and "reward" not in got[0] and got[1]["reward"] == 1.0 and "reward" not in got[2]
    assert summary.unscored == 2


def test_task_without_a_source_is_an_error_not_zero(tmp_path):
    rows = [{"task": "general", "prompt": "Describe rain.", "response": "It rains."}, _math(1, "4")]
    out = tmp_path / "out.jsonl"
    router = RouterConfig.from_mapping({"router": {"general": None}})
    score_file(_write(tmp_path / "in.jsonl", rows), str(out), ScoreOptions(workers=1, progress=False, router=router))
    assert [r["id"] for r in _read(out)] == ["m1"]
    (err,) = _read(str(out) + ".errors.jsonl")
    assert err["field"] == "task" and "no reward source is configured for task 'general'" in err["error"]


@pytest.mark.parametrize(
    "router, field, fragment",
    [
        ({}, "task", "routed to genrm.bon, which needs a model: set sources.genrm.bon.judge"),
        ({"sources": {"genrm.bon": {"judge": "judge/"}}}, "reference", "missing; genrm.bon compares"),
    ],
)
def test_general_records_the_judge_cannot_score_are_bad_lines_not_zeros(tmp_path, router, field, fragment):
    rows = [{"task": "general", "prompt": "Describe rain.", "response": "It rains."}, _math(1, "4")]
    out = tmp_path / "out.jsonl"
    score_file(
        _write(tmp_path / "in.jsonl", rows),
        str(out),
        ScoreOptions(workers=1, progress=False, router=RouterConfig.from_mapping(router)),
    )
    assert [r["id"] for r in _read(out)] == ["m1"]
    (err,) = _read(str(out) + ".errors.jsonl")
    assert err["field"] == field and fragment in err["error"]


def _hang_on_marker(record):
    if record.get("response") == "HANG":
        time.sleep(120)
    return {"reward": 1.0, "reward_source": "test", "reward_info": {}}


def test_an_item_past_the_timeout_scores_zero_with_failure_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "score_item", lambda router, record: _hang_on_marker(record))
    rows = [_math(0, "4"), _math(1, "HANG"), _math(2, "4")]
    out = tmp_path / "out.jsonl"
    start = time.monotonic()
    summary = score_file(
        _write(tmp_path / "in.jsonl", rows), str(out), ScoreOptions(workers=2, timeout_s=1.0, progress=False)
    )
    assert time.monotonic() - start < 20
    got = _read(out)
    assert [r["reward"] for r in got] == [1.0, 0.0, 1.0]
    assert got[1]["reward_info"]["failure"] == "timeout" and got[1]["reward_source"] == "rtv.math"
    assert summary.failures["timeout"] == 1


def test_huge_and_pathological_responses_are_scored_without_crashing(tmp_path):
    rows = [
        _math(0, "x " * 2_500_000 + "#### 4"),  # 5 MB
        _math(1, "\\boxed{9^{9^{9^{9^{9}}}}}"),  # sympy would try to evaluate this
        _math(2, "\\boxed{" + "\\frac{" * 300 + "1" + "}{2}" * 300 + "}"),
        _math(3, "\x00\xff\ud7ff garbage"),
    ]
    out = tmp_path / "out.jsonl"
    score_file(_write(tmp_path / "in.jsonl", rows), str(out), ScoreOptions(workers=2, timeout_s=10, progress=False))
    got = _read(out)
    assert [r["id"] for r in got] == ["m0", "m1", "m2", "m3"]
    assert all(r["reward"] in (0.0, 1.0) for r in got)
    assert got[1]["reward"] == 0.0 and got[3]["reward"] == 0.0


def test_parquet_output(tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "out.parquet"
    score_file(
        _write(tmp_path / "in.jsonl", [_math(0, "4"), _math(1, "5")]), str(out), ScoreOptions(workers=1, progress=False)
    )
    rows = pq.read_table(out).to_pylist()
    assert [r["reward"] for r in rows] == [1.0, 0.0]
    assert json.loads(rows[1]["reward_info"])["failure"] == "wrong_answer"


def test_output_equal_to_input_is_refused(tmp_path):
    path = _write(tmp_path / "in.jsonl", [_math(0, "4")])
    with pytest.raises(InputError, match="differ"):
        score_file(path, path, ScoreOptions(progress=False))


def test_gsm8k_file_scores_every_line(tmp_path):
    out = tmp_path / "out.jsonl"
    summary = score_file(str(SHARED / "math_gsm8k_solutions.jsonl"), str(out), ScoreOptions(workers=2, progress=False))
    got = _read(out)
    assert len(got) == summary.scored == 2640
    agree = sum((r["reward"] == 1.0) == r["label"] for r in got)
    assert agree / len(got) >= 0.999
