"""`producer push`, `status`, `cancel` and `stats`: pushing jobs and reading their state.

A thin layer over `producer.client`: it parses arguments, reads files and prints; every Redis
operation is a `Producer` method.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from producer.batches import DEFAULT_DURABLE_TIMEOUT, ProgressCallback
from producer.cancelling import CancelOutcome
from producer.cli.common import Prefix, Queue, RedisUrl, app, fail, redis_errors
from producer.client import Producer
from producer.connection import DEFAULT_REDIS_URL, redact_url, sync_client
from producer.durations import parse_duration
from producer.envelope import JobEnvelope
from producer.errors import CoroqError, NotReplicated, PartialPush, WaitTimeout
from producer.jobfile import read_job_source
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, validate_queue_name
from producer.schedule import Schedule, make_schedule, parse_at
from producer.stats import StatsReader
from producer.stats_view import stats_view

# Inputs at least this large get a progress bar (when stderr is a terminal).
PROGRESS_THRESHOLD = 5000


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a file's jobs are read and pushed.

    Every job makes a few objects that form no cycles, and the collector kept walking them
    all: a third of the time of a 100,000-job push. Freed memory is still freed (reference
    counting); the collector runs again afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def progress_bar(total: int) -> Iterator[ProgressCallback | None]:
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield None
        return
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        bar = progress.add_task("pushing", total=total)
        yield lambda count: progress.advance(bar, count)


@dataclass(frozen=True, slots=True)
class PushOptions:
    """The checked scheduling and waiting options of `producer push`."""

    delay: float | None = None
    at: datetime | None = None
    schedule: Schedule | None = None
    wait: bool = False
    timeout: float | None = None
    timeout_text: str = ""


def push_options(
    *, delay: str | None, at: str | None, front: bool, wait: bool, timeout: str | None
) -> PushOptions:
    """Check --delay, --at, --front, --wait and --timeout together; exit 2 when they clash."""
    try:
        seconds = None if delay is None else parse_duration(delay)
    except ValueError as exc:
        raise fail(f"--delay: {exc}; nothing was pushed", 2) from None
    if timeout is not None and not wait:
        raise fail("--timeout needs --wait; nothing was pushed", 2)
    try:
        limit = None if timeout is None else parse_duration(timeout)
    except ValueError as exc:
        raise fail(f"--timeout: {exc}; nothing was pushed", 2) from None
    try:
        when = None if at is None else parse_at(at, name="--at")
        schedule = make_schedule(seconds, when, front=front, names=("--delay", "--at", "--front"))
    except CoroqError as exc:
        raise fail(f"{exc}; nothing was pushed", 2) from None
    shown = (timeout or "").strip()
    if shown[-1:].isdigit():  # plain seconds
        shown += "s"
    return PushOptions(seconds, when, schedule, wait, limit, shown)


@app.command()
def push(
    files: Annotated[
        list[str], typer.Argument(help="Job files (object, array or JSON Lines); - for stdin.")
    ],
    queue: Queue = DEFAULT_QUEUE,
    front: Annotated[
        bool, typer.Option("--front", help="Run these jobs before those waiting.")
    ] = False,
    delay: Annotated[
        str | None,
        typer.Option(
            "--delay", metavar="DURATION", help="Run the jobs this long from now: 30s, 5m, 2h."
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Run the jobs at this ISO-8601 time, with an offset or Z: "
            "2026-12-01T09:00:00+01:00.",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait until every job succeeded, is dead or was cancelled; exit 0 when all "
            "succeeded, 1 when any is dead or cancelled, 3 on --timeout.",
        ),
    ] = False,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", metavar="DURATION", help="Stop --wait after this long (default: never)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the job ids.")] = False,
    durable: Annotated[
        bool,
        typer.Option(
            "--durable",
            help="Count a job as pushed only once a replica has it too (WAIT); exit 1 naming "
            "the jobs no replica confirmed in time.",
        ),
    ] = False,
    durable_timeout: Annotated[
        float,
        typer.Option(
            "--durable-timeout",
            metavar="SECONDS",
            min=0.001,
            help="How long --durable waits for a replica, per batch.",
        ),
    ] = DEFAULT_DURABLE_TIMEOUT,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Validate every job in FILES, then push them all; print their ids."""
    options = push_options(delay=delay, at=at, front=front, wait=wait, timeout=timeout)
    with (
        redis_errors(redis_url),
        Producer(
            redis_url, queue=queue, prefix=prefix, durable_timeout=durable_timeout
        ) as producer,
    ):
        with without_cycle_collection():
            try:
                validate_queue_name(queue)
                jobs: list[JobEnvelope] = []
                for name in files:
                    jobs.extend(read_job_source(name, sys.stdin.buffer))
            except CoroqError as exc:
                raise fail(f"{exc}; nothing was pushed", 2) from None
            ids = _push_jobs(
                producer, jobs, front=front, options=options, quiet=quiet, redis_url=redis_url,
                durable=durable,
            )  # fmt: skip
        if options.wait:
            _wait_for_outcomes(producer, ids, options)


def _push_jobs(
    producer: Producer,
    jobs: list[JobEnvelope],
    *,
    front: bool,
    options: PushOptions,
    quiet: bool,
    redis_url: str,
    durable: bool = False,
) -> list[str]:
    with progress_bar(len(jobs)) as progress:
        producer.redis.ping()  # an unreachable Redis fails here, before anything is sent
        try:
            ids = producer.push_many(
                jobs, front=front, delay=options.delay, at=options.at, progress=progress,
                durable=durable,
            )  # fmt: skip
        except NotReplicated as exc:
            raise _stopped_part_way(
                exc, exc.confirmed, exc.unconfirmed, "not confirmed by a replica", "confirmed",
                quiet=quiet, redis_url=redis_url,
            ) from None  # fmt: skip
        except PartialPush as exc:
            raise _stopped_part_way(
                exc, exc.pushed, exc.uncertain, "maybe pushed", "pushed",
                quiet=quiet, redis_url=redis_url,
            ) from None  # fmt: skip
    if not quiet:
        sys.stdout.write("".join(f"{job_id}\n" for job_id in ids))
        sys.stdout.flush()  # the ids are out before a --wait begins
    # A unique job whose key a job holds already was not pushed: its id is that job's.
    duplicates = [
        (index, job) for index, (job, job_id) in enumerate(zip(jobs, ids, strict=True))
        if job.unique is not None and str(job.id) != job_id
    ]  # fmt: skip
    for index, job in duplicates:
        typer.echo(
            f"duplicate: job {index} (unique {job.unique!r}) not pushed; job "
            f"{ids[index]} holds the key",
            err=True,
        )
    due = f", {options.schedule.describe(time.time())}" if options.schedule else ""
    pushed = len(ids) - len(duplicates)
    also = f" ({len(duplicates)} duplicate(s) not pushed)" if duplicates else ""
    typer.echo(f"pushed {pushed} job(s) to queue {producer.queue}{due}{also}", err=True)
    return ids


def _stopped_part_way(
    error: Exception,
    done: list[str],
    unsure: list[str],
    unsure_label: str,
    done_label: str,
    *,
    quiet: bool,
    redis_url: str,
) -> typer.Exit:
    """A push that stopped part-way: the ids that went in on stdout, the others on stderr,
    and the exit (1) that says so."""
    if not quiet:
        sys.stdout.write("".join(f"{job_id}\n" for job_id in done))
    for job_id in unsure:
        typer.echo(f"{unsure_label}: {job_id}", err=True)
    where = f"Redis at {redact_url(redis_url)}"
    return fail(f"{where}: {error} (the ids {done_label} are printed on stdout)")


def _wait_for_outcomes(producer: Producer, ids: list[str], options: PushOptions) -> None:
    """Wait for the jobs' outcomes; print a summary and each dead job on stderr; exit 0 when
    all succeeded, 1 when any is dead, 3 when --timeout ran out first."""
    try:
        records, pending = producer.wait(ids, timeout=options.timeout), []
    except WaitTimeout as exc:
        records, pending = exc.records, exc.pending
    except KeyboardInterrupt:
        raise fail("interrupted while waiting; the jobs stay pushed", 130) from None
    ordered = [(job_id, records[job_id]) for job_id in dict.fromkeys(ids) if job_id in records]
    dead = [(job_id, record) for job_id, record in ordered if record.get("status") == "dead"]
    cancelled = [job_id for job_id, record in ordered if record.get("status") == "cancelled"]
    summary = f"{len(ordered) - len(dead) - len(cancelled)} succeeded, {len(dead)} dead"
    summary += f", {len(cancelled)} cancelled" if cancelled else ""
    typer.echo(summary + (f", {len(pending)} still pending" if pending else ""), err=True)
    for job_id, record in dead:
        error = " ".join(str(record.get("error", "")).splitlines())
        typer.echo(f"dead: {job_id} {record.get('reason', '?')}: {error}", err=True)
    for job_id in cancelled:
        typer.echo(f"cancelled: {job_id}", err=True)
    if dead or cancelled:
        raise typer.Exit(1)
    if pending:
        total = len(ordered) + len(pending)
        raise fail(
            f"timed out after {options.timeout_text}: {len(pending)} of {total} job(s) "
            "still pending",
            3,
        )


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
def cancel(
    job_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="The job ids.")],
    queue: Queue = DEFAULT_QUEUE,
    redis_url: RedisUrl = DEFAULT_REDIS_URL,
    prefix: Prefix = DEFAULT_PREFIX,
) -> None:
    """Cancel jobs: one not started never runs; a running one is cancelled by its worker.
    Prints what was done for each id; exit 1 when an id is unknown in the queue."""
    try:
        validate_queue_name(queue)
    except CoroqError as exc:
        raise fail(str(exc), 2) from None
    unknown = 0
    with redis_errors(redis_url), Producer(redis_url, queue=queue, prefix=prefix) as producer:
        for job_id in job_ids:
            found = producer.cancel(job_id)
            unknown += found.outcome is CancelOutcome.UNKNOWN
            typer.echo(str(found))
    if unknown:
        raise fail(f"{unknown} of {len(job_ids)} id(s) unknown in queue {queue}")


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
