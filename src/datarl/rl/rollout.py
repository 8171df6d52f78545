"""Rollouts as tensors: sampled (prompt, response) token sequences packed for PPO's forward passes.

A row is ``prompt_ids + response_ids`` right-padded to the batch width; the response tokens are
re-indexed into a ``[B, T]`` grid (``T`` = longest response) with ``mask`` marking real tokens.
``gather_index[b, t]`` is the position whose output predicts response token ``t`` (the token
before it), so the LM head and the value head run only at those positions. A response that
ended with EOS keeps the EOS token: it is an action the policy took and is rewarded.

Forward passes run over micro-batches of rows of similar length (:func:`length_groups`): a batch whose
prompts or responses differ in length pads every row to the longest, and on the embedded suite a fifth of
a batch's tokens were padding. Gradients accumulated over micro-batches weighted by their share of the
tokens are those of one pass over the whole batch, so the grouping changes the cost, not the update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["RolloutBatch", "pack", "length_groups", "GROUP_OVERHEAD_TOKENS"]

# What one more forward pass costs beyond its tokens, counted in tokens: it keeps length_groups from cutting
# a batch into many tiny passes to save a few pad tokens (Python and kernel-launch overhead per pass).
GROUP_OVERHEAD_TOKENS = 256


def length_groups(
    lengths: Sequence[int], max_rows: int, overhead_tokens: int = GROUP_OVERHEAD_TOKENS
) -> list[list[int]]:
    """Positions ``0..len(lengths)-1`` cut into groups of at most ``max_rows`` that minimise the padded
    tokens (each group costs its rows x its longest length) plus ``overhead_tokens`` a group.

    The optimum is a cut of the lengths sorted longest first into runs (exchanging rows between groups
    never lowers the cost otherwise), found exactly by dynamic programming. Deterministic: rows of equal
    length keep their input order. Groups come longest first, each in sorted order."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[i]: the cost of the first i sorted rows
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - max_rows), i):  # the last group: sorted rows j..i-1, as wide as row j
            cost = best[j] + (i - j) * lengths[order[j]] + overhead_tokens
            if cost < best[i]:
                best[i], cut[i] = cost, j
    groups: list[list[int]] = []
    i = n
    while i > 0:
        groups.append(order[cut[i] : i])
        i = cut[i]
    return groups[::-1]


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

    def micro_batches(self, rows: Sequence[int], max_rows: int, by_length: bool = True) -> list[list[int]]:
        """``rows`` cut into micro-batches of at most ``max_rows``: rows of similar length together
        (:func:`length_groups` on each row's tokens, prompt and response), or with ``by_length`` False in
        the given order."""
        rows = list(rows)
        if not by_length:
            return [rows[i : i + max_rows] for i in range(0, len(rows), max_rows)]
        lengths = self.attention_mask[rows].sum(-1).tolist() if rows else []
        return [[rows[i] for i in group] for group in length_groups(lengths, max_rows)]

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
