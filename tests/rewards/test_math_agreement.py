"""Agreement of ``rtv.math`` with labelled model solutions (DESIGN section 3).

Data: ``math_gsm8k_solutions.jsonl`` (2,640 GSM8K solutions, labels from the
GSM8K verifier data) and ``math_qwen_math_cot.jsonl`` (400 MATH responses,
labels from Qwen2.5-Math's grader). Looked up in ``$DATARL_TEST_DATA``, then
``shared/data`` beside the repository (where CI puts it).

Besides the thresholds, the exact set of disagreeing ids is pinned in
``ALLOWED_DISAGREEMENTS`` so any change in behaviour shows up as a diff here.
"""

from __future__ import annotations

import json
import os
from multiprocessing import get_context
from pathlib import Path
import pytest

from datarl.rewards.math import score_math

_DIRS = [os.environ.get("DATARL_TEST_DATA", ""), str(Path(__file__).resolve().parents[3] / "shared" / "data")]

THRESHOLDS = {"math_gsm8k_solutions.jsonl": 0.999, "math_qwen_math_cot.jsonl": 0.995}

ALLOWED_DISAGREEMENTS: dict[str, set[str]] = {
    "math_gsm8k_solutions.jsonl": set(),
    "math_qwen_math_cot.jsonl": {
        # gold 10{,}000, boxed 10000, label False: Qwen's grader does not read the
        # LaTeX thousands separator {,}; 10{,}000 == 10000, so our 1.0 is right.
        "qwen-math-72-7",
    },
}


def _find(name: str) -> Path | None:
    for folder in _DIRS:
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_agreement(name: str) -> None:
    path = _find(name)
    if path is None:
        pytest.fail(f"{name} not found in {_DIRS}: the shared data must sit beside the repository")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # Two workers, as on the 2-core CI box. The worker function must live in an
    # importable module (not this test file), or spawned workers die and respawn forever.
    with get_context("spawn").Pool(2) as pool:
        results = pool.starmap(score_math, [(row, row["response"]) for row in rows], chunksize=50)
    disagree = {row["id"] for row, res in zip(rows, results) if bool(row["label"]) != (res.score == 1.0)}
    agreement = 1 - len(disagree) / len(rows)
    assert agreement >= THRESHOLDS[name], f"{name}: {agreement:.4f} ({sorted(disagree)})"
    assert disagree == ALLOWED_DISAGREEMENTS[name]
