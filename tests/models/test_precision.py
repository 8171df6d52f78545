"""Mixed precision for the training loops: the choices, what ``auto`` resolves to, and that the context runs
the passes in bfloat16 with plain attention on a CPU and puts the model's own attention back afterwards."""

from __future__ import annotations

import pytest

from datarl.models import precision
from datarl.models.precision import check_precision, resolve_precision, training_precision


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"float32.*bfloat16.*auto.*'fp16'"):
        check_precision("fp16")
    for name in precision.PRECISIONS:
        check_precision(name)


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bfloat16_only_where_the_device_computes_it(monkeypatch, native):
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: native)
    monkeypatch.setattr(precision, "cuda_bf16", lambda: not native)
    assert resolve_precision("auto", "cpu") == ("bfloat16" if native else "float32")
    assert resolve_precision("auto", "cuda") == ("float32" if native else "bfloat16")
    assert resolve_precision("auto", "mps") == "float32"
    assert resolve_precision("float32", "cuda") == "float32"
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"


def test_native_cpu_bf16_reads_the_cpu_flags():
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        flags = next((line for line in fh if line.startswith("flags")), "")
    assert precision.native_cpu_bf16() == any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


@pytest.fixture(scope="module")
def micro_model():
    from datarl.models.tiny import MICRO, build_tiny_policy

    policy = build_tiny_policy(["Describe a dog. A dog has a tail.", "What is 3 + 4? #### 7"] * 20, MICRO, seed=0)
    return policy.model


def test_bfloat16_runs_the_passes_in_bfloat16_with_plain_attention_and_restores_the_model(micro_model):
    import torch

    ids = torch.tensor([[1, 5, 6, 7, 8]])
    assert micro_model.config._attn_implementation == "sdpa"
    with training_precision(micro_model, "bfloat16") as resolved:
        assert resolved == "bfloat16"
        assert micro_model.config._attn_implementation == "eager"
        logits = micro_model(input_ids=ids).logits
        assert logits.dtype == torch.bfloat16
        logits.float().sum().backward()
    assert micro_model.config._attn_implementation == "sdpa"
    assert all(p.dtype == torch.float32 for p in micro_model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in micro_model.parameters())
    micro_model.zero_grad(set_to_none=True)
    with training_precision(micro_model, "float32") as resolved:
        assert resolved == "float32" and micro_model.config._attn_implementation == "sdpa"
        assert micro_model(input_ids=ids).logits.dtype == torch.float32


def test_the_model_gets_its_attention_back_when_the_block_raises(micro_model):
    with pytest.raises(RuntimeError, match="boom"):
        with training_precision(micro_model, "bfloat16"):
            raise RuntimeError("boom")
    assert micro_model.config._attn_implementation == "sdpa"
