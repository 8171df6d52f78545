"""verl RL parquet files load as they are (as verl's examples/data_preprocess/gsm8k.py writes them), and
``datarl export-verl`` then load gives back exactly the records exported."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datarl.cli import main as cli_main
from datarl.records import Record, load_records
from datarl_testing import LAYOUT_DATA, layout_rows, score_layout, write_jsonl

INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


def _gsm8k_rows() -> list[dict]:
    """The rows verl's gsm8k.py makes of the GSM8K fixture, column for column."""
    rows = []
    for index, row in enumerate(layout_rows("gsm8k.jsonl")):
        solution = row["answer"].split("#### ")[1].replace(",", "")
        rows.append(
            {
                "data_source": "openai/gsm8k",
                "prompt": [{"role": "user", "content": row["question"] + " " + INSTRUCTION}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": solution},
                "extra_info": {"split": "train", "index": index, "answer": row["answer"], "question": row["question"]},
            }
        )
    return rows


def _verl_parquet(tmp_path, rows: list[dict], name: str = "train.parquet") -> str:
    path = str(tmp_path / name)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _same(a: list[Record], b: list[Record]) -> None:
    """Every field of every record equal; only where each was read from differs."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.to_dict() == y.to_dict()
        for name in ("id", "task", "domain", "prompt", "ground_truth", "tests", "instruction_id_list", "kwargs"):
            assert getattr(x, name) == getattr(y, name), name
        assert (x.reference, x.response, x.line) == (y.reference, y.response, y.line)


def test_gsm8k_py_output_loads_as_math_records(tmp_path):
    lines: list[str] = []
    loaded = load_records(_verl_parquet(tmp_path, _gsm8k_rows()), announce=lines.append)
    assert not loaded.errors and len(lines) == 1 and lines[0].startswith("layout verl: task<-ability")
    assert [(r.task, r.ground_truth) for r in loaded.records] == [("math", "72"), ("math", "10"), ("math", "1880")]
    assert loaded.records[0].prompt == _gsm8k_rows()[0]["prompt"]
    assert loaded.records[0].to_dict()["extra_info"]["index"] == 0


def test_gsm8k_py_output_scores_right_one_wrong_zero_and_keeps_the_verl_columns(tmp_path):
    rows = _gsm8k_rows()
    scored, _ = score_layout(tmp_path, rows + rows, ["#### 72", "#### 10", "#### 1880", "#### 7", "#### 1", "#### 0"])
    assert [r["reward"] for r in scored] == [1.0] * 3 + [0.0] * 3
    assert scored[0]["reward_model"] == {"style": "rule", "ground_truth": "72"}


def test_the_task_comes_from_data_source_when_ability_is_not_a_task(tmp_path):
    rows = _gsm8k_rows()
    rows[0]["ability"] = "nlp"  # verl's own sets use labels such as this one
    rows[1].update(ability="arithmetic", data_source="datarl/math")
    rows[2].update(ability="nlp", data_source="my/own-set")
    loaded = load_records(_verl_parquet(tmp_path, rows))
    assert [r.task for r in loaded.records] == ["math", "math"]
    (err,) = loaded.errors
    assert (err.line, err.field) == (3, "ability") and "'nlp' (data_source 'my/own-set')" in err.message
    assert "set ability to one of math, code, ifeval, general" in err.message


def test_code_rows_with_apps_style_ground_truth(tmp_path):
    # verl's PRIME code sets keep APPS' input_output as the ground truth's JSON text.
    row = {
        "data_source": "codecontests",
        "prompt": [{"role": "user", "content": "Print the sum of two integers given on one line."}],
        "ability": "code",
        "reward_model": {"style": "rule", "ground_truth": json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]})},
        "extra_info": {"split": "train", "index": 0},
    }
    bad = dict(row, reward_model={"style": "rule", "ground_truth": "print(3)"})
    scored, _ = score_layout(
        tmp_path, [row, row], ["```python\nprint(sum(map(int, input().split())))\n```", "print(4)"], name="c.parquet"
    )
    assert [r["reward"] for r in scored] == [1.0, 0.0]
    (err,) = load_records(_verl_parquet(tmp_path, [bad], "bad.parquet")).errors
    assert err.field == "reward_model.ground_truth" and "JSON text" in err.message


def test_export_verl_then_load_gives_the_same_records(tmp_path, suite, capsys):
    # datarl records of every task, chat prompts and users' own fields included
    records = [dict(r) for r in suite]
    records[0]["prompt"] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    records[1]["label"] = {"kept": [1, 2.5, None], "by": "hand"}
    src = write_jsonl(tmp_path / "records.jsonl", records)
    out = str(tmp_path / "train.parquet")
    assert cli_main(["export-verl", src, "-o", out]) == 0
    capsys.readouterr()
    exported = load_records(out)
    assert exported.layout is not None and exported.layout.layout.name == "verl" and not exported.errors
    _same(load_records(src).records, exported.records)
    assert {r.task for r in exported.records} == {"math", "code", "ifeval", "general"}


@pytest.mark.parametrize("source", ["gsm8k.jsonl", "train.parquet"])
def test_export_verl_of_an_upstream_layout_round_trips_too(tmp_path, capsys, source):
    src = str(LAYOUT_DATA / source) if source.endswith(".jsonl") else _verl_parquet(tmp_path, _gsm8k_rows())
    out = str(tmp_path / "exported.parquet")
    assert cli_main(["export-verl", src, "-o", out]) == 0
    assert capsys.readouterr().err.count("layout ") == 1  # the input's mapping, once
    _same(load_records(src).records, load_records(out).records)


def test_a_broken_record_in_extra_info_is_a_bad_row(tmp_path):
    rows = _gsm8k_rows()
    rows[1]["extra_info"] = {"split": "train", "index": 1, "answer": "", "question": "", "record": "{not json"}
    loaded = load_records(_verl_parquet(tmp_path, rows))
    (err,) = loaded.errors
    assert (err.line, err.field) == (2, "extra_info.record") and "not valid JSON" in err.message
