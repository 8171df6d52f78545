"""Which layout a file is in, decided once per file from its columns (and, where a column name alone is not
enough, the values of its first rows), and how its rows then become datarl records.

- A file with a ``task`` column is a datarl file: its rows load as they are (the ``datarl`` layout).
- Otherwise every layout whose columns the file has is a candidate: one candidate is the file's layout, several
  are an error that lists them (``--layout NAME`` picks one), none leaves the file to the datarl layout, whose
  rows then report ``task: missing``.
- A forced layout (``--layout NAME``) is used whatever the columns; rows that lack its columns say which.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datarl.config import did_you_mean
from datarl.layouts.base import Layout, LayoutError, Plan, WholeRecord
from datarl.layouts.chat import IFEVAL, MESSAGES
from datarl.layouts.code import APPS, HUMANEVAL, MBPP
from datarl.layouts.math import GSM8K, MATH
from datarl.layouts.verl import VERL

__all__ = ["DATARL", "UPSTREAM", "LAYOUT_NAMES", "Detected", "choose_layout", "get_layout"]

DATARL = Layout(
    name="datarl",
    reads="datarl records (README 'Records'): a task column",
    needs="task",
    fits=lambda columns, sample: "task" in columns,
    plan=lambda columns: Plan("the records as they are"),
    convert=lambda row: WholeRecord(row),
)
UPSTREAM: tuple[Layout, ...] = (VERL, GSM8K, MATH, HUMANEVAL, MBPP, APPS, IFEVAL, MESSAGES)
LAYOUT_NAMES: tuple[str, ...] = (DATARL.name,) + tuple(layout.name for layout in UPSTREAM)
_BY_NAME = {layout.name: layout for layout in (DATARL, *UPSTREAM)}


@dataclass(frozen=True)
class Detected:
    """The layout a file is read in, and how.

    forced: given by the caller (``--layout``), not detected.
    columns: the file's columns as detection saw them (sorted).
    """

    layout: Layout
    plan: Plan
    forced: bool
    columns: tuple[str, ...]

    @property
    def native(self) -> bool:
        """Whether rows are datarl records already (nothing is mapped)."""
        return self.layout is DATARL

    def line(self) -> str:
        """The mapping, as printed once per file: ``layout gsm8k: task=math, prompt<-question, ...``."""
        return f"layout {self.layout.name}: {self.plan.mapping}"

    def record(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The datarl record of one row, and whether the row held it whole (``extra_info.record``). Otherwise
        the derived fields are laid over the row, so every upstream column is carried through unchanged.
        Raises :class:`~datarl.layouts.base.RowProblem`."""
        derived = self.layout.convert(row)
        if isinstance(derived, WholeRecord):
            return dict(derived), True
        return {**row, **derived}, False

    def source_of(self, field: str) -> str:
        """The upstream column a derived datarl field came from, for error messages (the field itself if none)."""
        return self.plan.sources.get(field, field)

    def no_fit_hint(self) -> str:
        """For a file no layout fits: what the ``task: missing`` error adds."""
        if self.forced or not self.native or "task" in self.columns:
            return ""
        shown = ", ".join(self.columns[:8]) + (", ..." if len(self.columns) > 8 else "")
        return f" (no known layout fits the columns {shown or '(none)'}; see README 'Layouts')"


def get_layout(name: str) -> Layout:
    """The layout called ``name``; :class:`LayoutError` listing the names otherwise."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    raise LayoutError(f"unknown layout {name!r}{did_you_mean([name], LAYOUT_NAMES)}; known: {', '.join(LAYOUT_NAMES)}")


def choose_layout(columns: Collection[str], sample: Sequence[Mapping[str, Any]], forced: str | None = None) -> Detected:
    """The layout of a file with ``columns`` whose first rows are ``sample`` (or the ``forced`` one).

    Raises :class:`LayoutError` for an unknown forced name, or when the columns fit several layouts.
    """
    cols = frozenset(columns)
    shown = tuple(sorted(cols))
    if forced is not None:
        layout = get_layout(forced)
        return Detected(layout, layout.plan(cols), True, shown)
    if DATARL.fits(cols, sample):
        return Detected(DATARL, DATARL.plan(cols), False, shown)
    fitting = [layout for layout in UPSTREAM if layout.fits(cols, sample)]
    if len(fitting) > 1:
        listed = "; ".join(f"{layout.name} ({layout.needs})" for layout in fitting)
        raise LayoutError(
            f"its columns fit {len(fitting)} layouts: {listed}; choose one with --layout NAME "
            f"(e.g. --layout {fitting[0].name})"
        )
    layout = fitting[0] if fitting else DATARL
    return Detected(layout, layout.plan(cols), False, shown)
