"""The Ray engine: ``datarl score`` and ``datarl select`` scoring mapped over Ray Data.

The scoring is the local engine's, unchanged: every actor holds one
:class:`~datarl.executors.engine.LocalEngine` with one worker, so model sources are scored in the actor in
batches (``Router.score_many``) and every other item in one forked worker per actor under the per-item
wall-clock limit (killed and replaced past it; a crashed worker's item retried once). Why that
worker: math-verify's timeouts use SIGALRM, which only works on a main thread (in Ray workers it
has silently scored everything 0 elsewhere; Ray Data calls a UDF on a thread-pool thread), and a
Ray task cannot be stopped mid-item without losing its whole batch. A forked child is its own main
thread (checked: ``signal.signal`` works there), and killing it on a timeout costs one item, never
the batch. The worker lives as long as its actor, so its imports and its code
sandbox fork server are paid once per actor, not once per batch (~0.5 s a batch here).

Stages (each a ``map_batches`` with an ``ActorPoolStrategy``, not the deprecated ``concurrency=``):
- verifiers (rtv.math / rtv.ifeval / rtv.code sandbox, gold.rubric): ``actors`` CPU actors,
  ``cpus_per_actor`` each;
- model sources (bt, genrm.*): ``judge_actors`` actors with ``judge_gpus`` GPUs each;
- generation for ``datarl select`` (``generate_gpus`` > 0): one Ray actor with the GPUs runs each
  chunk's ``generate`` whole, so its seeded sampling equals a local run's on the same device.

A stage that needs GPUs the cluster lacks fails before anything is submitted (Ray would wait
forever). The generation actor moves the policy to its GPU (``generate`` samples where the model
is, so GPU samples come from CUDA's generator and differ from a CPU run's, as in the local engine on
a GPU); the judge actors reserve their GPUs, but ``HFJudge`` and the BT scorer load their models on
the CPU today, so moving those is the scorers' change, not the engine's.

Rows travel as JSON text: Arrow would merge the differing nested fields of mixed tasks into one
struct type and hand the scorers ``None`` for keys a record never had. Results are
joined back by input position (``key``; ids repeat when a prompt has several samples), and the id
of every returned row is checked against the input's.

Blocks and batches: a few blocks per actor, one batch per block (at most ``MAX_BATCH_ROWS``), rows
dealt to blocks round-robin so that slow tasks (code) spread over every actor. Measured on 2 loaded
cores: 10,000 trivial rows took 6.0 s with Ray's default ~200 blocks and 2.3 s with 2 (mostly actor
start-up); 10,000 mixed records (bench/ray_score.py) 16-20 s with 2x5000, 4x2500, 10x1000 or 20x500
rows, no size clearly ahead once the worker outlives its batch, the local engine 13-16 s.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datarl.errors import InputError
from datarl.executors.engine import LocalEngine
from datarl.rewards.base import RewardResult
from datarl.rewards.router import Router, RouterConfig

__all__ = [
    "RayEngine",
    "RayEngineError",
    "RayOptions",
    "RayScoringEngine",
    "ScorerActor",
    "ModelScorerActor",
    "plan_blocks",
    "INSTALL_HINT",
]

INSTALL_HINT = "pip install 'datarl[ray]'"
BLOCKS_PER_ACTOR = 4  # enough slack that one slow block does not leave the other actors idle
MAX_BATCH_ROWS = 1000  # rows per actor call: bounds the memory of one batch and its result


class RayEngineError(InputError):
    """Ray is missing, unreachable, or lacks the resources a stage needs; the message says what to do."""


@dataclass(frozen=True)
class RayOptions:
    """How ``--engine ray`` runs.

    address: ``local`` starts a private Ray on this machine (stopped at the end); ``auto`` joins the
        cluster this machine is part of; ``HOST:PORT`` or ``ray://HOST:10001`` a given one. Every node
        needs datarl installed.
    actors: verifier actors (default: the cluster's CPUs divided by ``cpus_per_actor``).
    cpus_per_actor: CPUs reserved by each verifier actor (its one forked scoring worker).
    judge_actors: actors scoring the model sources (bt, genrm.*).
    judge_gpus: GPUs per judge actor (0: CPU).
    generate_gpus: ``datarl select`` only: 0 generates in this process; > 0 in one Ray actor with
        this many GPUs.
    batch_size: rows per actor call (None: planned from the row count, see :func:`plan_blocks`).
    """

    address: str = "local"
    actors: int | None = None
    cpus_per_actor: float = 1.0
    judge_actors: int = 1
    judge_gpus: float = 0.0
    generate_gpus: float = 0.0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("address must be 'local', 'auto' or a Ray address")
        if self.actors is not None and self.actors < 1:
            raise ValueError("actors must be at least 1")
        if not self.cpus_per_actor > 0:
            raise ValueError("cpus_per_actor must be positive")
        if self.judge_actors < 1:
            raise ValueError("judge_actors must be at least 1")
        for name in ("judge_gpus", "generate_gpus"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


def import_ray() -> Any:
    """The ``ray`` module, or :class:`RayEngineError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks pandas/pyarrow pieces)
    except ImportError as exc:
        raise RayEngineError(f"--engine ray needs Ray Data, which is not installed ({exc}); {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class Plan:
    """How rows are cut: ``blocks`` blocks of about ``batch_size`` rows, ``actors`` actors."""

    blocks: int
    batch_size: int
    actors: int


def plan_blocks(rows: int, actors: int, batch_size: int | None = None) -> Plan:
    """A few blocks per actor (one batch each); more blocks only past ``MAX_BATCH_ROWS`` rows a block."""
    rows = max(1, rows)
    if batch_size is None:
        blocks = max(min(rows, actors * BLOCKS_PER_ACTOR), math.ceil(rows / MAX_BATCH_ROWS))
        batch_size = math.ceil(rows / blocks)
    blocks = math.ceil(rows / batch_size)
    return Plan(blocks=blocks, batch_size=batch_size, actors=max(1, min(actors, blocks)))


def _dealt(rows: list[dict[str, Any]], blocks: int) -> list[dict[str, Any]]:
    # from_items cuts contiguous ranges; dealing rows round-robin first mixes the tasks in every block.
    return [row for b in range(blocks) for row in rows[b::blocks]]


class ScorerActor:
    """A Ray Data UDF: one warmed-up router; a batch of JSON rows in, a batch of results out.

    It scores with a :class:`~datarl.executors.engine.LocalEngine` of one worker that lives as long as the
    actor (its warm imports and code-sandbox fork server are reused across batches): model sources in the
    actor, every other item in the worker, under ``timeout_s``. The worker watches its parent, so it dies
    with the actor even when Ray kills the actor without running ``__del__``.
    """

    def __init__(self, router_config: RouterConfig, timeout_s: float) -> None:
        self.engine = LocalEngine(Router(router_config), workers=1, timeout_s=timeout_s)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist()
        records = [json.loads(r["record"]) for r in rows]
        done = self.engine.score(records, [r["response"] for r in rows])
        return pa.table(
            {
                "key": [r["key"] for r in rows],
                "id": [r["id"] for r in rows],
                "score": [float(x.score) for x in done],
                "source": [x.source for x in done],
                "info": [json.dumps(x.info, default=str) for x in done],
            }
        )

    def __del__(self) -> None:  # Ray Data calls it when the actor pool shuts down
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
            self.engine = None


class ModelScorerActor(ScorerActor):
    """The model-source stage (bt, genrm.*): same code, its own name in Ray's logs and resources."""


class GenerateActor:
    """Runs ``datarl.models.generate.generate`` on a policy held by the actor (a Ray Core actor)."""

    def __init__(self, policy: Any) -> None:
        import torch

        if torch.cuda.is_available():  # Ray points CUDA_VISIBLE_DEVICES at this actor's GPUs
            policy.model.to("cuda")
        self.policy = policy

    def generate(self, prompts: Sequence[Any], sampling: Any) -> list[Any]:
        from datarl.models.generate import generate

        return generate(self.policy, prompts, sampling)


class RayEngine:
    """Connects to (or starts) Ray and runs the stages; use as a context manager.

    Ray is imported and started in :meth:`start`, so a missing Ray is a one-line error before
    any work, and a Ray that was already initialised (a Ray job, a test) is reused and left running.
    """

    def __init__(self, options: RayOptions | None = None) -> None:
        self.options = options or RayOptions()
        self._ray: Any = None
        self._owns = False
        self._generator: Any = None
        self._policy: Any = None

    def __enter__(self) -> RayEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._ray is not None:
            return
        ray = import_ray()
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # Ray's INFO/WARNING chatter is not for users
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.options.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayEngineError(
                    f"cannot start or reach Ray at {self.options.address!r}: "
                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                    "use --ray-address local, auto or HOST:PORT"
                ) from None
            self._owns = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI prints its own summary
        self._ray = ray

    def close(self) -> None:
        if self._generator is not None:
            self._ray.kill(self._generator)
            self._generator = None
        if self._owns and self._ray is not None:
            self._ray.shutdown()
        self._ray, self._owns = None, False

    def resources(self) -> dict[str, float]:
        self.start()
        return dict(self._ray.cluster_resources())

    def require_gpus(self, gpus: float, stage: str, flag: str) -> None:
        """Fail now, with what to do, if a ``gpus``-GPU actor could never be scheduled."""
        have = self.resources().get("GPU", 0.0)
        if gpus > have:
            raise RayEngineError(
                f"the {stage} stage asks for {gpus:g} GPU(s) per actor but the Ray cluster at "
                f"{self.options.address!r} has {have:g}; Ray would wait forever. Run on a "
                f"cluster with GPUs or pass {flag} 0 to run it on CPUs"
            )

    def preflight(self, router_config: RouterConfig, tasks: Sequence[str], *, generate: bool = False) -> None:
        """Check every stage the given tasks (and generation) will use, before any work is submitted."""
        router = Router(router_config)
        if self.options.judge_gpus > 0 and any(router.is_batched(t) for t in tasks):
            self.require_gpus(self.options.judge_gpus, "judge (bt, genrm)", "--ray-judge-gpus")
        if generate and self.options.generate_gpus > 0:
            self.require_gpus(self.options.generate_gpus, "generation", "--ray-generate-gpus")

    def _actors(self) -> int:
        if self.options.actors is not None:
            cpus = self.resources().get("CPU", 0.0)
            need = self.options.actors * self.options.cpus_per_actor
            if need > cpus:
                raise RayEngineError(
                    f"{self.options.actors} scoring actors with {self.options.cpus_per_actor:g} "
                    f"CPU(s) each need {need:g} CPUs; the Ray cluster has {cpus:g}. Pass "
                    "fewer --ray-actors (default: one per CPU)"
                )
            return self.options.actors
        return max(1, int(self.resources().get("CPU", 1.0) // self.options.cpus_per_actor))

    def score_responses(
        self, router_config: RouterConfig, records: Sequence[dict[str, Any]], responses: Sequence[str], timeout_s: float
    ) -> list[RewardResult]:
        """Score ``responses[i]`` for ``records[i]`` on Ray; the same results as the local engine, in order."""
        self.start()
        tasks = [str(r.get("task")) for r in records]
        self.preflight(router_config, tasks)
        rows = [
            {
                "key": i,
                "id": str(r.get("id")),
                "response": responses[i],
                "record": json.dumps({**r, "response": responses[i]}, default=str),
            }
            for i, r in enumerate(records)
        ]
        router = Router(router_config)
        model = [row for row, t in zip(rows, tasks) if router.is_batched(t)]
        other = [row for row, t in zip(rows, tasks) if not router.is_batched(t)]
        found: dict[int, RewardResult] = {}
        if other:
            found.update(
                self._run_stage(
                    ScorerActor,
                    other,
                    router_config,
                    timeout_s,
                    self._actors(),
                    {"num_cpus": self.options.cpus_per_actor},
                )
            )
        if model:
            found.update(
                self._run_stage(
                    ModelScorerActor,
                    model,
                    router_config,
                    timeout_s,
                    self.options.judge_actors,
                    {"num_cpus": 1, "num_gpus": self.options.judge_gpus or None},
                )
            )
        missing = [i for i in range(len(records)) if i not in found]
        if missing:
            raise RuntimeError(f"Ray returned no result for {len(missing)} row(s) (first: position {missing[0]})")
        return [found[i] for i in range(len(records))]

    def _run_stage(
        self,
        udf: type,
        rows: list[dict[str, Any]],
        router_config: RouterConfig,
        timeout_s: float,
        actors: int,
        resources: dict[str, Any],
    ) -> dict[int, RewardResult]:
        ray = self._ray
        plan = plan_blocks(len(rows), actors, self.options.batch_size)
        ds = ray.data.from_items(_dealt(rows, plan.blocks), override_num_blocks=plan.blocks)
        out = ds.map_batches(
            udf,
            batch_size=plan.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=plan.actors),
            fn_constructor_kwargs={"router_config": router_config, "timeout_s": timeout_s},
            **{k: v for k, v in resources.items() if v is not None},
        )
        ids = {row["key"]: row["id"] for row in rows}
        found: dict[int, RewardResult] = {}
        for row in out.iter_rows():
            key = int(row["key"])
            if ids.get(key) != row["id"]:
                raise RuntimeError(f"Ray returned row {key} with id {row['id']!r}, expected {ids.get(key)!r}")
            found[key] = RewardResult(float(row["score"]), str(row["source"]), json.loads(row["info"]))
        return found

    def generate(self, policy: Any, prompts: Sequence[Any], sampling: Any) -> list[Any]:
        """``generate(policy, prompts, sampling)`` in one Ray actor with ``generate_gpus`` GPUs.

        The actor receives the policy once (through the object store) and is reused for every
        call with the same policy object.
        """
        self.start()
        self.require_gpus(self.options.generate_gpus, "generation", "--ray-generate-gpus")
        if self._generator is None or self._policy is not policy:
            if self._generator is not None:
                self._ray.kill(self._generator)
            gpus = {"num_gpus": self.options.generate_gpus} if self.options.generate_gpus else {}
            remote = self._ray.remote(num_cpus=1, **gpus)(GenerateActor)
            self._generator, self._policy = remote.remote(self._ray.put(policy)), policy
        return self._ray.get(self._generator.generate.remote(list(prompts), sampling))


class RayScoringEngine:
    """The :class:`~datarl.executors.engine.ScoringEngine` interface over :class:`RayEngine`: the same results
    as the local engine, in order. ``engine``: an already started :class:`RayEngine` to share (then
    :meth:`close` leaves it running); None starts one with ``options``."""

    def __init__(
        self,
        router_config: RouterConfig,
        *,
        timeout_s: float,
        options: RayOptions | None = None,
        engine: RayEngine | None = None,
    ) -> None:
        self.router_config, self.timeout_s = router_config, timeout_s
        self.engine = engine if engine is not None else RayEngine(options)
        self._owns = engine is None

    def score(self, records: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> list[RewardResult]:
        return self.engine.score_responses(self.router_config, records, responses, self.timeout_s)

    def close(self) -> None:
        if self._owns:
            self.engine.close()
