"""Mixed precision for the local training loops: bfloat16 autocast, float32 weights and optimiser.

``precision`` in a training config is one of :data:`PRECISIONS`:

- ``float32``: every pass in float32 (bit for bit what the loops did before this option existed).
- ``bfloat16``: forward and backward under ``torch.autocast`` to bfloat16 (matrix products and attention in
  bfloat16, the loss, norms and weights in float32). On a CPU with native bfloat16 (AVX512-BF16 or AMX) the
  tiny models' matrix products run about three times as fast; on one without it they are emulated and slower.
- ``auto``: ``bfloat16`` on a GPU that supports it (Ampere or newer) and on a CPU with native bfloat16, else
  ``float32``.

On a CPU the model's attention runs as plain matrix products (``eager``) inside the context: PyTorch's
fused CPU attention is slower in bfloat16 than in float32 backward, the plain one is faster (measured on the
judge's shapes, docs/results.md). The model's own setting is put back on exit, so what is saved and what
scores afterwards is unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

__all__ = [
    "PRECISIONS",
    "check_precision",
    "cuda_bf16",
    "native_cpu_bf16",
    "resolve_precision",
    "training_precision",
]

PRECISIONS = ("float32", "bfloat16", "auto")


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` naming the choices when ``precision`` is not one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")


@functools.lru_cache(maxsize=1)
def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 in ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def cuda_bf16() -> bool:
    """Whether the current CUDA device computes bfloat16 (Ampere or newer)."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_precision(precision: str, device_type: str) -> str:
    """``float32`` or ``bfloat16``: what ``precision`` means on ``device_type`` (``cpu``, ``cuda``, ...)."""
    check_precision(precision)
    if precision != "auto":
        return precision
    native = {"cpu": native_cpu_bf16, "cuda": cuda_bf16}.get(device_type)
    return "bfloat16" if native is not None and native() else "float32"


@contextlib.contextmanager
def training_precision(model: Any, precision: str) -> Iterator[str]:
    """Run the block's passes through ``model`` in ``precision``; yields what it resolved to."""
    import torch

    device_type = next(model.parameters()).device.type
    resolved = resolve_precision(precision, device_type)
    if resolved == "float32":
        yield resolved
        return
    config = getattr(model, "config", None)
    kept = getattr(config, "_attn_implementation", None)
    swap = device_type == "cpu" and kept == "sdpa" and hasattr(model, "set_attn_implementation")
    if swap:
        model.set_attn_implementation("eager")
    try:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield resolved
    finally:
        if swap:
            model.set_attn_implementation(kept)
