"""The per-prompt difficulty state: visit classes, seeding (records' Pre-PPO rewards, a scores file, a run's
difficulty.jsonl), the skip and drop policies, its checkpoint round trip, and the errors before training."""

from __future__ import annotations

import json

import pytest

from datarl.config import build_section
from datarl.errors import ConfigError
from datarl.select.curriculum import CurriculumConfig, CurriculumSampler
from datarl.select.difficulty import DifficultyConfig, DifficultyState, visit_class

VERIFIED = {"math", "code"}


def records(n_math=4, n_general=2, prepo=None):
    rows = [{"id": f"m{i}", "task": "math"} for i in range(n_math)]
    rows += [{"id": f"g{i}", "task": "general"} for i in range(n_general)]
    for pid, rewards in (prepo or {}).items():
        next(r for r in rows if r["id"] == pid)["prepo"] = {"rewards": rewards, "domain": "math"}
    return rows


@pytest.mark.parametrize(
    "rewards, verified, expected",
    [
        ([1.0, 1.0, 1.0], True, "solved"),
        ([0.0, 0.0], True, "failed"),
        ([0.0, 1.0], True, "mixed"),
        ([0.2, 0.5], True, "mixed"),  # partial credit: none passes, but the group has a spread
        ([0.3, 0.3], True, "failed"),
        ([0.7, 0.7], False, "flat"),
        ([0.1, 0.7], False, "mixed"),
        ([1.0, 1.0], False, "flat"),  # no verifier: equal rewards teach nothing, whatever their value
    ],
)
def test_a_visit_is_classed_by_its_groups_rewards(rewards, verified, expected):
    assert visit_class(rewards, verified, 1.0) == expected


def test_seeded_from_the_records_prepo_rewards_then_updated_by_rollouts():
    state = DifficultyState(DifficultyConfig(), records(prepo={"m0": [1, 1, 1, 0], "m1": [0, 0, 0, 0]}), VERIFIED)
    assert state.pass_rate("m0") == 0.75 and state.difficulty("m0") == "normal"
    assert state.difficulty("m1") == "hard" and state.difficulty("m2") == "unseen"
    assert state.seeded == 8 and state.rollouts == 0
    metrics = state.observe(3, [(0, [1.0, 1.0, 1.0, 1.0]), (4, [0.2, 0.9, 0.5, 0.5]), (2, [0.0, 0.0, 0.0, 0.0])])
    assert state.pass_rate("m0") == 7 / 8 and state.difficulty("m0") == "normal"
    assert state.difficulty("g0") == "normal" and state.pass_rate("g0") is None
    assert metrics["difficulty/all/solved"] == pytest.approx(1 / 3) and metrics["difficulty/math/failed"] == 0.5
    assert metrics["difficulty/general/mixed"] == 1.0 and metrics["difficulty/rollouts"] == 12
    assert "difficulty/general.describe/mixed" not in metrics  # these records name no domain finer than the task
    rows = records()
    rows[0]["domain"], rows[2]["domain"] = "math.addsub", "math.muldiv"
    by_domain = DifficultyState(DifficultyConfig(), rows, VERIFIED).observe(0, [(0, [1.0, 1.0]), (2, [0.0, 0.0])])
    assert by_domain["difficulty/math.addsub/solved"] == 1.0 and by_domain["difficulty/math.muldiv/failed"] == 1.0
    assert by_domain["difficulty/math/solved"] == 0.5
    row = next(r for r in state.rows() if r["id"] == "m0")
    assert row["visits"] == 1 and row["last_step"] == 3 and row["history"] == ["solved"] and row["rollouts"] == 8
    assert next(r for r in state.rows() if r["id"] == "g0")["mean_reward"] == pytest.approx(0.525)


def test_skip_passes_over_uninformative_prompts_and_readmits_some_deterministically():
    rows = records(n_math=40, n_general=0)
    cfg = DifficultyConfig(skip=True, window=2, readmit=0.25)
    state = DifficultyState(cfg, rows, VERIFIED, seed=7)
    for step in (0, 1):
        state.observe(step, [(i, [1.0, 1.0]) for i in range(20)])  # m0-m19 solved twice
    state.observe(1, [(i, [0.0, 1.0]) for i in range(20, 30)])  # m20-m29 mixed once
    admitted = [state.admit(i, 5) for i in range(20)]
    assert 0 < sum(admitted) < 20  # re-admitted with probability 0.25 (about 5 of 20)
    assert all(state.admit(i, 5) for i in range(20, 40))  # mixed or not seen twice: always admitted
    again = DifficultyState(cfg, rows, VERIFIED, seed=7)
    again.load_state_dict(json.loads(json.dumps(state.state_dict())))
    assert [again.admit(i, 5) for i in range(20)] == admitted  # a pure function of seed, step and prompt
    assert [again.admit(i, 6) for i in range(20)] != admitted  # another step draws again
    off = DifficultyState(DifficultyConfig(), rows, VERIFIED, seed=7)
    off.load_state_dict(state.state_dict())
    assert all(off.admit(i, 5) for i in range(40))  # skip off: the state is kept but filters nothing


def test_drop_takes_a_prompt_out_for_good_past_the_pass_rate():
    cfg = DifficultyConfig(drop_pass_rate=0.9, drop_min_rollouts=4)
    state = DifficultyState(cfg, records(n_general=1), VERIFIED)
    state.observe(0, [(0, [1.0, 1.0]), (4, [1.0, 1.0])])
    assert state.admit(0, 1)  # 2 rollouts: under drop_min_rollouts
    state.observe(1, [(0, [1.0, 1.0]), (1, [1.0, 0.0]), (4, [1.0, 1.0])])
    assert not state.admit(0, 2) and state.difficulty("m0") == "dropped"
    assert state.admit(1, 2) and state.admit(4, 2)  # pass rate 0.5; a task without a verifier is never dropped


def test_the_sampler_fills_its_share_when_a_task_is_skipped_whole():
    rows = records(n_math=6, n_general=0)
    state = DifficultyState(DifficultyConfig(drop_pass_rate=0.5, drop_min_rollouts=1), rows, VERIFIED)
    state.observe(0, [(i, [1.0]) for i in range(6)])  # every prompt dropped
    sampler = CurriculumSampler([r["task"] for r in rows], CurriculumConfig.from_value("none", 4), 3, seed=0)
    indices, _ = sampler.next_batch(state.admit)
    assert len(indices) == 3 and sampler.forced == 3 and sampler.passed_over == 6


def test_seeded_from_a_scores_file_and_from_a_runs_difficulty_file(tmp_path):
    scores = tmp_path / "pool.scores.jsonl"
    lines = [{"datarl_prepo_scores": 1, "policy": "p", "fingerprint": {}}]
    lines += [{"id": "m1", "task": "math", "rewards": [1.0, 0.0]}, {"id": "other", "task": "math", "rewards": [1.0]}]
    scores.write_text("".join(json.dumps(x) + "\n" for x in lines))
    state = DifficultyState(DifficultyConfig(seed_from=str(scores)), records(), VERIFIED)
    assert state.pass_rate("m1") == 0.5 and state.seeded == 2  # "other" is a pool prompt not selected
    state.observe(0, [(1, [1.0, 1.0])])
    path = state.write(str(tmp_path))
    carried = DifficultyState(DifficultyConfig(seed_from=path), records(), VERIFIED)

    def without_step(rows):  # a next run numbers its own steps: the last run's are not carried
        return [{k: v for k, v in r.items() if k != "last_step"} for r in rows]

    assert without_step(carried.rows()) == without_step(state.rows())
    assert next(r for r in carried.rows() if r["id"] == "m1")["last_step"] is None


def test_a_seed_file_of_another_pool_or_task_is_refused(tmp_path):
    scores = tmp_path / "s.jsonl"
    header = {"datarl_prepo_scores": 1, "policy": "p", "fingerprint": {}}
    scores.write_text(json.dumps(header) + "\n" + json.dumps({"id": "x9", "task": "math", "rewards": [1]}) + "\n")
    with pytest.raises(ConfigError, match="none of its 1 prompt ids is a training prompt"):
        DifficultyState(DifficultyConfig(seed_from=str(scores)), records(), VERIFIED)
    scores.write_text(json.dumps(header) + "\n" + json.dumps({"id": "m0", "task": "code", "rewards": [1]}) + "\n")
    with pytest.raises(ConfigError, match="prompt m0 has task 'code' there but 'math'"):
        DifficultyState(DifficultyConfig(seed_from=str(scores)), records(), VERIFIED)
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(ConfigError, match="bad.jsonl, line 1: neither a datarl scores file"):
        DifficultyState(DifficultyConfig(seed_from=str(tmp_path / "bad.jsonl")), records(), VERIFIED)
    with pytest.raises(ConfigError, match="cannot read it"):
        DifficultyState(DifficultyConfig(seed_from=str(tmp_path / "missing.jsonl")), records(), VERIFIED)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"drop_pass_rate": 1.5}, "drop_pass_rate must be a number in \\[0, 1\\], got 1.5"),
        ({"readmit": -0.1}, "readmit must be a number in \\[0, 1\\]"),
        ({"easy_at": 0.2, "hard_at": 0.3}, "hard_at \\(0.3\\) must be below easy_at"),
        ({"window": 0}, "window must be an integer >= 1"),
        ({"skip": "yes"}, "skip must be true or false"),
        ({"skipp": True}, "unknown option\\(s\\) \\['skipp'\\].*did you mean"),
    ],
)
def test_bad_difficulty_options_are_config_errors(section, message):
    with pytest.raises(ConfigError, match=message):
        build_section(DifficultyConfig, section, "difficulty")
