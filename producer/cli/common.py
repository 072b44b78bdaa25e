"""What every `producer` command shares: the app, the common options, and how errors end a
command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from redis.exceptions import RedisError

from producer.connection import redact_url

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
