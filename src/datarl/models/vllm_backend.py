"""vLLM as a generation backend (``pip install 'datarl[vllm]'``; a CUDA GPU is required).

:func:`generate_vllm` samples a model directory with vLLM's offline engine (``vllm.LLM``) and
returns the same :class:`~datarl.models.generate.Generation` objects as the Hugging Face path
(:func:`~datarl.models.generate.generate`), in the same order (prompt by prompt, sample by sample):

- ``token_ids`` are the sampled tokens, with the EOS token kept when the response ended with it
  (``finished``); ``text`` is their decoding without EOS and special tokens, by the same tokenizer;
- ``logprobs`` are the sampled tokens' log-probabilities: vLLM is asked for the sampled token only
  (``logprobs=0``) in ``logprobs_mode="processed_logprobs"``, i.e. after temperature scaling, which
  is ``log_softmax(logits / temperature)`` as in ``generate()`` (vLLM's default ``raw_logprobs``
  ignores the temperature). With ``top_p < 1`` vLLM reports the truncated, renormalised
  distribution's log-probs, whereas ``generate()`` reports them before truncation;
- ``prompt_ids`` are the chat-templated prompt's token ids, encoded here and given to vLLM as
  token prompts, so both backends see the same tokens;
- sampling is seeded per prompt (vLLM gives sample ``k`` the seed ``seed + k``); the streams differ
  from ``generate()``'s, so the same seed gives other (equally distributed) samples.

Both checks that can fail on a user's machine run before any engine is built and raise a one-line
:class:`~datarl.models.generate.GenerationError`: no CUDA device visible (vLLM would otherwise fail
deep inside its engine start-up), and vLLM not installed. Engines are cached per (model, dtype,
memory share): building one takes tens of seconds.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

from datarl.models.generate import Generation, GenerationError, SamplingConfig, derive_seed, tokenize_prompts

__all__ = ["generate_vllm", "get_engine", "to_generations", "require_cuda", "require_vllm", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'datarl[vllm]'"
_ENGINES: dict[tuple[str, str, float], Any] = {}


def require_cuda() -> None:
    """Raise unless torch sees a CUDA device (vLLM's engine needs one; this check starts no engine)."""
    import torch

    if not torch.cuda.is_available():
        raise GenerationError(
            "the vLLM backend needs a CUDA GPU and torch sees none "
            "(torch.cuda.is_available() is False); use --backend hf on this machine"
        )


def require_vllm() -> Any:
    """The imported ``vllm`` module, or a GenerationError saying how to install it."""
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise GenerationError(
            f"the vLLM backend needs vLLM, which is not installed or cannot be imported "
            f"({exc}); install it with: {INSTALL_HINT}"
        ) from None


def get_engine(model_path: str, *, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.6) -> Any:
    """A cached ``vllm.LLM`` for ``model_path``, built on first use after the CUDA and install checks."""
    key = (
        os.path.abspath(model_path) if os.path.exists(model_path) else model_path,
        dtype,
        float(gpu_memory_utilization),
    )
    if key in _ENGINES:
        return _ENGINES[key]
    if not 0 < gpu_memory_utilization <= 1:
        raise GenerationError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    require_cuda()
    vllm = require_vllm()
    try:
        engine = vllm.LLM(
            model=model_path,
            tokenizer=model_path,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            logprobs_mode="processed_logprobs",
        )
    except Exception as exc:  # vLLM raises many types at start-up; the user needs one line, not its trace
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenerationError(
            f"vLLM could not start on {model_path} ({type(exc).__name__}: {first}); "
            "check the model directory, free GPU memory or lower gpu_memory_utilization"
        ) from None
    _ENGINES[key] = engine
    return engine


def eos_token_ids(model_path: str, tokenizer: Any) -> set[int]:
    """The token ids that end a response: the tokenizer's EOS and the generation config's (as generate())."""
    ids: set[int] = set()
    sources: list[Any] = [tokenizer.eos_token_id]
    try:
        from transformers import GenerationConfig

        sources.append(GenerationConfig.from_pretrained(model_path).eos_token_id)
    except (OSError, ValueError):  # no generation_config.json: the tokenizer's EOS is all there is
        pass
    for source in sources:
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(x) for x in source)
    return ids


def _context_length(model_path: str) -> int:
    try:
        from transformers import AutoConfig

        return int(getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", 0) or 0)
    except (OSError, ValueError):
        return 0  # vLLM reports an over-long prompt itself


def _sampled_logprob(position: Any, token: int, where: str) -> float:
    """The sampled token's log-prob from one position of vLLM's logprobs (a dict token id -> Logprob)."""
    entry = position.get(token) if position is not None else None
    if entry is None:  # vLLM always includes the sampled token; anything else is a version mismatch
        raise GenerationError(f"{where}: vLLM returned no log-prob for the sampled token {token}")
    return float(getattr(entry, "logprob", entry))


def to_generations(
    outputs: Sequence[Any],
    prompt_ids: Sequence[Sequence[int]],
    tokenizer: Any,
    eos_ids: set[int],
    *,
    samples_per_prompt: int,
    ignore_eos: bool = False,
) -> list[Generation]:
    """Convert vLLM ``RequestOutput``s (one per prompt, ``samples_per_prompt`` completions each)."""
    if len(outputs) != len(prompt_ids):
        raise GenerationError(f"vLLM returned {len(outputs)} outputs for {len(prompt_ids)} prompts")
    results = []
    for p, request in enumerate(outputs):
        completions = sorted(request.outputs, key=lambda c: c.index)
        if len(completions) != samples_per_prompt:
            raise GenerationError(
                f"prompt {p}: vLLM returned {len(completions)} samples, expected {samples_per_prompt}"
            )
        for s, c in enumerate(completions):
            ids = [int(t) for t in c.token_ids]
            if c.logprobs is None or len(c.logprobs) != len(ids):
                raise GenerationError(
                    f"prompt {p} sample {s}: vLLM returned no per-token log-probs (it must be called with logprobs=0)"
                )
            logps = [
                _sampled_logprob(c.logprobs[t], tok, f"prompt {p} sample {s} token {t}") for t, tok in enumerate(ids)
            ]
            # finish_reason "stop" also covers stop strings and stop tokens; only an EOS token is "finished"
            finished = not ignore_eos and c.finish_reason == "stop" and bool(ids) and ids[-1] in eos_ids
            text = tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=True)
            results.append(Generation(p, s, text, ids, logps, list(prompt_ids[p]), finished))
    return results


def generate_vllm(
    model_path: str,
    prompts: Sequence[Any],
    cfg: SamplingConfig | None = None,
    *,
    tokenizer: Any,
    gpu_memory_utilization: float = 0.6,
    dtype: str = "bfloat16",
) -> list[Generation]:
    """Sample ``cfg.samples_per_prompt`` responses per prompt with vLLM (see the module docstring).

    ``tokenizer`` is the model's HF tokenizer (chat template, EOS, decoding). ``gpu_memory_utilization``
    is vLLM's share of GPU memory for weights and KV cache; the default leaves room for training models
    in the same process. ``cfg.batch_size`` and ``cfg.use_cache`` do not apply (vLLM batches itself).
    """
    cfg = cfg or SamplingConfig()
    engine = get_engine(model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization)
    from vllm import SamplingParams

    encoded = tokenize_prompts(tokenizer, prompts, cfg.max_new_tokens, _context_length(model_path))
    eos_ids = eos_token_ids(model_path, tokenizer)
    n = cfg.samples_per_prompt
    # One seed per prompt, n apart: vLLM seeds sample k with seed + k, so no two samples share a stream.
    params = [
        SamplingParams(
            n=n,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=cfg.max_new_tokens,
            seed=derive_seed(cfg.seed, p * n) % (2**63),
            logprobs=0,
            ignore_eos=cfg.ignore_eos,
            stop_token_ids=None if cfg.ignore_eos else sorted(eos_ids),
        )
        for p in range(len(encoded))
    ]
    outputs = engine.generate([{"prompt_token_ids": ids} for ids in encoded], params, use_tqdm=False)
    return to_generations(outputs, encoded, tokenizer, eos_ids, samples_per_prompt=n, ignore_eos=cfg.ignore_eos)
