"""Rollouts as tensors: sampled (prompt, response) token sequences packed for PPO's forward passes.

A row is ``prompt_ids + response_ids`` right-padded to the batch width; the response tokens are
re-indexed into a ``[B, T]`` grid (``T`` = longest response) with ``mask`` marking real tokens.
``gather_index[b, t]`` is the position whose output predicts response token ``t`` (the token
before it), so the LM head and the value head run only at those positions. A response that
ended with EOS keeps the EOS token: it is an action the policy took and is rewarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["RolloutBatch", "pack"]


@dataclass
class RolloutBatch:
    """Packed sequences. Sequence tensors are ``[B, W]``; response tensors ``[B, T]``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    gather_index: torch.Tensor
    response_ids: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> RolloutBatch:
        return RolloutBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.gather_index.to(device),
            self.response_ids.to(device),
            self.mask.to(device),
        )

    def select(self, rows: Sequence[int]) -> RolloutBatch:
        """The given rows, trimmed to their own widths (a minibatch pads no more than it needs)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        attn = self.attention_mask[idx]
        mask = self.mask[idx]
        width = int(attn.sum(-1).max())
        t_max = max(1, int(mask.sum(-1).max()))
        return RolloutBatch(
            self.input_ids[idx, :width],
            attn[:, :width],
            self.gather_index[idx, :t_max],
            self.response_ids[idx, :t_max],
            mask[:, :t_max],
        )


def pack(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad_id: int) -> RolloutBatch:
    """Pack rows of (prompt, response) token ids. Every prompt must be non-empty."""
    if len(prompt_ids) != len(response_ids) or not prompt_ids:
        raise ValueError("pack needs as many prompts as responses, at least one")
    width = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids))
    t_max = max(1, max(len(r) for r in response_ids))
    n = len(prompt_ids)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    gather = torch.zeros((n, t_max), dtype=torch.long)
    targets = torch.full((n, t_max), pad_id, dtype=torch.long)
    mask = torch.zeros((n, t_max), dtype=torch.float32)
    for row, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        if not p:
            raise ValueError(f"row {row}: empty prompt")
        seq = list(p) + list(r)
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
        if r:
            gather[row, : len(r)] = torch.arange(len(p) - 1, len(p) - 1 + len(r))
            targets[row, : len(r)] = torch.tensor(list(r))
            mask[row, : len(r)] = 1.0
    return RolloutBatch(input_ids, attention, gather, targets, mask)
