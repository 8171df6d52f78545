"""Preference pairs from the suite: what ``datarl make-pairs`` writes and ``datarl train-bt`` reads.

``make_pairs`` samples a policy ``samples_per_prompt`` times per prompt, scores every
sample with the gold check (``synth.gold_check``: the verifiers for math/code/ifeval,
the hidden rubric for general), and pairs samples whose gold scores differ by more than
``min_gold_gap``: chosen = the higher gold score. A ``label_noise`` fraction of pairs is
then flipped, the way human labels are noisy; each pair records ``flipped`` (for
analysis only: training never reads it) and its two gold scores.

When the policy's samples for a prompt give fewer than ``min_pairs_per_prompt`` pairs
(all right, all wrong, or all identical) and the record has a ``reference``, one pair
``reference`` vs ``synth.wrong_response`` is added (``origin: "reference"``; pairs from
samples have ``origin: "policy"``). Set ``min_pairs_per_prompt=0`` to use policy
samples only.

Pair record (one JSON object a line)::

    {id, prompt_id, task, domain, prompt, chosen, rejected, chosen_gold, rejected_gold,
     origin, flipped, ground_truth?}

``load_pairs(path)`` validates a pairs file and reports every bad line as
``file:line: field: problem``. A pair whose chosen and rejected texts are identical
is an error (it carries no preference and would train nothing).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

from datarl.errors import UserError
from datarl.records import TASKS, as_dict

__all__ = ["PairsError", "make_pairs", "load_pairs", "validate_pair", "REQUIRED_FIELDS"]

REQUIRED_FIELDS = ("prompt", "chosen", "rejected")


class PairsError(UserError, ValueError):
    """A pairs file (or list) that cannot be used; the message lists ``file:line: field: problem``."""


def make_pairs(
    records: Sequence[Any],
    policy: Any,
    *,
    samples_per_prompt: int = 4,
    label_noise: float = 0.1,
    seed: int = 0,
    sampling: Any = None,
    min_gold_gap: float = 0.0,
    min_pairs_per_prompt: int = 1,
    max_pairs_per_prompt: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Gold-labelled preference pairs from ``policy``'s samples on ``records``.

    records: synth records (dicts or ``records.Record``) with a gold check.
    policy: a ``models.Policy`` to sample.
    samples_per_prompt: responses sampled per prompt (>= 2 to form pairs from samples).
    label_noise: fraction of pairs, in [0, 0.5), whose labels are swapped (``flipped: true``).
    seed: sampling, label noise and fallback wrong responses.
    sampling: a ``SamplingConfig`` (temperature, top_p, max_new_tokens, batch_size); its
        ``samples_per_prompt`` and ``seed`` are replaced by the arguments above.
    min_gold_gap: two samples form a pair only if their gold scores differ by more than this.
    min_pairs_per_prompt: below this many policy pairs, add reference vs wrong response.
    max_pairs_per_prompt: keep at most this many policy pairs per prompt (largest gold gap first).
    """
    from datarl.models.generate import SamplingConfig, generate
    from datarl.synth import gold_check, wrong_response

    if samples_per_prompt < 1:
        raise ValueError("samples_per_prompt must be >= 1")
    if not 0.0 <= label_noise < 0.5:
        raise ValueError("label_noise must be in [0, 0.5) (at 0.5 labels carry no information)")
    if min_gold_gap < 0 or min_pairs_per_prompt < 0 or (max_pairs_per_prompt is not None and max_pairs_per_prompt < 1):
        raise ValueError("min_gold_gap >= 0, min_pairs_per_prompt >= 0 and max_pairs_per_prompt >= 1 are required")
    recs = [as_dict(r) for r in records]
    cfg = dataclasses.replace(sampling or SamplingConfig(), samples_per_prompt=samples_per_prompt, seed=seed)
    gens = generate(policy, [r["prompt"] for r in recs], cfg, progress=progress)
    by_prompt: list[list[str]] = [[] for _ in recs]
    for g in gens:
        by_prompt[g.prompt_index].append(g.text)
    rng = random.Random(f"pairs:{seed}")
    pairs: list[dict[str, Any]] = []
    for index, (rec, samples) in enumerate(zip(recs, by_prompt)):
        rec_id = str(rec.get("id") or f"record-{index}")
        distinct = list(dict.fromkeys(samples))  # identical samples carry no preference
        golds = [float(gold_check(rec, s).score) for s in distinct]
        cands = [
            (golds[i] - golds[j], i, j) if golds[i] > golds[j] else (golds[j] - golds[i], j, i)
            for i in range(len(distinct))
            for j in range(i + 1, len(distinct))
            if abs(golds[i] - golds[j]) > min_gold_gap
        ]
        cands.sort(key=lambda c: -c[0])
        if max_pairs_per_prompt is not None:
            cands = cands[:max_pairs_per_prompt]
        made = [(distinct[hi], distinct[lo], golds[hi], golds[lo], "policy") for _, hi, lo in cands]
        if len(made) < min_pairs_per_prompt and rec.get("reference"):
            ref, wrong = str(rec["reference"]), wrong_response(rec, rng)
            g_ref, g_wrong = float(gold_check(rec, ref).score), float(gold_check(rec, wrong).score)
            if ref != wrong and g_ref - g_wrong > min_gold_gap:
                made.append((ref, wrong, g_ref, g_wrong, "reference"))
        for k, (chosen, rejected, g_c, g_r, origin) in enumerate(made):
            flipped = rng.random() < label_noise
            if flipped:
                chosen, rejected, g_c, g_r = rejected, chosen, g_r, g_c
            pair = {
                "id": f"{rec_id}:{k}",
                "prompt_id": rec_id,
                "task": rec.get("task"),
                "domain": rec.get("domain") or rec.get("task"),
                "prompt": rec["prompt"],
                "chosen": chosen,
                "rejected": rejected,
                "chosen_gold": g_c,
                "rejected_gold": g_r,
                "origin": origin,
                "flipped": flipped,
            }
            if rec.get("ground_truth") is not None:
                pair["ground_truth"] = rec["ground_truth"]
            pairs.append(pair)
    return pairs


def _prompt_problem(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        return None if prompt.strip() else "is empty"
    if isinstance(prompt, list) and prompt:
        for m in prompt:
            if (
                not isinstance(m, Mapping)
                or not isinstance(m.get("role"), str)
                or not isinstance(m.get("content"), str)
            ):
                return "chat messages must be objects with string 'role' and 'content'"
        return None
    return "must be a non-empty string or a list of chat messages {role, content}"


def validate_pair(pair: Any) -> list[tuple[str, str]]:
    """Problems of one pair as ``(field, problem)``; empty when the pair is usable."""
    if not isinstance(pair, Mapping):
        return [("(line)", f"expected a JSON object, got {type(pair).__name__}")]
    problems: list[tuple[str, str]] = []
    for name in REQUIRED_FIELDS:
        if name not in pair:
            problems.append((name, "missing"))
    if "prompt" in pair and (why := _prompt_problem(pair["prompt"])):
        problems.append(("prompt", why))
    for name in ("chosen", "rejected"):
        if name in pair and not isinstance(pair[name], str):
            problems.append((name, f"must be a string, got {type(pair[name]).__name__}"))
    if isinstance(pair.get("chosen"), str) and pair.get("chosen") == pair.get("rejected"):
        problems.append(("rejected", "identical to chosen (a pair must prefer one text over another)"))
    task = pair.get("task")
    if task is not None and task not in TASKS:
        problems.append(("task", f"unknown task {task!r}; expected one of {', '.join(TASKS)}"))
    for name in ("chosen_gold", "rejected_gold"):
        value = pair.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append((name, "must be a number"))
    if "id" in pair and not isinstance(pair["id"], (str, int)):
        problems.append(("id", "must be a string"))
    return problems


def load_pairs(path: str) -> list[dict[str, Any]]:
    """Read and validate a JSONL pairs file; raise ``PairsError`` listing every bad line.

    A pair without ``id`` gets ``<file name>:<line>``; without ``task``, ``general``.
    """
    if not os.path.isfile(path):
        raise PairsError(f"{path}: no such file")
    pairs: list[dict[str, Any]] = []
    errors: list[str] = []
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{path}:{line_no}: (line): invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            problems = validate_pair(obj)
            if problems:
                errors.extend(f"{path}:{line_no}: {field}: {why}" for field, why in problems)
                continue
            pair = dict(obj)
            pair["id"] = str(pair.get("id") or f"{name}:{line_no}")
            pair.setdefault("task", "general")
            pairs.append(pair)
    if errors:
        raise PairsError(f"{len(errors)} problem(s) in {path}:\n" + "\n".join(errors))
    if not pairs:
        raise PairsError(f"{path}: no pairs (the file is empty)")
    return pairs
