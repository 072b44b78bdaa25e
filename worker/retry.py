"""What a failed attempt leads to: another attempt after a backoff, or the dead list.

Delays grow exponentially and use full jitter (a random delay between 0 and the capped
exponential value), so jobs that failed together do not all come back together. A handler
can ask for a given delay by raising `Retry(after=...)`, or skip retries by raising `Fail`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from worker.errors import Fail, JobError, Retry


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff, full jitter: delay n is uniform in [0, min(cap, base*factor**(n-1))]."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("backoff needs base > 0, factor >= 1 and cap >= base")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number `attempt` (1-based)."""
        exponent = min(attempt - 1, 64)  # beyond this the cap has long been reached
        return min(self.cap, self.base * self.factor**exponent)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0, self.ceiling(attempt))


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    pass


Decision = RetryLater | GiveUp


def decide(error: JobError, attempt: int, max_attempts: int, backoff: Backoff) -> Decision:
    """The outcome of failed attempt `attempt` out of `max_attempts`."""
    if isinstance(error.__cause__, Fail) or not error.retryable:
        return GiveUp()
    if attempt >= max_attempts:
        return GiveUp()
    requested = error.__cause__
    if isinstance(requested, Retry) and requested.after is not None:
        return RetryLater(requested.after)
    return RetryLater(backoff.delay(attempt))
