"""verl's RL parquet layout, as ``examples/data_preprocess/*.py`` write it: ``data_source``, chat ``prompt``,
``ability``, ``reward_model: {style, ground_truth}``, ``extra_info``.

- The task is ``ability`` when it names a datarl task, else read from ``data_source``: ``datarl/<task>`` (what
  ``datarl export-verl`` writes) or one of the data sources verl's own reward functions know (``openai/gsm8k``,
  the MATH sets, ``numina_*``, ``apps``, ``taco``...).
- ``reward_model.ground_truth`` is the math answer; for code, JSON text of datarl tests (``{"tests": ...}``)
  or of APPS-style ``{"inputs", "outputs", "fn_name"?}`` (verl's PRIME code sets); for ifeval, JSON text of
  ``{"instruction_id_list", "kwargs"}``; for general, the judge's reference.
- A row written by ``datarl export-verl`` carries its record as JSON text in ``extra_info.record``: it loads as
  exactly that record, so export then load gives back the records exported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from datarl.layouts.base import Layout, Plan, RowProblem, WholeRecord
from datarl.layouts.code import apps_tests
from datarl.tasks import TASKS

__all__ = ["VERL", "DATA_SOURCE_PREFIX", "task_of_row"]

DATA_SOURCE_PREFIX = "datarl/"
_GT = "reward_model.ground_truth"
# data_source -> task for the sets verl's default_compute_score routes by name
_KNOWN_SOURCES = {
    "openai/gsm8k": "math",
    "lighteval/MATH": "math",
    "DigitalLearningGmbH/MATH-lighteval": "math",
    "HuggingFaceH4/MATH-500": "math",
    "math_dapo": "math",
    "math": "math",
    "codecontests": "code",
    "apps": "code",
    "codeforces": "code",
    "taco": "code",
}
_SOURCE_PREFIXES = {"numina_": "math", "aime": "math"}


def task_of_row(ability: Any, data_source: Any) -> str | None:
    """The datarl task of a verl row, from ``ability`` or else ``data_source``; None when neither tells."""
    if isinstance(ability, str) and ability in TASKS:
        return ability
    source = data_source if isinstance(data_source, str) else ""
    if source.startswith(DATA_SOURCE_PREFIX) and source[len(DATA_SOURCE_PREFIX) :] in TASKS:
        return source[len(DATA_SOURCE_PREFIX) :]
    if source in _KNOWN_SOURCES:
        return _KNOWN_SOURCES[source]
    return next((task for prefix, task in _SOURCE_PREFIXES.items() if source.startswith(prefix)), None)


def _json_object(text: Any, what: str) -> Mapping[str, Any]:
    if isinstance(text, Mapping):
        return text
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError as exc:
        raise RowProblem(_GT, f"{what} must be JSON text ({exc})") from None
    if not isinstance(data, Mapping):
        raise RowProblem(_GT, f"{what} must be JSON text of an object")
    return data


def _fields(task: str, gt: Any) -> dict[str, Any]:
    if task == "math":
        return {"ground_truth": gt}
    if task == "general":
        return {"reference": gt} if isinstance(gt, str) and gt.strip() else {}
    if task == "ifeval":
        data = _json_object(gt, 'an ifeval row\'s ground truth ({"instruction_id_list", "kwargs"})')
        return {k: data[k] for k in ("instruction_id_list", "kwargs") if k in data}
    data = _json_object(gt, 'a code row\'s ground truth ({"tests": ...} or {"inputs", "outputs"})')
    if "tests" in data:
        return {"tests": data["tests"]}
    try:
        return {"tests": apps_tests(data)}
    except RowProblem as exc:
        raise RowProblem(_GT, exc.message) from None


def _verl(row: Mapping[str, Any]) -> dict[str, Any]:
    info = row.get("extra_info")
    text = info.get("record") if isinstance(info, Mapping) else None
    if isinstance(text, str) and text:
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise RowProblem("extra_info.record", f"is not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise RowProblem("extra_info.record", "must be JSON text of a datarl record (an object)")
        return WholeRecord(record)
    task = task_of_row(row.get("ability"), row.get("data_source"))
    if task is None:
        raise RowProblem(
            "ability",
            f"{row.get('ability')!r} (data_source {row.get('data_source')!r}) is not a task datarl can score; "
            f"set ability to one of {', '.join(TASKS)}",
        )
    reward = row.get("reward_model")
    if not isinstance(reward, Mapping) or reward.get("ground_truth") is None:
        if task != "general":
            raise RowProblem(_GT, f"missing; a {task} row needs it ({{style, ground_truth}})")
        return {"task": task}
    return {"task": task, **_fields(task, reward["ground_truth"])}


VERL = Layout(
    name="verl",
    reads="verl RL parquet (examples/data_preprocess/*.py, datarl export-verl): data_source, prompt, "
    "ability, reward_model {style, ground_truth}, extra_info",
    needs="prompt, reward_model, ability or data_source",
    fits=lambda columns, sample: {"prompt", "reward_model"} <= columns and bool(columns & {"ability", "data_source"}),
    plan=lambda columns: Plan(
        "task<-ability (or data_source), prompt<-prompt, ground_truth<-reward_model.ground_truth (code: tests "
        "from its JSON; general: reference); rows from datarl export-verl: the record in extra_info.record",
        {"ground_truth": _GT, "tests": _GT, "instruction_id_list": _GT, "kwargs": _GT, "reference": _GT},
    ),
    convert=_verl,
)
