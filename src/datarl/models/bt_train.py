"""``datarl train-bt``: a Bradley-Terry reward model trained on preference pairs, in one loop.

A sequence-classification head (one output) on a causal-LM backbone (the tiny SFT
policy by default, any HF model directory by path) is trained with the Bradley-Terry
loss ``-logsigmoid(r(prompt, chosen) - r(prompt, rejected))``. Input text and reward
position are those of ``rewards.bt`` (chat-formatted prompt + response, reward at the
last token), so training and scoring can never disagree.

Held-out split: pairs are grouped by prompt and a seeded ``eval_fraction`` of the
prompts is held out, so no held-out prompt was seen in training. Metrics (``bt/*``):
pair accuracy (reward of chosen > rejected; a tie counts half) overall, per task, on
clean and on flipped-label pairs, and agreement with the gold ordering where pairs
carry ``chosen_gold``/``rejected_gold``.

Pairs with identical chosen and rejected texts are an error naming the pair ids (they
carry no preference; a file of them usually means a broken pair maker). The ``flipped``
field is never read for training, only for the metrics.

Output: an ordinary HF directory (``save_pretrained``: model + tokenizer) plus
``datarl_bt.json`` with the config, metrics and the logistic mapping ``{shift, scale}``
(mean and std of the raw rewards of the training responses).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from datarl.errors import UserError
from datarl.io import progress_bar
from datarl.models.loading import save_model_dir
from datarl.models.optim import (
    adamw,
    decay_groups,
    loss_summary,
    lr_factor,
    optimizer_step,
    set_lr,
    update_bar,
)
from datarl.rewards.bt import META_FILE, encode_texts, fit_mapping, raw_rewards

__all__ = ["BTTrainConfig", "BTDataError", "train_bt", "split_by_prompt", "pair_metrics"]


class BTDataError(UserError, ValueError):
    """Pairs that cannot train a BT model (identical texts, empty split); names the pair ids."""


@dataclass(frozen=True)
class BTTrainConfig:
    """How the BT reward model is trained.

    steps: optimiser steps.
    pairs_per_step: preference pairs per step (each is two sequences).
    lr: peak AdamW learning rate (linear warm-up, cosine decay to 10%).
    head_lr: learning rate of the new reward head (it starts from random).
    warmup_steps: steps of linear warm-up.
    weight_decay: AdamW weight decay on matrices.
    max_length: tokens per sequence at most (prompt + response, cut from the right);
        0 = the backbone's context length.
    eval_fraction: share of prompts held out for evaluation, in [0, 1).
    center_coef: weight of ``(r_chosen + r_rejected)^2`` keeping raw rewards near 0 (0 disables).
    seed: held-out split, batch order and head initialisation.
    dtype: backbone dtype (``float32``; ``bfloat16`` for larger backbones).
    """

    steps: int = 200
    pairs_per_step: int = 16
    lr: float = 5e-4
    head_lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.01
    max_length: int = 0
    eval_fraction: float = 0.2
    center_coef: float = 0.01
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.steps < 0 or self.pairs_per_step < 1 or self.warmup_steps < 0 or self.max_length < 0:
            raise ValueError("steps >= 0, pairs_per_step >= 1, warmup_steps >= 0 and max_length >= 0 are required")
        if not (self.lr > 0 and self.head_lr > 0 and self.weight_decay >= 0 and self.center_coef >= 0):
            raise ValueError("lr > 0, head_lr > 0, weight_decay >= 0 and center_coef >= 0 are required")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError("eval_fraction must be in [0, 1)")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError("dtype must be float32, bfloat16 or float16")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prompt_key(pair: Mapping[str, Any]) -> str:
    return str(pair.get("prompt_id") or json.dumps(pair.get("prompt"), sort_keys=True))


def split_by_prompt(
    pairs: Sequence[Mapping[str, Any]], eval_fraction: float, seed: int
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """``(train, held_out)``: a seeded ``eval_fraction`` of distinct prompts goes to held-out."""
    keys = sorted({_prompt_key(p) for p in pairs})
    random.Random(f"bt-split:{seed}").shuffle(keys)
    n_eval = round(len(keys) * eval_fraction) if len(keys) > 1 else 0
    held = set(keys[:n_eval])
    return [p for p in pairs if _prompt_key(p) not in held], [p for p in pairs if _prompt_key(p) in held]


def _check_pairs(pairs: Sequence[Mapping[str, Any]]) -> None:
    same = [str(p.get("id", f"#{i}")) for i, p in enumerate(pairs) if p.get("chosen") == p.get("rejected")]
    if same:
        shown = ", ".join(same[:5]) + (f" and {len(same) - 5} more" if len(same) > 5 else "")
        raise BTDataError(
            f"{len(same)} pair(s) have identical chosen and rejected texts: {shown}; "
            "remove them (they carry no preference)"
        )
    missing = [
        str(p.get("id", f"#{i}"))
        for i, p in enumerate(pairs)
        if not p.get("prompt") or not isinstance(p.get("chosen"), str) or not isinstance(p.get("rejected"), str)
    ]
    if missing:
        raise BTDataError(f"pair(s) without prompt/chosen/rejected text: {', '.join(missing[:5])}")


def _load_backbone(base: str, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not os.path.isdir(base) or not os.path.isfile(os.path.join(base, "config.json")):
        raise BTDataError(
            f"{base}: not a model directory (no config.json); give an HF model directory such as "
            "the one `datarl sft` prints"
        )
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=getattr(torch, dtype))
    model.config.pad_token_id = tokenizer.pad_token_id  # HF's own pooling (pipelines) needs it
    return model, tokenizer


def _encode(tokenizer: Any, pairs: Sequence[Mapping[str, Any]], max_length: int) -> list[tuple[list[int], list[int]]]:
    return [
        (
            encode_texts(tokenizer, p["prompt"], p["chosen"], max_length),
            encode_texts(tokenizer, p["prompt"], p["rejected"], max_length),
        )
        for p in pairs
    ]


def _rewards_of(
    model: Any, data: Sequence[tuple[list[int], list[int]]], pad_id: int, batch_pairs: int = 32
) -> list[tuple[float, float]]:
    import torch

    out: list[tuple[float, float]] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch_pairs):
            chunk = data[start : start + batch_pairs]
            r = raw_rewards(model, [c for c, _ in chunk] + [rj for _, rj in chunk], pad_id).tolist()
            out.extend(zip(r[: len(chunk)], r[len(chunk) :]))
    return out


def pair_metrics(
    pairs: Sequence[Mapping[str, Any]], rewards: Sequence[tuple[float, float]], prefix: str
) -> dict[str, float]:
    """Pair accuracy overall, per task, clean/flipped, and agreement with gold, as ``prefix/...``."""
    groups: dict[str, list[float]] = defaultdict(list)
    for pair, (rc, rr) in zip(pairs, rewards):
        hit = 1.0 if rc > rr else 0.5 if rc == rr else 0.0
        task = str(pair.get("task") or "general")
        for name in ("accuracy", f"accuracy/{task}", "accuracy/flipped" if pair.get("flipped") else "accuracy/clean"):
            groups[name].append(hit)
        gc, gr = pair.get("chosen_gold"), pair.get("rejected_gold")
        if isinstance(gc, (int, float)) and isinstance(gr, (int, float)) and gc != gr:
            gold_hit = hit if gc > gr else 1.0 - hit
            groups["gold_accuracy"].append(gold_hit)
            groups[f"gold_accuracy/{task}"].append(gold_hit)
    out = {f"{prefix}/{k}": sum(v) / len(v) for k, v in sorted(groups.items())}
    out[f"{prefix}/pairs"] = float(len(pairs))
    return out


def _epoch_batches(data: Sequence[tuple[list[int], list[int]]], size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches (every pair once); pairs of similar length share a batch, since
    left padding to the longest row is most of the cost on CPU."""
    order = list(range(len(data)))
    rng.shuffle(order)
    block = size * 8
    batches: list[list[int]] = []
    for start in range(0, len(order), block):
        chunk = sorted(order[start : start + block], key=lambda i: max(len(data[i][0]), len(data[i][1])))
        batches += [chunk[k : k + size] for k in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def _optimizer(model: Any, cfg: BTTrainConfig) -> Any:
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    body = [p for p in model.parameters() if id(p) not in head_ids]
    head_params = [p for p in model.parameters() if id(p) in head_ids]
    groups = decay_groups(body, cfg.weight_decay)
    if head_params:
        groups.append({"params": head_params, "weight_decay": 0.0, "base_lr": cfg.head_lr})
    return adamw(groups, cfg.lr)


def train_bt(
    pairs: Sequence[Mapping[str, Any]],
    base: str,
    out_dir: str,
    cfg: BTTrainConfig | None = None,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a BT reward model from ``base`` on ``pairs``; save it to ``out_dir``; return metrics.

    Metrics: ``bt/loss_first``, ``bt/loss_last``, ``train/*`` and ``eval/*`` pair accuracies
    (see ``pair_metrics``), ``mapping`` ``{shift, scale}``, pair counts and ``seconds``.
    """
    import torch
    import torch.nn.functional as F

    cfg = cfg or BTTrainConfig()
    if not pairs:
        raise BTDataError("no pairs to train on")
    _check_pairs(pairs)
    train, held = split_by_prompt(pairs, cfg.eval_fraction, cfg.seed)
    if not train:
        raise BTDataError("no training pairs after the held-out split; lower eval_fraction")
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model, tok = _load_backbone(base, cfg.dtype)
    max_length = cfg.max_length or int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    data, eval_data = _encode(tok, train, max_length), _encode(tok, held, max_length)
    pad = tok.pad_token_id
    opt = _optimizer(model, cfg)
    rng = random.Random(f"bt-batches:{cfg.seed}")
    queue: list[list[int]] = []
    losses: list[float] = []
    bar = progress_bar(cfg.steps, progress, unit="step", desc="train-bt")
    model.train()
    for step in range(cfg.steps):
        set_lr(opt, lr_factor(step, cfg.steps, cfg.warmup_steps))
        if not queue:
            queue = _epoch_batches(data, cfg.pairs_per_step, rng)
        batch = [data[i] for i in queue.pop()]
        r = raw_rewards(model, [c for c, _ in batch] + [rj for _, rj in batch], pad)
        rc, rr = r[: len(batch)], r[len(batch) :]
        loss = -F.logsigmoid(rc - rr).mean()
        if cfg.center_coef:
            loss = loss + cfg.center_coef * ((rc + rr) ** 2).mean()
        losses.append(optimizer_step(model, opt, loss))
        update_bar(bar, step, losses)
    if bar is not None:
        bar.close()
    model.eval()
    train_r = _rewards_of(model, data, pad)
    flat = [x for pair in train_r for x in pair]
    shift, scale = fit_mapping(flat)
    metrics: dict[str, Any] = {
        **{f"bt/{k}": v for k, v in loss_summary(losses).items()},
        "bt/train_pairs": len(train),
        "bt/eval_pairs": len(held),
        **pair_metrics(train, train_r, "train"),
        **(pair_metrics(held, _rewards_of(model, eval_data, pad), "eval") if held else {}),
    }
    metrics["seconds"] = time.perf_counter() - start
    metrics["mapping"] = {"type": "logistic", "shift": shift, "scale": scale}
    _save(
        model,
        tok,
        out_dir,
        {
            "base": base,
            "config": cfg.to_dict(),
            "max_length": max_length,
            "mapping": metrics["mapping"],
            "metrics": metrics,
        },
    )
    if log is not None:
        log(
            f"BT model written to {out_dir}: held-out accuracy {metrics.get('eval/accuracy', math.nan):.3f} "
            f"in {metrics['seconds']:.0f} s"
        )
    return metrics


def _save(model: Any, tokenizer: Any, out_dir: str, meta: Mapping[str, Any]) -> None:
    save_model_dir(os.path.abspath(out_dir), model, tokenizer, meta_file=META_FILE, meta=meta)
