"""Everything a user can get wrong in a pipeline config, checked before the first stage starts.

Missing files, a missing model, a domain named in ``select.domains`` that the pool lacks, a selection
that would be empty, a broken train config: one :class:`~datarl.errors.ConfigError` that says what to fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from datarl.errors import ConfigError
from datarl.pipeline.config import PairsOptions, PipelineConfig, ReferencesOptions, router_mapping, section_options
from datarl.records import read_all_records

__all__ = ["check"]


def check(cfg: PipelineConfig) -> None:
    """Every problem visible without running a stage, as one ``ConfigError``."""
    from datarl.rewards.router import RouterConfig, RouterConfigError
    from datarl.select.prepo import SelectConfig, SelectError

    pairs: PairsOptions = section_options(PairsOptions, cfg.pairs, "pairs")
    section_options(ReferencesOptions, cfg.references, "references")
    _check_bt(cfg)
    _check_genrm(cfg)
    if cfg.policy != "tiny":
        _check_model("policy", cfg.policy)
    if not cfg.embedded:
        for split, path in cfg.data.items():
            if not os.path.isfile(path):
                raise ConfigError(f"data.{split}: {path}: no such file")
        if not pairs.file:
            raise ConfigError(
                "pairs.file: with your own data, give preference pairs (JSONL of prompt, chosen, "
                "rejected) for the BT model and the judge; the suite's gold checks cannot label yours"
            )
    no_selection = cfg.select.get("strategy") == "none"  # the original prompts only (other options unused)
    try:
        RouterConfig.from_mapping(router_mapping(cfg))
        sel = None if no_selection else SelectConfig.from_mapping({"seed": cfg.seed, **cfg.select})
    except (RouterConfigError, SelectError) as exc:
        raise ConfigError(str(exc)) from None
    pool = _pool_preview(cfg)
    if sel is not None:
        _check_selection(sel, pool)
    _check_train(cfg, pool)


def _check_model(field: str, spec: str) -> None:
    """A model the run will load (``field`` names it in the error): an alias's package, or the path."""
    from datarl.models.loading import PolicyLoadError, resolve_alias

    try:
        path = resolve_alias(spec)
    except PolicyLoadError as exc:
        raise ConfigError(f"{field}: {exc}") from None
    if not os.path.exists(path):
        raise ConfigError(f"{field}: {spec}: no such model directory or file")


def _check_bt(cfg: PipelineConfig) -> None:
    """The BT model's section: ``BTTrainConfig`` fields plus ``tasks`` (which pairs it learns)."""
    from datarl.models.bt_train import BTTrainConfig

    opts = dict(cfg.bt)
    tasks = opts.pop("tasks", ["general"])
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ConfigError(f"bt.tasks: a non-empty list of task names is required, got {tasks!r}")
    try:
        section_options(BTTrainConfig, opts, "bt (besides tasks)")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bt: {exc}") from None


def _check_genrm(cfg: PipelineConfig) -> None:
    """The judge's section: ``GenRMTrainConfig`` fields plus ``gt_samples``, ``heldout`` (``HeldoutConfig``) and
    ``base`` (the judge's own base model, checked as the policy is)."""
    from datarl.models.genrm_heldout import HeldoutConfig
    from datarl.models.genrm_train import GenRMTrainConfig

    opts = dict(cfg.genrm)
    held = opts.pop("heldout", None) or {}
    samples = opts.pop("gt_samples", 0)
    base = opts.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(
                f"genrm.base: a model (a directory, a .gguf file, or an alias such as smollm2-135m) "
                f"is required, got {base!r}; leave it out to train the judge from the policy"
            )
        _check_model("genrm.base", base)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise ConfigError(f"genrm.gt_samples: a count >= 0 is required, got {samples!r}")
    if not isinstance(held, Mapping):
        raise ConfigError("genrm.heldout: a mapping of HeldoutConfig options is required")
    try:
        section_options(GenRMTrainConfig, opts, "genrm (besides gt_samples, heldout and base)")
        section_options(HeldoutConfig, held, "genrm.heldout")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"genrm: {exc}") from None


def _pool_preview(cfg: PipelineConfig) -> dict[str, list[dict[str, Any]]]:
    """The prompts each split will hold (the suite is built in memory: it takes a second)."""
    if cfg.embedded:
        from datarl.synth import SynthConfig, build_suite

        try:
            return build_suite(SynthConfig(seed=cfg.seed, **cfg.synth))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"synth: {exc}") from None
    return {split: [r.to_dict() for r in read_all_records(path)] for split, path in cfg.data.items()}


def _check_selection(sel: Any, splits: Mapping[str, list[dict[str, Any]]]) -> None:
    from datarl.select.prepo import SelectError, matches_domain, target_count

    pool = splits["pool"]
    if not pool:
        raise ConfigError("select: the pool has no prompts")
    if sel.domains:
        for name in sel.domains:
            if not any(matches_domain(str(r.get("domain") or r["task"]), r["task"], [name]) for r in pool):
                have = sorted({str(r.get("domain") or r["task"]) for r in pool})
                raise ConfigError(f"select.domains: the pool has no prompts of domain {name!r} (it has {have})")
    by_domain: dict[str, int] = {}
    for r in pool:
        if not sel.domains or matches_domain(str(r.get("domain") or r["task"]), r["task"], list(sel.domains)):
            by_domain[str(r.get("domain") or r["task"])] = by_domain.get(str(r.get("domain") or r["task"]), 0) + 1
    try:
        if sel.scope == "domain" and sel.count is None and sel.strategy != "all":
            for n in by_domain.values():
                target_count(sel, n)
        else:
            target_count(sel, sum(by_domain.values()))
    except SelectError as exc:
        raise ConfigError(f"select: {exc}") from None


def _check_train(cfg: PipelineConfig, splits: Mapping[str, list[dict[str, Any]]]) -> None:
    from datarl.rl.config import TrainConfig
    from datarl.select.curriculum import CurriculumConfig, CurriculumError, CurriculumSampler

    try:
        tc = TrainConfig.from_mapping(
            {
                **dict(cfg.train),
                "policy": "tiny",
                "data": {"train": "train.jsonl"},
                "reward": router_mapping(cfg),
                "run_dir": cfg.path("train"),
            }
        )
        curriculum = CurriculumConfig.from_value(tc.curriculum, tc.ppo.steps)
        CurriculumSampler(
            [r["task"] for r in splits["train"] + splits["pool"]], curriculum, tc.ppo.prompts_per_step, cfg.seed
        )
    except (CurriculumError, ValueError) as exc:
        raise ConfigError(f"train: {exc}") from None
