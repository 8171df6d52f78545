"""Response diversity (PAPER section 7.5): edit distance between samples, distinct-n, distinct answers.

The paper samples 5 responses per prompt and takes the **maximum pairwise edit distance**; it leaves the unit and
the normalisation open. Ours: Levenshtein distance over tokens (the policy's token ids when given, else
whitespace words) divided by the longer length, so 0 = identical, 1 = nothing in common.

Everything here is pure (no I/O) and never raises on model output.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations
from typing import Any

from datarl.rewards.code import extract_code
from datarl.rewards.math_extract import extract_answer
from datarl.rewards.math_text import exact_number, normalize_answer, string_key

__all__ = [
    "edit_distance",
    "normalised_edit_distance",
    "max_pairwise_edit",
    "distinct_n",
    "final_answer",
    "diversity_summary",
]


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance (insert, delete, substitute; each costs 1) between two token sequences.

    Bit-parallel (Myers 1999, Hyyrö 2003): one bit per token of the shorter sequence, held in a Python int, so
    memory is O(min(len a, len b)) and time O(len a * len b / word size). Two 128-token samples take ~70 us
    here, against ~2.5 ms for the textbook DP in Python and ~0.45 ms for a numpy row-at-a-time DP; 5 samples
    (10 pairs) take ~0.7 ms.
    """
    if len(a) > len(b):
        a, b = b, a
    m = len(a)
    if m == 0:
        return len(b)
    peq: dict[Hashable, int] = {}  # token -> bitmask of the positions where it occurs in a
    for i, tok in enumerate(a):
        peq[tok] = peq.get(tok, 0) | (1 << i)
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, dist = mask, 0, m  # vertical +1/-1 deltas of the DP column; dist = D[m][j]
    for tok in b:
        eq = peq.get(tok, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & mask
        mh = pv & xh
        if ph & high:
            dist += 1
        elif mh & high:
            dist -= 1
        ph = ((ph << 1) | 1) & mask  # the top row D[0][j] = j grows by 1 per step: shift in a +1
        mh = (mh << 1) & mask
        pv = (mh | ~(xv | ph)) & mask
        mv = ph & xv
    return dist


def normalised_edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """:func:`edit_distance` divided by the longer length, in [0, 1]; 0.0 for two empty sequences."""
    longer = max(len(a), len(b))
    return edit_distance(a, b) / longer if longer else 0.0


def max_pairwise_edit(samples: Sequence[Sequence[Hashable]]) -> float:
    """The paper's measure: the largest normalised edit distance over all pairs; 0.0 for fewer than 2 samples."""
    return max((normalised_edit_distance(x, y) for x, y in combinations(samples, 2)), default=0.0)


def _words(text: Any) -> list[str]:
    return text.lower().split() if isinstance(text, str) else []


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / total n-grams, pooled over all texts (lowercased whitespace words; n-grams never span
    two texts). 0.0 when there are no n-grams."""
    if n < 1:
        raise ValueError(f"distinct_n: n must be >= 1, got {n}")
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _words(text)
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def _math_answer(response: str) -> str:
    found = extract_answer(response)
    if found is None:
        return ""
    norm = normalize_answer(found.answer)
    number = exact_number(norm)
    if number is not None:  # "0.5", "1/2" and "\frac{1}{2}" are one answer
        value, percent = number
        return f"{value}%" if percent else str(value)
    return string_key(norm)


def final_answer(record: Mapping[str, Any], response: str) -> str:
    """A comparable form of a response's final answer, for counting distinct answers.

    math: the answer found by ``rtv.math``'s extraction, normalised (numbers as exact fractions), "" if none;
    code: the code ``rtv.code`` would run, each line stripped, blank lines dropped;
    other tasks: the lowercased text with whitespace collapsed.
    """
    if not isinstance(response, str):
        return ""
    task = record.get("task") if isinstance(record, Mapping) else None
    try:
        if task == "math":
            return _math_answer(response)
        if task == "code":
            code, _ = extract_code(response)
            return "\n".join(line.strip() for line in code.splitlines() if line.strip())
    except Exception:  # never raise on model output; fall back to the plain text form
        pass
    return re.sub(r"\s+", " ", response.lower()).strip()


def _prompt_stats(
    record: Mapping[str, Any], texts: Sequence[str], token_ids: Sequence[Sequence[int]] | None
) -> tuple[float, float, float, float]:
    tokens: Sequence[Sequence[Hashable]]
    if token_ids is None:
        tokens = [t.split() if isinstance(t, str) else [] for t in texts]
    else:  # tensors hash by identity, so compare plain ints (torch/numpy rows have .tolist())
        tokens = [[int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)] for ids in token_ids]
    answers = {final_answer(record, t) for t in texts}  # "" (no answer) counts as one answer class
    return max_pairwise_edit(tokens), distinct_n(texts, 1), distinct_n(texts, 2), float(len(answers))


def diversity_summary(
    items: Sequence[tuple[Mapping[str, Any], Sequence[str], Sequence[Sequence[int]] | None]],
) -> dict[str, float]:
    """Diversity over prompts, each with its k samples: ``(record, texts, token ids or None)``.

    Returns means over prompts of ``max_edit`` (:func:`max_pairwise_edit` over the response token ids, without
    prompt or padding; lists, tensors or arrays; whitespace words when None), ``distinct_1`` and ``distinct_2``
    (over that prompt's samples) and ``answers`` (the number of distinct :func:`final_answer` values among
    them). All 0.0 for no prompts.
    """
    keys = ("max_edit", "distinct_1", "distinct_2", "answers")
    if not items:
        return dict.fromkeys(keys, 0.0)
    totals = [0.0] * len(keys)
    for record, texts, token_ids in items:
        for i, value in enumerate(_prompt_stats(record, texts, token_ids)):
            totals[i] += value
    return {k: t / len(items) for k, t in zip(keys, totals)}
