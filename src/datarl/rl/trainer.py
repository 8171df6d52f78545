"""``datarl train``: PPO with a critic (or a critic-free group baseline), KL to the frozen SFT reference,
hybrid rewards and a curriculum.

The whole loop is :func:`train`, read top to bottom: set-up (validate everything, load models),
then per step: draw prompts (curriculum; a difficulty policy may pass some over) -> sample responses
(rollout) -> score them (router; every group updates the per-prompt difficulty state, and dynamic
sampling may draw more prompts in place of groups without a spread of rewards) -> old/ref log-probs and
values -> KL-penalised token rewards -> GAE (or, with ``advantage: grpo|rloo``, group advantages and no
values) -> PPO epochs over minibatches -> KL controller -> log -> evaluate / checkpoint. The maths is in
:mod:`datarl.rl.ppo`; the critic (a value model of its own, or a head on the policy's body) is one
interface, :class:`~datarl.rl.critic.Critic`, and ``None`` in a critic-free run. Each implementation
detail is listed in ``docs/ppo.md`` with the line here that implements it.

Determinism: every random draw derives from ``seed`` and the step number (sampling seed, minibatch
order, curriculum permutations, re-admission of skipped prompts), so a run resumed from a checkpoint
computes exactly the steps an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from datarl.executors.engine import LocalEngine, ScoringEngine
from datarl.io import write_json
from datarl.metrics.hacking import HackingConfig, HackingMonitor
from datarl.models.generate import JOB_BATCH_SIZE, Generation, SamplingConfig, derive_seed, generate
from datarl.models.loading import Policy
from datarl.models.value import response_forward
from datarl.rewards.base import SCORING_ERRORS, RewardResult
from datarl.rewards.router import Router
from datarl.rl import ppo
from datarl.rl.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_policy
from datarl.rl.config import PPOConfig, TrainConfig
from datarl.rl.critic import AheadPass, Critic, load_critic, policy_pass
from datarl.rl.eval_result import EvalResult
from datarl.rl.evaluate import eval_subset, evaluate, load_baseline, write_items
from datarl.rl.logger import MetricsLogger, truncate_jsonl
from datarl.rl.rollout import RolloutBatch, pack
from datarl.rl.setup import RunInputs, prepare
from datarl.select.curriculum import Admit, CurriculumSampler
from datarl.select.difficulty import DifficultyState

__all__ = ["train", "TrainResult", "TrainState"]

KLController = ppo.AdaptiveKLController | ppo.FixedKLController
AheadPasses = list[tuple[list[int], AheadPass]]  # the critic's passes run ahead: (the rows, their pass) each


@dataclass(frozen=True)
class TrainResult:
    run_dir: str
    steps: int
    best_step: int | None
    best_gold: float | None
    seconds: float


@dataclass(frozen=True)
class TrainState:
    """What the loop carries from step to step besides the models, the optimisers and the objects that keep
    their own state (sampler, KL controller, hacking monitor): steps done and the best evaluation so far."""

    step: int = 0
    best_gold: float | None = None
    best_step: int | None = None

    def to_json(
        self,
        *,
        sampler: CurriculumSampler,
        kl_ctl: KLController,
        monitor: HackingMonitor,
        difficulty: DifficultyState,
    ) -> dict[str, Any]:
        """A checkpoint's ``trainer_state.json``: these fields and those objects' states."""
        return {
            **dataclasses.asdict(self),
            "sampler": sampler.state_dict(),
            "kl_ctl": kl_ctl.state_dict(),
            "monitor": monitor.state_dict(),
            "difficulty": difficulty.state_dict(),
        }

    @classmethod
    def from_json(
        cls,
        saved: Mapping[str, Any],
        *,
        sampler: CurriculumSampler,
        kl_ctl: KLController,
        monitor: HackingMonitor,
        difficulty: DifficultyState,
    ) -> TrainState:
        """Read :meth:`to_json`'s output back, loading the objects' states into them (a checkpoint written
        before the difficulty state existed leaves it as seeded)."""
        sampler.load_state_dict(saved["sampler"])
        kl_ctl.load_state_dict(saved["kl_ctl"])
        monitor.load_state_dict(saved["monitor"])
        if "difficulty" in saved:
            difficulty.load_state_dict(saved["difficulty"])
        return cls(step=saved["step"], best_gold=saved["best_gold"], best_step=saved["best_step"])


def train(
    cfg: TrainConfig, *, resume: bool = False, log: Callable[[str], None] = print, stop_after: int | None = None
) -> TrainResult:
    """Run (or, with ``resume``, continue) PPO as configured; ``stop_after`` ends early (tests)."""
    start_time = time.perf_counter()
    inputs = prepare(cfg, resume=resume)  # every config/data/router problem is raised here, before models
    p = cfg.ppo
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    policy, reference, critic = _load_models(cfg, inputs)
    device = next(policy.model.parameters()).device
    actor_opt = _adamw(policy.model.parameters(), p.actor_lr, p)
    critic_opt = _adamw(critic.parameters(), p.critic_lr, p) if critic is not None else None
    kl_ctl = _kl_controller(p)
    sampler = CurriculumSampler([r["task"] for r in inputs.train], inputs.curriculum, p.prompts_per_step, cfg.seed)
    monitor = HackingMonitor(HackingConfig.from_mapping(cfg.hacking))
    router = Router(inputs.router)
    rewarders = LocalEngine(router, workers=cfg.workers, timeout_s=cfg.reward_timeout_s)
    difficulty = inputs.difficulty  # per-prompt state, seeded from Pre-PPO's scores; its policies filter the draws
    admit = difficulty.admit if difficulty.cfg.skip or difficulty.cfg.drop_pass_rate is not None else None
    objects = {"sampler": sampler, "kl_ctl": kl_ctl, "monitor": monitor, "difficulty": difficulty}
    more = functools.partial(_draw_more, sampler, admit, policy, rewarders, inputs.train, p, cfg.seed)
    state = TrainState()
    checkpoint = latest_checkpoint(cfg.run_dir) if resume else None
    if checkpoint:  # continue exactly where the last complete checkpoint left off
        state = _restore(checkpoint, critic, actor_opt, critic_opt, **objects)
        log(f"resuming {cfg.run_dir} from {os.path.basename(checkpoint)} (step {state.step})")
    logger = _open_logger(cfg, state.step, resumed=checkpoint is not None)
    run_eval = _Evaluation(
        cfg,
        policy,
        eval_subset(inputs.eval, cfg.eval_cfg.per_task, cfg.eval_cfg.tasks),
        router,
        rewarders,
        monitor,
        logger,
        log,
        baseline=load_baseline(cfg.run_dir) if checkpoint else None,
    )

    last = p.steps if stop_after is None else min(p.steps, stop_after)
    try:
        if state.step == 0 and not checkpoint:
            state = run_eval(0, state)  # the SFT policy: the "before" of the before/after table
        while state.step < last:
            step = state.step
            t0 = time.perf_counter()
            # 1. prompts for this step, from the curriculum (a difficulty policy may pass some over)
            indices, cur_info = sampler.next_batch(admit)
            records = [inputs.train[i] for i in indices]
            # 2. rollout: sample responses with per-token log-probs
            gens = _rollout(policy, records, p, derive_seed(cfg.seed, step))
            t_gen = time.perf_counter()
            # 3. rewards from the router (verifiers in worker processes, learned models batched here); every
            # group goes into the difficulty state; dynamic sampling sets aside groups without a spread of
            # rewards and draws, samples and scores more prompts in their place
            rows, results = _score(rewarders, records, gens, p)
            groups = _groups(indices, gens, results)
            diff_info = difficulty.observe(step, groups)
            if difficulty.cfg.dynamic_sampling:
                rows, gens, results, dyn_info = _dynamic_sampling(step, groups, rows, gens, results, difficulty, more)
                diff_info.update(dyn_info)
            scores, finished = _shaped_scores(results, gens, p, device)
            t_reward = time.perf_counter()
            # 4. old log-probs, reference log-probs and values (a critic warm-up trains the critic alone)
            batch = pack([g.prompt_ids for g in gens], [g.token_ids for g in gens], inputs.pad_id).to(device)
            mask = batch.mask
            train_policy = step >= p.critic_warmup_steps
            old_logp, ref_logp, values, ahead = _old_passes(
                policy.model, reference, critic, batch, gens, p, train_policy
            )
            # 5. KL-penalised per-token rewards, then advantages: GAE on the critic's values, whitened; or, with
            # no critic (grpo/rloo), each sequence's advantage over its prompt's group minus the KL still to come
            kl = ppo.kl_per_token(old_logp, ref_logp, p.kl_kind) * mask
            if critic is None:
                groups = torch.tensor([g.prompt_index for g in gens], device=device)
                seq_adv = ppo.group_advantages(p.advantage, scores, groups, scale_by_std=bool(p.grpo_std))
                advantages = ppo.reward_to_go(ppo.token_rewards(seq_adv, kl, mask, kl_ctl.value), mask)
                returns = None
            else:
                rewards = ppo.token_rewards(scores, kl, mask, kl_ctl.value)
                advantages, returns = ppo.gae(rewards, values, mask, p.gamma, p.lam)
                if p.whiten_advantages:
                    advantages = ppo.masked_whiten(advantages, mask)
            # 6. PPO epochs over shuffled minibatches, with gradient accumulation over micro-batches
            stats = _ppo_updates(
                policy.model,
                critic,
                actor_opt,
                critic_opt,
                batch,
                old_logp,
                values,
                advantages,
                returns,
                p,
                random.Random(f"{cfg.seed}:minibatch:{step}"),
                train_policy=train_policy,
                ahead=ahead,
            )
            # 7. the adaptive KL controller sees this batch's mean KL per sequence
            seq_kl = float((kl.sum(-1)).mean())
            kl_ctl.update(seq_kl, len(batch))
            t_end = time.perf_counter()
            state = dataclasses.replace(state, step=step + 1)
            logger.log(
                "metrics",
                {
                    "step": step,
                    "time_s": time.perf_counter() - start_time,
                    **_reward_metrics(rows, results),
                    "ppo/kl": seq_kl,
                    "ppo/kl_coef": kl_ctl.value,
                    **stats,
                    "response/length": float(mask.sum(-1).mean()),
                    "response/cut_off": float(1 - finished.mean()),
                    **cur_info,
                    **diff_info,
                    "curriculum/passed_over": sampler.passed_over,
                    **_perf(t0, t_gen, t_reward, t_end, mask),
                },
            )
            log(
                f"step {step + 1}/{p.steps} reward {float(scores.mean()):.3f} kl {seq_kl:.3f} "
                f"({cur_info['curriculum/phase_name']}, {t_end - t0:.1f} s)"
            )
            # 8. evaluation and checkpoints
            if state.step == p.steps or (cfg.eval_cfg.every and state.step % cfg.eval_cfg.every == 0):
                state = run_eval(state.step, state)
            if state.step % cfg.save_every == 0 or state.step == p.steps:
                save_checkpoint(
                    cfg.run_dir,
                    state.step,
                    policy=policy,
                    critic=critic,
                    actor_opt=actor_opt,
                    critic_opt=critic_opt,
                    keep=cfg.keep_checkpoints,
                    trainer_state=state.to_json(**objects),
                )
    finally:
        logger.close()
        rewarders.close()
    if state.step == p.steps:
        difficulty.write(cfg.run_dir)  # where a next run can start from (difficulty.seed_from)
        _write_summary(cfg.run_dir, state, difficulty.summary())
    return TrainResult(cfg.run_dir, state.step, state.best_step, state.best_gold, time.perf_counter() - start_time)


def _load_models(cfg: TrainConfig, inputs: RunInputs) -> tuple[Policy, torch.nn.Module, Critic | None]:
    """The trainable policy (from the last checkpoint when resuming), the frozen reference, the critic (None
    for a critic-free estimator: no value model is loaded)."""
    from datarl.models.loading import load_policy

    checkpoint = latest_checkpoint(cfg.run_dir) if inputs.resume else None
    policy = load_policy(
        os.path.join(checkpoint, "policy") if checkpoint else inputs.policy_dir, dtype=cfg.dtype, device=cfg.device
    )
    reference = load_policy(inputs.policy_dir, dtype=cfg.dtype, device=cfg.device).model
    reference.requires_grad_(False)
    if not cfg.ppo.uses_critic:
        return policy, reference, None
    critic = load_critic(
        inputs.value_init, inputs.policy_dir, policy.model, dtype=cfg.dtype, device=cfg.device
    )  # value_init: shared puts the head on this policy
    return policy, reference, critic


def _adamw(params: Iterable[torch.nn.Parameter], lr: float, p: PPOConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=p.weight_decay, eps=p.adam_eps)


def _kl_controller(p: PPOConfig) -> KLController:
    if p.kl_target:
        return ppo.AdaptiveKLController(p.kl_coef, p.kl_target, p.kl_horizon)
    return ppo.FixedKLController(p.kl_coef)


def _restore(
    checkpoint: str,
    critic: Critic | None,
    actor_opt: torch.optim.Optimizer,
    critic_opt: torch.optim.Optimizer | None,
    **objects: Any,
) -> TrainState:
    """Load a checkpoint into the run's objects: the critic, both optimisers, torch's RNG (``state.pt``), the
    sampler, KL controller, monitor and difficulty state (``trainer_state.json``); its :class:`TrainState`.
    (The policy was loaded from it by :func:`_load_models`; a critic-free run has neither critic nor its
    optimiser.)"""
    saved = load_checkpoint(checkpoint)
    actor_opt.load_state_dict(saved["state"]["actor_opt"])
    if critic is not None and critic_opt is not None:
        critic.load_state_dict(saved["state"]["critic"])
        critic_opt.load_state_dict(saved["state"]["critic_opt"])
    torch.set_rng_state(saved["state"]["torch_rng"])
    return TrainState.from_json(saved["trainer_state"], **objects)


def _open_logger(cfg: TrainConfig, step: int, *, resumed: bool) -> MetricsLogger:
    """The run's metric logs, without the lines written after ``step`` (a resumed run logs no step twice)."""
    for name in ("metrics", "eval"):
        # A checkpoint at step k follows the eval at step k, so that eval line is kept with it.
        truncate_jsonl(os.path.join(cfg.run_dir, f"{name}.jsonl"), step, inclusive=(name == "eval" and resumed))
    return MetricsLogger(
        cfg.run_dir,
        tensorboard=cfg.logging.tensorboard,
        wandb=cfg.logging.wandb,
        wandb_project=cfg.logging.wandb_project,
        config=cfg.to_dict(),
    )


@dataclass
class _Evaluation:
    """Evaluation at a step: a line of ``eval.jsonl``, every response with its gold score, the best policy."""

    cfg: TrainConfig
    policy: Policy
    evals: list[Mapping[str, Any]]
    router: Router
    engine: ScoringEngine
    monitor: HackingMonitor
    logger: MetricsLogger
    log: Callable[[str], None]
    baseline: list[float | None] | None  # step 0's gold per prompt, for the paired gains

    def __call__(self, step: int, state: TrainState) -> TrainState:
        """Evaluate the policy after ``step`` steps; the state with the best score so far."""
        if not self.evals:
            return state
        cfg = self.cfg
        result, items = evaluate(
            self.policy,
            self.evals,
            cfg.eval_cfg,
            self.router,
            engine=self.engine,
            step=step,
            seed=derive_seed(cfg.seed, step),
            temperature=cfg.ppo.temperature,
            monitor=self.monitor,
            workers=cfg.workers,
            timeout_s=cfg.reward_timeout_s,
            baseline=self.baseline,
        )
        write_items(cfg.run_dir, step, items)  # every response and its gold score, for inspection
        if step == 0:
            self.baseline = [it["gold"] for it in items]
        self.logger.log("eval", result.to_row())
        gold = result.gold_mean
        self.log(
            f"eval step {step}: "
            + ", ".join(
                [
                    *(f"{t} {s.mean:.3f}" for t, s in result.gold.items()),
                    *([f"mean {gold:.3f}"] if gold is not None else []),
                ]
            )
        )
        if gold is not None and (state.best_gold is None or gold > state.best_gold):
            save_policy(self.policy, os.path.join(cfg.run_dir, "best"))  # the best checkpoint by gold score
            state = dataclasses.replace(state, best_gold=gold, best_step=step)
        return state


def _rollout(policy: Policy, records: Sequence[Mapping[str, Any]], p: PPOConfig, seed: int) -> list[Generation]:
    """``samples_per_prompt`` responses to each record's prompt, with per-token log-probs."""
    return generate(
        policy,
        [r["prompt"] for r in records],
        SamplingConfig(
            temperature=p.temperature,
            top_p=p.top_p,
            max_new_tokens=p.max_new_tokens,
            samples_per_prompt=p.samples_per_prompt,
            seed=seed,
            batch_size=JOB_BATCH_SIZE,
        ),
    )


def _score(
    engine: ScoringEngine, records: Sequence[Mapping[str, Any]], gens: Sequence[Generation], p: PPOConfig
) -> tuple[list[Mapping[str, Any]], list[RewardResult]]:
    """The rows scored (each generation's record; with ``cutoff_invalid`` a response cut off at max_new_tokens
    is invalid for every source, :mod:`datarl.rewards.validity`) and their rewards."""
    rows = [
        {**records[g.prompt_index], "response_finished": g.finished} if p.cutoff_invalid else records[g.prompt_index]
        for g in gens
    ]
    return rows, engine.score(rows, [g.text for g in gens])


def _groups(
    indices: Sequence[int], gens: Sequence[Generation], results: Sequence[RewardResult]
) -> list[tuple[int, list[float]]]:
    """Per drawn prompt (in draw order): its training record index and its samples' rewards."""
    rewards: list[list[float]] = [[] for _ in indices]
    for g, res in zip(gens, results):
        rewards[g.prompt_index].append(float(res.score))
    return list(zip(indices, rewards))


def _draw_more(
    sampler: CurriculumSampler,
    admit: Admit | None,
    policy: Policy,
    engine: ScoringEngine,
    train_records: Sequence[Mapping[str, Any]],
    p: PPOConfig,
    seed: int,
    step: int,
    k: int,
    round_: int,
) -> tuple[list[int], list[Mapping[str, Any]], list[Generation], list[RewardResult]]:
    """Dynamic sampling's extra round ``round_`` of ``step``: ``k`` more prompts from the curriculum (the same
    filter), sampled (a seed of their own) and scored: their indices, rows, generations and rewards."""
    more = sampler.extra(k, admit)
    records = [train_records[i] for i in more]
    sample_seed = int.from_bytes(hashlib.sha256(f"{seed}:dynamic:{step}:{round_}".encode()).digest()[:6], "big")
    gens = _rollout(policy, records, p, sample_seed)
    rows, results = _score(engine, records, gens, p)
    return more, rows, gens, results


def _dynamic_sampling(
    step: int,
    first: list[tuple[int, list[float]]],
    rows: list[Mapping[str, Any]],
    gens: list[Generation],
    results: list[RewardResult],
    difficulty: DifficultyState,
    more: Callable[..., tuple[list[int], list[Mapping[str, Any]], list[Generation], list[RewardResult]]],
) -> tuple[list[Mapping[str, Any]], list[Generation], list[RewardResult], dict[str, float]]:
    """DAPO's dynamic sampling: keep the groups with a spread of rewards; while fewer than the step's prompts,
    draw the shortfall (``more(step, k, round)``, :func:`_draw_more`; up to ``max_rounds`` rounds); every new
    group goes into the difficulty state too; fill what is still short with the set-aside groups, in draw
    order. ``first``: the step's first draw as :func:`_groups` gives it. Returns the step's rows, generations
    (re-indexed by group) and rewards, and what to log."""
    wanted = len(first)
    drawn = [(rows, gens, results)]  # per round: its rows, generations, rewards
    groups = [(0, k) for k in range(len(first))]  # (round, prompt index within the round)
    spread = [difficulty.spread(r) for _, r in first]
    rounds = 0
    while sum(spread) < wanted and rounds < difficulty.cfg.max_rounds:
        rounds += 1
        extra, more_rows, more_gens, more_results = more(step, wanted - sum(spread), rounds)
        more_groups = _groups(extra, more_gens, more_results)
        difficulty.observe(step, more_groups)
        drawn.append((more_rows, more_gens, more_results))
        groups += [(rounds, k) for k in range(len(extra))]
        spread += [difficulty.spread(r) for _, r in more_groups]
    kept = [g for g, s in zip(groups, spread) if s][:wanted]
    filled = [g for g, s in zip(groups, spread) if not s][: wanted - len(kept)]
    chosen = {g: n for n, g in enumerate(sorted(kept + filled))}
    out_rows, out_gens, out_results = [], [], []
    for r, (r_rows, r_gens, r_results) in enumerate(drawn):
        for row, g, res in zip(r_rows, r_gens, r_results):
            if (r, g.prompt_index) in chosen:
                out_rows.append(row)
                out_gens.append(dataclasses.replace(g, prompt_index=chosen[(r, g.prompt_index)]))
                out_results.append(res)
    info = {
        "dynamic/rounds": float(rounds),
        "dynamic/groups_drawn": float(len(groups)),
        "dynamic/kept_with_spread": float(len(kept)),
        "dynamic/filled_without_spread": float(len(filled)),
        **difficulty.totals(),  # the extra rounds' rollouts included
    }
    return out_rows, out_gens, out_results, info


def _shaped_scores(
    results: Sequence[RewardResult], gens: Sequence[Generation], p: PPOConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The routed scores plus ``reward_shift``, minus ``cutoff_penalty`` for a response cut off without EOS;
    and which responses finished (1.0) or were cut off (0.0)."""
    finished = torch.tensor([g.finished for g in gens], dtype=torch.float32, device=device)
    scores = torch.tensor([r.score for r in results], dtype=torch.float32, device=device) + p.reward_shift
    return scores - p.cutoff_penalty * (1.0 - finished), finished


def _old_passes(
    policy_model: torch.nn.Module,
    ref_model: torch.nn.Module,
    critic: Critic | None,
    batch: RolloutBatch,
    gens: Sequence[Generation],
    p: PPOConfig,
    train_policy: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, AheadPasses | None]:
    """Old log-probs, reference log-probs and old values ``[B, T]``, masked, and the critic's passes run ahead.

    Passes without gradients, a micro-batch at a time (rows of similar length together): the reference's
    log-probs, the critic's values, and the policy's with ``old_logprobs: recompute`` (else the sampler's are
    the old policy's: no extra pass). With one epoch over one minibatch that one micro-batch may hold
    (``fused``) the critic (a shared one: the whole update pass) runs ahead instead, with gradients, one
    pass per micro-batch; nothing is updated in between, so its values are the old values and the update
    reuses those micro-batches and their graphs. Without a critic the values are None."""
    fused = critic is not None and p.ppo_epochs == 1 and p.micro >= len(batch)
    groups = batch.micro_batches(range(len(batch)), p.micro, p.group_by_length)
    old, ref, val = (torch.zeros(batch.mask.shape, device=batch.mask.device) for _ in range(3))
    ahead: AheadPasses | None = [] if fused else None
    for rows in groups:
        sub, idx = batch.select(rows), torch.as_tensor(rows, device=batch.mask.device)
        t = sub.mask.shape[1]
        args = (sub.input_ids, sub.attention_mask, sub.gather_index, sub.response_ids, p.temperature)
        with torch.no_grad():
            if p.old_logprobs == "recompute":
                old[idx, :t] = response_forward(policy_model, *args)[0].float()
            ref[idx, :t] = response_forward(ref_model, *args)[0].float()
            if critic is not None and not fused:
                val[idx, :t] = critic.values(sub).float()
        if critic is not None and ahead is not None:  # with gradients: the update reuses this pass
            passed = critic.run_ahead(sub, p.temperature, train_policy)
            val[idx, :t] = passed.values.detach()
            ahead.append((rows, passed))
    values = None if critic is None else val * batch.mask
    old_logp = old * batch.mask if p.old_logprobs == "recompute" else _rollout_logprobs(gens, batch.mask)
    return old_logp, ref * batch.mask, values, ahead


def _rollout_logprobs(gens: Sequence[Generation], mask: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(mask.shape, dtype=torch.float32)
    for row, g in enumerate(gens):
        out[row, : len(g.logprobs)] = torch.tensor(g.logprobs, dtype=torch.float32)
    return out.to(mask.device) * mask


def _ppo_updates(
    policy_model: torch.nn.Module,
    critic: Critic | None,
    actor_opt: torch.optim.Optimizer,
    critic_opt: torch.optim.Optimizer | None,
    batch: RolloutBatch,
    old_logp: torch.Tensor,
    old_values: torch.Tensor | None,
    advantages: torch.Tensor,
    returns: torch.Tensor | None,
    p: PPOConfig,
    rng: random.Random,
    *,
    train_policy: bool = True,
    ahead: AheadPasses | None = None,
) -> dict[str, float]:
    """PPO epochs over shuffled minibatches, each in micro-batches of rows of similar length (gradients
    accumulated, each weighted by its share of the minibatch's tokens: one pass over the whole minibatch,
    up to rounding); ``ahead``: the critic's passes that gave ``old_values`` (one epoch over one minibatch),
    already run with gradients, one per micro-batch, which the update reuses. Without a critic (``grpo``,
    ``rloo``) the update is the policy's pass and loss alone: no values, no value loss, no critic step."""
    sums: dict[str, list[float]] = defaultdict(list)
    for _epoch in range(p.ppo_epochs):
        order = list(range(len(batch)))
        rng.shuffle(order)
        for mb_start in range(0, len(order), p.minibatch_size):
            minibatch = order[mb_start : mb_start + p.minibatch_size]
            mb_tokens = float(batch.mask[minibatch].sum().clamp(min=1))
            actor_opt.zero_grad(set_to_none=True)
            if critic_opt is not None:
                critic_opt.zero_grad(set_to_none=True)
            if ahead is not None:
                micro_batches = ahead
            else:
                micro_batches = [(rows, None) for rows in batch.micro_batches(minibatch, p.micro, p.group_by_length)]
            mb_stats: dict[str, float] = defaultdict(float)  # token-weighted over the micro-batches
            for rows, ahead_pass in micro_batches:
                sub = batch.select(rows)
                T = sub.mask.shape[1]
                share = float(sub.mask.sum()) / mb_tokens  # token-weighted: accumulation == one big batch
                if critic is None:  # grpo/rloo: the policy's pass and loss alone
                    logp, entropy = policy_pass(policy_model, sub, p.temperature)
                    pl, pst = ppo.policy_loss(logp, old_logp[rows, :T], advantages[rows, :T], sub.mask, p.clip_eps)
                    (pl * share).backward()
                    vl, vst = None, None
                else:
                    out = critic.update_pass(sub, p.temperature, train_policy, ahead_pass)
                    entropy = out.entropy
                    pl, pst = ppo.policy_loss(out.logp, old_logp[rows, :T], advantages[rows, :T], sub.mask, p.clip_eps)
                    vl, vst = ppo.value_loss(
                        out.values, old_values[rows, :T], returns[rows, :T], sub.mask, p.value_clip
                    )
                    critic.backward(pl, vl, share, train_policy)
                for key, value in (
                    ("ppo/policy_loss", pl.item()),
                    ("ppo/value_loss", None if vl is None else vl.item()),
                    ("ppo/clipfrac", pst.clipfrac),
                    ("ppo/approx_kl", pst.approx_kl),
                    ("ppo/value_clipfrac", None if vst is None else vst.clipfrac),
                    ("ppo/entropy", float(ppo.masked_mean(entropy.detach(), sub.mask))),
                ):
                    if value is not None:
                        mb_stats[key] += value * share
            for key, value in mb_stats.items():
                sums[key].append(value)
            if train_policy:
                sums["ppo/grad_norm"].append(
                    float(torch.nn.utils.clip_grad_norm_(policy_model.parameters(), p.max_grad_norm))
                )
                actor_opt.step()
            if critic is not None and critic_opt is not None:
                torch.nn.utils.clip_grad_norm_(critic.parameters(), p.max_grad_norm)
                critic_opt.step()
    return {k: sum(v) / len(v) for k, v in sums.items()}


def _perf(t0: float, t_gen: float, t_reward: float, t_end: float, mask: torch.Tensor) -> dict[str, float]:
    return {
        "perf/step_s": t_end - t0,
        "perf/rollout_s": t_gen - t0,
        "perf/reward_s": t_reward - t_gen,
        "perf/update_s": t_end - t_reward,
        "perf/tokens_per_s": float(mask.sum()) / max(1e-9, t_end - t0),
    }


def _reward_metrics(records: Sequence[Mapping[str, Any]], results: Sequence[RewardResult]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    errors = 0
    for rec, res in zip(records, results):
        groups["reward/mean"].append(res.score)
        groups[f"reward/task/{rec['task']}"].append(res.score)
        groups[f"reward/source/{res.source}"].append(res.score)
        errors += res.info.get("failure") in SCORING_ERRORS
    out = {k: sum(v) / len(v) for k, v in groups.items()}
    out["reward/errors"] = errors / max(1, len(results))  # the reward system failed, not the response
    return out


def _write_summary(run_dir: str, state: TrainState, difficulty: Mapping[str, Any]) -> None:
    results = []
    path = os.path.join(run_dir, "eval.jsonl")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            results = [EvalResult.from_row(json.loads(line)) for line in fh if line.strip()]
    if not results:
        return

    def table(result: EvalResult) -> dict[str, dict[str, Any]]:
        return {t: result.gold[t].to_dict() for t in sorted(result.gold)}

    def gains(result: EvalResult) -> dict[str, dict[str, Any]]:  # paired, vs step 0 (see evaluate)
        return {t: result.gains[t].to_dict() for t in sorted(result.gains)}

    best = next((r for r in results if r.step == state.best_step), results[-1])
    summary = {
        "steps": state.step,
        "best_step": state.best_step,
        "best_gold": state.best_gold,
        "before": table(results[0]),
        "after": table(results[-1]),
        "best": table(best),
        "gain_after": gains(results[-1]),
        "gain_best": gains(best),
        "difficulty": dict(difficulty),
    }
    write_json(os.path.join(run_dir, "summary.json"), summary)
