"""`producer queue` (pause and resume queues) and `producer schedules` (the periodic tasks):
flow control (docs/scheduling.md)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from producer.cli.common import Prefix, RedisUrl, app, fail, redis_errors
from producer.client import Producer
from producer.connection import DEFAULT_REDIS_URL, sync_client
from producer.errors import CoroqError
from producer.keys import DEFAULT_PREFIX, validate_queue_name
from producer.schedules_view import read_schedules

queue_app = typer.Typer(help="Pause and resume queues.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")

QueueNames = Annotated[list[str], typer.Argument(metavar="QUEUE...", help="Queue names.")]


@queue_app.command("pause")
def pause(
    queues: QueueNames, redis_url: RedisUrl = DEFAULT_REDIS_URL, prefix: Prefix = DEFAULT_PREFIX
) -> None:
    """Pause queues: workers take nothing more from them within a second (jobs already
    running finish). They stay paused, across worker restarts, until resumed."""
    _check(queues)
    with redis_errors(redis_url), Producer(redis_url, prefix=prefix) as producer:
        for queue in queues:
            changed = producer.pause(queue)
            typer.echo(f"{queue}: paused" if changed else f"{queue}: paused already")


@queue_app.command("resume")
def resume(
    queues: QueueNames, redis_url: RedisUrl = DEFAULT_REDIS_URL, prefix: Prefix = DEFAULT_PREFIX
) -> None:
    """Resume paused queues: workers take from them again within a second."""
    _check(queues)
    with redis_errors(redis_url), Producer(redis_url, prefix=prefix) as producer:
        for queue in queues:
            changed = producer.resume(queue)
            typer.echo(f"{queue}: resumed" if changed else f"{queue}: not paused")


def _check(queues: list[str]) -> None:
    try:
        for queue in queues:
            validate_queue_name(queue)
    except CoroqError as exc:
        raise fail(str(exc), 2) from None


@app.command()
def schedules(
    queues: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Only this queue (repeat for more); default: all."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Periodic tasks, as the workers keep them: name, task, when it ticks, its next run and
    its last tick (docs/scheduling.md#periodic-jobs)."""
    _check(queues or [])
    with redis_errors(redis_url):
        entries = read_schedules(sync_client(redis_url), prefix, queues)
    if as_json:
        sys.stdout.write("".join(orjson.dumps(e.to_dict()).decode() + "\n" for e in entries))
        return
    table = Table(box=None)
    for heading in ("queue", "name", "task", "when", "next run (UTC)", "last tick"):
        table.add_column(heading, no_wrap=True)
    for entry in entries:
        last = entry.last
        last_text = "-"
        if last:
            what = "pushed" if last.get("pushed") else "missed"
            last_text = f"{_utc(last.get('tick'))} {what}"
        table.add_row(
            entry.queue,
            entry.name,
            str(entry.spec.get("task", "?")),
            str(entry.spec.get("when", "?")),
            _utc(entry.next_run),
            last_text,
        )
    if not entries:
        table.add_row("(no schedules found)")
    # Piped, rich would squeeze the table into 80 columns and cut the names.
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _utc(epoch: object) -> str:
    if not isinstance(epoch, int | float) or isinstance(epoch, bool):
        return "?"
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "?"
