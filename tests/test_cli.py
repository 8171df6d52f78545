"""The command line as a user runs it: exit codes, one-line errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATARL = [sys.executable, "-m", "datarl.cli"]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*DATARL, *args], capture_output=True, text=True, timeout=300, **kw)


def test_help_lists_commands():
    res = run("--help")
    assert res.returncode == 0 and "score" in res.stdout and "validate" in res.stdout
    res = run("score", "--help")
    assert "--timeout" in res.stdout and "--strict" in res.stdout and "--workers" in res.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("score", "/nonexistent/in.jsonl", "-o", "/tmp/x.jsonl"), "no such file"),
        (("validate", "/nonexistent/in.jsonl"), "no such file"),
        (("select", "/nonexistent/in.jsonl", "-o", "/tmp/x.jsonl", "--low", "0.2"), "remove low/high, or use"),
        (("select", "/nonexistent/in.jsonl", "-o", "/tmp/x.jsonl", "--strategy", "band", "--high", "2"), "in [0, 1]"),
    ],
)
def test_user_mistakes_give_one_line_errors_not_tracebacks(args, fragment):
    res = run(*args)
    assert res.returncode == 2
    assert fragment in res.stderr and "Traceback" not in res.stderr


def test_bad_config_is_reported_with_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("router:\n  math: rtv.maths\n")
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"task": "math", "prompt": "p", "ground_truth": "1", "response": "1"}) + "\n")
    res = run("score", str(inp), "-o", str(tmp_path / "o.jsonl"), "--config", str(cfg))
    assert res.returncode == 2 and "unknown source 'rtv.maths'" in res.stderr and "Traceback" not in res.stderr


def test_validate_reports_bad_lines_and_exit_code(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        json.dumps({"task": "math", "prompt": "p", "ground_truth": "1"})
        + "\n"
        + json.dumps({"task": "math", "prompt": "p"})
        + "\n"
    )
    res = run("validate", str(inp))
    assert res.returncode == 1
    assert f"{inp}:2: ground_truth: missing" in res.stderr
    assert "2 lines, 1 valid" in res.stdout
    assert run("validate", str(SHARED / "math_qwen_math_cot.jsonl")).returncode == 0


def test_score_prints_summary(tmp_path):
    out = tmp_path / "o.jsonl"
    res = run("score", str(SHARED / "math_qwen_math_cot.jsonl"), "-o", str(out), "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert "scored 400 of 400 lines" in res.stdout and "rtv.math" in res.stdout and "items/s" in res.stdout
    assert len(out.read_text().splitlines()) == 400


def _session_processes(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                pids.append(int(entry))
    return pids


def test_ctrl_c_leaves_no_output_no_temp_file_and_no_processes(tmp_path):
    src = (SHARED / "math_gsm8k_solutions.jsonl").read_text()
    inp = tmp_path / "big.jsonl"
    inp.write_text(src * 8)  # ~21k items: long enough to interrupt mid-run
    out = tmp_path / "o.jsonl"
    # As from a terminal: SIGINT at its default. A test run started in the background by a non-interactive
    # shell inherits SIGINT ignored, and datarl (like any process) rightly keeps ignoring it: the run then
    # finished with exit 0 and this test failed, twice, until the child's disposition was set here.
    proc = subprocess.Popen(
        [*DATARL, "score", str(inp), "-o", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".o.jsonl.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl"]
    time.sleep(0.3)
    assert _session_processes(proc.pid) == []


def test_sandbox_check_passes_here():
    res = run("sandbox-check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all checks passed" in res.stdout and "no network" in res.stdout


def test_partial_credit_flag_reaches_the_code_verifier(tmp_path):
    rec = {
        "task": "code",
        "prompt": "is_even",
        "response": "```python\ndef is_even(n):\n    return n == 2\n```",
        "tests": {"type": "assert", "code": "assert is_even(2)\nassert is_even(4)"},
    }
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(rec) + "\n")
    for flags, expected in (([], 0.0), (["--partial-credit"], 0.5)):
        out = tmp_path / "o.jsonl"
        res = run("score", str(inp), "-o", str(out), "--workers", "1", *flags)
        assert res.returncode == 0, res.stderr
        got = json.loads(out.read_text())
        assert got["reward"] == expected and got["reward_source"] == "rtv.code"


def test_interrupt_raised_inside_a_finaliser_is_not_lost():
    # CI bug: SIGTERM arrived while a regex object's __del__ ran; Python printed "Exception ignored" and
    # dropped the KeyboardInterrupt, and `datarl select` went on to exit 0.
    script = """
import sys, time
from datarl.cli import install_interrupt_handlers
install_interrupt_handlers()
class Finalised:
    def __del__(self):
        raise KeyboardInterrupt
try:
    Finalised()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.001)
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(0)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert "Exception ignored" not in proc.stderr


def _hub_cache(root: Path, repo: str, model_dir: str) -> dict[str, str]:
    """A local Hugging Face cache holding ``model_dir`` as hub repository ``repo`` (laid out as a download
    leaves it); the environment that points the hub library at it, offline."""
    import shutil

    entry = root / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text("0" * 40)
    shutil.copytree(model_dir, entry / "snapshots" / ("0" * 40))
    return {**os.environ, "HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_an_off_the_shelf_reward_model_drives_score_select_and_references(tmp_path):
    pytest.importorskip("torch")
    from datarl.rewards.bt import fit_mapping, logistic
    from datarl_testing import WORDS, micro_answering_policy, micro_reward_model, read_jsonl, write_jsonl

    policy = micro_answering_policy(tmp_path / "policy")  # its samples end: none is cut off (scored 0)
    rm = micro_reward_model(tmp_path / "rm", policy)  # no datarl_bt.json: a model from elsewhere
    env = _hub_cache(tmp_path / "hub", "acme/tiny-rm", rm)
    prompts = [f"Tell me about the {w} number {i}." for i, w in enumerate(WORDS[:6])]
    answers = ["The river is nice and calm.", "No.", "I like the lamp a lot.", "The snow."]
    rows = [{"id": f"g{i}", "task": "general", "prompt": p, "response": answers[i % 4]} for i, p in enumerate(prompts)]
    inp = write_jsonl(tmp_path / "in.jsonl", [*rows, {"id": "x", "task": "general", "prompt": prompts[0]}])

    # datarl score, the model given by its hub name (from the local cache): a logistic fitted on the file
    cfg = tmp_path / "score.json"
    cfg.write_text(json.dumps({"router": {"general": "bt"}, "sources": {"bt": {"model": "acme/tiny-rm"}}}))
    out = tmp_path / "scored.jsonl"
    res = run("score", inp, "-o", str(out), "--workers", "1", "--config", str(cfg), env=env)
    assert res.returncode == 0, res.stderr
    scored = [r for r in read_jsonl(out) if "reward" in r]
    assert len(scored) == 6 and "reward" not in read_jsonl(out)[-1]
    shift, scale = fit_mapping([r["reward_info"]["raw"] for r in scored])
    for r in scored:
        info = r["reward_info"]
        assert r["reward_source"] == "bt" and info["bt_model"] == "acme/tiny-rm" and info["bt_input"] == "chat_template"
        assert info["mapping_from"] == {"shift": "fit", "scale": "fit"} and info["fitted_on"] == 6
        assert r["reward"] == pytest.approx(logistic(info["raw"], shift, scale))
    assert len({round(r["reward"], 6) for r in scored}) > 1

    # datarl serve refuses it: a mapping fitted per request would change the reward from batch to batch
    res = run("serve", "--config", str(cfg), env=env)
    assert res.returncode == 2 and "sources.bt.shift" in res.stderr and "Traceback" not in res.stderr

    # datarl select in chunks of 2 prompts: one fit over the whole pool, not one per chunk
    pool = write_jsonl(tmp_path / "pool.jsonl", [{k: v for k, v in r.items() if k != "response"} for r in rows])
    sel_cfg = tmp_path / "select.json"
    sel_cfg.write_text(
        json.dumps(
            {
                "router": {"general": "bt"},
                "sources": {"bt": {"model": rm}},
                "select": {"prompts_per_chunk": 2, "fraction": 0.5},
            }
        )
    )
    sel = tmp_path / "selected.jsonl"
    sampling = ["--n", "2", "--max-new-tokens", "24", "--policy", policy]
    res = run("select", pool, "-o", str(sel), "--config", str(sel_cfg), "--workers", "1", *sampling, env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads(Path(str(sel) + ".report.json").read_text())
    entries = read_jsonl(str(sel) + ".scores.jsonl")[1:]
    raws = [s["raw"] for e in entries for s in e["refit"]]
    assert len(entries) == 6 and len(raws) == 12 and {e["chunk"] for e in entries} == {0, 1, 2}
    shift, scale = fit_mapping(raws)
    assert report["bt_mapping"]["fitted_on"] == 12 and report["bt_mapping"]["shift"] == pytest.approx(shift)
    chunk_scores = [x for e in entries for x in e["rewards"]]
    assert chunk_scores != pytest.approx([logistic(x, shift, scale) for x in raws])  # the chunks' own fits differ
    kept = read_jsonl(sel)
    assert len(kept) == 3
    for row in kept:
        entry = next(e for e in entries if e["id"] == row["id"])
        assert row["prepo"]["rewards"] == pytest.approx([logistic(s["raw"], shift, scale) for s in entry["refit"]])

    # datarl build-references by hub name: the best of N by the model's raw score
    ref = tmp_path / "ref.jsonl"
    res = run("build-references", pool, "-o", str(ref), "--bt", "acme/tiny-rm", *sampling, env=env)
    assert res.returncode == 0, res.stderr
    for row in read_jsonl(ref):
        info = row["reference_info"]
        assert info["bt_input"] == "chat_template" and info["n"] == 2
        assert info["chosen_index"] == max(range(2), key=lambda k: (info["bt_scores"][k], -k))
