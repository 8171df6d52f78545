"""Packing rollouts and cutting them into micro-batches of similar length (``datarl.rl.rollout``)."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from datarl.rl.rollout import length_groups, pack  # noqa: E402


def cost(lengths, groups, overhead):
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


def partitions(items):
    """Every set partition of ``items`` (brute force, for small lists)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [[first, *part[k]]] + part[k + 1 :]
        yield [[first], *part]


def test_a_hand_worked_cut():
    # sorted longest first: 100 (row 1), 98 (row 3), 12 (row 2), 10 (row 0). One group: 4 x 100 + 50 = 450;
    # two, {1, 3} and {2, 0}: 200 + 24 + 100 = 324; singletons: 220 + 200 = 420.
    assert length_groups([10, 100, 12, 98], max_rows=4, overhead_tokens=50) == [[1, 3], [2, 0]]
    # no overhead: each length its own pass is cheapest; a huge one: one pass
    assert length_groups([10, 100, 12, 98], max_rows=4, overhead_tokens=0) == [[1], [3], [2], [0]]
    assert length_groups([10, 100, 12, 98], max_rows=4, overhead_tokens=10_000) == [[1, 3, 2, 0]]


def test_equal_lengths_keep_their_order_and_the_row_cap():
    groups = length_groups([5] * 10, max_rows=4, overhead_tokens=1)
    assert sorted(map(len, groups)) == [2, 4, 4]
    assert [i for g in groups for i in g] == list(range(10))  # stable: equal rows keep the input order


@pytest.mark.parametrize("seed", range(20))
def test_the_cut_is_optimal_against_brute_force(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, 7))]
    max_rows, overhead = rng.randint(1, 4), rng.choice([0, 5, 30])
    groups = length_groups(lengths, max_rows, overhead)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(1 <= len(g) <= max_rows for g in groups)
    best = min(
        cost(lengths, p, overhead) for p in partitions(list(range(len(lengths)))) if all(len(g) <= max_rows for g in p)
    )
    assert cost(lengths, groups, overhead) == best


def test_no_rows_and_a_bad_cap():
    assert length_groups([], max_rows=3) == []
    with pytest.raises(ValueError, match="max_rows"):
        length_groups([1, 2], max_rows=0)


def test_micro_batches_group_rows_by_their_whole_length():
    # rows' lengths (prompt + response): 4, 9, 5, 10
    batch = pack([[5, 6, 7], [8] * 7, [9, 9], [4] * 8], [[1], [2, 3], [1, 2, 3], [7, 7]], pad_id=0)
    assert batch.micro_batches([0, 1, 2, 3], 2, by_length=False) == [[0, 1], [2, 3]]
    assert batch.micro_batches([3, 2, 1, 0], 2, by_length=True) == [[3, 1], [2, 0]]
    assert batch.micro_batches([2, 0], 2, by_length=True) in ([[2, 0]], [[2], [0]])
    sub = batch.select([3, 1])
    assert sub.input_ids.shape == (2, 10)  # the long rows together: the short ones pad nothing to 10
