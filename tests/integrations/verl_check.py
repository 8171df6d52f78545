"""Run inside .venv-verl by test_verl.py: datarl's export and compute_score through verl's own code.

    python verl_check.py WORK_DIR RESULT.json

1. exports the embedded suite with `datarl export-verl` (curriculum order, 6 steps x 4 prompts; general
   prompts routed to a BT model trained here for a few steps, so one source is model-based);
2. composes verl's real ppo_trainer config with hydra (the overrides datarl prints), builds verl's sync
   PPO trainer and runs its own _init_dataloader (RLHFDataset + create_rl_sampler), and records the order;
3. starts verl's RewardLoopManager (2 Ray reward workers, custom reward function = our file) and scores a
   mixed-task batch in two orders through compute_rm_score;
4. checks that the legacy top-level custom_reward_function key is not picked up.
Writes what it saw as JSON; the assertions live in test_verl.py (they compare with the router there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WRONG = "I do not know."


def export(work: Path) -> tuple[Path, Path, list[dict]]:
    from datarl.models.tiny import MICRO, build_tiny_policy
    from datarl.synth import SynthConfig, build_suite

    suite = build_suite(SynthConfig(train_per_task=5, pool_per_task=0, eval_per_task=0))["train"]
    policy = build_tiny_policy([str(r["prompt"]) + " " + str(r["reference"]) for r in suite], MICRO)
    model_dir = work / "tiny"
    policy.model.save_pretrained(model_dir)
    policy.tokenizer.save_pretrained(model_dir)
    # A model-based source for general prompts: a BT reward model trained for a few steps from the tiny policy.
    from datarl.models.bt_train import BTTrainConfig, train_bt

    pairs = [
        {"id": f"p{i}", "prompt": r["prompt"], "chosen": r["reference"], "rejected": "no no no"}
        for i, r in enumerate(suite)
        if r["task"] == "general"
    ]
    bt_dir = work / "bt"
    train_bt(pairs, str(model_dir), str(bt_dir), BTTrainConfig(steps=3, pairs_per_step=2, eval_fraction=0.0))
    router_config = {
        "router": {"general": "bt"},
        "sources": {"bt": {"model": str(bt_dir)}, "rtv.ifeval": {"mode": "loose"}},
    }
    reward_config = work / "reward.json"
    reward_config.write_text(json.dumps({"reward": router_config}))
    src, parquet = work / "train.jsonl", work / "train.parquet"
    src.write_text("".join(json.dumps(r) + "\n" for r in suite))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "datarl.cli",
            "export-verl",
            str(src),
            "-o",
            str(parquet),
            "--steps",
            "6",
            "--prompts-per-step",
            "4",
            "--seed",
            "1",
            "--config",
            str(reward_config),
        ],
        check=True,
    )
    return model_dir, parquet, suite, reward_config, router_config


def compose(overrides: list[str]):
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


def batch_proto(rows: list[dict], responses: list[str], tokenizer):
    """A DataProto laid out as verl's trainer hands it to the reward loop: [prompts | responses]."""
    import numpy as np
    import torch
    from tensordict import TensorDict
    from verl import DataProto

    def padded(seqs):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return ids, mask

    prompts, prompt_mask = padded(
        [
            tokenizer.apply_chat_template(r["raw_prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
            for r in rows
        ]
    )
    responses_ids, response_mask = padded([tokenizer(t, add_special_tokens=False)["input_ids"] for t in responses])
    non_tensor = {}
    for key in ("data_source", "reward_model", "extra_info", "raw_prompt", "index"):
        arr = np.empty(len(rows), dtype=object)
        arr[:] = [dict(r[key]) if isinstance(r[key], dict) else r[key] for r in rows]
        non_tensor[key] = arr
    batch = TensorDict(
        {
            "prompts": prompts,
            "responses": responses_ids,
            "attention_mask": torch.cat([prompt_mask, response_mask], dim=1),
        },
        batch_size=len(rows),
    )
    return DataProto(batch=batch, non_tensor_batch=non_tensor), responses_ids


def plain(value):
    return value.item() if hasattr(value, "item") else value


def score_run(manager, rows, responses, tokenizer) -> dict:
    data, response_ids = batch_proto(rows, responses, tokenizer)
    out = manager.compute_rm_score(data)
    keys = out.meta_info["reward_extra_keys"]
    scored = []
    for i, row in enumerate(rows):
        scored.append(
            {
                "key": f"{row['extra_info']['index']}:{responses[i]}",
                "record": row["extra_info"]["record"],
                "response": responses[i],
                "decoded": tokenizer.decode(
                    response_ids[i][response_ids[i] != tokenizer.pad_token_id], skip_special_tokens=True
                ),
                "verl_score": float(out.batch["rm_scores"][i].sum()),
                "extra": {k: plain(out.non_tensor_batch[k][i]) for k in keys},
            }
        )
    return {
        "reward_extra_keys": list(keys),
        "extra_lengths": {k: len(out.non_tensor_batch[k]) for k in keys},
        "rows": scored,
    }


def main() -> None:
    work, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    import numpy as np
    import pyarrow.parquet as pq
    import ray
    import verl
    from verl.experimental.reward_loop import RewardLoopManager
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.utils.import_utils import load_extern_object

    from datarl.integrations.verl import verl_overrides

    model_dir, parquet, suite, reward_config, router_config = export(work)
    common = [
        f"data.val_files={parquet}",
        f"actor_rollout_ref.model.path={model_dir}",
        "reward.num_workers=2",
        "data.dataloader_num_workers=0",
        "trainer.logger=[console]",
    ]
    overrides = verl_overrides(str(parquet), prompts_per_step=4, reward_config=str(reward_config))
    config = compose(overrides + common)

    trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config)
    trainer._init_tokenizer()
    trainer._init_dataloader()  # verl's own RLHFDataset, create_rl_sampler and StatefulDataLoader
    batches = list(trainer.train_dataloader)
    rows = [
        {k: v[i] for k, v in b.items() if isinstance(v, np.ndarray)}
        for b in batches
        for i in range(len(b["extra_info"]))
    ]

    ours = next(o.split("=", 1)[1] for o in overrides if o.startswith("reward.custom_reward_function.path="))
    legacy = compose(
        [
            f"data.train_files={parquet}",
            f"custom_reward_function.path={ours}",
            "custom_reward_function.name=compute_score",
        ]
        + common
    )
    result = {
        "verl_version": verl.__version__,
        "exported_ids": [r["extra_info"]["id"] for r in pq.read_table(parquet).to_pylist()],
        "styles": sorted({(r["ability"], r["reward_model"]["style"]) for r in pq.read_table(parquet).to_pylist()}),
        "loader_ids": [r["extra_info"]["id"] for r in rows],
        "loader_batches": len(batches),
        "batch_size": len(batches[0]["extra_info"]),
        "steps": 6,
        "prompts_per_step": 4,
        "total_training_steps": trainer.total_training_steps,
        "custom_fn_loaded": get_custom_reward_fn(config) is not None,
        "pkg_path_loads": callable(load_extern_object("pkg://datarl.integrations.verl", "compute_score")),
        "legacy_key_custom_fn": None if get_custom_reward_fn(legacy) is None else "loaded",
        "router_config": router_config,
    }

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    try:
        manager = RewardLoopManager(config)
        result["num_workers"] = len(manager.reward_loop_workers)
        by_task: dict[str, list[dict]] = {}
        for row in rows:
            by_task.setdefault(row["ability"], []).append(row)
        mixed = [r for group in zip(*(by_task[t][:3] for t in sorted(by_task))) for r in group]  # 12 rows, 4 tasks
        refs = {r["id"]: r["reference"] for r in suite}
        responses = [refs[r["extra_info"]["id"]] if i % 3 else WRONG for i, r in enumerate(mixed)]
        order = list(reversed(range(len(mixed))))
        result["runs"] = [
            score_run(manager, mixed, responses, trainer.tokenizer),
            score_run(manager, [mixed[i] for i in order], [responses[i] for i in order], trainer.tokenizer),
        ]
    finally:
        ray.shutdown()
    result_path.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
