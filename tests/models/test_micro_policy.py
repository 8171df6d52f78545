"""A micro model built in seconds: tokenizer, training, sampling, log-probs, save and reload."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from datarl.models.generate import GenerationError, SamplingConfig, generate, sequence_logprobs  # noqa: E402
from datarl.models.loading import PolicyLoadError, load_policy  # noqa: E402
from datarl.models.tiny import MICRO, build_tiny_policy  # noqa: E402
from datarl.models.train_lm import LMTrainConfig, train_lm  # noqa: E402

PAIRS = [(f"what is {a} plus {b}?", f"{a} plus {b} is {a + b}. #### {a + b}") for a in range(10) for b in range(10)]


@pytest.fixture(scope="module")
def micro():
    policy = build_tiny_policy([p + " " + r for p, r in PAIRS], MICRO)
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    stats = train_lm(policy, PAIRS, LMTrainConfig(steps=60, batch_size=16, lr=5e-3, warmup_steps=5))
    return policy, before, stats


def test_training_changes_parameters_and_lowers_loss(micro):
    policy, before, stats = micro
    changed = [n for n, p in policy.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)
    assert stats["loss_last"] < stats["loss_first"] * 0.7


def test_chat_template_wraps_prompts(micro):
    policy, _, _ = micro
    text = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|bos|><|user|>hi<|eos|><|assistant|>"


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_logprobs_match_a_fresh_forward_pass(micro, use_cache):
    policy, _, _ = micro
    cfg = SamplingConfig(temperature=0.8, max_new_tokens=16, samples_per_prompt=3, seed=7, use_cache=use_cache)
    prompts = ["what is 3 plus 4?", [{"role": "user", "content": "what is 9 plus 9?"}], "what is 1 plus 2? " * 5]
    gens = generate(policy, prompts, cfg)
    assert [(g.prompt_index, g.sample_index) for g in gens] == [(p, s) for p in range(3) for s in range(3)]
    for g in gens:
        assert len(g.token_ids) == len(g.logprobs) > 0
        fresh = sequence_logprobs(policy, g.prompt_ids, g.token_ids, temperature=0.8)
        assert max(abs(a - b) for a, b in zip(fresh, g.logprobs)) < 1e-4


def test_cache_and_no_cache_sample_the_same_tokens(micro):
    policy, _, _ = micro
    runs = [
        generate(policy, ["what is 5 plus 5?"] * 4, SamplingConfig(max_new_tokens=12, seed=3, use_cache=c))
        for c in (True, False)
    ]
    assert [g.token_ids for g in runs[0]] == [g.token_ids for g in runs[1]]


def test_grouped_decoding_keeps_prompt_order_and_greedy_outputs():
    policy = build_tiny_policy([p + " " + r for p, r in PAIRS], MICRO)
    prompts = ["what is 1 plus 2? " * (1 + i % 4) for i in range(10)]  # four prompt lengths, interleaved
    greedy = dict(temperature=0, max_new_tokens=12, batch_size=3)
    mixed = generate(policy, prompts, SamplingConfig(**greedy, group_by_length=False))  # grouping is the default
    grouped = generate(policy, prompts, SamplingConfig(**greedy, group_by_length=True))
    assert [g.prompt_index for g in grouped] == list(range(10))
    assert [g.prompt_ids for g in grouped] == [g.prompt_ids for g in mixed]
    assert [g.token_ids for g in grouped] == [g.token_ids for g in mixed]
    sampled = generate(policy, prompts, SamplingConfig(max_new_tokens=8, samples_per_prompt=2, group_by_length=True))
    assert [(g.prompt_index, g.sample_index) for g in sampled] == [(p, s) for p in range(10) for s in range(2)]
    assert all(g.prompt_ids == m.prompt_ids for g, m in zip(sampled[::2], mixed))


def test_same_seed_same_samples_and_eos_stops(micro):
    policy, _, _ = micro
    cfg = SamplingConfig(temperature=0, max_new_tokens=40)
    a, b = generate(policy, ["what is 2 plus 2?"], cfg), generate(policy, ["what is 2 plus 2?"], cfg)
    assert a[0].token_ids == b[0].token_ids
    if a[0].finished:
        assert a[0].token_ids[-1] == policy.tokenizer.eos_token_id and len(a[0].token_ids) < 40


def test_bad_prompts_are_clear_errors(micro):
    policy, _, _ = micro
    with pytest.raises(GenerationError, match="prompt 1 is empty"):
        generate(policy, ["ok", ""])
    with pytest.raises(GenerationError, match="exceeds the model's context of 256"):
        generate(policy, ["word " * 400])


def test_save_and_reload_as_an_ordinary_hf_directory(micro, tmp_path):
    policy, _, _ = micro
    policy.model.save_pretrained(tmp_path)
    policy.tokenizer.save_pretrained(tmp_path)
    again = load_policy(str(tmp_path))
    cfg = SamplingConfig(temperature=0, max_new_tokens=10)
    assert (
        generate(again, ["what is 1 plus 1?"], cfg)[0].token_ids
        == generate(policy, ["what is 1 plus 1?"], cfg)[0].token_ids
    )


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("/nonexistent/model", "no such model directory"),
        ("/nonexistent/m.gguf", "GGUF file not found"),
        ("someone/not-cached-model", "not in the local Hugging Face cache"),
    ],
)
def test_bad_policy_specs_are_clear_errors(spec, fragment):
    with pytest.raises(PolicyLoadError, match=fragment):
        load_policy(spec)


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(PolicyLoadError, match="no config.json"):
        load_policy(str(tmp_path))


def test_gguf_of_an_unsupported_architecture_is_a_clear_error(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba9")
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(PolicyLoadError, match="architecture is not supported.*mamba9"):
        load_policy(str(path))
