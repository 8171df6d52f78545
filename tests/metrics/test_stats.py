"""Intervals for evaluation scores: a proportion, a paired difference, a difference of two proportions."""

from __future__ import annotations

import math

import pytest

from datarl.metrics.stats import paired_difference, proportion_difference, wilson_interval


def test_wilson_interval_is_sane_at_the_edges():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and 0.8 < lo < 0.9


def test_paired_difference_counts_only_items_that_changed():
    # 10 items: 3 flip 0 -> 1, 1 flips 1 -> 0, 6 stay. diffs: three +1, one -1, six 0: mean 0.2,
    # sample variance (3 * 0.64 + 1.44 + 6 * 0.04) / 9 = 0.4, half-width 1.96 * sqrt(0.04) = 0.392.
    before = [0, 0, 0, 1, 1, 1, 0, 0, 1, 0]
    after = [1, 1, 1, 0, 1, 1, 0, 0, 1, 0]
    d = paired_difference(before, after)
    assert d["diff"] == pytest.approx(0.2) and d["n"] == 10
    assert d["ci95_low"] == pytest.approx(0.2 - 0.392) and d["ci95_high"] == pytest.approx(0.2 + 0.392)
    assert (d["improved"], d["worsened"]) == (3, 1)
    # Identical results on every item: no difference and no uncertainty about it.
    assert paired_difference([1] * 10, [1] * 10)["ci95_high"] == 0.0
    with pytest.raises(ValueError, match="same items"):
        paired_difference([1, 0], [1])


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873, method 10, on his eight examples: the values statsmodels'
        # confint_proportions_2indep(method="newcomb") gives (checked outside the project, not a dependency)
        ((56, 70), (48, 80), 0.0524, 0.3339),
        ((9, 10), (3, 10), 0.1705, 0.8090),
        ((6, 7), (2, 7), 0.0582, 0.8062),
        ((5, 56), (0, 29), -0.0381, 0.1926),
        ((0, 10), (0, 20), -0.1611, 0.2775),
        ((0, 10), (0, 10), -0.2775, 0.2775),
        ((10, 10), (0, 20), 0.6791, 1.0),
        ((10, 10), (0, 10), 0.6075, 1.0),
    ],
)
def test_proportion_difference_matches_newcombes_published_intervals(a, b, low, high):
    d = proportion_difference(*a, *b)
    assert d["diff"] == pytest.approx(a[0] / a[1] - b[0] / b[1])
    assert (round(d["ci95_low"], 4), round(d["ci95_high"], 4)) == (
        pytest.approx(low, abs=1e-4),
        pytest.approx(high, abs=1e-4),
    )


def test_proportion_difference_is_nan_without_items_and_antisymmetric():
    assert math.isnan(proportion_difference(0, 0, 3, 10)["diff"])
    ab, ba = proportion_difference(30, 50, 20, 40), proportion_difference(20, 40, 30, 50)
    assert ab["ci95_low"] == pytest.approx(-ba["ci95_high"]) and ab["ci95_high"] == pytest.approx(-ba["ci95_low"])
