"""``datarl study`` with micro models: a 2-arm x 2-seed study whose results match statistics computed here
from the same per-prompt scores, shared stages computed once, a killed study that resumes to the same
results, and every bad study file a one-line error before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")

from scipy import stats  # noqa: E402

from datarl.study import StudyError, load_study, run_study  # noqa: E402
from datarl.study.execute import LocalExecutor  # noqa: E402
from datarl_testing import MICRO_STUDY_ARMS as ARMS  # noqa: E402
from datarl_testing import micro_study_file, micro_suite_policy, read_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def micro_policy(tmp_path_factory):
    return micro_suite_policy(tmp_path_factory.mktemp("micro"))


@pytest.fixture(scope="module")
def finished(micro_policy, tmp_path_factory):
    """The micro study run once to the end (in-process driver, runs as worker processes)."""
    root = tmp_path_factory.mktemp("study")
    spec = load_study(micro_study_file(root, micro_policy), str(root / "out"))
    logs: list[str] = []
    start = time.perf_counter()
    results = run_study(spec, LocalExecutor(1), log=logs.append)
    return spec, results, logs, time.perf_counter() - start


def _gold(run_dir: str, step: int, task: str) -> dict[str, float]:
    rows = read_jsonl(os.path.join(run_dir, "train", "eval", f"step_{step:06d}.jsonl"))
    return {str(r["id"]): r["gold"] for r in rows if r["task"] == task and r["gold"] is not None}


def test_micro_study_matches_statistics_computed_by_hand(finished):
    # (its wall time, 55-100 s here depending on load, is measured in the note, never asserted: timing is no
    # pass/fail test)
    spec, results, logs, _seconds = finished
    by_task = {(c["metric"], c["task"]): c for c in results["comparisons"]}
    tasks = sorted(t for m, t in by_task if m == "gold")
    assert tasks == ["code", "general", "ifeval", "math"]
    for task in tasks:
        strata = []
        for seed in spec.seeds:
            arm = _gold(spec.run_dir("lowest", seed), 3, task)
            base = _gold(spec.run_dir("random", seed), 3, task)
            assert arm.keys() == base.keys() and len(arm) == 2  # the same eval prompts in every run
            strata.append(np.array([arm[k] - base[k] for k in sorted(arm)]))
        row = by_task[("gold", task)]
        expected = float(np.mean([s.mean() for s in strata]))
        assert row["difference"] == pytest.approx(expected, abs=1e-6)
        assert row["per_seed"] == {str(s): pytest.approx(float(x.mean()), abs=1e-6) for s, x in zip(spec.seeds, strata)}
        if all(np.all(s == s[0]) for s in strata):
            assert row["low"] == row["high"] == pytest.approx(expected, abs=1e-6)
        else:
            ci = stats.bootstrap(
                tuple(strata),
                lambda *xs, axis=-1: np.mean(np.stack([x.mean(axis=axis) for x in xs]), axis=0),
                n_resamples=2000,
                confidence_level=0.95,
                method="percentile",
                vectorized=True,
                rng=np.random.default_rng(0),
            ).confidence_interval
            assert (row["low"], row["high"]) == (pytest.approx(ci.low, abs=1e-6), pytest.approx(ci.high, abs=1e-6))
        assert row["verdict"] == "no difference resolved"  # two seeds never call a difference
        assert "needs at least 3" in row["why"]
        assert row["half_width"] == pytest.approx((row["high"] - row["low"]) / 2, abs=1e-6)
    steps = by_task[("steps_to_baseline", "math")]
    assert steps["seeds"] == 2 and set(steps["per_seed"]) == {"0", "1"}
    for name in ("results.json", "timings.json", "results.md", "study.html"):
        assert os.path.exists(os.path.join(spec.study_dir, name)), name
    md = open(os.path.join(spec.study_dir, "results.md")).read()
    assert "| gold | lowest vs random | math |" in md
    html = open(os.path.join(spec.study_dir, "study.html")).read()
    assert "data:image/png;base64," in html and "lowest vs random" in html


def test_shared_stages_are_computed_once_and_linked(finished):
    spec, _, logs, _ = finished
    computed: dict[str, int] = {}
    for run in spec.runs:
        ledger = json.load(open(os.path.join(run.run_dir, "stages.json")))
        for stage, entry in ledger.items():
            computed[stage] = computed.get(stage, 0) + (not entry.get("shared_from"))
    # one arm keeps the random pool prompts, the other the lowest-scoring: one scoring pass, two selections
    assert computed == {"synth": 1, "pairs": 1, "bt": 1, "genrm": 1, "references": 1, "pool_scores": 1, "select": 2,
                        "train": 4, "eval": 4, "report": 4}  # fmt: skip
    assert os.path.islink(os.path.join(spec.run_dir("lowest", 1), "judge"))
    timings = json.load(open(os.path.join(spec.study_dir, "timings.json")))
    assert timings["sharing"]["saved_seconds"] > 0


def test_a_rerun_skips_finished_runs_and_recomputes_nothing(finished):
    spec, results, _, _ = finished
    logs: list[str] = []
    again = run_study(spec, LocalExecutor(1), log=logs.append)
    assert sum("finished earlier, skipped" in m for m in logs) == 4
    assert again == results


def test_compact_results_alone_aggregate_the_study_in_another_directory(finished, tmp_path):
    # as a later session would: the committed compact/ folder, no run directories
    import dataclasses
    import shutil

    spec, results, _, _ = finished
    shutil.copytree(os.path.join(spec.study_dir, "compact"), tmp_path / "again" / "compact")
    moved = load_study(spec.path, str(tmp_path / "again"))
    logs: list[str] = []
    again = run_study(moved, LocalExecutor(1), log=logs.append)
    assert sum("finished earlier, skipped" in m for m in logs) == 4
    assert {k: v for k, v in again.items() if k != "study_dir"} == {
        k: v for k, v in results.items() if k != "study_dir"
    }
    assert dataclasses.replace(moved, study_dir=spec.study_dir).digest() == spec.digest()


def test_a_killed_study_resumes_to_the_same_results(finished, micro_policy, tmp_path):
    spec, results, _, _ = finished
    path = micro_study_file(tmp_path, micro_policy)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "datarl.cli", "study", path, "--study-dir", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    runs = [out / "runs" / arm / f"seed-{s}" for arm in ARMS for s in (0, 1)]
    deadline = time.time() + 240
    killed_in = None
    while time.time() < deadline and proc.poll() is None:
        done = [r for r in runs if (out / "compact" / r.parent.name / f"{r.name}.json.gz").exists()]
        # Mid-training: a checkpoint, but not the last step's (3 steps). A run whose training finished and
        # whose compact result is not written yet would rerun without resuming (the ledger skips its train
        # stage): under load that window is wide enough to be hit (seen once with a study beside the suite).
        mid = [
            r
            for r in runs
            if r not in done
            and list((r / "train" / "checkpoints").glob("step-*"))
            and not (r / "train" / "checkpoints" / "step-000003").exists()
        ]
        if done and mid:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes at once
            killed_in = mid[0]
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_in is not None, "the study ended before it could be killed mid-run"
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished earlier, skipped" in rerun.stderr
    assert "resuming" in (killed_in / "worker.err").read_text()
    again = json.load(open(out / "results.json"))
    expected = json.loads(json.dumps(results))
    for r in (again, expected):
        r.pop("study"), r.pop("study_dir")
    assert again == expected


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"arms": {"random": {"select.stratgy": "random"}, "lowest": {}}}, "stratgy"),
        ({"arms": {"random": {"judge.steps": 3}, "lowest": {}}}, "no section or key 'judge'"),
        ({"arms": {"random": {"train.ppo.stpes": 3}, "lowest": {}}}, "did you mean 'steps'"),
        ({"arms": {"a": {}, "b": {}}, "baseline": "a"}, "arms 'a' and 'b' are equal"),
        ({"baseline": "rnd"}, "did you mean 'random'"),
        ({"seeds": []}, "seeds: give a non-empty list"),
        ({"comparisons": [{"metric": "gold", "arms": ["nope"]}]}, "'nope' is not an arm"),
        ({"comparisons": [{"metric": "gain"}]}, "metric 'gain' is not one of"),
        ({"share": ["train"]}, "cannot be shared"),
        ({"seedz": [0]}, "did you mean 'seeds'"),
    ],
)
def test_bad_study_files_are_one_line_errors(micro_policy, tmp_path, change, fragment):
    path = micro_study_file(tmp_path, micro_policy, **change)
    with pytest.raises(StudyError, match=fragment) as info:
        load_study(path, str(tmp_path / "out"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_study_dir_made_by_another_study_is_refused(finished, micro_policy, tmp_path):
    spec, _, _, _ = finished
    other = load_study(micro_study_file(tmp_path, micro_policy, seeds=[0, 1, 2]), spec.study_dir)
    with pytest.raises(StudyError, match="made by a different study"):
        run_study(other, LocalExecutor(1), log=lambda m: None)


def test_cli_dry_run_prints_the_matrix_sharing_and_estimate(finished, micro_policy, tmp_path):
    spec, _, _, _ = finished
    path = micro_study_file(tmp_path, micro_policy, seeds=[0, 1, 2])
    proc = subprocess.run(
        [sys.executable, "-m", "datarl.cli", "study", path, "--study-dir", str(tmp_path / "new"), "--dry-run",
         "--costs-from", spec.run_dir("lowest", 0)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "lowest/seed-2" in out and "to run" in out
    assert "select      shared   computed 2x for 6 runs" in out
    assert "train       per run  computed 6x for 6 runs" in out
    assert "time left: about" in out
    assert not (tmp_path / "new").exists()


def test_cli_bad_study_is_one_line_exit_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("seeds: [0]\narms: {a: {}}\n")
    proc = subprocess.run([sys.executable, "-m", "datarl.cli", "study", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("datarl: error:") and "Traceback" not in proc.stderr


EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "studies")


@pytest.mark.parametrize("name", sorted(f[:-5] for f in os.listdir(EXAMPLES) if f.endswith(".yaml")))
def test_every_example_study_file_passes_its_checks(name, tmp_path):
    here = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "studies", f"{name}.yaml")
    spec = load_study(here, str(tmp_path / name))
    assert len(spec.runs) == len(spec.arms) * len(spec.seeds) and len(spec.seeds) >= 2
    assert not (tmp_path / name).exists()  # checking writes nothing
