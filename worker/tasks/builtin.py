"""Built-in tasks: `echo`, `sleep` and `http.request`.

aiohttp is imported by the first `http.request` job (worker.tasks.http_session), not with
the tasks: a worker that never runs one does not carry it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import structlog
from pydantic import Field

from worker.registry import task
from worker.tasks.http_session import client_timeout, current_http_session

log = structlog.get_logger()

# Response bodies longer than this are cut in the job's result (the record is not a blob store).
MAX_BODY_CHARS = 64 * 1024


@task("echo")
async def echo(*args: Any, **kwargs: Any) -> Any:
    """Return the arguments unchanged (a list, or an object for keyword arguments)."""
    log.info("echo", args=list(args), kwargs=kwargs)
    return kwargs if kwargs else list(args)


@task("sleep")
async def sleep(seconds: Annotated[float, Field(ge=0, le=86400)]) -> float:
    """Wait `seconds` without blocking the loop; return the seconds waited."""
    await asyncio.sleep(seconds)
    return seconds


class HttpStatusError(Exception):
    def __init__(self, method: str, url: str, status: int) -> None:
        self.status = status
        super().__init__(f"{method} {url} answered HTTP {status}")


@task("http.request", timeout=60)
async def http_request(
    url: Annotated[str, Field(pattern=r"^https?://", max_length=8192)],
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    json: Any = None,
    data: str | None = None,
    timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0,
    raise_for_status: bool = True,
) -> dict[str, Any]:
    """Make an HTTP request with the worker's shared session; return status and body."""
    session = current_http_session()
    async with session.request(
        method,
        url,
        headers=headers,
        params=params,
        json=json,
        data=data,
        timeout=client_timeout(timeout),
    ) as response:
        body = await response.text(errors="replace")
    if raise_for_status and response.status >= 400:
        raise HttpStatusError(method, url, response.status)
    return {
        "status": response.status,
        "content_type": response.content_type,
        "body": body[:MAX_BODY_CHARS],
        "truncated": len(body) > MAX_BODY_CHARS,
    }
