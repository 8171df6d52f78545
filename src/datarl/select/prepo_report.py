"""The Pre-PPO selection report (``OUT.report.json``) and the summary ``datarl select`` prints.

Report keys: the settings (strategy, ``low`` and ``high`` (``band``'s bounds, else None), normalise, scope,
fraction or count, seed, samples_per_prompt, sampling, policy, router table, and ``bt_mapping`` where a ``bt``
mapping was fitted on the pool's samples: model, shift, scale, mapping_from, fitted_on), ``totals`` (pool
lines, invalid, excluded by domain, each drop reason, eligible, kept, written), ``domains`` (per domain:
count, eligible, kept, dropped and ``dropped_by_reason``, mean and std of the prompt scores, ``threshold`` /
``threshold_z`` / ``threshold_percentile``: the highest score, z and percentile kept (``lowest`` and
``band``, else None), and ``histogram``: prompt scores (mean reward, not normalised) in equal bins over
[0, 1], with the kept prompts' counts per bin), ``kept`` and ``dropped`` (counts), ``kept_ids`` and
``drops`` (id, domain, reason, detail).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from datarl.select.prepo import SelectConfig, SelectionResult

__all__ = ["build_report", "histogram", "format_summary"]

DROP_TOTALS = {
    "duplicate_of_train": "dedup_dropped",
    "duplicate_in_pool": "pool_duplicates_dropped",
    "scoring_failed": "scoring_failed_dropped",
    "unsolvable": "unsolvable_dropped",
}


def histogram(values: Sequence[float], kept: Sequence[float], bins: int) -> dict[str, list]:
    """Counts of ``values`` and of ``kept`` in ``bins`` equal bins over [0, 1] (1.0 in the last bin)."""
    edges = [round(i / bins, 6) for i in range(bins + 1)]

    def count(xs: Sequence[float]) -> list[int]:
        out = [0] * bins
        for x in xs:
            out[min(bins - 1, max(0, int(math.floor(float(x) * bins))))] += 1
        return out

    return {"edges": edges, "counts": count(values), "kept_counts": count(kept)}


def _domain(
    result: SelectionResult, cfg: SelectConfig, domain: str, count: int, dropped: Mapping[str, int]
) -> dict[str, Any]:
    items = [sp for sp in result.eligible if sp.domain == domain]
    kept_ids = {sp.id for sp in result.selected}
    means = [sp.mean for sp in items]
    kept = [sp for sp in items if sp.id in kept_ids]
    mu = sum(means) / len(means) if means else None
    sd = math.sqrt(sum((m - mu) ** 2 for m in means) / len(means)) if mu is not None else None
    threshold: dict[str, Any] = {"score": None, "z": None, "percentile": None}
    if kept and cfg.strategy in ("lowest", "band"):
        norm = {"zscore": "z", "rank": "percentile", "none": "score"}[cfg.normalise]
        top = max(kept, key=lambda sp: result.stats[sp.id][norm])
        threshold = {k: result.stats[top.id][k] for k in threshold}
    return {
        "count": count,
        "eligible": len(items),
        "kept": len(kept),
        "dropped": sum(dropped.values()),
        "dropped_by_reason": dict(sorted(dropped.items())),
        "mean": mu,
        "std": sd,
        "threshold": threshold["score"],
        "threshold_z": threshold["z"],
        "threshold_percentile": threshold["percentile"],
        "histogram": histogram(means, [sp.mean for sp in kept], cfg.histogram_bins),
    }


def build_report(
    result: SelectionResult, cfg: SelectConfig, meta: Mapping[str, Any], considered: Sequence[Any]
) -> dict[str, Any]:
    """The report dict; ``considered``: the pool records selection started from (after the domain filter)."""
    counts = Counter(r.domain for r in considered)
    dropped: dict[str, Counter] = defaultdict(Counter)
    for d in result.drops:
        dropped[d.domain][d.reason] += 1
    reasons = Counter(d.reason for d in result.drops)
    totals = {
        "pool_lines": meta.get("pool_lines"),
        "valid_considered": len(considered),
        "invalid_dropped": meta.get("invalid_dropped", 0),
        "excluded_by_domain": meta.get("excluded_by_domain", 0),
        **{DROP_TOTALS.get(k, f"{k}_dropped"): reasons.get(k, 0) for k in DROP_TOTALS},
        "eligible": len(result.eligible),
        "kept": len(result.selected),
        "train_records": meta.get("train_records", 0),
        "written": meta.get("written"),
    }
    settings = {
        k: getattr(cfg, k)
        for k in (
            "strategy",
            "low",
            "high",
            "normalise",
            "scope",
            "fraction",
            "count",
            "seed",
            "samples_per_prompt",
            "drop_unsolvable",
            "dedup",
        )
    }
    settings["domain_filter"] = list(cfg.domains) if cfg.domains else None
    settings["sampling"] = {
        k: getattr(cfg, k) for k in ("temperature", "top_p", "max_new_tokens", "batch_size", "prompts_per_chunk")
    }
    return {
        **settings,
        **{
            k: meta[k]
            for k in ("policy", "router", "bt_mapping", "pool", "train", "output", "merged", "scores", "errors")
            if k in meta
        },
        "kept": len(result.selected),
        "dropped": len(result.drops),
        "totals": totals,
        "run": {
            k: meta[k]
            for k in ("sampled_now", "already_scored", "seconds", "generate_seconds", "score_seconds")
            if k in meta
        },
        "domains": {
            d: _domain(result, cfg, d, counts.get(d, 0), dropped.get(d, {})) for d in sorted(set(counts) | set(dropped))
        },
        "kept_ids": [sp.id for sp in result.selected],
        "drops": [d.to_dict() for d in result.drops],
    }


def format_summary(summary: Any) -> str:
    """What ``datarl select`` prints: totals, drops and a per-domain table."""
    r = summary.report
    t = r["totals"]
    size = (
        f"count {r['count']}"
        if r["count"] is not None
        else f"{r['fraction'] * 100:g}%"
        if r["fraction"] is not None
        else "the whole band"
    )
    if r["strategy"] == "all":
        how = "every eligible prompt"
    elif r["strategy"] == "band":
        how = f"mean reward in [{r['low']:g}, {r['high']:g}], {size}"
    else:
        how = size
    lines = [
        f"selected {t['kept']} of {t['eligible']} eligible pool prompts ({r['strategy']}, {how}, "
        f"scope {r['scope']}, {r['normalise']}) -> {summary.output} ({t['written']} records"
        f"{', training set first' if r.get('merged') else ''})",
        f"sampled {summary.sampled_now} prompts x {r['samples_per_prompt']} in {summary.seconds:.1f} s "
        f"(generate {summary.generate_seconds:.1f} s, score {summary.score_seconds:.1f} s)"
        f"{f'; {summary.already_scored} already scored in ' + summary.scores_path if summary.already_scored else ''}",
    ]
    drops = {k: v for k, v in t.items() if k.endswith("_dropped") and v}
    if drops or t.get("excluded_by_domain"):
        lines.append(
            "  dropped: "
            + ", ".join(f"{k[:-8]}={v}" for k, v in drops.items())
            + (f"; outside --domains: {t['excluded_by_domain']}" if t.get("excluded_by_domain") else "")
        )
    if summary.errors_path:
        lines.append(f"  bad pool lines: {t['invalid_dropped']} (see {summary.errors_path})")
    lines.append(f"  {'domain':<18} {'pool':>6} {'eligible':>8} {'kept':>6} {'mean':>7} {'threshold':>9}")
    for d, s in r["domains"].items():
        thr = f"{s['threshold']:.3f}" if s["threshold"] is not None else "-"
        mean = f"{s['mean']:.3f}" if s["mean"] is not None else "-"
        lines.append(f"  {d:<18} {s['count']:>6} {s['eligible']:>8} {s['kept']:>6} {mean:>7} {thr:>9}")
    lines.append(f"  report: {summary.report_path}")
    return "\n".join(lines)
