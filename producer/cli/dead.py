"""`producer dead`: jobs that failed for good: list, retry, purge."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from producer.cli.common import Prefix, Queue, RedisUrl, app, fail, redis_errors
from producer.connection import DEFAULT_REDIS_URL, sync_client
from producer.dead_letters import DeadLetters
from producer.durations import parse_duration
from producer.errors import CoroqError
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, QueueKeys

dead_app = typer.Typer(help="Jobs that failed for good: list, retry, purge.", no_args_is_help=True)
app.add_typer(dead_app, name="dead")


def _dead_letters(redis_url: str, queue: str, prefix: str) -> DeadLetters:
    try:
        keys = QueueKeys(queue, prefix)
    except CoroqError as exc:
        raise fail(str(exc), 2) from None
    return DeadLetters(sync_client(redis_url), keys)


@dead_app.command("list")
def dead_list(
    queue: Queue = DEFAULT_QUEUE,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """List dead jobs, newest first: id, task, reason, attempts, when, error."""
    dead = _dead_letters(redis_url, queue, prefix)
    with redis_errors(redis_url):
        total = dead.count()
        jobs = list(dead.iter_entries(limit))
    if as_json:
        sys.stdout.write("".join(orjson.dumps(job.fields).decode() + "\n" for job in jobs))
        return
    table = Table(box=None)
    # Ids are copied from here: never shorten them; the error gives way first.
    table.add_column("id", no_wrap=True, min_width=max((len(job.id) for job in jobs), default=2))
    for heading in ("task", "reason", "attempts", "failed at (UTC)"):
        table.add_column(heading, no_wrap=True)
    table.add_column("error", overflow="ellipsis", no_wrap=True, ratio=1)
    for job in jobs:
        fields = job.fields
        failed_at = fields.get("failed_at")
        when = (
            datetime.fromtimestamp(failed_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            if isinstance(failed_at, int | float)
            else "?"
        )
        error = str(fields.get("error", ""))
        table.add_row(
            job.id,
            str(fields.get("task") or "-"),
            str(fields.get("reason", "")),
            str(fields.get("attempts", "")),
            when,
            error if len(error) <= 80 else error[:77] + "...",
        )
    Console().print(table)
    typer.echo(f"{len(jobs)} of {total} dead job(s) in queue {queue}", err=True)


@dead_app.command("retry")
def dead_retry(
    ids: Annotated[list[str] | None, typer.Argument(metavar="ID...", show_default=False)] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Retry every dead job.")] = False,
    queue: Queue = DEFAULT_QUEUE,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Send dead jobs back to the front of their queue, attempts reset."""
    if bool(ids) == all_jobs:
        raise fail("give job ids or --all (not both)", 2)
    dead = _dead_letters(redis_url, queue, prefix)
    with redis_errors(redis_url):
        revived = dead.retry(None if all_jobs else ids)
    sys.stdout.write("".join(f"{job_id}\n" for job_id in revived))
    missing = sorted(set(ids or ()) - set(revived))
    typer.echo(f"requeued {len(revived)} dead job(s) in queue {queue}", err=True)
    if missing:
        raise fail(f"not in the dead list of queue {queue}: {', '.join(missing)}")


@dead_app.command("purge")
def dead_purge(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Only jobs that died longer ago, e.g. 7d, 12h, 30m."),
    ] = None,
    queue: Queue = DEFAULT_QUEUE,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Delete dead jobs for good (all of them, or those older than --older-than)."""
    try:
        age = None if older_than is None else parse_duration(older_than)
    except ValueError as exc:
        raise fail(f"--older-than: {exc}", 2) from None
    dead = _dead_letters(redis_url, queue, prefix)
    with redis_errors(redis_url):
        removed = dead.purge(age, now=time.time())
    typer.echo(f"purged {removed} dead job(s) from queue {queue}")
