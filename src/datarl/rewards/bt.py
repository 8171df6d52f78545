"""``bt``: a scalar reward model as a reward source: one made by ``datarl train-bt``, or any Hugging Face
sequence-classification reward model (one output), such as ``Skywork/Skywork-Reward-Llama-3.1-8B-v0.2``.

The model (router option ``model``) is a directory, or a hub id already in the local Hugging Face cache
(nothing is downloaded). What tells the two kinds apart is ``datarl_bt.json``:

- **Made by** ``datarl train-bt`` (the file is there): input = the chat-formatted prompt (``prompt_text``)
  followed by the response, no EOS, as in training; the file holds the logistic mapping (below).
- **Any other reward model** (no such file): the input is what the model was trained on: the prompt
  and the response as one conversation through the tokenizer's own chat template
  (``reward_info.bt_input: chat_template``), or, for a tokenizer without one (DeBERTa-style models),
  the two as a text pair with the tokenizer's separators (``text_pair``). A checkpoint that is not a
  sequence-classification model with all its weights (a causal LM whose head would be random) is refused.

The reward is read at the last token (causal models with a linear ``score`` head: left padding and
explicit position ids, so a response gets the same raw score alone or in any batch; other models pool
as they were built to, with right padding). Sequences longer than the model's context keep their first
tokens (``reward_info.truncated``). The model runs on the GPU when one is visible.

Mapping (router options ``mapping``, ``shift``, ``scale``): ``logistic`` (default) gives
``score = 1 / (1 + exp(-(raw - shift) / scale))``; each of ``shift`` and ``scale`` comes from the options
when given, else from ``datarl_bt.json`` (the mean and standard deviation of the training responses' raw
rewards), else it is **fitted on the records being scored** (their mean and standard deviation, as
``train-bt`` does), so a typical response scores about 0.5 and one a standard deviation better about 0.73.
``reward_info`` keeps ``raw``, ``shift``, ``scale``, ``mapping_from`` (per parameter: ``options``,
``datarl_bt.json`` or ``fit``) and ``fitted_on`` (how many responses the fit saw). A fit covers one call;
jobs that score in parts (``datarl select``'s chunks, Ray batches) refit over the whole job with
:func:`refit`. ``mapping: none`` gives the raw score itself (unbounded: for Pre-PPO, which normalises
per domain, or your own shaping).

``score_bt`` never raises: an unusable model is ``failure: model_unavailable`` with the reason in
``info["error"]``. ``bt_scores`` (batched raw scores for best-of-N) raises ``BTModelError`` instead, since
its caller controls the model.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import defaultdict
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
    "fit_mapping",
    "logistic",
    "refit",
    "refit_state",
    "mapping_problem",
    "MAPPINGS",
    "META_FILE",
    "SOURCE",
]

SOURCE = "bt"
META_FILE = "datarl_bt.json"
MAPPINGS = ("logistic", "none")
_CACHE: dict[tuple[str, str, float], BTModel] = {}
_LOCK = threading.Lock()
_REFIT_KEYS = ("bt_model", "raw", "shift", "scale", "mapping", "mapping_from", "fitted_on")
_MAKES = "a directory made by `datarl train-bt` or a Hugging Face sequence-classification reward model"


class BTModelError(UserError):
    """A BT model directory that cannot be used; the message says why and what to do."""


@dataclass
class BTModel:
    """A loaded reward model: HF model, tokenizer, ``datarl_bt.json`` contents (empty for other models).

    trained_here: made by ``datarl train-bt`` (then the input format and mapping are its own).
    """

    model: Any
    tokenizer: Any
    meta: dict[str, Any]
    path: str
    trained_here: bool = True

    @property
    def max_length(self) -> int:
        limit = int(self.meta.get("max_length") or getattr(self.model.config, "max_position_embeddings", 0) or 0)
        if not limit and not self.trained_here:
            limit = int(getattr(self.tokenizer, "model_max_length", 0) or 0)
            limit = limit if 0 < limit < 1_000_000 else 0  # "no limit" sentinels
        return limit or 2048

    @property
    def input_format(self) -> str:
        """``prompt_text`` (train-bt's), ``chat_template`` or ``text_pair`` (see the module docstring)."""
        if self.trained_here:
            return "prompt_text"
        return "chat_template" if getattr(self.tokenizer, "chat_template", None) else "text_pair"

    @property
    def stored_mapping(self) -> dict[str, float]:
        """``{shift, scale}`` from ``datarl_bt.json`` (empty for other models)."""
        mapping = self.meta.get("mapping") or {}
        return {k: float(mapping[k]) for k in ("shift", "scale") if k in mapping}


def _locate(model_dir: str) -> tuple[str, str, dict[str, Any]]:
    """(cache key, where to load from, from_pretrained kwargs) for a directory or a locally cached hub id."""
    if os.path.isdir(model_dir):
        return os.path.realpath(model_dir), os.path.realpath(model_dir), {}
    from datarl.models.loading import hub_cached_file, is_hub_id

    config = hub_cached_file(model_dir)
    if config is not None:
        return config, model_dir, {"local_files_only": True}
    if is_hub_id(model_dir) and "/" in model_dir:
        raise BTModelError(
            f"{model_dir}: not a directory and not in the local Hugging Face cache (nothing is downloaded at "
            f"run time); download it first (`hf download {model_dir}`) or give its directory"
        )
    raise BTModelError(f"{model_dir}: no such reward model directory; give {_MAKES}")


def _stamp(key: str, kwargs: Mapping[str, Any]) -> float:
    """When the model last changed (a model retrained into the same directory is reloaded, not served stale)."""
    files = [key] if kwargs else [os.path.join(key, META_FILE), os.path.join(key, "config.json")]
    for path in files:
        try:
            return os.stat(path).st_mtime
        except OSError:
            continue
    return -1.0


def load_bt(model_dir: str) -> BTModel:
    """Load (once per process, cached by real path) the reward model ``model_dir``: a directory made by
    ``datarl train-bt``, an HF sequence-classification directory, or a hub id in the local cache."""
    if not isinstance(model_dir, str) or not model_dir:
        raise BTModelError(f"bt: option 'model' must name {_MAKES}")
    key, where, kwargs = _locate(model_dir)
    stamp = _stamp(key, kwargs)
    with _LOCK:
        if (key, where, stamp) in _CACHE:
            return _CACHE[(key, where, stamp)]
        meta_path = os.path.join(key, META_FILE)
        trained_here = not kwargs and os.path.isfile(meta_path)
        meta: dict[str, Any] = {}
        if trained_here:
            try:
                with open(meta_path, encoding="utf-8") as fh:
                    meta = json.load(fh)
                mapping = meta["mapping"]
                float(mapping["shift"]), float(mapping["scale"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise BTModelError(f"{meta_path}: unreadable or missing mapping.shift/mapping.scale ({exc})") from None
        elif not kwargs and not os.path.isfile(os.path.join(key, "config.json")):
            raise BTModelError(f"{model_dir}: not a model directory (no config.json nor {META_FILE}); give {_MAKES}")
        model, tokenizer = _load_hf(model_dir, where, kwargs, trained_here)
        loaded = BTModel(model, tokenizer, meta, key, trained_here)
        _CACHE[(key, where, stamp)] = loaded
        return loaded


def _load_hf(model_dir: str, where: str, kwargs: Mapping[str, Any], trained_here: bool) -> tuple[Any, Any]:
    try:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        config = AutoConfig.from_pretrained(where, **kwargs)
        arch = list(getattr(config, "architectures", None) or [])
        if not trained_here and arch and not any(a.endswith("ForSequenceClassification") for a in arch):
            raise BTModelError(
                f"{model_dir}: a {arch[0]} checkpoint is not a sequence-classification reward model (its reward "
                f"head would be random); give {_MAKES}"
            )
        device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            where, dtype="auto" if device == "cuda" else torch.float32, output_loading_info=True, **kwargs
        )
    except BTModelError:
        raise
    except Exception as exc:  # OSError, ValueError, safetensors errors...: all mean "unusable"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BTModelError(f"{model_dir}: cannot load the BT model ({reason})") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise BTModelError(
            f"{model_dir}: the checkpoint lacks {len(missing)} weight(s) of the model (first: {missing[0]}); "
            "a reward model with randomly initialised weights would score noise"
        )
    if getattr(model.config, "num_labels", 1) != 1:
        raise BTModelError(f"{model_dir}: a BT model has one output; this one has {model.config.num_labels}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise BTModelError(f"{model_dir}: the tokenizer has no pad, end-of-sequence or unknown token to pad with")
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # HF's own pooling needs it for batches
    model.to(device)
    model.eval()
    return model, tokenizer


def _as_messages(prompt: Any) -> list[dict[str, Any]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def _encode(
    tokenizer: Any, prompt: Any, response: str, max_length: int, input_format: str
) -> tuple[list[int], list[int] | None, bool]:
    """Token ids and token type ids (text pairs only; else None), cut to ``max_length``, and whether they were."""
    from datarl.models.generate import prompt_text, text_ids

    types = None
    if input_format == "chat_template":
        text = tokenizer.apply_chat_template(
            _as_messages(prompt) + [{"role": "assistant", "content": response}], tokenize=False
        )
        ids = text_ids(tokenizer, text)
    elif input_format == "text_pair":  # the tokenizer's separators and segment ids, as the model was trained
        enc = tokenizer(prompt_text(tokenizer, prompt), response, verbose=False)
        ids = list(enc["input_ids"])
        types = list(enc["token_type_ids"])[:max_length] if "token_type_ids" in enc else None
    else:
        ids = text_ids(tokenizer, prompt_text(tokenizer, prompt)) + text_ids(tokenizer, response)
    if not ids:
        return [tokenizer.pad_token_id], None, False
    return ids[:max_length], types, len(ids) > max_length


def encode_texts(
    tokenizer: Any, prompt: Any, response: str, max_length: int, input_format: str = "prompt_text"
) -> list[int]:
    """Token ids of ``prompt`` and ``response`` in ``input_format`` (default: the chat-formatted prompt
    followed by the response, as ``datarl train-bt`` trains), cut to ``max_length``."""
    return _encode(tokenizer, prompt, response, max_length, input_format)[0]


def _pools_last_token(model: Any) -> bool:
    import torch

    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return body is not None and isinstance(getattr(model, "score", None), torch.nn.Linear)


def raw_rewards(
    model: Any, rows: Sequence[Sequence[int]], pad_id: int, token_types: Sequence[Sequence[int] | None] | None = None
) -> Any:
    """Raw rewards (a float tensor, one per row, with grad if enabled) read at each row's last token (or where
    the model pools). ``token_types``: per row, token type ids for models with segments (text pairs)."""
    import torch

    own = _pools_last_token(model)
    width = max(len(r) for r in rows)
    device = next(model.parameters()).device
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for i, row in enumerate(rows):  # left padding (the last token of every row is at the end), or right
        span = slice(width - len(row), width) if own else slice(0, len(row))
        ids[i, span] = torch.tensor(list(row))
        mask[i, span] = 1
        if token_types is not None and token_types[i] is not None:
            types[i, span] = torch.tensor(list(token_types[i] or ()))
    ids, mask = ids.to(device), mask.to(device)
    if own:
        # Pool ourselves: HF pools at the last non-pad id, which breaks when pad == eos.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        body = getattr(model, model.base_model_prefix)
        hidden = body(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        return model.score(hidden[:, -1]).squeeze(-1).float()
    # Encoders pool their first token, other heads their own way: right padding, as they were trained.
    extra = {"token_type_ids": types.to(device)} if token_types is not None and any(token_types) else {}
    return model(input_ids=ids, attention_mask=mask, **extra).logits[:, 0].float()


def _batched_raw(
    bt: BTModel, prompts: Sequence[Any], responses: Sequence[str], batch_size: int
) -> tuple[list[float | Exception], list[bool]]:
    """Raw rewards (or the exception that made a row unencodable, e.g. a chat template refusing its roles)
    and whether each row was cut."""
    import torch

    rows: list[tuple[list[int], list[int] | None] | None] = []
    cut: list[bool] = []
    out: list[float | Exception] = [0.0] * len(prompts)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        try:
            ids, types, was_cut = _encode(bt.tokenizer, p, str(r), bt.max_length, bt.input_format)
            rows.append((ids, types))
        except Exception as exc:  # the model's own template on an unusual conversation
            out[i], was_cut = exc, False
            rows.append(None)
        cut.append(was_cut)
    good = [i for i, row in enumerate(rows) if row is not None]
    order = sorted(good, key=lambda i: len((rows[i] or ((),))[0]))  # similar lengths share a batch
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = [rows[i] or ([], None) for i in order[start : start + batch_size]]
            values = raw_rewards(bt.model, [c[0] for c in chunk], bt.tokenizer.pad_token_id, [c[1] for c in chunk])
            for i, v in zip(order[start : start + batch_size], values.tolist()):
                out[i] = float(v)
    return out, cut


def bt_scores(model_dir: str, prompts: Sequence[Any], responses: Sequence[str], batch_size: int = 16) -> list[float]:
    """Raw rewards of ``responses`` to ``prompts`` (same length), batched; raises ``BTModelError``."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    bt = load_bt(model_dir)
    raws = _batched_raw(bt, prompts, responses, batch_size)[0] if prompts else []
    for i, raw in enumerate(raws):
        if isinstance(raw, Exception):
            raise BTModelError(f"{model_dir}: cannot encode item {i} with the model's {bt.input_format}: {raw}")
    return [float(r) for r in raws]  # type: ignore[arg-type]


def fit_mapping(raws: Sequence[float]) -> tuple[float, float]:
    """``(shift, scale)``: the mean and the (n-1) standard deviation of the finite ``raws``; scale 1.0 when
    they do not vary (or there are fewer than two), shift 0.0 when there are none."""
    finite = [float(x) for x in raws if math.isfinite(x)]
    if not finite:
        return 0.0, 1.0
    shift = sum(finite) / len(finite)
    scale = math.sqrt(sum((x - shift) ** 2 for x in finite) / max(1, len(finite) - 1))
    return shift, scale if scale > 1e-12 * max(1.0, abs(shift)) else 1.0


def logistic(raw: float, shift: float, scale: float) -> float:
    z = (raw - shift) / scale
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _option_problem(mapping: Any, shift: Any, scale: Any) -> str | None:
    if mapping not in MAPPINGS:
        return f"bt: mapping must be one of {', '.join(MAPPINGS)} (got {mapping!r})"
    for name, value in (("shift", shift), ("scale", scale)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"bt: {name} must be a finite number (got {value!r})"
    if scale is not None and not scale > 0:
        return f"bt: scale must be > 0 (got {scale!r})"
    if mapping == "none" and (shift is not None or scale is not None):
        return "bt: shift and scale belong to the logistic mapping; remove them, or drop mapping: none"
    return None


def mapping_problem(options: Mapping[str, Any]) -> str | None:
    """Why a ``bt`` source with router ``options`` cannot give a stable reward to callers that score a batch at
    a time (PPO, ``datarl serve``): its mapping would be fitted afresh on every batch. None when the model's
    ``datarl_bt.json``, the options (``shift`` and ``scale``) or ``mapping: none`` fix it."""
    if options.get("mapping", "logistic") == "none":
        return None
    if options.get("shift") is not None and options.get("scale") is not None:
        return None
    model = options.get("model")
    if not isinstance(model, str):
        return None  # no model at all is reported by the router's preflight
    if os.path.isdir(model):
        if os.path.isfile(os.path.join(model, META_FILE)):
            return None
    else:
        from datarl.models.loading import hub_cached_file

        if hub_cached_file(model) is None:
            return None  # not made yet (a pipeline's bt stage) or missing (reported by the preflight)
    return (
        f"sources.bt: {model} has no stored mapping (no {META_FILE}), so its logistic would be fitted on every "
        "batch and the same response would earn different rewards; set sources.bt.shift and sources.bt.scale "
        "(`datarl score` on typical responses prints the fitted ones in reward_info), or mapping: none"
    )


def score_bt(
    record: Mapping[str, Any],
    response: str,
    *,
    model: str,
    scale: float | None = None,
    shift: float | None = None,
    mapping: str = "logistic",
) -> RewardResult:
    """Reward of ``response``: ``logistic((raw - shift) / scale)`` or raw (see the module docstring). Never
    raises. Alone, a fitted mapping has one response to fit on: it scores 0.5 (give ``shift``/``scale``)."""
    return score_bt_batch([record], [response], model=model, scale=scale, shift=shift, mapping=mapping, batch_size=1)[0]


def score_bt_batch(
    records: Sequence[Mapping[str, Any]],
    responses: Sequence[str],
    *,
    model: str,
    scale: float | None = None,
    shift: float | None = None,
    mapping: str = "logistic",
    batch_size: int = 32,
) -> list[RewardResult]:
    """``score_bt`` for many records at once (batched forward passes; a fitted mapping is fitted on all of
    them); never raises."""
    info: dict[str, Any] = {"bt_model": model, "mapping": mapping}
    problem = _option_problem(mapping, shift, scale)
    if problem is not None:
        bad = dict(info, shift=shift, scale=scale, failure="bad_option", error=problem)
        return [RewardResult(0.0, SOURCE, dict(bad)) for _ in records]
    try:
        bt = load_bt(model)
    except BTModelError as exc:
        return [RewardResult(0.0, SOURCE, dict(info, failure="model_unavailable", error=str(exc))) for _ in records]
    info["bt_input"] = bt.input_format
    out: list[RewardResult | None] = [None] * len(records)
    todo = []
    for i, record in enumerate(records):
        prompt = record.get("prompt") if isinstance(record, Mapping) else None
        if not prompt:
            out[i] = RewardResult(0.0, SOURCE, dict(info, failure="no_prompt", error="record has no prompt"))
        else:
            todo.append(i)
    try:
        raws, cut = _batched_raw(
            bt,
            [records[i]["prompt"] for i in todo],
            [r if isinstance(r, str) else str(r) for r in (responses[i] for i in todo)],
            batch_size,
        )
    except Exception as exc:  # the contract: a source never raises on model output
        err = dict(info, failure="internal_error", error=f"{type(exc).__name__}: {exc}")
        return [r if r is not None else RewardResult(0.0, SOURCE, dict(err)) for r in out]
    finite = [float(r) for r in raws if not isinstance(r, Exception) and math.isfinite(r)]
    if mapping == "logistic":
        info.update(_resolve(bt, shift, scale, finite))
    for i, raw, was_cut in zip(todo, raws, cut):
        row = dict(info, truncated=True) if was_cut else dict(info)
        if isinstance(raw, Exception):
            error = f"cannot encode the conversation with the model's {bt.input_format}: {type(raw).__name__}: {raw}"
            out[i] = RewardResult(0.0, SOURCE, dict(row, raw=None, failure="internal_error", error=error))
        elif not math.isfinite(raw):
            out[i] = RewardResult(0.0, SOURCE, dict(row, raw=None, failure="internal_error", error="non-finite raw"))
        elif mapping == "none":
            out[i] = RewardResult(raw, SOURCE, dict(row, raw=raw))
        else:
            out[i] = RewardResult(logistic(raw, info["shift"], info["scale"]), SOURCE, dict(row, raw=raw))
    return [r for r in out if r is not None]


def _resolve(bt: BTModel, shift: float | None, scale: float | None, raws: Sequence[float]) -> dict[str, Any]:
    """``shift``, ``scale``, ``mapping_from`` (and ``fitted_on``): the options first, then the stored mapping,
    then a fit on ``raws``."""
    values: dict[str, float] = {}
    origin: dict[str, str] = {}
    stored = bt.stored_mapping
    for name, given in (("shift", shift), ("scale", scale)):
        if given is not None:
            values[name], origin[name] = float(given), "options"
        elif name in stored:
            values[name], origin[name] = stored[name], META_FILE
    out: dict[str, Any] = {}
    if len(values) < 2:
        fitted = dict(zip(("shift", "scale"), fit_mapping(raws)))
        for name in ("shift", "scale"):
            if name not in values:
                values[name], origin[name] = fitted[name], "fit"
        out["fitted_on"] = len(raws)
    return {"shift": values["shift"], "scale": values["scale"], "mapping_from": origin, **out}


def refit_state(result: RewardResult) -> dict[str, Any] | None:
    """What :func:`refit` needs of a result whose mapping was fitted (to keep it, e.g. in a scores file), or
    None for any other result."""
    info = result.info
    if result.source != SOURCE or result.failure is not None or "fitted_on" not in info or info.get("raw") is None:
        return None
    return {k: info[k] for k in _REFIT_KEYS if k in info}


def refit(results: Sequence[RewardResult]) -> list[RewardResult]:
    """``results`` with every ``bt`` score whose mapping was fitted per call mapped again with one fit over all
    of them (per model and options): a job scored in parts gets the mapping it would have got in one call.
    Other results are returned unchanged."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, result in enumerate(results):
        state = refit_state(result)
        if state is not None:
            fixed = {k: state[k] for k in ("shift", "scale") if state["mapping_from"].get(k) != "fit"}
            groups[json.dumps([state["bt_model"], fixed], sort_keys=True)].append(i)
    out = list(results)
    for idx in groups.values():
        raws = [float(results[i].info["raw"]) for i in idx]
        fitted = dict(zip(("shift", "scale"), fit_mapping(raws)))
        for i, raw in zip(idx, raws):
            info = dict(results[i].info)
            for name in ("shift", "scale"):
                if info["mapping_from"].get(name) == "fit":
                    info[name] = fitted[name]
            info["fitted_on"] = len(raws)
            out[i] = RewardResult(logistic(raw, info["shift"], info["scale"]), results[i].source, info)
    return out
