"""Reading a records file's rows: JSONL, Parquet and Hugging Face datasets directories."""

from __future__ import annotations

import pytest

from datarl.errors import InputError
from datarl.rows import is_dataset_dir, open_rows
from datarl_testing import write_rows

ROWS = [{"question": "q1", "answer": "#### 1"}, {"question": "q2", "answer": "#### 2"}]


def test_jsonl_declares_no_columns_and_numbers_lines_as_in_the_file(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{bad\n{"b": 2}\n')
    rows = open_rows(str(path))
    assert rows.columns is None
    got = [(n, obj if isinstance(obj, dict) else type(obj).__name__) for n, obj, _ in rows.rows]
    assert got == [(1, {"a": 1}), (3, "JSONDecodeError"), (4, {"b": 2})]


def test_parquet_declares_its_schema(tmp_path):
    rows = open_rows(write_rows(tmp_path / "r.parquet", ROWS))
    assert rows.columns == ("question", "answer")
    assert [(n, obj) for n, obj, _ in rows.rows] == [(1, ROWS[0]), (2, ROWS[1])]


def test_a_datasets_directory_reads_like_parquet(tmp_path):
    datasets = pytest.importorskip("datasets")
    directory = str(tmp_path / "split")
    datasets.Dataset.from_list(ROWS).save_to_disk(directory)
    assert is_dataset_dir(directory)
    rows = open_rows(directory)
    assert rows.columns == ("question", "answer") and [obj for _, obj, _ in rows.rows] == ROWS


def test_another_directory_cannot_be_read(tmp_path):
    assert not is_dataset_dir(str(tmp_path))
    with pytest.raises(InputError, match="cannot read a directory as records"):
        open_rows(str(tmp_path))
