"""Files: the one atomic writer, record files, JSON files and the progress bar.

Every file or directory datarl writes goes through :func:`atomic_path`: the content is written to a
temporary path beside the target (same directory, so the rename cannot cross file systems), flushed to
disk (``fsync``), then renamed into place. Readers see the old content or the new, never half of it, and
any exception (Ctrl-C included) removes the temporary path, so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from datarl.errors import InputError

TMP_SUFFIX = ".tmp"
"""Temporary paths are ``.NAME.<random or pid>.tmp`` beside their target: hidden, and easy to sweep."""

__all__ = [
    "TMP_SUFFIX",
    "atomic_path",
    "write_text",
    "write_bytes",
    "write_json",
    "write_records",
    "remove_stale",
    "progress_bar",
]


def _fsync_tree(path: str) -> None:
    paths = (
        [path]
        if os.path.isfile(path)
        else [os.path.join(root, name) for root, _, files in os.walk(path) for name in files]
    )
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str, *, directory: bool = False, replace_existing: bool = True) -> Iterator[str]:
    """Yield a temporary path to write ``path``'s new content to; on success it is renamed into place.

    directory: the content is a directory (a model, a checkpoint): the temporary path is created empty
        for you, and an existing directory at ``path`` is replaced (moved aside, then removed).
    replace_existing: with False, a ``path`` that exists when the content is ready is an error.
    The parent directory must exist (an :class:`InputError` says so otherwise).
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{path}: output directory {parent} does not exist")
    name = os.path.basename(os.path.normpath(path))
    tmp = (
        tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=TMP_SUFFIX)
        if directory
        else os.path.join(parent, f".{name}.{os.getpid()}{TMP_SUFFIX}")
    )
    try:
        yield tmp
        _fsync_tree(tmp)
        if os.path.lexists(path) and not replace_existing:
            raise FileExistsError(f"{path} exists")
        if directory and os.path.isdir(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".old")
            os.rmdir(old)
            os.replace(path, old)  # a directory cannot be renamed over another one
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_json(path: str, data: Any, *, indent: int | None = 2) -> None:
    """Write ``data`` as JSON to ``path`` atomically (``default=str`` for paths and the like)."""
    write_text(path, json.dumps(data, indent=indent, default=str) + ("\n" if indent is not None else ""))


def write_records(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` as JSONL (or Parquet when ``path`` ends in ``.parquet``) to ``path`` atomically.

    Rows are streamed (a JSONL file is never held in memory whole). In Parquet, ``reward_info`` differs
    per source and is stored as JSON text so the schema is stable.
    """
    with atomic_path(path) as tmp:
        if path.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = [{**r, "reward_info": json.dumps(r["reward_info"])} if "reward_info" in r else dict(r) for r in rows]
            pq.write_table(pa.Table.from_pylist(flat), tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def remove_stale(path: str) -> None:
    """Remove ``path`` if it exists (a side file an earlier run left that would describe another input)."""
    if os.path.lexists(path):
        os.unlink(path)


def progress_bar(
    total: int, enabled: bool | None, *, initial: int = 0, unit: str = "item", desc: str | None = None
) -> Any:
    """A tqdm bar on stderr, or None when ``enabled`` is False (None: only when stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: workers are forked while the bar runs
    return tqdm(total=total, initial=initial, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)
