"""Gold checks for synth records: what evaluation and the reward-hacking monitors trust.

``gold_check(record, response)`` routes by task: math -> ``rtv.math``, code ->
``rtv.code`` (the sandbox), ifeval -> ``rtv.ifeval`` (strict), general -> the hidden
rubric (source ``gold.rubric``, ``info`` holds its factors). ``info["gold_pass"]`` says
whether the response counts as correct: score 1.0 for the verifiable tasks,
``rubric.PASS_THRESHOLD`` for general (the verifiers' own ``passed``/``total`` counts
are left as they are). Never raises on model output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datarl.rewards.base import RewardResult
from datarl.synth.rubric import PASS_THRESHOLD, rubric_breakdown

__all__ = ["gold_check", "gold_passed", "score_rubric", "GOLD_RUBRIC_SOURCE"]

GOLD_RUBRIC_SOURCE = "gold.rubric"


def _as_mapping(record: Any) -> Mapping[str, Any]:
    to_dict = getattr(record, "to_dict", None)
    return to_dict() if callable(to_dict) else record


def gold_check(record: Mapping[str, Any], response: str) -> RewardResult:
    """Gold score of ``response`` for a synth ``record`` (a dict or a ``records.Record``)."""
    rec = _as_mapping(record)
    task = rec.get("task") if isinstance(rec, Mapping) else None
    if task == "math":
        from datarl.rewards.math import score_math

        result = score_math(rec, response)
    elif task == "code":
        from datarl.rewards.code import score_code

        result = score_code(rec, response)
    elif task == "ifeval":
        from datarl.rewards.ifeval import score_ifeval

        result = score_ifeval(rec, response)
    elif task == "general":
        return score_rubric(rec, response)
    else:
        return RewardResult(0.0, "gold", {"failure": "unknown_task", "gold_pass": False, "task": task})
    return RewardResult(result.score, result.source, dict(result.info, gold_pass=result.score >= 1.0))


def score_rubric(record: Mapping[str, Any], response: str) -> RewardResult:
    """The hidden rubric as a reward source (``gold.rubric``): for experiments on the synthetic suite
    only, e.g. the no-hacking control of a reward-hacking run. Never raises."""
    try:
        info = rubric_breakdown(_as_mapping(record), response)
    except Exception as exc:  # the contract: never raise on model output
        info = {"score": 0.0, "failure": "internal_error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    score = float(info.pop("score"))
    info["gold_pass"] = score >= PASS_THRESHOLD
    return RewardResult(score, GOLD_RUBRIC_SOURCE, info)


def gold_passed(record: Mapping[str, Any], response: str) -> bool:
    """Whether ``response`` passes the gold check of ``record``."""
    return bool(gold_check(record, response).info.get("gold_pass"))
