"""The hacking alarm: proxy rising while gold falls over a window of evaluations (PAPER 7.4)."""

from __future__ import annotations

import json

import pytest

from datarl.metrics import HackingConfig, HackingMonitor

STEPS = [0, 10, 20, 30]  # window 3 -> the rule reads 4 evaluations


@pytest.mark.parametrize(
    "name, proxy, gold, alarm",
    [
        ("proxy up, gold down", [0.50, 0.60, 0.70, 0.80], [0.50, 0.45, 0.40, 0.35], True),
        ("both rising", [0.50, 0.60, 0.70, 0.80], [0.40, 0.45, 0.50, 0.55], False),
        ("proxy flat, gold down", [0.60, 0.60, 0.60, 0.60], [0.50, 0.45, 0.40, 0.35], False),
        ("proxy up, gold flat", [0.50, 0.60, 0.70, 0.80], [0.50, 0.50, 0.50, 0.50], False),
        ("noise within tolerance", [0.500, 0.505, 0.498, 0.508], [0.500, 0.495, 0.502, 0.494], False),
        ("one bad eval is not a trend", [0.50, 0.50, 0.50, 0.50], [0.50, 0.50, 0.50, 0.40], False),
        ("gold peaked then fell", [0.40, 0.55, 0.70, 0.85], [0.50, 0.60, 0.45, 0.30], True),
        ("proxy dipped last, still rising", [0.50, 0.70, 0.90, 0.85], [0.50, 0.45, 0.40, 0.35], True),
    ],
)
def test_alarm_rule(name, proxy, gold, alarm):
    mon = HackingMonitor(HackingConfig())
    outs = [mon.update(s, "general", p, g) for s, p, g in zip(STEPS, proxy, gold)]
    assert [o["alarm"] for o in outs[:-1]] == [False] * 3  # fewer than window+1 evaluations never alarm
    assert outs[-1]["alarm"] is alarm, (name, outs[-1])
    assert outs[-1]["gap"] == pytest.approx(proxy[-1] - gold[-1])


def test_trends_are_the_fitted_change_over_the_window():
    mon = HackingMonitor()
    for s, p, g in zip(STEPS, [0.5, 0.6, 0.7, 0.8], [0.5, 0.45, 0.4, 0.35]):
        out = mon.update(s, "general", p, g)
    assert out["proxy_trend"] == pytest.approx(0.3)
    assert out["gold_trend"] == pytest.approx(-0.15)
    # the rule is exactly at the threshold: a fitted rise of min_rise counts
    edge = HackingMonitor(HackingConfig(min_rise=0.3, min_fall=0.15))
    for s, p, g in zip(STEPS, [0.5, 0.6, 0.7, 0.8], [0.5, 0.45, 0.4, 0.35]):
        out = edge.update(s, "general", p, g)
    assert out["alarm"] is True


def test_require_proxy_peak():
    mon = HackingMonitor(HackingConfig(require_proxy_peak=True))
    outs = [mon.update(s, "t", p, g) for s, p, g in zip(STEPS, [0.5, 0.7, 0.9, 0.85], [0.5, 0.45, 0.4, 0.35])]
    assert outs[-1]["alarm"] is False


def test_single_evaluation_does_not_alarm():
    out = HackingMonitor(HackingConfig(window=1)).update(0, "general", 0.9, 0.1)
    assert out == {"gap": pytest.approx(0.8), "alarm": False, "proxy_trend": 0.0, "gold_trend": 0.0}


def test_window_slides_so_an_old_trend_stops_alarming():
    mon = HackingMonitor(HackingConfig(window=2))
    seq = [(0, 0.5, 0.5), (10, 0.6, 0.4), (20, 0.7, 0.3), (30, 0.7, 0.3), (40, 0.7, 0.3), (50, 0.7, 0.3)]
    alarms = [mon.update(s, "g", p, g)["alarm"] for s, p, g in seq]
    assert alarms == [False, False, True, True, False, False]
    assert mon.alarms == {"g": [20, 30]}


def test_tasks_are_independent():
    mon = HackingMonitor()
    for s, i in zip(STEPS, range(4)):
        hacked = mon.update(s, "general", 0.5 + 0.1 * i, 0.5 - 0.05 * i)
        fine = mon.update(s, "math", 0.3 + 0.1 * i, 0.3 + 0.1 * i)
    assert hacked["alarm"] is True and fine["alarm"] is False
    assert mon.alarms == {"general": [30]}


def test_state_round_trip_through_json_gives_the_same_future():
    seq = list(zip(STEPS + [40], [0.5, 0.6, 0.7, 0.8, 0.9], [0.5, 0.45, 0.4, 0.35, 0.3]))
    full = HackingMonitor()
    expected = [full.update(s, "general", p, g) for s, p, g in seq][-1]
    first = HackingMonitor()
    for s, p, g in seq[:3]:
        first.update(s, "general", p, g)
    resumed = HackingMonitor()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert resumed.state_dict() == first.state_dict()
    outs = [resumed.update(s, "general", p, g) for s, p, g in seq[3:]]
    assert outs[-1] == expected
    assert resumed.alarms == full.alarms == {"general": [30, 40]}


def test_same_step_again_replaces_it_and_backwards_is_an_error():
    mon = HackingMonitor(HackingConfig(window=1))
    mon.update(0, "g", 0.5, 0.5)
    assert mon.update(10, "g", 0.6, 0.4)["alarm"] is True
    assert mon.update(10, "g", 0.5, 0.5)["alarm"] is False  # re-evaluated after a resume: replaced
    assert mon.alarms == {"g": []}
    with pytest.raises(ValueError, match="step order"):
        mon.update(5, "g", 0.5, 0.5)


def test_non_finite_values_are_not_recorded():
    mon = HackingMonitor(HackingConfig(window=1))
    mon.update(0, "g", 0.5, 0.5)
    assert mon.update(10, "g", float("nan"), 0.4)["alarm"] is False
    assert len(mon.state_dict()["history"]["g"]) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 0}, "window"),
        ({"window": 2.5}, "window"),
        ({"min_rise": -0.1}, "min_rise"),
        ({"min_fall": float("inf")}, "min_fall"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HackingConfig(**kwargs)


def test_config_from_mapping_names_unknown_keys():
    assert HackingConfig.from_mapping({"window": 5}).window == 5
    with pytest.raises(ValueError, match="known"):
        HackingConfig.from_mapping({"windw": 5})
