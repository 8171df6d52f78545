"""Math layouts: GSM8K as published (``question``, ``answer`` ending in ``#### N``) and MATH (``problem``,
``solution`` whose last ``\\boxed{}`` is the answer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datarl.layouts.base import Layout, Plan, RowProblem, any_row, text_field
from datarl.rewards.math_extract import last_boxed

__all__ = ["GSM8K", "MATH"]

_HASHES = "####"


def _has_hashes(row: Mapping[str, Any]) -> bool:
    return isinstance(row.get("answer"), str) and _HASHES in row["answer"]


def _gsm8k_fits(columns: frozenset[str], sample: Sequence[Mapping[str, Any]]) -> bool:
    return {"question", "answer"} <= columns and any_row(sample, _has_hashes)


def _gsm8k(row: Mapping[str, Any]) -> dict[str, Any]:
    prompt = text_field(row, "question", "the problem")
    answer = text_field(row, "answer", "the worked solution ending in '#### N'")
    if _HASHES not in answer:
        raise RowProblem("answer", "has no '#### N' final answer; GSM8K answers end with '#### <number>'")
    final = answer.rsplit(_HASHES, 1)[1].strip().replace(",", "")  # "#### 1,000" -> 1000, as GSM8K graders do
    if not final:
        raise RowProblem("answer", "nothing follows '####'; give the final number after it")
    return {"task": "math", "prompt": prompt, "ground_truth": final}


GSM8K = Layout(
    name="gsm8k",
    reads="GSM8K as published (openai/gsm8k): question, answer ending in '#### 72'",
    needs="question, answer ending in '#### N'",
    fits=_gsm8k_fits,
    plan=lambda columns: Plan(
        "task=math, prompt<-question, ground_truth<-answer (after ####)",
        {"prompt": "question", "ground_truth": "answer"},
    ),
    convert=_gsm8k,
)


def _has_box(row: Mapping[str, Any]) -> bool:
    return isinstance(row.get("solution"), str) and ("\\boxed" in row["solution"] or "\\fbox" in row["solution"])


def _math_fits(columns: frozenset[str], sample: Sequence[Mapping[str, Any]]) -> bool:
    return {"problem", "solution"} <= columns and any_row(sample, _has_box)


def _math(row: Mapping[str, Any]) -> dict[str, Any]:
    prompt = text_field(row, "problem", "the problem")
    solution = text_field(row, "solution", "the worked solution with the answer in \\boxed{}")
    answer = last_boxed(solution)
    if answer is None:
        raise RowProblem("solution", "has no complete \\boxed{...}; MATH solutions box their final answer")
    return {"task": "math", "prompt": prompt, "ground_truth": answer}


MATH = Layout(
    name="math",
    reads="MATH (hendrycks/competition_math, MATH-500...): problem, solution with the answer in \\boxed{}",
    needs="problem, solution with \\boxed{}",
    fits=_math_fits,
    plan=lambda columns: Plan(
        "task=math, prompt<-problem, ground_truth<-solution (last \\boxed{})",
        {"prompt": "problem", "ground_truth": "solution"},
    ),
    convert=_math,
)
