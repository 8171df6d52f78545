"""Which layout a file is read in: detected once per file from its columns, forced with --layout, an error
listing the candidates when several fit; datarl files load exactly as before."""

from __future__ import annotations

import json

import pytest

from datarl.cli import main as cli_main
from datarl.errors import InputError
from datarl.layouts import LAYOUT_NAMES, LayoutError, choose_layout
from datarl.records import load_records, read_all_records
from datarl_testing import LAYOUT_DATA, layout_rows, read_jsonl, write_jsonl, write_rows

FIXTURES = {
    "gsm8k.jsonl": "gsm8k",
    "math.jsonl": "math",
    "humaneval.jsonl": "humaneval",
    "mbpp.jsonl": "mbpp",
    "mbpp_sanitized.jsonl": "mbpp",
    "apps.jsonl": "apps",
    "ifeval_input_data.jsonl": "ifeval",
    "messages.jsonl": "messages",
}
NATIVE = {"task": "math", "prompt": "1+1?", "ground_truth": "2"}


@pytest.mark.parametrize("name, layout", sorted(FIXTURES.items()))
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_each_fixture_is_detected_as_its_layout(tmp_path, name, layout, suffix):
    path = write_rows(tmp_path / (name.rsplit(".", 1)[0] + suffix), layout_rows(name))
    loaded = load_records(path)
    assert loaded.layout is not None and loaded.layout.layout.name == layout
    assert not loaded.errors and len(loaded.records) == len(layout_rows(name))


def test_the_layouts_names_and_the_cli_choices_agree():
    from datarl.cli.common import LAYOUT_CHOICES

    assert LAYOUT_NAMES == ("datarl", "verl", "gsm8k", "math", "humaneval", "mbpp", "apps", "ifeval", "messages")
    assert LAYOUT_CHOICES == LAYOUT_NAMES


def test_a_file_with_task_is_a_datarl_file_whatever_else_it_has(tmp_path):
    rows = [{**NATIVE, "question": "q", "answer": "#### 3"}]
    said: list[str] = []
    loaded = load_records(write_jsonl(tmp_path / "d.jsonl", rows), announce=said.append)
    assert loaded.layout is not None and loaded.layout.native and said == []
    assert loaded.records[0].ground_truth == "2" and loaded.records[0].raw is not None


def test_datarl_records_load_exactly_as_before(tmp_path):
    rows = [NATIVE, {**NATIVE, "id": "x", "label": [1]}]
    (a, b) = load_records(write_jsonl(tmp_path / "d.jsonl", rows)).records
    assert a.raw == NATIVE and a.id == "d.jsonl:1" and a.to_dict() == {**NATIVE, "id": "d.jsonl:1", "domain": "math"}
    assert b.raw == rows[1]


def test_columns_that_fit_several_layouts_are_an_error_listing_them(tmp_path):
    row = {**layout_rows("gsm8k.jsonl")[0], "input_output": json.dumps({"inputs": ["1"], "outputs": ["1"]})}
    path = write_jsonl(tmp_path / "both.jsonl", [row])
    with pytest.raises(LayoutError) as info:
        load_records(path)
    message = str(info.value)
    assert message.startswith(f"{path}: its columns fit 2 layouts: gsm8k (question, answer ending in '#### N'); apps")
    assert "choose one with --layout NAME" in message
    assert load_records(path, layout="gsm8k").records[0].ground_truth == "72"
    assert load_records(path, layout="apps").records[0].task == "code"


def test_a_value_check_keeps_a_look_alike_file_out(tmp_path):
    # question/answer columns without GSM8K's "#### N" are not GSM8K: nothing fits, task is missing
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Who wrote Hamlet?", "answer": "Shakespeare"}])
    loaded = load_records(path)
    assert loaded.layout is not None and loaded.layout.native
    (err,) = loaded.errors
    assert err.field == "task" and err.message.startswith("missing; set it to one of math, code, ifeval, general")
    assert "no known layout fits the columns answer, question; see README 'Layouts'" in err.message


def test_a_forced_layout_names_the_columns_a_row_lacks(tmp_path):
    loaded = load_records(str(LAYOUT_DATA / "gsm8k.jsonl"), layout="math")
    assert not loaded.records and {(e.field, e.message) for e in loaded.errors} == {
        ("problem", "missing; it holds the problem")
    }
    with pytest.raises(LayoutError, match=r"unknown layout 'gsm'.*did you mean 'gsm8k'"):
        choose_layout(["question"], [], "gsm")


def test_read_all_records_takes_a_layout_and_announces_it(tmp_path):
    said: list[str] = []
    records = read_all_records(str(LAYOUT_DATA / "apps.jsonl"), layout="apps", announce=said.append)
    assert len(records) == 3 and len(said) == 1 and said[0].startswith("layout apps:")
    with pytest.raises(InputError, match=r"(?s)3 bad line\(s\).*:1: text: missing"):
        read_all_records(str(LAYOUT_DATA / "apps.jsonl"), layout="mbpp")


# --- the command line ----------------------------------------------------------------------------


def test_validate_prints_the_mapping_once_first(capsys):
    assert cli_main(["validate", str(LAYOUT_DATA / "gsm8k.jsonl")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "layout gsm8k: task=math, prompt<-question, ground_truth<-answer (after ####)",
        f"{LAYOUT_DATA / 'gsm8k.jsonl'}: 3 lines, 3 valid (math=3), 0 bad",
    ]


def test_validate_of_a_datarl_file_prints_no_mapping(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [NATIVE])
    assert cli_main(["validate", path]) == 0
    assert capsys.readouterr().out == f"{path}: 1 lines, 1 valid (math=1), 0 bad\n"


def test_score_prints_the_mapping_once_on_stderr_and_forces_with_layout(tmp_path, capsys):
    rows = [{**row, "response": "#### 72"} for row in layout_rows("gsm8k.jsonl")]
    src, out = write_jsonl(tmp_path / "g.jsonl", rows), str(tmp_path / "out.jsonl")
    assert cli_main(["score", src, "-o", out, "--workers", "1", "--no-progress", "--layout", "gsm8k"]) == 0
    err = capsys.readouterr().err
    assert err.count("layout gsm8k:") == 1
    assert [r["reward"] for r in read_jsonl(out)] == [1.0, 0.0, 0.0]


def test_an_ambiguous_file_is_one_line_and_exit_2(tmp_path, capsys):
    row = {**layout_rows("gsm8k.jsonl")[0], "input_output": "{}"}
    path = write_jsonl(tmp_path / "both.jsonl", [row])
    assert cli_main(["validate", path]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("datarl: error: ") and "--layout NAME" in err


def test_an_unknown_layout_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["validate", str(LAYOUT_DATA / "gsm8k.jsonl"), "--layout", "gsm"])
    assert info.value.code == 2 and "invalid choice: 'gsm'" in capsys.readouterr().err


# --- Hugging Face datasets directories -------------------------------------------------------------


def test_a_datasets_directory_loads_and_scores(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    rows = [{**row, "response": "The answer is 72."} for row in layout_rows("gsm8k.jsonl")]
    directory = str(tmp_path / "gsm8k_train")
    datasets.Dataset.from_list(rows).save_to_disk(directory)
    out = str(tmp_path / "out.jsonl")
    assert cli_main(["score", directory, "-o", out, "--workers", "1", "--no-progress"]) == 0
    assert [r["reward"] for r in read_jsonl(out)] == [1.0, 0.0, 0.0]
    assert read_jsonl(out)[0]["id"] == "gsm8k_train:1"
    both = str(tmp_path / "gsm8k")
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows)}
    ).save_to_disk(both)
    capsys.readouterr()
    assert cli_main(["validate", both]) == 2
    assert "a datasets DatasetDict with splits test, train; give one split's directory" in capsys.readouterr().err
