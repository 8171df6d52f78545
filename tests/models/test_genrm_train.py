"""GenRM training on a micro model: labels, config validation, the saved judge, and that training
moves held-out accuracy well above chance on synthetic math items."""

from __future__ import annotations

import json
import os
import random

import pytest

from datarl.models.genrm_train import GenRMTrainConfig, judge_items, train_genrm
from datarl.rewards import genrm
from datarl.rewards.genrm import JudgeError, score_genrm_bon, score_genrm_gt
from datarl.rewards.genrm_backends import GENRM_META
from datarl.synth import SynthConfig, build_suite


def _math_records(n):
    return [
        r
        for r in build_suite(SynthConfig(tasks=("math",), train_per_task=n, pool_per_task=0, eval_per_task=0))["train"]
    ]


def _refusal_pairs(recs, seed):
    """Synthetic math pairs a micro model learns in seconds: a worked answer beats a non-answer. (Comparing
    final numbers needs the tiny SFT model and minutes; measured outside the test suite.)"""
    rng = random.Random(seed)
    refusals = ["I am not sure.", "I do not know.", "No idea, sorry.", "Maybe ask someone else."]
    return [{"prompt": r["prompt"], "chosen": r["reference"], "rejected": rng.choice(refusals)} for r in recs]


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    from datarl.models.tiny import MICRO, build_tiny_policy

    recs = _math_records(300)
    policy = build_tiny_policy([r["prompt"] + "\n" + r["reference"] for r in recs], MICRO, seed=0)
    out = str(tmp_path_factory.mktemp("base"))
    policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    return out


def test_config_validation():
    with pytest.raises(ValueError, match="gt_tie_target"):
        GenRMTrainConfig(gt_tie_target=0.2)
    with pytest.raises(ValueError, match="ground_truth"):
        GenRMTrainConfig(gt_format="#### {answer}")
    with pytest.raises(ValueError, match="eval_fraction"):
        GenRMTrainConfig(eval_fraction=1.0)
    with pytest.raises(ValueError):
        GenRMTrainConfig(steps=-1)
    with pytest.raises(ValueError, match="gt_verdict"):
        GenRMTrainConfig(gt_verdict="pointwise")


def test_label_scheme():
    rec = {"prompt": "Ann has 3 pens. Ann gets 4 more.", "ground_truth": "7"}
    pairs = [{**rec, "chosen": "3 + 4 = 7\n#### 7", "rejected": "3 + 4 = 8\n#### 8"}]
    items = judge_items(
        pairs,
        [{**rec, "response": "#### 7.0"}, {**rec, "response": "x", "correct": False}],
        GenRMTrainConfig(gt_tie_target=0.75),
    )
    assert ("pairs", rec["prompt"], "3 + 4 = 7\n#### 7", "3 + 4 = 8\n#### 8", 1.0) in items
    gt = {(it[2], it[3], it[4]) for it in items if it[0] == "gt"}
    assert gt == {
        ("3 + 4 = 7\n#### 7", "#### 7", 0.75),
        ("3 + 4 = 8\n#### 8", "#### 7", 0.0),
        ("#### 7.0", "#### 7", 0.75),
        ("x", "#### 7", 0.0),
    }
    with pytest.raises(ValueError, match="identical"):
        judge_items([{**rec, "chosen": "a", "rejected": "a"}], None, GenRMTrainConfig())


def test_training_beats_chance_and_saves_a_judge(base_dir, tmp_path):
    import torch

    torch.set_num_threads(1)
    recs = _math_records(300)
    pairs = _refusal_pairs(recs, seed=0)
    out = str(tmp_path / "judge")
    cfg = GenRMTrainConfig(steps=150, batch_size=16, lr=3e-3, warmup_steps=10, eval_fraction=0.2, max_eval_items=60)
    before_params = {n: p.detach().clone() for n, p in _load(base_dir).named_parameters()}
    meta = train_genrm(pairs, base_dir, out, cfg, log=None)
    assert meta["metrics"]["pairs/accuracy"] >= 0.9, meta["metrics"]
    assert meta["metrics"]["pairs/position_consistency"] >= 0.8, meta["metrics"]
    assert meta["items"]["heldout/pairs"] > 20 and meta["train"]["loss_last"] < meta["train"]["loss_first"]
    after = dict(_load(out).named_parameters())
    assert any(not (after[n] == p).all() for n, p in before_params.items())
    saved = json.load(open(os.path.join(out, GENRM_META)))
    assert saved["verdict_token_ids"] == meta["verdict_token_ids"] and saved["gt_format"] == "#### {ground_truth}"
    # the saved directory is a judge spec
    genrm.clear_judge_cache()
    rec = recs[0]
    good = score_genrm_bon({**rec, "reference": "I do not know."}, rec["reference"], judge=out)
    bad = score_genrm_bon(rec, "I do not know.", judge=out)
    assert good.failure is None and bad.failure is None and good.score > 0.5 > bad.score
    # a checkpoint whose metadata does not match its tokenizer is refused at load
    saved["verdict_token_ids"] = [0, 1]
    json.dump(saved, open(os.path.join(out, GENRM_META), "w"))
    genrm.clear_judge_cache()
    from datarl.rewards.genrm_backends import HFJudge

    with pytest.raises(JudgeError, match="do not match"):
        HFJudge.load(out)
    assert score_genrm_gt(rec, rec["reference"], judge=out).failure == "judge_error"
    genrm.clear_judge_cache()


def test_calibrate_maps_the_threshold_to_one_half_and_keeps_the_order():
    from datarl.rewards.genrm import calibrate

    assert calibrate(0.7, 0.7) == pytest.approx(0.5) and calibrate(0.3, 0.5) == pytest.approx(0.3)
    xs = [0.01, 0.2, 0.69, 0.71, 0.99]
    ys = [calibrate(x, 0.7) for x in xs]
    assert ys == sorted(ys) and ys[2] < 0.5 < ys[3]
    assert calibrate(0.0, 0.7) == 0.0 and calibrate(1.0, 0.7) == 1.0
    with pytest.raises(ValueError):
        calibrate(0.5, 1.0)


def test_fit_threshold_picks_the_best_cut():
    from datarl.models.genrm_train import fit_threshold

    # Everything right above 0.7, wrong below: any cut in (0.65, 0.75) is perfect; 0.5 gets 3 of 6 wrong.
    th, acc = fit_threshold([0.55, 0.6, 0.65, 0.75, 0.8, 0.9], [False, False, False, True, True, True])
    assert 0.65 < th < 0.75 and acc == 1.0
    th, acc = fit_threshold([0.2, 0.8], [False, True])  # many perfect cuts: the one nearest 0.5
    assert th == 0.5 and acc == 1.0


def test_a_balanced_threshold_does_not_give_up_the_rare_label():
    from datarl.models.genrm_heldout import balanced_accuracy
    from datarl.models.genrm_train import fit_threshold

    # One positive in ten, scored 0.4; negatives at 0.1 .. 0.8. Accuracy is best calling everything negative
    # above 0.8 (9/10); balanced accuracy is best cutting just below the positive (1 + 6/9) / 2.
    scores = [0.4, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.6, 0.7, 0.8]
    labels = [True] + [False] * 9
    th, acc = fit_threshold(scores, labels)
    assert acc == 0.9 and balanced_accuracy(scores, labels, th) == 0.5
    th, acc = fit_threshold(scores, labels, "balanced")
    assert 0.35 < th < 0.4 and balanced_accuracy(scores, labels, th) == pytest.approx((1 + 6 / 9) / 2)
    assert acc == 0.7
    assert balanced_accuracy([0.9, 0.8], [True, True], 0.5) == 1.0  # one label present: its share alone
    with pytest.raises(ValueError, match="objective"):
        fit_threshold(scores, labels, "f1")


def test_calibrate_judge_stores_a_threshold_that_scoring_applies(base_dir, tmp_path):
    from datarl.models.genrm_train import calibrate_judge
    from datarl.rewards.genrm import score_genrm_gt_batch

    out = str(tmp_path / "judge")
    train_genrm(
        [],
        base_dir,
        out,
        GenRMTrainConfig(steps=0),
        gt_records=[{"prompt": "p", "ground_truth": "1", "response": "#### 2", "correct": False}],
        log=None,
    )
    recs = _math_records(30)
    rows = [{**r, "response": r["reference"], "correct": True} for r in recs[:20]] + [
        {**r, "response": r["reference"] + "0", "correct": False} for r in recs[10:30]
    ]
    genrm.clear_judge_cache()
    entry = calibrate_judge(out, rows, log=None)
    assert 0 < entry["threshold"] < 1 and entry["n"] == 40 and entry["correct"] == 20
    assert entry["accuracy"] >= entry["accuracy_at_0.5"]
    saved = json.load(open(os.path.join(out, GENRM_META)))
    assert saved["calibration"]["genrm.gt"] == entry
    results = score_genrm_gt_batch(rows, [r["response"] for r in rows], judge=out)
    for res in results:
        assert res.info["calibration_threshold"] == entry["threshold"]
        assert (res.score > 0.5) == (res.info["raw_score"] > entry["threshold"])
    agree = sum((res.score > 0.5) == r["correct"] for res, r in zip(results, rows)) / len(rows)
    assert agree == pytest.approx(entry["accuracy"])  # the fitted accuracy is what scoring now gives
    assert entry["objective"] == "accuracy"
    # Correct answers rare (4 of 24): a balanced fit never gives up more balanced agreement than the accuracy fit.
    rare = rows[16:20] + rows[20:]
    by_accuracy = calibrate_judge(out, rare, log=None)
    balanced = calibrate_judge(out, rare, objective="balanced", log=None)
    assert balanced["objective"] == "balanced" and balanced["correct"] == 4
    assert balanced["balanced_accuracy"] >= by_accuracy["balanced_accuracy"]
    assert by_accuracy["accuracy"] >= balanced["accuracy"]
    assert json.load(open(os.path.join(out, GENRM_META)))["calibration"]["genrm.gt"] == balanced
    with pytest.raises(JudgeError, match="objective"):
        calibrate_judge(out, rows, objective="f1", log=None)
    with pytest.raises(JudgeError, match="both correct and wrong"):
        calibrate_judge(out, [{**r, "correct": True} for r in rows], log=None)
    with pytest.raises(JudgeError, match="at least 20"):
        calibrate_judge(out, rows[:5], log=None)
    with pytest.raises(JudgeError, match="not a judge directory"):
        calibrate_judge(base_dir, rows, log=None)
    genrm.clear_judge_cache()


def test_calibrate_genrm_cli_refuses_a_directory_that_is_not_a_judge(base_dir, tmp_path, capsys):
    from datarl.cli import main

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({**r, "response": r["reference"]}) + "\n" for r in _math_records(25)))
    assert main(["calibrate-genrm", base_dir, str(rows)]) == 2
    err = capsys.readouterr().err
    assert "not a judge directory" in err and "Traceback" not in err


def test_calibrate_genrm_cli_fits_the_objective_asked(base_dir, tmp_path, capsys):
    from datarl.cli import main

    out = str(tmp_path / "judge")
    train_genrm(
        [], base_dir, out, GenRMTrainConfig(steps=0), gt_records=[_math_records(1)[0] | {"response": "0"}], log=None
    )
    recs = _math_records(24)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({**r, "response": r["reference"] + ("" if i < 4 else "0"), "correct": i < 4}) + "\n"
            for i, r in enumerate(recs)
        )
    )
    genrm.clear_judge_cache()
    assert main(["calibrate-genrm", out, str(rows), "--objective", "balanced"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["objective"] == "balanced" and printed["n"] == 24 and printed["correct"] == 4
    assert json.load(open(os.path.join(out, GENRM_META)))["calibration"]["genrm.gt"] == printed
    genrm.clear_judge_cache()


def test_the_cli_offers_exactly_the_library_s_choices():
    """The CLI writes its choices out (importing the trainers would slow every command's start-up); they must
    stay the library's."""
    from datarl.cli import build_parser
    from datarl.models.genrm_train import THRESHOLD_OBJECTIVES
    from datarl.models.precision import PRECISIONS

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    choices = {
        (cmd, opt.option_strings[0]): tuple(opt.choices)
        for cmd in ("calibrate-genrm", "train-genrm")
        for opt in sub[cmd]._actions
        if opt.choices and opt.option_strings
    }
    assert choices[("calibrate-genrm", "--objective")] == THRESHOLD_OBJECTIVES
    assert choices[("train-genrm", "--precision")] == PRECISIONS
    assert choices[("train-genrm", "--gt-verdict")] == genrm.GT_VERDICTS
    helps = {opt.dest: opt.help for opt in sub["train-genrm"]._actions}
    defaults = GenRMTrainConfig()
    assert f"else {defaults.steps})" in helps["steps"] and f"else {defaults.gt_verdict})" in helps["gt_verdict"]
    assert f"else {defaults.precision})" in helps["precision"]


def test_gt_share_draws_that_share_half_correct_half_wrong():
    import random as _random

    from datarl.models.genrm_train import _batches

    with pytest.raises(ValueError, match="gt_share"):
        GenRMTrainConfig(gt_share=1.0)
    pools = {"pairs": [([1], 1.0)] * 50, "gt_correct": [([2], 1.0)], "gt_wrong": [([3], 0.0)] * 200}
    batch = next(_batches(pools, GenRMTrainConfig(batch_size=16, gt_share=0.5), _random.Random(0)))
    kinds = [ids[0] for ids, _ in batch]
    assert kinds.count(1) == 8 and kinds.count(2) == 4 and kinds.count(3) == 4
    natural = GenRMTrainConfig(batch_size=16, gt_share=0.5, gt_balance=False)
    drawn_gt = [ids[0] for b, _ in zip(_batches(pools, natural, _random.Random(0)), range(20)) for ids, _ in b]
    assert drawn_gt.count(1) == 160 and drawn_gt.count(2) < 10  # half pairs; the rare correct item stays rare
    # without a share every example is drawn alike: the rare correct item is rare
    drawn = [
        ids[0]
        for b, _ in zip(_batches(pools, GenRMTrainConfig(batch_size=16), _random.Random(0)), range(20))
        for ids, _ in b
    ]
    assert drawn.count(2) < 10


def test_calibrate_after_training_stores_the_threshold_and_the_judge_keeps_its_answer_cap(base_dir, tmp_path):
    from datarl.rewards.genrm_backends import HFJudge

    recs = _math_records(120)
    gt = [{**r, "response": r["reference"]} for r in recs] + [
        {**r, "response": "2 + 2 = 5\n#### 5", "correct": False} for r in recs
    ]
    cfg = GenRMTrainConfig(
        steps=2, batch_size=4, warmup_steps=1, eval_fraction=0.3, calibrate=True, max_answer_chars=200
    )
    meta = train_genrm([], base_dir, str(tmp_path / "j"), cfg, gt_records=gt, log=None)
    entry = meta["calibration"]["genrm.gt"]
    assert 0 < entry["threshold"] < 1 and entry["n"] >= 20 and entry["accuracy"] >= entry["accuracy_at_0.5"]
    genrm.clear_judge_cache()
    judge = HFJudge.load(str(tmp_path / "j"))
    assert judge.calibration["genrm.gt"] == entry["threshold"] and judge.max_answer_chars == 200
    genrm.clear_judge_cache()


def test_a_match_judge_learns_ground_truth_items_and_genrm_gt_asks_it_so(base_dir, tmp_path):
    import torch

    from datarl.rewards.genrm_backends import HFJudge

    torch.set_num_threads(1)
    rng = random.Random(1)
    recs = _math_records(300)
    refusals = ["I am not sure.", "I do not know.", "No idea, sorry.", "Maybe ask someone else."]
    gt = [{**r, "response": r["reference"], "correct": True} for r in recs[:150]]
    gt += [{**r, "response": rng.choice(refusals), "correct": False} for r in recs[150:]]
    out = str(tmp_path / "judge")
    cfg = GenRMTrainConfig(
        steps=150, batch_size=16, lr=3e-3, warmup_steps=10, eval_fraction=0.2, max_eval_items=60, gt_verdict="match"
    )
    meta = train_genrm([], base_dir, out, cfg, gt_records=gt, log=None)
    assert meta["metrics"]["gt/accuracy"] >= 0.9, meta["metrics"]
    assert meta["metrics"]["gt/position_consistency"] >= 0.8, meta["metrics"]
    genrm.clear_judge_cache()
    assert HFJudge.load(out).gt_verdict == "match"
    rec = recs[0]
    right, wrong = score_genrm_gt(rec, rec["reference"], judge=out), score_genrm_gt(rec, "I do not know.", judge=out)
    assert right.failure is None and right.score > 0.5 > wrong.score
    genrm.clear_judge_cache()


def test_paired_orders_draw_both_orders_of_each_item_together():
    import random as _random

    from datarl.models.genrm_train import _batches

    # pools hold both orders of each item one after the other: (item, order) as the "ids"
    def pool(tag, n):
        return [([tag, i, order], 1.0 - order) for i in range(n) for order in (0, 1)]

    pools = {"pairs": pool(1, 40), "gt_correct": pool(2, 3), "gt_wrong": pool(3, 60)}
    cfg = GenRMTrainConfig(batch_size=16, gt_share=0.5, paired_orders=True)
    for batch in (b for b, _ in zip(_batches(pools, cfg, _random.Random(0)), range(20))):
        assert len(batch) == 16
        examples = [tuple(ids) for ids, _ in batch]
        for k in range(0, 16, 2):  # every draw is one item's two orders, adjacent
            (tag, i, o1), (tag2, i2, o2) = examples[k], examples[k + 1]
            assert (tag, i, o1, o2) == (tag2, i2, 0, 1)
        tags = [e[0] for e in examples]
        assert tags.count(1) == 8 and tags.count(2) == 4 and tags.count(3) == 4  # shares as without pairing
    # an odd share ends with one order of its last item; without a share, items are drawn alike
    odd = next(_batches(pools, GenRMTrainConfig(batch_size=7, paired_orders=True), _random.Random(1)))
    assert len(odd) == 7 and [ids[2] for ids, _ in odd][:6] == [0, 1] * 3
    # the unpaired draws are those of before the option (the same random sequence)
    rng_a, rng_b = _random.Random(3), _random.Random(3)
    unpaired = next(_batches(pools, GenRMTrainConfig(batch_size=16, gt_share=0.5), rng_a))
    gt = [pools["gt_correct"], pools["gt_wrong"]]
    expected = [gt[i % 2][rng_b.randrange(len(gt[i % 2]))] for i in range(8)]
    expected += [pools["pairs"][rng_b.randrange(80)] for _ in range(8)]
    assert unpaired == expected


def test_order_consistency_needs_paired_orders_and_penalises_order_dependence_only():
    import torch

    from datarl.models.genrm_train import order_penalty

    with pytest.raises(ValueError, match="paired_orders"):
        GenRMTrainConfig(order_consistency=1.0)
    with pytest.raises(ValueError, match="even"):
        GenRMTrainConfig(order_consistency=1.0, paired_orders=True, batch_size=20, gt_share=0.3)  # 6 + 14: ok
        GenRMTrainConfig(order_consistency=1.0, paired_orders=True, batch_size=20, gt_share=0.25)  # 5: odd
    with pytest.raises(ValueError, match=">= 0"):
        GenRMTrainConfig(order_consistency=-0.1)
    # slot items (-1): invariant when the log-odds are opposite; match items (+1): when they are equal
    invariant = torch.tensor([2.0, -2.0, 0.5, 0.5, -1.0, 1.0])
    assert order_penalty(invariant, [-1, -1, 1, 1, -1, -1]).item() == 0.0
    biased = torch.tensor([3.0, -1.0, 1.0, -1.0])  # a slot item with a pull of 1 towards A; a match item split
    assert order_penalty(biased, [-1, -1, 1, 1]).item() == pytest.approx((1.0**2 + 1.0**2) / 2)


def test_the_order_penalty_makes_a_trained_judge_less_order_dependent(base_dir, tmp_path):
    import torch

    from datarl.models.genrm_train import _examples
    from datarl.rewards.genrm_backends import HFJudge

    torch.set_num_threads(1)
    pairs = _refusal_pairs(_math_records(200), seed=2)
    bias = {}
    for weight in (0.0, 5.0):
        out = str(tmp_path / f"judge{weight}")
        cfg = GenRMTrainConfig(
            steps=40,
            batch_size=16,
            lr=3e-3,
            warmup_steps=5,
            eval_fraction=0.0,
            paired_orders=True,
            order_consistency=weight,
            calibrate=False,
        )
        train_genrm(pairs[:150], base_dir, out, cfg, log=None)
        judge = HFJudge.load(out)
        a, b = judge.verdict_ids
        examples = _examples(judge, judge_items(pairs[150:], None, cfg), cfg)
        with torch.no_grad():
            logp = torch.log_softmax(judge.next_logits([ex[0] for ex in examples]).float(), dim=-1)
        d = logp[:, a] - logp[:, b]
        bias[weight] = ((d[0::2] + d[1::2]) / 2).abs().mean().item()
        genrm.clear_judge_cache()
    assert bias[5.0] < 0.5 * bias[0.0], bias


def test_checkpoints_see_the_judge_in_eval_mode_calibrated_and_do_not_change_training(base_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    recs = _math_records(120)
    gt = [{**r, "response": r["reference"], "correct": True} for r in recs[:60]]
    gt += [{**r, "response": "I do not know.", "correct": False} for r in recs[60:]]
    cfg = GenRMTrainConfig(steps=4, batch_size=4, warmup_steps=1, eval_fraction=0.3, max_eval_items=20)
    seen = []

    def on_checkpoint(step, seconds, judge):
        seen.append((step, seconds, judge.policy.model.training, dict(judge.calibration)))

    torch.manual_seed(0)
    train_genrm(_refusal_pairs(recs, 0), base_dir, str(tmp_path / "a"), cfg, gt_records=gt, log=None)
    meta = train_genrm(
        _refusal_pairs(recs, 0),
        base_dir,
        str(tmp_path / "b"),
        cfg,
        gt_records=gt,
        log=None,
        on_checkpoint=on_checkpoint,
        checkpoint_every=2,
    )
    with pytest.raises(ValueError, match="checkpoint_every"):
        train_genrm([], base_dir, str(tmp_path / "c"), cfg, gt_records=gt, log=None, on_checkpoint=on_checkpoint)
    assert [s[0] for s in seen] == [2, 4]
    assert 0 <= seen[0][1] <= seen[1][1] <= meta["train"]["seconds"]
    assert not any(s[2] for s in seen)  # measured in eval mode
    assert all(set(s[3]) == {"genrm.gt"} and 0 < s[3]["genrm.gt"] < 1 for s in seen)  # the threshold fitted then
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # measuring did not change what was trained
    genrm.clear_judge_cache()
    assert genrm.get_judge(str(tmp_path / "b")).calibration == {
        "genrm.gt": meta["calibration"]["genrm.gt"]["threshold"]
    }
    genrm.clear_judge_cache()


@pytest.mark.parametrize("consistency", [0.0, 2.0])
def test_a_batch_run_in_parts_gives_the_whole_batch_loss_and_gradient(base_dir, consistency):
    import torch

    from datarl.models.genrm_train import _examples, _part_losses
    from datarl.rewards.genrm_backends import HFJudge

    recs = _math_records(40)
    pairs = _refusal_pairs(recs, 0)
    judge = HFJudge.load(base_dir)
    judge.policy.model.train()
    grads, totals = {}, {}
    for rows in (0, 2, 3):
        cfg = GenRMTrainConfig(batch_size=10, paired_orders=True, order_consistency=consistency, chunk_rows=rows)
        batch = _examples(judge, judge_items(pairs, None, cfg), cfg)[:10]
        assert len({len(ex[0]) for ex in batch}) > 1  # rows of different lengths, so the parts pad differently
        judge.policy.model.zero_grad()
        totals[rows] = 0.0
        for loss in _part_losses(judge, batch, cfg):
            loss.backward()
            totals[rows] += float(loss.detach())
        grads[rows] = torch.cat([p.grad.flatten() for p in judge.policy.model.parameters() if p.grad is not None])
    for rows in (2, 3):
        assert totals[rows] == pytest.approx(totals[0], rel=1e-5)
        assert torch.allclose(grads[rows], grads[0], rtol=1e-4, atol=1e-6)


def test_chunk_rows_must_not_be_negative():
    with pytest.raises(ValueError, match="chunk_rows"):
        GenRMTrainConfig(chunk_rows=-1)


def test_a_judge_trained_in_bfloat16_learns_and_saves_float32_weights_with_its_attention(base_dir, tmp_path):
    import torch

    torch.set_num_threads(1)
    with pytest.raises(ValueError, match="precision"):
        GenRMTrainConfig(precision="half")
    pairs = _refusal_pairs(_math_records(300), seed=0)
    out = str(tmp_path / "judge")
    cfg = GenRMTrainConfig(
        steps=150, batch_size=16, lr=3e-3, warmup_steps=10, eval_fraction=0.2, max_eval_items=60, precision="bfloat16"
    )
    meta = train_genrm(pairs, base_dir, out, cfg, log=None)
    assert meta["config"]["precision"] == "bfloat16"
    assert meta["metrics"]["pairs/accuracy"] >= 0.9, meta["metrics"]
    saved = _load(out)
    assert all(p.dtype == torch.float32 for p in saved.parameters())
    assert saved.config._attn_implementation == "sdpa"
    genrm.clear_judge_cache()
