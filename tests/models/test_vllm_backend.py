"""The vLLM backend without a GPU: output conversion to Generation objects, and its two clear errors.

vLLM itself needs a CUDA GPU (and is not installed in the default environment), so the engine is not
run here. The conversion is tested on vLLM-shaped outputs: real ``vllm.outputs.CompletionOutput`` /
``RequestOutput`` and ``vllm.logprobs.Logprob`` objects when vLLM is importable, otherwise plain
dataclasses with the same attribute names (``index``, ``token_ids``, ``logprobs`` as a list of
``{token_id: Logprob}`` dicts, ``finish_reason``; ``outputs``, ``prompt_token_ids``), which is all
:func:`to_generations` reads.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from datarl.models.generate import GenerationError, SamplingConfig, _eos_ids, generate  # noqa: E402
from datarl.models.tiny import MICRO, build_tiny_policy  # noqa: E402
from datarl.models.vllm_backend import (  # noqa: E402
    INSTALL_HINT,
    eos_token_ids,
    generate_vllm,
    require_cuda,
    require_vllm,
    to_generations,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None
HAS_CUDA = torch.cuda.is_available()
TEXTS = [f"what is {a} plus {b}? {a} plus {b} is {a + b}." for a in range(10) for b in range(10)]

if HAS_VLLM:
    from vllm.logprobs import Logprob
    from vllm.outputs import CompletionOutput, RequestOutput

    def completion(index, token_ids, logprobs, finish_reason):
        return CompletionOutput(
            index=index,
            text="",
            token_ids=token_ids,
            cumulative_logprob=None,
            logprobs=logprobs,
            finish_reason=finish_reason,
        )

    def request(prompt_ids, outputs):
        return RequestOutput(
            request_id="r",
            prompt=None,
            prompt_token_ids=prompt_ids,
            prompt_logprobs=None,
            outputs=outputs,
            finished=True,
        )
else:

    @dataclass
    class Logprob:  # type: ignore[no-redef]  # vllm.logprobs.Logprob's fields
        logprob: float
        rank: int | None = None
        decoded_token: str | None = None

    @dataclass
    class _Completion:  # the CompletionOutput attributes to_generations reads
        index: int
        token_ids: list[int]
        logprobs: Any
        finish_reason: str | None
        text: str = ""

    @dataclass
    class _Request:  # the RequestOutput attributes to_generations reads
        prompt_token_ids: list[int]
        outputs: list[Any] = field(default_factory=list)

    def completion(index, token_ids, logprobs, finish_reason):
        return _Completion(index, token_ids, logprobs, finish_reason)

    def request(prompt_ids, outputs):
        return _Request(prompt_ids, outputs)


@pytest.fixture(scope="module")
def policy():
    return build_tiny_policy(TEXTS, MICRO)


def _as_vllm(gens, n, decoy_token):
    """vLLM outputs carrying exactly what ``gens`` sampled: per position the sampled token's Logprob plus a
    more likely decoy (as vLLM adds top-k entries), samples listed in reverse index order."""
    outputs = []
    for p in range(len(gens) // n):
        samples = gens[p * n : (p + 1) * n]
        comps = []
        for g in reversed(samples):
            positions = [
                {
                    tok: Logprob(lp, rank=3),
                    (decoy_token if decoy_token != tok else decoy_token + 1): Logprob(-0.01, rank=1),
                }
                for tok, lp in zip(g.token_ids, g.logprobs)
            ]
            comps.append(completion(g.sample_index, list(g.token_ids), positions, "stop" if g.finished else "length"))
        outputs.append(request(list(samples[0].prompt_ids), comps))
    return outputs


@pytest.mark.parametrize("max_new_tokens", [3, 40])
def test_conversion_reproduces_hf_generations_exactly(policy, max_new_tokens):
    # Short runs are all cut off; long ones mostly end with EOS: both kinds of row are covered.
    prompts = ["what is 2 plus 3?", "what is 7 plus 1?", "what is 4 plus 4?"]
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, samples_per_prompt=2, seed=1, batch_size=8)
    gens = generate(policy, prompts, cfg)
    eos = set(_eos_ids(policy).tolist())  # the ids generate() stops on
    converted = to_generations(
        _as_vllm(gens, 2, decoy_token=5), [g.prompt_ids for g in gens[::2]], policy.tokenizer, eos, samples_per_prompt=2
    )
    assert converted == gens  # text, token ids (EOS kept), log-probs of the sampled tokens, order, finished
    if max_new_tokens == 40:
        assert any(g.finished for g in gens) and all(g.token_ids[-1] in eos for g in gens if g.finished)


def test_finished_only_for_eos_and_eos_kept(policy):
    tok = policy.tokenizer
    eos = tok.eos_token_id
    a, b = tok("what is", add_special_tokens=False)["input_ids"][:2]
    lp = [{a: Logprob(-0.5)}, {b: Logprob(-1.25), a: Logprob(-0.1)}, {eos: Logprob(-2.0)}]
    out = [
        request(
            [a],
            [
                completion(0, [a, b, eos], lp, "stop"),  # ended with EOS
                completion(1, [a, b, eos], lp, "length"),  # EOS as the very last allowed token
                completion(2, [a, b], lp[:2], "stop"),
            ],
        )
    ]  # stopped by something else (a stop string)
    g0, g1, g2 = to_generations(out, [[a]], tok, {eos}, samples_per_prompt=3)
    assert (g0.token_ids, g0.logprobs, g0.finished) == ([a, b, eos], [-0.5, -1.25, -2.0], True)
    assert g0.text == tok.decode([a, b], skip_special_tokens=True)
    assert (g1.finished, g1.token_ids) == (False, [a, b, eos])
    assert (g2.finished, g2.logprobs, g2.prompt_ids) == (False, [-0.5, -1.25], [a])
    ignored = to_generations(out, [[a]], tok, {eos}, samples_per_prompt=3, ignore_eos=True)
    assert not any(g.finished for g in ignored)


def test_malformed_outputs_are_clear_errors(policy):
    tok = policy.tokenizer
    missing = [request([1], [completion(0, [4, 5], None, "length")])]
    with pytest.raises(GenerationError, match="logprobs=0"):
        to_generations(missing, [[1]], tok, {2}, samples_per_prompt=1)
    wrong_token = [request([1], [completion(0, [4], [{9: Logprob(-1.0)}], "length")])]
    with pytest.raises(GenerationError, match="sampled token 4"):
        to_generations(wrong_token, [[1]], tok, {2}, samples_per_prompt=1)
    with pytest.raises(GenerationError, match="2 samples, expected 1"):
        to_generations(
            [request([1], [completion(0, [4], [{4: Logprob(-1.0)}], "length")] * 2)],
            [[1]],
            tok,
            {2},
            samples_per_prompt=1,
        )


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_missing_vllm_says_how_to_install():
    with pytest.raises(GenerationError, match=r"pip install 'datarl\[vllm\]'"):
        require_vllm()
    assert INSTALL_HINT == "pip install 'datarl[vllm]'"


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is visible")
def test_no_cuda_fails_before_any_engine(policy, tmp_path):
    with pytest.raises(GenerationError, match="needs a CUDA GPU"):
        require_cuda()
    # the whole entry point stops at the same check, building nothing (a nonexistent model is never read)
    with pytest.raises(GenerationError, match="needs a CUDA GPU"):
        generate_vllm(str(tmp_path / "no-model"), ["hi"], SamplingConfig(), tokenizer=policy.tokenizer)


@pytest.mark.skipif(HAS_CUDA and HAS_VLLM, reason="vLLM can run here")
def test_cli_backend_vllm_is_a_one_line_error(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"id": "a", "task": "math", "prompt": "what is 2 plus 3?", "ground_truth": "5"}) + "\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "datarl",
            "generate",
            str(prompts),
            "-o",
            str(tmp_path / "o.jsonl"),
            "--backend",
            "vllm",
            "--policy",
            str(tmp_path / "never-read"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datarl: error: ") and "Traceback" not in proc.stderr
    assert ("needs a CUDA GPU" in lines[0]) if not HAS_CUDA else ("pip install 'datarl[vllm]'" in lines[0])
    assert not (tmp_path / "o.jsonl").exists()


def test_eos_ids_come_from_tokenizer_and_generation_config(policy, tmp_path):
    saved = policy.model.generation_config.eos_token_id
    policy.model.generation_config.eos_token_id = [policy.tokenizer.eos_token_id, 7]
    try:
        policy.model.save_pretrained(tmp_path)
    finally:
        policy.model.generation_config.eos_token_id = saved
    policy.tokenizer.save_pretrained(tmp_path)
    assert eos_token_ids(str(tmp_path), policy.tokenizer) == {policy.tokenizer.eos_token_id, 7}
    assert eos_token_ids(str(tmp_path / "no-config"), policy.tokenizer) == {policy.tokenizer.eos_token_id}
