"""Supervised training of a causal LM on (prompt, response) pairs: the SFT loop.

The loss covers response tokens only (the prompt is context), unless
``loss_on_prompt`` is set, which turns the same loop into plain language-model
pretraining on whole texts. Batches are drawn by a seeded sampler, so a run is
reproducible on the same machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from datarl.io import progress_bar
from datarl.models.generate import prompt_text, text_ids
from datarl.models.loading import Policy
from datarl.models.optim import (
    accumulated_step,
    adamw,
    decay_groups,
    length_parts,
    loss_summary,
    lr_factor,
    set_lr,
    update_bar,
)


@dataclass(frozen=True)
class LMTrainConfig:
    """One training phase.

    steps: optimiser steps.
    batch_size: sequences per step.
    lr: peak AdamW learning rate (linear warm-up, cosine decay to 10%).
    warmup_steps: steps of linear warm-up.
    weight_decay: AdamW weight decay.
    loss_on_prompt: also train on prompt tokens (pretraining); default: response only.
    seed: batch sampling order.
    length_window: draw each batch from a window of ``length_window * batch_size`` neighbours in length
        order (less padding, batches of similar texts); 0 draws from all examples alike.
    chunk_rows: sequences per forward and backward pass: each step's batch is sorted by length and run in
        parts of at most this many, their gradients summed (each part weighted by its share of the batch's
        loss tokens) before the one update. The same update as the whole batch at once up to float rounding,
        with less padding (the SFT phases' batches pad to twice their tokens; parts of 8 to 1.2 times).
        0 = the whole batch at once.
    """

    steps: int = 500
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    loss_on_prompt: bool = False
    seed: int = 0
    length_window: int = 0
    chunk_rows: int = 8

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("steps >= 0, batch_size >= 1, lr > 0 and warmup_steps >= 0 are required")
        if self.chunk_rows < 0:
            raise ValueError(f"chunk_rows must be >= 0 (0 = the whole batch at once), got {self.chunk_rows}")


def tokenize_pairs(
    policy: Policy, pairs: Sequence[tuple[Any, str]], loss_on_prompt: bool
) -> list[tuple[list[int], int]]:
    """``(ids, n_context)`` per pair: the chat-formatted prompt, the response and EOS; tokens before
    ``n_context`` carry no loss. A ``None`` prompt makes the response plain text (BOS, text, EOS:
    pretraining corpus). Pairs longer than the context are cut from the right."""
    tok = policy.tokenizer
    limit = policy.context_length
    out = []
    for prompt, response in pairs:
        if prompt is None:
            p_ids = [tok.bos_token_id] if tok.bos_token_id is not None else []
        else:
            p_ids = text_ids(tok, prompt_text(tok, prompt))
        r_ids = text_ids(tok, response) + [tok.eos_token_id]
        ids = (p_ids + r_ids)[:limit]
        out.append((ids, 0 if loss_on_prompt else min(len(p_ids), len(ids) - 1)))
    return out


def train_lm(
    policy: Policy,
    pairs: Sequence[tuple[Any, str]],
    cfg: LMTrainConfig,
    *,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train ``policy.model`` in place; returns ``{"loss_first", "loss_last", "seconds", "tokens"}``."""
    if not pairs:
        raise ValueError("no training examples")
    data = tokenize_pairs(policy, pairs, cfg.loss_on_prompt)
    model = policy.model
    model.train()
    opt = adamw(decay_groups(model.parameters(), cfg.weight_decay), cfg.lr)
    rng = random.Random(cfg.seed)
    by_length = sorted(range(len(data)), key=lambda i: len(data[i][0]))
    pad = policy.tokenizer.pad_token_id
    bar = progress_bar(cfg.steps, progress, unit="step", desc="train")
    losses: list[float] = []
    tokens = 0
    start = time.perf_counter()
    for step in range(cfg.steps):
        set_lr(opt, lr_factor(step, cfg.steps, cfg.warmup_steps))
        batch = [data[i] for i in _batch_indices(rng, by_length, cfg)]
        losses.append(accumulated_step(model, opt, _part_losses(model, batch, pad, cfg.chunk_rows)))
        tokens += sum(len(ids) for ids, _ in batch)
        if on_step is not None:
            on_step(step, losses[-1])
        update_bar(bar, step, losses)
    if bar is not None:
        bar.close()
    model.eval()
    return {**loss_summary(losses), "seconds": time.perf_counter() - start, "tokens": float(tokens)}


def _part_losses(model: Any, batch: Sequence[tuple[list[int], int]], pad: int, chunk_rows: int) -> Iterator[Any]:
    """The batch's loss one length-sorted part at a time (:func:`~datarl.models.optim.length_parts`), each part's
    mean scaled by its share of the batch's loss tokens, so the parts sum to the whole batch's mean loss."""
    import torch

    total = sum(_loss_tokens(ids, n_ctx) for ids, n_ctx in batch)
    for rows in length_parts([len(ids) for ids, _ in batch], chunk_rows):
        part = [batch[i] for i in rows]
        share = sum(_loss_tokens(ids, n_ctx) for ids, n_ctx in part)
        if share == 0 or total == 0:
            continue  # no labelled token here: the part adds nothing to the batch's loss
        width = max(len(ids) for ids, _ in part)
        input_ids = torch.full((len(part), width), pad, dtype=torch.long)
        labels = torch.full((len(part), width), -100, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for row, (ids, n_ctx) in enumerate(part):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, n_ctx : len(ids)] = torch.tensor(ids[n_ctx:])
            mask[row, : len(ids)] = 1
        yield _loss(model, input_ids, mask, labels) * (share / total)


def _loss_tokens(ids: Sequence[int], n_ctx: int) -> int:
    """How many next-token targets of a row carry loss: positions ``max(n_ctx, 1) .. len(ids) - 1``."""
    return max(0, len(ids) - max(n_ctx, 1))


def _loss(model: Any, input_ids: Any, mask: Any, labels: Any) -> Any:
    """Mean next-token cross-entropy over labelled positions, the same value as ``model(...).loss``.

    For a plain decoder with an output head (Llama, Qwen2, Mistral...) the head's logits are
    computed only where there is a label: response-only SFT skips the prompt positions, and
    every phase skips padding. Other models go through their own forward.
    """
    import torch.nn.functional as F

    body, head = getattr(model, "model", None), getattr(model, "lm_head", None)
    if (
        body is None
        or head is None
        or getattr(model.config, "final_logit_softcapping", None)
        or getattr(model.config, "logit_scale", None)
    ):
        return model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    hidden = body(input_ids=input_ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep])


def _batch_indices(rng: random.Random, by_length: list[int], cfg: LMTrainConfig) -> list[int]:
    """A batch of example indices; with a length window, neighbours in length order."""
    n = len(by_length)
    window = cfg.length_window * cfg.batch_size
    if cfg.length_window <= 0 or window >= n:
        return [by_length[rng.randrange(n)] for _ in range(cfg.batch_size)]
    start = rng.randrange(n - window + 1)
    return [by_length[start + rng.randrange(window)] for _ in range(cfg.batch_size)]
