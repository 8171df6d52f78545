"""The ``bt`` source: logistic mapping, overrides, batching invariance, and never raising; reward models not made
by ``datarl train-bt`` (their chat template or text pairs, a mapping fitted on the records, refusals)."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

pytest.importorskip("torch")

from datarl.models.bt_train import BTTrainConfig, train_bt  # noqa: E402
from datarl.rewards.bt import (  # noqa: E402
    BTModelError,
    bt_scores,
    fit_mapping,
    load_bt,
    logistic,
    refit,
    score_bt,
    score_bt_batch,
)
from datarl.rewards.router import RouterConfig  # noqa: E402
from datarl_testing import micro_backbone, micro_reward_model, toy_pairs  # noqa: E402

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
    empty = tmp_path / "empty"
    empty.mkdir()
    r = score_bt(RECORD, GOOD, model=str(empty))
    assert r.failure == "model_unavailable" and "no config.json nor datarl_bt.json" in r.info["error"]
    r = score_bt(RECORD, GOOD, model="someone/not-cached-rm")
    assert r.failure == "model_unavailable" and "not in the local Hugging Face cache" in r.info["error"]
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


# --- any sequence-classification reward model (no datarl_bt.json) --------------------------------------------


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    return micro_reward_model(root / "rm", micro_backbone(str(root / "base")))


PROMPTS = ["Tell me about the river number 1.", [{"role": "user", "content": "Tell me about the lamp number 2."}]]
RESPONSES = [GOOD, BAD, "The lamp is nice.", "I like the book a lot."]


def _records(n):
    return [{"id": f"r{i}", "task": "general", "prompt": PROMPTS[i % 2]} for i in range(n)]


def test_any_reward_model_reads_the_conversation_through_its_own_chat_template(rm_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    results = score_bt_batch(_records(4), RESPONSES, model=rm_dir)
    tok = AutoTokenizer.from_pretrained(rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    with torch.no_grad():
        for record, response, r in zip(_records(4), RESPONSES, results):
            prompt = record["prompt"]
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            text = tok.apply_chat_template([*messages, {"role": "assistant", "content": response}], tokenize=False)
            assert text.endswith(response + tok.eos_token)  # the whole conversation, closed as in training
            ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
            expected = model.score(model.model(input_ids=ids).last_hidden_state[:, -1]).item()
            assert r.failure is None and r.info["bt_input"] == "chat_template"
            assert r.info["raw"] == pytest.approx(expected, abs=1e-4)
    raws = [r.info["raw"] for r in results]
    assert len({round(x, 4) for x in raws}) == 4  # the test can tell responses apart
    shift, scale = fit_mapping(raws)
    assert shift == pytest.approx(sum(raws) / 4) and scale == pytest.approx(
        math.sqrt(sum((x - shift) ** 2 for x in raws) / 3)
    )
    for r in results:
        assert r.info["mapping"] == "logistic" and r.info["fitted_on"] == 4
        assert r.info["mapping_from"] == {"shift": "fit", "scale": "fit"}
        assert (r.info["shift"], r.info["scale"]) == pytest.approx((shift, scale))
        assert r.score == pytest.approx(logistic(r.info["raw"], shift, scale))
    one_by_one = score_bt_batch(_records(4)[::-1], RESPONSES[::-1], model=rm_dir, batch_size=1)[::-1]
    assert [r.info["raw"] for r in one_by_one] == pytest.approx(raws, abs=1e-4)  # left padding changes nothing


def test_mapping_options_and_what_reward_info_says(rm_dir):
    records = _records(4)
    fitted = score_bt_batch(records, RESPONSES, model=rm_dir)
    given = score_bt_batch(records, RESPONSES, model=rm_dir, shift=1.0, scale=2.0)
    assert all(r.info["mapping_from"] == {"shift": "options", "scale": "options"} for r in given)
    assert all("fitted_on" not in r.info for r in given)
    assert [r.score for r in given] == pytest.approx([logistic(r.info["raw"], 1.0, 2.0) for r in fitted])
    half = score_bt_batch(records, RESPONSES, model=rm_dir, scale=2.0)
    assert half[0].info["mapping_from"] == {"shift": "fit", "scale": "options"}
    assert half[0].info["shift"] == pytest.approx(fitted[0].info["shift"]) and half[0].info["scale"] == 2.0
    raw = score_bt_batch(records, RESPONSES, model=rm_dir, mapping="none")
    assert [r.score for r in raw] == pytest.approx([r.info["raw"] for r in fitted])
    assert all(r.info["mapping"] == "none" and "shift" not in r.info for r in raw)
    for bad in ({"mapping": "sigmoid"}, {"mapping": "none", "shift": 0.0}, {"shift": "x"}):
        r = score_bt_batch(records[:1], RESPONSES[:1], model=rm_dir, **bad)[0]
        assert r.score == 0.0 and r.failure == "bad_option", bad
    alone = score_bt(records[0], GOOD, model=rm_dir)  # one response: nothing to fit a spread on
    assert alone.score == 0.5 and alone.info["fitted_on"] == 1


def test_refit_over_parts_equals_one_call(rm_dir, bt_dir):
    records = _records(4)
    whole = score_bt_batch(records, RESPONSES, model=rm_dir)
    parts = score_bt_batch(records[:2], RESPONSES[:2], model=rm_dir) + score_bt_batch(
        records[2:], RESPONSES[2:], model=rm_dir
    )
    assert [r.score for r in parts] != pytest.approx([r.score for r in whole])
    again = refit(parts)
    assert [r.score for r in again] == pytest.approx([r.score for r in whole], abs=1e-5)
    assert all(r.info["fitted_on"] == 4 for r in again)
    stored = score_bt_batch(records[:2], RESPONSES[:2], model=bt_dir)  # a stored mapping is never refitted
    assert refit(stored) == stored


def _micro_bert(path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = sorted({w.strip(".,") for text in (*RESPONSES, PROMPTS[0]) for w in text.lower().split()} | {"lamp", "2"})
    (path / "vocab.txt").parent.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *words]) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    import torch

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():  # a head large enough that a wrong input shows
        model.classifier.weight.normal_(0.0, 1.0)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return tok


def test_an_encoder_reward_model_without_chat_template_reads_a_text_pair(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    path = tmp_path / "bert_rm"
    tok = _micro_bert(path)
    records = _records(4)
    results = score_bt_batch(records, RESPONSES, model=str(path), mapping="none", batch_size=4)
    single = [score_bt_batch([r], [x], model=str(path), mapping="none")[0] for r, x in zip(records, RESPONSES)]
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    with torch.no_grad():
        for rec, resp, r, one in zip(records, RESPONSES, results, single):
            prompt = rec["prompt"] if isinstance(rec["prompt"], str) else rec["prompt"][0]["content"]
            expected = model(**tok(prompt, resp, return_tensors="pt")).logits[0, 0].item()
            assert r.info["bt_input"] == "text_pair" and r.failure is None
            # right padding: the [CLS] an encoder pools stays first in a batch of unequal lengths
            assert r.score == pytest.approx(expected, rel=1e-4) and one.score == pytest.approx(expected, rel=1e-4)


def test_checkpoints_that_would_score_noise_are_refused(tmp_path, rm_dir):
    causal = micro_backbone(str(tmp_path / "causal"))  # a causal LM: its reward head would be random
    r = score_bt(RECORD, GOOD, model=causal)
    assert r.failure == "model_unavailable" and "not a sequence-classification reward model" in r.info["error"]
    from safetensors.torch import load_file, save_file

    headless = tmp_path / "headless"
    shutil.copytree(rm_dir, headless)
    weights = load_file(str(headless / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("score.")}, str(headless / "model.safetensors"))
    r = score_bt(RECORD, GOOD, model=str(headless))
    assert r.failure == "model_unavailable" and "lacks 1 weight(s)" in r.info["error"] and "score" in r.info["error"]


def test_batch_callers_refuse_a_mapping_that_would_change_every_batch(rm_dir, bt_dir):
    def problems(**opts):
        return RouterConfig.from_mapping({"router": {"general": "bt"}, "sources": {"bt": opts}}).batch_problems()

    assert "sources.bt.shift" in problems(model=rm_dir)[0]
    assert problems(model=rm_dir, shift=0.0, scale=1.0) == [] and problems(model=rm_dir, mapping="none") == []
    assert problems(model=bt_dir) == []
    assert problems(model=os.path.join(bt_dir, "not-trained-yet")) == []  # a pipeline's bt stage makes it later
