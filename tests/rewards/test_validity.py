"""Invalid responses (empty, cut off, looping) score 0 from every source before any source sees them."""

from __future__ import annotations

import pytest

from datarl.rewards.router import Router, RouterConfig
from datarl.rewards.validity import invalid_reason

VALIDITY = [
    # (record, response, reason)
    ({}, "", "empty"),
    ({}, "   \n\t ", "empty"),
    ({}, None, "empty"),
    ({"response_finished": False}, "So the total is 4", "truncated"),
    ({"response_finished": True}, "So the total is 4", None),
    ({}, "18 18 18 18 18", "repeated"),
    ({}, "no no no no no no", "repeated"),
    ({}, "The answer is 5. 5. 5. 5. 5. 5. 5. 5.", "repeated"),
    ({}, "First 12 + 5 = 17. Then " + "181818" * 40, "repeated"),  # a GSM8K model output, label wrong
    ({}, "ha ha ha", None),  # three times is not a loop
    ({}, "I said yes yes yes yes to that proposal and then we left the room quietly.", None),
    ({}, "1\n2\n3\n4\n5", None),
    ({}, "x = 1\ny = 2\nprint(x + y)\n", None),
    ({}, "The ocean is wide and blue. It has whales and boats. You can find salt there.", None),
    ({}, "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", None),
]


@pytest.mark.parametrize(("record", "response", "reason"), VALIDITY)
def test_invalid_reason(record: dict, response: object, reason: str | None) -> None:
    assert invalid_reason(record, response) == reason


def test_a_looping_response_earns_no_math_reward_by_its_last_number() -> None:
    record = {"task": "math", "prompt": "9 + 9?", "ground_truth": "18"}
    assert Router().score(record, "The sum is 18").score == 1.0
    looped = Router().score(record, "The sum is " + "18 " * 30)
    assert (looped.score, looped.failure, looped.info["invalid"]) == (0.0, "invalid_response", "repeated")


@pytest.mark.parametrize("response", ["", "   ", "\n\n"])
def test_whitespace_is_invalid_for_every_task(response: str) -> None:
    cfg = RouterConfig.from_mapping({"router": {"general": "gold.rubric"}})
    records = [
        {"task": "math", "ground_truth": "1", "prompt": "p"},
        {"task": "code", "prompt": "p", "tests": {"type": "assert", "code": "assert True"}},
        {"task": "ifeval", "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"task": "general", "prompt": "Describe a dog."},
    ]
    for result in Router(cfg).score_many(records, [response] * len(records)):
        assert (result.score, result.failure) == (0.0, "invalid_response")


def test_invalid_shared_data_responses_are_only_the_labelled_wrong_loops() -> None:
    import json
    from pathlib import Path

    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    flagged = {}
    for name in (
        "math_gsm8k_solutions.jsonl",
        "math_qwen_math_cot.jsonl",
        "ifeval_gpt4_responses.jsonl",
        "code_mbpp_reference.jsonl",
        "math_hardverify_dev.jsonl",
    ):
        for line in (shared / name).read_text().splitlines():
            row = json.loads(line)
            if invalid_reason({}, row.get("response")):
                flagged[row["id"]] = row.get("label")
    assert set(flagged) == {"gsm8k-48-175b_finetuning", "gsm8k-150-6b_finetuning", "gsm8k-150-175b_finetuning"}
    assert not any(flagged.values())  # each is a degenerate loop labelled wrong
