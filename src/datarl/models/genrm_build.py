"""The pipeline's judge: trained, measured on held-out items, cached by a digest of everything it depends on.

:func:`build_judge` is to the GenRM what :func:`datarl.models.sft.build_sft_policy` is to the policy: the
first call trains the judge (:func:`datarl.models.genrm_train.train_genrm`), samples held-out items from
the base policy on the evaluation records and measures the judge on them
(:mod:`datarl.models.genrm_heldout`), and stores both under ``<cache>/genrm/<digest>``; a later call with
the same base model, training data, evaluation records and configs copies the cached judge instead.
The held-out table is in the judge's ``datarl_genrm.json`` under ``heldout`` (the report reads it there).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

from datarl.io import atomic_path, write_json
from datarl.models.genrm_heldout import HeldoutConfig, heldout_items, judge_table, math_samples
from datarl.models.genrm_train import GenRMTrainConfig, train_genrm
from datarl.rewards.genrm_backends import GENRM_META, HFJudge

__all__ = ["build_judge", "judge_digest", "RECIPE_VERSION"]

# Bump when training or measuring changes so stale cached judges are not reused (2: sampling grouped by length).
RECIPE_VERSION = 2


def _base_identity(base: str) -> Any:
    """What identifies the base model: its ``config.json`` and weights' sizes and times, or the spec itself."""
    if not os.path.isdir(base):
        return base
    files = sorted(f for f in os.listdir(base) if not f.startswith("."))
    return [os.path.abspath(base)] + [
        [f, os.path.getsize(os.path.join(base, f)), int(os.path.getmtime(os.path.join(base, f)))] for f in files
    ]


def judge_digest(
    pairs: Sequence[Mapping[str, Any]],
    gt_records: Sequence[Mapping[str, Any]],
    heldout_records: Sequence[Mapping[str, Any]],
    base: str,
    cfg: GenRMTrainConfig,
    heldout: HeldoutConfig,
    sampling: Any = None,
    judge_base: str | None = None,
) -> str:
    """The cache key of a judge: recipe version, base model (and the judge's own base when it is another), data,
    both configs and what else is sampled."""
    extra = {"judge_base": _base_identity(judge_base)} if judge_base else {}  # keys of judges without it unchanged
    blob = json.dumps(
        {
            **extra,
            "recipe": RECIPE_VERSION,
            "base": _base_identity(base),
            "pairs": list(pairs),
            "gt": list(gt_records),
            "heldout_records": list(heldout_records),
            "config": cfg.to_dict(),
            "heldout": heldout.__dict__,
            "sampling": sampling,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_judge(
    pairs: Sequence[Mapping[str, Any]],
    base: str,
    out_dir: str,
    cfg: GenRMTrainConfig | None = None,
    *,
    gt_records: Sequence[Mapping[str, Any]] = (),
    train_records: Sequence[Mapping[str, Any]] = (),
    gt_samples: int = 0,
    heldout_records: Sequence[Mapping[str, Any]] = (),
    heldout: HeldoutConfig | None = None,
    cache_dir: str | None = None,
    judge_base: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Write the judge for these inputs to ``out_dir`` (from ``cache_dir`` when it holds one) and return
    its metadata, which carries ``heldout`` (the per-kind table) and ``heldout_seconds``.

    gt_records: labelled responses (``prompt``, ``ground_truth``, ``response``, optional ``correct``) for
        ground-truth items, as :func:`~datarl.models.genrm_train.train_genrm` takes them.
    train_records, gt_samples: sample the base policy ``gt_samples`` times on the math ``train_records``
        (labelled by ``rtv.math``) for more ground-truth items: verifier labels cost only sampling.
    heldout_records: evaluation records (synth records with ``task``) to sample held-out items from;
        none means no held-out table.
    cache_dir: the model cache (``<cache_dir>/genrm/<digest>``); None trains into ``out_dir`` only.
    judge_base: train the judge from this causal LM (a directory, ``.gguf`` file, alias or cached hub id) instead
        of ``base``; ``base`` still samples the ground-truth responses and held-out items, since the judge is
        measured on the answers of the policy it will score. None: the judge starts from ``base``.
    """
    cfg = cfg or GenRMTrainConfig()
    heldout = heldout or HeldoutConfig()
    cached = None
    if cache_dir is not None:
        digest = judge_digest(
            pairs, gt_records, heldout_records, base, cfg, heldout, [train_records, gt_samples], judge_base
        )
        cached = os.path.join(cache_dir, "genrm", digest)
        if os.path.isfile(os.path.join(cached, GENRM_META)):
            if log is not None:
                log(f"reusing cached judge {cached}")
            _copy_dir(cached, out_dir)
            with open(os.path.join(out_dir, GENRM_META), encoding="utf-8") as fh:
                return dict(json.load(fh))
    # Built in out_dir and copied to the cache only when complete (with its table): a crash never leaves
    # a cached judge without its held-out table.
    target = out_dir
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    from datarl.models.loading import load_policy

    policy = load_policy(base) if gt_samples or heldout_records else None  # the sampler, loaded once
    sampled = math_samples(train_records, policy, gt_samples, seed=cfg.seed) if gt_samples else []
    if log is not None and sampled:
        log(f"{len(sampled)} sampled math responses for the judge ({sum(r['correct'] for r in sampled)} correct)")
    meta = train_genrm(pairs, judge_base or base, target, cfg, gt_records=[*gt_records, *sampled], log=log)
    meta["sampled_from"] = base
    meta["gt_samples"] = {"n": len(sampled), "correct": sum(r["correct"] for r in sampled)}
    if heldout_records:
        start = time.perf_counter()
        items = heldout_items(heldout_records, policy, heldout, gt_format=cfg.gt_format)
        meta["heldout"] = judge_table(HFJudge.load(target), items, max_answer_chars=cfg.max_answer_chars)
        meta["heldout_seconds"] = time.perf_counter() - start
        meta["heldout_config"] = dict(heldout.__dict__)
        write_json(os.path.join(target, GENRM_META), meta)
        if log is not None:
            log("judge on held-out items: " + _table_line(meta["heldout"]))
    if cached is not None:
        _copy_dir(out_dir, cached)
    return meta


def _copy_dir(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with atomic_path(dst, directory=True) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def _table_line(table: Mapping[str, Mapping[str, float]]) -> str:
    return "; ".join(
        f"{kind}: agreement {row['agreement']:.3f}, balanced {row['balanced_agreement']:.3f}, "
        f"position consistency {row['position_consistency']:.3f}"
        + (f", ROC AUC {row['roc_auc']:.3f}" if "roc_auc" in row else "")
        + f" ({row['items']:.0f} items)"
        for kind, row in table.items()
    )
