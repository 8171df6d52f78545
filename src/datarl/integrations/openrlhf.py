"""OpenRLHF's remote reward protocol: labels, responses and replies (no I/O; used by ``datarl serve``
and by the ``reward_func`` file hook in :mod:`datarl.integrations.openrlhf_reward`).

Protocol (OpenRLHF ``--reward.remote_url http://HOST:PORT/TOKEN/get_reward``; any POST path is accepted,
after the token when the server has one: see :mod:`datarl.server_auth`)::

    request  {"query": [str], "prompts": [str], "labels": [str]}          one entry per sample
    reply    {"rewards": [float], "scores": [float],
              "extra_logs": {"error": [0.0|1.0], "failure": [0.0|1.0]},
              "reward_source": [str], "failure": [str|null], "error": [str|null], "reward_info": [obj],
              "request_error": str|null}

- ``query`` is prompt + response as OpenRLHF sends it (the decoded token ids, special tokens kept). The
  response is the query with the ``prompts`` text removed from the front (or, if a tokenizer round trip
  changed the front, everything after the prompt's first occurrence; if the prompt is not found, the
  whole query, with ``reward_info.response_from = "whole_query"``), then end-of-sequence markers such as
  ``<|im_end|>`` or ``</s>`` stripped from its end (``strip_pattern``; ``datarl serve --strip-pattern``).
- A label routes its sample: a JSON object string of the datarl record (``task`` and the fields its
  verifier needs: ``ground_truth``, ``tests``, ``instruction_id_list``/``kwargs``, ...; see
  :func:`make_label`); a dict is accepted too. Any other string is a math ground truth (OpenRLHF's math
  recipes use the answer as the label). A record without ``prompt`` gets the ``prompts`` text. A label
  nested more than ``MAX_LABEL_DEPTH`` levels is a ``bad_label`` (it would break the batch it is scored in).
- The reply is always HTTP 200 (OpenRLHF turns a non-200 into a ``None`` reward after retrying), except
  where the request never reaches the protocol: 401 without the server's token, 400 for oversized headers,
  503 past the connection cap (:mod:`datarl.server_http`). A sample that
  could not be scored (bad label, no source for its task, queue full, internal error) gets reward 0,
  ``extra_logs.error = 1`` and its message in ``error``; ``extra_logs.failure = 1`` whenever
  ``reward_info`` has a failure class (that includes model-output failures such as ``no_answer``).
  ``extra_logs`` holds numbers only because OpenRLHF turns every value into ``torch.tensor([value])``;
  the text lives in the top-level keys, which OpenRLHF ignores. A body that is not a JSON object with a
  ``query`` list (not JSON, nested too deeply, too large, too slow to arrive) gets empty lists and
  ``request_error`` ``bad_request: ...``, or ``shutting_down: ...`` when the server stops while it arrives
  (``null`` otherwise).

Use (OpenRLHF 0.11)::

    write openrlhf_rows(records) as JSONL: [{"input": prompt, "label": make_label(record)}, ...]
    DATARL_SERVE_TOKEN=$TOKEN datarl serve --host 0.0.0.0 --port 5000 [--config run.yaml]   # each reward host
    python -m openrlhf.cli.train_ppo_ray ... --data.input_key input --data.label_key label \
        --data.apply_chat_template \
        --reward.remote_url http://RM1:5000/$TOKEN/get_reward,http://RM2:5000/$TOKEN/get_reward

OpenRLHF's rollout asks for one sample per request and rotates over the comma-separated URLs (a call
with n samples is cut into ceil(n / URLs) slices); the server batches the samples of concurrent requests.
Its client gives up after 180 s and retries 5 times, so size ``--max-queue`` and replicas to answer well
within that.

Checked against OpenRLHF 0.11.2's own client (``openrlhf.utils.agent.SingleTurnAgentExecutor``) in
``tests/integrations/test_openrlhf.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from datarl.records import RecordError, parse_record
from datarl.rewards.base import SCORING_ERRORS, RewardResult

# End-of-sequence markers (OpenRLHF decodes with skip_special_tokens=False): any <|name|> token (ChatML's
# <|im_end|>, Llama 3's <|eot_id|>, <|endoftext|>, ...) and the plain forms of Llama 2 and Gemma.
DEFAULT_STRIP_PATTERN = r"<\|[\w.\-]{1,40}\|>|</s>|<eos>|<end_of_turn>|<pad>"
# Failure classes that mean "no judgement of the response was made" (flagged as errors).
ERROR_FAILURES = SCORING_ERRORS | {"bad_label", "bad_request", "overloaded", "shutting_down"}
# Record fields a label never needs to carry.
_NOT_IN_LABEL = ("response", "reward", "reward_source", "reward_info", "prompt")
# Deepest nesting of lists and objects a label may have. Real labels (test lists, IFEval kwargs) are 3 or 4
# deep; a label nested hundreds deep would make the whole batch it is scored in fail to reach the workers.
MAX_LABEL_DEPTH = 32


def _nesting_depth(value: Any, limit: int) -> int:
    """Depth of nested lists/dicts in ``value`` (a scalar is 0), level by level without recursion; stops
    counting past ``limit``."""
    depth, level = 0, [value]
    while depth <= limit:
        containers = [v for v in level if isinstance(v, (list, dict))]
        if not containers:
            break
        depth += 1
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return depth


def make_label(record: Mapping[str, Any]) -> str:
    """The OpenRLHF ``label`` of a datarl record: its routing fields as a JSON string (no prompt, response
    or scores; the prompt arrives in ``prompts``). Store it as a string column: Hugging Face datasets would
    turn an object column into one struct with every row's keys, missing ones filled with None."""
    return json.dumps({k: v for k, v in record.items() if k not in _NOT_IN_LABEL}, ensure_ascii=False)


def openrlhf_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Dataset rows for OpenRLHF (``--data.input_key input --data.label_key label``)."""
    return [{"input": r["prompt"], "label": make_label(r)} for r in records]


def parse_label(label: Any, prompt: Any, index: int) -> tuple[dict[str, Any] | None, str | None]:
    """The validated record for one sample, or ``(None, message)``; never raises."""
    if isinstance(label, str) and label.strip().startswith("{"):
        try:
            label = json.loads(label)
        except ValueError as exc:
            return None, f"labels[{index}]: looks like a JSON object but does not parse ({exc})"
        except RecursionError:
            return None, f"labels[{index}]: looks like a JSON object but is nested too deeply to parse"
    if isinstance(label, str):
        if not label.strip():
            return None, (
                f"labels[{index}] is empty; give each prompt a label (OpenRLHF: --data.label_key "
                "with datarl.integrations.openrlhf.make_label values, or the math answer)"
            )
        label = {"task": "math", "ground_truth": label}
    if not isinstance(label, dict):
        return None, f"labels[{index}] must be a JSON object string or a math answer, got {type(label).__name__}"
    if _nesting_depth(label, MAX_LABEL_DEPTH) > MAX_LABEL_DEPTH:
        return None, f"labels[{index}] is nested more than {MAX_LABEL_DEPTH} levels deep; no record needs that"
    obj = dict(label)
    if obj.get("prompt") in (None, ""):
        obj["prompt"] = prompt if isinstance(prompt, str) and prompt.strip() else "(prompt not sent)"
    parsed = parse_record(obj, path="labels", line=index, default_id=f"sample-{index}")
    if isinstance(parsed, RecordError):
        return None, f"labels[{index}]: {parsed.field}: {parsed.message}"
    return parsed.to_dict(), None


def split_response(query: Any, prompt: Any, strip_pattern: str = DEFAULT_STRIP_PATTERN) -> tuple[str, str]:
    """``(response, how)``: the query without its prompt prefix and trailing end-of-sequence markers."""
    query = query if isinstance(query, str) else ""
    prompt = prompt if isinstance(prompt, str) else ""
    if prompt and query.startswith(prompt):
        response, how = query[len(prompt) :], "prefix"
    elif prompt and prompt in query:  # e.g. a BOS token the decoder put in front
        response, how = query[query.index(prompt) + len(prompt) :], "after_prompt"
    else:
        response, how = query, "whole_query"
    if strip_pattern:  # a loop of anchored searches: linear even on long whitespace runs
        marker = re.compile(rf"(?:{strip_pattern})\Z")
        while (m := marker.search(trimmed := response.rstrip())) and m.start() < len(trimmed):
            response = trimmed[: m.start()].rstrip()
    return response, how


def build_reply(results: Sequence[RewardResult], hows: Sequence[str]) -> dict[str, Any]:
    """OpenRLHF's reply shape plus datarl's provenance lists (one entry per sample)."""
    failures = [r.failure for r in results]
    errors = [str(r.info.get("error") or r.failure) if r.failure in ERROR_FAILURES else None for r in results]
    infos = []
    for r, how in zip(results, hows):
        info = dict(r.info)
        if how:
            info["response_from"] = how
        infos.append(info)
    rewards = [float(r.score) for r in results]
    return {
        "rewards": rewards,
        "scores": list(rewards),
        "extra_logs": {"error": [1.0 if e else 0.0 for e in errors], "failure": [1.0 if f else 0.0 for f in failures]},
        "reward_source": [r.source for r in results],
        "failure": failures,
        "error": errors,
        "reward_info": infos,
        "request_error": None,
    }


def request_error_reply(error: str) -> dict[str, Any]:
    """A reply with no samples and ``request_error`` set (a body that could not be taken as a request)."""
    return {**build_reply([], []), "request_error": error}


def bad_request_reply(message: str) -> dict[str, Any]:
    return request_error_reply(f"bad_request: {message}")
