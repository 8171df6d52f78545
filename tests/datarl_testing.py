"""Helpers shared by the test modules (import them: ``from datarl_testing import read_jsonl``; pytest puts
``tests/`` on the path, see ``pythonpath`` in pyproject.toml). Fixtures built on them are in ``conftest.py``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

WORDS = ["river", "stone", "lamp", "garden", "music", "train", "bread", "coffee", "snow", "book"]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; blank lines are skipped."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> str:
    """Write ``rows`` one JSON object a line; returns the path as a string."""
    Path(path).write_text("".join(json.dumps(dict(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def toy_pairs(n: int = 40, *, task: str | None = None) -> list[dict[str, Any]]:
    """Preference pairs a micro BT model can learn: chosen answers are on topic and polite, rejected ones a
    loop of one word. Tasks alternate general/math unless ``task`` fixes one; gold fields say chosen won."""
    pairs = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        pairs.append(
            {
                "id": f"p{i}",
                "prompt_id": f"q{i}",
                "task": task or ("general" if i % 2 else "math"),
                "prompt": f"Tell me about the {w} number {i}.",
                "chosen": f"The {w} is nice and calm. I like the {w} a lot.",
                "rejected": "no no no no no no",
                "chosen_gold": 0.9,
                "rejected_gold": 0.1,
                "flipped": False,
            }
        )
    return pairs


def save_micro_policy(texts: Iterable[str], out: str | Path, seed: int = 0) -> str:
    """A micro policy (tokenizer trained on ``texts``) saved as a HF model directory; returns its path."""
    from datarl.models.tiny import MICRO, build_tiny_policy

    policy = build_tiny_policy(list(texts), MICRO, seed=seed)
    policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    return str(out)


def micro_backbone(path: str | Path) -> str:
    """A micro policy whose vocabulary covers :func:`toy_pairs` (a base for BT and judge tests)."""
    return save_micro_policy((p["prompt"] + " " + p["chosen"] + " " + p["rejected"] for p in toy_pairs()), path)
