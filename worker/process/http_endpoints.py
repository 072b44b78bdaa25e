"""The worker's HTTP endpoints, served by aiohttp from the worker's own event loop.

- `GET /metrics`: every metric of a `WorkerMetrics`, Prometheus text format 0.0.4, after
  `before_scrape` (if given) has refreshed what is read on demand.
- `GET /healthz`: liveness. That the loop answers at all is half the check (a blocked loop
  answers nothing, and the caller's timeout says so); `is_live` adds the rest.
- `GET /readyz`: readiness (`is_ready`: Redis reachable).

Both checks answer 200 `{"ok": true, "check": ...}` or 503 `{"ok": false, "check": ...,
"reason": ...}`. A check is a plain function run on the loop, so it must be quick and must not
block: read a flag, `Thread.is_alive()`, never a network call.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from producer.errors import CoroqError
from worker.metrics import CONTENT_TYPE, WorkerMetrics

log = structlog.get_logger()

# A check says True/False, or (False, "why") to put the reason in the answer.
CheckResult = bool | tuple[bool, str]
Check = Callable[[], CheckResult]

# Longest a scrape waits for the figures read on demand before answering without them.
SCRAPE_REFRESH_TIMEOUT = 2.0
# A port left at its default that is taken: the next ones are tried, up to this many.
DEFAULT_PORT_TRIES = 100


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
        self._runner: web.AppRunner | None = None

    @property
    def requested_port(self) -> int:
        return self._requested_port

    @property
    def port(self) -> int:
        """The port listened on (the requested one until `start`)."""
        if self._runner is not None:
            for address in self._runner.addresses:
                if isinstance(address, tuple) and len(address) >= 2:
                    return int(address[1])
        return self._requested_port

    async def start(self, *, next_free: int = 0) -> None:
        """Listen; raises OSError when the address is taken, unless one of the `next_free`
        ports after it is free (then listen there, and say so)."""
        for step in range(next_free + 1):
            try:
                await self._listen(self._requested_port + step)
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

    async def _listen(self, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_live)
        app.router.add_get("/readyz", self._serve_ready)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("http.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _serve_metrics(self, _request: web.Request) -> web.Response:
        if self._before_scrape is not None:
            try:
                async with asyncio.timeout(SCRAPE_REFRESH_TIMEOUT):
                    await self._before_scrape()
            except Exception as exc:  # noqa: BLE001 - serve what is known, say why not more
                log.debug("metrics.refresh_failed", error=f"{type(exc).__name__}: {exc}")
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _serve_live(self, _request: web.Request) -> web.Response:
        return self._run_check("live")

    async def _serve_ready(self, _request: web.Request) -> web.Response:
        return self._run_check("ready")

    def _run_check(self, name: str) -> web.Response:
        try:
            result = self._checks[name]()
        except Exception as exc:  # noqa: BLE001 - a broken check reports itself as failing
            ok, reason = False, f"check raised {type(exc).__name__}: {exc}"
        else:
            ok, reason = result if isinstance(result, tuple) else (result, f"not {name}")
        if ok:
            return web.json_response({"ok": True, "check": name})
        return web.json_response({"ok": False, "check": name, "reason": reason}, status=503)
