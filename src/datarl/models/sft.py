"""``datarl sft``: the tiny SFT policy of the embedded default, built once and cached.

Recipe: draw the synthetic suite's SFT prompts (``sft_records``: as many as the train split,
never an eval prompt and, but for some general ones, no train or pool prompt, so PPO trains on
prompts the SFT policy never saw); draw imperfect demonstrations (the reference with
probability ``demo_quality``, a plausible mistake otherwise, like noisy human SFT data); train
a byte-level BPE tokenizer on the suite's text; pretrain a Llama-style model on whole texts plus
an arithmetic drill corpus, then fine-tune on responses only. The result is an ordinary HF
model directory under ``cache_dir/<config hash>``; a later call with the same config reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from datarl.models.loading import save_model_dir
from datarl.models.tiny import TinyModelConfig, build_tiny_policy
from datarl.models.train_lm import LMTrainConfig, train_lm
from datarl.synth import SynthConfig, build_suite, sft_examples, sft_records
from datarl.synth.math_tasks import arithmetic_drill, practice_text

RECIPE_VERSION = 7  # bump when the recipe changes so stale caches are not reused


def default_cache_dir() -> str:
    """``$DATARL_CACHE`` or ``~/.cache/datarl``."""
    return os.environ.get("DATARL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "datarl")


@dataclass(frozen=True)
class SFTConfig:
    """How the tiny SFT policy is built.

    synth: the suite whose SFT prompts (``sft_records``) are the SFT data.
    model: the transformer's shape.
    pretrain: language-model phase on whole texts (prompt and demonstration).
    sft: supervised phase, loss on responses only.
    demo_quality: chance that a demonstration is the reference (else a plausible mistake).
    drill_texts: plain-text arithmetic drills (8 equations each) added to the pretraining phase.
    practice_texts: plain-text worked word problems (fresh draws, never an eval prompt) added to
        the pretraining phase.
    math_repeat: how many times each math demonstration appears in the SFT phase (math needs
        the most examples of the four tasks).
    seed: model initialisation and demonstration sampling.
    """

    synth: SynthConfig = field(default_factory=SynthConfig)
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    pretrain: LMTrainConfig = field(
        default_factory=lambda: LMTrainConfig(
            steps=400, batch_size=32, lr=3e-3, warmup_steps=30, loss_on_prompt=True, seed=1, length_window=0
        )
    )
    sft: LMTrainConfig = field(
        default_factory=lambda: LMTrainConfig(
            steps=400, batch_size=32, lr=2e-3, warmup_steps=20, seed=2, length_window=0
        )
    )
    demo_quality: float = 0.75
    drill_texts: int = 0
    practice_texts: int = 6000
    math_repeat: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.demo_quality <= 1.0:
            raise ValueError("demo_quality must be in [0, 1]")
        if not self.pretrain.loss_on_prompt:
            raise ValueError("pretrain must set loss_on_prompt=True (it trains on whole texts)")
        if self.drill_texts < 0 or self.practice_texts < 0 or self.math_repeat < 1:
            raise ValueError("drill_texts >= 0, practice_texts >= 0 and math_repeat >= 1 are required")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        blob = json.dumps({"recipe": RECIPE_VERSION, **self.to_dict()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_sft_policy(
    cfg: SFTConfig | None = None,
    *,
    cache_dir: str | None = None,
    force: bool = False,
    progress: bool = False,
    log: Any = print,
) -> str:
    """Return the directory of the SFT policy for ``cfg``, training it if it is not cached."""
    cfg = cfg or SFTConfig()
    root = cache_dir or default_cache_dir()
    out = os.path.join(root, "sft", cfg.digest())
    if os.path.exists(os.path.join(out, "datarl_sft.json")) and not force:
        log(f"reusing cached SFT policy {out}")
        return out
    start = time.perf_counter()
    suite = build_suite(cfg.synth)
    train = sft_records(cfg.synth, suite)
    rng = random.Random(cfg.seed)
    demos = sft_examples(train, rng, cfg.demo_quality)
    pairs = [(d["prompt"], d["response"]) for d in demos]
    drills = [(None, arithmetic_drill(rng)) for _ in range(cfg.drill_texts)]
    banned = {str(r["prompt"]) for r in suite["eval"]}
    drills += [(None, practice_text(rng, banned)) for _ in range(cfg.practice_texts)]
    sft_pairs = pairs + [
        (d["prompt"], d["response"]) for d in demos if d.get("task") == "math" for _ in range(cfg.math_repeat - 1)
    ]
    texts = [str(r["prompt"]) + "\n" + str(r.get("reference", "")) for rs in (*suite.values(), train) for r in rs]
    policy = build_tiny_policy(texts, cfg.model, seed=cfg.seed)
    n_params = sum(p.numel() for p in policy.model.parameters())
    log(
        f"tiny policy: {n_params / 1e6:.2f}M parameters, vocabulary {len(policy.tokenizer)}, "
        f"{len(pairs)} demonstrations ({sum(d['is_reference'] for d in demos)} correct)"
    )
    stats = {
        "pretrain": train_lm(policy, pairs + drills, cfg.pretrain, progress=progress),
        "sft": train_lm(policy, sft_pairs, cfg.sft, progress=progress),
    }
    meta = {
        "config": cfg.to_dict(),
        "digest": cfg.digest(),
        "parameters": n_params,
        "stats": stats,
        "seconds": time.perf_counter() - start,
    }
    save_model_dir(out, policy.model, policy.tokenizer, meta_file="datarl_sft.json", meta=meta)
    log(f"SFT policy written to {out} in {meta['seconds']:.0f} s")
    return out
