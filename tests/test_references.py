"""Best-of-N references: the BT argmax becomes the reference; other tasks pass through untouched."""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("torch")

from datarl.models.bt_train import BTTrainConfig, train_bt  # noqa: E402
from datarl.models.generate import SamplingConfig, generate  # noqa: E402
from datarl.models.tiny import MICRO, build_tiny_policy  # noqa: E402
from datarl.references import build_references  # noqa: E402
from datarl.rewards.bt import BTModelError, bt_scores  # noqa: E402
from datarl.synth import SynthConfig, build_suite  # noqa: E402

SAMPLING = SamplingConfig(max_new_tokens=10, temperature=1.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    suite = build_suite(SynthConfig(train_per_task=4, pool_per_task=0, eval_per_task=0))
    records = suite["train"]
    policy = build_tiny_policy([str(r["prompt"]) + " " + str(r["reference"]) for r in records], MICRO)
    base = str(root / "base")
    policy.model.save_pretrained(base)
    policy.tokenizer.save_pretrained(base)
    general = [r for r in records if r["task"] == "general"]
    pairs = [
        {"id": f"p{i}", "prompt": r["prompt"], "chosen": r["reference"], "rejected": "no no no"}
        for i, r in enumerate(general)
    ]
    bt_dir = str(root / "bt")
    train_bt(pairs, base, bt_dir, BTTrainConfig(steps=3, pairs_per_step=2, eval_fraction=0.0))
    return records, policy, bt_dir


def test_reference_is_the_argmax_of_bt_scores_over_the_samples(setup):
    records, policy, bt_dir = setup
    before = copy.deepcopy(records)
    out = build_references(records, policy, bt_dir, n=4, seed=7, sampling=SAMPLING)
    assert records == before  # inputs are not mutated
    general = [(i, r) for i, r in enumerate(out) if r["task"] == "general"]
    assert len(general) == 4
    samples = generate(
        policy,
        [r["prompt"] for _, r in general],
        SamplingConfig(max_new_tokens=10, temperature=1.0, samples_per_prompt=4, seed=7),
    )
    for j, (i, rec) in enumerate(general):
        info = rec["reference_info"]
        texts = [g.text for g in samples if g.prompt_index == j]
        assert info["n"] == 4 and len(info["bt_scores"]) == 4 and info["bt_model"] == bt_dir
        assert info["chosen_index"] == max(range(4), key=lambda k: (info["bt_scores"][k], -k))
        assert rec["reference"] == texts[info["chosen_index"]]
        assert info["bt_scores"] == pytest.approx(bt_scores(bt_dir, [rec["prompt"]] * 4, texts), abs=1e-4)
        assert info["replaced_existing"] is True and rec["reference"] != records[i]["reference"]


def test_non_general_records_are_untouched(setup):
    records, policy, bt_dir = setup
    out = build_references(records, policy, bt_dir, n=2, sampling=SAMPLING)
    assert [r["id"] for r in out] == [r["id"] for r in records]
    for rec, orig in zip(out, records):
        if orig["task"] != "general":
            assert rec == orig


def test_keep_existing_and_missing_model(setup, tmp_path):
    records, policy, bt_dir = setup
    assert build_references(records, policy, bt_dir, n=2, keep_existing=True, sampling=SAMPLING) == records
    with pytest.raises(BTModelError, match="no such reward model"):
        build_references(records, policy, str(tmp_path / "absent"), n=2)
    with pytest.raises(ValueError):
        build_references(records, policy, bt_dir, n=0)


def test_tasks_chooses_which_records_get_a_best_of_n_reference(setup):
    records, policy, bt_dir = setup
    out = build_references(records, policy, bt_dir, n=2, sampling=SAMPLING, tasks=("general", "math"))
    for rec, orig in zip(out, records):
        if orig["task"] in ("general", "math"):
            assert rec["reference_info"]["n"] == 2 and rec["reference_info"]["replaced_existing"] is True
            assert rec["ground_truth" if orig["task"] == "math" else "id"] == orig.get(
                "ground_truth" if orig["task"] == "math" else "id"
            )  # genrm.gt still reads the ground truth
        else:
            assert rec == orig
