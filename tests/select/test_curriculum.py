"""The curriculum: phases validated, mixtures per step, a deterministic and resumable sampler."""

from __future__ import annotations

from collections import Counter

import pytest

from datarl.select.curriculum import (
    CurriculumConfig,
    CurriculumError,
    CurriculumSampler,
    Phase,
    natural_mixture,
    paper_default,
)

TASKS = ["code"] * 30 + ["math"] * 30 + ["ifeval"] * 20 + ["general"] * 20


def realised(sampler: CurriculumSampler, steps: int) -> list[Counter]:
    out = []
    for _ in range(steps):
        indices, _ = sampler.next_batch()
        out.append(Counter(TASKS[i] for i in indices))
    return out


def test_paper_default_is_code_then_code_math_then_ramp_then_natural():
    cfg = paper_default(40)
    assert [ph.until_step for ph in cfg.phases] == [5, 10, 15, None]
    counts = realised(CurriculumSampler(TASKS, cfg, 10, seed=0), 40)
    assert all(c == Counter(code=10) for c in counts[:5])
    assert all(c == Counter(code=5, math=5) for c in counts[5:10])
    general_in_ramp = [c["general"] for c in counts[10:15]]
    assert general_in_ramp == sorted(general_in_ramp) and general_in_ramp[-1] == 2  # rises to the natural share
    assert all(c == Counter(code=3, math=3, ifeval=2, general=2) for c in counts[15:])


def test_paper_default_scales_to_4000_steps_as_in_the_paper():
    assert [ph.until_step for ph in paper_default(4000).phases] == [500, 1000, 1500, None]
    assert [ph.until_step for ph in paper_default(3).phases] == [1, 2, 3, None]  # boundaries stay increasing


def test_none_is_the_natural_mixture_every_step():
    cfg = CurriculumConfig.from_value("none", 10)
    s = CurriculumSampler(TASKS, cfg, 10, seed=0)
    mix = natural_mixture(TASKS)
    assert s.mixture(0) == mix == s.mixture(9)


def test_no_prompt_repeats_within_an_epoch_of_its_task():
    s = CurriculumSampler(TASKS, CurriculumConfig((Phase(None, {"code": 1.0}),)), 7, seed=3)
    drawn = [i for _ in range(4) for i in s.next_batch()[0]]  # 28 of the 30 code prompts
    assert len(set(drawn)) == 28 and all(TASKS[i] == "code" for i in drawn)


def test_sampler_state_round_trip_gives_the_same_batches():
    cfg = paper_default(20)
    a = CurriculumSampler(TASKS, cfg, 8, seed=1)
    first = [a.next_batch()[0] for _ in range(7)]
    b = CurriculumSampler(TASKS, cfg, 8, seed=1)
    b.load_state_dict(a.state_dict())
    assert [a.next_batch()[0] for _ in range(9)] == [b.next_batch()[0] for _ in range(9)]
    c = CurriculumSampler(TASKS, cfg, 8, seed=1)
    assert [c.next_batch()[0] for _ in range(7)] == first  # seeded: same draws every time


def test_log_info_names_the_phase_and_the_realised_mixture():
    _, info = CurriculumSampler(TASKS, paper_default(40), 10, seed=0).next_batch()
    assert info["curriculum/phase"] == 0 and info["curriculum/phase_name"] == "code 1"
    assert info["curriculum/realised/code"] == 1.0 and info["curriculum/realised/math"] == 0.0


@pytest.mark.parametrize(
    "value, fragment",
    [
        ({"phases": [{"until_step": 5, "tasks": {"cooking": 1.0}}, {"tasks": "natural"}]}, "unknown task 'cooking'"),
        (
            {
                "phases": [
                    {"until_step": 10, "tasks": {"code": 1}},
                    {"until_step": 5, "tasks": {"math": 1}},
                    {"tasks": "natural"},
                ]
            },
            "must be greater than the previous",
        ),
        ({"phases": [{"tasks": {"code": 1}}, {"tasks": "natural"}]}, "only the last phase may leave out until_step"),
        ({"phases": [{"until_step": 3, "ramp": "natural"}]}, "needs a previous phase"),
        ({"phases": [{"until_step": 3, "tasks": {"code": 0}}]}, "must not all be 0"),
        ({"phases": [{"until_step": 3, "tasks": {"code": -1}}]}, "must be a number >= 0"),
        ({"phases": [{"until": 3}]}, "a phase is a mapping"),
        ({"phases": [{"until_step": 3, "ramp": "natural", "tasks": {"code": 1}}]}, "not both"),
        ("sometimes", "must be 'paper', 'none'"),
    ],
)
def test_bad_curricula_say_how_to_fix_them(value, fragment):
    with pytest.raises(CurriculumError, match=fragment):
        CurriculumConfig.from_value(value, 40)


def test_a_phase_naming_a_task_without_prompts_fails_before_sampling():
    cfg = CurriculumConfig((Phase(5, {"code": 1.0}), Phase(None, "natural")))
    with pytest.raises(CurriculumError, match=r"names task\(s\) \['code'\]"):
        CurriculumSampler(["math"] * 5, cfg, 4)
