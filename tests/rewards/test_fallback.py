"""Verifier first, judge fallback: ``math -> rtv.math, fallback genrm.gt`` asks the judge only where the verifier
says wrong or finds no answer, keeps both verdicts and which decided, and lets the verifier's verdict stand when
the judge is down."""

from __future__ import annotations

import re
from typing import Any

import pytest

from datarl.executors.engine import LocalEngine
from datarl.rewards.router import Router, RouterConfig, RouterConfigError


class FakeJudge:
    """Prefers an answer that contains ACCEPT (both orders); counts the prompts it was asked."""

    name = "fake"
    gt_format = "#### {ground_truth}"

    def __init__(self, down: bool = False) -> None:
        self.prompts: list[str] = []
        self.down = down

    def verdict_probs(self, prompts: list[str]) -> list[tuple[Any, dict[str, Any]]]:
        self.prompts += prompts
        if self.down:
            return [(ConnectionError("judge unreachable"), {}) for _ in prompts]
        out = []
        for p in prompts:
            a, b = re.search(r"\[Answer A\]\n(.*?)\n\[Answer B\]\n(.*?)\n\[Last lines\]", p, re.S).groups()
            out.append((0.9 if "ACCEPT" in a else 0.1 if "ACCEPT" in b else 0.5, {}))
        return out


def router(judge: Any) -> Router:
    return Router(
        RouterConfig.from_mapping(
            {
                "router": {"math": {"source": "rtv.math", "fallback": "genrm.gt"}},
                "sources": {"genrm.gt": {"judge": judge}},
            }
        )
    )


MATH = {"task": "math", "prompt": "Find f.", "ground_truth": "f(x)=2x"}


def test_the_judge_is_not_asked_when_the_verifier_says_right() -> None:
    judge = FakeJudge()
    result = router(judge).score(MATH, "So $\\boxed{f(x) = 2x}$.")
    assert (result.score, result.source) == (1.0, "rtv.math") and judge.prompts == []
    assert "verdicts" not in result.info


@pytest.mark.parametrize(
    ("response", "score", "decided_by", "failure"),
    [
        ("Hence $\\boxed{2x \\text{ for } f}$ ACCEPT", 1.0, "genrm.gt", None),  # verifier wrong, judge accepts
        ("Hence $\\boxed{3x}$", 0.0, "genrm.gt", "wrong_answer"),  # verifier wrong, judge on par: not accepted
        ("I cannot tell. ACCEPT", 1.0, "genrm.gt", None),  # no answer found: the judge decides
    ],
)
def test_the_judge_decides_where_the_verifier_says_wrong(
    response: str, score: float, decided_by: str, failure: str | None
) -> None:
    judge = FakeJudge()
    result = router(judge).score(MATH, response)
    assert (result.score, result.info["decided_by"], result.failure) == (score, decided_by, failure)
    assert set(result.info["verdicts"]) == {"rtv.math", "genrm.gt"}
    assert result.info["verdicts"]["rtv.math"]["score"] == 0.0
    assert result.info["routed_by"] == "task=math -> rtv.math, fallback genrm.gt"
    assert len(judge.prompts) == 2  # both orders, once


def test_a_judge_that_is_down_leaves_the_verifiers_verdict_flagged() -> None:
    result = router(FakeJudge(down=True)).score(MATH, "Hence $\\boxed{3x}$ ACCEPT")
    assert (result.score, result.source, result.failure) == (0.0, "rtv.math", "wrong_answer")
    assert result.info["decided_by"] == "rtv.math" and "judge unreachable" in result.info["fallback_error"]


def test_an_invalid_response_never_reaches_the_judge() -> None:
    judge = FakeJudge()
    result = router(judge).score(MATH, "   ")
    assert (result.score, result.failure) == (0.0, "invalid_response") and judge.prompts == []


def test_the_engine_batches_the_fallbacks_and_agrees_with_the_router() -> None:
    judge = FakeJudge()
    records = [MATH] * 4
    responses = [
        "So $\\boxed{f(x)=2x}$.",
        "f doubles its input. ACCEPT",
        "So $\\boxed{7}$",
        "So $\\boxed{f(x)=3x}$ ACCEPT",
    ]
    with LocalEngine(router(judge), workers=2, timeout_s=30) as engine:
        results = engine.score(records, responses)
    assert [r.score for r in results] == [1.0, 1.0, 0.0, 1.0]
    assert len(judge.prompts) == 6  # one batch: three fallbacks x two orders, none for the verified one
    alone = [router(FakeJudge()).score(r, s) for r, s in zip(records, responses)]
    assert [(r.score, r.source) for r in results] == [(r.score, r.source) for r in alone]


@pytest.mark.parametrize(
    ("router_cfg", "message"),
    [
        ({"math": {"source": "rtv.math", "fallback": "genrm.nope"}}, "unknown source 'genrm.nope'"),
        ({"math": {"source": "rtv.math", "fallback": "rtv.math"}}, "falls back to itself"),
        ({"math": {"fallback": "genrm.gt"}}, "give {source: SOURCE, fallback: SOURCE}"),
        ({"math": {"source": "rtv.math", "fallbak": "genrm.gt"}}, "give {source: SOURCE, fallback: SOURCE}"),
    ],
)
def test_bad_fallback_configs_are_refused(router_cfg: dict, message: str) -> None:
    with pytest.raises(RouterConfigError, match=re.escape(message)):
        RouterConfig.from_mapping({"router": router_cfg})


def test_a_fallback_without_its_model_is_a_bad_record_before_any_work() -> None:
    cfg = RouterConfig.from_mapping({"router": {"math": {"source": "rtv.math", "fallback": "genrm.gt"}}})
    field, message = cfg.record_problem({"task": "math", "ground_truth": "1"})
    assert field == "task" and "falls back to genrm.gt, which needs a model: set sources.genrm.gt.judge" in message
    (problem,) = cfg.preflight([{"task": "math", "ground_truth": "1"}])
    assert problem.records == (0,)
