"""Tasks the fault-injection tests run inside real worker processes.

Each task counts its own starts (and completions) in a hash of the *ledger* Redis named by
`FAULTS_LEDGER_URL`, keyed by the job's name, so a test can count extra runs exactly, apart
from what the worker records about itself. The ledger Redis is never the one being faulted.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis.asyncio

from worker import Retry, task

LEDGER_URL_ENV = "FAULTS_LEDGER_URL"

_ledger: redis.asyncio.Redis | None = None


def _ledger_client() -> redis.asyncio.Redis:
    # One client per worker process: every async task runs on the worker's single loop.
    global _ledger  # noqa: PLW0603 - a lazily built per-process client is the point
    if _ledger is None:
        _ledger = redis.asyncio.Redis.from_url(os.environ[LEDGER_URL_ENV])
    return _ledger


def starts_key(ledger: str) -> str:
    return f"{ledger}:starts"


def done_key(ledger: str) -> str:
    return f"{ledger}:done"


async def count_start(ledger: str, name: str) -> int:
    return int(await _ledger_client().hincrby(starts_key(ledger), name, 1))


async def count_done(ledger: str, name: str) -> None:
    await _ledger_client().hincrby(done_key(ledger), name, 1)


@task("faults.work")
async def work(ledger: str, name: str, seconds: float = 0.0) -> str:
    """An idempotent job that takes a while: counted when it starts and when it finishes."""
    await count_start(ledger, name)
    if seconds > 0:
        await asyncio.sleep(seconds)
    await count_done(ledger, name)
    return name


@task("faults.flaky")
async def flaky(ledger: str, name: str, failures: int = 1, retry_after: float = 1.0) -> str:
    """Asks for another attempt (after `retry_after` s) on its first `failures` starts."""
    if await count_start(ledger, name) <= failures:
        raise Retry("not yet", after=retry_after)
    await count_done(ledger, name)
    return name


@task("faults.crash")
async def crash(ledger: str, name: str) -> None:
    """A poison job: takes its whole worker process down, every time."""
    await count_start(ledger, name)
    os._exit(1)


@task("faults.crash_from")
async def crash_from(ledger: str, name: str, attempt: int) -> None:
    """Fails as an ordinary job until its `attempt`-th start; from then on it takes its whole
    worker process down, every time."""
    if await count_start(ledger, name) < attempt:
        raise RuntimeError("an ordinary failure, before the crashes begin")
    os._exit(1)


@task("faults.hang")
async def hang(ledger: str, name: str) -> None:
    """Never finishes on its own; only its timeout ends it."""
    await count_start(ledger, name)
    await asyncio.sleep(3600)


@task("faults.block")
async def block(ledger: str, name: str, seconds: float) -> str:
    """The classic mistake: blocking sleep inside `async def`, which stalls the whole loop."""
    await count_start(ledger, name)
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is what this task is for
    await count_done(ledger, name)
    return name


@task("faults.group_report")
async def group_report(ledger: str, name: str, results: list[dict[str, Any]]) -> int:
    """A group's callback: counted like the others; it notes how many members succeeded."""
    await count_start(ledger, name)
    succeeded = sum(1 for result in results if result.get("status") == "succeeded")
    await _ledger_client().hset(f"{starts_key(ledger)}:report", name, f"{len(results)}/{succeeded}")
    await count_done(ledger, name)
    return succeeded
