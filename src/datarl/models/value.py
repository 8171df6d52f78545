"""The PPO critic: a causal-LM body with a scalar head giving one value per token.

Initialised from the SFT policy (its transformer body, a zero-initialised head, so the first
values are 0 and the first advantages are the rewards themselves) or from a BT reward model
made by ``datarl train-bt`` (its body and its reward head, so values start as reward
estimates). ``value_init`` in the PPO config picks one: ``"policy"`` or a BT directory; or
``"shared"``: a zero-initialised value head on the *policy's own* body (one model in memory, and
the policy and value losses share one forward and one backward; the value loss then also trains
the policy's body, as in the original shared-network PPO).

Also here: the forward pass that PPO needs from the policy, computing the LM head only at the
response positions (the prompt's vocabulary logits are never materialised).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, overload

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "ValueModel",
    "SharedValueHead",
    "load_value_model",
    "separate_value_model",
    "shared_value_head",
    "body_and_head",
    "response_forward",
    "response_forward_with_values",
]


def body_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The transformer body and output head of a HF causal LM (``model.model`` and ``lm_head``)."""
    body = getattr(model, getattr(model, "base_model_prefix", "model"), None) or getattr(model, "model", None)
    head = getattr(model, "lm_head", None)
    if body is None or head is None:
        raise ValueError(f"{type(model).__name__}: expected a decoder with a body and an lm_head")
    return body, head


def hidden_at(
    body: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, gather_index: torch.Tensor
) -> torch.Tensor:
    """The body's last hidden states ``[B, T, H]`` at the positions ``gather_index`` ``[B, T]`` selects."""
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return hidden.gather(1, gather_index[..., None].expand(-1, -1, hidden.shape[-1]))


def _zero_head(hidden_size: int) -> torch.nn.Linear:
    """hidden -> 1, all zeros: the first values are 0, so the first advantages are the rewards themselves."""
    head = torch.nn.Linear(hidden_size, 1, bias=True)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


class ValueModel(torch.nn.Module):
    """``body`` (a HF decoder body) and ``head`` (hidden -> 1)."""

    def __init__(self, body: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, gather_index: torch.Tensor
    ) -> torch.Tensor:
        """Values ``[B, T]`` at the hidden states selected by ``gather_index`` ``[B, T]``."""
        return self.head(hidden_at(self.body, input_ids, attention_mask, gather_index)).squeeze(-1).float()


class SharedValueHead(torch.nn.Module):
    """A value head on another model's body. Its parameters (``state_dict``, ``parameters()``) are the
    head's only: the body belongs to the policy and is trained by the policy's optimiser."""

    def __init__(self, policy_model: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head
        self._policy = [policy_model]  # a list: not registered as a submodule

    @property
    def policy_model(self) -> torch.nn.Module:
        return self._policy[0]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, gather_index: torch.Tensor
    ) -> torch.Tensor:
        body, _ = body_and_head(self.policy_model)
        return self.head(hidden_at(body, input_ids, attention_mask, gather_index)).squeeze(-1).float()


def load_value_model(
    init: str,
    policy_dir: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    policy_model: PreTrainedModel | None = None,
) -> ValueModel | SharedValueHead:
    """A critic from ``init``: ``"policy"`` (the SFT policy at ``policy_dir``), a BT model directory, or
    ``"shared"`` (a head on ``policy_model``, the trainable policy itself)."""
    if init == "shared":
        if policy_model is None:
            raise ValueError("value_init: shared needs the policy model to put the value head on")
        return shared_value_head(policy_model, dtype=dtype, device=device)
    return separate_value_model(init, policy_dir, dtype=dtype, device=device)


def shared_value_head(policy_model: PreTrainedModel, *, dtype: str = "float32", device: str = "cpu") -> SharedValueHead:
    """``value_init: shared``: a zero-initialised value head on ``policy_model``'s own body."""
    head = _zero_head(policy_model.config.hidden_size).to(getattr(torch, dtype))
    shared = SharedValueHead(policy_model, head).to(device)
    shared.train()
    return shared


def separate_value_model(init: str, policy_dir: str, *, dtype: str = "float32", device: str = "cpu") -> ValueModel:
    """A value model of its own from ``init``: ``"policy"`` (the SFT policy's body at ``policy_dir`` and a
    zero head) or a BT model directory (its body and reward head)."""
    torch_dtype = getattr(torch, dtype)
    if init == "policy":
        from datarl.models.loading import load_policy

        policy = load_policy(policy_dir, dtype=dtype, device=device)
        body, _ = body_and_head(policy.model)
        head: torch.nn.Module = _zero_head(policy.model.config.hidden_size)
    else:
        from datarl.rewards.bt import META_FILE

        if not os.path.isfile(os.path.join(init, META_FILE)):
            raise ValueError(
                f"value_init: {init} is neither 'policy' nor a BT model directory (no {META_FILE}); "
                "train one with `datarl train-bt` or use value_init: policy"
            )
        from transformers import AutoModelForSequenceClassification

        bt = AutoModelForSequenceClassification.from_pretrained(init, dtype=torch_dtype)
        body = getattr(bt, bt.base_model_prefix)
        head = bt.score
    model = ValueModel(body, head.to(torch_dtype)).to(device)
    model.train()
    return model


@overload
def response_forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    gather_index: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = ...,
    with_entropy: Literal[False] = ...,
) -> tuple[torch.Tensor, None]: ...
@overload
def response_forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    gather_index: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = ...,
    *,
    with_entropy: Literal[True],
) -> tuple[torch.Tensor, torch.Tensor]: ...


def response_forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    gather_index: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs ``[B, T]`` of ``targets`` under ``model`` at the response positions, and their entropy
    (detached: it is logged, not optimised; None unless ``with_entropy``).

    ``gather_index[b, t]`` is the position whose logits predict response token ``t`` of row ``b``
    (the token before it). Logits are divided by ``temperature`` (the sampling distribution).
    """
    body, head = body_and_head(model)
    logp, logp_all = _logprobs(
        head(hidden_at(body, input_ids, attention_mask, gather_index)).float(), targets, temperature
    )
    return logp, _entropy(logp_all) if with_entropy else None


def response_forward_with_values(
    model: torch.nn.Module,
    value_head: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    gather_index: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    policy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`response_forward` and the values of a :class:`SharedValueHead`'s head from one body pass:
    ``(logp, entropy, values)``. With ``policy_grad`` False the body runs without gradients and only the
    value head gets them (a critic warm-up)."""
    body, head = body_and_head(model)
    with torch.set_grad_enabled(policy_grad and torch.is_grad_enabled()):
        picked = hidden_at(body, input_ids, attention_mask, gather_index)
        logp, logp_all = _logprobs(head(picked).float(), targets, temperature)
        entropy = _entropy(logp_all)
    values = value_head(picked).squeeze(-1).float()
    return logp, entropy, values


def _logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-probs ``[B, T]`` of ``targets`` and the whole log-softmax ``[B, T, V]`` they are read from."""
    if temperature not in (0.0, 1.0):
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    return logp_all.gather(-1, targets[..., None]).squeeze(-1), logp_all


def _entropy(logp_all: torch.Tensor) -> torch.Tensor:
    """A monitor, not a loss term: computed outside the graph (no ``[B, T, V]`` tensors kept)."""
    with torch.no_grad():
        return -(logp_all.exp() * logp_all).sum(-1)
