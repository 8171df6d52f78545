"""The rows of a records file, before any validation: JSONL, Parquet, or a Hugging Face ``datasets``
directory written by ``Dataset.save_to_disk``.

:func:`open_rows` gives the file's column names where its format declares them (Parquet's schema, the
dataset's features; ``None`` for JSONL, whose lines may differ) and an iterator of
``(line_number, parsed_object_or_exception, line_text)``. Line numbers are 1-based; a Parquet or dataset
row's number is its position. Blank JSONL lines are skipped (they are not records) and a line that is not
valid JSON yields its ``ValueError`` in place of the object, so the caller reports it and goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from datarl.errors import InputError

__all__ = ["Rows", "open_rows", "is_dataset_dir"]

Row = tuple[int, Any, str]


@dataclass(frozen=True)
class Rows:
    """A file's declared columns (None: not declared, as in JSONL) and its rows, read lazily."""

    columns: tuple[str, ...] | None
    rows: Iterator[Row]


def is_dataset_dir(path: str) -> bool:
    """Whether ``path`` is a directory that ``datasets`` saved (one split, or a DatasetDict of several)."""
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name)) for name in ("state.json", "dataset_dict.json")
    )


def open_rows(path: str) -> Rows:
    """The rows of ``path`` (see module doc). Raises ``OSError`` for an unreadable file and
    :class:`~datarl.errors.InputError` for a directory that is not one dataset split."""
    if os.path.isdir(path):
        return _dataset_rows(path)
    if path.endswith(".parquet"):
        return _parquet_rows(path)
    return Rows(None, _jsonl_rows(path))


def _jsonl_rows(path: str) -> Iterator[Row]:
    with open(path, "rb") as fh:
        for number, raw_line in enumerate(fh, start=1):
            text = raw_line.decode("utf-8", errors="replace")
            if not text.strip():
                continue
            try:
                yield number, json.loads(text), text
            except ValueError as exc:
                yield number, exc, text


def _parquet_rows(path: str) -> Rows:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return Rows(tuple(table.schema.names), _numbered(table.to_pylist()))


def _numbered(rows: list[dict[str, Any]]) -> Iterator[Row]:
    for number, row in enumerate(rows, start=1):
        yield number, row, ""


def _dataset_rows(path: str) -> Rows:
    if os.path.exists(os.path.join(path, "dataset_dict.json")):
        splits = sorted(name for name in os.listdir(path) if is_dataset_dir(os.path.join(path, name)))
        raise InputError(
            f"{path}: a datasets DatasetDict with splits {', '.join(splits) or '(none)'}; "
            f"give one split's directory, e.g. {os.path.join(path, splits[0] if splits else 'train')}"
        )
    if not is_dataset_dir(path):
        raise InputError(
            f"{path}: cannot read a directory as records; give a .jsonl or .parquet file, or a directory "
            "written by datasets' save_to_disk"
        )
    try:
        import datasets
    except ImportError:
        raise InputError(
            f"{path}: reading a Hugging Face datasets directory needs the datasets package "
            "(pip install 'datarl[datasets]'), or save the split with Dataset.to_parquet"
        ) from None
    ds = datasets.load_from_disk(path)
    return Rows(tuple(ds.column_names), _numbered(ds.to_list()))
