"""Fixtures shared by every test module. Plain helper functions (JSONL files, toy preference pairs, micro
policies) are in ``tests/datarl_testing.py``; ``tests/integrations/conftest.py`` adds the frameworks' venvs."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def suite() -> list[dict[str, Any]]:
    """A small synthetic train split: five records of each task."""
    from datarl.synth import SynthConfig, build_suite

    return build_suite(SynthConfig(train_per_task=5, pool_per_task=0, eval_per_task=0))["train"]
