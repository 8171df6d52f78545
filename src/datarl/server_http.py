"""``datarl serve``: the reward service (:mod:`datarl.server`) over HTTP, on uvicorn (h11) and Starlette.

- ``POST`` any path: one OpenRLHF reward request; the reply is always HTTP 200 with problems in the body
  (:mod:`datarl.integrations.openrlhf`). ``GET /health`` (or ``/healthz``): state and counters.
- With a token (:mod:`datarl.server_auth`) every request, ``/health`` included, needs ``Authorization:
  Bearer TOKEN`` or the path ``/TOKEN/...``; otherwise HTTP 401 and the connection is closed.
- Limits, so that slow, idle or hostile clients cannot starve others: the request line and headers must
  fit ``max_header_kb`` (else 400) and arrive within ``read_timeout_s`` of connecting or of the previous
  reply (else the connection is closed, whatever was sent); the body must fit ``max_body_mb`` and arrive
  within ``read_timeout_s`` of the headers (else a ``request_error`` reply and the connection is closed);
  idle keep-alive connections close after 5 s; past ``max_connections`` open connections, requests get
  HTTP 503 (uvicorn's ``limit_concurrency``; OpenRLHF's client retries after 1 s).
- SIGTERM/SIGINT (:func:`serve`, or :meth:`RewardServer.stop`): stop listening, close idle and half-sent
  connections at once, answer a request whose body is still arriving with ``request_error``
  ``shutting_down``, score every request already received, and return. Requests still unscored after
  ``drain_timeout_s`` are answered with their samples flagged ``shutting_down``; uvicorn cancels whatever
  is left ``_BACKSTOP_S`` later, so the process always exits 0 in bounded time.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from datarl.integrations.openrlhf import bad_request_reply, request_error_reply
from datarl.server import SHUTTING_DOWN, RewardService, Scoring, ServeConfig
from datarl.server_auth import TokenCheck

__all__ = ["RewardApp", "RewardServer", "serve"]

_BACKSTOP_S = 5.0  # after drain_timeout_s, uvicorn cancels any request task still running
_KEEP_ALIVE_S = 5  # idle keep-alive connections close after this
_OFFLOAD_BYTES = 256 * 1024  # bodies larger than this are parsed and checked in a thread, not on the event loop
_HEALTH_PATHS = ("/health", "/healthz")
_UNAUTHORIZED = (
    "unauthorized: this server needs its token; send 'Authorization: Bearer TOKEN' or put the token first "
    "in the path (http://HOST:PORT/TOKEN/get_reward)"
)


class _BodyTooLarge(Exception):
    pass


def _json_response(status: int, body: Any, close: bool = False, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, ensure_ascii=False, default=str).encode()
    extra = {**(headers or {}), **({"Connection": "close"} if close else {})}
    return Response(data, status_code=status, media_type="application/json", headers=extra)


class RewardApp:
    """The ASGI application: authorization, body limits, the protocol, and the drain on shutdown."""

    def __init__(self, service: RewardService, *, verbose: bool = False) -> None:
        self.service, self.config, self.verbose = service, service.config, verbose
        self.auth = TokenCheck(self.config.token)
        self.stats = {"unauthorized": 0, "body_timeouts": 0, "too_large": 0}
        self.connections: Callable[[], int] = lambda: 0  # set by RewardServer: open connections
        self._draining: asyncio.Event | None = None
        self._unscored = SHUTTING_DOWN  # the failure of samples left unscored by a stop
        self._waiters: set[asyncio.Future[None]] = set()
        self._app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def begin_drain(self) -> None:
        """Stop taking requests: call in the event loop's thread. Bodies still arriving are answered with
        ``shutting_down``; samples not scored within ``drain_timeout_s`` are flagged and answered."""
        if self._drain_event().is_set():
            return
        self.service.draining = True
        self._drain_event().set()
        asyncio.get_running_loop().call_later(self.config.drain_timeout_s, self._give_up)

    def _give_up(self) -> None:
        reason = f"{SHUTTING_DOWN} (not scored within --drain-timeout {self.config.drain_timeout_s:g} s)"
        self._unscored = reason
        self.service.batcher.abandon(reason)
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    def _drain_event(self) -> asyncio.Event:
        if self._draining is None:
            self._draining = asyncio.Event()
        return self._draining

    async def _endpoint(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self._respond(request)
        if self.verbose:
            client = request.client.host if request.client else "-"
            ms = 1000 * (time.perf_counter() - started)
            path = self.auth.redact(request.scope["path"])
            print(f"{client} {request.method} {path} {response.status_code} {ms:.1f} ms", file=sys.stderr, flush=True)
        return response

    async def _respond(self, request: Request) -> Response:
        # h11 stops a head over the limit only while it is incomplete; one that arrived whole is checked here
        head = len(request.scope.get("raw_path") or b"") + len(request.scope.get("query_string") or b"")
        head += sum(len(k) + len(v) + 4 for k, v in request.scope["headers"])
        if head > self.config.max_header_kb * 1024:
            self.stats["too_large"] += 1
            message = f"request line and headers over --max-header-kb {self.config.max_header_kb:g}"
            return _json_response(400, {"error": message}, close=True)
        authorized, path = self.auth.authorize(request.headers.get("authorization"), request.scope["path"])
        if not authorized:
            self.stats["unauthorized"] += 1
            return _json_response(
                401, {"error": _UNAUTHORIZED}, close=True, headers={"WWW-Authenticate": 'Bearer realm="datarl"'}
            )
        if request.method == "GET":
            if path.rstrip("/") in _HEALTH_PATHS:
                health = self.service.health()
                health["http"] = {**self.stats, "connections": self.connections()}
                return _json_response(200, health)
            return _json_response(404, {"error": "no such path; POST rewards to any path, GET /health"})
        return await self._reward(request)

    async def _reward(self, request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is None and "transfer-encoding" not in request.headers:
            return _json_response(200, bad_request_reply("a Content-Length header is required"), close=True)
        limit = int(self.config.max_body_mb * 2**20)
        if length is not None and length.isdigit() and int(length) > limit:
            return self._too_large(int(length))
        body = await self._read_body(request, limit)
        if isinstance(body, Response):
            return body
        big = len(body) > _OFFLOAD_BYTES
        scoring = await asyncio.to_thread(self._begin, body) if big else self._begin(body)
        if isinstance(scoring, dict):
            return _json_response(200, scoring)
        await self._wait(scoring)
        reply = await asyncio.to_thread(scoring.reply, self._unscored) if big else scoring.reply(self._unscored)
        return _json_response(200, reply)

    def _too_large(self, size: int) -> Response:
        self.stats["too_large"] += 1
        message = f"body of {size} bytes is over the {self.config.max_body_mb:g} MB limit; send smaller batches"
        return _json_response(200, bad_request_reply(message), close=True)

    async def _read_body(self, request: Request, limit: int) -> bytes | Response:
        """The whole body, or the response to send instead (too large, too slow, or the server stopping)."""

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _BodyTooLarge(size)
                chunks.append(chunk)
            return b"".join(chunks)

        reader = asyncio.ensure_future(read())
        stopping = asyncio.ensure_future(self._drain_event().wait())
        try:
            done, _ = await asyncio.wait(
                {reader, stopping}, timeout=self.config.read_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
        if reader not in done:
            reader.cancel()
            if self._drain_event().is_set():
                return _json_response(200, request_error_reply(SHUTTING_DOWN), close=True)
            self.stats["body_timeouts"] += 1
            message = (
                f"the body did not arrive within --read-timeout {self.config.read_timeout_s:g} s of the headers; "
                "send it at once (or raise --read-timeout for a slow network)"
            )
            return _json_response(200, bad_request_reply(message), close=True)
        try:
            return reader.result()
        except _BodyTooLarge as exc:
            return self._too_large(exc.args[0])
        except ClientDisconnect:
            return Response(status_code=200)  # nobody is left to read it

    def _begin(self, body: bytes) -> Scoring | dict[str, Any]:
        try:
            payload = json.loads(body)
        except RecursionError:
            return bad_request_reply("the body is JSON nested too deeply to parse (over ~1000 levels)")
        except ValueError as exc:  # UnicodeDecodeError included
            return bad_request_reply(f"the body is not JSON ({exc})")
        return self.service.begin(payload)

    async def _wait(self, scoring: Scoring) -> None:
        if scoring.done or self._unscored != SHUTTING_DOWN:  # scored, or the drain has given up already
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake() -> None:  # in the scorer thread
            try:
                loop.call_soon_threadsafe(lambda: waiter.done() or waiter.set_result(None))
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

        self._waiters.add(waiter)
        try:
            scoring.add_done_callback(wake)
            await waiter
        finally:
            self._waiters.discard(waiter)


def _guarded_h11(head_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol plus a deadline for each request's line and headers: it starts when the
    connection opens and again when a reply is complete, and closes the connection when it passes while no
    request is being read or answered (uvicorn has no such timeout: a half-sent header would hold its
    connection, and a graceful stop, forever)."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self.arm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self.arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None
            super().connection_lost(exc)

        def arm_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
            self.head_timer = self.loop.call_later(head_timeout_s, self.head_timed_out)

        def head_timed_out(self) -> None:
            self.head_timer = None
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being read or answered: the body has its own deadline
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


class _Server(uvicorn.Server):
    """uvicorn's server that starts the app's drain when told to exit and reports when it listens."""

    def __init__(self, config: uvicorn.Config, app: RewardApp) -> None:
        super().__init__(config)
        self.reward_app = app
        self.on_ready: Callable[[], None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self.request_drain()

    def request_drain(self) -> None:
        self.should_exit = True
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self.reward_app.begin_drain)
            except RuntimeError:
                pass  # the loop is closed: the server has stopped already


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)
    except OSError as exc:
        raise OSError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port (0: any free port) or --host"
        ) from None


_LIVE_SERVERS: weakref.WeakSet[RewardServer] = weakref.WeakSet()


def _release_sockets_in_child() -> None:
    """In a process forked from a server (a scoring worker, forked on the first batch or to replace one):
    let go of the server's listening socket and connections. Otherwise a connection the server closes stays
    open while the worker lives (the client never sees it end), and so does the port after the server stops
    listening. ``/dev/null`` is put in place of each descriptor, so that its number stays taken and no later
    close of the inherited socket object can hit another file."""
    fds = {fd for server in list(_LIVE_SERVERS) for fd in server.socket_fds()}
    if not fds:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            try:
                os.dup2(null, fd, inheritable=False)
            except OSError:
                pass
    finally:
        os.close(null)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_sockets_in_child)


def _allow_open_files(n: int) -> None:
    """Raise the soft limit on open files to ``n`` where the hard limit allows (one per connection)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < n:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n if hard == resource.RLIM_INFINITY else min(n, hard), hard))
    except (ImportError, ValueError, OSError):
        pass


class RewardServer:
    """The HTTP server of one :class:`~datarl.server.RewardService`: listens at once (``url`` is known
    before :meth:`run`), serves until :meth:`stop` or a signal (in the main thread), then drains."""

    def __init__(self, service: RewardService, *, verbose: bool = False) -> None:
        cfg: ServeConfig = service.config
        self.service = service
        self.app = RewardApp(service, verbose=verbose)
        self.sock = _listen(cfg.host, cfg.port)
        _allow_open_files(cfg.max_connections + 256)
        config = uvicorn.Config(
            self.app,
            http=_guarded_h11(cfg.read_timeout_s),
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            log_level="warning",
            access_log=False,  # --verbose logs requests itself, with the token taken out of the path
            proxy_headers=False,
            server_header=False,
            limit_concurrency=cfg.max_connections + 1,  # uvicorn counts the connection asking, too
            timeout_keep_alive=_KEEP_ALIVE_S,
            timeout_graceful_shutdown=math.ceil(cfg.drain_timeout_s + _BACKSTOP_S),
            h11_max_incomplete_event_size=int(cfg.max_header_kb * 1024),
        )
        self._server = _Server(config, self.app)
        self.app.connections = lambda: len(self._server.server_state.connections)
        _LIVE_SERVERS.add(self)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    def socket_fds(self) -> list[int]:
        """File descriptors of the listening socket and of every open connection."""
        fds = [self.sock.fileno()]
        for connection in list(self._server.server_state.connections):
            transport = getattr(connection, "transport", None)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                fds.append(sock.fileno())
        return [fd for fd in fds if fd >= 0]

    def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve until :meth:`stop` or, in the main thread, SIGTERM/SIGINT; returns once drained."""
        self._server.on_ready = (lambda: on_ready(self.url)) if on_ready is not None else None
        self._server.run(sockets=[self.sock])

    def stop(self) -> None:
        """Start the graceful stop (from any thread); :meth:`run` returns once it is done."""
        self._server.request_drain()


def serve(config: ServeConfig, *, on_ready: Callable[[str], None] | None = None, verbose: bool = False) -> int:
    """Run until SIGTERM or SIGINT, then drain (see the module notes) and return 0.
    ``on_ready(url)`` is called once the socket listens. Must run in the main thread (signals)."""
    service = RewardService(config)
    try:
        server = RewardServer(service, verbose=verbose)
    except OSError:
        service.close()
        raise
    # uvicorn handles SIGTERM/SIGINT while it runs, and raises the signal again once it has stopped for the
    # handlers that were there before. Ours start the graceful stop (a signal before uvicorn's handlers are in
    # place stops it as soon as it starts) and do nothing more, so the exit status stays 0.
    previous = {sig: signal.signal(sig, lambda s, f: server.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(on_ready)
    finally:
        service.close(timeout_s=2.0)  # every request is answered by now; a batch nobody waits for is left
        server.sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
