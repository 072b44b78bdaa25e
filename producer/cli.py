"""`producer`: push jobs and read their records from the command line.

A thin layer over `producer.client`: it parses arguments, reads files and prints; every Redis
operation is a `Producer` method.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import orjson
import typer
from redis.exceptions import RedisError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from producer.client import Producer, ProgressCallback
from producer.connection import DEFAULT_REDIS_URL, redact_url
from producer.envelope import JobEnvelope
from producer.errors import CoroqError
from producer.jobfile import read_job_source
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, validate_queue_name

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
        ids = producer.push_many(jobs, front=front, progress=progress)
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


def main() -> None:
    app()
