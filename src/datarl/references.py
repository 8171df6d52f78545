"""Best-of-N references (``datarl build-references``): what ``genrm.bon`` compares responses with.

For every ``general`` record (or every record of ``tasks``), sample ``n`` responses from the SFT policy, score them with
the BT reward model (``rewards.bt.bt_scores``: one made by ``datarl train-bt``, or any Hugging Face
sequence-classification reward model) and write the highest-scoring one as the record's ``reference`` (the
first on ties), recording ``reference_info: {n, bt_scores, chosen_index, bt_model, bt_input,
replaced_existing}`` (``bt_scores`` are raw: no mapping changes which sample is best).
Records of other tasks pass through unchanged (they have ground truth or tests).

A general record that already has a ``reference`` is given a new one by default (the
paper's setting: the judge's reference is the SFT model's best-of-N, not a gold answer);
``keep_existing=True`` leaves such records unchanged instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from datarl.records import as_dict

__all__ = ["build_references"]


def build_references(
    records: Sequence[Any],
    policy: Any,
    bt_model_dir: str,
    *,
    n: int = 8,
    seed: int = 0,
    sampling: Any = None,
    batch_size: int = 16,
    keep_existing: bool = False,
    progress: bool = False,
    tasks: Sequence[str] = ("general",),
) -> list[dict[str, Any]]:
    """``records`` as dicts, in order, with best-of-``n`` references on those of ``tasks`` (general by default).

    policy: the SFT ``models.Policy`` to sample.
    bt_model_dir: a directory made by ``datarl train-bt``, or a Hugging Face sequence-classification reward
        model (a directory or a hub id in the local cache); checked before any sampling
        (``rewards.bt.BTModelError`` if unusable).
    n: samples per general prompt (>= 1).
    seed: sampling seed.
    sampling: a ``SamplingConfig``; its ``samples_per_prompt`` and ``seed`` are replaced by ``n`` and ``seed``.
    batch_size: sequences per BT scoring batch.
    keep_existing: leave records that already have a ``reference`` unchanged.
    tasks: the tasks whose records get a best-of-``n`` reference (others pass through unchanged).
    """
    from datarl.models.generate import SamplingConfig, generate
    from datarl.rewards.bt import bt_scores, load_bt

    if n < 1:
        raise ValueError("n must be >= 1")
    bt_input = load_bt(bt_model_dir).input_format  # fail before spending time on sampling
    out = [as_dict(r) for r in records]
    todo = [i for i, r in enumerate(out) if r.get("task") in tasks and not (keep_existing and r.get("reference"))]
    if not todo:
        return out
    cfg = dataclasses.replace(sampling or SamplingConfig(), samples_per_prompt=n, seed=seed)
    gens = generate(policy, [out[i]["prompt"] for i in todo], cfg, progress=progress)
    texts: list[list[str]] = [[] for _ in todo]
    for g in sorted(gens, key=lambda g: (g.prompt_index, g.sample_index)):
        texts[g.prompt_index].append(g.text)
    flat_prompts = [out[i]["prompt"] for i, ts in zip(todo, texts) for _ in ts]
    flat_scores = bt_scores(bt_model_dir, flat_prompts, [t for ts in texts for t in ts], batch_size)
    pos = 0
    for i, ts in zip(todo, texts):
        scores = flat_scores[pos : pos + len(ts)]
        pos += len(ts)
        best = max(range(len(ts)), key=lambda k: (scores[k], -k))  # first index wins a tie
        rec = out[i]
        rec["reference_info"] = {
            "n": len(ts),
            "bt_scores": scores,
            "chosen_index": best,
            "bt_model": bt_model_dir,
            "bt_input": bt_input,
            "replaced_existing": bool(rec.get("reference")),
        }
        rec["reference"] = ts[best]
    return out
