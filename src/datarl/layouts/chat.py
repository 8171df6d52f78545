"""Instruction layouts: IFEval's ``input_data.jsonl`` (``key``, ``prompt``, ``instruction_id_list``, ``kwargs``)
and chat ``messages`` columns (the conversation up to its last user turn is the prompt; a final assistant turn
is the reference a judge compares with)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datarl.layouts.base import Layout, Plan, RowProblem, id_from

__all__ = ["IFEVAL", "MESSAGES"]


def _ifeval(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"task": "ifeval"}
    if row.get("id") is None and row.get("key") is not None:
        out["id"] = row["key"]
    return out  # prompt, instruction_id_list and kwargs are already datarl's field names


IFEVAL = Layout(
    name="ifeval",
    reads="IFEval's input_data.jsonl (google/IFEval): key, prompt, instruction_id_list, kwargs",
    needs="prompt, instruction_id_list",
    fits=lambda columns, sample: {"prompt", "instruction_id_list"} <= columns,
    plan=lambda columns: Plan(
        f"task=ifeval, {id_from(columns, 'key')}prompt, instruction_id_list and kwargs as they are", {"id": "key"}
    ),
    convert=_ifeval,
)


def _messages(row: Mapping[str, Any]) -> dict[str, Any]:
    messages = row.get("messages")
    if messages is None:
        raise RowProblem("messages", "missing; it holds the conversation as [{role, content}, ...]")
    if not isinstance(messages, list) or not messages:
        raise RowProblem("messages", "must be a non-empty list of {role, content} messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("content"), str) or "role" not in msg:
            raise RowProblem("messages", f"message {i} must be an object with a role and a string content")
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        raise RowProblem("messages", "has no user message to answer")
    # role and content only: parquet rows carry every struct field, null where a message has none
    out: dict[str, Any] = {
        "task": "general",
        "prompt": [{"role": m["role"], "content": m["content"]} for m in messages[: last_user + 1]],
    }
    tail = messages[last_user + 1 :]
    if tail and tail[-1].get("role") == "assistant" and tail[-1]["content"].strip():
        out["reference"] = tail[-1]["content"]
    return out


MESSAGES = Layout(
    name="messages",
    reads="chat datasets with a messages column [{role, content}, ...] (SFT and preference sets)",
    needs="messages",
    fits=lambda columns, sample: "messages" in columns,
    plan=lambda columns: Plan(
        "task=general, prompt<-messages (up to the last user turn), reference<-messages (a final assistant turn)",
        {"prompt": "messages", "reference": "messages"},
    ),
    convert=_messages,
)
