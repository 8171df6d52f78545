"""Intervals for evaluation scores (pure): a proportion, a mean, a paired difference, a difference of two
independent proportions."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["wilson_interval", "mean_interval", "paired_difference", "proportion_difference"]


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (sound at 0%, 100% and small n)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """Normal-approximation 95% interval of a mean of scores in [0, 1]."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    mean = sum(values) / n
    if n == 1:
        return (mean, mean)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    return (max(0.0, mean - half), min(1.0, mean + half))


def paired_difference(before: Sequence[float], after: Sequence[float], z: float = 1.96) -> dict[str, float]:
    """Mean of ``after[i] - before[i]`` over the same items, with a normal-approximation 95% interval from the
    per-item differences (the paired test: an item that is right or wrong both times adds no noise)."""
    if len(before) != len(after):
        raise ValueError(f"paired scores need the same items: {len(before)} before, {len(after)} after")
    diffs = [float(a) - float(b) for b, a in zip(before, after)]
    n = len(diffs)
    if n == 0:
        return {"n": 0, "diff": math.nan, "ci95_low": math.nan, "ci95_high": math.nan}
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    half = z * math.sqrt(var / n)
    return {
        "n": n,
        "diff": mean,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "improved": sum(d > 0 for d in diffs),
        "worsened": sum(d < 0 for d in diffs),
    }


def proportion_difference(successes_a: float, n_a: int, successes_b: float, n_b: int) -> dict[str, float]:
    """``a - b`` for two proportions measured on independent samples (or on the same items when the per-item
    outcomes are lost: then conservative), with Newcombe's hybrid score 95% interval built from each
    proportion's Wilson interval (Newcombe 1998, method 10; sound near 0 and 1, unlike the normal one)."""
    if n_a == 0 or n_b == 0:
        return {"diff": math.nan, "ci95_low": math.nan, "ci95_high": math.nan}
    pa, pb = successes_a / n_a, successes_b / n_b
    (la, ua), (lb, ub) = wilson_interval(successes_a, n_a), wilson_interval(successes_b, n_b)
    diff = pa - pb
    return {
        "diff": diff,
        "ci95_low": diff - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2),
        "ci95_high": diff + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2),
    }
