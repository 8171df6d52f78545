"""Which checkpoint a resumed run starts from (``datarl.rl.checkpoint.latest_checkpoint``)."""

from __future__ import annotations

import os

from datarl.rl.checkpoint import latest_checkpoint


def _step(root, step: int, *, complete: bool = True, hidden: bool = False) -> str:
    name = f".step-{step:06d}.abc.tmp" if hidden else f"step-{step:06d}"
    path = os.path.join(root, "checkpoints", name)
    os.makedirs(path)
    if complete:
        with open(os.path.join(path, "trainer_state.json"), "w") as fh:
            fh.write("{}")
    return path


def test_no_checkpoints_means_a_fresh_start(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    os.makedirs(tmp_path / "checkpoints")
    assert latest_checkpoint(str(tmp_path)) is None


def test_a_run_killed_between_the_rename_and_latest_resumes_from_the_renamed_step(tmp_path):
    # The window CI hit: kill -9 after a step directory was renamed into place, before ``latest`` was written.
    first = _step(tmp_path, 1)
    assert latest_checkpoint(str(tmp_path)) == first  # the run's first checkpoint: no ``latest`` yet
    newest = _step(tmp_path, 2)
    (tmp_path / "checkpoints" / "latest").write_text("step-000001\n")
    assert latest_checkpoint(str(tmp_path)) == newest


def test_the_highest_step_wins_by_number_and_temporaries_and_incomplete_dirs_are_passed_over(tmp_path):
    _step(tmp_path, 9)
    ten = _step(tmp_path, 10)
    _step(tmp_path, 11, hidden=True)  # a temporary of a save that was killed
    os.makedirs(tmp_path / "checkpoints" / "step-junk")
    (tmp_path / "checkpoints" / "latest").write_text("step-000009\n")
    assert latest_checkpoint(str(tmp_path)) == ten
    _step(tmp_path, 12, complete=False)
    assert latest_checkpoint(str(tmp_path)) == ten


def test_saving_keeps_the_newest_steps_and_sweeps_temporaries(tmp_path):
    import torch

    from datarl.models.tiny import MICRO, build_tiny_policy
    from datarl.rl.checkpoint import save_checkpoint

    policy = build_tiny_policy(["one two three four five six"] * 4, MICRO)
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-3)
    stale = _step(tmp_path, 99, hidden=True)  # left by a save that was killed
    for step in (8, 9, 10):  # 9 -> 10 crosses a digit: the oldest is chosen by number
        save_checkpoint(
            str(tmp_path),
            step,
            policy=policy,
            critic=None,
            actor_opt=opt,
            critic_opt=None,
            trainer_state={"step": step},
            keep=2,
        )
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["latest", "step-000009", "step-000010"]
    assert not os.path.exists(stale)
    assert latest_checkpoint(str(tmp_path)).endswith("step-000010")
