"""A slow network's handshake in front of `omnid simulate`: a TCP proxy on loopback.

On loopback a session is ready a few milliseconds after the daemon starts connecting; over the
internet the same handshake costs round trips before the first audio can go out: TCP's, TLS's
(the service is `wss://`, the simulator plain `ws://`), the HTTP upgrade's and `session.update`'s.
A connection through `SlowHandshake` pays them all at `rtt_s` each:

- it reaches the simulator only `CONNECT_ROUND_TRIPS` round trips after the daemon connected
  (TCP's and TLS 1.3's; the daemon's upgrade request waits here meanwhile);
- until the simulator's `session.updated` has gone by, every chunk the simulator sends is held
  one round trip before the daemon gets it (the upgrade's `101` with `session.created`, then
  `session.updated`): about 4 × `rtt_s` in all before the session is ready.

After that the connection is as fast as loopback: on a slow network the answer costs the same
round trip whether the session was kept warm or opened on the wake word, so what a benchmark
measures through this proxy is the handshake alone. Bytes are relayed unparsed; `session.updated`
is recognised in the simulator's bytes, which reach the daemon's client (websocket-client, no
compression) as plain JSON text. Should it ever not be seen, the connection simply stays slow,
and `Handshake.ready` stays None.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

CONNECT_ROUND_TRIPS = 2  # TCP's and TLS 1.3's, before the upgrade request can go
READY_MARK = b"session.updated"
LINGER_S = 1.0  # once one direction has ended, how long the other may finish (close frames)


@dataclass
class Handshake:
    accepted: float  # wall time the daemon connected to the proxy
    ready: float | None = None  # wall time `session.updated` was passed on to it


class SlowHandshake:
    """A proxy on 127.0.0.1 to the WebSocket server at `upstream` (a `ws://` URL); `url` is the
    same endpoint through the proxy, `handshakes` one record per connection. Runs its own event
    loop in a thread; `close()` ends every connection."""

    def __init__(self, upstream: str, rtt_s: float) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"no host and port in {upstream!r}")
        self.rtt_s = rtt_s
        self.handshakes: list[Handshake] = []
        self._target = (parts.hostname, parts.port)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slow-link")
        self._thread.daemon = True
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        port = self._server.sockets[0].getsockname()[1]
        self.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        shake = Handshake(time.time())
        self.handshakes.append(shake)
        server_w: asyncio.StreamWriter | None = None
        try:
            await asyncio.sleep(CONNECT_ROUND_TRIPS * self.rtt_s)
            server_r, server_w = await asyncio.open_connection(*self._target)
            up = asyncio.ensure_future(_relay(client_r, server_w))
            down = asyncio.ensure_future(self._held(server_r, client_w, shake))
            try:
                await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
                await asyncio.wait({up, down}, timeout=LINGER_S)
            finally:
                up.cancel()
                down.cancel()
        except OSError:
            pass  # the simulator is gone: the daemon sees its connection close
        finally:
            for writer in (client_w, server_w):
                if writer is not None:
                    writer.close()
            self._tasks.discard(task)

    async def _held(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, shake: Handshake
    ) -> None:
        """Simulator → daemon: each chunk held one round trip from its arrival, in order, until
        the one holding `session.updated` has been passed on; then straight through."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes, bool] | None] = asyncio.Queue()

        async def read() -> None:
            slow, tail = True, b""
            try:
                while data := await reader.read(65536):
                    ready = slow and READY_MARK in tail + data
                    queue.put_nowait((loop.time() + (self.rtt_s if slow else 0.0), data, ready))
                    slow = slow and not ready
                    tail = data[-(len(READY_MARK) - 1) :]  # a mark split between two reads
            except OSError:
                pass
            queue.put_nowait(None)

        reading = asyncio.ensure_future(read())
        try:
            while (item := await queue.get()) is not None:
                due, data, ready = item
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()
                if ready:
                    shake.ready = time.time()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            pass
        finally:
            reading.cancel()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Daemon → simulator, straight through; its end of stream passed on."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass
