"""Benchmark: one datarl PPO step against one TRL GRPO step, same model, batch, prompts and lengths.

Both sides, in this one invocation and one after the other (never concurrently), on CPU with the
same torch thread count:

- the model: the tiny SFT policy (``build_sft_policy()``), or with ``--micro`` a MICRO model built
  on the fly (random weights: timing does not depend on them);
- the batch: 64 sequences = 16 prompts (8 math + 8 code from the synth suite) x 4 samples, one
  optimiser step over all 64 (datarl ``minibatch_size: 64, ppo_epochs: 1``; TRL
  ``num_generations=4``, ``per_device_train_batch_size = generation_batch_size = 64``,
  ``num_iterations=1``);
- lengths: ``--max-new-tokens`` (64); by default every response is forced to exactly that length
  (datarl ``ignore_eos``, TRL ``min_new_tokens``) so both do the same work; ``--natural-lengths``
  lets EOS end responses and the mean lengths are reported;
- rewards: ``rtv.math``/``rtv.code`` through datarl's router on datarl's side, datarl's TRL
  callables ``rtv_math``/``rtv_code`` on TRL's;
- KL: datarl always runs a reference forward (and with ``gae`` a critic, which GRPO has not); TRL runs
  with ``beta=0.02`` so that it too loads a reference model and computes a KL term (in its loss; datarl
  keeps it in the reward, ``docs/ppo.md``);
- the estimator: ``--advantage gae`` (default: PPO with a critic) or the critic-free ``grpo``/``rloo``
  (datarl's group baselines, no critic loaded or trained);
- datarl's micro-batches: rows of similar length together (``group_by_length``, the default: fewer pad
  tokens; about a fifth of this batch's tokens are padding), or with ``--no-group-by-length`` every row
  padded to the longest, as TRL's batch is;
- the critic (``gae`` only): ``--value-init policy`` (default: a separate critic model, a second forward and
  backward) or ``shared`` (a value head on the policy's body: one forward and backward for both losses).

Timing: one warm-up step (not timed), then the mean of ``--steps`` steps per side. datarl's time is
``perf/step_s`` = rollout + reward + update (``metrics.jsonl``); TRL's is the wall time between its
``on_step_begin`` and ``on_step_end`` callbacks (``bench/_grpo_step.py``, run with
``.venv-trl/bin/python``). Also printed: CPU seconds per step (the process and its reaped children,
such as reward workers and code sandboxes), which a busy machine inflates less than wall time.
``--rounds R`` alternates the two sides R times (fairer under load).

Usage: python bench/ppo_step.py [--micro] [--steps 3] [--threads 1] [--max-new-tokens 64]
                                [--natural-lengths] [--rounds 1] [--workers 1] [--value-init policy|shared]
                                [--advantage gae|grpo|rloo] [--no-group-by-length]
                                [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRL_PYTHON = os.path.join(ROOT, ".venv-trl", "bin", "python")


def _records() -> list[dict[str, Any]]:
    from datarl.synth import SynthConfig, build_suite

    suite = build_suite(SynthConfig(train_per_task=8, pool_per_task=0, eval_per_task=0, tasks=("math", "code")))
    return suite["train"]


def _model_dir(micro: bool, work: str) -> str:
    if not micro:
        from datarl.models.sft import build_sft_policy

        return build_sft_policy(log=lambda m: None)
    from datarl.models.tiny import MICRO, build_tiny_policy
    from datarl.synth import SynthConfig, build_suite

    texts = [
        str(r["prompt"]) + " " + str(r["reference"])
        for r in build_suite(SynthConfig(train_per_task=50, pool_per_task=0, eval_per_task=0))["train"]
    ]
    policy = build_tiny_policy(texts, MICRO)
    out = os.path.join(work, "micro")
    policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    return out


@contextlib.contextmanager
def _instrumented(force_lengths: bool, step_cpu: list[float]) -> Iterator[None]:
    """For this bench only: make the trainer's rollouts ignore EOS (every response max_new_tokens long),
    and note the CPU seconds between consecutive step logs (one step each; nothing else runs between)."""
    from _grpo_step import cpu_s

    import datarl.rl.trainer as trainer_mod

    original, logger_cls = trainer_mod.generate, trainer_mod.MetricsLogger
    if force_lengths:
        trainer_mod.generate = lambda policy, prompts, cfg, **kw: original(
            policy, prompts, dataclasses.replace(cfg, ignore_eos=True), **kw
        )
    marks: list[float] = []

    class CPUMarkingLogger(logger_cls):  # type: ignore[misc, valid-type]
        def log(self, name: str, row: Any) -> None:
            if name == "metrics":
                marks.append(cpu_s())
            super().log(name, row)

    trainer_mod.MetricsLogger = CPUMarkingLogger
    try:
        yield
    finally:
        trainer_mod.generate, trainer_mod.MetricsLogger = original, logger_cls
        step_cpu.extend(b - a for a, b in zip(marks, marks[1:]))  # steps 2.. (step 1 is the warm-up)


def run_datarl(model_dir: str, data: str, run_dir: str, args: argparse.Namespace) -> dict[str, Any]:
    from datarl.rl.config import TrainConfig
    from datarl.rl.trainer import train

    cfg = TrainConfig.from_mapping(
        {
            "policy": model_dir,
            "data": {"train": data},
            "curriculum": "none",
            "reward": {"router": {"math": "rtv.math", "code": "rtv.code"}},
            "ppo": {
                "steps": args.steps + 1,
                "prompts_per_step": 16,
                "samples_per_prompt": 4,
                "minibatch_size": 64,
                "ppo_epochs": 1,
                "max_new_tokens": args.max_new_tokens,
                "kl_coef": 0.02,
                "value_init": args.value_init,
                "advantage": args.advantage,
                "group_by_length": args.group_by_length,
            },
            "eval": {"every": 0},
            "save_every": 10_000,
            "keep_checkpoints": 1,
            "workers": args.workers,
            "threads": args.threads,
            "run_dir": run_dir,
            "seed": 0,
        }
    )
    step_cpu: list[float] = []
    with _instrumented(not args.natural_lengths, step_cpu):
        train(cfg, log=lambda m: None)
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh][1:]  # the first step is the warm-up
    keys = {
        "step_s": "perf/step_s",
        "rollout_s": "perf/rollout_s",
        "reward_s": "perf/reward_s",
        "update_s": "perf/update_s",
        "mean_length": "response/length",
        "reward": "reward/mean",
    }
    return {"cpu_s": step_cpu, **{k: [r[m] for r in rows] for k, m in keys.items()}}


def run_trl(model_dir: str, data: str, result: str, args: argparse.Namespace) -> dict[str, Any]:
    if not os.path.exists(TRL_PYTHON):
        raise SystemExit(f"bench: {TRL_PYTHON} not found; build it with scripts/integration_venvs.sh")
    cmd = [
        TRL_PYTHON,
        os.path.join(ROOT, "bench", "_grpo_step.py"),
        model_dir,
        data,
        result,
        "--steps",
        str(args.steps + 1),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--threads",
        str(args.threads),
        "--out-dir",
        os.path.dirname(result) + "/grpo-out",
    ]
    if not args.natural_lengths:
        cmd.append("--fixed-lengths")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("DATARL_REWARD_CONFIG", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"bench: TRL run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    with open(result, encoding="utf-8") as fh:
        out = json.load(fh)
    # drop the warm-up step; TRL logs every step, so lengths line up with steps
    timed = ("step_s", "cpu_s", "rollout_s", "reward_s", "mean_length", "reward")
    return {**out, **{k: out[k][1:] for k in timed}}


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def _report(dl: dict[str, Any], tr: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    keys = ("step_s", "cpu_s", "rollout_s", "reward_s", "mean_length")
    d = {k: _mean(dl[k]) for k in (*keys, "update_s")}
    t = {k: _mean(tr[k]) for k in keys}
    t["update_s"] = t["step_s"] - t["rollout_s"] - t["reward_s"]  # reference pass + loss + backward + optimiser
    print(f"{'':<28}{'step s':>9}{'cpu s':>8}{'rollout s':>11}{'reward s':>10}{'update s':>10}{'mean len':>10}")
    for name, row in (
        (f"datarl {args.advantage} (n={len(dl['step_s'])})", d),
        (f"TRL {tr['trl_version']} GRPO (n={len(tr['step_s'])})", t),
    ):
        print(
            f"{name:<28}{row['step_s']:>9.3f}{row['cpu_s']:>8.3f}{row['rollout_s']:>11.3f}"
            f"{row['reward_s']:>10.3f}{row['update_s']:>10.3f}{row['mean_length']:>10.1f}"
        )
    ratio, cpu_ratio = t["step_s"] / d["step_s"], t["cpu_s"] / d["cpu_s"]
    print(
        f"ratio TRL/datarl step time: {ratio:.2f}x ({'datarl faster' if ratio > 1 else 'TRL faster'}), "
        f"CPU time {cpu_ratio:.2f}x; per part (wall): rollout {t['rollout_s'] / d['rollout_s']:.2f}x, "
        f"reward {t['reward_s'] / d['reward_s']:.2f}x, update {t['update_s'] / d['update_s']:.2f}x"
    )
    return {
        "datarl": d,
        "trl": t,
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "raw": {"datarl": dl, "trl": tr},
        "args": vars(args),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micro", action="store_true", help="a MICRO model built on the fly, not the SFT policy")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--natural-lengths", action="store_true", help="let EOS end responses (lengths differ)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate datarl and TRL this many times")
    parser.add_argument("--workers", type=int, default=1, help="datarl reward worker processes")
    parser.add_argument(
        "--value-init",
        default="policy",
        choices=("policy", "shared"),
        help="datarl's critic: a separate model (policy, the default) or a head on the policy's body (shared)",
    )
    parser.add_argument(
        "--advantage",
        default="gae",
        choices=("gae", "grpo", "rloo"),
        help="datarl's estimator: gae (PPO with a critic, the default) or the critic-free grpo and rloo",
    )
    parser.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="datarl's micro-batches of rows of similar length (the default); --no-group-by-length pads every "
        "row of the batch to the longest, as TRL does",
    )
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    if args.advantage != "gae" and args.value_init != "policy":
        parser.error(f"--value-init {args.value_init} names a critic; --advantage {args.advantage} has none")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, threads {args.threads} on both sides, load {os.getloadavg()[0]:.2f}, "
        f"{'fixed' if not args.natural_lengths else 'natural'} lengths, max_new_tokens {args.max_new_tokens}"
    )
    dl: dict[str, list[float]] = {}
    tr: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="datarl-ppo-bench-") as work:
        records = _records()
        data = os.path.join(work, "prompts.jsonl")
        with open(data, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
        model_dir = _model_dir(args.micro, work)
        print(
            f"model {'MICRO (fresh)' if args.micro else model_dir}; 16 prompts x 4 samples = 64 sequences; "
            "datarl "
            + (
                f"{args.advantage}: no critic"
                if args.advantage != "gae"
                else f"critic: {'a head on the policy body' if args.value_init == 'shared' else 'a separate model'}"
            )
            + f"; micro-batches {'by length' if args.group_by_length else 'padded to the longest row'}"
        )
        for rnd in range(args.rounds):
            start = time.perf_counter()
            d = run_datarl(model_dir, data, os.path.join(work, f"run-{rnd}"), args)
            print(f"round {rnd + 1}: datarl {time.perf_counter() - start:.1f} s wall, load {os.getloadavg()[0]:.2f}")
            start = time.perf_counter()
            t = run_trl(model_dir, data, os.path.join(work, f"trl-{rnd}.json"), args)
            print(f"round {rnd + 1}: TRL {time.perf_counter() - start:.1f} s wall, load {os.getloadavg()[0]:.2f}")
            for k, v in d.items():
                dl.setdefault(k, []).extend(v)
            for k, v in t.items():
                tr[k] = tr.get(k, []) + v if isinstance(v, list) else v
    out = _report(dl, tr, args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    sys.exit(main())
