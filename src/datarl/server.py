"""``datarl serve``: the reward router as an HTTP service for OpenRLHF's remote reward model.

The protocol (request and reply shapes, labels, how the response is cut from the query, why the reply is
always HTTP 200 and ``extra_logs`` holds numbers only) is in :mod:`datarl.integrations.openrlhf`. Here:

- Samples of all in-flight requests are batched by one scorer thread (up to ``max_batch`` items, waiting
  at most ``max_wait_ms`` after the first) and scored by a :class:`~datarl.executors.engine.LocalEngine`
  (long-lived forked workers with per-item timeouts, which inherit the sources' warm-up, e.g. IFEval's
  Punkt model; model sources batched in-process). At most ``max_queue`` samples wait;
  a request that does not fit is answered at once with every sample flagged ``overloaded``.
- ``GET /health`` returns the state and counters. SIGTERM/SIGINT: stop accepting, finish every accepted
  request, exit 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

__all__ = [
    "ServeConfig",
    "RewardBatcher",
    "RewardService",
    "RewardHTTPServer",
    "serve",
    "make_label",
    "openrlhf_rows",
]  # the label helpers are re-exported: users build labels here


@dataclass(frozen=True)
class ServeConfig:
    """Options of the reward service.

    host, port: where to listen (port 0: the OS picks a free port; the bound URL is printed).
    workers: scoring worker processes per batch.
    max_batch: samples scored together in one batch.
    max_wait_ms: how long the scorer waits for more samples after the first one arrives.
    max_queue: samples allowed to wait for the scorer; a request that does not fit is flagged ``overloaded``.
    timeout_s: wall-clock limit per sample; past it the sample scores 0 with failure ``timeout``.
    max_body_mb: largest request body accepted.
    strip_pattern: regex of end-of-sequence markers removed (repeatedly) from the end of each response;
        "" keeps the response as sent.
    router: which source scores which task.
    """

    host: str = "127.0.0.1"
    port: int = 0
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_batch: int = 256
    max_wait_ms: float = 5.0
    max_queue: int = 4096
    timeout_s: float = 30.0
    max_body_mb: float = 64.0
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
            (self.max_body_mb > 0, "max_body_mb must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        try:
            re.compile(self.strip_pattern)
        except re.error as exc:
            raise ValueError(f"strip_pattern {self.strip_pattern!r} is not a valid regex ({exc})") from None


class _Ticket:
    """One request's samples waiting for results."""

    def __init__(self, n: int) -> None:
        self.results: list[RewardResult | None] = [None] * n
        self.remaining = n
        self.done = threading.Event()
        if n == 0:
            self.done.set()


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
                return "shutting_down: the server is stopping; retry against another replica"
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

    def close(self) -> None:
        """Score what is queued, then stop the scorer thread (never started: score it here)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        else:
            self._run()  # returns once the queue is empty
        self._engine.close()

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
                ticket.results[i] = result
                ticket.remaining -= 1
                if ticket.remaining == 0:
                    ticket.done.set()


def _failed(message: str, source: str = "none") -> RewardResult:
    return RewardResult(0.0, source, {"failure": message.split(":", 1)[0], "error": message})


class RewardService:
    """The protocol without HTTP: :meth:`handle` turns one request body into one reply (used by the HTTP
    server and by OpenRLHF's ``reward_func`` file hook)."""

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

    def close(self) -> None:
        self.draining = True
        self.batcher.close()

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
        """Score one request body; never raises (problems are flagged in the reply)."""
        with self._lock:
            self.requests += 1
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), list):
            return bad_request_reply(
                "the body must be a JSON object with a 'query' list "
                "(and 'prompts' and 'labels' lists of the same length)"
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
        with self._lock:
            self.in_flight += 1
        try:
            self._score(todo, records, responses, results)
        finally:
            with self._lock:
                self.in_flight -= 1
        return build_reply([r for r in results if r is not None], hows)

    def _score(
        self, todo: list[int], records: list[dict[str, Any]], responses: list[str], results: list[RewardResult | None]
    ) -> None:
        if not todo:
            return
        ticket = self.batcher.submit(records, responses)
        if isinstance(ticket, str):
            for i, rec in zip(todo, records):
                results[i] = _failed(ticket, self.router.config.source_for(str(rec["task"])) or "none")
            return
        ticket.done.wait()
        for i, result in zip(todo, ticket.results):
            results[i] = result


class _Handler(BaseHTTPRequestHandler):
    server_version = "datarl-serve"
    timeout = 60  # seconds a client may take to send its request: a stalled one cannot block shutdown

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?", 1)[0].rstrip("/") in ("/health", "/healthz"):
            self._send(200, self.server.service.health())  # type: ignore[attr-defined]
        else:
            self._send(404, {"error": f"no such path {self.path}; POST rewards to any path, GET /health"})

    def do_POST(self) -> None:  # noqa: N802
        service: RewardService = self.server.service  # type: ignore[attr-defined]
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self._send(200, bad_request_reply("a Content-Length header is required"))
        if length > service.config.max_body_mb * 2**20:
            self.close_connection = True
            return self._send(
                200,
                bad_request_reply(
                    f"body of {length} bytes is over the {service.config.max_body_mb:g} MB limit; send smaller batches"
                ),
            )
        try:
            payload = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError) as exc:
            return self._send(200, bad_request_reply(f"the body is not JSON ({exc})"))
        try:
            reply = service.handle(payload)
        except Exception as exc:  # a bug must still come back as 200 with a flag, never a dropped connection
            reply = bad_request_reply(f"internal error: {type(exc).__name__}: {exc}")
        self._send(200, reply)

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False, default=str).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; nothing to answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)


class RewardHTTPServer(ThreadingHTTPServer):
    """A thread per connection; non-daemon threads so that closing waits for in-flight requests."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 1024  # socketserver's default of 5 drops connections under a burst

    def __init__(self, service: RewardService, host: str, port: int, verbose: bool = False) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.service, self.verbose = service, verbose
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"


def serve(config: ServeConfig, *, on_ready: Callable[[str], None] | None = None, verbose: bool = False) -> int:
    """Run until SIGTERM or SIGINT, then stop accepting, finish accepted requests and return 0.
    ``on_ready(url)`` is called once the socket listens. Must run in the main thread (signals)."""
    service = RewardService(config)
    try:
        httpd = RewardHTTPServer(service, config.host, config.port, verbose)
    except OSError as exc:
        service.close()
        raise OSError(
            f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc}); "
            "pick another --port (0: any free port) or --host"
        ) from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda s, f: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    loop = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="datarl-http")
    loop.start()
    try:
        if on_ready is not None:
            on_ready(httpd.url)
        while not stop.wait(0.5):
            pass
    finally:
        service.draining = True
        httpd.shutdown()  # stop accepting; connections not yet accepted are refused when the socket closes
        loop.join()
        httpd.server_close()  # waits for every accepted request to be answered
        service.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
