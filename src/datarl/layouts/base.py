"""What every layout is: how to recognise a file of its rows, and how one row becomes a datarl record.

A converter returns only the datarl fields it derives (``task``, ``prompt``, ``ground_truth``, ``tests``...);
the loader lays them over the row, so every upstream column is carried through unchanged. A row that
cannot be converted raises :class:`RowProblem` naming the upstream column and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.errors import InputError

__all__ = [
    "Layout",
    "Plan",
    "RowProblem",
    "LayoutError",
    "WholeRecord",
    "any_row",
    "first_present",
    "id_from",
    "text_field",
]


class RowProblem(Exception):
    """One row a layout cannot convert: ``field`` is the upstream column, ``message`` what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class WholeRecord(dict):
    """What a converter returns when the row holds a complete datarl record (a row ``datarl export-verl``
    wrote): it is the record as it is, not laid over the row."""


class LayoutError(InputError):
    """A layout that cannot be used for a file: an unknown name, or columns that fit several layouts."""


@dataclass(frozen=True)
class Plan:
    """How one file's rows map: the line printed once (``task=math, prompt<-question, ...``) and, for error
    messages, the upstream column each derived datarl field comes from."""

    mapping: str
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    """One upstream layout.

    name: what ``--layout`` takes and the mapping line starts with.
    reads: where such files come from, for the README table and ``--help``.
    needs: the columns (and values) that identify it, as listed when a file fits several layouts.
    fits: ``(columns, first rows) -> bool``: whether a file with these columns is in this layout.
    plan: ``columns -> Plan``: the mapping this file gets (some layouts take one of several columns).
    convert: ``row -> derived datarl fields``; raises :class:`RowProblem`.
    """

    name: str
    reads: str
    needs: str
    fits: Callable[[frozenset[str], Sequence[Mapping[str, Any]]], bool]
    plan: Callable[[frozenset[str]], Plan]
    convert: Callable[[Mapping[str, Any]], dict[str, Any]]


def first_present(columns: Collection[str], names: Sequence[str]) -> str | None:
    """The first of ``names`` among ``columns``."""
    return next((n for n in names if n in columns), None)


def id_from(columns: Collection[str], name: str) -> str:
    """``"id<-NAME, "`` for a mapping line when the file's ids come from column ``name`` (it has no ``id``)."""
    return f"id<-{name}, " if name in columns and "id" not in columns else ""


def text_field(row: Mapping[str, Any], name: str, what: str) -> str:
    """``row[name]`` as a non-empty string; :class:`RowProblem` naming the column otherwise."""
    value = row.get(name)
    if value is None:
        raise RowProblem(name, f"missing; it holds {what}")
    if not isinstance(value, str):
        raise RowProblem(name, f"must be a string ({what}), got {type(value).__name__}")
    if not value.strip():
        raise RowProblem(name, f"is empty; it holds {what}")
    return value


def any_row(sample: Sequence[Mapping[str, Any]], test: Callable[[Mapping[str, Any]], bool]) -> bool:
    """Whether one of the sampled rows passes ``test`` (a value check that tells a layout apart)."""
    return any(test(row) for row in sample)
