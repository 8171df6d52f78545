"""Running a study's pipeline runs: one run in this process (:func:`run_one`), many as local processes
(:class:`LocalExecutor`, ``--parallel N``) or as Ray tasks (:class:`RayExecutor`, ``--engine ray``).

A *task* is (run, stop_before): run that pipeline, linking shared stages from the study's store, up to the
stage ``stop_before`` (None: to the end). Every run logs to ``RUN_DIR/pipeline.log``; a run resumes from its
ledger and checkpoints, so a task that dies is simply run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from datarl.io import write_json
from datarl.pipeline.config import pipeline_config_from_mapping
from datarl.pipeline.run import run_pipeline
from datarl.pipeline.store import StageStore
from datarl.study.spec import RunSpec, StudyError

__all__ = ["Task", "LocalExecutor", "RayExecutor", "run_one", "write_run_file", "RUN_FILE", "STORE_DIR"]

RUN_FILE = "study_run.json"
STORE_DIR = "shared"
Task = tuple[RunSpec, "str | None"]


def write_run_file(run: RunSpec, study_dir: str, share: Sequence[str]) -> None:
    """What a worker needs to run ``run`` on its own: its config, the store, the shared stages."""
    os.makedirs(run.run_dir, exist_ok=True)
    write_json(
        os.path.join(run.run_dir, RUN_FILE),
        {
            "arm": run.arm,
            "seed": run.seed,
            "config": run.mapping,
            "store": os.path.join(study_dir, STORE_DIR),
            "share": list(share),
        },
    )


def run_one(run_dir: str, stop_before: str | None = None) -> float:
    """Run (or resume) the pipeline in ``run_dir`` as its run file says; returns the seconds it took."""
    with open(os.path.join(run_dir, RUN_FILE), encoding="utf-8") as fh:
        info = json.load(fh)
    cfg = pipeline_config_from_mapping(info["config"], base_dir=run_dir, where=run_dir, run_dir=run_dir)
    store = StageStore(info["store"], info["share"])
    start = time.perf_counter()
    with open(os.path.join(run_dir, "pipeline.log"), "a", encoding="utf-8") as log:

        def write(message: str) -> None:
            log.write(f"{time.strftime('%H:%M:%S')} {message}\n")
            log.flush()

        write(f"--- start (stop before {stop_before})" if stop_before else "--- start")
        run_pipeline(cfg, log=write, stop_before=stop_before, store=store)
    return time.perf_counter() - start


def _threads(parallel: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, parallel))


class LocalExecutor:
    """Up to ``parallel`` runs at once, each a ``python -m datarl.study.worker`` process with its share of
    the cores (``OMP_NUM_THREADS``). Processes stay in the study's process group: Ctrl-C stops them all."""

    def __init__(self, parallel: int = 1) -> None:
        self.parallel = max(1, parallel)

    def run(self, tasks: Sequence[Task], on_done: Callable[[RunSpec, float, str | None], None]) -> list[str]:
        """Run every task; ``on_done(run, seconds, error)`` after each. Returns the failed runs' messages."""
        env = {**os.environ, "OMP_NUM_THREADS": str(_threads(self.parallel)), "TOKENIZERS_PARALLELISM": "false"}
        pending = list(tasks)
        running: list[tuple[subprocess.Popen, RunSpec, float]] = []
        failed: list[str] = []
        try:
            while pending or running:
                while pending and len(running) < self.parallel:
                    run, stop = pending.pop(0)
                    cmd = [sys.executable, "-m", "datarl.study.worker", run.run_dir]
                    if stop:
                        cmd += ["--stop-before", stop]
                    err = open(os.path.join(run.run_dir, "worker.err"), "a", encoding="utf-8")
                    running.append((subprocess.Popen(cmd, env=env, stdout=err, stderr=err), run, time.perf_counter()))
                    err.close()
                time.sleep(0.2)
                for item in list(running):
                    proc, run, start = item
                    if proc.poll() is None:
                        continue
                    running.remove(item)
                    error = None
                    if proc.returncode != 0:
                        error = f"{run.name}: exit {proc.returncode}; {_tail(run.run_dir)}"
                        failed.append(error)
                    on_done(run, time.perf_counter() - start, error)
        finally:
            for proc, _, _ in running:  # interrupted: stop the runs (they resume on the next call)
                proc.terminate()
            for proc, _, _ in running:
                proc.wait()
        return failed


def _tail(run_dir: str) -> str:
    path = os.path.join(run_dir, "worker.err")
    lines = [line.strip() for line in open(path, encoding="utf-8", errors="replace")] if os.path.exists(path) else []
    last = next((line for line in reversed(lines) if line), "")
    return f"{last} (log: {os.path.join(run_dir, 'pipeline.log')}, {path})"


def _ray_task(run_dir: str, stop_before: str | None, threads: int) -> float:
    """One run inside a Ray worker (a worker that dies is retried by Ray; the run resumes where it was)."""
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    with open(os.path.join(run_dir, "ray_worker.pid"), "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    return run_one(run_dir, stop_before)


class RayExecutor:
    """One Ray task per run with ``cpus``/``gpus`` resources; Ray retries a task whose worker died
    (``retries`` times). The study directory must be on a file system every node sees."""

    def __init__(self, address: str | None = None, *, cpus: int = 1, gpus: float = 0.0, retries: int = 3) -> None:
        try:
            import ray
        except ImportError:
            raise StudyError("--engine ray needs Ray: pip install 'datarl[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.cpus, self.gpus, self.retries = cpus, gpus, retries

    def run(self, tasks: Sequence[Task], on_done: Callable[[RunSpec, float, str | None], None]) -> list[str]:
        remote = self.ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.retries)(_ray_task)
        refs = {remote.remote(run.run_dir, stop, self.cpus): run for run, stop in tasks}
        failed: list[str] = []
        started = time.perf_counter()
        pending = list(refs)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            run = refs[ready[0]]
            try:
                seconds, error = float(self.ray.get(ready[0])), None
            except Exception as exc:  # a run's own error (config, data), or a worker dead past its retries
                seconds, error = time.perf_counter() - started, f"{run.name}: {_first_line(exc)}"
                failed.append(error)
            on_done(run, seconds, error)
        return failed


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__


def executor_for(engine: str, parallel: int, address: str | None, gpus: float) -> Any:
    if engine == "local":
        return LocalExecutor(parallel)
    if engine == "ray":
        return RayExecutor(address, cpus=_threads(parallel), gpus=gpus)
    raise StudyError(f"--engine {engine!r}: use local or ray")
