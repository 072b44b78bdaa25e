"""Tasks the integration tests run inside a real worker process."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import structlog

from worker import task

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
