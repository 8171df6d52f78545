"""The reward service behind ``datarl serve``: OpenRLHF's remote reward protocol without HTTP.

The protocol (request and reply shapes, labels, how the response is cut from the query, why the reply is
always HTTP 200 and ``extra_logs`` holds numbers only) is in :mod:`datarl.integrations.openrlhf`; the HTTP
server (uvicorn, tokens, limits, shutdown) in :mod:`datarl.server_http`. Here:

- Samples of all in-flight requests are batched by one scorer thread (up to ``max_batch`` items, waiting
  at most ``max_wait_ms`` after the first) and scored by a :class:`~datarl.executors.engine.LocalEngine`
  (long-lived forked workers with per-item timeouts, which inherit the sources' warm-up, e.g. IFEval's
  Punkt model; model sources batched in-process). At most ``max_queue`` samples wait;
  a request that does not fit is answered at once with every sample flagged ``overloaded``.
- :meth:`RewardService.begin` parses a request and queues its samples; the :class:`Scoring` it returns is
  waited on by a thread (:meth:`Scoring.wait`, used by OpenRLHF's ``reward_func`` file hook) or by an
  event loop (:meth:`Scoring.add_done_callback`), and :meth:`Scoring.reply` builds the reply, flagging
  any sample that was not scored (a stop before its turn).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from datarl.executors.engine import LocalEngine
from datarl.integrations.openrlhf import (
    DEFAULT_STRIP_PATTERN,
    bad_request_reply,
    build_reply,
    make_label,
    openrlhf_rows,
    parse_label,
    split_response,
)
from datarl.rewards.base import RewardResult
from datarl.rewards.router import Router, RouterConfig
from datarl.server_auth import bind_problem, token_problem

__all__ = [
    "ServeConfig",
    "RewardBatcher",
    "RewardService",
    "Scoring",
    "make_label",
    "openrlhf_rows",
]  # the label helpers are re-exported: users build labels here

SHUTTING_DOWN = "shutting_down: the server is stopping; retry against another replica"


@dataclass(frozen=True)
class ServeConfig:
    """Options of the reward service and its HTTP server.

    host, port: where to listen (port 0: the OS picks a free port; the bound URL is printed).
    token: the shared secret every request must carry (``Authorization: Bearer TOKEN`` or the path
        ``/TOKEN/...``); None: no check. At least 16 URL-safe characters. Not shown in ``repr``.
    insecure: allow a non-loopback ``host`` without a token (refused otherwise).
    workers: scoring worker processes per batch.
    max_batch: samples scored together in one batch.
    max_wait_ms: how long the scorer waits for more samples after the first one arrives.
    max_queue: samples allowed to wait for the scorer; a request that does not fit is flagged ``overloaded``.
    timeout_s: wall-clock limit per sample; past it the sample scores 0 with failure ``timeout``.
    max_body_mb: largest request body accepted (larger: a ``request_error`` reply, connection closed).
    max_header_kb: largest request line plus headers (larger: HTTP 400, connection closed).
    read_timeout_s: how long a client may take to send a request's headers (from connecting, or from the
        end of its previous reply), and again its body; past it the connection is closed (headers) or
        answered with a ``request_error`` (body). Idle keep-alive connections close after 5 s.
    max_connections: open connections served at once; requests on connections beyond it get HTTP 503
        (OpenRLHF's client retries those after 1 s).
    drain_timeout_s: on SIGTERM/SIGINT, how long requests already received may still be scored; samples
        not scored by then come back flagged ``shutting_down``, and the process exits 0.
    strip_pattern: regex of end-of-sequence markers removed (repeatedly) from the end of each response;
        "" keeps the response as sent.
    router: which source scores which task.
    """

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = field(default=None, repr=False)
    insecure: bool = False
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_batch: int = 256
    max_wait_ms: float = 5.0
    max_queue: int = 4096
    timeout_s: float = 30.0
    max_body_mb: float = 64.0
    max_header_kb: float = 16.0
    read_timeout_s: float = 15.0
    max_connections: int = 1024
    drain_timeout_s: float = 60.0
    strip_pattern: str = DEFAULT_STRIP_PATTERN
    router: RouterConfig = field(default_factory=RouterConfig)

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.port <= 65535, "--port must be in 0..65535 (0: any free port)"),
            (self.workers >= 1, "--workers must be at least 1"),
            (self.max_batch >= 1, "--max-batch must be at least 1"),
            (self.max_wait_ms >= 0, "--max-wait-ms must be >= 0"),
            (self.max_queue >= 1, "--max-queue must be at least 1"),
            (self.timeout_s > 0, "--timeout must be positive"),
            (self.max_body_mb > 0, "--max-body-mb must be positive"),
            (self.max_header_kb >= 1, "--max-header-kb must be at least 1"),
            (self.read_timeout_s > 0, "--read-timeout must be positive"),
            (self.max_connections >= 1, "--max-connections must be at least 1"),
            (self.drain_timeout_s >= 0, "--drain-timeout must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.token is not None and (problem := token_problem(self.token)):
            raise ValueError(problem)
        if problem := bind_problem(self.host, self.token, self.insecure):
            raise ValueError(problem)
        try:
            re.compile(self.strip_pattern)
        except re.error as exc:
            raise ValueError(f"strip_pattern {self.strip_pattern!r} is not a valid regex ({exc})") from None


class _Ticket:
    """One request's samples waiting for results (filled by the scorer thread)."""

    def __init__(self, n: int) -> None:
        self.results: list[RewardResult | None] = [None] * n
        self.remaining = n
        self.done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        if n == 0:
            self.done.set()

    def fill(self, i: int, result: RewardResult) -> None:
        """Record one result (scorer thread); the last one runs the callbacks."""
        with self._lock:  # the scorer thread and abandon() may fill the same ticket
            if self.results[i] is not None:
                return
            self.results[i] = result
            self.remaining -= 1
            if self.remaining:
                return
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once every result is in (at once if they are); it runs in the scorer thread."""
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback()


class RewardBatcher:
    """One scorer thread that scores samples from all in-flight requests together."""

    def __init__(self, router: Router, config: ServeConfig) -> None:
        self.router, self.config = router, config
        self._pending: deque[tuple[_Ticket, int, dict[str, Any], str]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        # Counters (read by /health and the tests): multi_request_batches counts batches whose samples
        # came from two or more requests, i.e. batching across requests happened.
        self.stats = {
            "scored_requests": 0,
            "batches": 0,
            "items": 0,
            "multi_request_batches": 0,
            "max_batch_items": 0,
            "rejected_items": 0,
            "abandoned_items": 0,
            "scoring_s": 0.0,
        }
        # Workers fork once (on the first batch) and serve every later batch: no per-batch fork and warm-up.
        self._engine = LocalEngine(router, workers=config.workers, timeout_s=config.timeout_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="datarl-scorer", daemon=True)
            self._thread.start()

    def queued(self) -> int:
        return len(self._pending)

    def submit(self, records: Sequence[dict[str, Any]], responses: Sequence[str]) -> _Ticket | str:
        """Queue the samples; a ``_Ticket`` to wait on, or the reason they were refused."""
        ticket = _Ticket(len(records))
        with self._cond:
            if self._closing:
                return SHUTTING_DOWN
            if len(self._pending) + len(records) > self.config.max_queue:
                self.stats["rejected_items"] += len(records)
                return (
                    f"overloaded: {len(self._pending)} samples queued + {len(records)} > max_queue "
                    f"{self.config.max_queue}; retry later, add replicas or raise --max-queue"
                )
            self.stats["scored_requests"] += 1
            for i, (rec, resp) in enumerate(zip(records, responses)):
                self._pending.append((ticket, i, rec, resp))
            self._cond.notify()
        return ticket

    def abandon(self, reason: str) -> int:
        """Stop taking samples and answer every queued one with failure ``reason`` (the batch being scored
        finishes); returns how many were abandoned."""
        with self._cond:
            self._closing = True
            dropped = list(self._pending)
            self._pending.clear()
            self.stats["abandoned_items"] += len(dropped)
            self._cond.notify()
        for ticket, i, rec, _ in dropped:
            ticket.fill(i, _failed(reason, self.router.config.source_for(str(rec.get("task"))) or "none"))
        return len(dropped)

    def close(self, timeout_s: float | None = None) -> bool:
        """Score what is queued, then stop the scorer thread (never started: score it here) and the workers.
        With ``timeout_s``, wait at most that long for the scorer; if it is still busy then, abandon the queue
        and leave it (a daemon thread; the workers stop when this process exits). True when all stopped."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is None:
            self._run()  # returns once the queue is empty
        else:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self.abandon(SHUTTING_DOWN)
                return False
            self._thread = None
        self._engine.close()
        return True

    def _take_batch(self) -> list[tuple[_Ticket, int, dict[str, Any], str]] | None:
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait()
            if not self._pending:
                return None  # closing and drained
            deadline = time.monotonic() + self.config.max_wait_ms / 1000
            while len(self._pending) < self.config.max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            n = min(self.config.max_batch, len(self._pending))
            return [self._pending.popleft() for _ in range(n)]

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            records, responses = [b[2] for b in batch], [b[3] for b in batch]
            started = time.perf_counter()
            try:
                results = self._engine.score(records, responses)
            except Exception as exc:  # the scorer thread must survive anything; report it per sample
                results = [
                    RewardResult(
                        0.0,
                        self.router.config.source_for(str(r.get("task"))) or "none",
                        {"failure": "internal_error", "error": f"{type(exc).__name__}: {exc}"},
                    )
                    for r in records
                ]
            tickets = {id(b[0]) for b in batch}
            self.stats["batches"] += 1
            self.stats["items"] += len(batch)
            self.stats["multi_request_batches"] += len(tickets) > 1
            self.stats["max_batch_items"] = max(self.stats["max_batch_items"], len(batch))
            self.stats["scoring_s"] = round(self.stats["scoring_s"] + time.perf_counter() - started, 4)
            for (ticket, i, _, _), result in zip(batch, results):
                ticket.fill(i, result)


def _failed(message: str, source: str = "none") -> RewardResult:
    return RewardResult(0.0, source, {"failure": message.split(":", 1)[0], "error": message})


class Scoring:
    """One request on its way through the service: wait for it, then take its :meth:`reply` (once)."""

    def __init__(
        self,
        service: RewardService,
        results: list[RewardResult | None],
        hows: list[str],
        todo: list[int],
        sources: list[str],
        ticket: _Ticket | None,
        request_error: str | None = None,
    ) -> None:
        self._service, self._results, self._hows = service, results, hows
        self._todo, self._sources, self._ticket = todo, sources, ticket
        self._request_error = request_error
        self._replied = False

    @property
    def done(self) -> bool:
        return self._ticket is None or self._ticket.done.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every sample is scored (or ``timeout_s`` passes); True when all are."""
        return self._ticket is None or self._ticket.done.wait(timeout_s)

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """``callback()`` once every sample is scored; it may run in the scorer thread."""
        if self._ticket is None:
            callback()
        else:
            self._ticket.add_done_callback(callback)

    def reply(self, unscored: str = SHUTTING_DOWN) -> dict[str, Any]:
        """The reply; a sample not scored yet is flagged with failure ``unscored``."""
        if not self._replied:
            self._replied = True
            self._service.finished()
        if self._request_error is not None:
            return bad_request_reply(self._request_error)
        if self._ticket is not None:
            scored = list(self._ticket.results)  # a snapshot: the scorer may still be filling it
            for i, source, result in zip(self._todo, self._sources, scored):
                self._results[i] = result if result is not None else _failed(unscored, source)
        return build_reply([r for r in self._results if r is not None], self._hows)


class RewardService:
    """The protocol without HTTP: :meth:`handle` turns one request body into one reply (used by the HTTP
    server through :meth:`begin`, and by OpenRLHF's ``reward_func`` file hook)."""

    def __init__(self, config: ServeConfig | None = None, *, start: bool = True) -> None:
        self.config = config or ServeConfig()
        self.router = Router(self.config.router)
        self.router.warm_up()  # imports and warm-ups happen before any thread or worker exists
        self.batcher = RewardBatcher(self.router, self.config)
        self.in_flight = 0
        self.requests = 0  # every request body handled, well-formed or not
        self.draining = False
        self._lock = threading.Lock()
        if start:
            self.batcher.start()

    def start(self) -> None:
        self.batcher.start()

    def close(self, timeout_s: float | None = None) -> bool:
        """Stop: score what is queued (at most ``timeout_s``, then abandon it); True when everything stopped."""
        self.draining = True
        return self.batcher.close(timeout_s)

    def health(self) -> dict[str, Any]:
        return {
            "status": "draining" if self.draining else "ok",
            "in_flight": self.in_flight,
            "queued": self.batcher.queued(),
            "workers": self.config.workers,
            "max_batch": self.config.max_batch,
            "max_queue": self.config.max_queue,
            "router": dict(self.config.router.table),
            "stats": {"requests": self.requests, **self.batcher.stats},
        }

    def handle(self, payload: Any) -> dict[str, Any]:
        """Score one request body and wait for it; never raises (problems are flagged in the reply)."""
        scoring = self.begin(payload)
        scoring.wait()
        return scoring.reply()

    def begin(self, payload: Any) -> Scoring:
        """Check one request body and queue its samples; never raises (a bug becomes a ``request_error``)."""
        with self._lock:
            self.requests += 1
            self.in_flight += 1
        try:
            return self._begin(payload)
        except Exception as exc:  # must still come back as a reply with a flag, never a dropped connection
            return Scoring(self, [], [], [], [], None, f"internal error: {type(exc).__name__}: {exc}")

    def _begin(self, payload: Any) -> Scoring:
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), list):
            return Scoring(
                self,
                [],
                [],
                [],
                [],
                None,
                "the body must be a JSON object with a 'query' list "
                "(and 'prompts' and 'labels' lists of the same length)",
            )
        queries = payload["query"]
        prompts, labels = payload.get("prompts"), payload.get("labels")
        prompts = prompts if isinstance(prompts, list) else []
        labels = labels if isinstance(labels, list) else []
        results: list[RewardResult | None] = [None] * len(queries)
        hows: list[str] = [""] * len(queries)
        todo: list[int] = []
        records, responses = [], []
        for i, query in enumerate(queries):
            prompt = prompts[i] if i < len(prompts) else None
            if i >= len(labels):
                results[i] = _failed(
                    f"bad_label: labels[{i}] is missing ({len(labels)} labels for {len(queries)} queries)"
                )
                continue
            record, problem = parse_label(labels[i], prompt, i)
            if record is None:
                results[i] = _failed(f"bad_label: {problem}")
                continue
            if not isinstance(query, str):
                results[i] = _failed(f"bad_request: query[{i}] must be a string, got {type(query).__name__}")
                continue
            response, hows[i] = split_response(query, prompt, self.config.strip_pattern)
            todo.append(i)
            records.append(record)
            responses.append(response)
        sources = [self.router.config.source_for(str(rec["task"])) or "none" for rec in records]
        if not todo:
            return Scoring(self, results, hows, [], [], None)
        ticket = self.batcher.submit(records, responses)
        if isinstance(ticket, str):
            for i, source in zip(todo, sources):
                results[i] = _failed(ticket, source)
            return Scoring(self, results, hows, [], [], None)
        return Scoring(self, results, hows, todo, sources, ticket)

    def finished(self) -> None:
        """One request answered (called by :meth:`Scoring.reply`)."""
        with self._lock:
            self.in_flight -= 1
