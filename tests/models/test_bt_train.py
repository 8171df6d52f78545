"""BT training on a micro backbone: it learns a preference, saves a usable directory, rejects bad pairs."""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")

from datarl.models.bt_train import BTDataError, BTTrainConfig, pair_metrics, split_by_prompt, train_bt  # noqa: E402
from datarl.rewards.bt import META_FILE, bt_scores  # noqa: E402
from datarl_testing import micro_backbone, toy_pairs  # noqa: E402

FAST = BTTrainConfig(steps=40, pairs_per_step=8, lr=3e-3, head_lr=1e-2, warmup_steps=4, eval_fraction=0.25)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bt")
    base = micro_backbone(str(root / "base"))
    out = str(root / "bt")
    metrics = train_bt(toy_pairs(), base, out, FAST)
    return base, out, metrics


def test_trained_bt_ranks_chosen_over_rejected(trained):
    _, _, metrics = trained
    assert metrics["bt/loss_last"] < metrics["bt/loss_first"]
    assert metrics["train/accuracy"] >= 0.9
    assert metrics["eval/accuracy"] >= 0.9  # held-out prompts, same preference
    assert metrics["bt/eval_pairs"] == 10 and metrics["bt/train_pairs"] == 30
    assert {"eval/accuracy/general", "eval/accuracy/math", "eval/gold_accuracy"} <= set(metrics)


def test_backbone_parameters_changed_and_directory_is_usable(trained):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    base, out, metrics = trained
    before = AutoModelForCausalLM.from_pretrained(base).model.state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(out).model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) >= len(before) - 1  # rotary buffers aside, every weight moved
    with open(os.path.join(out, META_FILE)) as fh:
        meta = json.load(fh)
    assert meta["mapping"]["type"] == "logistic" and meta["mapping"]["scale"] > 0
    assert meta["config"]["steps"] == 40 and meta["metrics"]["eval/accuracy"] == metrics["eval/accuracy"]
    # the fitted shift/scale are the mean/std of the training responses' raw rewards
    train_pairs, _ = split_by_prompt(toy_pairs(), FAST.eval_fraction, FAST.seed)
    raws = bt_scores(
        out,
        [p["prompt"] for p in train_pairs] * 2,
        [p["chosen"] for p in train_pairs] + [p["rejected"] for p in train_pairs],
    )
    assert sum(raws) / len(raws) == pytest.approx(meta["mapping"]["shift"], abs=1e-4)


def test_identical_pairs_are_an_error_naming_them(tmp_path):
    pairs = toy_pairs(6)
    pairs[2] = dict(pairs[2], rejected=pairs[2]["chosen"])
    with pytest.raises(BTDataError, match=r"identical chosen and rejected.*p2"):
        train_bt(pairs, str(tmp_path / "nowhere"), str(tmp_path / "out"), FAST)
    assert not (tmp_path / "out").exists()


def test_bad_backbone_and_empty_pairs(tmp_path):
    with pytest.raises(BTDataError, match="no pairs"):
        train_bt([], str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(BTDataError, match="not a model directory"):
        train_bt(toy_pairs(4), str(tmp_path), str(tmp_path / "out"))


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": -1}, {"pairs_per_step": 0}, {"lr": 0}, {"eval_fraction": 1.0}, {"dtype": "int8"}, {"center_coef": -1}],
)
def test_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        BTTrainConfig(**kwargs)


def test_split_holds_out_whole_prompts():
    pairs = toy_pairs(20) + [dict(p, id=p["id"] + "b") for p in toy_pairs(20)]
    train, held = split_by_prompt(pairs, 0.25, seed=3)
    assert len(held) == 10 and len(train) == 30
    assert not {p["prompt_id"] for p in train} & {p["prompt_id"] for p in held}


def test_pair_metrics_split_clean_flipped_and_gold():
    pairs = [
        {"task": "general", "flipped": False, "chosen_gold": 1, "rejected_gold": 0},
        {"task": "general", "flipped": True, "chosen_gold": 0, "rejected_gold": 1},
        {"task": "math", "flipped": False, "chosen_gold": 1, "rejected_gold": 0},
    ]
    m = pair_metrics(pairs, [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)], "eval")
    assert m["eval/accuracy/clean"] == 0.75 and m["eval/accuracy/flipped"] == 0.0
    assert m["eval/gold_accuracy/general"] == 1.0 and m["eval/accuracy/math"] == 0.5
