"""The pipeline's judge: built once per digest and cached, measured on held-out items from eval prompts."""

from __future__ import annotations

import json
import os
import random

import pytest

from datarl.models.genrm_build import build_judge, judge_digest
from datarl.models.genrm_heldout import (
    HeldoutConfig,
    HeldoutItem,
    heldout_items,
    judge_table,
    judge_verdicts,
    roc_auc,
)
from datarl.models.genrm_train import GenRMTrainConfig
from datarl.rewards import genrm
from datarl.rewards.genrm_backends import GENRM_META
from datarl.synth import SynthConfig, build_suite

REFUSALS = ["I am not sure.", "I do not know.", "No idea, sorry."]


@pytest.fixture(scope="module")
def suite():
    return build_suite(SynthConfig(tasks=("math", "general"), train_per_task=60, pool_per_task=0, eval_per_task=12))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, suite):
    from datarl.models.tiny import MICRO, build_tiny_policy

    texts = [r["prompt"] + "\n" + r["reference"] for rs in suite.values() for r in rs]
    policy = build_tiny_policy(texts, MICRO, seed=0)
    out = str(tmp_path_factory.mktemp("base"))
    policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    return out


def _pairs(suite):
    rng = random.Random(0)
    return [{"prompt": r["prompt"], "chosen": r["reference"], "rejected": rng.choice(REFUSALS)} for r in suite["train"]]


def test_heldout_config_validation():
    with pytest.raises(ValueError, match="samples_per_prompt"):
        HeldoutConfig(samples_per_prompt=1)


def test_judge_table_counts_agreement_per_label(base_dir):
    from datarl.rewards.genrm_backends import HFJudge

    judge = HFJudge.load(base_dir)
    items = [
        HeldoutItem("gt", "q", "#### 3", "#### 3", True),
        HeldoutItem("gt", "q", "2 + 2 = 5\n#### 5", "#### 4", False),
        HeldoutItem("gt", "q", "#### 8", "#### 9", False),
    ]
    table = judge_table(judge, items)
    row = table["gt"]
    assert row["items"] == 3 and row["positives"] == 1 and row["judge_errors"] == 0
    # an identical response and reference score exactly 0.5: never "better", so the correct item disagrees
    wrong_ok = sum(
        r.score <= 0.5 for r in genrm.judge_batch(judge, [("q", i.response, i.reference) for i in items[1:]])
    )
    assert row["agreement"] == pytest.approx(wrong_ok / 3)
    assert row["balanced_agreement"] == pytest.approx((0 + wrong_ok / 2) / 2)
    assert row["position_consistency"] <= 2 / 3  # the tie is never position consistent
    scores = [
        r.score for r in genrm.judge_batch(judge, [("q", i.response, i.reference) for i in items], source="genrm.gt")
    ]
    assert row["roc_auc"] == pytest.approx(roc_auc(scores, [True, False, False]))
    pairs = judge_table(
        judge, [HeldoutItem("pairs", "q", "a b c", "c", True), HeldoutItem("pairs", "q", "x", "y z", True)]
    )
    assert "roc_auc" not in pairs["pairs"]  # one label only: no ranking to measure


def test_judge_verdicts_keep_the_items_order_across_kinds_and_give_the_same_table(base_dir):
    from datarl.rewards.genrm_backends import HFJudge

    judge = HFJudge.load(base_dir)
    items = [  # kinds interleaved: each kind is judged in one batch, the verdicts come back in the items' order
        HeldoutItem("pairs", "q", "a b c", "c", True),
        HeldoutItem("gt", "q", "#### 3", "#### 3", True),
        HeldoutItem("pairs", "q", "x", "y z", True),
        HeldoutItem("gt", "q", "#### 8", "#### 9", False),
    ]
    verdicts = judge_verdicts(judge, items)
    assert len(verdicts) == 4 and all(v["error"] is None for v in verdicts)
    pairs = genrm.judge_batch(judge, [("q", i.response, i.reference) for i in (items[0], items[2])])
    gt = genrm.judge_batch(judge, [("q", i.response, i.reference) for i in (items[1], items[3])], source="genrm.gt")
    expected = [pairs[0], gt[0], pairs[1], gt[1]]
    assert [v["score"] for v in verdicts] == pytest.approx([r.score for r in expected])
    assert [v["consistent"] for v in verdicts] == [r.position_consistent for r in expected]
    assert judge_table(judge, items, verdicts=verdicts) == judge_table(judge, items)
    with pytest.raises(ValueError, match="3 verdicts for 4 items"):
        judge_table(judge, items, verdicts=verdicts[:3])


@pytest.mark.parametrize(
    ("scores", "labels", "auc"),
    [
        ([0.9, 0.8, 0.3], [True, False, False], 1.0),
        ([0.1, 0.8, 0.3], [True, False, False], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [True, False, True, False], 0.5),  # ties count half
        ([0.9, 0.2, 0.4, 0.6], [True, True, False, False], 0.5),
        ([0.9, 0.2], [True, True], None),
    ],
)
def test_roc_auc_ranks_positives_above_negatives(scores, labels, auc):
    assert roc_auc(scores, labels) == (None if auc is None else pytest.approx(auc))


def test_heldout_items_sample_math_against_the_verifier_and_general_pairs(base_dir, suite):
    from datarl.models.loading import load_policy

    cfg = HeldoutConfig(gt_responses=10, pair_prompts=6, samples_per_prompt=3, max_new_tokens=24, min_gold_gap=0.0)
    items = heldout_items(suite["eval"], load_policy(base_dir), cfg, gt_format="#### {ground_truth}")
    gt = [it for it in items if it.kind == "gt"]
    assert len(gt) == 10 and all(it.reference.startswith("#### ") for it in gt)
    assert all(it.label is True for it in items if it.kind == "pairs")
    eval_prompts = {r["prompt"] for r in suite["eval"]}
    assert all(it.prompt in eval_prompts for it in items)


def test_build_judge_caches_by_digest_and_stores_the_heldout_table(base_dir, suite, tmp_path):
    genrm.clear_judge_cache()
    pairs = _pairs(suite)
    cfg = GenRMTrainConfig(steps=3, batch_size=4, warmup_steps=1, eval_fraction=0.0)
    held = HeldoutConfig(gt_responses=6, pair_prompts=4, samples_per_prompt=2, max_new_tokens=16, min_gold_gap=0.0)
    logs: list[str] = []
    cache = str(tmp_path / "cache")
    first = build_judge(
        pairs,
        base_dir,
        str(tmp_path / "run1" / "judge"),
        cfg,
        heldout_records=suite["eval"],
        heldout=held,
        cache_dir=cache,
        log=logs.append,
    )
    assert set(first["heldout"]) <= {"gt", "pairs"} and first["heldout"]["gt"]["items"] == 6
    saved = json.load(open(tmp_path / "run1" / "judge" / GENRM_META))
    assert saved["heldout"] == first["heldout"]
    assert len(os.listdir(os.path.join(cache, "genrm"))) == 1
    assert not any("reusing" in m for m in logs)
    # the same inputs in another run directory: copied from the cache, not trained again
    second = build_judge(
        pairs,
        base_dir,
        str(tmp_path / "run2" / "judge"),
        cfg,
        heldout_records=suite["eval"],
        heldout=held,
        cache_dir=cache,
        log=logs.append,
    )
    assert any("reusing cached judge" in m for m in logs) and second["heldout"] == first["heldout"]
    assert os.path.isfile(tmp_path / "run2" / "judge" / "config.json")
    # anything the judge depends on changes the digest
    base = judge_digest(pairs, (), suite["eval"], base_dir, cfg, held)
    assert judge_digest(pairs[1:], (), suite["eval"], base_dir, cfg, held) != base
    assert judge_digest(pairs, (), suite["eval"], base_dir, GenRMTrainConfig(steps=4), held) != base
    assert judge_digest(pairs, (), suite["eval"][1:], base_dir, cfg, held) != base
    genrm.clear_judge_cache()


def test_a_judge_from_another_base_is_measured_on_the_policy_s_samples(base_dir, suite, tmp_path):
    """``judge_base``: the judge starts from another model; the policy still samples what it is measured on."""
    from transformers import AutoModelForCausalLM

    from datarl.models.tiny import MICRO, build_tiny_policy

    genrm.clear_judge_cache()
    texts = [r["prompt"] + "\n" + r["reference"] for rs in suite.values() for r in rs]
    other = build_tiny_policy(texts, MICRO, seed=7)
    other_dir = str(tmp_path / "other")
    other.model.save_pretrained(other_dir)
    other.tokenizer.save_pretrained(other_dir)
    pairs = _pairs(suite)
    cfg = GenRMTrainConfig(steps=2, batch_size=4, warmup_steps=1, eval_fraction=0.0)
    held = HeldoutConfig(gt_responses=4, pair_prompts=2, samples_per_prompt=2, max_new_tokens=16, min_gold_gap=0.0)
    out = str(tmp_path / "judge")
    meta = build_judge(
        pairs, base_dir, out, cfg, heldout_records=suite["eval"], heldout=held, judge_base=other_dir, log=None
    )
    assert meta["base"] == other_dir and meta["sampled_from"] == base_dir
    assert meta["heldout"]["gt"]["items"] == 4
    # the judge's weights are the other model's, moved by two steps: far nearer to it than to the policy
    emb = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight
    near = (emb - other.model.get_input_embeddings().weight).norm()
    far = (emb - AutoModelForCausalLM.from_pretrained(base_dir).get_input_embeddings().weight).norm()
    assert near < far / 10, (float(near), float(far))
    # its cache key differs from the policy's own judge; without judge_base the key is what it always was
    plain = judge_digest(pairs, (), suite["eval"], base_dir, cfg, held)
    assert judge_digest(pairs, (), suite["eval"], base_dir, cfg, held, judge_base=None) == plain
    assert judge_digest(pairs, (), suite["eval"], base_dir, cfg, held, judge_base=other_dir) != plain
    genrm.clear_judge_cache()
