"""`producer dashboard`: serve the web UI (docs/dashboard.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from aiohttp import web

from producer.cli.common import Prefix, RedisUrl, app, fail
from producer.connection import DEFAULT_REDIS_URL, redact_url
from producer.dashboard import DashboardSettings, SettingsError, create_app
from producer.dashboard.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REDIS_BUDGET,
    DEFAULT_REFRESH,
)
from producer.keys import DEFAULT_PREFIX


@app.command()
def dashboard(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = DEFAULT_PORT,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, change nothing.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="COROQ_DASHBOARD_TOKEN",
            help="Visitors must give it (required when --host is not a loopback address).",
            show_default=False,
        ),
    ] = None,
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", "-q", help="Show only this queue (repeat for more).", show_default=False
        ),
    ] = None,
    refresh: Annotated[
        float, typer.Option("--refresh", help="Seconds between refreshes of the pages, at least.")
    ] = DEFAULT_REFRESH,
    redis_budget: Annotated[
        float,
        typer.Option(
            "--redis-budget",
            help="Redis commands a second the overview may cost, at most (many queues: "
            "it is read less often).",
        ),
    ] = DEFAULT_REDIS_BUDGET,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Serve the web dashboard: queues, jobs, dead letters, schedules, workers."""
    try:
        settings = DashboardSettings(
            redis_url=redis_url,
            prefix=prefix,
            host=host,
            port=port,
            read_only=read_only,
            token=token or None,
            queues=tuple(queues or ()),
            refresh=refresh,
            redis_budget=redis_budget,
        )
        application = create_app(settings)
    except SettingsError as exc:
        raise fail(str(exc), 2) from None
    except ValueError as exc:  # redis-py's verdict on a malformed URL
        raise fail(f"invalid --redis-url {redact_url(redis_url)}: {exc}", 2) from None
    mode = "read-only" if read_only else "read-write"
    typer.echo(
        f"coroq dashboard ({mode}) on http://{host}:{port}/ for {redact_url(redis_url)}", err=True
    )
    try:
        web.run_app(application, host=host, port=port, print=None, access_log=None)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 2) from None
