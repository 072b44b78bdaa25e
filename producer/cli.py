"""`producer`: push jobs and read their records from the command line.

A thin layer over `producer.client`: it parses arguments, reads files and prints; every Redis
operation is a `Producer` method.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from producer.client import Producer, ProgressCallback
from producer.connection import DEFAULT_REDIS_URL, redact_url, sync_client
from producer.dead_letters import DeadLetters
from producer.durations import parse_duration
from producer.envelope import JobEnvelope
from producer.errors import CoroqError, PartialPush
from producer.jobfile import read_job_source
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, QueueKeys, validate_queue_name
from producer.stats import StatsReader
from producer.stats_view import stats_view

# Inputs at least this large get a progress bar (when stderr is a terminal).
PROGRESS_THRESHOLD = 5000

app = typer.Typer(
    name="producer",
    help="Push JSON jobs to a coroq queue and inspect them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RedisUrl = Annotated[
    str,
    typer.Option("--redis-url", envvar="COROQ_REDIS_URL", help="Redis URL (rediss:// for TLS)."),
]
Queue = Annotated[str, typer.Option("--queue", "-q", envvar="COROQ_QUEUE", help="Queue name.")]
Prefix = Annotated[str, typer.Option("--prefix", envvar="COROQ_PREFIX", help="Key prefix.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"producer: error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def redis_errors(url: str) -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise fail(f"Redis at {redact_url(url)}: {exc}") from None
    except ValueError as exc:  # redis-py's verdict on a malformed URL
        raise fail(f"invalid --redis-url {redact_url(url)}: {exc}", 2) from None


@contextmanager
def progress_bar(total: int) -> Iterator[ProgressCallback | None]:
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield None
        return
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        bar = progress.add_task("pushing", total=total)
        yield lambda count: progress.advance(bar, count)


@app.command()
def push(
    files: Annotated[
        list[str], typer.Argument(help="Job files (object, array or JSON Lines); - for stdin.")
    ],
    queue: Queue = DEFAULT_QUEUE,
    front: Annotated[
        bool, typer.Option("--front", help="Run these jobs before those waiting.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the job ids.")] = False,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Validate every job in FILES, then push them all; print their ids."""
    try:
        validate_queue_name(queue)
        jobs: list[JobEnvelope] = []
        for name in files:
            jobs.extend(read_job_source(name, sys.stdin.buffer))
    except CoroqError as exc:
        raise fail(f"{exc}; nothing was pushed", 2) from None
    with (
        redis_errors(redis_url),
        Producer(redis_url, queue=queue, prefix=prefix) as producer,
        progress_bar(len(jobs)) as progress,
    ):
        producer.redis.ping()  # an unreachable Redis fails here, before anything is sent
        try:
            ids = producer.push_many(jobs, front=front, progress=progress)
        except PartialPush as exc:
            if not quiet:
                sys.stdout.write("".join(f"{job_id}\n" for job_id in exc.pushed))
            for job_id in exc.uncertain:
                typer.echo(f"maybe pushed: {job_id}", err=True)
            where = f"Redis at {redact_url(redis_url)}"
            raise fail(f"{where}: {exc} (the ids pushed are printed on stdout)") from None
    if not quiet:
        sys.stdout.write("".join(f"{job_id}\n" for job_id in ids))
    typer.echo(f"pushed {len(ids)} job(s) to queue {queue}", err=True)


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    queue: Queue = DEFAULT_QUEUE,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Print a job's record as JSON (exit 1 when there is none)."""
    try:
        validate_queue_name(queue)
    except CoroqError as exc:
        raise fail(str(exc), 2) from None
    with redis_errors(redis_url), Producer(redis_url, queue=queue, prefix=prefix) as producer:
        record = producer.status(job_id)
    if record is None:
        raise fail(f"no record for job {job_id} in queue {queue} (not started yet, or expired)")
    sys.stdout.write(orjson.dumps({"id": job_id, **record}, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")


@app.command()
def stats(
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", "-q", help="Only this queue (repeat for more); default: every queue found."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (per refresh).")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh every --interval seconds until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="Seconds between refreshes of --watch.")
    ] = 2.0,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Per queue: ready / delayed / processing / dead jobs; live workers with their
    heartbeat age; jobs in flight; throughput: jobs finished per second over about the last
    minute, as reported by each live worker's heartbeat (in total, and per worker)."""
    try:
        reader = StatsReader(sync_client(redis_url), prefix=prefix, queues=queues)
    except CoroqError as exc:
        raise fail(str(exc), 2) from None
    with redis_errors(redis_url):
        if watch:
            _watch_stats(reader, as_json, interval)
        else:
            _print_stats(reader, as_json)


def _print_stats(reader: StatsReader, as_json: bool) -> None:
    snapshot = reader.snapshot()
    if as_json:
        sys.stdout.write(orjson.dumps(snapshot.to_dict()).decode() + "\n")
    else:
        Console().print(stats_view(snapshot))


def _watch_stats(reader: StatsReader, as_json: bool, interval: float) -> None:
    try:
        if as_json:  # JSON Lines, one snapshot per refresh
            while True:
                _print_stats(reader, as_json=True)
                sys.stdout.flush()
                time.sleep(interval)
        with Live(stats_view(reader.snapshot()), auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(stats_view(reader.snapshot()), refresh=True)
    except KeyboardInterrupt:
        return


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


def main() -> None:
    app()
