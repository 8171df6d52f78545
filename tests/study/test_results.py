"""A study's statistics from per-prompt scores in the files a run writes (``train/eval/step_<k>.jsonl``):
the paired differences, the stratified bootstrap interval, per-seed values, sign agreement, the verdict,
steps to the baseline's final gold and the hacking gap, checked against numbers computed here."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("scipy")

from scipy import stats  # noqa: E402

from datarl.study.results import compute_results, load_run_scores  # noqa: E402
from datarl.study.spec import Comparison, RunSpec, StudySpec  # noqa: E402
from datarl_testing import write_jsonl  # noqa: E402

SEEDS = (0, 1, 2)


def _spec(root: str) -> StudySpec:
    runs = tuple(
        RunSpec(arm, s, {}, os.path.join(root, "runs", arm, f"seed-{s}")) for arm in ("base", "new") for s in SEEDS
    )
    return StudySpec(
        path=os.path.join(root, "study.yaml"),
        study_dir=root,
        seeds=SEEDS,
        seed_keys=("train.seed",),
        baseline="base",
        arms={"base": {}, "new": {"x": 1}},
        comparisons=(
            Comparison("gold", "new", "base", ("math",)),
            Comparison("hacking_gap", "new", "base", ("general",)),
            Comparison("steps_to_baseline", "new", "base", ("math",)),
        ),
        share=(),
        runs=runs,
    )


def _write(run: RunSpec, step: int, math_gold: list[float | None], general: list[tuple[float, float]]) -> None:
    rows = [{"index": i, "id": f"m{i}", "task": "math", "gold": g, "proxy": None} for i, g in enumerate(math_gold)]
    rows += [
        {"index": 100 + i, "id": f"g{i}", "task": "general", "gold": g, "proxy": p} for i, (p, g) in enumerate(general)
    ]
    os.makedirs(os.path.join(run.run_dir, "train", "eval"), exist_ok=True)
    write_jsonl(os.path.join(run.run_dir, "train", "eval", f"step_{step:06d}.jsonl"), rows)


@pytest.fixture()
def world(tmp_path):
    spec = _spec(str(tmp_path))
    rng = np.random.default_rng(7)
    truth: dict[tuple[str, int], dict[str, list]] = {}
    for run in spec.runs:
        lift = 0.25 if run.arm == "new" else 0.0
        os.makedirs(run.run_dir)
        for step in (0, 10, 20):
            p = min(1.0, 0.2 + lift * step / 20 + 0.01 * run.seed)
            math_gold = [float(x) for x in rng.random(40) < p]
            math_gold[3] = None  # no gold check for this prompt: left out of every comparison
            general = [(float(a), float(b)) for a, b in zip(rng.random(12), rng.random(12))]
            _write(run, step, math_gold, general)
            truth[(run.name, step)] = {"math": math_gold, "general": general}
    return spec, truth


def test_comparisons_match_numbers_computed_by_hand(world):
    spec, truth = world
    results = compute_results(spec, [load_run_scores(r) for r in spec.runs])
    rows = {c["metric"]: c for c in results["comparisons"]}

    strata = []
    for s in SEEDS:
        new, base = truth[(f"new/seed-{s}", 20)]["math"], truth[(f"base/seed-{s}", 20)]["math"]
        strata.append(np.array([a - b for a, b in zip(new, base) if a is not None and b is not None]))
    ci = stats.bootstrap(
        tuple(strata),
        lambda *xs, axis=-1: np.mean(np.stack([x.mean(axis=axis) for x in xs]), axis=0),
        n_resamples=2000,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(0),
    ).confidence_interval
    gold = rows["gold"]
    expected = float(np.mean([x.mean() for x in strata]))
    assert gold["difference"] == pytest.approx(expected, abs=1e-6)
    assert (gold["low"], gold["high"]) == (pytest.approx(ci.low, abs=1e-6), pytest.approx(ci.high, abs=1e-6))
    assert gold["prompts"] == 39 and gold["seeds"] == 3
    assert gold["per_seed"] == {str(s): pytest.approx(float(x.mean()), abs=1e-6) for s, x in zip(SEEDS, strata)}
    assert gold["seeds_agreeing"] == sum((x.mean() > 0) == (expected > 0) and x.mean() != 0 for x in strata)
    assert gold["verdict"] == "better"  # a 25-point lift over 39 prompts x 3 seeds: both intervals above 0
    by_seed = stats.bootstrap(
        (np.array([x.mean() for x in strata]),),
        lambda x, axis=-1: x.mean(axis=axis),
        n_resamples=2000,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert (gold["seed_low"], gold["seed_high"]) == (
        pytest.approx(by_seed.low, abs=1e-6),
        pytest.approx(by_seed.high, abs=1e-6),
    )

    gaps = []
    for s in SEEDS:
        new, base = truth[(f"new/seed-{s}", 20)]["general"], truth[(f"base/seed-{s}", 20)]["general"]
        gaps.append(np.array([(pa - ga) - (pb - gb) for (pa, ga), (pb, gb) in zip(new, base)]))
    assert rows["hacking_gap"]["difference"] == pytest.approx(float(np.mean([g.mean() for g in gaps])), abs=1e-6)
    gap = rows["hacking_gap"]
    sides = {"better" if hi < 0 else "worse" if lo > 0 else "none" for lo, hi in ((gap["low"], gap["high"]),
             (gap["seed_low"], gap["seed_high"]))}  # fmt: skip
    assert gap["verdict"] == (sides.pop() if len(sides) == 1 and "none" not in sides else "no difference resolved")

    per_seed = {}
    for s in SEEDS:
        target = np.mean([g for g in truth[(f"base/seed-{s}", 20)]["math"] if g is not None])

        def first(arm: str, seed: int, target: float) -> int:
            for step in (0, 10, 20):
                if np.mean([g for g in truth[(f"{arm}/seed-{seed}", step)]["math"] if g is not None]) >= target - 1e-12:
                    return step
            return 30

        per_seed[str(s)] = float(first("new", s, target) - first("base", s, target))
    assert rows["steps_to_baseline"]["per_seed"] == per_seed


def test_gap_growth_is_the_change_of_each_prompts_gap_from_the_first_evaluation(world):
    # Two sources can start at different gap levels (a judge against a best-of-N reference sits near 0.5):
    # the growth compares what training did to the gap, per prompt and seed, not the level it started at.
    import dataclasses

    spec, truth = world
    spec = dataclasses.replace(spec, comparisons=(Comparison("hacking_gap_growth", "new", "base", ("general",)),))
    (row,) = compute_results(spec, [load_run_scores(r) for r in spec.runs])["comparisons"]

    def growth(arm: str, seed: int) -> np.ndarray:
        first, last = truth[(f"{arm}/seed-{seed}", 0)]["general"], truth[(f"{arm}/seed-{seed}", 20)]["general"]
        return np.array([(p1 - g1) - (p0 - g0) for (p0, g0), (p1, g1) in zip(first, last)])

    per_seed = [growth("new", s) - growth("base", s) for s in SEEDS]
    assert row["difference"] == pytest.approx(float(np.mean([d.mean() for d in per_seed])), abs=1e-6)
    assert row["per_seed"] == {str(s): pytest.approx(float(d.mean()), abs=1e-6) for s, d in zip(SEEDS, per_seed)}
    # not the level: the last gap alone gives another number
    level = [
        np.array([(pa - ga) - (pb - gb) for (pa, ga), (pb, gb) in zip(
            truth[(f"new/seed-{s}", 20)]["general"], truth[(f"base/seed-{s}", 20)]["general"])])
        for s in SEEDS
    ]  # fmt: skip
    assert abs(row["difference"] - float(np.mean([d.mean() for d in level]))) > 1e-3


def test_final_scores_and_curves(world):
    spec, truth = world
    results = compute_results(spec, [load_run_scores(r) for r in spec.runs])
    final = results["final"]["new"]["math"]
    means = [np.mean([g for g in truth[(f"new/seed-{s}", 20)]["math"] if g is not None]) for s in SEEDS]
    assert final["mean"] == pytest.approx(float(np.mean(means)), abs=1e-6)
    assert final["low"] <= final["mean"] <= final["high"]
    assert "iqm" not in final  # three seeds: the per-seed values are listed instead
    curve = results["curves"]["base"]["math"]
    assert curve["steps"] == [0, 10, 20] and curve["runs"] == [3, 3, 3]
    assert all(lo <= m <= hi for lo, m, hi in zip(curve["min"], curve["mean"], curve["max"]))
    assert set(results["hacking_gap"]["new"]) == {"general"}


def test_a_run_without_evaluations_gives_no_data_not_an_error(world, tmp_path):
    spec, _ = world
    runs = [load_run_scores(r) for r in spec.runs if r.arm == "base"]  # the new arm never ran
    results = compute_results(spec, runs)
    assert [c["verdict"] for c in results["comparisons"]] == ["no data"] * 3
    assert "new" not in results["final"]


@pytest.mark.parametrize(
    "prompts, seeds, n, call",
    [
        ((0.01, 0.03), (0.005, 0.04), 3, "better"),
        ((0.01, 0.03), (-0.01, 0.04), 3, "no difference resolved"),  # the seeds scatter across 0
        ((-0.03, -0.01), (-0.04, -0.02), 3, "worse"),
        ((0.01, 0.03), (0.005, 0.04), 2, "no difference resolved"),  # two seeds: never called
        ((-0.01, 0.03), (0.005, 0.04), 5, "no difference resolved"),
    ],
)
def test_the_decision_needs_three_seeds_and_both_intervals(prompts, seeds, n, call):
    from datarl.metrics.compare import decide

    verdict, why = decide(0.02 if call != "worse" else -0.03, prompts, seeds, n, True)
    assert verdict == call and why


def test_overall_is_the_macro_average_over_tasks(world):
    import dataclasses

    spec, truth = world
    spec = dataclasses.replace(spec, comparisons=(Comparison("gold", "new", "base", ("overall",)),))
    row = compute_results(spec, [load_run_scores(r) for r in spec.runs])["comparisons"][0]
    per_seed = {}
    for s in SEEDS:
        new, base = truth[(f"new/seed-{s}", 20)], truth[(f"base/seed-{s}", 20)]
        math_d = [a - b for a, b in zip(new["math"], base["math"]) if a is not None and b is not None]
        general_d = [a[1] - b[1] for a, b in zip(new["general"], base["general"])]
        per_seed[str(s)] = (np.mean(math_d) + np.mean(general_d)) / 2
    assert row["task"] == "overall" and row["prompts"] == 39 + 12
    assert row["per_seed"] == {k: pytest.approx(v, abs=1e-6) for k, v in per_seed.items()}
    assert row["difference"] == pytest.approx(np.mean(list(per_seed.values())), abs=1e-6)


def test_rollouts_and_seconds_to_the_baselines_gold_are_ratios_per_seed(world):
    import dataclasses

    spec, truth = world
    per_step = {"base": (64, 2.0), "new": (48, 1.5)}  # rollouts and seconds of one PPO step, per arm
    for run in spec.runs:
        rollouts, seconds = per_step[run.arm]
        rows = [
            {"step": k, "difficulty/rollouts": rollouts * (k + 1), "perf/step_s": seconds + 0.01 * run.seed}
            for k in range(20)
        ]
        write_jsonl(os.path.join(run.run_dir, "train", "metrics.jsonl"), rows)
    spec = dataclasses.replace(
        spec,
        comparisons=(
            Comparison("rollouts_to_baseline", "new", "base", ("math",)),
            Comparison("seconds_to_baseline", "new", "base", ("math",)),
        ),
    )
    results = compute_results(spec, [load_run_scores(r) for r in spec.runs])
    rows = {c["metric"]: c for c in results["comparisons"]}

    def first(arm: str, seed: int, target: float) -> tuple[int, bool]:
        for step in (0, 10, 20):
            if np.mean([g for g in truth[(f"{arm}/seed-{seed}", step)]["math"] if g is not None]) >= target - 1e-12:
                return step, True
        return 30, False

    for metric, key in (("rollouts_to_baseline", 0), ("seconds_to_baseline", 1)):
        expected = {}
        for s in SEEDS:
            target = np.mean([g for g in truth[(f"base/seed-{s}", 20)]["math"] if g is not None])
            costs = []
            for arm in ("new", "base"):
                step, _ = first(arm, s, target)  # past the end: the last cost scaled by 30/20
                rate = per_step[arm][key] + (0.01 * s if key else 0)
                costs.append(rate * step)
            expected[str(s)] = costs[0] / costs[1] if costs[1] else None
        row = rows[metric]
        usable = {k: v for k, v in expected.items() if v is not None}
        assert row["per_seed"] == {k: pytest.approx(v, abs=1e-5) for k, v in usable.items()}, metric
        assert row["difference"] == pytest.approx(float(np.mean(list(usable.values()))), abs=1e-5)
        assert row["low"] <= row["difference"] <= row["high"]
    from datarl.study.results import results_markdown, run_matrix

    table = results_markdown(results, run_matrix([load_run_scores(r) for r in spec.runs]))
    line = next(x for x in table.splitlines() if x.startswith("| rollouts_to_baseline"))
    assert f"{rows['rollouts_to_baseline']['difference']:.2f}x [" in line  # a ratio, unsigned, with its interval


def test_the_world_check_flags_runs_whose_models_were_built_differently(tmp_path):
    from datarl.study.results import RunScores, _world, world_check

    def model(name: str, weights: bytes) -> str:
        d = tmp_path / name
        d.mkdir()
        (d / "model.safetensors").write_bytes(weights)
        (d / "datarl_sft.json").write_text(name)  # metadata (build times and the like) is not the world
        return str(d)

    same_a, same_b, other = model("a", b"w1"), model("b", b"w1"), model("c", b"w2")
    worlds = [_world({"sft": {"outputs": [p]}}) for p in (same_a, same_b, other)]
    assert worlds[0] == worlds[1] != worlds[2]
    runs = [RunScores("x", s, world=w, finished=True) for s, w in enumerate(worlds)]
    assert world_check(runs[:2]) == {"status": "same", "unverified": []}
    mixed = world_check(runs)
    assert mixed["status"] == "mixed" and sorted(map(len, mixed["groups"])) == [1, 2]
    old = RunScores("y", 0, finished=True)  # compact results from before the digests
    assert world_check([*runs[:2], old]) == {"status": "unverified", "unverified": ["y/seed-0"]}
