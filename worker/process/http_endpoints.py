"""The worker's HTTP endpoints, served by the standard library's threading HTTP server.

- `GET /metrics`: every metric of a `WorkerMetrics`, Prometheus text format 0.0.4, after
  `before_scrape` (if given) has refreshed, on the worker's event loop, what is read on demand.
- `GET /healthz`: liveness. The check runs on the worker's event loop, so a blocked loop fails
  it (503 after `LOOP_ANSWER_TIMEOUT`, naming the loop); `is_live` adds the rest.
- `GET /readyz`: readiness (`is_ready`: Redis reachable), run on the loop too.

Both checks answer 200 `{"ok": true, "check": ...}` or 503 `{"ok": false, "check": ...,
"reason": ...}`. A check is a plain function run on the loop, so it must be quick and must not
block: read a flag, `Thread.is_alive()`, never a network call.

The server runs in a thread of its own rather than on the event loop with aiohttp: aiohttp
then stays out of a worker that runs no `http.request` job (a tenth of its memory), and a
scrape or a probe never waits behind jobs for its bytes to be read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import socket
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import structlog

from producer.errors import CoroqError
from worker.metrics import CONTENT_TYPE, WorkerMetrics

log = structlog.get_logger()

# A check says True/False, or (False, "why") to put the reason in the answer.
CheckResult = bool | tuple[bool, str]
Check = Callable[[], CheckResult]

# Longest a scrape waits for the figures read on demand before answering without them.
SCRAPE_REFRESH_TIMEOUT = 2.0
# Longest a check waits for the event loop to run it: a loop that does not answer is not live.
LOOP_ANSWER_TIMEOUT = 5.0
# How long the server's thread waits for a request before it looks again: for ever, in effect.
IDLE_WAIT = 3600.0
# A port left at its default that is taken: the next ones are tried, up to this many.
DEFAULT_PORT_TRIES = 100
JSON = "application/json; charset=utf-8"


class PortUnavailable(CoroqError):
    """The worker cannot serve its endpoints (its port is taken): it does not start."""

    exit_code = 1


async def listen(server: HealthServer, *, port_chosen: bool) -> None:
    """Start `server`. A port left at its default that is taken (another worker on this
    host) gives way to the next free one; a port set on purpose does not."""
    try:
        await server.start(next_free=0 if port_chosen else DEFAULT_PORT_TRIES)
    except OSError as exc:
        where = f"{server.host}:{server.requested_port}"
        tried = "" if port_chosen else f" or the {DEFAULT_PORT_TRIES} ports after it"
        raise PortUnavailable(
            f"cannot serve /metrics on {where}{tried} ({exc.strerror or exc}); set "
            "metrics_port (COROQ_METRICS_PORT) to a free port, or 0 for none"
        ) from None


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: WorkerMetrics,
        is_live: Check,
        is_ready: Check,
        before_scrape: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`port` 0 binds a free port (handy in tests; `port` tells which once started)."""
        self.host = host
        self._requested_port = port
        self._metrics = metrics
        self._checks = {"live": is_live, "ready": is_ready}
        # Reads what is cheaper to read on demand than to keep fresh (the queue depths), so
        # an idle worker nobody scrapes sends Redis nothing for its metrics.
        self._before_scrape = before_scrape
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def requested_port(self) -> int:
        return self._requested_port

    @property
    def port(self) -> int:
        """The port listened on (the requested one until `start`)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    async def start(self, *, next_free: int = 0) -> None:
        """Listen, the checks to run on the calling event loop; raises OSError when the
        address is taken, unless one of the `next_free` ports after it is free (then listen
        there, and say so)."""
        self._loop = asyncio.get_running_loop()
        for step in range(next_free + 1):
            try:
                self._listen(self._requested_port + step)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or step == next_free:
                    raise
                continue
            if step:
                log.info(
                    "http.port_taken",
                    port=self._requested_port,
                    listening_on=self.port,
                    detail="the default port was taken (another worker on this host?); the "
                    "next free one serves /metrics, /healthz and /readyz",
                )
            return

    def _listen(self, port: int) -> None:
        server = ThreadingHTTPServer((self.host, port), _handler_of(self))
        server.daemon_threads = True  # a request under way never holds the process up
        self._server = server
        # It sleeps until a request comes (an idle worker's threads must not wake for
        # nothing, docs/performance.md#w4); `stop` wakes it with a connection of its own.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": IDLE_WAIT}, name="coroq-http",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        log.info("http.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return
        # `shutdown` asks serve_forever to return and waits until it has; a connection wakes
        # its wait for the next request, until it has seen the request to stop.
        stopped = asyncio.ensure_future(asyncio.to_thread(server.shutdown))
        address = _local_address(server)
        while not stopped.done():
            with contextlib.suppress(OSError):
                socket.create_connection(address, timeout=1).close()
            await asyncio.wait({stopped}, timeout=0.05)
        server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, LOOP_ANSWER_TIMEOUT)

    # -- answers, made in the server's threads --------------------------------------------

    def metrics_answer(self) -> tuple[int, str, bytes]:
        if self._before_scrape is not None and self._loop is not None:
            refresh = asyncio.run_coroutine_threadsafe(self._refreshed(), self._loop)
            try:
                refresh.result(SCRAPE_REFRESH_TIMEOUT + 1)
            except (concurrent.futures.TimeoutError, RuntimeError):  # a stuck or closed loop
                refresh.cancel()
        return 200, CONTENT_TYPE, self._metrics.render()

    async def _refreshed(self) -> None:
        assert self._before_scrape is not None  # noqa: S101 - checked by the caller
        try:
            async with asyncio.timeout(SCRAPE_REFRESH_TIMEOUT):
                await self._before_scrape()
        except Exception as exc:  # noqa: BLE001 - serve what is known, say why not more
            log.debug("metrics.refresh_failed", error=f"{type(exc).__name__}: {exc}")

    def check_answer(self, name: str) -> tuple[int, str, bytes]:
        ok, reason = self._check_on_loop(name)
        if ok:
            return 200, JSON, orjson.dumps({"ok": True, "check": name})
        return 503, JSON, orjson.dumps({"ok": False, "check": name, "reason": reason})

    def _check_on_loop(self, name: str) -> tuple[bool, str]:
        loop = self._loop
        if loop is None:
            return False, "not started"
        answer: concurrent.futures.Future[tuple[bool, str]] = concurrent.futures.Future()

        def run_check() -> None:
            try:
                result = self._checks[name]()
            except Exception as exc:  # noqa: BLE001 - a broken check reports itself failing
                answer.set_result((False, f"check raised {type(exc).__name__}: {exc}"))
                return
            ok, reason = result if isinstance(result, tuple) else (result, f"not {name}")
            answer.set_result((ok, reason))

        try:
            loop.call_soon_threadsafe(run_check)
            return answer.result(LOOP_ANSWER_TIMEOUT)
        except RuntimeError:  # the loop is closed
            return False, "the event loop has stopped"
        except concurrent.futures.TimeoutError:
            return False, f"the event loop did not answer within {LOOP_ANSWER_TIMEOUT:g} s"


def _local_address(server: ThreadingHTTPServer) -> tuple[str, int]:
    """Where to connect to reach `server` from this host (a wildcard bind is reached on the
    loopback address of its family)."""
    host, port = str(server.server_address[0]), int(server.server_address[1])
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - read, not bound
    return wildcard.get(host, host), port


def _handler_of(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
        "/metrics": server.metrics_answer,
        "/healthz": lambda: server.check_answer("live"),
        "/readyz": lambda: server.check_answer("ready"),
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "coroq"
        sys_version = ""

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, *, send_body: bool) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                status, content_type, body = 404, JSON, orjson.dumps({"error": "not found"})
            else:
                status, content_type, body = route()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Requests are not logged (a scrape every 15 s would fill the log)."""

    return Handler
