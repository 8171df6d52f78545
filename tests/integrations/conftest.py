"""Shared by the framework tests: run a check script inside a framework's own cached venv."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _framework_python(name: str) -> Path:
    """The framework's cached venv: scripts/integration_venvs.sh builds it on first use (needs PyPI) and
    returns at once when it is already built from the current recipe."""
    subprocess.run(["bash", str(ROOT / "scripts" / "integration_venvs.sh"), name], check=True, timeout=1800)
    return ROOT / f".venv-{name}" / "bin" / "python"


@pytest.fixture
def run_framework_check(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """`run_framework_check("trl", "trl_check.py", **env)` runs tests/integrations/<script> TMP OUT in the
    framework's venv (one thread, extra environment variables from the keywords) and returns the JSON it
    wrote to OUT; a failing script fails the test with the tail of its output."""

    def run(name: str, script: str, **env: str) -> dict[str, Any]:
        out = tmp_path / f"{name}_result.json"
        proc = subprocess.run(
            [str(_framework_python(name)), str(HERE / script), str(tmp_path), str(out)],
            env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **env},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
        return json.loads(out.read_text())

    return run
