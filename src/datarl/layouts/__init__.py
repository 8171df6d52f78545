"""Layouts that load as they are: rows in the layout of another project (verl, GSM8K, MATH, HumanEval, MBPP,
APPS/TACO, IFEval, chat messages) read as datarl records with no conversion step.

``datarl.records.load_records`` detects a file's layout once, from its columns (``detect``), prints the mapping
through its ``announce`` callback, and turns each row into a record with every upstream column kept. One module
per family: ``verl``, ``math`` (GSM8K, MATH), ``code`` (HumanEval, MBPP, APPS), ``chat`` (IFEval, messages);
``base`` is what a layout is.
"""

from datarl.layouts.base import Layout, LayoutError, Plan, RowProblem
from datarl.layouts.detect import DATARL, LAYOUT_NAMES, UPSTREAM, Detected, choose_layout, get_layout

__all__ = [
    "DATARL",
    "LAYOUT_NAMES",
    "UPSTREAM",
    "Detected",
    "Layout",
    "LayoutError",
    "Plan",
    "RowProblem",
    "choose_layout",
    "get_layout",
]
