"""A TCP proxy that can cut or stall every connection through it, for connection faults.

It runs its own asyncio loop in a thread and forwards bytes both ways between each client and
the upstream Redis. `cut()` resets every open connection at once (as a firewall or a NAT
timeout would); `stall()` stops forwarding in both directions, for open and new connections,
until `resume()` (a network partition: nothing is refused, nothing gets through). With
`latency`, each chunk is held that long before it is passed on, each way (a slow link).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

CHUNK = 65536


class FaultyProxy:
    def __init__(
        self, upstream_port: int, upstream_host: str = "127.0.0.1", *, latency: float = 0.0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency = latency
        self.port = 0
        self.connections_cut = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # -- control, from the test's thread ------------------------------------------------

    def start(self) -> FaultyProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> int:
        """Reset every connection now open; returns how many there were."""
        cut = self._call(self._cut_all())
        self.connections_cut += cut
        return cut

    def stall(self) -> None:
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # -- on the proxy's loop ----------------------------------------------------------

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut_all(self) -> int:
        pairs = list(self._pairs)
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        return len(pairs)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut_all()
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until either side closes; a stall holds the chunk in hand."""
        assert self._flowing is not None
        try:
            while data := await reader.read(CHUNK):
                if self.latency:
                    await asyncio.sleep(self.latency)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One direction ending ends the connection: the other pump sees it at once.
            writer.transport.abort()
