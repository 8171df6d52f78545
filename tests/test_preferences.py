"""Preference pairs: gold labelling, label noise, the reference fallback, and pairs-file validation."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("torch")

import datarl.models.generate as gen_mod  # noqa: E402
from datarl.io import write_records  # noqa: E402
from datarl.models.generate import Generation  # noqa: E402
from datarl.preferences import PairsError, load_pairs, make_pairs, validate_pair  # noqa: E402
from datarl.synth import SynthConfig, build_suite, gold_check, wrong_response  # noqa: E402


@pytest.fixture(scope="module")
def records():
    suite = build_suite(SynthConfig(train_per_task=6, pool_per_task=0, eval_per_task=0, tasks=("math", "general")))
    return suite["train"]


def stub_generate(texts_for):
    """A ``generate`` that returns ``texts_for(record_index, k)`` for each sample (no model)."""

    def fake(policy, prompts, cfg, progress=False):
        return [
            Generation(p, k, texts_for(p, k), [], [], [], True)
            for p in range(len(prompts))
            for k in range(cfg.samples_per_prompt)
        ]

    return fake


def test_pairs_prefer_the_higher_gold_score(monkeypatch, records):
    rng = random.Random(0)
    wrong = [wrong_response(r, rng) for r in records]
    # samples: reference, a wrong answer, the reference again (a duplicate), the empty string
    texts = lambda p, k: [records[p]["reference"], wrong[p], records[p]["reference"], ""][k]  # noqa: E731
    monkeypatch.setattr(gen_mod, "generate", stub_generate(texts))
    pairs = make_pairs(records, policy=None, samples_per_prompt=4, label_noise=0.0)
    assert pairs and len({p["id"] for p in pairs}) == len(pairs)
    for p in pairs:
        rec = next(r for r in records if r["id"] == p["prompt_id"])
        assert p["chosen_gold"] > p["rejected_gold"] and not p["flipped"] and p["origin"] == "policy"
        assert p["chosen_gold"] == gold_check(rec, p["chosen"]).score
        assert p["chosen"] != p["rejected"] and validate_pair(p) == []
        assert p["task"] == rec["task"] and p["domain"] == rec["domain"]
        assert ("ground_truth" in p) == (rec["task"] == "math")
    # 3 distinct samples -> at most 3 pairs per prompt; reference vs duplicate never paired
    assert max(sum(p["prompt_id"] == r["id"] for p in pairs) for r in records) <= 3


def test_label_noise_flips_the_recorded_fraction(monkeypatch, records):
    texts = lambda p, k: records[p % len(records)]["reference"] if k == 0 else f"{k} " * k  # noqa: E731
    monkeypatch.setattr(gen_mod, "generate", stub_generate(texts))
    pairs = make_pairs(records * 10, policy=None, samples_per_prompt=3, label_noise=0.3, seed=1, min_pairs_per_prompt=0)
    flipped = [p for p in pairs if p["flipped"]]
    assert 0.15 < len(flipped) / len(pairs) < 0.45
    assert all(p["chosen_gold"] < p["rejected_gold"] for p in flipped)
    assert all(p["chosen_gold"] >= p["rejected_gold"] for p in pairs if not p["flipped"])


def test_min_gold_gap_keeps_exactly_the_pairs_that_differ_by_more(monkeypatch, records):
    # General answers cut to 100/75/50/25% of the reference's words: graded rubric scores (e.g. 1.0, 0.73, 0.17, 0).
    general = [r for r in records if r["task"] == "general"]

    def cut(p, k):
        words = general[p]["reference"].split()
        return " ".join(words[: max(1, len(words) * (4 - k) // 4)])

    monkeypatch.setattr(gen_mod, "generate", stub_generate(cut))
    golds = [[float(gold_check(r, cut(p, k)).score) for k in range(4)] for p, r in enumerate(general)]
    assert any(0 < abs(g[i] - g[j]) <= 0.2 for g in golds for i in range(4) for j in range(i)), "need a small gap"
    for gap in (0.0, 0.2, 0.5):
        pairs = make_pairs(
            general, None, samples_per_prompt=4, label_noise=0.0, min_gold_gap=gap, min_pairs_per_prompt=0
        )
        for p, g in enumerate(golds):
            want = sorted(
                (max(g[i], g[j]), min(g[i], g[j])) for i in range(4) for j in range(i) if abs(g[i] - g[j]) > gap
            )
            got = sorted((x["chosen_gold"], x["rejected_gold"]) for x in pairs if x["prompt_id"] == general[p]["id"])
            assert got == want, (gap, g)
    widest = make_pairs(
        general, None, samples_per_prompt=4, label_noise=0.0, max_pairs_per_prompt=1, min_pairs_per_prompt=0
    )
    assert [(x["chosen_gold"], x["rejected_gold"]) for x in widest] == [(max(g), min(g)) for g in golds]


def test_reference_fallback_when_samples_do_not_differ(monkeypatch, records):
    monkeypatch.setattr(gen_mod, "generate", stub_generate(lambda p, k: "same answer"))
    pairs = make_pairs(records, policy=None, samples_per_prompt=4, label_noise=0.0)
    assert len(pairs) == len(records) and {p["origin"] for p in pairs} == {"reference"}
    assert all(p["chosen"] == next(r for r in records if r["id"] == p["prompt_id"])["reference"] for p in pairs)
    assert make_pairs(records, policy=None, min_pairs_per_prompt=0) == []


def test_real_micro_policy_end_to_end(records, tmp_path):
    from datarl.models.generate import SamplingConfig
    from datarl.models.tiny import MICRO, build_tiny_policy

    policy = build_tiny_policy([str(r["prompt"]) + " " + r["reference"] for r in records], MICRO)
    pairs = make_pairs(records[:4], policy, samples_per_prompt=2, sampling=SamplingConfig(max_new_tokens=8))
    assert pairs and all(validate_pair(p) == [] for p in pairs)
    path = str(tmp_path / "pairs.jsonl")
    write_records(path, pairs)
    assert load_pairs(path) == pairs


@pytest.mark.parametrize("kwargs", [{"label_noise": 0.5}, {"samples_per_prompt": 0}, {"min_gold_gap": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_pairs([], None, **kwargs)


def test_load_pairs_reports_every_bad_line_with_file_line_and_field(tmp_path):
    good = {"prompt": "Describe a dog.", "chosen": "A dog has fur.", "rejected": "no"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"prompt": "p", "chosen": "x"}),
        json.dumps(dict(good, rejected=good["chosen"])),
        json.dumps(dict(good, task="poetry")),
        json.dumps(dict(good, prompt=[{"role": "user"}])),
        "",
        json.dumps([1, 2]),
        json.dumps(dict(good, chosen=3)),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PairsError) as err:
        load_pairs(str(path))
    msg = str(err.value)
    for expected in [
        ":2: (line): invalid JSON",
        ":3: rejected: missing",
        ":4: rejected: identical to chosen",
        ":5: task: unknown task 'poetry'",
        ":6: prompt: chat messages",
        ":8: (line): expected a JSON",
        ":9: chosen: must be a string",
    ]:
        assert f"{path}{expected}" in msg
    assert f"{path}:1:" not in msg and "7 problem(s)" in msg


def test_load_pairs_defaults_and_empty_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Describe a dog.", "chosen": "A", "rejected": "B"}) + "\n")
    [pair] = load_pairs(str(path))
    assert pair["id"] == "p.jsonl:1" and pair["task"] == "general"
    path.write_text("\n")
    with pytest.raises(PairsError, match="no pairs"):
        load_pairs(str(path))
    with pytest.raises(PairsError, match="no such file"):
        load_pairs(str(tmp_path / "absent.jsonl"))
