"""``datarl train-genrm``: train the pairwise GenRM judge as a next-token classifier.

Starting from the SFT model (or any HF causal LM directory), the judge learns to emit the verdict
token (``A`` or ``B``, see :data:`datarl.rewards.genrm.JUDGE_TEMPLATE`) right after the judge
prompt. The loss is the cross-entropy of the full next-token distribution against a target that
puts mass ``t`` on ``A`` and ``1 - t`` on ``B``, so training both concentrates the mass on the two
verdict tokens and sets their ratio (what the readout uses).

Label scheme (every item is judged in both orders, A/B swapped, so the judge has no position prior):

- preference pair ``(prompt, chosen, rejected)``: the chosen answer's slot wins (t = 1 with
  A = chosen; t = 0 with A = rejected).
- ground-truth item ``(prompt, response, ground_truth)`` for tasks with a ground truth (math): the
  reference is ``gt_format.format(ground_truth=...)`` (``#### 18``) in the other slot. A response whose
  final answer is right (``rtv.math`` scores 1) is *on par or better*: its slot gets ``gt_tie_target``
  (default 1.0: a tie goes to the candidate, so a correct answer scores above 0.5); a wrong one is
  *worse*: the reference's slot wins. ``gt_tie_target = 0.5`` trains literal parity instead. With
  ``gt_verdict = "match"`` the item is asked by role instead (:data:`datarl.rewards.genrm.MATCH_TEMPLATE`):
  the target is P(yes) = ``gt_tie_target`` or 0 in both block orders, with no slot to flip.

Ground-truth items come from ``gt_records`` (mappings with ``prompt``, ``ground_truth``,
``response``, and optionally ``correct``; when absent it is computed with ``rtv.math``) and, with
``gt_from_pairs``, from the chosen and rejected answers of pairs that carry ``ground_truth``.

Held-out evaluation splits by prompt (a prompt's items are all in or all out) and reports, per kind
(``pairs``, ``gt``): accuracy (order-averaged score > 0.5 agrees with the label) and position
consistency. The output directory is an ordinary HF model dir plus ``datarl_genrm.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from datarl.io import write_json
from datarl.models.genrm_heldout import accuracy, balanced_accuracy
from datarl.models.loading import save_model_dir
from datarl.models.optim import (
    accumulated_step,
    adamw,
    decay_groups,
    length_parts,
    loss_summary,
    lr_factor,
    set_lr,
)
from datarl.models.precision import check_precision, training_precision
from datarl.rewards.genrm import (
    GT_FORMAT,
    GT_VERDICTS,
    MAX_ANSWER_CHARS,
    SOURCE_GT,
    VERDICTS,
    JudgeError,
    clear_judge_cache,
    gt_reference,
    judge_batch,
    judge_prompt,
    match_prompt,
)
from datarl.rewards.genrm_backends import GENRM_META, HFJudge

__all__ = [
    "GenRMTrainConfig",
    "train_genrm",
    "judge_items",
    "order_penalty",
    "fit_threshold",
    "THRESHOLD_OBJECTIVES",
    "calibration_entry",
    "calibrate_judge",
]


@dataclass(frozen=True)
class GenRMTrainConfig:
    """How the judge is trained.

    steps: optimiser steps.
    batch_size: judge prompts per step (each item contributes two prompts, one per order).
    lr: peak AdamW learning rate (linear warm-up, cosine decay to 10%).
    warmup_steps: linear warm-up steps.
    weight_decay: AdamW weight decay on matrices.
    eval_fraction: share of prompts held out for the metrics, in [0, 1).
    max_eval_items: cap on held-out items judged for the metrics (both orders each).
    gt_tie_target: P(response slot wins) for a correct response against the ground truth, in [0.5, 1].
    gt_from_pairs: also make ground-truth items from pairs that carry ``ground_truth``.
    gt_format: how the ground truth is written in its slot (must contain ``{ground_truth}``).
    gt_verdict: how ground-truth items are asked: ``slot`` (which slot is better, as pairs are) or ``match``
        (does the answer reach the reference's result: A = yes, B = no, whichever block comes first; see
        :data:`datarl.rewards.genrm.MATCH_TEMPLATE`). Stored with the judge, which ``genrm.gt`` then asks so.
    max_answer_chars: per-slot character cap in the judge prompt.
    gt_share: share of each batch drawn from the ground-truth items (the rest from the pairs); None draws
        from all items alike. A fixed share keeps both skills training whatever the sets' sizes.
    gt_balance: with ``gt_share``, half of the ground-truth share from correct and half from wrong responses
        (a judge that always says "wrong" gains nothing however rare correct answers are); False draws them
        in their natural proportion.
    paired_orders: each batch holds both orders of every item it draws (so a position prior earns nothing
        within a batch); False draws each order on its own.
    order_consistency: weight of a penalty on a verdict that depends on the order, added to the loss: per item
        drawn, the squared half-difference of its two orders' verdict log-odds (log P("A") - log P("B")) from
        what order invariance asks (opposite for slot verdicts, equal for ``match`` ones). 0 turns it off;
        above 0 it needs ``paired_orders`` and an even number of examples in each share of the batch.
    chunk_rows: judge prompts per forward and backward pass: each step's batch is sorted by length and run in
        parts of at most this many (an item's two orders kept together when ``order_consistency`` is on), their
        gradients summed before the one update. The same update as the whole batch at once up to float rounding,
        with less padding: about a quarter faster at the demo's shapes on 2 CPU cores. 0 = the whole batch.
    precision: ``float32``, ``bfloat16`` (training passes under bfloat16 autocast, weights in float32) or ``auto``
        (bfloat16 where the hardware computes it natively); see :mod:`datarl.models.precision`. Scoring and the
        held-out measurements always run in float32.
    calibrate: fit the ``genrm.gt`` decision threshold on the held-out ground-truth items after training
        and store it with the judge (see :func:`calibrate_judge`); needs ``eval_fraction > 0``.
    seed: split, batch order and initialisation-independent randomness.
    """

    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    eval_fraction: float = 0.1
    max_eval_items: int = 500
    gt_tie_target: float = 1.0
    gt_from_pairs: bool = True
    gt_format: str = GT_FORMAT
    gt_verdict: str = "slot"
    max_answer_chars: int = MAX_ANSWER_CHARS
    gt_share: float | None = None
    gt_balance: bool = True
    paired_orders: bool = False
    order_consistency: float = 0.0
    chunk_rows: int = 8
    precision: str = "float32"
    calibrate: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 2 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("steps >= 0, batch_size >= 2, lr > 0 and warmup_steps >= 0 are required")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError("eval_fraction must be in [0, 1)")
        if not 0.5 <= self.gt_tie_target <= 1.0:
            raise ValueError("gt_tie_target must be in [0.5, 1] (P(correct response's slot wins))")
        if "{ground_truth}" not in self.gt_format:
            raise ValueError("gt_format must contain '{ground_truth}'")
        if self.gt_verdict not in GT_VERDICTS:
            raise ValueError(f"gt_verdict must be one of {list(GT_VERDICTS)}, got {self.gt_verdict!r}")
        if self.gt_share is not None and not 0.0 < self.gt_share < 1.0:
            raise ValueError("gt_share must be in (0, 1), or None to draw from all items alike")
        if self.order_consistency < 0:
            raise ValueError("order_consistency must be >= 0 (0 turns the penalty off)")
        if self.order_consistency > 0:
            n_gt = round(self.batch_size * self.gt_share) if self.gt_share is not None else 0
            if not self.paired_orders or self.batch_size % 2 or n_gt % 2:
                raise ValueError(
                    "order_consistency > 0 needs paired_orders: true and an even batch_size whose ground-truth "
                    f"share is even too (batch_size {self.batch_size}, gt_share {self.gt_share} gives {n_gt})"
                )
        check_precision(self.precision)
        if self.chunk_rows < 0:
            raise ValueError(f"chunk_rows must be >= 0 (0 = the whole batch in one pass), got {self.chunk_rows}")
        if self.max_eval_items < 1 or self.max_answer_chars < 16 or self.weight_decay < 0:
            raise ValueError("max_eval_items >= 1, max_answer_chars >= 16 and weight_decay >= 0 are required")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# An item: (kind, prompt, response, reference, target) with target = P(response's slot wins).
Item = tuple[str, Any, str, str, float]


def _is_correct(rec: Mapping[str, Any], response: str) -> bool:
    from datarl.rewards.math import score_math

    return score_math({**rec, "task": "math"}, response).score == 1.0


def judge_items(
    pairs: Sequence[Mapping[str, Any]], gt_records: Sequence[Mapping[str, Any]] | None, cfg: GenRMTrainConfig
) -> list[Item]:
    """Items from preference pairs and ground-truth records (see the module docstring)."""
    items: list[Item] = []
    gts: list[tuple[Mapping[str, Any], str, bool | None]] = []
    for i, p in enumerate(pairs):
        chosen, rejected = str(p.get("chosen", "")), str(p.get("rejected", ""))
        if chosen == rejected:
            raise ValueError(
                f"pair {i} ({p.get('id', '?')}): chosen and rejected are identical; it carries no preference"
            )
        items.append(("pairs", p["prompt"], chosen, rejected, 1.0))
        if cfg.gt_from_pairs and str(p.get("ground_truth", "")).strip():
            gts += [(p, chosen, None), (p, rejected, None)]
    for r in gt_records or ():
        gts.append((r, str(r["response"]), r.get("correct")))
    for rec, response, correct in gts:
        ok = _is_correct(rec, response) if correct is None else bool(correct)
        ref = cfg.gt_format.format(ground_truth=str(rec["ground_truth"]).strip())
        if response.strip() == ref.strip() and not ok:
            continue  # cannot happen for a sane record; identical inputs carry no signal
        items.append(("gt", rec["prompt"], response, ref, cfg.gt_tie_target if ok else 0.0))
    return items


def _split(items: list[Item], cfg: GenRMTrainConfig) -> tuple[list[Item], list[Item]]:
    def held(prompt: Any) -> bool:
        digest = hashlib.sha256(f"{cfg.seed}:{json.dumps(prompt, sort_keys=True)}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < cfg.eval_fraction

    train = [it for it in items if not held(it[1])]
    test = [it for it in items if held(it[1])]
    return train, test


# An encoded example: (token ids, target P("A"), order sign). The sign says how an order-invariant judge's
# verdict log-odds in this order relate to the other order's: -1 opposite (slot verdicts), +1 equal (match).
Example = tuple[list[int], float, int]


def _examples(judge: HFJudge, items: Sequence[Item], cfg: GenRMTrainConfig) -> list[Example]:
    """Both orders of every item, one after the other, encoded, with P("A") as the target (``match``
    ground-truth items: P(yes), the same in both orders) and the order sign."""
    prompts, targets, signs = [], [], []
    chars = cfg.max_answer_chars
    for kind, q, resp, ref, t in items:
        if kind == "gt" and cfg.gt_verdict == "match":
            prompts += [match_prompt(q, resp, ref, reference_first=f, max_answer_chars=chars) for f in (False, True)]
            targets += [t, t]
            signs += [1, 1]
            continue
        prompts += [
            judge_prompt(q, resp, ref, max_answer_chars=chars),
            judge_prompt(q, ref, resp, max_answer_chars=chars),
        ]
        targets += [t, 1.0 - t]
        signs += [-1, -1]
    encoded, _ = judge.encode(prompts)
    return list(zip(encoded, targets, signs))


def evaluate(judge: HFJudge, items: Sequence[Item], cfg: GenRMTrainConfig) -> dict[str, float]:
    """Accuracy and position consistency per item kind (ties, target 0.5, are skipped)."""
    metrics: dict[str, float] = {}
    for kind in sorted({it[0] for it in items}):
        sub = [it for it in items if it[0] == kind and it[4] != 0.5][: cfg.max_eval_items]
        if not sub:
            continue
        res = judge_batch(
            judge,
            [(q, r, ref) for _, q, r, ref, _ in sub],
            max_answer_chars=cfg.max_answer_chars,
            source=SOURCE_GT if kind == "gt" else None,
        )
        metrics[f"{kind}/accuracy"] = sum((x.score > 0.5) == (it[4] > 0.5) for x, it in zip(res, sub)) / len(sub)
        metrics[f"{kind}/position_consistency"] = sum(x.position_consistent for x in res) / len(res)
        metrics[f"{kind}/items"] = float(len(sub))
    return metrics


def _batches(pools: Mapping[str, list[Example]], cfg: GenRMTrainConfig, rng: random.Random) -> Any:
    """Endless batches. Pools: ``pairs``, ``gt_correct``, ``gt_wrong`` (both orders of each item, one after the
    other). With ``gt_share``, that share of each batch comes from the ground-truth pools (half correct, half
    wrong with ``gt_balance``), the rest from the pairs; without it, every example is drawn alike. With
    ``paired_orders`` a draw is an item's two orders together (the last draw of a share may give only one)."""
    everything = [ex for pool in pools.values() for ex in pool]
    gt_pools = [pools[k] for k in ("gt_correct", "gt_wrong") if pools.get(k)]
    if not cfg.gt_balance:
        gt_pools = [[ex for pool in gt_pools for ex in pool]]
    pairs = pools.get("pairs") or []
    n_gt = round(cfg.batch_size * cfg.gt_share) if cfg.gt_share is not None and gt_pools and pairs else None
    draw = _draw_items if cfg.paired_orders else _draw_examples
    while True:
        if n_gt is None:
            yield draw([everything], cfg.batch_size, rng)
            continue
        yield draw(gt_pools, n_gt, rng) + draw([pairs], cfg.batch_size - n_gt, rng)


def _draw_examples(pools: Sequence[list[Any]], n: int, rng: random.Random) -> list[Any]:
    """``n`` examples, the i-th from ``pools[i % len(pools)]``, each order on its own."""
    batch = []
    for i in range(n):
        pool = pools[i % len(pools)]
        batch.append(pool[rng.randrange(len(pool))])
    return batch


def _draw_items(pools: Sequence[list[Any]], n: int, rng: random.Random) -> list[Any]:
    """``n`` examples as whole items (both orders, adjacent in the pools), the i-th item from
    ``pools[i % len(pools)]``; the last item gives one order when ``n`` is odd."""
    batch: list[Any] = []
    i = 0
    while len(batch) < n:
        pool = pools[i % len(pools)]
        start = 2 * rng.randrange(len(pool) // 2)
        batch += pool[start : start + 2]
        i += 1
    return batch[:n]


def _train_loop(
    judge: HFJudge,
    pools: Mapping[str, list[Example]],
    cfg: GenRMTrainConfig,
    log: Any,
    checkpoint: Callable[[int, float], None] | None = None,
    checkpoint_every: int = 0,
) -> dict[str, float]:
    model = judge.policy.model
    model.train()
    opt = adamw(decay_groups(model.parameters(), cfg.weight_decay), cfg.lr)
    rng = random.Random(cfg.seed)
    losses: list[float] = []
    start = time.perf_counter()
    paused = 0.0  # seconds spent in checkpoint calls, which are not training
    batches = _batches(pools, cfg, rng)
    for step in range(cfg.steps):
        set_lr(opt, lr_factor(step, cfg.steps, cfg.warmup_steps))
        batch = next(batches)
        with training_precision(model, cfg.precision):
            losses.append(accumulated_step(model, opt, _part_losses(judge, batch, cfg)))
        if log is not None and (step + 1) % 50 == 0:
            log(f"genrm step {step + 1}/{cfg.steps} loss {sum(losses[-50:]) / 50:.4f}")
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:  # train_genrm checks every >= 1
            t0 = time.perf_counter()
            model.eval()
            checkpoint(step + 1, t0 - start - paused)
            model.train()
            paused += time.perf_counter() - t0
    model.eval()
    return {**loss_summary(losses), "seconds": time.perf_counter() - start - paused}


def _part_losses(judge: HFJudge, batch: Sequence[Example], cfg: GenRMTrainConfig) -> Iterator[Any]:
    """The step's loss (cross-entropy on the verdict token, plus the order penalty when on), one part of the
    batch at a time, each scaled to its share so that the parts sum to the whole batch's loss."""
    import torch

    a_id, b_id = judge.verdict_ids
    for rows in length_parts([len(ex[0]) for ex in batch], cfg.chunk_rows, unit=2 if cfg.order_consistency > 0 else 1):
        part = [batch[i] for i in rows]
        logp = torch.log_softmax(judge.next_logits([ex[0] for ex in part]).float(), dim=-1)
        target = torch.tensor([ex[1] for ex in part])
        loss = -(target * logp[:, a_id] + (1 - target) * logp[:, b_id]).sum() / len(batch)
        if cfg.order_consistency > 0:  # a mean over the part's items, weighted by its share of the batch's
            penalty = order_penalty(logp[:, a_id] - logp[:, b_id], [ex[2] for ex in part])
            loss = loss + cfg.order_consistency * penalty * len(part) / len(batch)
        yield loss


def order_penalty(log_odds: Any, signs: Sequence[int]) -> Any:
    """Mean over adjacent rows (an item's two orders) of ``((d1 - sign * d2) / 2) ** 2``: 0 exactly when the
    verdict does not depend on the order (``d2 = -d1`` for slot verdicts, sign -1; ``d2 = d1`` for match, +1)."""
    import torch

    sign = torch.tensor(signs[1::2], dtype=log_odds.dtype)
    return (((log_odds[0::2] - sign * log_odds[1::2]) / 2) ** 2).mean()


def train_genrm(
    pairs: Sequence[Mapping[str, Any]],
    base: str,
    out_dir: str,
    cfg: GenRMTrainConfig | None = None,
    *,
    gt_records: Sequence[Mapping[str, Any]] | None = None,
    log: Any = print,
    on_checkpoint: Callable[[int, float, HFJudge], None] | None = None,
    checkpoint_every: int = 0,
) -> dict[str, Any]:
    """Train a judge from ``base`` (HF causal LM dir or alias) and save it to ``out_dir``.

    Returns the metadata written to ``out_dir/datarl_genrm.json``: config, verdict token ids,
    item counts, training stats and held-out metrics (before and after training).

    on_checkpoint, checkpoint_every: call ``on_checkpoint(step, seconds, judge)`` every ``checkpoint_every``
    steps, ``seconds`` the training time so far, the judge in eval mode with its ``genrm.gt`` threshold fitted
    as at the end when ``cfg.calibrate`` (e.g. to measure quality against training time,
    ``bench/judge_budget.py``); the time the calls take is not counted as training.
    """
    import torch

    cfg = cfg or GenRMTrainConfig()
    if on_checkpoint is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1 with on_checkpoint, got {checkpoint_every}")
    items = judge_items(pairs, gt_records, cfg)
    if not items:
        raise ValueError("no judge examples: give preference pairs and/or gt_records")
    train, test = _split(items, cfg)
    if not train:
        raise ValueError("every prompt fell in the held-out split; lower eval_fraction or add data")
    torch.manual_seed(cfg.seed)
    judge = HFJudge.load(base, gt_format=cfg.gt_format, gt_verdict=cfg.gt_verdict)  # fails if A/B are not single tokens
    pools = {
        "pairs": _examples(judge, [it for it in train if it[0] == "pairs"], cfg),
        "gt_correct": _examples(judge, [it for it in train if it[0] == "gt" and it[4] > 0.0], cfg),
        "gt_wrong": _examples(judge, [it for it in train if it[0] == "gt" and it[4] == 0.0], cfg),
    }
    before = evaluate(judge, test, cfg) if test else {}

    def checkpoint(step: int, seconds: float) -> None:
        calibration = _fit_gt_threshold(judge, test, cfg) if cfg.calibrate else None
        kept, judge.calibration = judge.calibration, ({SOURCE_GT: calibration["threshold"]} if calibration else {})
        try:
            on_checkpoint(step, seconds, judge)  # type: ignore[misc]
        finally:
            judge.calibration = kept  # training and the final measurement read raw scores

    stats = _train_loop(judge, pools, cfg, log, checkpoint if on_checkpoint else None, checkpoint_every)
    after = evaluate(judge, test, cfg) if test else {}
    calibration = _fit_gt_threshold(judge, test, cfg) if cfg.calibrate else None
    counts = {
        f"{split}/{kind}": sum(it[0] == kind for it in part)
        for split, part in (("train", train), ("heldout", test))
        for kind in ("pairs", "gt")
    }
    meta = {
        "base": base,
        "config": cfg.to_dict(),
        "verdicts": list(VERDICTS),
        "verdict_token_ids": judge.verdict_ids,
        "gt_format": cfg.gt_format,
        "items": counts,
        "train": stats,
        "metrics": after,
        "metrics_before": before,
    }
    if calibration is not None:
        meta["calibration"] = {SOURCE_GT: calibration}
    save_model_dir(out_dir.rstrip("/"), judge.policy.model, judge.policy.tokenizer, meta_file=GENRM_META, meta=meta)
    if log is not None:
        log(f"GenRM judge written to {out_dir}: {after}")
    return meta


# ----------------------------------------------------------------------------- calibration


def _fit_gt_threshold(judge: HFJudge, test: Sequence[Item], cfg: GenRMTrainConfig) -> dict[str, Any] | None:
    """The ``genrm.gt`` threshold fitted on the held-out ground-truth items of training prompts, or None
    (with a reason logged by the caller's metrics) when they do not hold both labels."""
    sub = [it for it in test if it[0] == "gt" and it[4] != 0.5]
    labels = [it[4] > 0.5 for it in sub]
    if len(sub) < 20 or all(labels) or not any(labels):
        return None
    res = judge_batch(
        judge, [(q, r, ref) for _, q, r, ref, _ in sub], max_answer_chars=cfg.max_answer_chars, source=SOURCE_GT
    )
    entry = calibration_entry([x.score for x in res], labels)
    return {**entry, "fitted_on": "held-out ground-truth items of training prompts"}


def calibration_entry(scores: Sequence[float], labels: Sequence[bool], objective: str = "accuracy") -> dict[str, Any]:
    """What a judge stores for one source's calibration: the threshold fitted for ``objective`` (see
    :func:`fit_threshold`), its accuracy and balanced accuracy, the accuracy at 0.5, and how many responses (and
    correct ones) it was fitted on."""
    threshold, fitted = fit_threshold(scores, labels, objective)
    return {
        "threshold": threshold,
        "objective": objective,
        "accuracy": fitted,
        "balanced_accuracy": balanced_accuracy(scores, labels, threshold),
        "accuracy_at_0.5": accuracy(scores, labels, 0.5),
        "n": len(scores),
        "correct": sum(bool(x) for x in labels),
    }


THRESHOLD_OBJECTIVES = ("accuracy", "balanced")


def fit_threshold(scores: Sequence[float], labels: Sequence[bool], objective: str = "accuracy") -> tuple[float, float]:
    """The decision threshold in (0, 1) that maximises ``objective`` of ``score > threshold`` against
    ``labels`` (midpoints between consecutive distinct scores; ties broken towards 0.5). Returns
    (threshold, accuracy).

    objective: ``accuracy`` (share of agreements) or ``balanced`` (mean of the agreement on positives and on
        negatives: a rare label weighs as much as a common one).
    """
    if len(scores) != len(labels) or not scores:
        raise ValueError("fit_threshold needs as many labels as scores, at least one")
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"objective must be one of {list(THRESHOLD_OBJECTIVES)}, got {objective!r}")
    values = sorted({min(1 - 1e-6, max(1e-6, float(x))) for x in scores})
    candidates = [0.5, values[0] / 2, (values[-1] + 1) / 2] + [(a + b) / 2 for a, b in zip(values, values[1:])]
    measure = accuracy if objective == "accuracy" else balanced_accuracy
    best = max(candidates, key=lambda th: (measure(scores, labels, th), -abs(th - 0.5)))
    return best, accuracy(scores, labels, best)


def calibrate_judge(
    judge_dir: str,
    records: Sequence[Mapping[str, Any]],
    *,
    source: str = SOURCE_GT,
    objective: str = "accuracy",
    log: Any = print,
) -> dict[str, Any]:
    """Fit ``source``'s decision threshold for the judge in ``judge_dir`` on labelled responses and store it
    in its ``datarl_genrm.json`` (``calibration.<source>``); scores from that judge are then calibrated.

    ``records``: mappings with ``prompt``, ``ground_truth``, ``response`` and optionally ``correct`` (else
    computed with ``rtv.math``). Use responses from the policy the judge will score (e.g. SFT samples on
    training prompts), never the evaluation split. Only ``genrm.gt`` is supported: its labels come from a
    verifier. ``objective``: ``accuracy`` (the default) or ``balanced`` (when correct answers are rare and the
    judge should not give them up; on the embedded suite it traded agreement for balance, docs/results.md).
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise JudgeError(f"objective must be one of {list(THRESHOLD_OBJECTIVES)}, got {objective!r}")
    if source != SOURCE_GT:
        raise JudgeError(f"calibration is supported for {SOURCE_GT} (labels from a verifier), not {source}")
    meta_path = os.path.join(judge_dir, GENRM_META)
    if not os.path.isfile(meta_path):
        raise JudgeError(f"{judge_dir}: not a judge directory (no {GENRM_META}); train one with datarl train-genrm")
    usable = [r for r in records if str(r.get("ground_truth", "")).strip() and r.get("response") is not None]
    if len(usable) < 20:
        raise JudgeError(f"calibration needs at least 20 records with ground_truth and response, got {len(usable)}")
    labels = [
        bool(r["correct"]) if r.get("correct") is not None else _is_correct(r, str(r["response"])) for r in usable
    ]
    if all(labels) or not any(labels):
        raise JudgeError("calibration needs both correct and wrong responses (all labels are the same)")
    judge = HFJudge.load(judge_dir)  # raw scores: the stored calibration is not applied by judge_batch
    with open(meta_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    cfg = GenRMTrainConfig(
        **{k: v for k, v in (meta.get("config") or {}).items() if k in GenRMTrainConfig.__dataclass_fields__}
    )
    results = judge_batch(
        judge,
        [(r["prompt"], str(r["response"]), gt_reference(r, judge)) for r in usable],
        max_answer_chars=cfg.max_answer_chars,
        source=SOURCE_GT,
    )
    failed = [res.error for res in results if res.error]
    if failed:
        raise JudgeError(f"the judge failed on {len(failed)} calibration items: {failed[0]}")
    scores = [res.score for res in results]
    entry = calibration_entry(scores, labels, objective)
    threshold, fitted, at_half = entry["threshold"], entry["accuracy"], entry["accuracy_at_0.5"]
    meta.setdefault("calibration", {})[source] = entry
    write_json(meta_path, meta)
    clear_judge_cache()  # judges loaded before this see the new calibration on their next load
    if log is not None:
        log(
            f"{source} threshold {threshold:.3f}: accuracy {fitted:.3f} on {len(scores)} responses "
            f"({at_half:.3f} at 0.5), written to {meta_path}"
        )
    return entry
