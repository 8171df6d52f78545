"""PPO maths as pure tensor functions (no models, no I/O): what ``rl/trainer.py`` calls.

Shapes: ``[batch, T]`` over response tokens, with ``mask`` 1 on real tokens and 0 on padding
(responses are right-aligned to their prompt, so padding is at the end of each row). Every
function is exact on masked positions: padding never contributes to a sum, a mean or a
bootstrap value. Sequence-level inputs (scores, group ids) are ``[batch]``. Hand-computed cases
are in ``tests/rl/test_ppo.py``; ``docs/ppo.md`` lists which line implements each PPO detail.

Advantage estimators (:data:`ESTIMATORS`): ``gae`` needs a critic's values (:func:`gae`); the
critic-free ``grpo`` and ``rloo`` compare each sequence's score with the other samples of its
prompt (:func:`group_advantages`), and the per-token KL penalty then enters as its reward-to-go
(:func:`reward_to_go`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: this module's import stays light
    from torch import Tensor

__all__ = [
    "ESTIMATORS",
    "CRITIC_FREE",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "kl_per_token",
    "token_rewards",
    "gae",
    "grpo_advantages",
    "rloo_advantages",
    "group_advantages",
    "reward_to_go",
    "policy_loss",
    "value_loss",
    "entropy_from_logits",
    "AdaptiveKLController",
    "FixedKLController",
]

ESTIMATORS = ("gae", "grpo", "rloo")  # ppo.advantage: how a sequence's advantage is estimated
CRITIC_FREE = ("grpo", "rloo")  # the estimators that need no value model


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` where ``mask`` is 1 (over everything, or along ``dim``)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` where ``mask`` is 1 (Bessel-corrected by default)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1)
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / std`` over the masked entries; padding stays 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * (var + eps).rsqrt()
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_per_token(logp: Tensor, ref_logp: Tensor, kind: str = "k1") -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from sampled tokens' log-probs.

    ``k1``: ``logp - ref_logp`` (unbiased, can be negative per token);
    ``k3``: ``exp(ref - logp) - (ref - logp) - 1`` (unbiased, always >= 0; Schulman's estimator).
    """
    import torch

    diff = logp - ref_logp
    if kind == "k1":
        return diff
    if kind == "k3":
        return torch.expm1(-diff) + diff
    raise ValueError(f"kl kind must be 'k1' or 'k3', got {kind!r}")


def token_rewards(scores: Tensor, kl: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """Per-token rewards: ``-kl_coef * kl`` at every token, plus the sequence score at its last token."""
    import torch

    rewards = -kl_coef * kl * mask
    lengths = mask.sum(-1).long()
    last = (lengths - 1).clamp(min=0)
    rows = torch.arange(mask.shape[0], device=mask.device)
    has_tokens = (lengths > 0).to(rewards.dtype)
    rewards[rows, last] += scores.to(rewards.dtype) * has_tokens
    return rewards


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over each row's tokens; returns ``(advantages, returns)``.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` with ``V`` after the last real token taken as 0
    (the episode ends there), ``A_t = delta_t + gamma * lam * A_{t+1}``; ``returns = A + V``.
    """
    import torch

    T = rewards.shape[-1]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        m = mask[:, t].to(rewards.dtype)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        adv[:, t] = a * m
        # Padding passes nothing back: the next real step sees V = 0 and A = 0 beyond the end.
        next_adv = a * m
        next_value = values[:, t] * m
    returns = adv + values * mask
    return adv, returns


def _group_sums(x: Tensor, groups: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each element's group (as ``0..G-1``), each group's size and each group's sum of ``x``."""
    import torch

    _, index = torch.unique(groups, return_inverse=True)
    sizes = torch.bincount(index).to(x.dtype)
    sums = torch.zeros(len(sizes), dtype=x.dtype, device=x.device).index_add_(0, index, x)
    if bool((sizes < 2).any()):
        raise ValueError("a group baseline needs at least 2 samples in every group (samples_per_prompt >= 2)")
    return index, sizes, sums


def grpo_advantages(scores: Tensor, groups: Tensor, scale_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO's sequence advantages: ``(r_i - mean_g) / (std_g + eps)`` within each group ``g``.

    ``groups[i]`` names the group of ``scores[i]`` (the samples of one prompt); ``std_g`` is the
    Bessel-corrected standard deviation of the group's scores. ``scale_by_std=False`` leaves out the
    division (Dr. GRPO): ``r_i - mean_g``. A group whose scores are all equal gets 0 either way.
    """
    index, sizes, sums = _group_sums(scores, groups)
    centred = scores - (sums / sizes)[index]
    if not scale_by_std:
        return centred
    squares = sums.new_zeros(sums.shape).index_add_(0, index, centred**2)
    std = (squares / (sizes - 1)).sqrt()
    return centred / (std[index] + eps)


def rloo_advantages(scores: Tensor, groups: Tensor) -> Tensor:
    """REINFORCE leave-one-out: ``r_i - mean(r_j for the other j of i's group)``.

    Equal to ``k / (k - 1) * (r_i - mean_g)`` for a group of ``k``; a group of equal scores gets 0.
    """
    index, sizes, sums = _group_sums(scores, groups)
    return scores - (sums[index] - scores) / (sizes[index] - 1)


def group_advantages(estimator: str, scores: Tensor, groups: Tensor, *, scale_by_std: bool = True) -> Tensor:
    """The sequence advantages of a critic-free ``estimator`` (``grpo`` or ``rloo``), ``[batch]``."""
    if estimator == "grpo":
        return grpo_advantages(scores, groups, scale_by_std)
    if estimator == "rloo":
        return rloo_advantages(scores, groups)
    raise ValueError(f"group_advantages: estimator must be one of {', '.join(CRITIC_FREE)}, got {estimator!r}")


def reward_to_go(rewards: Tensor, mask: Tensor) -> Tensor:
    """``A_t = sum of rewards[t:]`` over each row's real tokens: GAE with ``V = 0`` and ``gamma = lam = 1``.

    Fed :func:`token_rewards` of the group advantages, every token of a sequence gets its sequence's
    advantage minus the KL penalty still to come (``kl_coef * sum of kl[t:]``).
    """
    masked = rewards * mask
    return masked.flip(-1).cumsum(-1).flip(-1) * mask


@dataclass(frozen=True)
class LossStats:
    """Scalars logged with a loss: clip fraction and (policy only) approximate KL to the old policy."""

    clipfrac: float
    approx_kl: float = math.nan


def policy_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_eps: float
) -> tuple[Tensor, LossStats]:
    """Clipped surrogate: ``mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps)))`` over real tokens."""
    import torch

    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = float(masked_mean((clipped > unclipped).float(), mask))
        approx_kl = float(masked_mean(0.5 * (logp - old_logp) ** 2, mask))
    return loss, LossStats(clipfrac, approx_kl)


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float | None
) -> tuple[Tensor, LossStats]:
    """``0.5 * mean(max((V - R)^2, (clip(V, V_old +- c) - R)^2))``; plain squared error when ``clip`` is None."""
    import torch

    err = (values - returns) ** 2
    if clip is None:
        return 0.5 * masked_mean(err, mask), LossStats(0.0)
    clipped_v = old_values + torch.clamp(values - old_values, -clip, clip)
    err_clipped = (clipped_v - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        clipfrac = float(masked_mean((err_clipped > err).float(), mask))
    return loss, LossStats(clipfrac)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of the softmax over the last dimension (nats)."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, value: float) -> None:
        self.value = value

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Ziegler et al. (2019): move the coefficient so the measured KL tracks ``target``.

    ``value *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon``.
    """

    def __init__(self, init: float, target: float, horizon: int) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL needs target > 0 and horizon > 0")
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1.0))
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.value = float(state["value"])
