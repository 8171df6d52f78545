"""IFEval's input_data.jsonl and chat ``messages`` columns load as they are and score."""

from __future__ import annotations

import pytest

from datarl.records import load_records
from datarl_testing import LAYOUT_DATA, layout_rows, save_micro_policy, score_layout, write_rows

SEA = "the sea is wide and calm tonight.\nsmall waves come in slow and soft."


def _summary(commas: bool) -> str:
    sections = "\n".join(f"*highlighted section part {i}*" for i in (1, 2, 3))
    words = " ".join(f"Raymond{i} ruled Tripoli" for i in range(110))  # 330 words, no loop
    return f"{sections}\n{words}" + (", and a comma" if commas else "")


def test_ifeval_input_data_loads_with_the_key_as_id():
    lines: list[str] = []
    loaded = load_records(str(LAYOUT_DATA / "ifeval_input_data.jsonl"), announce=lines.append)
    assert lines == ["layout ifeval: task=ifeval, id<-key, prompt, instruction_id_list and kwargs as they are"]
    assert [(r.id, r.task) for r in loaded.records] == [("1000", "ifeval"), ("1001", "ifeval")]
    assert loaded.records[0].kwargs == [{}, {"num_highlights": 3}, {"relation": "at least", "num_words": 300}]


@pytest.mark.parametrize("name", ["input_data.jsonl", "ifeval.parquet"])
def test_ifeval_scores_followed_one_broken_zero(tmp_path, name):
    # Parquet (how google/IFEval is published on the Hub) pads every kwargs object with the other
    # instructions' arguments as nulls: they must not count as arguments.
    rows = layout_rows("ifeval_input_data.jsonl")
    responses = [_summary(commas=False), SEA, _summary(commas=True), SEA.capitalize()]
    scored, lines = score_layout(tmp_path, rows + rows, responses, name=name)
    assert lines[0].startswith("layout ifeval:")
    if name.endswith(".parquet"):
        assert scored[1]["kwargs"][0]["num_words"] is None  # padded, and written back as read
    assert [r["reward"] for r in scored] == [1.0, 1.0, 0.0, 0.0]
    assert scored[2]["reward_info"]["follow_instruction_list"] == [False, True, True]


def test_messages_prompt_is_the_chat_up_to_the_last_user_turn():
    loaded = load_records(str(LAYOUT_DATA / "messages.jsonl"))
    assert not loaded.errors and {r.task for r in loaded.records} == {"general"}
    first, second, third = loaded.records
    assert first.prompt == [{"role": "user", "content": "What is the capital of France?"}]
    assert first.reference == "The capital of France is Paris."
    assert [m["role"] for m in second.prompt] == ["system", "user", "assistant", "user"]
    assert second.reference == "The capital of Italy is Rome."
    assert third.reference is None and third.to_dict()["prompt_id"] == "p-3"


def test_messages_rows_without_a_user_turn_are_bad(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "Be brief."}]}, {"messages": "hello"}]
    errors = load_records(write_rows(tmp_path / "chat.jsonl", rows)).errors
    assert [(e.field, e.message) for e in errors] == [
        ("messages", "has no user message to answer"),
        ("messages", "must be a non-empty list of {role, content} messages"),
    ]


def test_messages_score_with_the_judge_against_their_reference(tmp_path):
    rows = layout_rows("messages.jsonl")[:2]
    texts = [m["content"] for row in rows for m in row["messages"]]
    judge = save_micro_policy(texts + ["Which answer is better? Reply A or B."] * 3, tmp_path / "judge")
    responses = [rows[0]["messages"][-1]["content"], rows[1]["messages"][-1]["content"]]
    router = {"sources": {"genrm.bon": {"judge": judge}}}
    scored, lines = score_layout(tmp_path, rows, responses, router=router, mapped=("prompt",))
    assert lines[0].startswith("layout messages: task=general")
    assert [r["reward_source"] for r in scored] == ["genrm.bon", "genrm.bon"]
    # the response is the reference itself: the judge, asked in both orders, averages to parity
    assert [r["reward"] for r in scored] == [pytest.approx(0.5, abs=1e-4)] * 2
    assert scored[1]["messages"] == rows[1]["messages"]
