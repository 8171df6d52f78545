"""TRL's side of ``bench/ppo_step.py``: GRPOTrainer steps, each timed, run inside ``.venv-trl``.

    .venv-trl/bin/python bench/_grpo_step.py MODEL_DIR RECORDS.jsonl RESULT.json \
        --steps 4 --max-new-tokens 64 --threads 1 [--fixed-lengths]

One optimiser step consumes exactly the 64 sequences of one generation batch (16 prompts x
``num_generations=4``, ``per_device_train_batch_size = generation_batch_size = 64``, one
accumulation step, ``num_iterations=1``); ``beta=0.02`` so TRL runs its reference model and
computes a KL term as datarl's PPO does. Rewards are datarl's TRL callables ``rtv_math`` and
``rtv_code`` (in-process). Each step's wall time is taken between the ``on_step_begin`` and
``on_step_end`` callbacks (generation, rewards, reference pass, loss, backward, optimiser step);
generation and reward time are the wall time of ``_generate`` and ``_calculate_rewards``.
Also the CPU seconds of each step (this process and its reaped children, e.g. code sandboxes), which
a busy machine inflates less than wall time. Writes per-step times, breakdowns and mean completion
lengths to RESULT.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import time


def cpu_s() -> float:
    """CPU seconds of this process and its reaped children (sandboxes): fairer than wall time under load."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(store: list[float], fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            store.append(time.perf_counter() - start)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("records")
    parser.add_argument("result")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fixed-lengths", action="store_true")
    parser.add_argument("--out-dir", default="/tmp/datarl-bench-grpo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from datarl.integrations.trl import rtv_code, rtv_math, trl_rows

    with open(args.records, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    n_prompts = len(records)
    # min_new_tokens keeps EOS out until max_new_tokens: every completion has the same length (fairness)
    gen_kwargs = {"min_new_tokens": args.max_new_tokens} if args.fixed_lengths else None
    config = GRPOConfig(
        output_dir=args.out_dir,
        max_steps=args.steps,
        num_generations=4,
        per_device_train_batch_size=4 * n_prompts,
        generation_batch_size=4 * n_prompts,
        gradient_accumulation_steps=1,
        num_iterations=1,
        beta=0.02,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        learning_rate=5e-5,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        seed=args.seed,
        dataloader_num_workers=0,
        generation_kwargs=gen_kwargs,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=args.model_dir,
        reward_funcs=[rtv_math, rtv_code],
        train_dataset=Dataset.from_list(trl_rows(records)),
        args=config,
    )
    gen_s: list[float] = []
    reward_s: list[float] = []
    step_s: list[float] = []
    step_cpu_s: list[float] = []
    trainer._generate = _timed(gen_s, trainer._generate)
    trainer._calculate_rewards = _timed(reward_s, trainer._calculate_rewards)

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args_, state, control, **kwargs):
            self.start, self.cpu = time.perf_counter(), cpu_s()

        def on_step_end(self, args_, state, control, **kwargs):
            step_s.append(time.perf_counter() - self.start)
            step_cpu_s.append(cpu_s() - self.cpu)

    trainer.add_callback(StepTimer())
    trainer.train()
    logs = [e for e in trainer.state.log_history if "completions/mean_length" in e]
    result = {
        "trl_version": trl.__version__,
        "torch_threads": torch.get_num_threads(),
        "steps": trainer.state.global_step,
        "step_s": step_s,
        "cpu_s": step_cpu_s,
        "rollout_s": gen_s,
        "reward_s": reward_s,
        "mean_length": [e["completions/mean_length"] for e in logs],
        "reward": [e.get("reward") for e in logs],
        "kl": [e.get("kl") for e in logs],
        "sequences_per_step": 4 * n_prompts,
    }
    with open(args.result, "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
