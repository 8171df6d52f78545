"""``datarl study --engine ray`` against Ray's own code (integration set): the micro study gives the same
``results.json`` as the local engine, and a run whose Ray worker is killed is retried and resumes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

pytestmark = pytest.mark.integration

pytest.importorskip("torch")

from datarl.study import load_study, run_study  # noqa: E402
from datarl.study.execute import LocalExecutor, RayExecutor  # noqa: E402
from datarl_testing import micro_study_file, micro_suite_policy  # noqa: E402


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    policy = micro_suite_policy(root / "micro")
    spec = load_study(micro_study_file(root, policy), str(root / "out"))
    return policy, _comparable(run_study(spec, LocalExecutor(1), log=lambda m: None))


def _comparable(results: dict) -> dict:
    return {k: v for k, v in json.loads(json.dumps(results)).items() if k not in ("study", "study_dir")}


def test_ray_engine_gives_the_local_results(ray_session, local_results, tmp_path):
    policy, expected = local_results
    spec = load_study(micro_study_file(tmp_path, policy), str(tmp_path / "out"))
    results = run_study(spec, RayExecutor(cpus=1), log=lambda m: None)
    assert _comparable(results) == expected


def test_a_run_whose_ray_worker_dies_is_retried_and_resumes(ray_session, local_results, tmp_path):
    policy, expected = local_results
    spec = load_study(micro_study_file(tmp_path, policy), str(tmp_path / "out"))
    box: dict = {}
    thread = threading.Thread(
        target=lambda: box.update(results=run_study(spec, RayExecutor(cpus=1), log=lambda m: None)), daemon=True
    )
    thread.start()
    killed = None
    deadline = time.time() + 300
    while thread.is_alive() and time.time() < deadline and killed is None:
        for run in spec.runs:
            pid_file = os.path.join(run.run_dir, "ray_worker.pid")
            done = os.path.exists(run.compact_path)
            ckpt = os.path.join(run.run_dir, "train", "checkpoints")
            if not done and os.path.exists(pid_file) and os.path.isdir(ckpt) and os.listdir(ckpt):
                os.kill(int(open(pid_file).read()), signal.SIGKILL)
                killed = run
                break
        time.sleep(0.02)
    thread.join(timeout=300)
    assert killed is not None, "the study ended before a worker could be killed"
    assert "results" in box, "the study did not finish after the worker died"
    log = open(os.path.join(killed.run_dir, "pipeline.log")).read()
    assert log.count("--- start\n") >= 2  # the task ran again on a new worker
    assert _comparable(box["results"]) == expected
