"""Stages shared between pipeline runs (a study's arms and seeds): computed once, linked into every run.

A :class:`StageStore` is a folder ``<root>/<stage>/<fingerprint>/`` per finished stage. When a run finishes
a shareable stage, its outputs under the run directory move into the store and the run keeps symbolic links
to them; a later run whose stage has the same fingerprint (same config section, same input contents, same
upstream stages) links the stored outputs instead of computing them, and records the stage as done in its own
ledger. Outputs outside the run directory (the cached SFT policy) are recorded as they are.

Fingerprints do not depend on where a run lives: :func:`run_relative` writes the run directory as
``$RUN_DIR`` in a stage's config section before it is hashed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from typing import Any

from datarl.io import write_json

__all__ = ["StageStore", "run_relative", "RUN_DIR_TOKEN"]

RUN_DIR_TOKEN = "$RUN_DIR"
_ENTRY = "entry.json"


def run_relative(section: Any, run_dir: str) -> Any:
    """``section`` with every string that starts with ``run_dir`` rewritten to start with ``$RUN_DIR``."""
    if isinstance(section, str):
        if section == run_dir or section.startswith(run_dir + os.sep):
            return RUN_DIR_TOKEN + section[len(run_dir) :]
        return section
    if isinstance(section, dict):
        return {k: run_relative(v, run_dir) for k, v in section.items()}
    if isinstance(section, (list, tuple)):
        return [run_relative(v, run_dir) for v in section]
    return section


class StageStore:
    """Finished stages shared between runs; ``stages`` limits which stages are shared."""

    def __init__(self, root: str, stages: Iterable[str]) -> None:
        self.root = os.path.abspath(root)
        self.stages = frozenset(stages)

    def _dir(self, stage: str, fingerprint: str) -> str:
        return os.path.join(self.root, stage, fingerprint)

    def has(self, stage: str, fingerprint: str) -> bool:
        return os.path.exists(os.path.join(self._dir(stage, fingerprint), _ENTRY))

    def link(self, stage: str, fingerprint: str, run_dir: str) -> dict[str, Any] | None:
        """Link a stored stage's outputs into ``run_dir``; its ledger entry (outputs as ``run_dir`` paths,
        the facts the stage recorded, ``shared_from`` and ``saved_seconds``), or None when it is not stored."""
        if stage not in self.stages or not self.has(stage, fingerprint):
            return None
        where = self._dir(stage, fingerprint)
        with open(os.path.join(where, _ENTRY), encoding="utf-8") as fh:
            entry = json.load(fh)
        outputs = []
        for out in entry["outputs"]:
            if out.startswith(RUN_DIR_TOKEN):
                rel = out[len(RUN_DIR_TOKEN) + 1 :]
                target, stored = os.path.join(run_dir, rel), os.path.join(where, "files", rel)
                _replace_with_link(target, stored)
                outputs.append(target)
            else:
                outputs.append(out)
        return {
            **entry["extra"],
            "outputs": outputs,
            "shared_from": entry["computed_in"],
            "saved_seconds": entry["seconds"],
        }

    def put(
        self, stage: str, fingerprint: str, run_dir: str, outputs: list[str], extra: dict[str, Any], seconds: float
    ) -> None:
        """Move a finished stage's outputs under ``run_dir`` into the store and link them back; ``extra`` and
        ``seconds`` are what the stage recorded in its ledger (a run that links it saves those seconds).

        The stage is assembled in a temporary folder and renamed into place, so a crash leaves no half entry,
        and of two runs that store the same stage at once the second links the first's copy."""
        if stage not in self.stages or self.has(stage, fingerprint):
            return
        where = self._dir(stage, fingerprint)
        tmp = f"{where}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        recorded, moved = [], []
        for out in outputs:
            rel = os.path.relpath(os.path.abspath(out), run_dir)
            if rel.startswith(os.pardir) or os.path.islink(out):
                recorded.append(out)  # outside the run (a cached model) or already linked: as it is
                continue
            stored = os.path.join(tmp, "files", rel)
            os.makedirs(os.path.dirname(stored), exist_ok=True)
            shutil.move(out, stored)
            moved.append(rel)
            recorded.append(os.path.join(RUN_DIR_TOKEN, rel))
        entry = {"outputs": recorded, "extra": extra, "computed_in": run_dir, "seconds": seconds}
        write_json(os.path.join(tmp, _ENTRY), entry)
        try:
            os.rename(tmp, where)
        except OSError:  # stored meanwhile by another run: the same stage, so link that copy
            pass
        for rel in moved:
            _replace_with_link(os.path.join(run_dir, rel), os.path.join(where, "files", rel))
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_with_link(target: str, stored: str) -> None:
    if os.path.islink(target) or not os.path.lexists(target):
        if os.path.lexists(target):
            os.remove(target)
    elif os.path.isdir(target):
        shutil.rmtree(target)
    else:
        os.remove(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(os.path.relpath(stored, os.path.dirname(target)), target)
