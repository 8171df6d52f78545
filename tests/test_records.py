"""Loading and validating records: every bad line is reported with file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datarl.records import load_records

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # shared/ sits beside the repo


def _write(tmp_path, lines: list[str], name: str = "in.jsonl") -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _rec(**fields) -> str:
    base = {"task": "math", "prompt": "1+1?", "ground_truth": "2", "response": "2"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    "line, field, fragment",
    [
        ('{"task": "math", "prompt": "1+1?", "ground_tr', "(line)", "not valid JSON"),
        ("[1, 2]", "(line)", "expected a JSON object"),
        (_rec(task="maths"), "task", "did you mean 'math'"),
        (_rec(task=None), "task", "missing"),
        (_rec(ground_truth=None), "ground_truth", "missing"),
        (_rec(ground_truth=""), "ground_truth", "empty"),
        (_rec(ground_truth=["2"]), "ground_truth", "must be a string"),
        (_rec(prompt=None), "prompt", "missing"),
        (_rec(prompt=""), "prompt", "empty"),
        (_rec(prompt=[{"role": "robot", "content": "hi"}]), "prompt", "role"),
        (_rec(prompt=[{"role": "user"}]), "prompt", "content"),
        (_rec(response=5), "response", "must be a string"),
        (_rec(id=""), "id", "non-empty"),
        (_rec(domain=3), "domain", "non-empty string"),
        (json.dumps({"task": "ifeval", "prompt": "x", "response": "y"}), "instruction_id_list", "missing"),
    ],
)
def test_bad_line_reports_file_line_and_field(tmp_path, line, field, fragment):
    path = _write(tmp_path, [_rec(), line, _rec()])
    result = load_records(path)
    assert len(result.records) == 2, "the good lines around a bad one must still load"
    assert len(result.errors) == 1
    err = result.errors[0]
    assert (err.line, err.field) == (2, field)
    assert fragment in err.message
    assert str(err).startswith(f"{path}:2: {field}: ")


def test_defaults_and_unknown_fields_survive(tmp_path):
    path = _write(tmp_path, [_rec(label=True, meta={"a": 1})], name="data.jsonl")
    rec = load_records(path).records[0]
    assert rec.id == "data.jsonl:1" and rec.domain == "math"
    assert rec.to_dict()["label"] is True and rec.to_dict()["meta"] == {"a": 1}


def test_numeric_ground_truth_is_accepted_as_text(tmp_path):
    path = _write(tmp_path, [_rec(ground_truth=18), _rec(ground_truth=0.5)])
    assert [r.ground_truth for r in load_records(path).records] == ["18", "0.5"]


def test_blank_lines_are_not_records_but_line_numbers_stay_true(tmp_path):
    path = _write(tmp_path, [_rec(), "", "   ", "{bad"])
    result = load_records(path)
    assert result.total_lines == 2 and result.errors[0].line == 4


def test_chat_prompt_is_valid(tmp_path):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+1?"}]
    rec = load_records(_write(tmp_path, [_rec(prompt=msgs)])).records[0]
    assert rec.prompt == msgs


def test_ifeval_kwargs_of_wrong_shape_is_reported(tmp_path):
    bad = json.dumps(
        {
            "task": "ifeval",
            "prompt": "p",
            "response": "r",
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": {"a": 1},
        }
    )
    err = load_records(_write(tmp_path, [bad])).errors[0]
    assert err.field == "kwargs"


def test_unknown_ifeval_instruction_is_reported(tmp_path):
    bad = json.dumps(
        {
            "task": "ifeval",
            "prompt": "p",
            "response": "r",
            "instruction_id_list": ["punctuation:no_commas"],
            "kwargs": [{}],
        }
    )
    err = load_records(_write(tmp_path, [bad])).errors[0]
    assert err.field == "instruction_id_list" and "no_comma" in err.message


def test_parquet_round_trip(tmp_path):
    rows = [json.loads(_rec()), json.loads(_rec(task="nope"))]
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = load_records(str(path))
    assert len(result.records) == 1 and result.errors[0].line == 2


@pytest.mark.parametrize(
    "name", ["math_gsm8k_solutions.jsonl", "math_qwen_math_cot.jsonl", "ifeval_gpt4_responses.jsonl"]
)
def test_shared_real_data_loads_without_errors(name):
    result = load_records(f"{SHARED}/{name}")
    assert result.errors == [] and len(result.records) == result.total_lines > 0


def test_missing_or_unreadable_file_is_a_user_error(tmp_path):
    from datarl.errors import InputError, UserError

    with pytest.raises(InputError, match="nope.jsonl: no such file"):
        load_records(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="cannot read"):
        load_records(str(tmp_path))  # a directory: open() fails with IsADirectoryError


def test_read_all_records_names_what_and_refuses_bad_lines_and_empty_files(tmp_path):
    from datarl.errors import ConfigError
    from datarl.records import read_all_records

    bad = _write(tmp_path, [_rec(), "{not json"])
    with pytest.raises(ConfigError, match=r"(?s)data.train: 1 bad line\(s\) in .*:2: \(line\): not valid JSON"):
        read_all_records(bad, what="data.train", error=ConfigError)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no records"):
        read_all_records(str(empty), error=ConfigError)
    assert read_all_records(str(empty), allow_empty=True) == []
