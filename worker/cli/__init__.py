"""`worker`: run the daemon, check a configuration, or watch a demo.

Each command loads the settings once (flags > COROQ_* env > TOML > defaults), configures
logging once, and calls one library function.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from producer.errors import CoroqError
from worker.cli.check import check_worker
from worker.cli.demo import run_demo
from worker.cli.health_probe import DEFAULT_TIMEOUT, probe_health
from worker.cpu_affinity import apply as apply_cpu_affinity
from worker.cpu_affinity import available_cpus, child_settings
from worker.logs import configure_logging
from worker.process.daemon import Worker
from worker.process.scheduler import all_schedules
from worker.process.supervisor import Supervisor, child_arguments
from worker.registry import TaskRegistry
from worker.settings import WorkerSettings, load_settings
from worker.tracing import job_tracer

app = typer.Typer(
    name="worker",
    help="The coroq worker: takes jobs from Redis and runs each as a coroutine.",
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (or COROQ_CONFIG).", show_default=False
    ),
]
QueuesOpt = Annotated[
    str | None, typer.Option("--queues", "-q", help="Comma-separated queues.", show_default=False)
]
ProcessesOpt = Annotated[
    int | None,
    typer.Option("--processes", help="Worker processes under one supervisor.", show_default=False),
]
CpuAffinityOpt = Annotated[
    str | None,
    typer.Option(
        "--cpu-affinity",
        help="off, auto, or CPUs such as 0-3,6 (with --processes: one CPU per process).",
        show_default=False,
    ),
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option("--concurrency", help="Jobs run at once.", show_default=False)
]
TasksOpt = Annotated[
    str | None,
    typer.Option("--tasks", "-t", help="Comma-separated task modules.", show_default=False),
]
RedisOpt = Annotated[str | None, typer.Option("--redis-url", help="Redis URL.", show_default=False)]
LogLevelOpt = Annotated[str | None, typer.Option("--log-level", show_default=False)]
LogFormatOpt = Annotated[
    str | None, typer.Option("--log-format", help="json, console or auto.", show_default=False)
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"worker: error: {message}", err=True)
    return typer.Exit(code)


def settings_from_flags(config: Path | None, **flags: Any) -> WorkerSettings:
    try:
        settings = load_settings(config, **flags)
    except CoroqError as exc:
        raise fail(str(exc)) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


@app.callback()
def serve(
    ctx: typer.Context,
    config: ConfigOpt = None,
    queues: QueuesOpt = None,
    concurrency: ConcurrencyOpt = None,
    tasks: TasksOpt = None,
    redis_url: RedisOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    processes: ProcessesOpt = None,
    cpu_affinity: CpuAffinityOpt = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit 0 once the queues are empty and jobs done.")
    ] = False,
) -> None:
    """Run the worker daemon (the default command). SIGTERM or SIGINT drains it gracefully."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from_flags(
        config,
        queues=queues,
        concurrency=concurrency,
        tasks=tasks,
        redis_url=redis_url,
        log_level=log_level,
        log_format=log_format,
        processes=processes,
        cpu_affinity=cpu_affinity,
    )
    try:
        if settings.processes > 1:
            per_child = child_settings(settings.cpu_affinity, settings.processes, available_cpus())
        else:
            apply_cpu_affinity(settings.cpu_affinity)  # before any thread starts: they inherit it
        registry = TaskRegistry.from_modules(settings.tasks)
        all_schedules(settings, registry)  # a schedule that cannot run stops the start here
    except CoroqError as exc:
        raise fail(str(exc)) from None
    if settings.processes > 1:
        # The tasks imported above: a module that fails to load fails here, once.
        supervisor = Supervisor(settings, child_arguments(sys.argv[1:]), per_child, burst=burst)
        raise typer.Exit(supervisor.run())
    try:
        # After the task modules: one of them may have set up OpenTelemetry itself.
        tracer = job_tracer(settings.worker_id)
        summary = Worker(settings, registry, burst=burst, tracer=tracer).run()
    except CoroqError as exc:
        raise fail(str(exc), getattr(exc, "exit_code", 1)) from None
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command()
def check(
    config: ConfigOpt = None,
    queues: QueuesOpt = None,
    tasks: TasksOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Validate the settings, ping Redis and list the registered tasks (exit 1 on a problem)."""
    settings = settings_from_flags(config, queues=queues, tasks=tasks, redis_url=redis_url)
    report = check_worker(settings)
    for ok, line in report.lines:
        typer.echo(f"{'ok  ' if ok else 'FAIL'} {line}")
    for name in report.tasks:
        typer.echo(f"     task {name}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def health(
    config: ConfigOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer.")
    ] = DEFAULT_TIMEOUT,
    pid: Annotated[
        int | None,
        typer.Option("--pid", help="Ask the worker with this process id (default: every one)."),
    ] = None,
) -> None:
    """Ask the worker on this host for /healthz and /readyz: exit 0 when both are OK, else 1.

    Uses the worker's settings (metrics_port, metrics_host). With the port left at its default,
    asks each worker of this host where its heartbeat says it serves (several workers take
    the next free ports). With metrics_port 0 it can only ping Redis, and says so.
    """
    settings = settings_from_flags(config)
    verdict = probe_health(settings, timeout, pid)
    typer.echo(f"{'ok' if verdict.ok else 'FAIL'}: {verdict.message}", err=not verdict.ok)
    if not verdict.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    config: ConfigOpt = None,
    redis_url: RedisOpt = None,
    concurrency: ConcurrencyOpt = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Stop after this many seconds (default: until Ctrl-C)."),
    ] = None,
) -> None:
    """Run a worker and feed it example jobs; starts a private Redis if none answers."""
    settings = settings_from_flags(config, redis_url=redis_url, concurrency=concurrency)
    try:
        run_demo(settings, duration)
    except CoroqError as exc:
        raise fail(str(exc)) from None
    except RuntimeError as exc:  # no redis-server to start
        raise fail(str(exc), 1) from None


def main() -> None:
    app()
