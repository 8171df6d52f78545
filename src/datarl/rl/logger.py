"""Step and eval metrics: JSONL always (``metrics.jsonl``, ``eval.jsonl``), TensorBoard and W&B on request.

Each line is one JSON object with ``step``; namespaced keys (``reward/*``, ``ppo/*``, ``hacking/*``,
``diversity/*``, ``gold/*``, ``curriculum/*``, ``perf/*``). On resume, lines for steps after the
checkpoint (written before the crash) are dropped first, so every step appears exactly once.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from datarl.io import write_text

__all__ = ["MetricsLogger", "truncate_jsonl"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN/inf are not JSON
    return value


def truncate_jsonl(path: str, keep_below_step: int, *, inclusive: bool = False) -> int:
    """Rewrite ``path`` keeping lines whose ``step`` is below ``keep_below_step`` (or equal, if
    ``inclusive``); a torn last line (a crash mid-write) is dropped too. Returns lines kept."""
    if not os.path.exists(path):
        return 0
    kept = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            step = int(row.get("step", -1))
            if step < keep_below_step or (inclusive and step == keep_below_step):
                kept.append(line if line.endswith("\n") else line + "\n")
    write_text(path, "".join(kept))
    return len(kept)


class MetricsLogger:
    """Appends metric lines to the run's JSONL files and mirrors them to TensorBoard/W&B."""

    def __init__(
        self,
        run_dir: str,
        *,
        tensorboard: bool = False,
        wandb: bool = False,
        wandb_project: str = "datarl",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self._files: dict[str, Any] = {}
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise RuntimeError(
                    "logging.tensorboard needs the 'tensorboard' package (pip install tensorboard)"
                ) from exc
            self._tb = SummaryWriter(os.path.join(run_dir, "tb"))
        if wandb:
            try:
                import wandb as wb
            except ImportError as exc:
                raise RuntimeError("logging.wandb needs the 'wandb' package (pip install wandb)") from exc
            self._wandb = wb.init(
                project=wandb_project,
                dir=run_dir,
                config=dict(config or {}),
                name=os.path.basename(os.path.abspath(run_dir)),
                resume="allow",
            )

    def log(self, name: str, row: Mapping[str, Any]) -> None:
        """Append ``row`` (with ``step``) to ``RUN_DIR/<name>.jsonl`` and mirror numeric values."""
        if name not in self._files:
            self._files[name] = open(os.path.join(self.run_dir, f"{name}.jsonl"), "a", encoding="utf-8")
        fh = self._files[name]
        fh.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        fh.flush()
        step = int(row["step"])
        numeric = {
            k: float(v)
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if self._tb is not None:
            for k, v in numeric.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(numeric, step=step)

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
