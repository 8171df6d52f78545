"""Everything ``datarl train`` checks and resolves before a model is loaded.

Bad configs fail here with a message that says how to fix them: unknown or out-of-order
curriculum phases, a phase naming a task the data lacks, a task in the data with no reward
source (or a learned source without its model), batch sizes that do not divide, a missing policy
or value model, a run directory that already holds another run, a resume that would add or drop
the critic (``ppo.advantage`` changed between ``gae`` and a critic-free estimator). The options
of ``ppo:`` themselves (an unknown estimator, ``grpo``/``rloo`` with one sample per prompt, critic
options without a critic) are checked when the config is read (:mod:`datarl.rl.config`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datarl.errors import ConfigError
from datarl.io import write_json
from datarl.records import read_all_records
from datarl.rewards.router import RouterConfig, RouterConfigError
from datarl.rl.config import TrainConfig
from datarl.select.curriculum import CurriculumConfig, CurriculumError, CurriculumSampler
from datarl.select.difficulty import DifficultyState

__all__ = ["RunInputs", "prepare", "resolve_policy", "check_sources"]


@dataclass
class RunInputs:
    """What ``prepare`` resolved: records, router and curriculum configs, model paths."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    router: RouterConfig
    curriculum: CurriculumConfig
    policy_dir: str
    value_init: str
    pad_id: int
    resume: bool
    difficulty: DifficultyState


def _records(path: str, what: str) -> list[dict[str, Any]]:
    return [r.to_dict() for r in read_all_records(path, what=f"data.{what}", error=ConfigError)]


def check_sources(router: RouterConfig, records: list[dict[str, Any]], where: str) -> None:
    """Every record can be scored (:meth:`RouterConfig.preflight`); the first problem is the error."""
    for problem in router.preflight(records):
        if not problem.records:
            raise ConfigError(f"reward.{problem.field}: {problem.message}")
        first = records[problem.records[0]]
        raise ConfigError(
            f"{where}: {len(problem.records)} record(s) cannot be scored (first: {first.get('id')}, "
            f"task {first.get('task')!r}): {problem.field}: {problem.message}"
        )


def resolve_policy(spec: str, work_dir: str) -> str:
    """A policy spec as a HF model directory: 'tiny' builds/reuses the SFT policy; a GGUF file or
    alias is converted once into ``work_dir/policy_init`` (GGUF-loaded models cannot be saved directly)."""
    from datarl.models.loading import PolicyLoadError, resolve_alias

    if spec in ("tiny", ""):
        from datarl.models.sft import build_sft_policy

        return build_sft_policy(log=lambda m: None)
    try:
        path = resolve_alias(spec)
    except PolicyLoadError as exc:
        raise ConfigError(f"policy: {exc}") from None
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ConfigError(f"policy: {path}: not a model directory (no config.json)")
        return path
    if path.endswith(".gguf"):
        out = os.path.join(work_dir, "policy_init")
        if not os.path.isfile(os.path.join(out, "config.json")):
            _convert_gguf(spec, out)
        return out
    raise ConfigError(
        f"policy: {spec}: no such model directory, .gguf file or alias; "
        "see `datarl generate --help` for what --policy accepts"
    )


def _convert_gguf(spec: str, out: str) -> None:
    from datarl.models.loading import load_policy, save_model_dir

    policy = load_policy(spec)  # de-quantized fp32 weights, savable
    save_model_dir(out, policy.model, policy.tokenizer)


def _check_run_dir(cfg: TrainConfig, resume: bool) -> None:
    saved = os.path.join(cfg.run_dir, "config.json")
    if resume:
        if not os.path.isfile(saved):
            raise ConfigError(f"--resume: {cfg.run_dir} holds no run (no config.json); start it without --resume")
        with open(saved, encoding="utf-8") as fh:
            before = str((json.load(fh).get("ppo") or {}).get("advantage", "gae"))
        if before != cfg.ppo.advantage and "gae" in (before, cfg.ppo.advantage):  # a critic cannot come or go
            raise ConfigError(
                f"--resume: {cfg.run_dir} was trained with ppo.advantage: {before}, this config says "
                f"{cfg.ppo.advantage}; its checkpoints {'hold' if before == 'gae' else 'lack'} a critic. "
                f"Resume with advantage: {before}, or start a new run_dir"
            )
        return
    if os.path.exists(os.path.join(cfg.run_dir, "checkpoints")) or os.path.exists(
        os.path.join(cfg.run_dir, "metrics.jsonl")
    ):
        raise ConfigError(
            f"run_dir {cfg.run_dir} already holds a run; continue it with --resume, or choose "
            "another run_dir (or delete that one)"
        )


def prepare(cfg: TrainConfig, *, resume: bool = False) -> RunInputs:
    """Validate ``cfg`` against its data and resolve every path; write the resolved config."""
    _check_run_dir(cfg, resume)
    try:
        router = RouterConfig.from_mapping({k: cfg.reward[k] for k in ("router", "sources") if k in cfg.reward})
    except RouterConfigError as exc:
        raise ConfigError(f"reward: {exc}") from None
    train = _records(cfg.train_path, "train")
    evals = _records(cfg.eval_path, "eval") if cfg.eval_path else []
    missing = sorted(set(cfg.eval_cfg.tasks) - {str(r["task"]) for r in evals})
    if evals and missing:
        have = sorted({str(r["task"]) for r in evals})
        raise ConfigError(f"eval.tasks: the eval split has no prompts of task(s) {missing} (it has {have})")
    check_sources(router, train, f"data.train ({cfg.train_path})")
    try:
        router.check_batch_use()  # PPO asks for rewards a step at a time
    except RouterConfigError as exc:
        raise ConfigError(f"reward.{exc}") from None
    try:
        curriculum = CurriculumConfig.from_value(cfg.curriculum, cfg.ppo.steps)
        CurriculumSampler([r["task"] for r in train], curriculum, cfg.ppo.prompts_per_step, cfg.seed)
    except CurriculumError as exc:
        raise ConfigError(str(exc)) from None
    difficulty = DifficultyState(  # reads and checks a seed file now (a scores file of another pool is an error)
        cfg.difficulty,
        train,
        {t for t, src in router.table.items() if str(src).startswith("rtv.")},
        cfg.seed,
    )
    from datarl.metrics.hacking import HackingConfig

    try:
        HackingConfig.from_mapping(cfg.hacking)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hacking: {exc}") from None
    os.makedirs(cfg.run_dir, exist_ok=True)
    policy_dir = resolve_policy(cfg.policy, cfg.run_dir)
    value_init = cfg.ppo.value_init
    if value_init not in ("policy", "shared") and not os.path.isdir(value_init):
        raise ConfigError(f"ppo.value_init: {value_init}: no such BT model directory (or use 'policy' or 'shared')")
    pad_id = _pad_id(policy_dir)
    if not resume:  # written whole or not at all: the pipeline resumes a run that has it
        write_json(
            os.path.join(cfg.run_dir, "config.json"),
            {
                **cfg.to_dict(),
                "resolved": {
                    "policy_dir": policy_dir,
                    "router": dict(router.table),
                    "curriculum": [ph.describe() for ph in curriculum.phases],
                },
            },
        )
    return RunInputs(train, evals, router, curriculum, policy_dir, value_init, pad_id, resume, difficulty)


def _pad_id(policy_dir: str) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(policy_dir)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        raise ConfigError(f"policy {policy_dir}: its tokenizer has neither a pad nor an EOS token")
    return int(pad)


def load_train_config(path: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a run config file; relative paths are taken relative to the file."""
    from datarl.config import load_config

    data = dict(load_config(path))
    for key, value in (overrides or {}).items():
        data[key] = value
    return TrainConfig.from_mapping(data, base_dir=os.path.dirname(os.path.abspath(path)))
