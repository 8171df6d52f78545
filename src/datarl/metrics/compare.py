"""Comparing arms of a study (pure): bootstrap intervals from ``scipy.stats.bootstrap``, the verdict, IQM.

A study scores every (arm, seed) run on the same eval prompts. For a score per prompt (or a paired
difference per prompt) the estimate is the mean over seeds of each seed's mean over prompts, and its interval
is a *stratified* bootstrap: prompts are resampled within each seed (the seeds are the strata), with
``scipy.stats.bootstrap`` given one sample per seed. Seed-to-seed variation is shown beside it, as the
per-seed values and how many seeds agree in sign; with many seeds, :func:`seed_interval` bootstraps the
per-seed values themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["stratified_interval", "seed_interval", "verdict", "decide", "iqm", "N_RESAMPLES", "CONFIDENCE", "MIN_SEEDS"]

N_RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_SEEDS = 3  # below this, run-to-run variation is not measured and no difference is called


def _mean_of_means(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(np.stack([s.mean(axis=axis) for s in samples]), axis=0)


def stratified_interval(
    strata: Sequence[Sequence[float]], *, seed: int = 0, n_resamples: int = N_RESAMPLES
) -> tuple[float, float, float]:
    """``(estimate, low, high)``: the mean over strata of each stratum's mean, and its 95% percentile
    bootstrap interval resampling within strata. NaN bounds when a stratum has fewer than 2 values."""
    arrays = [np.asarray(s, dtype=float) for s in strata if len(s)]
    if not arrays:
        return (math.nan, math.nan, math.nan)
    estimate = float(_mean_of_means(*arrays))
    if any(len(a) < 2 for a in arrays):
        return (estimate, math.nan, math.nan)
    if all(np.all(a == a[0]) for a in arrays):  # nothing varies: every resample gives the estimate
        return (estimate, estimate, estimate)
    result = stats.bootstrap(
        tuple(arrays),
        _mean_of_means,
        n_resamples=n_resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return (estimate, float(result.confidence_interval.low), float(result.confidence_interval.high))


def seed_interval(
    values: Sequence[float], *, seed: int = 0, n_resamples: int = N_RESAMPLES
) -> tuple[float, float, float]:
    """``(mean, low, high)`` over per-seed values (one per seed), bootstrapped over seeds; NaN bounds below 2."""
    return stratified_interval([values], seed=seed, n_resamples=n_resamples)


def verdict(low: float, high: float, difference: float, higher_is_better: bool) -> str:
    """``better`` or ``worse`` only when the interval excludes 0, else ``no difference resolved``."""
    if math.isnan(low) or math.isnan(high) or low <= 0.0 <= high:
        return "no difference resolved"
    return "better" if (difference > 0) == higher_is_better else "worse"


def decide(
    difference: float,
    prompts: tuple[float, float],
    seeds: tuple[float, float],
    n_seeds: int,
    higher_is_better: bool,
) -> tuple[str, str]:
    """``(verdict, why)`` for a paired comparison: **better**/**worse** only with at least :data:`MIN_SEEDS`
    seeds and when both the prompt-level interval and the seed-level one (the per-seed differences
    bootstrapped) exclude 0. Why both: two PPO seeds of the *same* arm differ by more than the prompt-level
    interval (measured: 1.3 points of math gold over 2,100 prompts at 10 steps, against +-1.0), so the prompts
    alone would call run-to-run noise an effect; the seeds alone, with few of them, are coarse."""
    if n_seeds < MIN_SEEDS:
        return "no difference resolved", f"{n_seeds} seed(s): run-to-run variation needs at least {MIN_SEEDS}"
    calls = [verdict(low, high, difference, higher_is_better) for low, high in (prompts, seeds)]
    if calls[0] == calls[1] != "no difference resolved":
        return calls[0], "both intervals exclude 0"
    if calls == ["no difference resolved"] * 2:
        return calls[0], "neither interval excludes 0"
    alone = "the prompts' interval" if calls[0] != "no difference resolved" else "the seeds' interval"
    return "no difference resolved", f"only {alone} excludes 0"


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean (the mean of the middle 50%, as rliable reports for many runs)."""
    return float(stats.trim_mean(np.asarray(values, dtype=float), 0.25)) if len(values) else math.nan
