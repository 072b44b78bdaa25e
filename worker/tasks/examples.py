"""Example tasks used by `worker demo`; a starting point for writing your own."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter

import structlog

from worker.registry import task

log = structlog.get_logger()


@task("examples.word_count", timeout=10)
def word_count(text: str, top: int = 3) -> dict[str, object]:
    """A plain `def` task: it runs in the worker's thread pool, never on the event loop."""
    words = text.lower().split()
    # Standard-library logging works too, and carries the job's context.
    logging.getLogger("examples").info("counting %d words", len(words))
    return {"words": len(words), "top": Counter(words).most_common(top)}


@task("examples.checksum", max_attempts=5)
async def checksum(data: str, algorithm: str = "sha256") -> str:
    """An `async def` task: it runs on the worker's event loop."""
    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    digest = hashlib.new(algorithm, data.encode()).hexdigest()
    log.info("checksum_computed", algorithm=algorithm)
    return digest


@task("examples.divide")
async def divide(a: float, b: float) -> float:
    """Fails for b = 0, to show a failed job in the dead list."""
    return a / b
