"""Flow control across workers (docs/scheduling.md#rate-limits-and-global-concurrency): what a
task's `rate_limit`, `global_concurrency` and `limit_key` mean, and which limiter a job counts
against.

A limiter is a task's name, or with `limit_key` the task's name and the value of that
argument: each value has limits of its own. The limits are kept in Redis and enforced by the
script that starts jobs (worker/jobs/lua/lib/limits.lua); this module only reads the options.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

import orjson

# "100/s", "10/m", "5/2h": a count of starts per period.
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PERIOD_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60,
                   "h": 3600, "hour": 3600}  # fmt: skip
# A key value longer than this is replaced by its digest in the names of Redis keys.
MAX_KEY_VALUE = 64


class LimitError(ValueError):
    """An option of a task's limits that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` starts per `period` seconds, evenly spaced."""

    count: int
    period: float

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


def parse_rate(text: str) -> Rate:
    """Read "100/s", "10/m", "1000/h" (or "5/10s": per 10 seconds)."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise LimitError(
            f"rate_limit {text!r}: expected <count>/<period>, the period in s, m or h "
            "(e.g. '100/s', '10/m', '5/10s')"
        )
    count, multiple, unit = int(match[1]), match[2], match[3]
    period = (float(multiple) if multiple else 1.0) * _PERIOD_SECONDS[unit]
    if count < 1 or period <= 0:
        raise LimitError(f"rate_limit {text!r}: the count and the period must be positive")
    if period * 1000 / count < 0.001:
        raise LimitError(f"rate_limit {text!r}: more than a million starts a second")
    return Rate(count, period)


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """The limits of one task, shared by all workers of a queue."""

    rate: Rate | None = None
    concurrency: int | None = None  # jobs running at once across workers
    key: str | None = None  # the argument whose values have limits of their own

    def limiter(self, task: str, arguments: inspect.BoundArguments) -> str:
        """Which limiter a job of `task` with these arguments counts against."""
        if self.key is None:
            return task
        if self.key in arguments.arguments:
            value = arguments.arguments[self.key]
        else:
            value = arguments.signature.parameters[self.key].default
        return f"{task}={key_value_text(value)}"


def key_value_text(value: Any) -> str:
    """A key value as it appears in the names of its Redis keys: a string as it is, anything
    else as compact JSON; a long one as a digest, so key names stay short."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:
            text = repr(value)
    if len(text) > MAX_KEY_VALUE:
        return "sha1:" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    return text


def task_limits(
    *, rate_limit: str | None, global_concurrency: int | None, limit_key: str | None
) -> TaskLimits | None:
    """The limits of `@task(rate_limit=..., global_concurrency=..., limit_key=...)`, checked;
    None for a task without any."""
    rate = None if rate_limit is None else parse_rate(rate_limit)
    if global_concurrency is not None and (
        isinstance(global_concurrency, bool)
        or not isinstance(global_concurrency, int)
        or global_concurrency < 1
    ):
        raise LimitError(
            f"global_concurrency must be a whole number of at least 1, not {global_concurrency!r}"
        )
    if limit_key is not None:
        if not isinstance(limit_key, str) or not limit_key.isidentifier():
            raise LimitError(f"limit_key must name an argument of the task, not {limit_key!r}")
        if rate is None and global_concurrency is None:
            raise LimitError("limit_key needs rate_limit or global_concurrency to apply")
    if rate is None and global_concurrency is None:
        return None
    return TaskLimits(rate, global_concurrency, limit_key)


def check_limit_key(limits: TaskLimits | None, signature: inspect.Signature) -> None:
    """A `limit_key` must be a named argument the task takes (not *args or **kwargs)."""
    if limits is None or limits.key is None:
        return
    parameter = signature.parameters.get(limits.key)
    if parameter is None or parameter.kind in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    ):
        raise LimitError(f"limit_key {limits.key!r} is not a named argument of the task")
