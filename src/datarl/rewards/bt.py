"""``bt``: a Bradley-Terry scalar reward model (made by ``datarl train-bt``) as a reward source.

The model is an ordinary HF sequence-classification directory (one output) plus
``datarl_bt.json``, which holds the training config, metrics and the logistic mapping
``score = 1 / (1 + exp(-(raw - shift) / scale))``; ``shift`` and ``scale`` are the mean
and standard deviation of the raw rewards of the training responses, so a typical
response scores about 0.5 and one a standard deviation better about 0.73. Both can be
overridden per call (router options ``model``, ``scale``, ``shift``).

Input text = the chat-formatted prompt (``prompt_text``) followed by the response, no
EOS; the reward is read at the last token. Rows are left-padded with explicit position
ids, so a response gets the same raw score alone or in any batch. Sequences longer than
the model's context keep their first tokens (as in training).

``score_bt`` never raises: an unusable model directory is ``failure: model_unavailable``
with the reason in ``info["error"]``. ``bt_scores`` (batched raw scores for best-of-N)
raises ``BTModelError`` instead, since its caller controls the directory.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datarl.errors import UserError
from datarl.rewards.base import RewardResult

__all__ = [
    "BTModelError",
    "BTModel",
    "load_bt",
    "score_bt",
    "score_bt_batch",
    "bt_scores",
    "encode_texts",
    "raw_rewards",
    "META_FILE",
    "SOURCE",
]

SOURCE = "bt"
META_FILE = "datarl_bt.json"
_CACHE: dict[tuple[str, float], BTModel] = {}
_LOCK = threading.Lock()


class BTModelError(UserError):
    """A BT model directory that cannot be used; the message says why and what to do."""


@dataclass
class BTModel:
    """A loaded BT reward model: HF model, tokenizer, ``datarl_bt.json`` contents."""

    model: Any
    tokenizer: Any
    meta: dict[str, Any]
    path: str

    @property
    def max_length(self) -> int:
        return int(self.meta.get("max_length") or getattr(self.model.config, "max_position_embeddings", 0) or 2048)


def load_bt(model_dir: str) -> BTModel:
    """Load (once per process, cached by real path) the BT model in ``model_dir``."""
    if not isinstance(model_dir, str) or not model_dir:
        raise BTModelError("bt: option 'model' must be the path of a directory made by `datarl train-bt`")
    key = os.path.realpath(model_dir)
    meta_path = os.path.join(key, META_FILE)
    try:  # a model retrained into the same directory is reloaded, not served stale
        stamp = os.stat(meta_path).st_mtime
    except OSError:
        stamp = -1.0
    with _LOCK:
        if (key, stamp) in _CACHE:
            return _CACHE[(key, stamp)]
        if not os.path.isdir(key):
            raise BTModelError(f"{model_dir}: no such BT model directory (train one with `datarl train-bt`)")
        if not os.path.isfile(meta_path):
            raise BTModelError(
                f"{model_dir}: not a BT model directory (no {META_FILE}); train one with `datarl train-bt`"
            )
        try:
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
            mapping = meta["mapping"]
            float(mapping["shift"]), float(mapping["scale"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BTModelError(f"{meta_path}: unreadable or missing mapping.shift/mapping.scale ({exc})") from None
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(key)
            model = AutoModelForSequenceClassification.from_pretrained(key)
        except Exception as exc:  # OSError, ValueError, safetensors errors...: all mean "unusable"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BTModelError(f"{model_dir}: cannot load the BT model ({reason})") from None
        if getattr(model.config, "num_labels", 1) != 1:
            raise BTModelError(f"{model_dir}: a BT model has one output; this one has {model.config.num_labels}")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.eval()
        loaded = BTModel(model, tokenizer, meta, key)
        _CACHE[(key, stamp)] = loaded
        return loaded


def encode_texts(tokenizer: Any, prompt: Any, response: str, max_length: int) -> list[int]:
    """Token ids of the chat-formatted prompt followed by ``response``, cut to ``max_length``."""
    from datarl.models.generate import prompt_text

    p_ids = tokenizer(prompt_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return (p_ids + r_ids)[:max_length] or [tokenizer.pad_token_id]


def raw_rewards(model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> Any:
    """Raw rewards (a float tensor, one per row, with grad if enabled) read at each row's last token."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):  # left padding: the last token of every row is at the end
        ids[i, width - len(row) :] = torch.tensor(list(row))
        mask[i, width - len(row) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = getattr(model, "score", None)
    if body is not None and isinstance(head, torch.nn.Linear):
        # Pool ourselves: HF pools at the last non-pad id, which breaks when pad == eos.
        hidden = body(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        return head(hidden[:, -1]).squeeze(-1).float()
    return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, 0].float()


def _batched_raw(bt: BTModel, prompts: Sequence[Any], responses: Sequence[str], batch_size: int) -> list[float]:
    import torch

    rows = [encode_texts(bt.tokenizer, p, str(r), bt.max_length) for p, r in zip(prompts, responses)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths share a batch
    out = [0.0] * len(rows)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            values = raw_rewards(bt.model, [rows[i] for i in chunk], bt.tokenizer.pad_token_id).tolist()
            for i, v in zip(chunk, values):
                out[i] = float(v)
    return out


def bt_scores(model_dir: str, prompts: Sequence[Any], responses: Sequence[str], batch_size: int = 16) -> list[float]:
    """Raw BT rewards of ``responses`` to ``prompts`` (same length), batched; raises ``BTModelError``."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    bt = load_bt(model_dir)
    return _batched_raw(bt, prompts, responses, batch_size) if prompts else []


def logistic(raw: float, shift: float, scale: float) -> float:
    z = (raw - shift) / scale
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def score_bt(
    record: Mapping[str, Any], response: str, *, model: str, scale: float | None = None, shift: float | None = None
) -> RewardResult:
    """BT reward of ``response`` in [0, 1]: ``logistic((raw - shift) / scale)``. Never raises."""
    return score_bt_batch([record], [response], model=model, scale=scale, shift=shift, batch_size=1)[0]


def score_bt_batch(
    records: Sequence[Mapping[str, Any]],
    responses: Sequence[str],
    *,
    model: str,
    scale: float | None = None,
    shift: float | None = None,
    batch_size: int = 32,
) -> list[RewardResult]:
    """``score_bt`` for many records at once (batched forward passes); never raises."""
    try:
        bt = load_bt(model)
    except BTModelError as exc:
        return [
            RewardResult(0.0, SOURCE, {"failure": "model_unavailable", "error": str(exc), "bt_model": model})
            for _ in records
        ]
    mapping = bt.meta["mapping"]
    shift = float(mapping["shift"]) if shift is None else shift
    scale = float(mapping["scale"]) if scale is None else scale
    info: dict[str, Any] = {"bt_model": model, "shift": shift, "scale": scale, "mapping": "logistic"}
    if (
        not isinstance(scale, (int, float))
        or not isinstance(shift, (int, float))
        or not scale > 0
        or not math.isfinite(scale)
        or not math.isfinite(shift)
    ):
        bad = dict(
            info,
            failure="bad_option",
            error=f"bt: scale must be a finite number > 0 and shift finite (got scale={scale!r}, shift={shift!r})",
        )
        return [RewardResult(0.0, SOURCE, dict(bad)) for _ in records]
    out: list[RewardResult | None] = [None] * len(records)
    todo = []
    for i, record in enumerate(records):
        prompt = record.get("prompt") if isinstance(record, Mapping) else None
        if not prompt:
            out[i] = RewardResult(0.0, SOURCE, dict(info, failure="no_prompt", error="record has no prompt"))
        else:
            todo.append(i)
    try:
        raws = _batched_raw(
            bt,
            [records[i]["prompt"] for i in todo],
            [r if isinstance(r, str) else str(r) for r in (responses[i] for i in todo)],
            batch_size,
        )
    except Exception as exc:  # the contract: a source never raises on model output
        err = dict(info, failure="internal_error", error=f"{type(exc).__name__}: {exc}")
        return [r if r is not None else RewardResult(0.0, SOURCE, dict(err)) for r in out]
    for i, raw in zip(todo, raws):
        if not math.isfinite(raw):
            out[i] = RewardResult(
                0.0, SOURCE, dict(info, raw=None, failure="internal_error", error="non-finite raw reward")
            )
        else:
            out[i] = RewardResult(logistic(raw, float(shift), float(scale)), SOURCE, dict(info, raw=raw))
    return [r for r in out if r is not None]
