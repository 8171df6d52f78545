"""The PPO critic as one interface, :class:`Critic`, with its two implementations.

- :class:`SeparateCritic` (``value_init: policy`` or a BT model directory): a value model of its own.
  Its values come from its own body pass; the policy's update pass is the policy's alone; each loss
  has its own backward call; its optimiser trains its whole model.
- :class:`SharedCritic` (``value_init: shared``): a value head on the policy's own body. One body
  pass gives the policy's log-probs and the values; one backward carries both losses into the
  body; its optimiser trains the head only (the body is the policy's, with the actor's optimiser).

Both are critics *of one policy*: the update's forward pass (:meth:`Critic.update_pass`) gives the
policy's log-probs and entropy together with the values, because a shared critic's values come out
of the policy's own body pass. During a critic warm-up (``train_policy`` False) the policy's pass
builds no graph and only the critic learns. A checkpoint holds :meth:`Critic.state_dict`: the value
model's parameters, or the shared head's only.

A critic-free run (``advantage: grpo`` or ``rloo``) has no critic at all: the trainer's update pass is
:func:`policy_pass` alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from datarl.models.value import (
    SharedValueHead,
    ValueModel,
    response_forward,
    response_forward_with_values,
    separate_value_model,
    shared_value_head,
)
from datarl.rl.rollout import RolloutBatch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["Critic", "UpdatePass", "AheadPass", "SeparateCritic", "SharedCritic", "load_critic", "policy_pass"]


@dataclass(frozen=True)
class UpdatePass:
    """The update's forward pass over a micro-batch, ``[B, T]`` each: the policy's log-probs of the response
    tokens (with gradients unless the critic warms up), their entropy (detached) and the values (with
    gradients)."""

    logp: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor


@dataclass(frozen=True)
class AheadPass:
    """What a critic ran of the update's forward pass over one micro-batch before GAE, with gradients (one
    PPO epoch over one minibatch: nothing is updated in between, so this pass serves both). ``values``
    detached are the old values; ``whole`` is the whole update pass when the critic shares the policy's
    body pass."""

    values: torch.Tensor
    whole: UpdatePass | None = None


def policy_pass(
    policy_model: torch.nn.Module, sub: RolloutBatch, temperature: float, train_policy: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's part of the update's forward pass over ``sub``: the response tokens' log-probs ``[B, T]``
    (with gradients unless ``train_policy`` is False: a critic warm-up builds no policy graph) and their
    entropy (detached). A separate critic adds its values; a critic-free run (``grpo``, ``rloo``) uses it
    alone."""
    with torch.set_grad_enabled(train_policy):
        return response_forward(
            policy_model,
            sub.input_ids,
            sub.attention_mask,
            sub.gather_index,
            sub.response_ids,
            temperature,
            with_entropy=True,
        )


class Critic(Protocol):
    """What the PPO loop needs from a critic of one policy."""

    def values(self, batch: RolloutBatch) -> torch.Tensor:
        """Values ``[B, T]`` of the response tokens (with gradients unless the caller turned them off)."""
        ...

    def run_ahead(self, batch: RolloutBatch, temperature: float, train_policy: bool) -> AheadPass:
        """The part of the update's forward pass over the micro-batch ``batch`` that can run before GAE."""
        ...

    def update_pass(
        self, sub: RolloutBatch, temperature: float, train_policy: bool, ahead: AheadPass | None = None
    ) -> UpdatePass:
        """The update's forward pass over ``sub``; ``ahead``: :meth:`run_ahead`'s pass over the same ``sub``."""
        ...

    def backward(self, policy_loss: torch.Tensor, value_loss: torch.Tensor, share: float, train_policy: bool) -> None:
        """Backpropagate a micro-batch's losses, each weighted by ``share`` (only the value loss in a warm-up)."""
        ...

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """What the critic optimiser trains and its gradient clipping covers."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The critic's part of a checkpoint (``state.pt``'s ``critic``)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class SeparateCritic:
    """A value model of its own beside ``policy_model``: see the module docstring."""

    def __init__(self, model: ValueModel, policy_model: torch.nn.Module) -> None:
        self.model = model
        self.policy_model = policy_model

    def values(self, batch: RolloutBatch) -> torch.Tensor:
        return self.model(batch.input_ids, batch.attention_mask, batch.gather_index)

    def run_ahead(self, batch: RolloutBatch, temperature: float, train_policy: bool) -> AheadPass:
        return AheadPass(self.values(batch))  # the policy's part runs in the update, as unfused

    def update_pass(
        self, sub: RolloutBatch, temperature: float, train_policy: bool, ahead: AheadPass | None = None
    ) -> UpdatePass:
        logp, entropy = policy_pass(self.policy_model, sub, temperature, train_policy)
        return UpdatePass(logp, entropy, self.values(sub) if ahead is None else ahead.values)

    def backward(self, policy_loss: torch.Tensor, value_loss: torch.Tensor, share: float, train_policy: bool) -> None:
        # Two models: a backward each (one call over both graphs interleaves them: slower on CPU).
        if train_policy:
            (policy_loss * share).backward()
        (value_loss * share).backward()

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.model.parameters()

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state)


class SharedCritic:
    """A value head on the policy's own body: see the module docstring."""

    def __init__(self, head: SharedValueHead) -> None:
        self.head = head

    def values(self, batch: RolloutBatch) -> torch.Tensor:
        return self.head(batch.input_ids, batch.attention_mask, batch.gather_index)

    def run_ahead(self, batch: RolloutBatch, temperature: float, train_policy: bool) -> AheadPass:
        whole = self.update_pass(batch, temperature, train_policy)  # the body pass is the policy's too
        return AheadPass(whole.values, whole)

    def update_pass(
        self, sub: RolloutBatch, temperature: float, train_policy: bool, ahead: AheadPass | None = None
    ) -> UpdatePass:
        if ahead is not None and ahead.whole is not None:
            return ahead.whole
        return UpdatePass(
            *response_forward_with_values(
                self.head.policy_model,
                self.head.head,
                sub.input_ids,
                sub.attention_mask,
                sub.gather_index,
                sub.response_ids,
                temperature,
                policy_grad=train_policy,
            )
        )

    def backward(self, policy_loss: torch.Tensor, value_loss: torch.Tensor, share: float, train_policy: bool) -> None:
        # One body: one backward carries both losses into it.
        ((policy_loss + value_loss if train_policy else value_loss) * share).backward()

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.head.parameters()  # the head's only: the body is the policy's

    def state_dict(self) -> dict[str, Any]:
        return self.head.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.head.load_state_dict(state)


def load_critic(
    value_init: str, policy_dir: str, policy_model: PreTrainedModel, *, dtype: str = "float32", device: str = "cpu"
) -> Critic:
    """The critic ``value_init`` names (``policy``, ``shared`` or a BT model directory) for ``policy_model``,
    the trainable policy loaded from ``policy_dir``."""
    if value_init == "shared":
        return SharedCritic(shared_value_head(policy_model, dtype=dtype, device=device))
    return SeparateCritic(separate_value_model(value_init, policy_dir, dtype=dtype, device=device), policy_model)
