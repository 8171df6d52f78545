"""The Ray engine against Ray's own code: same results as the local engine by id, timeouts, the GPU
check, and the CLI (``datarl score/select --engine ray``). One fast test runs without Ray installed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from datarl.executors.engine import LocalEngine
from datarl.executors.ray_engine import RayEngine, RayEngineError, RayOptions, plan_blocks
from datarl.rewards.router import Router, RouterConfig
from datarl.synth import SynthConfig, build_suite, wrong_response
from datarl_testing import read_jsonl, write_jsonl

DATARL = [sys.executable, "-m", "datarl.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
HANG = "```python\nimport time\ntime.sleep(60)\n```"  # the sandbox allows 10 s; the item timeout is less


def comparable(info: dict) -> dict:
    # the code sandbox reports how long a run took: the one field two identical runs differ in
    return {k: v for k, v in info.items() if k != "wall_seconds"}


def mixed_batch(per_task: int = 8) -> tuple[list[dict], list[str]]:
    """Synth math/code/ifeval records; even positions get the reference, odd ones a wrong answer."""
    suite = build_suite(
        SynthConfig(train_per_task=per_task, pool_per_task=0, eval_per_task=0, tasks=("math", "code", "ifeval"))
    )
    rng = random.Random(0)
    records = suite["train"]
    return records, [r["reference"] if i % 2 == 0 else wrong_response(r, rng) for i, r in enumerate(records)]


@pytest.fixture(scope="module")
def ray_session():
    """One private 2-CPU, 0-GPU Ray for the in-process tests (engines reuse it and leave it running)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_block_plan_spreads_rows_over_actors_and_bounds_batches():
    assert plan_blocks(10_000, 2) == plan_blocks(10_000, 2, None)
    p = plan_blocks(10_000, 2)
    assert p.blocks == 10 and p.batch_size == 1000 and p.actors == 2
    small = plan_blocks(30, 8)
    assert small.blocks == 30 and small.batch_size == 1 and small.actors == 8
    assert plan_blocks(5, 2, batch_size=2) == type(p)(blocks=3, batch_size=2, actors=2)


@pytest.mark.integration
def test_results_equal_the_local_engine_by_id(ray_session):
    records, responses = mixed_batch()
    cfg = RouterConfig()
    with LocalEngine(Router(cfg), workers=2, timeout_s=30) as engine:
        local = engine.score(records, responses)
    remote = RayEngine(RayOptions()).score_responses(cfg, records, responses, 30.0)
    assert len(remote) == len(records)
    by_id = {r["id"]: x for r, x in zip(records, remote)}
    for rec, want in zip(records, local):
        got = by_id[rec["id"]]
        assert (got.score, got.source, comparable(got.info)) == (want.score, want.source, comparable(want.info))
    scores = [x.score for x in remote]
    assert scores[0::2] == [1.0] * len(scores[0::2]) and set(scores[1::2]) == {0.0}  # the gold labels
    assert {x.source for x in remote} == {"rtv.math", "rtv.code", "rtv.ifeval"}


@pytest.mark.integration
def test_a_hanging_item_times_out_without_stalling_its_batch(ray_session):
    records, responses = mixed_batch(per_task=3)
    code = next(i for i, r in enumerate(records) if r["task"] == "code")
    responses[code] = HANG
    start = time.monotonic()
    remote = RayEngine(RayOptions(actors=1, batch_size=len(records))).score_responses(  # one batch holds it all
        RouterConfig(), records, responses, 2.0
    )
    assert time.monotonic() - start < 40  # the sleep alone is 60 s
    assert remote[code].score == 0.0 and remote[code].info["failure"] == "timeout"
    assert "2 s timeout" in remote[code].info["error"]
    with LocalEngine(Router(RouterConfig()), workers=2, timeout_s=2.0) as engine:
        local = engine.score(records, responses)
    assert [(x.score, comparable(x.info)) for x in remote] == [(x.score, comparable(x.info)) for x in local]


@pytest.mark.integration
def test_a_gpu_stage_on_a_cluster_without_gpus_fails_at_once(ray_session):
    cfg = RouterConfig.from_mapping(
        {"router": {"general": "genrm.gt"}, "sources": {"genrm.gt": {"judge": "/no/judge/needed/for/the/check"}}}
    )
    records = [{"id": "g0", "task": "general", "prompt": "Say hi.", "ground_truth": "hi"}]
    engine = RayEngine(RayOptions(judge_gpus=1))
    start = time.monotonic()
    with pytest.raises(RayEngineError, match=r"asks for 1 GPU.*has 0.*--ray-judge-gpus 0"):
        engine.score_responses(cfg, records, ["hi"], 10.0)
    with pytest.raises(RayEngineError, match=r"generation stage asks for 1 GPU.*--ray-generate-gpus 0"):
        RayEngine(RayOptions(generate_gpus=1)).preflight(cfg, ["math"], generate=True)
    assert time.monotonic() - start < 10
    # a GPU judge setting is no obstacle when nothing is routed to a model source
    engine.preflight(RouterConfig(), ["math", "code"], generate=True)


@pytest.mark.integration
def test_model_sources_go_to_the_judge_stage_with_the_local_scores(ray_session, tmp_path):
    from datarl.models.bt_train import BTTrainConfig, train_bt
    from datarl.models.tiny import MICRO, build_tiny_policy

    general = build_suite(SynthConfig(train_per_task=6, pool_per_task=0, eval_per_task=0, tasks=("general",)))["train"]
    policy = build_tiny_policy([str(r["prompt"]) + " " + str(r["reference"]) for r in general], MICRO)
    policy.model.save_pretrained(str(tmp_path / "base"))
    policy.tokenizer.save_pretrained(str(tmp_path / "base"))
    pairs = [
        {"id": f"p{i}", "prompt": r["prompt"], "chosen": r["reference"], "rejected": "no"}
        for i, r in enumerate(general)
    ]
    train_bt(
        pairs, str(tmp_path / "base"), str(tmp_path / "bt"), BTTrainConfig(steps=2, pairs_per_step=2, eval_fraction=0.0)
    )
    cfg = RouterConfig.from_mapping({"router": {"general": "bt"}, "sources": {"bt": {"model": str(tmp_path / "bt")}}})
    math_records, math_responses = mixed_batch(per_task=2)
    records = general + math_records
    responses = [r["reference"] for r in general] + math_responses
    with LocalEngine(Router(cfg), workers=2, timeout_s=30) as engine:
        local = engine.score(records, responses)
    remote = RayEngine(RayOptions(judge_actors=1)).score_responses(cfg, records, responses, 30.0)
    assert [x.source for x in remote] == [x.source for x in local] and remote[0].source == "bt"
    # the same model on the same rows; batches may be cut differently, hence approx
    assert [x.score for x in remote] == pytest.approx([x.score for x in local], abs=1e-5)
    assert len({round(x.score, 6) for x in remote[: len(general)]}) > 1  # real model scores, not a constant


def _score_cli(inp: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DATARL, "score", inp, "-o", out, "--no-progress", "--timeout", "20", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


@pytest.mark.integration
def test_datarl_score_engine_ray_end_to_end(tmp_path):
    pytest.importorskip("ray")
    records, responses = mixed_batch(per_task=4)
    rows = [{**r, "response": x} for r, x in zip(records, responses)] + [
        {"id": "unscored", "task": "math", "prompt": "1+1?", "ground_truth": "2"}
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows[::-1])
    ray_run = _score_cli(inp, str(tmp_path / "ray.jsonl"), "--engine", "ray", "--ray-address", "local")
    assert ray_run.returncode == 0, ray_run.stderr
    assert f"scored {len(records)} of {len(rows)} lines" in ray_run.stdout
    local_run = _score_cli(inp, str(tmp_path / "local.jsonl"), "--workers", "2")
    assert local_run.returncode == 0, local_run.stderr
    got, want = read_jsonl(tmp_path / "ray.jsonl"), read_jsonl(tmp_path / "local.jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in rows[::-1]]  # input order, the unscored row included
    for g, w in zip(got, want):
        if "reward_info" in w:
            g["reward_info"], w["reward_info"] = comparable(g["reward_info"]), comparable(w["reward_info"])
        assert g == w


@pytest.fixture(scope="module")
def select_world(tmp_path_factory):
    pytest.importorskip("ray")
    from datarl.models.tiny import MICRO, build_tiny_policy

    root = tmp_path_factory.mktemp("ray_select")
    suite = build_suite(
        SynthConfig(train_per_task=8, pool_per_task=10, eval_per_task=0, tasks=("math", "code", "ifeval"))
    )
    policy = build_tiny_policy([str(r["prompt"]) + " " + str(r["reference"]) for r in suite["train"]], MICRO)
    policy.model.save_pretrained(str(root / "policy"))
    policy.tokenizer.save_pretrained(str(root / "policy"))
    return {
        "root": root,
        "pool": write_jsonl(root / "pool.jsonl", suite["pool"]),
        "train": write_jsonl(root / "train.jsonl", suite["train"]),
        "policy": str(root / "policy"),
    }


def _select_cli(world: dict, out: Path, *extra: str) -> tuple[list[dict], dict[str, list[float]]]:
    proc = subprocess.run(
        [
            *DATARL,
            "select",
            world["pool"],
            "-o",
            str(out),
            "--train",
            world["train"],
            "--policy",
            world["policy"],
            "--n",
            "2",
            "--max-new-tokens",
            "12",
            "--fraction",
            "0.3",
            "--no-progress",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    scores = {e["id"]: e["rewards"] for e in read_jsonl(str(out) + ".scores.jsonl")[1:]}
    return read_jsonl(out), scores


@pytest.mark.integration
def test_datarl_select_engine_ray_equals_local(select_world, tmp_path):
    local_rows, local_scores = _select_cli(select_world, tmp_path / "local.jsonl", "--workers", "2")
    ray_rows, ray_scores = _select_cli(select_world, tmp_path / "ray.jsonl", "--engine", "ray")
    assert ray_scores == local_scores and len(ray_scores) > 20
    assert ray_rows == local_rows and ray_rows


@pytest.mark.integration
def test_select_generation_in_a_gpu_actor_equals_local(select_world, tmp_path):
    """A logical GPU (``ray.init(num_gpus=1)`` on a CPU machine) lets Ray schedule the generation actor here."""
    script = textwrap.dedent(f"""
        import json, ray
        from datarl.executors.ray_engine import RayEngine, RayOptions
        from datarl.select.prepo import SelectConfig
        from datarl.select.prepo_engine import run_select
        cfg = SelectConfig(samples_per_prompt=2, max_new_tokens=12, fraction=0.3, prompts_per_chunk=16)
        w = {json.dumps({k: str(v) for k, v in select_world.items()})}
        common = dict(policy=w["policy"], cfg=cfg, train_path=w["train"], progress=False)
        run_select(w["pool"], {str(tmp_path / "local.jsonl")!r}, workers=2, **common)
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
        calls = []  # a spy: the real method runs, the count shows sampling went through the actor
        real = RayEngine.generate
        RayEngine.generate = lambda self, *a: calls.append(ray.cluster_resources().get("GPU")) or real(self, *a)
        s = run_select(w["pool"], {str(tmp_path / "ray.jsonl")!r}, engine="ray",
                       ray=RayOptions(generate_gpus=1), **common)
        print("chunks", len(s.chunks), "actor calls", len(calls))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "chunks 2 actor calls 2" in proc.stdout
    local, remote = (read_jsonl(tmp_path / f"{n}.jsonl.scores.jsonl")[1:] for n in ("local", "ray"))
    assert local == remote and len(local) > 20


NO_RAY = "import sys; sys.modules['ray'] = None; from datarl.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("command", ["score", "select"])
def test_engine_ray_without_ray_installed_is_a_one_line_error(tmp_path, command):
    inp = write_jsonl(
        tmp_path / "in.jsonl",
        [{"id": "m0", "task": "math", "prompt": "2+2?", "ground_truth": "4", "response": "#### 4"}],
    )
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", NO_RAY, command, inp, "-o", str(out), "--engine", "ray"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datarl: error: ") and "pip install 'datarl[ray]'" in lines[0]
    assert not out.exists()
