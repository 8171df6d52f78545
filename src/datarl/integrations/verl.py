"""verl adapter: datarl records as a verl RL dataset, and the router as verl's reward function.

Export (``datarl export-verl INPUT -o train.parquet``, or :func:`export_verl`) writes one parquet row per
prompt in the layout verl's ``RLHFDataset`` reads:

- ``data_source``: ``"datarl/<task>"`` (verl groups metrics by it);
- ``prompt``: chat messages ``[{"role": "user", "content": ...}]`` (a chat prompt is kept as it is);
- ``ability``: the task;
- ``reward_model``: ``{"style": "rule" | "model", "ground_truth": str}``; ground_truth is always a string:
  the math answer, JSON text for code tests (``{"tests": ...}``) and IFEval constraints
  (``{"instruction_id_list", "kwargs"}``), the reference for general (``""`` if none);
- ``extra_info``: ``{"id", "task", "domain", "index", "record"}`` for every task (verl takes the key list
  from a batch's first sample, so the keys never vary); ``record`` is the datarl record as JSON text and
  is what :func:`compute_score` scores against; ``index`` is the row number.

With a curriculum (``--steps N --prompts-per-step K``; phases from the run config's ``curriculum:``,
default ``paper``) the rows are the curriculum sampler's batches in order, N x K rows (a prompt can recur
in a later epoch of its task), so step s of verl trains on rows ``[s*K, (s+1)*K)``. That only holds if
verl reads the rows in order and in batches of K: run it with ``data.shuffle=False``,
``data.train_batch_size=K``, ``trainer.total_epochs=1`` and ``data.filter_overlong_prompts=False`` (its
default; dropping rows would shift every later step).

verl config (0.9; put the path of this file, or ``pkg://datarl.integrations.verl``)::

    python -m verl.trainer.main_ppo \\
      data.train_files=train.parquet data.shuffle=False data.train_batch_size=K trainer.total_epochs=1 \\
      reward.custom_reward_function.path=/path/to/datarl/integrations/verl.py \\
      reward.custom_reward_function.name=compute_score \\
      +reward.custom_reward_function.reward_kwargs.datarl_config=run.yaml     # optional router config

Use ``reward.custom_reward_function.*``: the legacy top-level ``custom_reward_function.*`` is accepted by
verl 0.9's config and then ignored by its trainer, silently (it scores with verl's built-in rules).
The router config can also come from the environment variable ``DATARL_REWARD_CONFIG`` (a YAML/JSON file
with a ``reward:`` section, or a bare ``router:``/``sources:`` one); in Ray workers set it through
``ray_kwargs.ray_init.runtime_env.env_vars``. Without either, the default router table is used.

:func:`compute_score` returns ``{"score", "reward_source", "failure", "error", "record_id", "task",
"reward_info"}`` for every row (the same keys every time: verl stacks them across the batch);
``reward_info`` is JSON text. It never raises on model output or on a bad row (score 0 with
``failure: bad_row``); a config that cannot be read does raise, at the first call, and so does a row routed
to a learned source with no model set (``general`` -> ``genrm.bon`` without ``sources.genrm.bon.judge``).

This file is loaded by verl by file path, outside ``sys.modules``: it uses absolute imports only and
defines no dataclasses (they look their module up in ``sys.modules``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from datarl.errors import UserError
from datarl.io import atomic_path
from datarl.layouts.verl import DATA_SOURCE_PREFIX
from datarl.records import Record, parse_record

__all__ = [
    "export_verl",
    "verl_rows",
    "compute_score",
    "record_from_row",
    "verl_overrides",
    "ExportSummary",
    "VerlExportError",
    "EXTRA_INFO_KEYS",
    "SCORE_KEYS",
    "CONFIG_ENV",
    "DATA_SOURCE_PREFIX",
]

CONFIG_ENV = "DATARL_REWARD_CONFIG"
EXTRA_INFO_KEYS = ("id", "task", "domain", "index", "record")
SCORE_KEYS = ("score", "reward_source", "failure", "error", "record_id", "task", "reward_info")
# Fields that describe a scored response, not the prompt: a rollout brings its own response.
_DROP = ("response", "reward", "reward_source", "reward_info")


class VerlExportError(UserError, ValueError):
    """Records or options that cannot be exported; the message says what to change."""


class ExportSummary(NamedTuple):
    path: str
    rows: int
    by_task: dict[str, int]
    steps: int | None
    prompts_per_step: int | None

    def format(self) -> str:
        mix = ", ".join(f"{t}={n}" for t, n in sorted(self.by_task.items()))
        order = (
            f"curriculum order: {self.steps} steps x {self.prompts_per_step} prompts" if self.steps else "input order"
        )
        return f"{self.rows} rows ({mix}) -> {self.path}; {order}"


# --- export ---------------------------------------------------------------------------------------


def _as_record(item: Record | Mapping[str, Any], i: int) -> dict[str, Any]:
    if isinstance(item, Record):
        return item.to_dict()
    parsed = parse_record(dict(item), path="records", line=i + 1, default_id=f"record-{i}")
    if not isinstance(parsed, Record):
        raise VerlExportError(f"{parsed}")
    return parsed.to_dict()


def _messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    # role and content only: parquet needs one struct type per column, and chat templates read these two.
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def _ground_truth(rec: Mapping[str, Any]) -> str:
    task = rec["task"]
    if task == "math":
        return str(rec["ground_truth"])
    if task == "code":
        return json.dumps({"tests": rec["tests"]}, sort_keys=True, ensure_ascii=False)
    if task == "ifeval":
        return json.dumps(
            {"instruction_id_list": rec["instruction_id_list"], "kwargs": rec["kwargs"]},
            sort_keys=True,
            ensure_ascii=False,
        )
    return str(rec.get("reference") or "")


def _style(task: str, router: Any) -> str:
    source = router.config.source_for(task) if router is not None else None
    if source is None:
        return "model" if task == "general" else "rule"
    return "rule" if source.startswith("rtv.") else "model"


def _row(rec: dict[str, Any], index: int, router: Any) -> dict[str, Any]:
    kept = {k: v for k, v in rec.items() if k not in _DROP}
    return {
        "data_source": DATA_SOURCE_PREFIX + rec["task"],
        "prompt": _messages(rec["prompt"]),
        "ability": rec["task"],
        "reward_model": {"style": _style(rec["task"], router), "ground_truth": _ground_truth(rec)},
        "extra_info": {
            "id": str(rec["id"]),
            "task": rec["task"],
            "domain": str(rec.get("domain") or rec["task"]),
            "index": index,
            "record": json.dumps(kept, ensure_ascii=False, default=str),
        },
    }


def _order(
    recs: Sequence[dict[str, Any]], curriculum: Any, steps: int | None, prompts_per_step: int | None, seed: int
) -> list[int]:
    if curriculum is None:
        if steps is not None or prompts_per_step is not None:
            raise VerlExportError(
                "steps and prompts_per_step only apply with a curriculum; pass curriculum= "
                "(datarl.select.curriculum.CurriculumConfig) or leave them out"
            )
        return list(range(len(recs)))
    if not steps or not prompts_per_step or steps < 1 or prompts_per_step < 1:
        raise VerlExportError(
            "a curriculum needs steps >= 1 and prompts_per_step >= 1 (verl must then run "
            "with data.train_batch_size=prompts_per_step and data.shuffle=False)"
        )
    from datarl.select.curriculum import CurriculumSampler

    sampler = CurriculumSampler([r["task"] for r in recs], curriculum, prompts_per_step, seed)
    return [i for batch in sampler.ordered(steps) for i in batch]


def verl_rows(
    records: Sequence[Record | Mapping[str, Any]],
    *,
    curriculum: Any = None,
    steps: int | None = None,
    prompts_per_step: int | None = None,
    seed: int = 0,
    router: Any = None,
) -> list[dict[str, Any]]:
    """The verl rows for ``records``, in curriculum order when ``curriculum`` is given (see module doc).

    router: a :class:`datarl.rewards.router.Router` used only to fill ``reward_model.style``.
    """
    recs = [_as_record(r, i) for i, r in enumerate(records)]
    if not recs:
        raise VerlExportError("no records to export")
    order = _order(recs, curriculum, steps, prompts_per_step, seed)
    return [_row(recs[i], index, router) for index, i in enumerate(order)]


def _schema() -> Any:
    import pyarrow as pa

    s = pa.string()
    return pa.schema(
        [
            ("data_source", s),
            ("prompt", pa.list_(pa.struct([("role", s), ("content", s)]))),
            ("ability", s),
            ("reward_model", pa.struct([("style", s), ("ground_truth", s)])),
            ("extra_info", pa.struct([("id", s), ("task", s), ("domain", s), ("index", pa.int64()), ("record", s)])),
        ]
    )


def export_verl(
    records: Sequence[Record | Mapping[str, Any]],
    out_path: str,
    *,
    curriculum: Any = None,
    steps: int | None = None,
    prompts_per_step: int | None = None,
    seed: int = 0,
    router: Any = None,
) -> ExportSummary:
    """Write ``records`` as a verl parquet file (atomically: temp file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = verl_rows(
        records, curriculum=curriculum, steps=steps, prompts_per_step=prompts_per_step, seed=seed, router=router
    )
    directory = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(directory):
        raise VerlExportError(f"{out_path}: output directory {directory} does not exist")
    with atomic_path(out_path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), tmp)
    by_task: dict[str, int] = {}
    for row in rows:
        by_task[row["ability"]] = by_task.get(row["ability"], 0) + 1
    return ExportSummary(
        out_path,
        len(rows),
        by_task,
        steps if curriculum is not None else None,
        prompts_per_step if curriculum is not None else None,
    )


def verl_overrides(
    train_file: str, *, prompts_per_step: int | None = None, reward_config: str | None = None
) -> list[str]:
    """The verl (hydra) overrides that train on ``train_file`` with datarl's rewards, in order."""
    out = [f"data.train_files={os.path.abspath(train_file)}", "data.shuffle=False"]
    if prompts_per_step:  # one epoch: a second one would replay the whole curriculum from its first phase
        out += [f"data.train_batch_size={prompts_per_step}", "trainer.total_epochs=1"]
    out += [
        f"reward.custom_reward_function.path={os.path.abspath(__file__)}",
        "reward.custom_reward_function.name=compute_score",
    ]
    if reward_config:
        out.append(f"+reward.custom_reward_function.reward_kwargs.datarl_config={os.path.abspath(reward_config)}")
    return out


# --- reward ---------------------------------------------------------------------------------------

_ROUTERS: dict[str, Any] = {}
_ROUTERS_LOCK = threading.Lock()  # verl calls compute_score from several executor threads at once


def _router(config_path: str | None) -> Any:
    """The router for ``config_path`` (``""`` = defaults), built once per process."""
    key = config_path or ""
    with _ROUTERS_LOCK:
        if key not in _ROUTERS:
            _ROUTERS[key] = _build_router(config_path)
        return _ROUTERS[key]


def _build_router(config_path: str | None) -> Any:
    from datarl.config import load_config
    from datarl.rewards.router import Router, RouterConfig

    data = load_config(config_path) if config_path else {}
    reward = data.get("reward", data)  # a whole run config, or just its reward section
    config = RouterConfig.from_mapping({k: reward[k] for k in ("router", "sources") if k in reward})
    config.check_batch_use()  # verl asks for rewards a batch (or an item) at a time
    return Router(config)


def _record_from_ground_truth(task: str, ground_truth: Any) -> dict[str, Any]:
    """Rebuild a record from the row alone (rows not made by export_verl have no extra_info.record)."""
    gt = "" if ground_truth is None else str(ground_truth)
    rec: dict[str, Any] = {"task": task, "prompt": "(prompt not in the row)"}
    if task == "math":
        rec["ground_truth"] = gt
    elif task in ("code", "ifeval"):
        try:
            data = json.loads(gt)
        except ValueError:
            raise ValueError(f"reward_model.ground_truth of a {task} row must be JSON text") from None
        rec.update(data if isinstance(data, dict) else {})
    elif gt:
        rec["reference"] = gt
    return rec


def record_from_row(data_source: Any, ground_truth: Any, extra_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The datarl record a verl row stands for; ``ValueError`` saying why when there is none."""
    info = extra_info if isinstance(extra_info, Mapping) else {}
    text = info.get("record")
    if isinstance(text, str) and text:
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"extra_info.record is not valid JSON ({exc})") from None
    else:
        source = str(data_source or "")
        if not source.startswith(DATA_SOURCE_PREFIX):
            raise ValueError(
                f"row has no extra_info.record and data_source {source!r} is not "
                f"'{DATA_SOURCE_PREFIX}<task>'; export rows with `datarl export-verl`"
            )
        obj = _record_from_ground_truth(source[len(DATA_SOURCE_PREFIX) :], ground_truth)
    parsed = parse_record(
        obj, path="verl-row", line=int(info.get("index") or 0), default_id=str(info.get("id") or "verl-row")
    )
    if not isinstance(parsed, Record):
        raise ValueError(f"{parsed.field}: {parsed.message}")
    return parsed.to_dict()


def _result(score: float, source: str, info: Mapping[str, Any], record_id: str, task: str) -> dict[str, Any]:
    return {
        "score": float(score),
        "reward_source": source,
        "failure": str(info.get("failure") or ""),
        "error": str(info.get("error") or ""),
        "record_id": record_id,
        "task": task,
        "reward_info": json.dumps(dict(info), ensure_ascii=False, default=str),
    }


def compute_score(
    data_source: Any, solution_str: Any, ground_truth: Any, extra_info: Mapping[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """verl's custom reward function: the router's score of ``solution_str`` for the row's record.

    kwargs: ``datarl_config`` (path of a YAML/JSON config with a ``reward:`` section; default: the
    ``DATARL_REWARD_CONFIG`` environment variable, else the default router); anything else verl passes
    (``reward_router_address``...) is ignored.
    """
    router = _router(kwargs.get("datarl_config") or os.environ.get(CONFIG_ENV) or None)
    info = extra_info if isinstance(extra_info, Mapping) else {}
    record_id, task = str(info.get("id") or ""), str(info.get("task") or "")
    try:
        record = record_from_row(data_source, ground_truth, info)
    except Exception as exc:  # a bad row scores 0 and says why; it must not stop the training step
        return _result(0.0, "none", {"failure": "bad_row", "error": str(exc)}, record_id, task)
    missing_model = router.config.model_problem(str(record["task"]))
    if missing_model:  # a configuration error: raise at once rather than train on zeros
        raise ValueError(
            f"datarl compute_score ({data_source}): {missing_model}, or point {CONFIG_ENV} / "
            "datarl_config at such a config"
        )
    response = solution_str if isinstance(solution_str, str) else "" if solution_str is None else str(solution_str)
    result = router.score(record, response)
    return _result(result.score, result.source, result.info, str(record.get("id", record_id)), record["task"])
