"""The run config of ``datarl train``: typed, documented, validated before anything heavy runs.

A run config is one YAML/JSON file::

    policy: tiny                      # HF dir, .gguf, alias, or 'tiny' (the embedded SFT policy)
    data: {train: suite/train.jsonl, eval: suite/eval.jsonl}
    reward:                           # the router (README, 'The router')
      router: {general: genrm.bon}
      sources: {genrm.bon: {judge: judge/}}
    curriculum: paper                 # 'paper' (default), 'none', or {phases: [...]}
    ppo: {steps: 40, prompts_per_step: 16, samples_per_prompt: 4}
    eval: {every: 10}
    hacking: {window: 3}
    logging: {tensorboard: false, wandb: false}
    run_dir: runs/demo
    seed: 0

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datarl.config import build_section, did_you_mean
from datarl.errors import ConfigError
from datarl.rl.ppo import CRITIC_FREE, ESTIMATORS
from datarl.select.difficulty import DifficultyConfig

__all__ = ["PPOConfig", "EvalConfig", "LoggingConfig", "TrainConfig", "ConfigError"]


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (defaults sized for the tiny policy on 2 CPU cores).

    steps: PPO steps (one rollout batch and its updates each).
    prompts_per_step: prompts drawn by the curriculum per step.
    samples_per_prompt: responses sampled per prompt; the rollout batch is their product. The samples of
        one prompt in a step are the group that ``grpo`` and ``rloo`` compare (at least 2).
    advantage: how advantages are estimated. ``gae`` (the default, the paper's): a critic (``value_init``)
        and GAE(``gamma``, ``lam``), whitened over the batch with ``whiten_advantages``. ``grpo``: each
        response's score minus the mean of its prompt's group, divided by the group's std (see
        ``grpo_std``). ``rloo``: the score minus the mean of the other samples of its prompt. ``grpo`` and
        ``rloo`` load and train no critic: ``critic_lr``, ``value_clip``, ``gamma``, ``lam`` and
        ``whiten_advantages`` are not used, and ``value_init`` other than ``policy`` or
        ``critic_warmup_steps`` > 0 are errors. Every estimator keeps the KL penalty in the reward: with
        ``grpo``/``rloo`` a token's advantage is its sequence's advantage minus ``kl_coef`` times the KL
        from that token to the end of the response.
    grpo_std: ``advantage: grpo`` only: divide by the group's standard deviation (true, GRPO's; the
        default) or not (false, Dr. GRPO's: no per-prompt rescaling, which favours neither easy nor hard
        prompts).
    minibatch_size: sequences per optimiser step; must divide the rollout batch.
    micro_batch_size: sequences per forward/backward (gradient accumulation); must divide
        minibatch_size; 0 = minibatch_size.
    group_by_length: cut each minibatch (and the no-gradient passes, the whole batch) into micro-batches
        of rows of similar length, at most ``micro_batch_size`` rows each, so that fewer pad tokens are
        computed (about a fifth of a batch's tokens on the embedded suite). The update is the same up to
        float rounding (micro-batches are weighted by their tokens); false: micro-batches in the shuffled
        order, each exactly ``micro_batch_size`` rows.
    ppo_epochs: passes over the rollout batch per step.
    actor_lr, critic_lr: AdamW learning rates (constant).
    clip_eps: policy ratio clip.
    value_clip: value clip around the old values; null disables it.
    gamma, lam: GAE discount and lambda.
    kl_coef: KL penalty coefficient (the initial one when adaptive).
    kl_kind: per-token KL estimator, ``k1`` or ``k3``.
    kl_target: set to make the coefficient adaptive (Ziegler et al.), tracking this KL per sequence.
    kl_horizon: adaptive controller horizon, in sequences.
    whiten_advantages: normalise advantages over the batch.
    reward_shift: added to every routed score (e.g. -0.5 centres a [0, 1] reward).
    cutoff_penalty: subtracted from the score of a response cut off at max_new_tokens without EOS.
    cutoff_invalid: a response cut off at max_new_tokens without EOS is invalid for every source (0 with
        ``failure: invalid_response``, :mod:`datarl.rewards.validity`); False scores it as written.
    temperature, top_p, max_new_tokens: rollout sampling.
    max_grad_norm: gradient clipping for both models.
    value_init: ``policy`` (a separate critic: the SFT body and a zero head), a BT model directory (its body
        and reward head), or ``shared`` (a zero head on the policy's own body: one model in memory, one
        forward and backward for both losses; the value loss also trains the policy's body).
    old_logprobs: ``rollout`` (the sampler's own log-probs, no extra forward pass) or ``recompute``
        (one more no-grad pass; use it when sampling and training precision differ, e.g. bf16).
    critic_warmup_steps: first steps that train only the critic (the policy waits for useful values;
        a zero-initialised critic would otherwise make every response of a hard prompt look bad).
    weight_decay: AdamW weight decay.
    adam_eps: AdamW epsilon. RL gradients are small and noisy; with the usual 1e-8, Adam turns the tiny
        but consistent softmax gradient of every unsampled token into a full-size step, which drifts the
        policy and raises its entropy (cleanrl's PPO uses 1e-5 for the same reason).
    """

    steps: int = 40
    prompts_per_step: int = 16
    samples_per_prompt: int = 4
    minibatch_size: int = 32
    micro_batch_size: int = 0
    group_by_length: bool = True
    ppo_epochs: int = 2
    actor_lr: float = 5e-5
    critic_lr: float = 2e-4
    clip_eps: float = 0.2
    value_clip: float | None = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.02
    kl_kind: str = "k1"
    kl_target: float | None = None
    kl_horizon: int = 10000
    whiten_advantages: bool = True
    reward_shift: float = 0.0
    cutoff_penalty: float = 0.0
    cutoff_invalid: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    max_grad_norm: float = 1.0
    value_init: str = "policy"
    advantage: str = "gae"
    grpo_std: bool | None = None
    critic_warmup_steps: int = 0
    old_logprobs: str = "rollout"
    weight_decay: float = 0.0
    adam_eps: float = 1e-8

    @property
    def rollout_batch(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt

    @property
    def micro(self) -> int:
        return self.micro_batch_size or self.minibatch_size

    @property
    def uses_critic(self) -> bool:
        """Whether the advantage estimator needs a critic (``gae``); ``grpo`` and ``rloo`` do not."""
        return self.advantage not in CRITIC_FREE

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "prompts_per_step",
            "samples_per_prompt",
            "minibatch_size",
            "ppo_epochs",
            "max_new_tokens",
            "kl_horizon",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.rollout_batch % self.minibatch_size:
            raise ValueError(
                f"the rollout batch (prompts_per_step x samples_per_prompt = {self.rollout_batch}) "
                f"is not divisible by minibatch_size {self.minibatch_size}; pick a divisor such as "
                f"{_divisor_near(self.rollout_batch, self.minibatch_size)}"
            )
        if self.micro_batch_size < 0 or self.minibatch_size % self.micro:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} must divide minibatch_size "
                f"{self.minibatch_size} (0 = no accumulation)"
            )
        if not (
            self.actor_lr > 0
            and self.critic_lr > 0
            and self.clip_eps > 0
            and self.max_grad_norm > 0
            and self.adam_eps > 0
        ):
            raise ValueError("actor_lr, critic_lr, clip_eps, max_grad_norm and adam_eps must be > 0")
        if self.value_clip is not None and self.value_clip <= 0:
            raise ValueError("value_clip must be > 0, or null to disable it")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("gamma and lam must be in [0, 1]")
        if self.kl_coef < 0 or self.kl_kind not in ("k1", "k3"):
            raise ValueError("kl_coef must be >= 0 and kl_kind 'k1' or 'k3'")
        if self.kl_target is not None and self.kl_target <= 0:
            raise ValueError("kl_target must be > 0 (or null for a fixed coefficient)")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("rollouts need temperature > 0 and top_p in (0, 1]")
        if (
            isinstance(self.critic_warmup_steps, bool)
            or not isinstance(self.critic_warmup_steps, int)
            or not 0 <= self.critic_warmup_steps < self.steps
        ):
            raise ValueError(f"critic_warmup_steps must be an integer in [0, steps), got {self.critic_warmup_steps!r}")
        if self.old_logprobs not in ("rollout", "recompute"):
            raise ValueError(f"old_logprobs must be 'rollout' or 'recompute', got {self.old_logprobs!r}")
        if not isinstance(self.value_init, str) or not self.value_init:
            raise ValueError("value_init must be 'policy', 'shared' or a BT model directory")
        self._check_estimator()

    def _check_estimator(self) -> None:
        if self.advantage not in ESTIMATORS:
            raise ValueError(
                f"advantage: {self.advantage!r} is not an estimator{did_you_mean([str(self.advantage)], ESTIMATORS)}; "
                f"use one of {', '.join(ESTIMATORS)}"
            )
        if self.grpo_std is not None and (self.advantage != "grpo" or not isinstance(self.grpo_std, bool)):
            raise ValueError(
                f"grpo_std: {self.grpo_std!r} is for advantage: grpo only, as true or false "
                f"(advantage is {self.advantage!r}); remove it or set advantage: grpo"
            )
        if self.advantage == "grpo" and self.grpo_std is None:
            object.__setattr__(self, "grpo_std", True)
        if self.uses_critic:
            return
        name = f"advantage: {self.advantage}"
        if self.samples_per_prompt < 2:
            raise ValueError(
                f"{name} compares the samples of one prompt, but samples_per_prompt is {self.samples_per_prompt}; "
                "set samples_per_prompt to 2 or more (4 to 16 is usual), or use advantage: gae"
            )
        if self.value_init != "policy":
            raise ValueError(
                f"value_init: {self.value_init} asks for a critic, but {name} trains none; "
                "remove value_init, or use advantage: gae"
            )
        if self.critic_warmup_steps:
            raise ValueError(
                f"critic_warmup_steps: {self.critic_warmup_steps} would train a critic alone, but {name} has none; "
                "remove critic_warmup_steps, or use advantage: gae"
            )


def _resolve_model_paths(reward: Mapping[str, Any], base_dir: str) -> dict[str, Any]:
    """Relative model paths in source options (``bt.model``, ``genrm.*.judge``) are relative to the config."""
    import os

    out = dict(reward)
    sources = dict(out.get("sources") or {}) if isinstance(out.get("sources"), Mapping) else out.get("sources")
    if isinstance(sources, dict):
        for name, opts in sources.items():
            if not isinstance(opts, Mapping):
                continue
            opts = dict(opts)
            for key in ("model", "judge"):
                value = opts.get(key)
                if (
                    isinstance(value, str)
                    and not os.path.isabs(value)
                    and os.path.exists(os.path.join(base_dir, value))
                ):
                    opts[key] = os.path.normpath(os.path.join(base_dir, value))
            sources[name] = opts
        out["sources"] = sources
    return out


def _seed_path(cfg: DifficultyConfig, path: Any) -> DifficultyConfig:
    """``difficulty.seed_from`` as a path relative to the config file (``auto`` and ``none`` stay as they are)."""
    if cfg.seed_from in ("auto", "none"):
        return cfg
    return dataclasses.replace(cfg, seed_from=path(cfg.seed_from))


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation on the eval split with gold checks, every ``every`` steps and at the end.

    every: steps between evaluations (0: only before and after training).
    per_task: eval prompts per task (0 = all).
    tasks: evaluate only these tasks (empty = every task of the eval split); a study whose metric needs
        one task pays for one.
    gold: ``synth`` (the suite's gold checks, hidden rubric for general) or ``verifiers``
        (math/code/ifeval verifiers only; general prompts are not gold-evaluated).
    diversity_prompts: eval prompts per task sampled for the diversity metrics (0 disables).
    diversity_samples: samples per prompt for the diversity metrics (the paper: 5).
    max_new_tokens: eval generation length.
    """

    every: int = 10
    per_task: int = 0
    tasks: tuple[str, ...] = ()
    gold: str = "synth"
    diversity_prompts: int = 10
    diversity_samples: int = 5
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if self.every < 0 or self.per_task < 0 or self.diversity_prompts < 0:
            raise ValueError("every, per_task and diversity_prompts must be >= 0")
        if self.diversity_samples < 2 or self.max_new_tokens < 1:
            raise ValueError("diversity_samples must be >= 2 and max_new_tokens >= 1")
        if self.gold not in ("synth", "verifiers"):
            raise ValueError("gold must be 'synth' or 'verifiers'")
        if isinstance(self.tasks, str) or not all(isinstance(t, str) for t in self.tasks):
            raise ValueError(f"tasks must be a list of task names, got {self.tasks!r}")
        object.__setattr__(self, "tasks", tuple(self.tasks))


@dataclass(frozen=True)
class LoggingConfig:
    """Where step metrics go besides ``metrics.jsonl`` (always written).

    tensorboard: also write TensorBoard event files under ``RUN_DIR/tb`` (needs ``tensorboard``).
    wandb: also log to Weights & Biases (needs ``wandb``; respects ``WANDB_MODE``).
    wandb_project: the W&B project name.
    """

    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "datarl"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one ``datarl train`` run needs; saved resolved as ``RUN_DIR/config.json``.

    policy: the SFT policy (see ``datarl generate --help``); also the frozen KL reference.
    train_path, eval_path: record files (``data: {train, eval}``); eval records need gold checks
        (ground truth, tests, ifeval ids); without an eval file, no gold evaluation runs.
    reward: the router config (``router:``, ``sources:``).
    curriculum: ``paper``, ``none`` or ``{phases: [...]}`` (see ``datarl.select.curriculum``).
    ppo, eval_cfg, hacking, logging: the sections above (``eval:`` in the file).
    difficulty: the per-prompt difficulty state and its online policies (skip, drop, dynamic sampling; all
        off by default), :class:`datarl.select.difficulty.DifficultyConfig`.
    run_dir: output directory (checkpoints, metrics, report).
    save_every: steps between checkpoints (the last step is always saved).
    keep_checkpoints: most recent step checkpoints kept (the best one is kept besides).
    workers: reward worker processes.
    reward_timeout_s: wall-clock limit per reward item.
    device, dtype: where and in what precision the models run (``cuda``/``bfloat16`` on a GPU).
    seed: everything random derives from it and the step number.
    threads: torch intra-op threads (0 = torch's default).
    """

    policy: str = "tiny"
    train_path: str = ""
    eval_path: str = ""
    reward: Mapping[str, Any] = field(default_factory=dict)
    curriculum: str | Mapping[str, Any] = "paper"
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval_cfg: EvalConfig = field(default_factory=EvalConfig)
    hacking: Mapping[str, Any] = field(default_factory=dict)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    run_dir: str = "runs/train"
    save_every: int = 10
    keep_checkpoints: int = 2
    workers: int = 2
    reward_timeout_s: float = 30.0
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        if not self.train_path:
            raise ValueError("data.train: give the training prompts file")
        if self.save_every < 1 or self.keep_checkpoints < 1 or self.workers < 1 or self.reward_timeout_s <= 0:
            raise ValueError("save_every, keep_checkpoints and workers must be >= 1, reward_timeout_s > 0")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError("dtype must be float32, bfloat16 or float16")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.difficulty.dynamic_sampling and self.ppo.uses_critic:
            raise ValueError(
                "difficulty.dynamic_sampling sets aside groups whose samples all got the same reward (they teach "
                f"a group baseline nothing); it needs ppo.advantage: grpo or rloo (not {self.ppo.advantage})"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base_dir: str = ".") -> TrainConfig:
        """From a parsed config file; relative paths are resolved against ``base_dir``."""
        import os

        allowed = {
            "policy",
            "data",
            "reward",
            "curriculum",
            "ppo",
            "eval",
            "hacking",
            "logging",
            "difficulty",
            "run_dir",
            "save_every",
            "keep_checkpoints",
            "workers",
            "reward_timeout_s",
            "device",
            "dtype",
            "seed",
            "threads",
        }
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown top-level key(s) {unknown}{did_you_mean(unknown, allowed)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        data_sec = data.get("data") or {}
        if not isinstance(data_sec, Mapping) or set(data_sec) - {"train", "eval"}:
            raise ConfigError("data: must be a mapping with 'train' and optionally 'eval' (record files)")

        def path(p: Any) -> str:
            return "" if not p else p if os.path.isabs(str(p)) else os.path.normpath(os.path.join(base_dir, str(p)))

        policy = str(data.get("policy") or "tiny")
        if os.path.exists(os.path.join(base_dir, policy)):
            policy = path(policy)
        reward = data.get("reward") or {}
        if not isinstance(reward, Mapping):
            raise ConfigError("reward: must be a mapping with 'router' and/or 'sources'")
        reward = _resolve_model_paths(reward, base_dir)
        top = {
            k: data[k]
            for k in (
                "save_every",
                "keep_checkpoints",
                "workers",
                "reward_timeout_s",
                "device",
                "dtype",
                "seed",
                "threads",
            )
            if k in data
        }
        try:
            return cls(
                policy=policy,
                train_path=path(data_sec.get("train")),
                eval_path=path(data_sec.get("eval")),
                reward=dict(reward),
                curriculum=data.get("curriculum", "paper"),
                ppo=build_section(PPOConfig, data.get("ppo"), "ppo"),
                eval_cfg=build_section(EvalConfig, data.get("eval"), "eval"),
                hacking=dict(data.get("hacking") or {}),
                logging=build_section(LoggingConfig, data.get("logging"), "logging"),
                difficulty=_seed_path(build_section(DifficultyConfig, data.get("difficulty"), "difficulty"), path),
                run_dir=path(data.get("run_dir") or "runs/train"),
                **top,
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """The config in the file's own shape (``from_mapping(to_dict())`` gives it back)."""
        out = dataclasses.asdict(self)
        out["data"] = {"train": out.pop("train_path"), "eval": out.pop("eval_path")}
        out["eval"] = out.pop("eval_cfg")
        return out
