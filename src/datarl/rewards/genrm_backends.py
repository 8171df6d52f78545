"""GenRM judge backends: a local Hugging Face causal LM, and OpenAI-compatible endpoints.

Both return, per judge prompt, P("A") renormalised over the verdict tokens ``A``/``B`` at the
first generated position, or the exception that made the call fail (never a guessed value).

- :class:`HFJudge`: batched forward passes with left padding and explicit position ids; only the
  last position's logits are computed. A judge directory made by ``train_genrm`` carries
  ``datarl_genrm.json`` (verdict token ids, ``gt_format``); the ids are checked against the
  tokenizer. A tokenizer where ``A`` or ``B`` is not exactly one token is an error at load.
- :class:`OpenAIJudge`: ``POST {base_url}/completions`` (``max_tokens=1``, ``logprobs=k``; the judge
  prompt is wrapped as a plain-text user turn) or ``/chat/completions`` (``logprobs: true,
  top_logprobs: k``). Items run concurrently (``batch_size`` threads); each call has a timeout and
  ``retries`` retries with backoff. A response whose top logprobs hold neither verdict token is an error;
  when only one verdict token is listed, the other is given the lowest listed log-prob (an upper bound)
  and ``missing_verdict`` is recorded. Requests carry ``min_tokens: 1``: llama-cpp-python returns no
  logprobs at all when the greedy first token ends the generation (a small judge's end-of-sequence often
  leads), and the verdict read-out needs that position's distribution.

  Endpoints that return no logprobs (many hosted chat APIs): with ``readout: auto`` (default) the verdict
  is then read from the reply's text (:func:`~datarl.rewards.judge.text_verdict`: ``A``/``B``, ``Answer:
  B``...), P("A") is 1 or 0 and the item's ``readout`` is ``text``, a lower-resolution readout than
  ``logprobs`` (both orders still averaged: a score of 0, 0.5 or 1). ``readout: text`` never asks for
  logprobs (for endpoints that refuse the field); ``readout: logprobs`` makes a reply without them an
  error. A reply with neither usable logprobs nor a verdict in its text is an error, never a guess.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from datarl.rewards.judge import GT_FORMAT, VERDICTS, JudgeError, check_gt_verdict, readout, text_verdict

__all__ = ["HFJudge", "OpenAIJudge", "OpenAIJudgeConfig", "build_backend", "verdict_token_ids", "GENRM_META"]

GENRM_META = "datarl_genrm.json"
REPLY_INFO_CHARS = 40  # of a text-read reply, kept in the item's details


def build_backend(spec: str | Mapping[str, Any]) -> Any:
    """A backend from a judge spec (see :mod:`datarl.rewards.genrm`)."""
    if isinstance(spec, str):
        return HFJudge.load(spec)
    if not isinstance(spec, Mapping):
        raise JudgeError(f"judge spec must be a model path or a mapping, got {type(spec).__name__}")
    opts = dict(spec)
    backend = opts.pop("backend", "hf")
    if backend == "openai":
        return OpenAIJudge(OpenAIJudgeConfig(**opts))
    if backend == "hf":
        path = opts.pop("path", None) or opts.pop("model", None)
        if not path:
            raise JudgeError("hf judge spec needs 'path'")
        return HFJudge.load(str(path), **opts)
    raise JudgeError(f"unknown judge backend {backend!r}; use 'hf' or 'openai'")


def verdict_token_ids(tokenizer: Any, verdicts: Sequence[str] = VERDICTS) -> list[int]:
    """The single token id of each verdict; :class:`JudgeError` when one is not a single token."""
    ids = []
    for v in verdicts:
        enc = tokenizer(v, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise JudgeError(
                f"judge tokenizer encodes verdict {v!r} as {len(enc)} tokens {enc}; a GenRM judge "
                "needs single-token verdicts"
            )
        ids.append(int(enc[0]))
    if ids[0] == ids[1]:
        raise JudgeError(f"verdicts {verdicts} map to the same token id {ids[0]}")
    return ids


class HFJudge:
    """A local causal LM judge. ``batch_size``: judge prompts per forward pass."""

    readout = "logits"

    def __init__(
        self,
        policy: Any,
        *,
        batch_size: int = 32,
        gt_format: str = GT_FORMAT,
        verdict_ids: Sequence[int] | None = None,
        calibration: Mapping[str, float] | None = None,
        max_answer_chars: int | None = None,
        gt_verdict: str = "slot",
    ) -> None:
        self.gt_verdict = check_gt_verdict(gt_verdict)  # how genrm.gt asks this judge (what it was trained with)
        self.policy = policy
        self.max_answer_chars = max_answer_chars  # what the judge was trained with (None: the default)
        self.batch_size = int(batch_size)
        self.gt_format = gt_format
        self.calibration = dict(calibration or {})  # source -> decision threshold (see genrm.calibrate)
        found = verdict_token_ids(policy.tokenizer)
        if verdict_ids is not None and list(verdict_ids) != found:
            raise JudgeError(
                f"{policy.name}: {GENRM_META} records verdict token ids {list(verdict_ids)} but the "
                f"tokenizer gives {found}; the checkpoint and its tokenizer do not match"
            )
        self.verdict_ids = found
        self.name = f"hf:{policy.name}"

    @classmethod
    def load(cls, spec: str, **opts: Any) -> HFJudge:
        from datarl.models.loading import PolicyLoadError, load_policy

        try:
            policy = load_policy(spec)
        except PolicyLoadError as exc:
            raise JudgeError(f"cannot load judge: {exc}") from None
        meta_path = os.path.join(spec, GENRM_META)
        if os.path.isdir(spec) and os.path.exists(meta_path):
            with open(meta_path) as fh:
                meta = json.load(fh)
            opts.setdefault("gt_format", meta.get("gt_format", GT_FORMAT))
            opts.setdefault("verdict_ids", meta.get("verdict_token_ids"))
            opts.setdefault("max_answer_chars", (meta.get("config") or {}).get("max_answer_chars"))
            opts.setdefault("gt_verdict", (meta.get("config") or {}).get("gt_verdict", "slot"))
            opts.setdefault(
                "calibration", {src: float(c["threshold"]) for src, c in (meta.get("calibration") or {}).items()}
            )
        return cls(policy, **opts)

    def encode(self, prompts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each judge prompt in the chat template; over-long prompts keep their end."""
        from datarl.models.generate import prompt_text, text_ids

        tok = self.policy.tokenizer
        limit = self.policy.context_length
        out, cut = [], []
        for p in prompts:
            ids = text_ids(tok, prompt_text(tok, p))
            cut.append(len(ids) > limit)
            out.append(ids[-limit:])
        return out, cut

    def verdict_logits(self, batch_ids: Sequence[Sequence[int]]) -> Any:
        """``[n, 2]`` logits of (A, B) at the next position of each sequence (left-padded batch)."""
        return self.next_logits(batch_ids)[:, self.verdict_ids]

    def next_logits(self, batch_ids: Sequence[Sequence[int]]) -> Any:
        """``[n, vocab]`` next-token logits after each sequence (left-padded batch; grads flow)."""
        import torch

        pad = self.policy.tokenizer.pad_token_id
        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(batch_ids):
            input_ids[row, width - len(ids) :] = torch.tensor(list(ids))
            mask[row, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.policy.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1
        )
        return out.logits[:, -1, :]

    def verdict_probs(self, prompts: Sequence[str]) -> list[tuple[float | Exception, dict[str, Any]]]:
        import torch

        encoded, cut = self.encode(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # similar lengths pad less
        probs: list[float] = [math.nan] * len(prompts)
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                logits = self.verdict_logits([encoded[i] for i in idx]).float()
                p_a = torch.softmax(logits, dim=-1)[:, 0]
                for i, p in zip(idx, p_a.tolist()):
                    probs[i] = p
        return [(p, {"truncated": True} if c else {}) for p, c in zip(probs, cut)]


@dataclass(frozen=True)
class OpenAIJudgeConfig:
    """An OpenAI-compatible judge endpoint.

    base_url: e.g. ``http://127.0.0.1:8000/v1``.
    model: the served model name.
    api: ``completions`` (plain prompt, ``logprobs=k``) or ``chat`` (``logprobs: true, top_logprobs: k``).
    timeout_s: per-request timeout in seconds.
    retries: extra attempts after a failed request (timeouts, connection errors, HTTP 5xx/429, bad bodies).
    batch_size: concurrent requests.
    top_logprobs: alternatives requested at the verdict position (OpenAI caps chat at 20).
    backoff_s: sleep before retry k is ``backoff_s * 2**k``.
    api_key: sent as a bearer token when set (else ``$OPENAI_API_KEY`` if present).
    readout: ``auto`` (the verdict token's logprobs; the reply's text where the endpoint returns none),
        ``logprobs`` (a reply without them is an error) or ``text`` (never ask for logprobs: for endpoints
        that refuse them). A text verdict is 0 or 1 per order, flagged ``readout: text`` in ``reward_info``.
    max_tokens: tokens the judge may generate. The logprobs readout looks at the first only; raise it (e.g. 8)
        for a model that returns no logprobs and wraps its verdict (``**A**``, ``Answer: A``).
    min_tokens: sent as ``min_tokens`` (vLLM, SGLang, llama-cpp-python): the first token is never end-of-sequence,
        else llama-cpp-python answers an end-of-sequence first token with empty logprobs. It only masks that token:
        P("A") is renormalised over A/B, so it is unchanged. 0 leaves the field out (endpoints that refuse it).
    gt_format: how ``genrm.gt`` writes the ground truth in its slot.
    gt_verdict: how ``genrm.gt`` asks the judge: ``slot`` (which slot is better) or ``match`` (does the answer
        reach the reference's result; ``datarl.rewards.genrm.MATCH_TEMPLATE``).
    """

    base_url: str
    model: str
    api: str = "completions"
    timeout_s: float = 30.0
    retries: int = 2
    batch_size: int = 8
    top_logprobs: int = 20
    backoff_s: float = 0.5
    api_key: str | None = None
    min_tokens: int = 1
    gt_format: str = GT_FORMAT
    gt_verdict: str = "slot"
    readout: str = "auto"
    max_tokens: int = 1

    def __post_init__(self) -> None:
        if self.api not in ("completions", "chat"):
            raise JudgeError(f"api must be 'completions' or 'chat', got {self.api!r}")
        if self.readout not in ("auto", "logprobs", "text"):
            raise JudgeError(f"readout must be 'auto', 'logprobs' or 'text', got {self.readout!r}")
        if self.max_tokens < 1:
            raise JudgeError(f"max_tokens must be >= 1, got {self.max_tokens}")
        check_gt_verdict(self.gt_verdict)
        if self.timeout_s <= 0 or self.retries < 0 or self.batch_size < 1 or self.top_logprobs < 2:
            raise JudgeError("timeout_s > 0, retries >= 0, batch_size >= 1 and top_logprobs >= 2 are required")
        if self.min_tokens < 0:
            raise JudgeError(f"min_tokens must be >= 0 (0 leaves it out), got {self.min_tokens}")
        if not str(self.base_url).startswith(("http://", "https://")):
            raise JudgeError(f"base_url must be an http(s) URL, got {self.base_url!r}")


class _Retryable(Exception):
    pass


class _NoLogprobs(Exception):
    """A well-formed reply without usable logprobs (the text may still hold the verdict)."""


class OpenAIJudge:
    """Judges through an OpenAI-compatible endpoint with concurrency, timeouts and retries."""

    readout = "logprobs"

    def __init__(self, cfg: OpenAIJudgeConfig) -> None:
        self.cfg = cfg
        self.gt_format = cfg.gt_format
        self.gt_verdict = cfg.gt_verdict
        self.name = f"openai:{cfg.model}"

    def _body(self, prompt: str) -> tuple[str, dict[str, Any]]:
        path, body = self._request(prompt)
        if self.cfg.min_tokens:
            body["min_tokens"] = self.cfg.min_tokens
        return path, body

    def _request(self, prompt: str) -> tuple[str, dict[str, Any]]:
        c = self.cfg
        want_logprobs = c.readout != "text"
        if c.api == "chat":
            body: dict[str, Any] = {
                "model": c.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": c.max_tokens,
                "temperature": 0.0,
            }
            if want_logprobs:
                body.update(logprobs=True, top_logprobs=c.top_logprobs)
            return "/chat/completions", body
        body = {
            "model": c.model,
            "prompt": f"User: {prompt}\nAssistant:",
            "max_tokens": c.max_tokens,
            "temperature": 0.0,
        }
        if want_logprobs:
            body["logprobs"] = c.top_logprobs
        return "/completions", body

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = self.cfg.api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(
            self.cfg.base_url.rstrip("/") + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            err = f"HTTP {exc.code} from {path}: {detail}"
            if exc.code == 400 and "logprob" in detail.lower() and self.cfg.readout != "text":
                err += " (this endpoint refuses logprobs: set readout: text in the judge spec)"
            raise (_Retryable(err) if exc.code >= 500 or exc.code == 429 else JudgeError(err)) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(
                f"request to {path} failed after {self.cfg.timeout_s:g} s limit: {type(reason).__name__}: {reason}"
            ) from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise _Retryable(f"{path} returned a body that is not JSON: {raw[:120]!r}") from None
        try:
            choice = data["choices"][0]
            if not isinstance(choice, Mapping):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"response has no choices: {str(data)[:160]}") from None
        return choice

    def _top(self, choice: Mapping[str, Any]) -> dict[str, float]:
        """token -> log-prob at the first generated position; :class:`_NoLogprobs` when the reply has none."""
        lp = choice.get("logprobs")
        if not lp or not isinstance(lp, Mapping):
            raise _NoLogprobs(
                "response has no logprobs; the endpoint must support logprobs "
                "(for llama-cpp-python start the server with --logits_all true)"
            )
        if self.cfg.api == "chat":
            content = lp.get("content") or []
            if not content or not content[0].get("top_logprobs"):
                ended = " (the generation ended at once: set min_tokens >= 1)" if not content else ""
                raise _NoLogprobs(f"chat response has no top_logprobs at the first token{ended}")
            return {str(t["token"]): float(t["logprob"]) for t in content[0]["top_logprobs"]}
        tops = lp.get("top_logprobs") or []
        if not tops or not tops[0]:
            ended = " (the generation ended at once: set min_tokens >= 1)" if not lp.get("tokens") else ""
            raise _NoLogprobs(f"completions response has no top_logprobs at the first token{ended}")
        return {str(k): float(v) for k, v in tops[0].items()}

    def _reply(self, choice: Mapping[str, Any]) -> str:
        if self.cfg.api == "chat":
            message = choice.get("message")
            content = message.get("content") if isinstance(message, Mapping) else None
        else:
            content = choice.get("text")
        return content if isinstance(content, str) else ""

    def _read(self, choice: Mapping[str, Any], attempt: int) -> tuple[float | Exception, dict[str, Any]]:
        """P("A") and details from one reply: its logprobs, else (``readout`` auto or text) its text."""
        why = "readout: text asks for no logprobs"
        if self.cfg.readout != "text":
            try:
                return self._prob(self._top(choice), attempt)
            except _NoLogprobs as exc:
                if self.cfg.readout == "logprobs":
                    return JudgeError(str(exc)), {"attempts": attempt + 1} if attempt else {}
                why = str(exc)
        details: dict[str, Any] = {"readout": "text", **({"attempts": attempt + 1} if attempt else {})}
        reply = self._reply(choice)
        details["reply"] = reply[:REPLY_INFO_CHARS]
        verdict = text_verdict(reply)
        if verdict is None:
            hint = " (raise max_tokens if the verdict was cut)" if self.cfg.max_tokens < 8 else ""
            return JudgeError(f"{why}, and the reply {reply[:80]!r} states no verdict A or B{hint}"), details
        return (1.0 if verdict == VERDICTS[0] else 0.0), details

    def _one(self, prompt: str) -> tuple[float | Exception, dict[str, Any]]:
        path, body = self._body(prompt)
        last: Exception | None = None
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            try:
                return self._read(self._post(path, body), attempt)
            except _Retryable as exc:
                last = exc
            except JudgeError as exc:  # a well-formed answer we cannot use: retrying will not help
                return JudgeError(str(exc)), {"attempts": attempt + 1}
        return JudgeError(f"{last} (after {self.cfg.retries + 1} attempts)"), {"attempts": self.cfg.retries + 1}

    @staticmethod
    def _prob(top: Mapping[str, float], attempt: int) -> tuple[float | Exception, dict[str, Any]]:
        best: dict[str, float] = {}
        for token, logprob in top.items():  # " A" and "A" are the same verdict
            key = token.strip()
            if key in VERDICTS:
                best[key] = max(best.get(key, -math.inf), logprob)
        details: dict[str, Any] = {"attempts": attempt + 1} if attempt else {}
        if not best:
            return JudgeError(f"neither verdict token {VERDICTS} is in the top logprobs {sorted(top)[:10]}"), details
        floor = min(top.values())
        for v in VERDICTS:
            if v not in best:
                best[v] = floor
                details["missing_verdict"] = v
        return readout(best["A"], best["B"]), details

    def verdict_probs(self, prompts: Sequence[str]) -> list[tuple[float | Exception, dict[str, Any]]]:
        if len(prompts) == 1 or self.cfg.batch_size == 1:
            return [self._one(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.cfg.batch_size, len(prompts))) as pool:
            return list(pool.map(self._one, prompts))
