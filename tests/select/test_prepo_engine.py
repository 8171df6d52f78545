"""Pre-PPO engine end to end with a micro policy: outputs, report, resume after an interruption, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from datarl.errors import InputError  # noqa: E402
from datarl.models.loading import PolicyLoadError, load_policy  # noqa: E402
from datarl.models.tiny import MICRO, build_tiny_policy  # noqa: E402
from datarl.rewards.router import RouterConfig  # noqa: E402
from datarl.select.prepo import SelectConfig, SelectError, allocate, prompt_key  # noqa: E402
from datarl.select.prepo_engine import run_select  # noqa: E402
from datarl.synth import SynthConfig, build_suite  # noqa: E402
from datarl_testing import read_jsonl, write_jsonl  # noqa: E402

CFG = SelectConfig(samples_per_prompt=2, max_new_tokens=12, prompts_per_chunk=16, fraction=0.25)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepo")
    suite = build_suite(
        SynthConfig(train_per_task=12, pool_per_task=16, eval_per_task=0, tasks=("math", "code", "ifeval"))
    )
    policy = build_tiny_policy([str(r["prompt"]) + " " + str(r["reference"]) for r in suite["train"]], MICRO)
    policy_dir = str(root / "policy")
    policy.model.save_pretrained(policy_dir)
    policy.tokenizer.save_pretrained(policy_dir)
    return {
        "pool": write_jsonl(root / "pool.jsonl", suite["pool"]),
        "train": write_jsonl(root / "train.jsonl", suite["train"]),
        "policy": policy_dir,
        "suite": suite,
    }


def no_policy():
    raise AssertionError("the policy was loaded before the input checks finished")


def test_end_to_end_outputs_report_and_scores_file(world, tmp_path):
    out = str(tmp_path / "selected.jsonl")
    s = run_select(world["pool"], out, policy=world["policy"], cfg=CFG, train_path=world["train"], workers=2)
    rows, rep = read_jsonl(out), json.load(open(out + ".report.json"))
    train_keys = {prompt_key(r["prompt"]) for r in world["suite"]["train"]}
    t = rep["totals"]
    assert t["valid_considered"] == 48 and t["dedup_dropped"] > 0 and t["invalid_dropped"] == 0
    assert t["valid_considered"] == t["eligible"] + t["dedup_dropped"] + t["pool_duplicates_dropped"]
    assert len(rows) == t["kept"] == t["written"] == int(0.25 * t["eligible"] + 0.5) == len(s.report["kept_ids"])
    assert [r["id"] for r in rows] == rep["kept_ids"]
    pool = {r["id"]: r for r in world["suite"]["pool"]}
    for row in rows:
        assert "response" not in row and prompt_key(row["prompt"]) not in train_keys
        assert {k: v for k, v in row.items() if k != "prepo"} == pool[row["id"]]  # original fields, unchanged
        assert len(row["prepo"]["rewards"]) == 2 and 0 <= row["prepo"]["score"] <= 1
    eligible = {d: v["eligible"] for d, v in rep["domains"].items()}
    assert {d: v["kept"] for d, v in rep["domains"].items()} == allocate(t["kept"], eligible)
    for v in rep["domains"].values():
        assert len(v["histogram"]["edges"]) == 21 and sum(v["histogram"]["counts"]) == v["eligible"]
        assert sum(v["histogram"]["kept_counts"]) == v["kept"]
        if v["kept"]:  # lowest: nothing eligible and unkept scores below the threshold
            assert v["threshold"] is not None
    for key in ("strategy", "normalise", "scope", "fraction", "seed", "samples_per_prompt", "policy", "drops"):
        assert key in rep
    assert rep["policy"] == world["policy"] and rep["strategy"] == "lowest" and rep["samples_per_prompt"] == 2
    lines = read_jsonl(s.scores_path)
    assert lines[0]["fingerprint"]["sampling"]["samples_per_prompt"] == 2
    assert sorted(e["id"] for e in lines[1:]) == sorted(set(e["id"] for e in lines[1:]))
    assert len(lines) - 1 == t["eligible"] == s.sampled_now
    assert not os.path.exists(out + ".errors.jsonl")
    assert "selected" in s.format() and "report:" in s.format()


def test_interrupted_run_resumes_without_resampling_and_matches_an_uninterrupted_one(world, tmp_path):
    ref = str(tmp_path / "ref.jsonl")
    run_select(world["pool"], ref, policy=world["policy"], cfg=CFG, train_path=world["train"], workers=2)
    out = str(tmp_path / "out.jsonl")

    def stop(chunk: int, done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_select(
            world["pool"], out, policy=world["policy"], cfg=CFG, train_path=world["train"], workers=2, on_chunk=stop
        )
    assert not os.path.exists(out) and not os.path.exists(out + ".report.json")
    first = read_jsonl(out + ".scores.jsonl")[1:]
    assert 0 < len(first) <= 16 and {e["chunk"] for e in first} == {0}
    with open(out + ".scores.jsonl", "a") as fh:
        fh.write('{"id": "synth-pool-0')  # a torn line, as a kill in mid-write would leave
    s = run_select(world["pool"], out, policy=world["policy"], cfg=CFG, train_path=world["train"], workers=2)
    assert s.already_scored == len(first) and 0 not in s.chunks
    entries = read_jsonl(out + ".scores.jsonl")[1:]
    assert len(entries) == len({e["id"] for e in entries}) == s.already_scored + s.sampled_now  # each once
    assert read_jsonl(out) == read_jsonl(ref)
    a, b = json.load(open(ref + ".report.json")), json.load(open(out + ".report.json"))
    for key in ("domains", "totals", "kept_ids", "drops"):
        assert a[key] == b[key]


def test_scores_serve_every_strategy_and_a_changed_fingerprint_is_refused(world, tmp_path):
    out, scores = str(tmp_path / "low.jsonl"), str(tmp_path / "scores.jsonl")
    low = run_select(world["pool"], out, policy=world["policy"], cfg=CFG, train_path=world["train"], scores_path=scores)
    rnd = run_select(
        world["pool"],
        str(tmp_path / "rnd.jsonl"),
        policy=world["policy"],
        scores_path=scores,
        cfg=replace(CFG, strategy="random"),
        train_path=world["train"],
    )
    assert rnd.sampled_now == 0 and rnd.report["kept"] == low.report["kept"]
    assert {d: v["kept"] for d, v in rnd.report["domains"].items()} == {
        d: v["kept"] for d, v in low.report["domains"].items()
    }
    every = run_select(
        world["pool"],
        str(tmp_path / "all.jsonl"),
        policy=world["policy"],
        scores_path=scores,
        cfg=replace(CFG, strategy="all"),
        train_path=world["train"],
    )
    assert every.report["kept"] == every.report["totals"]["eligible"]
    band = run_select(
        world["pool"],
        str(tmp_path / "band.jsonl"),
        policy=world["policy"],
        scores_path=scores,
        cfg=replace(CFG, strategy="band", fraction=None, low=0.0, high=0.0),  # the never-solved prompts
        train_path=world["train"],
    )
    unsolved = [r["id"] for r in read_jsonl(tmp_path / "all.jsonl") if r["prepo"]["score"] == 0.0]
    assert band.sampled_now == 0 and unsolved and band.report["kept_ids"] == unsolved
    assert (band.report["low"], band.report["high"]) == (0.0, 0.0) and "mean reward in [0, 0]" in band.format()
    hotter = replace(CFG, temperature=0.7)
    with pytest.raises(SelectError, match=r"different sampling.*--restart"):
        run_select(world["pool"], out, policy=world["policy"], cfg=hotter, scores_path=scores)
    other = load_policy(world["policy"])
    with torch.no_grad():
        next(other.model.parameters()).add_(0.01)
    with pytest.raises(SelectError, match="different policy"):
        run_select(world["pool"], out, policy=other, cfg=CFG, scores_path=scores)
    again = run_select(world["pool"], out, policy=world["policy"], cfg=hotter, scores_path=scores, restart=True)
    assert again.already_scored == 0 and again.sampled_now > 0


def test_merge_writes_the_training_set_then_the_selection(world, tmp_path):
    out = str(tmp_path / "merged.jsonl")
    s = run_select(
        world["pool"],
        out,
        policy=world["policy"],
        train_path=world["train"],
        merge=True,
        cfg=replace(CFG, count=5, fraction=None),
    )
    rows = read_jsonl(out)
    assert [r["id"] for r in rows[:36]] == [r["id"] for r in world["suite"]["train"]]
    assert len(rows) == 41 and all("prepo" in r for r in rows[36:]) and s.report["merged"] is True


def test_domains_restrict_the_pool(world, tmp_path):
    s = run_select(
        world["pool"],
        str(tmp_path / "m.jsonl"),
        policy=world["policy"],
        train_path=world["train"],
        cfg=replace(CFG, domains=("math", "ifeval")),
    )
    assert set(s.report["domains"]) <= {"ifeval", "math.addsub", "math.muldiv"}
    assert s.report["totals"]["excluded_by_domain"] == 16 and s.report["domain_filter"] == ["math", "ifeval"]


def test_bad_input_is_refused_before_any_model_is_loaded(world, tmp_path):
    out = str(tmp_path / "o.jsonl")
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(InputError, match="no valid pool records"):
        run_select(empty, out, policy=no_policy)
    with pytest.raises(SelectError, match="no pool prompts of domain.*'nope'.*the pool has: code"):
        run_select(world["pool"], out, policy=no_policy, cfg=SelectConfig(domains=("math", "nope")))
    with pytest.raises(SelectError, match="rounds to 0; raise --fraction"):
        run_select(world["pool"], out, policy=no_policy, cfg=SelectConfig(fraction=0.001))
    with pytest.raises(SelectError, match="merge needs the training set"):
        run_select(world["pool"], out, policy=no_policy, merge=True)
    general = dict(
        build_suite(
            SynthConfig(
                train_per_task=0, pool_per_task=2, eval_per_task=0, tasks=("general",), pool_duplicate_fraction=0.0
            )
        )["pool"][0],
        id="general-0",
    )
    pool = write_jsonl(tmp_path / "g.jsonl", read_jsonl(world["pool"]) + [general])
    with pytest.raises(SelectError, match="general pool prompt.*no reward source is configured for task 'general'"):
        run_select(pool, out, policy=no_policy, router_config=RouterConfig.from_mapping({"router": {"general": None}}))
    with pytest.raises(SelectError, match="genrm.bon, which needs a model: set sources.genrm.bon.judge"):
        run_select(pool, out, policy=no_policy)  # the default router sends general to genrm.bon
    bon = RouterConfig.from_mapping(
        {"router": {"general": "genrm.bon"}, "sources": {"genrm.bon": {"judge": str(tmp_path / "no-judge")}}}
    )
    no_ref = write_jsonl(tmp_path / "nr.jsonl", read_jsonl(world["pool"]) + [{**general, "reference": None}])
    with pytest.raises(SelectError, match="cannot be scored: reference: missing.*datarl build-references"):
        run_select(no_ref, out, policy=no_policy, router_config=bon)
    with pytest.raises(SelectError, match="sources.genrm.bon.judge: .*no-judge: no such model directory"):
        run_select(pool, out, policy=no_policy, router_config=bon)
    not_a_judge = RouterConfig.from_mapping(
        {"router": {"general": "genrm.bon"}, "sources": {"genrm.bon": {"judge": str(tmp_path)}}}
    )
    with pytest.raises(SelectError, match="scorer fails.*judge_error"):
        run_select(pool, out, policy=no_policy, router_config=not_a_judge)
    with pytest.raises(PolicyLoadError):
        run_select(world["pool"], out, policy=str(tmp_path / "no-policy"))


def test_a_prompt_too_long_for_the_context_is_a_bad_line_not_a_crash(world, tmp_path):
    long = {"id": "long", "task": "math", "prompt": "count the apples " * 200, "ground_truth": "1"}
    pool = write_jsonl(tmp_path / "p.jsonl", read_jsonl(world["pool"]) + [long, {"task": "math"}])
    out = str(tmp_path / "o.jsonl")
    s = run_select(pool, out, policy=world["policy"], cfg=CFG)
    errors = read_jsonl(out + ".errors.jsonl")
    assert sorted((e["line"], e["field"]) for e in errors) == [(49, "prompt"), (50, "prompt")]
    assert any("context" in e["error"] for e in errors)
    assert s.report["totals"]["invalid_dropped"] == 2 and "long" not in s.report["kept_ids"]


def test_cli_sigterm_then_rerun_resumes(world, tmp_path):
    out = str(tmp_path / "sel.jsonl")
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"select": {"scope": "global", "prompts_per_chunk": 4, "count": 3}}))
    cmd = [
        sys.executable,
        "-m",
        "datarl.cli",
        "select",
        world["pool"],
        "-o",
        out,
        "--train",
        world["train"],
        "--policy",
        world["policy"],
        "--n",
        "2",
        "--max-new-tokens",
        "16",
        "--config",
        str(config),
        "--workers",
        "1",
        "--domains",
        "math,ifeval",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(out + ".scores.jsonl") and len(read_jsonl(out + ".scores.jsonl")) >= 2:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    done = len(read_jsonl(out + ".scores.jsonl")) - 1
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert "selected 3 of" in res.stdout and f"{done} already scored" in res.stdout
    rep = json.load(open(out + ".report.json"))
    assert rep["scope"] == "global" and rep["sampling"]["prompts_per_chunk"] == 4 and rep["count"] == 3
    entries = read_jsonl(out + ".scores.jsonl")[1:]
    assert len(entries) == len({e["id"] for e in entries}) == rep["totals"]["eligible"]
    assert set(rep["domains"]) <= {"ifeval", "math.addsub", "math.muldiv"}
    bad = subprocess.run([*cmd[:7], "--domains", "nope"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("datarl: error:") and "nope" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
