"""The router: a declarative table, validated config, provenance on every reward."""

from __future__ import annotations

import pytest

from datarl.rewards.router import DEFAULT_TABLE, Router, RouterConfig, RouterConfigError

MATH = {"task": "math", "prompt": "2+2?", "ground_truth": "4"}


def test_default_table_routes_math_to_rtv_math_and_records_why():
    result = Router().score(MATH, "The answer is 4.")
    assert (result.score, result.source) == (1.0, "rtv.math")
    assert result.info["routed_by"] == "task=math -> rtv.math"


def test_general_goes_to_the_judge_by_default_and_a_missing_judge_is_not_a_silent_score():
    assert DEFAULT_TABLE == {"math": "rtv.math", "code": "rtv.code", "ifeval": "rtv.ifeval", "general": "genrm.bon"}
    result = Router().score({"task": "general", "prompt": "p", "reference": "r"}, "text")
    assert (result.score, result.source, result.info["failure"]) == (0.0, "genrm.bon", "judge_error")
    assert "no judge configured" in result.info["error"]


@pytest.mark.parametrize(
    "table, record, problem",
    [
        ({"router": {"general": None}}, {"task": "general"}, ("task", "no reward source is configured")),
        ({}, {"task": "general", "reference": "r"}, ("task", "needs a model: set sources.genrm.bon.judge")),
        ({"sources": {"genrm.bon": {"judge": "j/"}}}, {"task": "general"}, ("reference", "missing; genrm.bon")),
        (
            {"router": {"math": "genrm.gt"}, "sources": {"genrm.gt": {"judge": "j/"}}},
            {"task": "math"},
            ("ground_truth", "missing"),
        ),
        ({"router": {"math": "bt"}}, {"task": "math", "ground_truth": "1"}, ("task", "sources.bt.model")),
        ({"sources": {"genrm.bon": {"judge": "j/"}}}, {"task": "general", "reference": "r"}, None),
        ({}, {"task": "math", "ground_truth": "1"}, None),
    ],
)
def test_record_problem_says_why_a_record_cannot_be_scored(table, record, problem):
    got = RouterConfig.from_mapping(table).record_problem(record)
    if problem is None:
        assert got is None
    else:
        assert got[0] == problem[0] and problem[1] in got[1]


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"router": {"math": "rtv.nope"}}, "unknown source 'rtv.nope'"),
        ({"sources": {"rtv.math": {"tolerance": 1}}}, "unknown option 'tolerance'"),
        ({"sources": {"bogus": {}}}, "unknown source 'bogus'"),
        ({"routers": {}}, "unknown config section"),
        ({"router": ["math"]}, "must map task names"),
        # option values are checked up front (they were once reported as an internal error on every item)
        ({"sources": {"rtv.math": {"rel_tol": "abc"}}}, "sources.rtv.math: rel_tol must be"),
        ({"sources": {"rtv.math": {"step_credit": 1.5}}}, "sources.rtv.math: step_credit must be"),
        ({"sources": {"rtv.code": {"partial_credit": 2}}}, "sources.rtv.code: partial_credit must be true or false"),
        ({"sources": {"rtv.code": {"config": {"memory_mb": 3}}}}, "unknown field.*'memory_mb'; known: "),
        ({"sources": {"rtv.ifeval": {"mode": "lax"}}}, "sources.rtv.ifeval: mode must be one of"),
    ],
)
def test_bad_config_is_refused_with_a_fix(data, fragment):
    with pytest.raises(RouterConfigError, match=fragment):
        RouterConfig.from_mapping(data)


def test_source_options_reach_the_source():
    loose = Router(RouterConfig.from_mapping({"sources": {"rtv.math": {"rel_tol": 1e-3}}}))
    exact = Router()
    gold = dict(MATH, ground_truth="3.14159")
    assert loose.score(gold, "The answer is 3.1415").score == 1.0  # truncated, not rounded: only rel_tol takes it
    assert exact.score(gold, "The answer is 3.1415").score == 0.0
    steps = dict(MATH, ground_truth="30", reference="12 + 5 = 17\n17 + 13 = 30\n#### 30")
    credit = Router(RouterConfig.from_mapping({"sources": {"rtv.math": {"step_credit": 0.5}}}))
    assert credit.score(steps, "12 + 5 = 17\n17 + 13 = 31\n#### 31").score == 0.25
    assert exact.score(steps, "12 + 5 = 17\n17 + 13 = 31\n#### 31").score == 0.0


def test_a_task_can_be_removed_from_the_table():
    cfg = RouterConfig.from_mapping({"router": {"math": None}})
    assert cfg.source_for("math") is None and cfg.source_for("ifeval") == "rtv.ifeval"


def test_a_source_that_raises_is_reported_not_propagated(monkeypatch):
    router = Router()

    def boom(record, response):
        raise RuntimeError("bug in a source")

    router._fns["rtv.math"] = boom
    result = router.score(MATH, "4")
    assert result.info["failure"] == "internal_error" and "bug in a source" in result.info["error"]
