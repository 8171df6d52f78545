"""Atomic checkpoints of a PPO run, and finding the one to resume from.

A checkpoint is a directory ``RUN_DIR/checkpoints/step-NNNNNN`` holding everything the next
step depends on: the policy (``policy/``, an ordinary HF model directory, so any checkpoint can
be evaluated or served as is), the critic and both optimisers' states (``state.pt``; the critic's
and its optimiser's are None in a critic-free run), and the trainer state (``trainer_state.json``:
step, sampler position, KL coefficient, monitor state, best score). It is written under a
temporary name and renamed into place, and ``checkpoints/latest`` (a one-line file, itself
replaced atomically) names the newest for people and tools; resuming picks the highest step directory,
so a run killed at any instant (even ``kill -9`` mid-save, or between the rename and ``latest``) resumes
from the last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import torch

from datarl.io import TMP_SUFFIX, atomic_path, write_text
from datarl.models.loading import save_model_dir

__all__ = ["save_checkpoint", "latest_checkpoint", "load_checkpoint", "save_policy"]

LATEST = "latest"


def save_policy(policy: Any, out_dir: str) -> None:
    """The policy as a HF model directory, written atomically (used for ``best/`` too)."""
    save_model_dir(out_dir, policy.model, policy.tokenizer)


def save_checkpoint(
    run_dir: str,
    step: int,
    *,
    policy: Any,
    critic: Any,
    actor_opt: Any,
    critic_opt: Any,
    trainer_state: Mapping[str, Any],
    keep: int,
) -> str:
    """Write the checkpoint after ``step`` completed steps; keep the newest ``keep``; return its path."""
    root = os.path.join(run_dir, "checkpoints")
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"step-{step:06d}")
    with atomic_path(final, directory=True) as tmp:
        policy.model.save_pretrained(os.path.join(tmp, "policy"))
        policy.tokenizer.save_pretrained(os.path.join(tmp, "policy"))
        torch.save(
            {
                "critic": None if critic is None else critic.state_dict(),
                "actor_opt": actor_opt.state_dict(),
                "critic_opt": None if critic_opt is None else critic_opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
            os.path.join(tmp, "state.pt"),
        )
        with open(os.path.join(tmp, "trainer_state.json"), "w", encoding="utf-8") as fh:
            json.dump(dict(trainer_state), fh, indent=1, default=str)
    write_text(os.path.join(root, LATEST), os.path.basename(final) + "\n")
    for old in _step_names(root)[:-keep]:
        shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    for d in os.listdir(root):  # temporaries of a run killed mid-save
        if d.endswith(TMP_SUFFIX):
            shutil.rmtree(os.path.join(root, d), ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str) -> str | None:
    """The newest complete checkpoint of ``run_dir``, or None.

    A ``step-NNNNNN`` directory only appears by an atomic rename of a finished temporary, so every one is
    complete; the newest is chosen by its step, not by ``latest``, which a run killed between the rename and
    rewriting ``latest`` leaves one step behind (the step would be lost on resume).
    """
    root = os.path.join(run_dir, "checkpoints")
    for name in reversed(_step_names(root)):
        path = os.path.join(root, name)
        if os.path.isfile(os.path.join(path, "trainer_state.json")):
            return path
    return None


def _step_names(root: str) -> list[str]:
    """The ``step-NNNNNN`` directory names under ``root``, oldest step first ([] when there is no ``root``)."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted((n for n in names if n.startswith("step-") and n[5:].isdigit()), key=lambda n: int(n[5:]))


def load_checkpoint(path: str) -> dict[str, Any]:
    """``{"trainer_state", "state"}`` of a checkpoint (the policy is loaded from ``path/policy``)."""
    with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as fh:
        trainer_state = json.load(fh)
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=False)
    return {"trainer_state": trainer_state, "state": state}
