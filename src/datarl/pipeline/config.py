"""A pipeline run's configuration: the file format, its sections, and the paths every stage shares."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datarl.config import did_you_mean, load_config, unknown_keys
from datarl.errors import ConfigError

__all__ = [
    "PipelineConfig",
    "PairsOptions",
    "ReferencesOptions",
    "load_pipeline_config",
    "pipeline_config_from_mapping",
    "SECTIONS",
    "router_mapping",
    "raw_paths",
    "data_path",
    "SPLITS",
]

SPLITS = ("train", "pool", "eval")
SECTIONS = ("synth", "pairs", "bt", "genrm", "references", "select", "train", "reward")


@dataclass(frozen=True)
class PipelineConfig:
    """A pipeline run.

    run_dir: where every stage writes (absolute after loading).
    seed: one seed for every stage.
    policy: ``tiny`` (the embedded SFT policy, built by the ``sft`` stage) or a HF model dir / alias.
    data: user data instead of the synthetic suite: ``{train, pool, eval}`` record files; then the
        ``synth`` stage is skipped and ``policy`` must be given.
    synth: options of ``datarl synth`` (``SynthConfig`` fields).
    pairs: :class:`PairsOptions` fields.
    bt: ``BTTrainConfig`` fields; genrm: ``GenRMTrainConfig`` fields.
    references: :class:`ReferencesOptions` fields.
    select: ``SelectConfig`` fields (Pre-PPO); ``{strategy: none}`` adds no pool prompts (train on the original
        prompts only, a study's baseline; the other select options are then unused).
    reward: router overrides (``router:``, ``sources:``); the pipeline fills in its BT model and judge.
    train: the ``datarl train`` sections (``ppo``, ``eval``, ``curriculum``, ``hacking``, ``logging``,
        ``workers``, ``save_every``, ...).
    workers: scoring worker processes for pairs, select and train.
    """

    run_dir: str
    seed: int = 0
    policy: str = "tiny"
    data: Mapping[str, str] | None = None
    synth: Mapping[str, Any] = field(default_factory=dict)
    pairs: Mapping[str, Any] = field(default_factory=dict)
    bt: Mapping[str, Any] = field(default_factory=dict)
    genrm: Mapping[str, Any] = field(default_factory=dict)
    references: Mapping[str, Any] = field(default_factory=dict)
    select: Mapping[str, Any] = field(default_factory=dict)
    reward: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    workers: int = 2

    @property
    def embedded(self) -> bool:
        return self.data is None

    def path(self, *parts: str) -> str:
        return os.path.join(self.run_dir, *parts)


def load_pipeline_config(path: str, run_dir: str | None = None) -> PipelineConfig:
    """Read a pipeline config; relative paths are relative to the file (``run_dir`` to the cwd)."""
    return pipeline_config_from_mapping(
        load_config(path), base_dir=os.path.dirname(os.path.abspath(path)), where=path, run_dir=run_dir
    )


def pipeline_config_from_mapping(
    mapping: Mapping[str, Any], *, base_dir: str, where: str, run_dir: str | None = None
) -> PipelineConfig:
    """A pipeline config from its mapping: relative data and policy paths are relative to ``base_dir``,
    ``run_dir`` to the cwd; ``where`` names the source in errors (a file, or a study's arm)."""
    data = dict(mapping)
    unknown, names = unknown_keys(PipelineConfig, data)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}{did_you_mean(unknown, names)}; allowed: {', '.join(names)}"
        )
    base = base_dir
    for name in SECTIONS:
        if not isinstance(data.get(name) or {}, Mapping):
            raise ConfigError(f"{where}: {name}: must be a mapping of options")
    if data.get("data") is not None:
        sec = data["data"]
        if not isinstance(sec, Mapping) or set(sec) != {"train", "pool", "eval"}:
            raise ConfigError(f"{where}: data: must give exactly train, pool and eval record files")
        data["data"] = {k: os.path.normpath(os.path.join(base, str(v))) for k, v in sec.items()}
        if str(data.get("policy") or "tiny") == "tiny":
            raise ConfigError(
                f"{where}: with your own data, set policy: to your SFT model (HF dir or alias); "
                "the tiny policy only knows the synthetic suite"
            )
    policy = str(data.get("policy") or "tiny")
    if policy != "tiny" and os.path.exists(os.path.join(base, policy)):
        data["policy"] = os.path.normpath(os.path.join(base, policy))
    data["run_dir"] = os.path.abspath(run_dir or data.get("run_dir") or "runs/pipeline")
    for name in SECTIONS:
        data[name] = dict(data.get(name) or {})
    try:
        return PipelineConfig(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class PairsOptions:
    """The ``pairs:`` section: gold-labelled preference pairs from SFT samples (embedded default), or a file.

    tasks: tasks whose train prompts are sampled. per_task: prompts per task. samples_per_prompt: SFT samples
    per prompt. label_noise: share of pairs whose labels are flipped (stands in for human disagreement).
    min_gold_gap: smallest gold-score difference that makes a pair. max_new_tokens: per sample.
    file: your own pairs (JSONL of prompt, chosen, rejected) instead of sampling.
    """

    tasks: list[str] = field(default_factory=lambda: ["general", "math"])
    per_task: int = 300
    samples_per_prompt: int = 4
    label_noise: float = 0.1
    min_gold_gap: float = 0.1
    max_new_tokens: int = 128
    file: str | None = None


@dataclass(frozen=True)
class ReferencesOptions:
    """The ``references:`` section: best-of-``n`` SFT samples (picked by the BT model) as references.

    tasks: the tasks whose records get one (``genrm.bon`` compares with it); ``[general, math]`` lets a study
        train math on ``genrm.bon`` (the paper's GenRM with the SFT best-of-N reference) instead of on its
        ground truth. Records of other tasks keep their own fields.
    """

    n: int = 8
    max_new_tokens: int = 128
    tasks: list[str] = field(default_factory=lambda: ["general"])

    def __post_init__(self) -> None:
        from datarl.tasks import TASKS

        bad = [t for t in self.tasks if t not in TASKS] if isinstance(self.tasks, list) else self.tasks
        if not isinstance(self.tasks, list) or not self.tasks or bad:
            raise ConfigError(
                f"references.tasks: a non-empty list of tasks ({', '.join(TASKS)}) is required, got {bad}"
            )


def section_options(cls: type, section: Mapping[str, Any], where: str) -> Any:
    """A section mapping as its typed options; unknown keys are a :class:`ConfigError` naming the allowed ones."""
    unknown, names = unknown_keys(cls, section)
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {unknown}{did_you_mean(unknown, names)}; allowed: {', '.join(names)}"
        )
    return cls(**section)


def router_mapping(cfg: PipelineConfig) -> dict[str, Any]:
    """The reward router: defaults, general -> genrm.bon, the pipeline's own BT and judge, user overrides."""
    router = {"general": "genrm.bon", **dict(cfg.reward.get("router") or {})}
    sources = {
        "genrm.bon": {"judge": cfg.path("judge")},
        "genrm.gt": {"judge": cfg.path("judge")},
        "bt": {"model": cfg.path("bt")},
    }
    for name, opts in dict(cfg.reward.get("sources") or {}).items():
        sources[name] = {**sources.get(name, {}), **dict(opts or {})}
    return {"router": router, "sources": sources}


def raw_paths(cfg: PipelineConfig) -> dict[str, str]:
    """The prompt files before references: the suite's or the user's."""
    if cfg.data is not None:
        return dict(cfg.data)
    return {s: cfg.path("suite", f"{s}.jsonl") for s in SPLITS}


def data_path(cfg: PipelineConfig, split: str) -> str:
    """The prompt file of ``split`` after references (``selected`` after Pre-PPO)."""
    return cfg.path("data", f"{split}.jsonl")
