"""The trainer's ``TrainState`` and ``trainer_state.json``: a file written before ``TrainState`` existed (when
the loop kept a dict) reads back, and writes back with every old field unchanged (plus the difficulty state and
the sampler's skip counters, added since), so old checkpoints resume."""

from __future__ import annotations

import dataclasses
import json

import pytest

pytest.importorskip("torch")

from datarl.metrics.hacking import HackingConfig, HackingMonitor  # noqa: E402
from datarl.rl.ppo import FixedKLController  # noqa: E402
from datarl.rl.trainer import TrainState  # noqa: E402
from datarl.select.curriculum import CurriculumConfig, CurriculumSampler  # noqa: E402
from datarl.select.difficulty import DifficultyConfig, DifficultyState  # noqa: E402

# checkpoints/step-000002/trainer_state.json of a 4-step run on the synthetic suite, as the dict-state trainer
# wrote it (json.dump(..., indent=1))
OLD = """{
 "step": 2,
 "best_gold": 0.0,
 "best_step": 0,
 "sampler": {
  "step": 2,
  "pos": {
   "code": 6,
   "ifeval": 0,
   "math": 2
  },
  "epoch": {
   "code": 0,
   "ifeval": 0,
   "math": 0
  },
  "seed": 3
 },
 "kl_ctl": {
  "value": 0.02
 },
 "monitor": {
  "config": {
   "window": 3,
   "min_rise": 0.02,
   "min_fall": 0.02,
   "require_proxy_peak": false
  },
  "history": {},
  "alarms": {}
 }
}"""


def objects():
    tasks = ["math"] * 6 + ["code"] * 6 + ["ifeval"] * 6
    sampler = CurriculumSampler(tasks, CurriculumConfig.from_value("paper", 4), 4, seed=3)
    records = [{"id": f"p{i}", "task": t} for i, t in enumerate(tasks)]
    return {
        "sampler": sampler,
        "kl_ctl": FixedKLController(0.5),
        "monitor": HackingMonitor(HackingConfig()),
        "difficulty": DifficultyState(DifficultyConfig(), records, {"math", "code", "ifeval"}, seed=3),
    }


def test_an_old_trainer_state_reads_back_and_writes_back_unchanged():
    parts = objects()
    state = TrainState.from_json(json.loads(OLD), **parts)
    assert state == TrainState(step=2, best_gold=0.0, best_step=0)
    assert parts["kl_ctl"].value == 0.02 and parts["sampler"].state_dict()["pos"] == {"code": 6, "ifeval": 0, "math": 2}
    written = state.to_json(**parts)
    old = json.loads(OLD)
    assert written["difficulty"] == {"rollouts": 0, "seeded": 0, "entries": {}}  # as seeded: nothing yet
    assert written["sampler"].pop("passed_over") == 0 and written["sampler"].pop("forced") == 0
    assert {k: v for k, v in written.items() if k != "difficulty"} == old


def test_a_fresh_state_has_done_nothing_and_is_frozen():
    state = TrainState()
    assert (state.step, state.best_gold, state.best_step) == (0, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.step = 1  # type: ignore[misc]
    assert dataclasses.replace(state, step=1).step == 1
