"""Tasks the integration tests run inside a real worker process."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import structlog

from worker import Backoff, Fail, Retry, current_job, task

log = structlog.get_logger()


@task("tests.add")
async def add(a: int, b: int) -> int:
    return a + b


@task("tests.sync_add")
def sync_add(a: int, b: int) -> dict[str, object]:
    """A plain def task: it must run off the event loop thread."""
    return {"sum": a + b, "thread": threading.current_thread().name}


@task("tests.nap")
async def nap(seconds: float, marker: str = "") -> str:
    log.info("nap.begin", marker=marker)
    await asyncio.sleep(seconds)
    log.info("nap.end", marker=marker)
    return marker


@task("tests.sync_nap")
def sync_nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task("tests.boom")
async def boom(message: str = "boom") -> None:
    raise RuntimeError(message)


@task("tests.logs")
async def logs(text: str) -> str:
    """Logs through structlog and through the standard library."""
    log.info("tests.structlog_line", text=text)
    logging.getLogger("tests.stdlib").warning("stdlib line %s", text)
    return text


@task("tests.limited", concurrency=2)
async def limited(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return os.getpid()


@task("tests.unserialisable")
async def unserialisable() -> object:
    return object()


@task("tests.limited_traced", concurrency=2)
async def limited_traced(seconds: float) -> None:
    """Like `tests.limited`, but logs when the handler itself begins and ends, so a test can
    count how many run at once (`job.started` is logged before the per-task limit is taken)."""
    log.info("limited.begin")
    await asyncio.sleep(seconds)
    log.info("limited.end")


@task("tests.sync_logs")
def sync_logs(text: str) -> str:
    """A plain def task that logs through structlog and the standard library."""
    log.info("tests.sync_structlog_line", text=text)
    logging.getLogger("tests.stdlib").warning("sync stdlib line %s", text)
    return text


@task("tests.flaky", backoff=Backoff(base=0.05, factor=2, cap=0.2))
async def flaky(succeed_on: int) -> int:
    """Fails until its attempt number reaches `succeed_on`."""
    attempt = current_job().attempt
    if attempt < succeed_on:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


@task("tests.retry_after")
async def retry_after(seconds: float) -> int:
    """Asks for a retry after `seconds` on its first attempt; succeeds on the next."""
    attempt = current_job().attempt
    if attempt == 1:
        raise Retry("not yet", after=seconds)
    return attempt


@task("tests.fail_for_good")
async def fail_for_good() -> None:
    raise Fail("this input can never work")


@task("tests.sync_job_info")
def sync_job_info() -> dict[str, object]:
    info = current_job()
    return {"id": info.id, "attempt": info.attempt, "task": info.task, "queue": info.queue}


@task("tests.fails_while_file_exists")
async def fails_while_file_exists(path: str) -> str:
    """Fails while `path` exists: a test can make a job die, then fix the cause."""
    if os.path.exists(path):  # noqa: ASYNC240 - a stat of a local test file
        raise RuntimeError(f"{path} exists")
    return "fixed"


@task("tests.exits")
async def exits() -> None:
    """Task code calling sys.exit: it must end the job, not the worker."""
    raise SystemExit(3)


@task("tests.sync_exits")
def sync_exits() -> None:
    raise SystemExit(4)


@task("tests.cancels_itself")
async def cancels_itself() -> None:
    """Raises CancelledError without being cancelled (an inner task's cancellation leaking)."""
    raise asyncio.CancelledError


@task("tests.progress")
async def progress(steps: int, pause: float) -> int:
    """Reports its progress after each of `steps` pauses."""
    job = current_job()
    for step in range(1, steps + 1):
        await asyncio.sleep(pause)
        job.progress(step / steps, f"{step}/{steps}")
    return steps


@task("tests.sync_progress")
def sync_progress(steps: int, pause: float) -> int:
    """`tests.progress` from the thread of a `def` task."""
    job = current_job()
    for step in range(1, steps + 1):
        time.sleep(pause)
        job.progress(step / steps, f"{step}/{steps}")
    return steps


@task("tests.collect")
async def collect(title: str, results: list[dict[str, object]]) -> dict[str, object]:
    """A group's callback: gives back what it received."""
    return {"title": title, "results": results}


# Limits across workers (docs/scheduling.md#rate-limits-and-global-concurrency).


@task("tests.rate_limited", rate_limit="20/s")
async def rate_limited(index: int) -> int:
    return index


@task("tests.two_at_a_time", global_concurrency=2)
async def two_at_a_time(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return os.getpid()


@task("tests.per_tenant", global_concurrency=1, rate_limit="50/s", limit_key="tenant")
async def per_tenant(tenant: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return tenant


@task("tests.unique_nap", unique=True)
async def unique_nap(seconds: float, label: str = "") -> str:
    await asyncio.sleep(seconds)
    return label


@task("tests.unique_kept", unique=True, unique_ttl=30)
async def unique_kept(label: str) -> str:
    return label
