"""``stages.json``: which stages finished, with what fingerprint and outputs; and how fingerprints are made."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from datarl.io import write_json

__all__ = ["Ledger", "fingerprint", "file_digest"]


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, _, files in sorted(os.walk(path)):
            for name in sorted(files):
                h.update(name.encode())
                h.update(file_digest(os.path.join(root, name)).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(section: Any, inputs: list[str], upstream: list[str]) -> str:
    """A stage's identity: its config section, the contents of its input files, its upstream fingerprints."""
    blob = json.dumps(
        {"section": section, "inputs": [file_digest(p) for p in inputs if os.path.exists(p)], "upstream": upstream},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class Ledger:
    """``stages.json``: the fingerprint and outputs of every finished stage (rewritten atomically)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                self.done = json.load(fh)

    def is_done(self, stage: str, fingerprint: str) -> bool:
        entry = self.done.get(stage)
        return (
            bool(entry)
            and entry["fingerprint"] == fingerprint
            and all(os.path.exists(p) for p in entry.get("outputs", []))
        )

    def record(self, stage: str, fingerprint: str, outputs: list[str], seconds: float, **extra: Any) -> None:
        self.done[stage] = {"fingerprint": fingerprint, "outputs": outputs, "seconds": round(seconds, 1), **extra}
        write_json(self.path, self.done)
