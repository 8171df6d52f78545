"""`datarl report`: a realistic fake run directory (40 PPO steps, 5 evaluations, a hacking alarm on general)
rendered to a self-contained page; missing files and empty runs degrade to messages, never crashes."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from datarl.cli import main
from datarl.metrics import HackingMonitor
from datarl.report import SECTIONS, ReportError, write_report

TASKS = ("math", "code", "ifeval", "general")
SOURCE = {"math": "rtv.math", "code": "rtv.code", "ifeval": "rtv.ifeval", "general": "bt"}
PHASES = [
    (1, "code_only", {"code": 1.0}),
    (11, "code_math", {"code": 0.5, "math": 0.5}),
    (21, "ramp", {"code": 0.35, "math": 0.35, "ifeval": 0.15, "general": 0.15}),
    (31, "full", {"code": 0.25, "math": 0.25, "ifeval": 0.25, "general": 0.25}),
]
GOLD = {
    "math": [0.20, 0.28, 0.36, 0.41, 0.45],
    "code": [0.30, 0.38, 0.45, 0.50, 0.52],
    "ifeval": [0.40, 0.41, 0.43, 0.44, 0.46],
    "general": [0.50, 0.52, 0.45, 0.38, 0.33],
}
PROXY_GENERAL = [0.50, 0.58, 0.66, 0.75, 0.85]  # bt keeps rising while gold falls: the alarm fires
EVAL_STEPS = [0, 10, 20, 30, 40]


def _wilson(p: float, n: int) -> tuple[float, float]:
    z = 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _phase(step: int) -> tuple[int, str, dict[str, float]]:
    index = max(i for i, (start, _, _) in enumerate(PHASES) if step >= start)
    return index, PHASES[index][1], PHASES[index][2]


def _metrics_rows(steps: int = 40) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for step in range(1, steps + 1):
        index, name, mix = _phase(step)
        row = {
            "step": step,
            "time_s": 3.1 * step,
            "ppo/kl": 0.002 * step + rng.uniform(0, 0.01),
            "ppo/entropy": 2.5 - 0.02 * step + rng.uniform(-0.05, 0.05),
            "ppo/clipfrac": rng.uniform(0.05, 0.2),
            "ppo/value_loss": 0.3 / (1 + step / 10),
            "ppo/policy_loss": rng.uniform(-0.05, 0.05),
            "ppo/kl_coef": 0.05,
            "response/length": 60 + step + rng.uniform(-5, 5),
            "response/cut_off": rng.uniform(0, 0.1),
            "curriculum/phase": index,
            "curriculum/phase_name": name,
            "perf/step_s": 3.1,
        }
        rewards = []
        for task in TASKS:
            row[f"curriculum/realised/{task}"] = mix.get(task, 0.0)
            if task in mix:  # tasks outside the phase have no reward that step, as in a real run
                value = 0.3 + 0.01 * step + rng.uniform(-0.05, 0.05)
                row[f"reward/task/{task}"] = row[f"reward/source/{SOURCE[task]}"] = value
                rewards.append(value)
        row["reward/mean"] = sum(rewards) / len(rewards)
        rows.append(row)
    return rows


def _eval_rows() -> list[dict]:
    monitor, rows = HackingMonitor(), []
    for i, step in enumerate(EVAL_STEPS):
        row: dict = {"step": step}
        for j, task in enumerate(TASKS):
            gold, n, spread = GOLD[task][i], 100, 0.1 * j  # general samples differ most, math least
            low, high = _wilson(gold, n)
            row.update(
                {
                    f"gold/{task}": gold,
                    f"gold/{task}/ci95_low": low,
                    f"gold/{task}/ci95_high": high,
                    f"gold/{task}/n": n,
                    f"diversity/{task}/max_edit": 0.3 + spread - 0.04 * i,
                    f"diversity/{task}/distinct_1": 0.3 + spread - 0.03 * i,
                    f"diversity/{task}/distinct_2": 0.4 + spread - 0.04 * i,
                    f"diversity/{task}/answers": 2.5 + 5 * spread - 0.3 * i,
                }
            )
        out = monitor.update(step, "general", PROXY_GENERAL[i], GOLD["general"][i])
        row.update(
            {
                "proxy/general": PROXY_GENERAL[i],
                "hacking/gap/general": out["gap"],
                "hacking/alarm/general": out["alarm"],
            }
        )
        rows.append(row)
    assert monitor.alarms == {"general": [30, 40]}  # the fixture's premise
    return rows


def _selection_report() -> dict:
    """As src/datarl/select/prepo_report.py writes it: histograms of per-prompt mean scores over [0, 1]."""
    domains = {}
    for d in TASKS:
        counts, kept = [30, 25, 20, 20, 20, 20, 20, 15, 15, 15], [20, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        domains[d] = {
            "count": 200,
            "eligible": 200,
            "kept": 20,
            "dropped": 0,
            "dropped_by_reason": {},
            "mean": 0.41,
            "std": 0.3,
            "threshold": 0.05,
            "threshold_z": -1.2,
            "histogram": {"edges": [i / 10 for i in range(11)], "counts": counts, "kept_counts": kept},
        }
    domains["general"]["dropped_by_reason"] = {"duplicate_of_train": 3}
    return {
        "strategy": "lowest",
        "normalise": "zscore",
        "scope": "domain",
        "fraction": 0.1,
        "count": None,
        "seed": 0,
        "samples_per_prompt": 4,
        "drop_unsolvable": False,
        "dedup": True,
        "kept": 80,
        "dropped": 3,
        "domains": domains,
        "kept_ids": [f"pool:{i}" for i in range(80)],
        "drops": [],
    }


def make_run_dir(root: Path, *, selection: bool = True, summary: bool = True) -> Path:
    """A run directory as `datarl train` writes it (see src/datarl/report/load.py for the layout)."""
    run = root / "run"
    run.mkdir(parents=True)
    config = {
        "policy": "tiny",
        "steps": 40,
        "seed": 0,
        "curriculum": "paper",
        "reward": {
            "router": dict(SOURCE),
            "sources": {"bt": {"model": "/cache/bt"}, "genrm.bon": {"judge": str(root / "judge")}},
        },
    }
    (root / "judge").mkdir()
    heldout = {
        "gt": {
            "agreement": 0.912,
            "balanced_agreement": 0.861,
            "position_consistency": 0.83,
            "items": 500.0,
            "roc_auc": 0.947,
        },
        "pairs": {"agreement": 0.771, "balanced_agreement": 0.771, "position_consistency": 0.802, "items": 640.0},
    }
    (root / "judge" / "datarl_genrm.json").write_text(json.dumps({"heldout": heldout}))
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _metrics_rows()))
    evals = _eval_rows()
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    if summary:

        def block(row):
            return {
                t: {
                    "n": row[f"gold/{t}/n"],
                    "mean": row[f"gold/{t}"],
                    "ci95_low": row[f"gold/{t}/ci95_low"],
                    "ci95_high": row[f"gold/{t}/ci95_high"],
                }
                for t in TASKS
            }

        (run / "summary.json").write_text(
            json.dumps(
                {
                    "steps": 40,
                    "best_step": 40,
                    "before": block(evals[0]),
                    "after": block(evals[-1]),
                    "best": block(evals[-1]),
                }
            )
        )
    if selection:
        (run / "selection").mkdir()
        (run / "selection" / "report.json").write_text(json.dumps(_selection_report()))
    return run


def _section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = make_run_dir(tmp_path_factory.mktemp("full"))
    html_path, png_path = write_report(run)
    return run, html_path, png_path, html_path.read_text(encoding="utf-8")


def test_every_section_is_present_and_drawn(full_report):
    run, html_path, _, page = full_report
    assert html_path == run / "report.html"
    assert 'id="header"' in page
    for sid in SECTIONS:
        body = _section(page, sid)
        if sid not in ("before-after", "judge", "claims"):
            assert "<img" in body, f"{sid} drew no figure"
        assert 'class="msg"' not in body, f"{sid} says it has no data: {body[:200]}"
    header = page.split("</header>")[0]
    for shown in ("tiny", "40 PPO steps logged", "rtv.math", "bt", "5 evaluations"):
        assert shown in header


def test_judge_section_shows_the_heldout_table(full_report, tmp_path):
    body = _section(full_report[3], "judge")
    for shown in ("0.912", "0.861", "0.830", "0.947", "0.771", "0.802", "500", "640", "rtv.math", "gold ordering"):
        assert shown in body
    # a judge trained outside the pipeline (no held-out table) says so instead of showing nothing
    run = make_run_dir(tmp_path)
    (tmp_path / "judge" / "datarl_genrm.json").write_text(json.dumps({"metrics": {}}))
    html_path, _ = write_report(run)
    assert "no held-out table" in _section(html_path.read_text(encoding="utf-8"), "judge")


def test_page_is_self_contained(full_report):
    page = full_report[3]
    images = re.findall(r'<img[^>]*\bsrc="([^"]*)"', page)
    assert len(images) == 6  # every section but the before/after and judge tables
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', page, re.I)
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_main_png_is_written(full_report):
    from PIL import Image

    _, _, png_path, _ = full_report
    assert png_path.name == "report.png" and png_path.stat().st_size > 20_000
    with Image.open(png_path) as im:
        assert im.size == (1300, 900)
        assert len(im.convert("RGB").getcolors(1 << 20) or []) > 50


def test_alarm_is_marked(full_report):
    body = _section(full_report[3], "hacking")
    assert "Hacking alarm: general at steps 30, 40" in body and 'class="alarm"' in body


def test_before_after_table_has_cis_and_differences(full_report):
    body = _section(full_report[3], "before-after")
    row = re.search(r"<tr><td>math</td>(.*?)</tr>", body).group(1)
    assert "0.200 [" in row and "0.450 [" in row and "(n=100)" in row
    assert "+0.250 [" in row and "better" in row  # 0.20 -> 0.45 at n=100 is beyond the intervals
    general = re.search(r"<tr><td>general</td>(.*?)</tr>", body).group(1)
    assert "-0.170 [" in general and "worse" in general
    assert "final, step 40" in body and "best (step 40)" in body


def test_selection_section_shows_the_report(full_report):
    body = _section(full_report[3], "selection")
    assert "lowest" in body and "zscore" in body and "<td>math</td>" in body
    assert "duplicate_of_train: 3" in body and "pool:1" not in body  # ids are not dumped into the page


def test_missing_optional_files_are_messages_and_the_table_comes_from_eval(tmp_path):
    run = make_run_dir(tmp_path, selection=False, summary=False)
    out = tmp_path / "elsewhere" / "r.html"
    html_path, png_path = write_report(run, out)
    assert (html_path, png_path) == (out, tmp_path / "elsewhere" / "r.png") and png_path.stat().st_size > 0
    page = html_path.read_text()
    assert "no selection in this run" in _section(page, "selection")
    body = _section(page, "before-after")
    assert "0.200 [" in body and "0.450 [" in body and "best (step 40)" in body


def test_an_empty_run_dir_gives_a_page_of_messages(tmp_path):
    html_path, png_path = write_report(tmp_path)
    page = html_path.read_text()
    for sid in SECTIONS:
        assert 'class="msg"' in _section(page, sid)
    assert "metrics.jsonl: missing or empty" in page and png_path.stat().st_size > 0


def test_bad_lines_and_missing_keys_do_not_crash(tmp_path):
    run = make_run_dir(tmp_path, selection=False)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 41, "reward/mean": 0.5, "ppo/kl": null}\n{"step": 42, "rew')  # killed mid-write
    with (run / "eval.jsonl").open("a") as f:
        f.write('{"step": 50, "gold/math": "n/a", "hacking/gap/general": NaN}\n')
    (run / "config.json").write_text("[1, 2]")
    page = write_report(run)[0].read_text()
    assert "metrics.jsonl: 1 unreadable line(s)" in page and "config.json: expected a JSON object" in page
    assert "<img" in _section(page, "training")


def test_best_is_the_evaluation_with_the_highest_mean_gold(tmp_path):
    rows = [
        {"step": 0, "gold/math": 0.2, "gold/code": 0.3},
        {"step": 10, "gold/math": 0.5, "gold/code": 0.4},
        {"step": 20, "gold/math": 0.3, "gold/code": 0.3},
    ]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    body = _section(write_report(tmp_path)[0].read_text(), "before-after")
    assert "final, step 20" in body and "best (step 10)" in body
    assert "+0.300</td>" in re.search(r"<tr><td>math</td>(.*?)</tr>", body).group(1)  # no CIs: plain difference


def test_paired_gains_replace_the_two_interval_approximation(tmp_path):
    rows = [
        {
            "step": 0,
            "gold/math": 0.20,
            "gold/math/ci95_low": 0.16,
            "gold/math/ci95_high": 0.25,
            "gold/code": 0.50,
            "gold/code/ci95_low": 0.44,
            "gold/code/ci95_high": 0.56,
        },
        {
            "step": 40,
            "gold/math": 0.25,
            "gold/math/ci95_low": 0.20,
            "gold/math/ci95_high": 0.30,
            "gold/code": 0.52,
            "gold/code/ci95_low": 0.46,
            "gold/code/ci95_high": 0.58,
            "gain/math": 0.05,
            "gain/math/ci95_low": 0.02,
            "gain/math/ci95_high": 0.08,
        },
    ]
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    body = _section(write_report(tmp_path)[0].read_text(), "before-after")
    math_row = re.search(r"<tr><td>math</td>(.*?)</tr>", body).group(1)
    assert "+0.050 [+0.020, +0.080]" in math_row and "better" in math_row  # paired: beyond zero
    code_row = re.search(r"<tr><td>code</td>(.*?)</tr>", body).group(1)
    assert "+0.020 [" in code_row and "better" not in code_row  # no paired gain: the two-interval fallback
    assert "is paired" in body


def test_missing_run_dir_is_a_report_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ReportError, match=re.escape(str(missing))):
        write_report(missing)


def test_cli_prints_the_path_and_exits_2_on_a_missing_dir(tmp_path, capsys):
    run = make_run_dir(tmp_path, selection=False)
    assert main(["report", str(run), "-o", str(tmp_path / "out.html")]) == 0
    assert str(tmp_path / "out.html") in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("datarl: error: run directory") and "does not exist" in err and "\n" not in err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.integration
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_headless_chromium_renders_the_page(full_report, tmp_path):
    from PIL import Image

    html_path = full_report[1]
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1400,5000",
        html_path.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    assert shot.is_file() and shot.stat().st_size > 50_000
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        assert rgb.size == (1400, 5000)
        assert len(rgb.getcolors(1 << 22) or []) > 500  # plots, not a blank page
        # content reaches the bottom third: every section laid out, not just the header
        bottom = rgb.crop((0, 3300, 1400, 5000))
        assert len(bottom.getcolors(1 << 22) or []) > 50


def test_claims_section_says_what_one_run_can_and_cannot_show(full_report):
    _, _, _, page = full_report
    body = _section(page, "claims")
    for study in ("hacking.yaml", "prepo.yaml", "prepo_scale.yaml", "curriculum.yaml"):
        assert study in body
    assert "in part" in body and "at least three seeds" in body
