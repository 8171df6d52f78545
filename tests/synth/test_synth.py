"""The synthetic suite: valid files, gold-passing references, determinism, splits, rubric, demos."""

from __future__ import annotations

import json
import os
import random
from collections import Counter

import pytest

from datarl.records import load_records
from datarl.synth import (
    PASS_THRESHOLD,
    REFERENCE_THRESHOLD,
    SynthConfig,
    build_suite,
    code_tasks,
    demonstration,
    gold_check,
    rubric,
    sft_examples,
    sft_records,
    write_suite,
)
from datarl.synth.demos import wrong_response

SMALL = SynthConfig(seed=7, train_per_task=40, pool_per_task=20, eval_per_task=20)


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_suite(SMALL, str(tmp_path_factory.mktemp("synth")))


def _read(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_files_load_and_every_reference_passes_gold(small_suite: dict[str, str]) -> None:
    failures: list[str] = []
    per_task: Counter[str] = Counter()
    for split in ("train", "pool", "eval"):
        loaded = load_records(small_suite[split])
        assert loaded.errors == [], loaded.errors[:3]
        n = getattr(SMALL, f"{split}_per_task")
        assert len(loaded.records) == (3 + 7 if split == "eval" else 4) * n  # eval: 7x math by default
        for record in loaded.records:
            assert record.response is None and record.reference
            result = gold_check(record, record.reference)
            per_task[record.task] += 1
            threshold = REFERENCE_THRESHOLD if record.task == "general" else 1.0
            if result.score < threshold:
                failures.append(f"{split} {record.id} {record.task}: {result.score} {result.info}")
    assert failures == []
    assert set(per_task) == {"math", "code", "ifeval", "general"}


def test_manifest_counts(small_suite: dict[str, str]) -> None:
    with open(small_suite["manifest"], encoding="utf-8") as fh:
        manifest = json.load(fh)
    assert manifest["config"]["seed"] == 7
    for split in ("train", "pool", "eval"):
        counts = manifest["counts"][split]
        assert counts["total"] == len(_read(small_suite[split]))
        assert sum(counts["difficulty"].values()) == counts["total"]
        assert set(counts["task"]) == {"math", "code", "ifeval", "general"}


def test_same_seed_same_bytes(tmp_path: pytest.TempPathFactory) -> None:
    cfg = SynthConfig(seed=3, train_per_task=15, pool_per_task=8, eval_per_task=8)
    a = write_suite(cfg, os.path.join(str(tmp_path), "a"))
    b = write_suite(cfg, os.path.join(str(tmp_path), "b"))
    c = write_suite(
        SynthConfig(seed=4, train_per_task=15, pool_per_task=8, eval_per_task=8), os.path.join(str(tmp_path), "c")
    )
    for name in ("train", "pool", "eval", "manifest"):
        with open(a[name], "rb") as fa, open(b[name], "rb") as fb:
            assert fa.read() == fb.read(), name
    with open(a["train"], "rb") as fa, open(c["train"], "rb") as fc:
        assert fa.read() != fc.read()


def test_one_task_count_leaves_other_tasks_unchanged() -> None:
    base = build_suite(SynthConfig(seed=1, train_per_task=10, pool_per_task=0, eval_per_task=0, tasks=("math", "code")))
    only = build_suite(SynthConfig(seed=1, train_per_task=10, pool_per_task=0, eval_per_task=0, tasks=("math",)))

    def strip(rs):
        return sorted(
            json.dumps({k: v for k, v in r.items() if k != "id"}, sort_keys=True) for r in rs if r["task"] == "math"
        )

    assert strip(base["train"]) == strip(only["train"])


def test_eval_prompts_never_in_train_or_pool_default_config() -> None:
    suite = build_suite(SynthConfig())
    seen = {r["prompt"] for r in suite["train"]} | {r["prompt"] for r in suite["pool"]}
    eval_prompts = [r["prompt"] for r in suite["eval"]]
    assert not seen & set(eval_prompts)
    assert len(set(eval_prompts)) == len(eval_prompts)
    # every code domain is represented in eval (prompt spaces are wide enough)
    assert {r["domain"] for r in suite["eval"] if r["task"] == "code"} == {
        "code.string",
        "code.list",
        "code.arith",
        "code.cond",
    }


def test_pool_has_duplicates_and_is_harder() -> None:
    suite = build_suite(SynthConfig())
    train_prompts = {r["prompt"] for r in suite["train"]}
    dups = sum(r["prompt"] in train_prompts for r in suite["pool"])
    assert dups >= 0.15 * len(suite["pool"])

    def share(rs, difficulty):
        return sum(r["difficulty"] == difficulty for r in rs) / len(rs)

    def hard(rs):
        return share(rs, 3)

    def easy(rs):
        return share(rs, 1)

    assert hard(suite["pool"]) > hard(suite["train"]) and easy(suite["pool"]) > 0.3
    assert len({r["id"] for r in suite["pool"]}) == len(suite["pool"])


def test_records_do_not_carry_the_hidden_rubric() -> None:
    suite = build_suite(SMALL)
    allowed = {
        "id",
        "task",
        "domain",
        "difficulty",
        "prompt",
        "ground_truth",
        "tests",
        "instruction_id_list",
        "kwargs",
        "reference",
    }
    for records in suite.values():
        for record in records:
            assert set(record) <= allowed
            assert "response" not in record


@pytest.mark.parametrize(
    "bad",
    [
        {"seed": "1"},
        {"train_per_task": -1},
        {"eval_per_task": 1.5},
        {"tasks": ()},
        {"tasks": ("math", "poetry")},
        {"tasks": ("math", "math")},
        {"difficulty_weights": (1, 1)},
        {"difficulty_weights": (0, 0, 0)},
        {"pool_difficulty_weights": (1, -1, 1)},
        {"pool_duplicate_fraction": 1.0},
        {"train_per_task": 0, "pool_duplicate_fraction": 0.5},
        {"eval_by_task": {"poetry": 3}},
        {"eval_by_task": {"math": -1}},
        {"eval_by_task": {"math": 2.5}},
        {"eval_by_task": [("math", 3)]},
    ],
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        SynthConfig(**bad)


# --- the hidden rubric ------------------------------------------------------------

DOG = {"task": "general", "prompt": "Describe a dog."}
GOOD = "A dog is loyal and playful. It has a long tail and soft fur. It loves walks with its owner on a leash."


def test_rubric_on_topic_beats_off_topic() -> None:
    off = "The ocean is deep and blue. It has waves and salt water. Fish swim near the shore with the boats."
    assert rubric.gold_score(DOG, GOOD) >= REFERENCE_THRESHOLD
    assert rubric.gold_score(DOG, off) < 0.1


def test_rubric_penalises_repetition() -> None:
    looped = "A dog is loyal and playful. " * 5
    repeated_words = "A dog has fur, fur, fur and a tail, tail, tail. The owner loves the fur and the tail."
    assert rubric.gold_score(DOG, looped) < PASS_THRESHOLD / 2
    assert rubric.gold_score(DOG, repeated_words) < rubric.gold_score(DOG, GOOD)


def test_rubric_penalises_bad_length() -> None:
    short = "A dog is loyal."
    long = GOOD + " " + " ".join(f"Day {i} was a good day for a walk." for i in range(12))
    assert rubric.gold_score(DOG, short) < 0.1
    assert rubric.gold_score(DOG, long) < rubric.gold_score(DOG, GOOD) / 2


def test_rubric_penalises_keyword_stuffing_and_needs_both_topics() -> None:
    stuffed = "tail bark paws fur leash bone walks owner collar puppy loyal friendly playful smart furry happy"
    assert rubric.gold_score(DOG, stuffed) < PASS_THRESHOLD
    compare = {"task": "general", "prompt": "Compare a dog and the ocean."}
    assert rubric.gold_score(compare, GOOD) < PASS_THRESHOLD  # says nothing about the ocean
    both = (
        "A dog is loyal and playful. It has soft fur and a tail. The ocean is deep and blue. "
        "It has waves and salt. Both are worth a visit."
    )
    assert rubric.gold_score(compare, both) >= PASS_THRESHOLD
    for junk in ("", None, 3):
        assert rubric.gold_score(DOG, junk) == 0.0  # type: ignore[arg-type]


def test_gold_check_general_shape() -> None:
    result = gold_check(DOG, GOOD)
    assert result.source == "gold.rubric" and result.info["gold_pass"]
    assert 0.0 <= result.score <= 1.0


# --- demonstrations ----------------------------------------------------------------


def test_demonstrations_quality_zero_fails_and_one_passes() -> None:
    records = build_suite(SynthConfig(seed=11, train_per_task=0, pool_per_task=0, eval_per_task=15))["eval"]
    rng = random.Random(0)
    passed_bad: Counter[str] = Counter()
    for record in records:
        assert demonstration(record, rng, 1.0) == record["reference"]
        bad = demonstration(record, rng, 0.0)
        assert bad != record["reference"]
        if gold_check(record, bad).info["gold_pass"]:
            passed_bad[record["task"]] += 1
    assert sum(passed_bad.values()) <= 0.05 * len(records), passed_bad


def test_code_mutations_are_real_bugs_for_every_template() -> None:
    rng = random.Random(5)
    fallbacks = 0
    for template in code_tasks.TEMPLATES:
        for _ in range(5):
            record = code_tasks.from_template(template, rng)
            bad = wrong_response(record, rng)
            code = bad.split("```python\n", 1)[1].rsplit("```", 1)[0]
            assert not code_tasks.run_tests_in_process(code, record["tests"]["code"])
            fallbacks += "return None" in bad
    assert fallbacks == 0


def test_sft_examples_mix() -> None:
    records = build_suite(SynthConfig(seed=2, train_per_task=50, pool_per_task=0, eval_per_task=0))["train"]
    examples = sft_examples(records, random.Random(0), 0.6)
    assert len(examples) == len(records)
    assert all(set(e) >= {"prompt", "response"} and e["response"] for e in examples)
    share = sum(e["is_reference"] for e in examples) / len(examples)
    assert 0.45 < share < 0.75
    with pytest.raises(ValueError):
        demonstration(records[0], random.Random(0), 1.5)


def test_prompts_and_responses_are_short() -> None:
    suite = build_suite(SMALL)
    for record in [r for split in suite.values() for r in split]:
        assert len(record["prompt"].split()) <= 42, record["prompt"]
        assert len(record["reference"].split()) <= 60, record["reference"]


def test_eval_counts_by_task() -> None:
    default = SynthConfig(train_per_task=0, pool_per_task=0, eval_per_task=4)
    assert {t: default.eval_count(t) for t in default.tasks} == {"math": 28, "code": 4, "ifeval": 4, "general": 4}
    tasks = Counter(r["task"] for r in build_suite(default)["eval"])
    assert tasks == {"math": 28, "code": 4, "ifeval": 4, "general": 4}
    even = SynthConfig(train_per_task=0, pool_per_task=0, eval_per_task=4, eval_by_task={})
    assert Counter(r["task"] for r in build_suite(even)["eval"]) == {t: 4 for t in even.tasks}
    # another task's count changes none of math's records (each (split, task) has its own stream)
    more_code = SynthConfig(train_per_task=0, pool_per_task=0, eval_per_task=4, eval_by_task={"code": 9, "math": 28})
    math = [r["prompt"] for r in build_suite(more_code)["eval"] if r["task"] == "math"]
    assert sorted(math) == sorted(r["prompt"] for r in build_suite(default)["eval"] if r["task"] == "math")


def test_sft_prompts_are_never_eval_prompts_and_avoid_train_and_pool() -> None:
    cfg = SynthConfig(seed=5, train_per_task=60, pool_per_task=20, eval_per_task=20)
    suite = build_suite(cfg)
    sft = sft_records(cfg, suite)
    assert Counter(r["task"] for r in sft) == {t: 60 for t in cfg.tasks}
    prompts = [r["prompt"] for r in sft]
    assert len(set(prompts)) == len(prompts)
    assert not set(prompts) & {r["prompt"] for r in suite["eval"]}
    seen = {r["prompt"] for split in ("train", "pool") for r in suite[split]}
    repeats = Counter(r["task"] for r in sft if r["prompt"] in seen)
    assert set(repeats) <= {"general"}  # only general's small prompt space forces a repeat
    assert sft == sft_records(cfg, build_suite(cfg))  # seeded
    for record in sft:
        threshold = REFERENCE_THRESHOLD if record["task"] == "general" else 1.0
        assert gold_check(record, record["reference"]).score >= threshold
