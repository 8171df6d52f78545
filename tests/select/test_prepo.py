"""Pre-PPO selection: the pure core on hand-made scores (normalisation, scope, ties, baselines, dedup, drops)."""

from __future__ import annotations

import math
import random

import pytest

from datarl.select.prepo import (
    Drop,
    ScoredPrompt,
    SelectConfig,
    SelectError,
    allocate,
    find_duplicates,
    prompt_key,
    select_prompts,
)
from datarl.select.prepo_report import build_report, histogram


def sp(name: str, domain: str, *rewards: float, failures=(), prompt: str | None = None) -> ScoredPrompt:
    return ScoredPrompt({"id": name, "task": "math", "prompt": prompt or f"prompt {name}"}, domain, rewards, failures)


# Domain A: one outlier far below a tight cluster; domain B: evenly spread. z-score and percentile rank
# them differently across domains (A's second-lowest has z 0.39 but percentile 0.25).
A = [0.0, 0.96, 0.97, 0.98, 0.99, 1.0]
B = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
TWO = [sp(f"A{i}", "A", s) for i, s in enumerate(A)] + [sp(f"B{i}", "B", s) for i, s in enumerate(B)]


def ids(result) -> list[str]:
    return [p.id for p in result.selected]


def test_per_domain_zscore_and_percentile_values():
    r = select_prompts(TWO, SelectConfig(count=4))
    mu, sd = sum(B) / 6, math.sqrt(sum((b - sum(B) / 6) ** 2 for b in B) / 6)
    for i, b in enumerate(B):
        assert r.stats[f"B{i}"]["z"] == pytest.approx((b - mu) / sd)
        assert r.stats[f"B{i}"]["percentile"] == pytest.approx((i + 0.5) / 6)
        assert r.stats[f"B{i}"]["domain_rank"] == i and r.stats[f"B{i}"]["domain_size"] == 6
    tied = select_prompts([sp("x", "T", 0.5), sp("y", "T", 0.5), sp("z", "T", 1.0)], SelectConfig(count=1))
    assert tied.stats["x"]["percentile"] == tied.stats["y"]["percentile"] == pytest.approx(1 / 3)  # mid-rank
    assert tied.stats["x"]["z"] == tied.stats["y"]["z"] < 0
    flat = select_prompts([sp("x", "F", 0.3), sp("y", "F", 0.3)], SelectConfig(count=1))
    assert flat.stats["x"]["z"] == 0.0  # std 0: no division by zero


def test_global_scope_depends_on_the_normalisation():
    def pick(normalise: str) -> list[str]:
        return ids(select_prompts(TWO, SelectConfig(count=4, scope="global", normalise=normalise)))

    assert pick("zscore") == ["A0", "B0", "B1", "B2"]  # A's cluster sits above its mean: z > 0
    assert pick("rank") == ["A0", "A1", "B0", "B1"]  # by percentile, A1 is as low as B1
    assert pick("none") == ["A0", "B0", "B1", "B2"]


def test_domain_scope_keeps_the_fraction_of_every_domain_whatever_the_normalisation():
    for normalise in ("zscore", "rank", "none"):
        r = select_prompts(TWO, SelectConfig(fraction=0.34, normalise=normalise))
        assert ids(r) == ["A0", "A1", "B0", "B1"] and r.quotas == {"A": 2, "B": 2} and r.target == 4


def test_domain_quotas_follow_the_largest_remainder_and_sum_to_the_target():
    assert allocate(2, {"a": 10, "b": 5, "c": 5}) == {"a": 1, "b": 1, "c": 0}  # b and c tie: by name
    assert allocate(7, {"a": 3, "b": 3, "c": 1}) == {"a": 3, "b": 3, "c": 1}
    items = (
        [sp(f"a{i}", "a", i / 10) for i in range(10)]
        + [sp(f"b{i}", "b", i / 5) for i in range(5)]
        + [sp(f"c{i}", "c", i / 5) for i in range(5)]
    )
    r = select_prompts(items, SelectConfig(fraction=0.1))
    assert r.quotas == {"a": 1, "b": 1, "c": 0} and ids(r) == ["a0", "b0"]
    assert ids(select_prompts(items, SelectConfig(fraction=0.1, scope="global", normalise="none"))) == ["a0", "b0"]


def test_ties_are_broken_by_the_seed_not_by_file_order():
    items = [sp(f"t{i}", "T", 0.5) for i in range(12)]
    picks = {s: set(ids(select_prompts(items, SelectConfig(count=3, seed=s)))) for s in range(6)}
    assert len({frozenset(p) for p in picks.values()}) > 1  # the seed matters
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    for s, picked in picks.items():
        assert set(ids(select_prompts(shuffled, SelectConfig(count=3, seed=s)))) == picked
    # a strictly lower score always wins over the tie-break
    assert "low" in ids(select_prompts(items + [sp("low", "T", 0.4)], SelectConfig(count=1, seed=3)))


def test_count_and_fraction_agree_and_bad_sizes_are_clear_errors():
    items = [sp(f"p{i}", "D", i / 10) for i in range(10)]
    assert ids(select_prompts(items, SelectConfig(count=3))) == ids(select_prompts(items, SelectConfig(fraction=0.3)))
    assert ids(select_prompts(items, SelectConfig(count=3))) == ["p0", "p1", "p2"]
    assert select_prompts(items, SelectConfig(fraction=0.25)).target == 3  # 2.5 rounds half up
    with pytest.raises(SelectError, match="rounds to 0"):
        select_prompts(items, SelectConfig(fraction=0.01))
    with pytest.raises(SelectError, match="count 11 is more than the 10 eligible"):
        select_prompts(items, SelectConfig(count=11))
    with pytest.raises(SelectError, match="fraction or count, not both"):
        SelectConfig(fraction=0.2, count=3)
    assert SelectConfig().fraction == 0.10 and SelectConfig(count=5).fraction is None


def test_random_baseline_same_count_same_split_seeded():
    items = [sp(f"a{i}", "a", i / 20) for i in range(20)] + [sp(f"b{i}", "b", i / 10) for i in range(10)]
    lowest = select_prompts(items, SelectConfig(fraction=0.2))
    rand = select_prompts(items, SelectConfig(fraction=0.2, strategy="random", seed=5))
    assert rand.target == lowest.target == 6 and rand.quotas == lowest.quotas == {"a": 4, "b": 2}
    assert ids(rand) != ids(lowest)
    assert ids(select_prompts(items, SelectConfig(fraction=0.2, strategy="random", seed=5))) == ids(rand)
    others = {
        tuple(ids(select_prompts(items, SelectConfig(fraction=0.2, strategy="random", seed=s)))) for s in range(5)
    }
    assert len(others) > 1
    glob = select_prompts(items, SelectConfig(count=6, strategy="random", scope="global", seed=5))
    assert len(glob.selected) == 6


def test_all_keeps_every_eligible_prompt():
    items = [sp("a", "a", 0.1), sp("b", "a", 0.9), sp("c", "b", 0.0, failures=("judge_error",))]
    r = select_prompts(items, SelectConfig(strategy="all", fraction=0.01))
    assert ids(r) == ["a", "b"] and [d.reason for d in r.drops] == ["scoring_failed"]


def test_dedup_against_train_and_within_the_pool_folds_case_and_whitespace():
    train = [{"id": "t1", "prompt": "What is 2 + 2?"}, {"id": "t2", "prompt": [{"role": "user", "content": "Say  hi"}]}]
    items = [
        sp("p1", "D", 0.0, prompt="  what IS 2 +\n 2?"),
        sp("p2", "D", 0.1, prompt="Hello world"),
        sp("p3", "D", 0.2, prompt="hello   WORLD "),
        sp("p4", "D", 0.3, prompt="Something new"),
        ScoredPrompt({"id": "p5", "prompt": [{"role": "user", "content": "say hi"}]}, "D", (0.0,)),
    ]
    r = select_prompts(items, SelectConfig(strategy="all"), train=train)
    assert ids(r) == ["p2", "p4"]
    assert [(d.id, d.reason, d.detail) for d in r.drops] == [
        ("p1", "duplicate_of_train", "t1"),
        ("p3", "duplicate_in_pool", "p2"),
        ("p5", "duplicate_of_train", "t2"),
    ]
    assert ids(select_prompts(items, SelectConfig(strategy="all", dedup=False), train=train)) == [
        "p1",
        "p2",
        "p3",
        "p4",
        "p5",
    ]
    assert prompt_key("A\tB\n c ") == "a b c"
    assert find_duplicates([{"id": "x", "prompt": "Q"}], [{"id": "t", "prompt": "q"}]) == {
        0: ("duplicate_of_train", "t")
    }


def test_drop_unsolvable_is_optional_and_scoring_failures_never_count_as_hard():
    items = [
        sp("never", "D", 0.0, 0.0, 0.0),
        sp("once", "D", 0.0, 0.0, 1.0),
        sp("easy", "D", 1.0, 1.0, 1.0),
        sp("broken", "D", 0.0, 0.0, 0.0, failures=("sandbox_unavailable", None, None)),
        sp("wrong", "D", 0.0, 0.0, 0.0, failures=("wrong_answer", "no_answer", "timeout")),
    ]
    kept = select_prompts(items, SelectConfig(count=2))
    assert set(ids(kept)) == {"never", "wrong"} and [d.id for d in kept.drops] == ["broken"]
    solvable = select_prompts(items, SelectConfig(count=1, drop_unsolvable=True))
    assert ids(solvable) == ["once"]
    assert {d.id: d.reason for d in solvable.drops} == {
        "never": "unsolvable",
        "broken": "scoring_failed",
        "wrong": "unsolvable",
    }
    with pytest.raises(SelectError, match="no eligible prompts"):
        select_prompts(items[:1], SelectConfig(count=1, drop_unsolvable=True))


def test_annotated_records_and_prior_drops():
    rec = ScoredPrompt({"id": "p", "prompt": "x", "response": "old", "label": 7}, "D", (0.25, 0.75))
    r = select_prompts(
        [rec, sp("q", "D", 1.0)], SelectConfig(count=1), prior_drops=[Drop("z", "D", "duplicate_of_train")]
    )
    (row,) = r.annotated()
    assert "response" not in row and row["label"] == 7 and row["id"] == "p"
    assert row["prepo"]["score"] == 0.5 and row["prepo"]["rewards"] == [0.25, 0.75]
    assert row["prepo"]["domain_rank"] == 0 and row["prepo"]["strategy"] == "lowest"
    assert [d.id for d in r.drops] == ["z"]


def test_band_keeps_the_mean_rewards_between_low_and_high_ends_included():
    r = select_prompts(TWO, SelectConfig(strategy="band"))  # [0.1, 0.9]: A's cluster is above, A0 and B0 below
    assert ids(r) == ["B1", "B2", "B3", "B4"] and r.target == 4 and r.quotas == {"A": 0, "B": 4}
    assert ids(select_prompts(TWO, SelectConfig(strategy="band", low=0.0, high=0.2))) == ["A0", "B0", "B1"]
    assert ids(select_prompts(TWO, SelectConfig(strategy="band", low=1.0, high=1.0))) == ["A5", "B5"]
    assert r.annotated()[0]["prepo"]["strategy"] == "band"
    assert r.stats["B1"] == select_prompts(TWO, SelectConfig(count=4)).stats["B1"]  # normalised over all eligible


def test_band_with_a_size_keeps_the_lowest_inside_the_band_split_by_the_band():
    # [0.1, 1]: A1..A5 and B1..B5 are inside (5 each); 4 kept: 2 per domain, lowest first
    cfg = SelectConfig(strategy="band", high=1.0, count=4)
    assert ids(select_prompts(TWO, cfg)) == ["A1", "A2", "B1", "B2"]
    # fraction counts the eligible prompts (12), as for the other strategies: 6 kept
    cfg = SelectConfig(strategy="band", high=1.0, fraction=0.5)
    assert ids(select_prompts(TWO, cfg)) == ["A1", "A2", "A3", "B1", "B2", "B3"]
    # quotas follow the band, not the pool: only B has prompts in [0.1, 0.9]
    assert ids(select_prompts(TWO, SelectConfig(strategy="band", count=2))) == ["B1", "B2"]
    cfg = SelectConfig(strategy="band", high=1.0, count=3, scope="global", normalise="none")
    assert ids(select_prompts(TWO, cfg)) == ["B1", "B2", "B3"]  # raw scores 0.2, 0.4, 0.6 under A's 0.96


def test_an_empty_or_too_small_band_is_a_clear_error():
    with pytest.raises(SelectError, match=r"no eligible prompt's mean reward lies in the band \[0.45, 0.55\]"):
        select_prompts(TWO, SelectConfig(strategy="band", low=0.45, high=0.55))
    with pytest.raises(SelectError, match=r"band \[0.1, 0.9\] holds 4 of the 12 eligible prompts, fewer than the 5"):
        select_prompts(TWO, SelectConfig(strategy="band", count=5))


def test_band_config_defaults_and_checks():
    cfg = SelectConfig(strategy="band")
    assert (cfg.low, cfg.high, cfg.fraction, cfg.count) == (0.1, 0.9, None, None)
    assert SelectConfig().fraction == 0.10 and SelectConfig().low is None
    for bad, fragment in (
        ({"low": 0.2}, "bounds a band, but the strategy is 'lowest'"),
        ({"strategy": "random", "high": 0.8}, "select.high: bounds a band"),
        ({"strategy": "band", "low": -0.1}, "select.low: must be a mean reward in"),
        ({"strategy": "band", "high": 1.5}, "select.high: must be a mean reward in"),
        ({"strategy": "band", "low": True}, "select.low: must be"),
        ({"strategy": "band", "low": 0.8, "high": 0.2}, "low 0.8 > high 0.2; swap them"),
        ({"strategy": "band", "low": 0.95}, "low 0.95 > high 0.9"),
    ):
        with pytest.raises(SelectError, match=fragment):
            SelectConfig(**bad)
    merged = SelectConfig.from_mapping({"strategy": "band", "low": 0.2}, {"high": 0.7})
    assert (merged.low, merged.high) == (0.2, 0.7)


def test_config_validation_and_mapping_overrides():
    for bad in (
        {"strategy": "highest"},
        {"fraction": 0},
        {"fraction": 1.5},
        {"count": 0},
        {"scope": "task"},
        {"normalise": "minmax"},
        {"samples_per_prompt": 0},
        {"domains": []},
        {"temperature": -1},
    ):
        with pytest.raises(SelectError):
            SelectConfig(**bad)
    with pytest.raises(SelectError, match="unknown option"):
        SelectConfig.from_mapping({"keep_frac": 0.1})
    with pytest.raises(SelectError, match="mapping"):
        SelectConfig.from_mapping([1])
    cfg = SelectConfig.from_mapping({"count": 50, "scope": "global", "domains": "math"}, {"fraction": 0.2})
    assert cfg.fraction == 0.2 and cfg.count is None and cfg.scope == "global" and cfg.domains == ("math",)
    assert SelectConfig.from_mapping({"fraction": 0.3}, {"count": 9}).count == 9


def test_report_histograms_and_thresholds():
    assert histogram([0.0, 0.049, 0.05, 1.0], [1.0], 20)["counts"] == [2, 1] + [0] * 17 + [1]
    items = [sp(f"p{i}", "D", i / 9) for i in range(10)] + [sp("dup", "D", 0.0, prompt="prompt p0")]
    r = select_prompts(items, SelectConfig(fraction=0.3))
    rep = build_report(r, r.config, {"pool_lines": 11}, [p for p in items])
    d = rep["domains"]["D"]
    assert (d["count"], d["eligible"], d["kept"], d["dropped"]) == (11, 10, 3, 1)
    assert d["dropped_by_reason"] == {"duplicate_in_pool": 1}
    assert d["threshold"] == pytest.approx(2 / 9) and d["threshold_z"] < 0
    assert sum(d["histogram"]["counts"]) == 10 and sum(d["histogram"]["kept_counts"]) == 3
    assert len(d["histogram"]["edges"]) == 21 and rep["kept_ids"] == ["p0", "p1", "p2"]
    assert rep["totals"]["pool_duplicates_dropped"] == 1 and rep["kept"] == 3 and rep["dropped"] == 1
    assert rep["low"] is None and rep["high"] is None
    band = select_prompts(items, SelectConfig(strategy="band", low=0.3, high=0.7))
    rep = build_report(band, band.config, {"pool_lines": 11}, [p for p in items])
    assert (rep["strategy"], rep["low"], rep["high"], rep["fraction"], rep["count"]) == ("band", 0.3, 0.7, None, None)
    assert rep["kept_ids"] == ["p3", "p4", "p5", "p6"]  # 3/9 .. 6/9 lie in [0.3, 0.7]
    assert rep["domains"]["D"]["threshold"] == pytest.approx(6 / 9)  # the highest score kept
