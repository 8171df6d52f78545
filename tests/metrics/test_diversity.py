"""Diversity metrics: edit distance against a textbook DP, the paper's max pairwise measure, distinct-n, answers."""

from __future__ import annotations

import random
import time

import pytest

from datarl.metrics import (
    distinct_n,
    diversity_summary,
    edit_distance,
    final_answer,
    max_pairwise_edit,
    normalised_edit_distance,
)


def _dp(a, b) -> int:
    """The textbook O(n*m) Levenshtein DP, the reference the bit-parallel version must match."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("abc", "abc", 0),
        ("abc", "cba", 2),
        ("a" * 70, "b" * 70, 70),  # crosses a 64-bit word
        ("ab" * 40, "ba" * 40, 2),
    ],
)
def test_edit_distance_table(a, b, expected):
    assert edit_distance(a, b) == expected
    assert edit_distance(list(a), list(b)) == expected
    assert edit_distance(b, a) == expected


def test_edit_distance_matches_dp_on_random_token_sequences():
    rng = random.Random(0)
    for _ in range(2000):
        vocab = rng.randint(1, 6)
        a = [rng.randrange(vocab) for _ in range(rng.randint(0, 25))]
        b = [rng.randrange(vocab) for _ in range(rng.randint(0, 25))]
        assert edit_distance(a, b) == _dp(a, b), (a, b)
    for n in (63, 64, 65, 128, 200):  # word boundaries of the bit vectors
        a = [rng.randrange(30) for _ in range(n)]
        b = [rng.randrange(30) for _ in range(n + rng.randint(-10, 10))]
        assert edit_distance(a, b) == _dp(a, b)


def test_edit_distance_works_on_any_hashable_tokens():
    assert edit_distance(["the", "cat", "sat"], ["the", "dog", "sat", "down"]) == 2
    assert edit_distance([(1, 2), None], [None]) == 1


def test_five_samples_of_128_tokens_are_fast():
    rng = random.Random(1)
    samples = [[rng.randrange(500) for _ in range(128)] for _ in range(5)]
    start = time.perf_counter()
    for _ in range(20):
        max_pairwise_edit(samples)
    per_prompt = (time.perf_counter() - start) / 20
    assert per_prompt < 0.02, f"{per_prompt * 1e3:.1f} ms per prompt (measured ~0.7 ms)"


def test_normalised_and_max_pairwise():
    assert normalised_edit_distance([], []) == 0.0
    assert normalised_edit_distance([1, 2, 3, 4], [1, 2, 3, 4]) == 0.0
    assert normalised_edit_distance([1, 2, 3, 4], [1, 2]) == 0.5
    assert normalised_edit_distance([1], [2, 3, 4, 5]) == 1.0
    assert max_pairwise_edit([]) == 0.0
    assert max_pairwise_edit([[1, 2, 3]]) == 0.0
    assert max_pairwise_edit([[1, 2, 3, 4]] * 5) == 0.0
    # the max, not the mean: four identical samples and one that differs in half its tokens
    assert max_pairwise_edit([[1, 2, 3, 4]] * 4 + [[1, 2, 9, 9]]) == 0.5


@pytest.mark.parametrize(
    "texts, n, expected",
    [
        ([], 1, 0.0),
        ([""], 1, 0.0),
        (["a"], 2, 0.0),  # no bigram in a one-word text
        (["a b c"], 1, 1.0),
        (["A a a"], 1, 1 / 3),  # lowercased
        (["a b", "a b"], 1, 2 / 4),
        (["a b", "a b"], 2, 1 / 2),
        (["x y", "z"], 2, 1.0),  # "y z" is not a bigram: n-grams never span texts
        (["the cat sat", "the cat ran"], 2, 3 / 4),
    ],
)
def test_distinct_n_table(texts, n, expected):
    assert distinct_n(texts, n) == pytest.approx(expected)


def test_distinct_n_rejects_n_below_1():
    with pytest.raises(ValueError, match="n must be"):
        distinct_n(["a"], 0)


@pytest.mark.parametrize(
    "task, response, expected",
    [
        ("math", "So the total is 12. The answer is 12.", "12"),
        ("math", "The answer is \\boxed{\\frac{1}{2}}", "1/2"),
        ("math", "Answer: 0.5", "1/2"),  # same value as above
        ("math", "#### 1,000", "1000"),
        ("math", "I am not sure.", ""),
        ("math", "", ""),
        ("code", "```python\ndef f(x):\n    return x\n\n```", "def f(x):\nreturn x"),
        ("code", "```python\ndef f(x):\n  return x\n```", "def f(x):\nreturn x"),  # indentation does not count
        ("ifeval", "  Hello\n  WORLD ", "hello world"),
        ("general", "A  Poem", "a poem"),
    ],
)
def test_final_answer_table(task, response, expected):
    assert final_answer({"task": task}, response) == expected


def test_final_answer_never_raises_on_odd_input():
    assert final_answer({"task": "math"}, None) == ""  # type: ignore[arg-type]
    assert final_answer({}, "Text") == "text"
    assert final_answer({"task": "math"}, "\\boxed{" * 500) is not None


def test_diversity_summary_means_over_prompts():
    collapsed = ({"task": "math"}, ["The answer is 4"] * 5, [[1, 2, 3, 4]] * 5)
    varied = ({"task": "math"}, ["The answer is 4", "Answer: 5", "so 6", "The answer is 4.0", "no idea"], None)
    out = diversity_summary([collapsed, varied])
    assert set(out) == {"max_edit", "distinct_1", "distinct_2", "answers"}
    # collapsed: 1 answer; varied: 4, 5, 6 and "" (4.0 is 4) = 4 answers
    assert out["answers"] == pytest.approx((1 + 4) / 2)
    varied_edit = max_pairwise_edit([t.split() for t in varied[1]])
    assert out["max_edit"] == pytest.approx((0.0 + varied_edit) / 2)
    assert out["distinct_1"] == pytest.approx((distinct_n(collapsed[1], 1) + distinct_n(varied[1], 1)) / 2)
    assert out["distinct_2"] == pytest.approx((distinct_n(collapsed[1], 2) + distinct_n(varied[1], 2)) / 2)
    assert diversity_summary([]) == {"max_edit": 0.0, "distinct_1": 0.0, "distinct_2": 0.0, "answers": 0.0}


def test_diversity_summary_accepts_tensor_rows():
    torch = pytest.importorskip("torch")
    rows = [torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 9, 9])]
    out = diversity_summary([({"task": "general"}, ["a", "a", "b"], rows)])
    assert out["max_edit"] == 0.5  # equal tensors compare by value, not identity
