"""The ``bt`` source: logistic mapping, overrides, batching invariance, and never raising."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

pytest.importorskip("torch")

from datarl.models.bt_train import BTTrainConfig, train_bt  # noqa: E402
from datarl.rewards.bt import BTModelError, bt_scores, load_bt, score_bt  # noqa: E402
from datarl_testing import micro_backbone, toy_pairs  # noqa: E402

GOOD = "The river is nice and calm. I like the river a lot."
BAD = "no no no no no no"


@pytest.fixture(scope="module")
def bt_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("btsrc")
    base = micro_backbone(str(root / "base"))
    out = str(root / "bt")
    train_bt(
        toy_pairs(task="general"),
        base,
        out,
        BTTrainConfig(steps=30, pairs_per_step=8, lr=3e-3, head_lr=1e-2, warmup_steps=3, eval_fraction=0.0),
    )
    return out


RECORD = {"id": "r1", "task": "general", "prompt": "Tell me about the river number 99."}


def test_score_is_logistic_of_raw_and_prefers_the_learned_preference(bt_dir):
    good, bad = score_bt(RECORD, GOOD, model=bt_dir), score_bt(RECORD, BAD, model=bt_dir)
    for r in (good, bad):
        assert r.source == "bt" and r.failure is None and 0.0 <= r.score <= 1.0
        assert r.info["mapping"] == "logistic" and r.info["scale"] > 0
        assert r.score == pytest.approx(1 / (1 + math.exp(-(r.info["raw"] - r.info["shift"]) / r.info["scale"])))
    assert good.score > 0.5 > bad.score
    assert good.info["raw"] > bad.info["raw"]


def test_shift_and_scale_override_the_saved_mapping(bt_dir):
    base = score_bt(RECORD, GOOD, model=bt_dir)
    r = score_bt(RECORD, GOOD, model=bt_dir, shift=base.info["raw"], scale=3.0)
    assert r.info["shift"] == base.info["raw"] and r.info["scale"] == 3.0
    assert r.score == pytest.approx(0.5)
    extreme = score_bt(RECORD, GOOD, model=bt_dir, shift=-1e6, scale=1e-3)
    assert extreme.score == 1.0  # no overflow


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_bad_scale_is_a_failure_not_an_exception(bt_dir, scale):
    r = score_bt(RECORD, GOOD, model=bt_dir, scale=scale)
    assert r.score == 0.0 and r.failure == "bad_option"


def test_batched_scores_equal_one_at_a_time(bt_dir):
    prompts = [RECORD["prompt"], "Tell me about the lamp number 3.", [{"role": "user", "content": "hi"}]]
    responses = [GOOD, BAD + " and more words to make this row longer than the others", ""]
    batched = bt_scores(bt_dir, prompts, responses, batch_size=3)
    single = [bt_scores(bt_dir, [p], [r], batch_size=1)[0] for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(single, abs=1e-4)
    assert score_bt({"prompt": prompts[0]}, responses[0], model=bt_dir).info["raw"] == pytest.approx(
        batched[0], abs=1e-4
    )


def test_unusable_model_dirs_are_reported_in_info(tmp_path, bt_dir):
    missing = score_bt(RECORD, GOOD, model=str(tmp_path / "absent"))
    assert missing.score == 0.0 and missing.failure == "model_unavailable" and "no such" in missing.info["error"]
    no_meta = tmp_path / "no_meta"
    shutil.copytree(bt_dir, no_meta)
    os.unlink(no_meta / "datarl_bt.json")
    r = score_bt(RECORD, GOOD, model=str(no_meta))
    assert r.failure == "model_unavailable" and "datarl_bt.json" in r.info["error"]
    broken = tmp_path / "broken"
    shutil.copytree(bt_dir, broken)
    os.unlink(broken / "model.safetensors")
    r = score_bt(RECORD, GOOD, model=str(broken))
    assert r.failure == "model_unavailable" and "cannot load" in r.info["error"]
    with pytest.raises(BTModelError):
        bt_scores(str(tmp_path / "absent"), ["p"], ["r"])


def test_odd_inputs_never_raise(bt_dir):
    assert score_bt({"task": "general"}, GOOD, model=bt_dir).failure == "no_prompt"
    assert score_bt(RECORD, None, model=bt_dir).failure is None  # type: ignore[arg-type]
    long = score_bt(RECORD, "word " * 5000, model=bt_dir)  # longer than the context: cut, still scored
    assert long.failure is None and 0.0 <= long.score <= 1.0


def test_model_is_loaded_once_and_reloaded_after_retraining(bt_dir):
    assert load_bt(bt_dir) is load_bt(bt_dir)
    meta_path = os.path.join(bt_dir, "datarl_bt.json")
    with open(meta_path) as fh:
        meta = json.load(fh)
    first = load_bt(bt_dir)
    os.utime(meta_path, (0, 12345))
    assert load_bt(bt_dir) is not first and load_bt(bt_dir).meta == meta
