"""The tiny Llama-style policy of the embedded default, and a micro one for tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from datarl.models.loading import Policy
from datarl.models.tokenizer import train_tokenizer


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of a from-scratch Llama-style causal LM.

    vocab_size: BPE vocabulary trained on the suite's text.
    hidden_size, intermediate_size, num_layers, num_heads: transformer shape.
    context_length: maximum positions (prompt + response).
    """

    vocab_size: int = 2048
    hidden_size: int = 192
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 6
    context_length: int = 384

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MICRO = TinyModelConfig(
    vocab_size=400, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, context_length=256
)


def build_tiny_policy(texts: Iterable[str], cfg: TinyModelConfig, seed: int = 0) -> Policy:
    """Train a tokenizer on ``texts`` and create a randomly initialised model for it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = train_tokenizer(texts, vocab_size=cfg.vocab_size)
    tok.model_max_length = cfg.context_length
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.context_length,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    return Policy(model=model, tokenizer=tok, name="tiny")
