"""The optimisation pieces the training loops share: batches in length-sorted parts."""

from __future__ import annotations

from datarl.models.optim import length_parts


def test_length_parts_cover_every_row_once_keep_items_whole_and_sort_by_length():
    lengths = [5, 9, 1, 7, 3, 8, 2, 6]
    parts = length_parts(lengths, 3)
    assert sorted(i for p in parts for i in p) == list(range(8))
    assert all(len(p) <= 3 for p in parts)
    assert [lengths[i] for p in parts for i in p] == sorted(lengths)  # short rows together pad little
    paired = length_parts(lengths, 4, unit=2)
    assert sorted(i for p in paired for i in p) == list(range(8))
    assert all(len(p) <= 4 and all(p[k] % 2 == 0 and p[k + 1] == p[k] + 1 for k in range(0, len(p), 2)) for p in paired)
    assert length_parts(lengths, 1, unit=2)[0] == [6, 7]  # at least one item a part; items by their longest row
    assert length_parts(lengths, 0) == [list(range(8))]
    assert length_parts([], 4) == []
