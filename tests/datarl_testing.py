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


def micro_answering_policy(path: str | Path, steps: int = 80) -> str:
    """:func:`micro_backbone` trained for a few seconds on :func:`toy_pairs`' chosen answers, so that its samples
    end (EOS) within about 20 tokens and are not cut off (a cut-off response scores 0 before any reward model)."""
    from datarl.models.loading import load_policy
    from datarl.models.train_lm import LMTrainConfig, train_lm

    micro_backbone(path)
    policy = load_policy(str(path))
    train_lm(policy, [(p["prompt"], p["chosen"]) for p in toy_pairs()], LMTrainConfig(steps=steps, batch_size=8))
    policy.model.save_pretrained(str(path))
    return str(path)


def micro_reward_model(out: str | Path, tokenizer_dir: str | Path, *, seed: int = 0) -> str:
    """An off-the-shelf-style reward model: a tiny ``LlamaForSequenceClassification`` (one output, seeded random
    weights) saved with the tokenizer of ``tokenizer_dir`` (its chat template included) and no ``datarl_bt.json``,
    as a model from the hub is; returns its path."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():  # a head large enough that responses differ visibly
        model.score.weight.normal_(0.0, 1.0)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return str(out)


MICRO_SYNTH = {"train_per_task": 6, "pool_per_task": 6, "eval_per_task": 2}


def micro_suite_policy(out: str | Path) -> str:
    """A micro policy that knows the micro suite's words (:data:`MICRO_SYNTH`), saved under ``out``."""
    from datarl.synth import SynthConfig, build_suite

    suite = build_suite(SynthConfig(**MICRO_SYNTH))
    return save_micro_policy((str(r["prompt"]) + " " + str(r["reference"]) for r in suite["train"]), out)


def micro_pipeline_mapping(policy_dir: str, run_dir: str | Path, **changes: Any) -> dict[str, Any]:
    """A pipeline config whose every stage runs in seconds (micro suite, micro policy, a few steps)."""
    data: dict[str, Any] = {
        "run_dir": str(run_dir),
        "policy": policy_dir,
        "synth": dict(MICRO_SYNTH),
        "workers": 1,
        "pairs": {"per_task": 3, "samples_per_prompt": 2, "max_new_tokens": 12, "min_gold_gap": 0.0},
        "bt": {"steps": 2, "pairs_per_step": 2},
        "genrm": {
            "steps": 2,
            "batch_size": 2,
            "heldout": {"gt_responses": 4, "pair_prompts": 2, "samples_per_prompt": 2, "max_new_tokens": 12},
        },
        "references": {"n": 2, "max_new_tokens": 12},
        "select": {"fraction": 0.5, "samples_per_prompt": 2, "max_new_tokens": 12},
        "train": {
            "ppo": {
                "steps": 2,
                "prompts_per_step": 4,
                "samples_per_prompt": 2,
                "minibatch_size": 4,
                "max_new_tokens": 12,
            },
            "eval": {"every": 1, "per_task": 1, "diversity_prompts": 1, "diversity_samples": 2, "max_new_tokens": 12},
            "threads": 1,
        },
    }
    data.update(changes)
    return data


MICRO_STUDY_ARMS = {"random": {"select.strategy": "random"}, "lowest": {}}


def micro_study_file(tmp_path: Path, policy: str, **changes: Any) -> str:
    """A 2-arm x 2-seed study of the micro pipeline (3 PPO steps, a checkpoint each step), written as YAML."""
    import yaml

    base = micro_pipeline_mapping(policy, "unused")
    base.pop("run_dir")
    base["train"]["ppo"]["steps"] = 3
    base["train"]["save_every"] = 1
    base["train"]["eval"]["per_task"] = 2
    data = {
        "base": base,
        "seeds": [0, 1],
        "arms": MICRO_STUDY_ARMS,
        "baseline": "random",
        "comparisons": [{"metric": "gold"}, {"metric": "steps_to_baseline", "tasks": ["math"]}],
        **changes,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


LAYOUT_DATA = Path(__file__).resolve().parent / "data" / "layouts"
"""Hand-written files in other projects' layouts (GSM8K, MATH, HumanEval, MBPP, APPS, IFEval, messages)."""


def layout_rows(name: str) -> list[dict[str, Any]]:
    """The rows of the fixture ``tests/data/layouts/NAME`` as written."""
    return read_jsonl(LAYOUT_DATA / name)


def write_rows(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> str:
    """Write ``rows`` as Parquet when ``path`` ends in ``.parquet``, else as JSONL; returns the path."""
    if str(path).endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([dict(r) for r in rows]), str(path))
        return str(path)
    return write_jsonl(path, rows)


def score_layout(
    tmp_path: Path,
    rows: list[dict[str, Any]],
    responses: list[str],
    *,
    name: str = "in.jsonl",
    router: Mapping[str, Any] | None = None,
    layout: str | None = None,
    mapped: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
    """Score ``rows`` (an upstream layout) with ``responses`` added as a ``response`` column through
    ``datarl score``'s engine; returns the output rows and the layout lines announced. Every output row keeps
    the input row's columns unchanged, but for ``mapped``: columns the layout fills with a datarl field of the
    same name (messages' ``prompt``)."""
    from datarl.rewards.router import RouterConfig
    from datarl.rows import open_rows
    from datarl.scoring import ScoreOptions, score_file

    src = write_rows(tmp_path / name, [{**row, "response": r} for row, r in zip(rows, responses, strict=True)])
    given = [obj for _, obj, _ in open_rows(src).rows]  # as read: Parquet fills missing struct fields with null
    out = tmp_path / f"scored-{name}.jsonl"
    lines: list[str] = []
    options = ScoreOptions(
        workers=1, progress=False, router=RouterConfig.from_mapping(dict(router or {})), layout=layout
    )
    summary = score_file(src, str(out), options, announce=lines.append)
    scored = read_jsonl(out)
    assert summary.bad_lines == 0, read_jsonl(str(out) + ".errors.jsonl")
    for row, got in zip(given, scored, strict=True):
        for column, value in row.items():
            if column not in mapped:
                assert got[column] == value, f"column {column} changed"
    return scored, lines
