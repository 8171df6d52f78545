"""The optimisation pieces every training loop here shares: param groups, the schedule, one step.

SFT (``train_lm``), the BT reward model and the GenRM judge all train with AdamW, weight decay on
matrices only, linear warm-up then cosine decay to 10% of the peak, and gradients clipped to norm 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def decay_groups(params: Iterable[Any], weight_decay: float, **extra: Any) -> list[dict[str, Any]]:
    """Two AdamW param groups: weight decay on matrices, none on vectors (norms, biases)."""
    params = list(params)
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, **extra},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, **extra},
    ]


def adamw(groups: list[dict[str, Any]], lr: float) -> Any:
    """AdamW with the betas every loop here uses; each group keeps its peak rate as ``base_lr``."""
    import torch

    for group in groups:
        group.setdefault("base_lr", lr)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def lr_factor(step: int, steps: int, warmup_steps: int) -> float:
    """Fraction of the peak rate at ``step``: linear warm-up, then cosine decay to 0.1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(opt: Any, factor: float) -> None:
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * factor


def optimizer_step(model: Any, opt: Any, loss: Any) -> float:
    """Backward, clip to norm 1, step; returns the loss as a float."""
    return accumulated_step(model, opt, [loss])


def accumulated_step(model: Any, opt: Any, losses: Iterable[Any]) -> float:
    """One update from a batch run in parts: backward each part's loss as it comes (pass a generator, so one
    part's graph is alive at a time; each loss already scaled to its share of the batch), then clip the summed
    gradient to norm 1 and step; returns the summed loss as a float."""
    import torch

    opt.zero_grad(set_to_none=True)
    total = 0.0
    for loss in losses:
        loss.backward()
        total += float(loss.detach())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return total


def length_parts(lengths: Sequence[int], rows: int, unit: int = 1) -> list[list[int]]:
    """Row indices in parts of at most ``rows`` (at least one unit), units of ``unit`` adjacent rows kept whole
    and in order, sorted by their longest row so each part pads little; ``rows`` 0 = one part of everything."""
    units = [list(range(i, min(i + unit, len(lengths)))) for i in range(0, len(lengths), unit)]
    if rows <= 0:
        return [[i for u in units for i in u]] if units else []
    units.sort(key=lambda u: max(lengths[i] for i in u))
    per_part = max(1, rows // unit)
    return [[i for u in units[k : k + per_part] for i in u] for k in range(0, len(units), per_part)]


def update_bar(bar: Any, step: int, losses: Sequence[float]) -> None:
    if bar is None:
        return
    bar.update(1)
    if step % 10 == 0:
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")


def loss_summary(losses: Sequence[float]) -> dict[str, float]:
    """Mean of the first and of the last ten losses (NaN when there were no steps)."""
    head = list(losses[:10]) or [math.nan]
    tail = list(losses[-10:]) or [math.nan]
    return {"loss_first": sum(head) / len(head), "loss_last": sum(tail) / len(tail)}
