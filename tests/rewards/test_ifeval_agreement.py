"""Agreement of ``rtv.ifeval`` with Google's IFEval labels on 270 GPT-4 responses.

``label_strict`` / ``label_loose`` are Google's per-instruction results for the
same responses. We require 100% agreement apart from the allow-list below, each
entry with the reason it cannot (and should not) be reproduced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datarl.rewards.ifeval import check_instructions, score_ifeval, validate_instructions

DATA = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "ifeval_gpt4_responses.jsonl"
)  # shared/ beside the repo

# (record id, instruction id, mode) -> why our result differs from Google's label.
ALLOWED_MISSES = {
    # kwargs {"letter": "!", "let_frequency": 6, "let_relation": "at least"}; the
    # response has 13 "!". The IFEval version that made the labels replaced any
    # letter outside a-z by a *random* ASCII letter (random.choice in
    # build_description), so its strict False and loose True came from two coin
    # tosses. We count "!" as the prompt asks (current upstream IFEval does too).
    ("ifeval-1129", "keywords:letter_frequency", "strict"),
}


def _rows() -> list[dict]:
    with DATA.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def _misses(mode: str) -> tuple[int, set[tuple[str, str, str]]]:
    label = "label_strict" if mode == "strict" else "label_loose"
    total, misses = 0, set()
    for row in _rows():
        got = check_instructions(row, row["response"], mode=mode)
        for iid, ours, theirs in zip(row["instruction_id_list"], got, row[label], strict=True):
            total += 1
            if ours != theirs:
                misses.add((row["id"], iid, mode))
    return total, misses


def test_reference_records_are_valid() -> None:
    rows = _rows()
    assert len(rows) == 270
    for row in rows:
        assert validate_instructions(row["instruction_id_list"], row["kwargs"]) == [], row["id"]


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_per_instruction_agreement(mode: str) -> None:
    total, misses = _misses(mode)
    allowed = {m for m in ALLOWED_MISSES if m[2] == mode}
    assert misses == allowed, f"unexpected: {misses - allowed}; fixed: {allowed - misses}"
    assert total == 419
    print(f"{mode}: {total - len(misses)}/{total} agree ({len(misses)} allowed misses)")


def test_score_matches_prompt_level_labels() -> None:
    for row in _rows():
        result = score_ifeval(row, row["response"])
        assert result.info["follow_instruction_list_loose"] == row["label_loose"], row["id"]
        if row["id"] != "ifeval-1129":
            assert result.info["follow_instruction_list"] == row["label_strict"], row["id"]
            assert result.score == float(all(row["label_strict"]))
