"""PPO's periodic evaluation: gold score by task, the hacking gap and alarm, diversity.

- **gold**: greedy responses on the eval prompts scored by the gold checks (the suite's
  ``gold_check``: verifiers, and the hidden rubric for ``general``), mean and 95% CI per task;
- **proxy**: for tasks trained on a reward other than a verifier (``bt``, ``genrm.*``, or the rubric
  itself as a control), the same responses
  scored by the training reward; ``hacking/gap/<task>`` = proxy - gold, and the
  :class:`~datarl.metrics.hacking.HackingMonitor` raises ``hacking/alarm/<task>`` when the proxy
  keeps rising while gold falls. For verifier-trained tasks the proxy *is* the gold check;
- **gain**: with the step-0 (SFT) gold scores of the same prompts as ``baseline``, the paired
  difference per task, ``gain/<task>`` with its 95% interval: the same greedy prompts are scored
  before and after, so the interval comes from the per-prompt differences (tighter, and the
  right test, than comparing two independent intervals);
- **diversity**: ``diversity_samples`` samples at the rollout temperature for
  ``diversity_prompts`` prompts per task: max pairwise normalised token edit distance (the
  paper's measure), distinct-1/2 and distinct final answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from datarl.executors import map_ordered
from datarl.executors.engine import ScoringEngine
from datarl.io import write_records
from datarl.jobs import summarise_scores
from datarl.metrics.diversity import diversity_summary
from datarl.metrics.stats import paired_difference
from datarl.models.generate import JOB_BATCH_SIZE, SamplingConfig, generate
from datarl.rewards.base import RewardResult
from datarl.rewards.router import Router
from datarl.rl.config import EvalConfig
from datarl.rl.eval_result import EvalResult, Gain, TaskScore

__all__ = ["eval_subset", "evaluate", "gold_function", "items_path", "write_items", "load_baseline"]

_VERIFIED = ("math", "code", "ifeval")


def gold_function(kind: str) -> Callable[[Mapping[str, Any], str], RewardResult | None]:
    """``synth``: the suite's gold checks; ``verifiers``: math/code/ifeval verifiers, None for general."""
    from datarl.synth import gold_check

    if kind == "synth":
        return gold_check

    def verifiers_only(record: Mapping[str, Any], response: str) -> RewardResult | None:
        return gold_check(record, response) if record.get("task") in _VERIFIED else None

    return verifiers_only


def eval_subset(
    records: Sequence[Mapping[str, Any]], per_task: int, tasks: Sequence[str] = ()
) -> list[Mapping[str, Any]]:
    """The first ``per_task`` records of each task (all when 0), in file order; only ``tasks`` when given."""
    if tasks:
        records = [r for r in records if r.get("task") in tasks]
    if not per_task:
        return list(records)
    seen: dict[str, int] = {}
    out = []
    for r in records:
        t = str(r.get("task"))
        if seen.get(t, 0) < per_task:
            seen[t] = seen.get(t, 0) + 1
            out.append(r)
    return out


def items_path(run_dir: str, step: int) -> str:
    """Where the per-prompt responses and gold scores of the evaluation at ``step`` are kept."""
    return os.path.join(run_dir, "eval", f"step_{step:06d}.jsonl")


def write_items(run_dir: str, step: int, items: Sequence[Mapping[str, Any]]) -> None:
    os.makedirs(os.path.join(run_dir, "eval"), exist_ok=True)
    write_records(items_path(run_dir, step), items)


def load_baseline(run_dir: str) -> list[float | None] | None:
    """The step-0 gold per eval prompt (for the paired gains), or None when step 0 was not kept."""
    path = items_path(run_dir, 0)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        items = [json.loads(line) for line in fh if line.strip()]
    return [it.get("gold") for it in sorted(items, key=lambda it: it["index"])]


def _gold_scores(
    records: Sequence[Mapping[str, Any]], texts: Sequence[str], gold: Callable, workers: int, timeout_s: float
) -> list[float | None]:
    items = [(dict(r), t) for r, t in zip(records, texts)]
    outcomes = map_ordered(lambda it: gold(it[0], it[1]), items, workers=min(workers, len(items)), timeout_s=timeout_s)
    scores: list[float | None] = []
    for o in outcomes:
        scores.append(None if o.ok and o.value is None else float(o.value.score) if o.ok else 0.0)
    return scores


def evaluate(
    policy: Any,
    records: Sequence[Mapping[str, Any]],
    cfg: EvalConfig,
    router: Router,
    *,
    engine: ScoringEngine,
    step: int,
    seed: int,
    temperature: float,
    monitor: Any,
    workers: int,
    timeout_s: float,
    baseline: Sequence[float | None] | None = None,
) -> tuple[EvalResult, list[dict[str, Any]]]:
    """One evaluation at ``step`` (updates ``monitor``).

    Returns the :class:`EvalResult` (``to_row()`` is the ``eval.jsonl`` line) and one item per eval prompt
    (``index``, ``id``, ``task``, ``gold`` (None where no gold check applies), ``proxy`` (the training reward,
    None where it is a verifier), ``response``). ``baseline``: the
    step-0 gold per prompt, in ``records`` order, for the paired gains.
    """
    row: dict[str, Any] = {}
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=cfg.max_new_tokens, batch_size=JOB_BATCH_SIZE)
    gens = generate(policy, [r["prompt"] for r in records], greedy)
    texts = [g.text for g in gens]
    gold = _gold_scores(records, texts, gold_function(cfg.gold), workers, timeout_s)
    judged = [(r, t, g) for r, t, g in zip(records, texts, gold) if g is not None]
    summary = summarise_scores([str(r["task"]) for r, _, _ in judged], [g for _, _, g in judged])
    scores = {task: TaskScore(s["mean"], s["n"], s["ci95_low"], s["ci95_high"]) for task, s in summary.items()}
    gains = _gains(records, baseline, gold) if baseline is not None else {}
    # The proxy is worth scoring where the training reward is not a verifier (the gold check itself).
    learned = [
        i
        for i, (r, g) in enumerate(zip(records, gold))
        if g is not None and not str(router.config.source_for(str(r["task"]))).startswith("rtv.")
    ]
    proxy_of: dict[int, float] = {}
    if learned:
        proxy = engine.score([dict(records[i]) for i in learned], [texts[i] for i in learned])
        by_task: dict[str, list[tuple[float, float]]] = {}
        for i, p in zip(learned, proxy):
            proxy_of[i] = p.score
            by_task.setdefault(str(records[i]["task"]), []).append((p.score, float(gold[i])))
        for task, vals in sorted(by_task.items()):
            p_mean = sum(p for p, _ in vals) / len(vals)
            g_mean = sum(g for _, g in vals) / len(vals)
            state = monitor.update(step, task, p_mean, g_mean)
            row.update(
                {
                    f"proxy/{task}": p_mean,
                    f"hacking/gap/{task}": state["gap"],
                    f"hacking/alarm/{task}": bool(state["alarm"]),
                }
            )
    row.update(_diversity(policy, records, cfg, seed=seed, temperature=temperature))
    row["eval/cut_off"] = sum(not g.finished for g in gens) / max(1, len(gens))
    items = [
        {"index": i, "id": r.get("id"), "task": r.get("task"), "gold": g, "proxy": proxy_of.get(i), "response": t}
        for i, (r, t, g) in enumerate(zip(records, texts, gold))
    ]
    return EvalResult(step, scores, gains, row), items


def _gains(
    records: Sequence[Mapping[str, Any]], baseline: Sequence[float | None], gold: Sequence[float | None]
) -> dict[str, Gain]:
    """Paired gold difference vs the baseline per task, over prompts scored both times."""
    if len(baseline) != len(records):
        raise ValueError(
            f"the baseline has {len(baseline)} eval prompts, this evaluation {len(records)}; "
            "the eval split changed since step 0"
        )
    pairs: dict[str, tuple[list[float], list[float]]] = {}
    for r, b, a in zip(records, baseline, gold):
        if b is not None and a is not None:
            before, after = pairs.setdefault(str(r["task"]), ([], []))
            before.append(b)
            after.append(a)
    out: dict[str, Gain] = {}
    for task, (before, after) in sorted(pairs.items()):
        d = paired_difference(before, after)
        out[task] = Gain(d["diff"], d["ci95_low"], d["ci95_high"])
    return out


def _diversity(
    policy: Any, records: Sequence[Mapping[str, Any]], cfg: EvalConfig, *, seed: int, temperature: float
) -> dict[str, float]:
    if not cfg.diversity_prompts:
        return {}
    subset = eval_subset(records, cfg.diversity_prompts)
    sampling = SamplingConfig(
        temperature=temperature,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=JOB_BATCH_SIZE,
        samples_per_prompt=cfg.diversity_samples,
        seed=seed,
    )
    gens = generate(policy, [r["prompt"] for r in subset], sampling)
    groups: dict[int, list[Any]] = {}
    for g in gens:
        groups.setdefault(g.prompt_index, []).append(g)
    by_task: dict[str, list[tuple[Mapping[str, Any], list[str], list[list[int]]]]] = {}
    for i, rec in enumerate(subset):
        samples = groups.get(i, [])
        by_task.setdefault(str(rec["task"]), []).append(
            (rec, [g.text for g in samples], [g.token_ids for g in samples])
        )
    out: dict[str, float] = {}
    for task, items in sorted(by_task.items()):
        for name, value in diversity_summary(items).items():
            out[f"diversity/{task}/{name}"] = value
    return out
