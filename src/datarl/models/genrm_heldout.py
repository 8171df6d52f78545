"""How far to trust a GenRM judge: its agreement with the gold checks on held-out responses.

The held-out items come from the policy the judge will score, on *evaluation* prompts (never in the
judge's training data, which is made from training prompts):

- ``gt`` (``genrm.gt``): the policy's sampled responses to math prompts, labelled by ``rtv.math``.
  The judge agrees when its score is above 0.5 exactly where the verifier says correct.
- ``pairs`` (``genrm.bon``): two sampled responses to a general prompt whose gold scores (the rubric)
  differ by more than ``min_gold_gap``; no label noise, so the judge is measured against the gold
  ordering. The judge agrees when it prefers the better one.

Per kind the table holds ``agreement`` (share agreeing), ``balanced_agreement`` (mean of the
agreement on each label: a judge that always says "wrong" gets 0.5 however rare correct answers
are), ``position_consistency`` (both orders gave the same verdict), the item count and, for ``gt``,
the labels' balance. :func:`heldout_items` samples the items; :func:`judge_table` measures a judge
(:func:`judge_verdicts` gives its verdict on each item).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datarl.rewards.genrm import MAX_ANSWER_CHARS, SOURCE_GT, get_judge, judge_batch

__all__ = [
    "HeldoutConfig",
    "HeldoutItem",
    "heldout_items",
    "math_samples",
    "judge_table",
    "judge_verdicts",
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
]


@dataclass(frozen=True)
class HeldoutConfig:
    """Which held-out items are sampled.

    gt_responses: sampled responses to math evaluation prompts (one per prompt while prompts last).
    pair_prompts: general evaluation prompts sampled for pairs.
    samples_per_prompt: responses per general prompt (pairs are formed among them).
    min_gold_gap: two responses form a pair only if their gold scores differ by more than this.
    max_new_tokens: sampling budget per response.
    seed: sampling seed.
    """

    gt_responses: int = 500
    pair_prompts: int = 150
    samples_per_prompt: int = 4
    min_gold_gap: float = 0.2
    max_new_tokens: int = 96
    seed: int = 123

    def __post_init__(self) -> None:
        if self.gt_responses < 0 or self.pair_prompts < 0 or self.samples_per_prompt < 2 or self.max_new_tokens < 1:
            raise ValueError(
                "gt_responses >= 0, pair_prompts >= 0, samples_per_prompt >= 2 and max_new_tokens >= 1 are required"
            )


@dataclass(frozen=True)
class HeldoutItem:
    """One judged item: ``label`` is True when ``response`` should beat ``reference``."""

    kind: str
    prompt: Any
    response: str
    reference: str
    label: bool


def heldout_items(
    records: Sequence[Mapping[str, Any]], policy: Any, cfg: HeldoutConfig | None = None, *, gt_format: str
) -> list[HeldoutItem]:
    """Sample ``policy`` on evaluation ``records`` (synth records with ``task``) into held-out items."""
    from datarl.models.generate import JOB_BATCH_SIZE, SamplingConfig
    from datarl.preferences import make_pairs

    cfg = cfg or HeldoutConfig()
    items = [
        HeldoutItem(
            "gt",
            r["prompt"],
            r["response"],
            gt_format.format(ground_truth=str(r["ground_truth"]).strip()),
            r["correct"],
        )
        for r in math_samples(records, policy, cfg.gt_responses, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    ]
    general = [r for r in records if r.get("task") == "general"][: cfg.pair_prompts]
    if general:
        pairs = make_pairs(
            general,
            policy,
            samples_per_prompt=cfg.samples_per_prompt,
            label_noise=0.0,
            seed=cfg.seed,
            min_gold_gap=cfg.min_gold_gap,
            min_pairs_per_prompt=0,
            sampling=SamplingConfig(max_new_tokens=cfg.max_new_tokens, batch_size=JOB_BATCH_SIZE),
        )
        items += [HeldoutItem("pairs", p["prompt"], p["chosen"], p["rejected"], True) for p in pairs]
    return items


def math_samples(
    records: Sequence[Mapping[str, Any]], policy: Any, n: int, *, max_new_tokens: int = 96, seed: int = 0
) -> list[dict[str, Any]]:
    """``n`` sampled responses of ``policy`` to the math ``records`` (spread over the prompts), each a copy of
    its record with ``response`` and ``correct`` (``rtv.math`` scores 1)."""
    from datarl.models.generate import JOB_BATCH_SIZE, SamplingConfig, generate
    from datarl.rewards.math import score_math

    math = [r for r in records if r.get("task") == "math" and str(r.get("ground_truth", "")).strip()]
    if not math or n <= 0:
        return []
    per_prompt = -(-n // len(math))
    math = math[: -(-n // per_prompt)]  # no more prompts than n responses need
    sampling = SamplingConfig(
        max_new_tokens=max_new_tokens, samples_per_prompt=per_prompt, seed=seed, batch_size=JOB_BATCH_SIZE
    )
    out = []
    for g in generate(policy, [r["prompt"] for r in math], sampling)[:n]:
        rec = dict(math[g.prompt_index])
        out.append({**rec, "response": g.text, "correct": score_math(rec, g.text).score == 1.0})
    return out


def judge_verdicts(
    judge: Any, items: Sequence[HeldoutItem], *, max_answer_chars: int = MAX_ANSWER_CHARS
) -> list[dict[str, Any]]:
    """Per item, in ``items``' order: ``score`` (P(response beats reference), or for ``gt`` items with a match
    judge P(it matches)), ``consistent`` (both orders gave the same verdict) and ``error`` (None when judged),
    each kind asked as :func:`judge_table` asks it. What per-item comparisons of two judges need."""
    backend = get_judge(judge)
    by_item: dict[int, dict[str, Any]] = {}
    for kind in sorted({it.kind for it in items}):
        index = [i for i, it in enumerate(items) if it.kind == kind]
        results = judge_batch(
            backend,
            [(items[i].prompt, items[i].response, items[i].reference) for i in index],
            max_answer_chars=max_answer_chars,
            source=SOURCE_GT if kind == "gt" else None,
        )
        for i, r in zip(index, results):
            by_item[i] = {"score": r.score, "consistent": bool(r.position_consistent), "error": r.error}
    return [by_item[i] for i in range(len(items))]


def judge_table(
    judge: Any,
    items: Sequence[HeldoutItem],
    *,
    max_answer_chars: int = MAX_ANSWER_CHARS,
    verdicts: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """Per kind: agreement, balanced_agreement, position_consistency, items, positives, judge_errors, threshold,
    and ``roc_auc`` where the kind holds both labels (how well the raw scores rank positives above negatives,
    whatever the threshold: it tells a weak ranking from a badly placed threshold).

    A judge calibrated for ``genrm.gt`` is measured with its threshold on the ``gt`` items, as scoring uses it.
    ``verdicts`` (from :func:`judge_verdicts` for the same judge and items) skips judging them again.
    """
    backend = get_judge(judge)
    if verdicts is None:
        verdicts = judge_verdicts(backend, items, max_answer_chars=max_answer_chars)
    if len(verdicts) != len(items):
        raise ValueError(f"{len(verdicts)} verdicts for {len(items)} items")
    table: dict[str, dict[str, float]] = {}
    for kind in sorted({it.kind for it in items}):
        sub = [(it, v) for it, v in zip(items, verdicts) if it.kind == kind]
        threshold = (getattr(backend, "calibration", None) or {}).get(SOURCE_GT, 0.5) if kind == "gt" else 0.5
        scores, labels = [v["score"] for _, v in sub], [bool(it.label) for it, _ in sub]
        table[kind] = {
            "agreement": accuracy(scores, labels, threshold),
            "balanced_agreement": balanced_accuracy(scores, labels, threshold),
            "position_consistency": sum(bool(v["consistent"]) for _, v in sub) / len(sub),
            "items": float(len(sub)),
            "positives": float(sum(it.label for it, _ in sub)),
            "judge_errors": float(sum(v["error"] is not None for _, v in sub)),
            "threshold": threshold,
        }
        auc = roc_auc(scores, labels)
        if auc is not None:
            table[kind]["roc_auc"] = auc
    return table


def accuracy(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> float:
    """Share of ``score > threshold`` that agrees with ``labels``."""
    return sum((x > threshold) == bool(y) for x, y in zip(scores, labels)) / len(scores)


def balanced_accuracy(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> float:
    """Mean over the labels present of the share of ``score > threshold`` that agrees with them."""
    shares = []
    for label in (True, False):
        sub = [x for x, y in zip(scores, labels) if bool(y) == label]
        if sub:
            shares.append(sum((x > threshold) == label for x in sub) / len(sub))
    return sum(shares) / len(shares)


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` against ``labels`` (ties count half), or None when the labels
    are all the same (the Mann-Whitney U statistic over positives x negatives)."""
    from scipy.stats import mannwhitneyu

    pos = [float(x) for x, y in zip(scores, labels) if y]
    neg = [float(x) for x, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    return float(mannwhitneyu(pos, neg).statistic) / (len(pos) * len(neg))
