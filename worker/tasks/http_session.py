"""The one aiohttp session shared by every `http.request` job of a worker.

The connector is bounded, so a burst of jobs waits for a free connection instead of running
the process out of file descriptors. The session is created on the event loop at first use
and closed when the worker stops; a job reaches it through `current_http_session()`.

aiohttp is imported with the session, at the first `http.request` job: it weighs about a
tenth of a worker's memory, for a task many workers never run.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

_current: ContextVar[SharedHttpSession | None] = ContextVar("coroq_http_session", default=None)


class SharedHttpSession:
    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp  # noqa: PLC0415 - see the module's docstring

            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def install(self) -> None:
        """Make this the session of the current context (a job's coroutine)."""
        _current.set(self)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def current_http_session() -> aiohttp.ClientSession:
    holder = _current.get()
    if holder is None:
        raise RuntimeError("http.request runs only inside a coroq worker")
    return holder.get()


def client_timeout(total: float) -> aiohttp.ClientTimeout:
    import aiohttp  # noqa: PLC0415 - see the module's docstring

    return aiohttp.ClientTimeout(total=total)
