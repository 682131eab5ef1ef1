"""One accepted WebSocket: the read loop, the record, session limits and per-connection faults.

Everything that concerns the *socket* rather than the conversation lives here — stamping
`event_id`, recording both directions, the service's limits (maximum session age, idle close)
and the injected faults (abrupt drops, stalls, 1007 at the first response) — so the session logic
stays free of timing and transport concerns.

A stall is the failure a client cannot see as an error: the peer stops reading and sending but the
TCP connection stays up (a hung server, a half-dead NAT entry, a Wi-Fi link in power save). Only
the client's own read timeout can find it, so the simulator must really stop reading: websockets
answers pings by itself while it reads, so the transport's reading is paused and the frames
already buffered are left unconsumed (consuming them could make websockets resume reading).

Close codes for the limits are not documented (docs/protocol.md, "Things nobody outside the service
can settle"); the simulator uses 1000 for both, with a descriptive reason. Clients must not rely
on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import struct
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from omnid.models import ModelInfo
from omnid.simulator.calls import CallPlanner
from omnid.simulator.events import Event, error_event, new_id
from omnid.simulator.options import SimOptions
from omnid.simulator.record import Recorder
from omnid.simulator.session import Session

log = logging.getLogger(__name__)

# DashScope's text for an exhausted free tier (longer than a close frame may carry).
FREE_TIER_REASON = (
    "Access denied: the free tier of the model has been exhausted. If you wish to continue access "
    'the model on a paid basis, please disable the "use free tier only" mode in the management '
    "console."
)
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: 125-byte control payload minus the 2-byte code
IDLE_POLL_S = 1.0


def idle_message(seconds: float) -> str:
    """The service's idle-close text, with the configured number of seconds."""
    shown = f"{int(seconds)}" if float(seconds).is_integer() else f"{seconds:g}"
    return f"Your session was closed because no response was generated for {shown} seconds."


def truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


class Connection:
    def __init__(
        self,
        ws: ServerConnection,
        model: ModelInfo,
        options: SimOptions,
        recorder: Recorder,
        rng: random.Random,
        faulty: bool = True,
        planner: CallPlanner | None = None,
    ) -> None:
        self.ws = ws
        self.options = options
        self.recorder = recorder
        self.session = Session(
            model,
            self.send,
            first_audio_s=options.first_audio_ms / 1000,
            pace=options.pace,
            note=self._note,
            planner=planner,
        )
        self.sid = self.session.id
        self._events_sent = 0
        self._dead = False  # dropped, closed or stalled by us: send nothing more
        self._stalled = False  # reading paused as well: the socket is open but nobody is home
        self._ended_by = "client"
        # Drawn now, in connection order, so a --seed makes a run of drops reproducible.
        self._drop_after_s = (
            rng.uniform(0.5, 1.5) * options.drop_every_s if options.drop_every_s else None
        )
        # --faulty-connections: only the first K connections meet the per-connection faults.
        self._faulty = faulty
        if not faulty:
            self._drop_after_s = None

    async def send(self, event: Event) -> None:
        """Stamp, record and send one server event; silently nothing once the socket is gone."""
        if self._dead:
            return
        text = json.dumps({"event_id": new_id("event"), **event})
        # Recorded before the await: the frame is written synchronously inside send(), so the
        # record keeps wire order even when the response task and the reader interleave.
        self.recorder.sent(self.sid, text)
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            self._dead = True
            return
        self._events_sent += 1
        if not self._faulty:
            return
        limit = self.options.drop_after_events
        if limit is not None and self._events_sent >= limit:
            await self.drop(f"drop-after-events {limit}")
        if self.options.drop_after_call and _called(event):
            await self.drop("drop-after-call")
        stall = self.options.stall_after_events
        if stall is not None and self._events_sent >= stall:
            self.stall(f"stall-after-events {stall}")

    def stall(self, why: str) -> None:
        """Stop reading and sending, keep the socket open: no close frame, no FIN, no pong."""
        if self._dead:
            return
        self._dead = self._stalled = True
        self._ended_by = "stall"
        self.ws.transport.pause_reading()
        log.info("session %s: stalling the connection (%s)", self.sid, why)
        self.recorder.conn(self.sid, "stall", why=why, events_sent=self._events_sent)

    async def drop(self, why: str) -> None:
        """Abrupt TCP close, no close frame (what a NAT timeout or a dead link looks like)."""
        if self._dead:
            return
        self._dead = True
        self._ended_by = "drop"
        transport = self.ws.transport
        for _ in range(500):  # let what was already sent leave the buffer first (≤ 0.5 s)
            if transport.is_closing() or transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.001)
        log.info("session %s: dropping the connection (%s)", self.sid, why)
        self.recorder.conn(self.sid, "drop", why=why, events_sent=self._events_sent)
        transport.abort()

    async def run(self) -> None:
        peer = peer_of(self.ws)
        model = self.session.model.name
        log.info("session %s: open from %s, model %s", self.sid, peer, model)
        self.recorder.conn(self.sid, "open", peer=peer, model=model)
        watchers = [asyncio.create_task(w) for w in self._watchers()]
        try:
            await self.session.start()
            async for message in self.ws:
                if self._stalled:
                    break
                await self._on_message(message)
                if self._stalled:
                    break
            if self._stalled:
                # Taking a frame may have let websockets resume reading (its flow control):
                # pause again before the loop runs, then wait for the server to shut down.
                self.ws.transport.pause_reading()
                await self.ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await self.session.close()
            code, reason = self.ws.close_code, self.ws.close_reason
            log.info("session %s: closed (%s, by %s)", self.sid, code, self._ended_by)
            self.recorder.conn(
                self.sid,
                "close",
                code=code,
                reason=reason,
                by=self._ended_by,
                events_sent=self._events_sent,
            )

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.recorder.received(self.sid, None, raw=f"<binary frame, {len(message)} bytes>")
            await self.send(
                error_event(
                    "Binary frames are not supported: send JSON text.", code="invalid_event"
                )
            )
            return
        try:
            event = json.loads(message)
        except ValueError as exc:
            self.recorder.received(self.sid, None, raw=message)
            log.info("session %s: refused malformed JSON", self.sid)
            await self.send(error_event(f"Invalid JSON: {exc}", code="invalid_json"))
            return
        self.recorder.received(self.sid, event)
        is_response_create = isinstance(event, dict) and event.get("type") == "response.create"
        if is_response_create and self.options.close_1007_on_response:
            await self._close_1007()
            return
        await self.session.handle(event)

    def _note(self, what: str, fields: dict[str, Any]) -> None:
        log.debug("session %s: %s %s", self.sid, what, fields)
        self.recorder.note(self.sid, what, **fields)

    # -- limits and faults ---------------------------------------------------------------------

    def _watchers(self) -> list[Coroutine[Any, Any, None]]:
        watchers: list[Coroutine[Any, Any, None]] = []
        if self.options.max_session_s > 0:
            watchers.append(self._max_age(self.options.max_session_s))
        if self.options.idle_timeout_s > 0:
            watchers.append(self._idle(self.options.idle_timeout_s))
        if self._drop_after_s is not None:
            watchers.append(self._drop_later(self._drop_after_s))
        return watchers

    async def _max_age(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._close(1000, "Session reached its maximum duration.", "max-session")

    async def _idle(self, seconds: float) -> None:
        """No response generated for `seconds` → the service's `error`, then close."""
        while True:
            idle = self.session.idle_for()
            if idle is None:
                await asyncio.sleep(min(IDLE_POLL_S, seconds))
            elif idle < seconds:
                await asyncio.sleep(seconds - idle)
            else:
                break
        message = idle_message(seconds)
        await self.send(error_event(message, code="session_idle_timeout"))
        await self._close(1000, "idle timeout", "idle-timeout")

    async def _drop_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.drop(f"drop-every-s after {seconds:.2f} s")

    async def _close(self, code: int, reason: str, why: str) -> None:
        if self._dead:
            return
        self._dead = True
        self._ended_by = why
        log.info("session %s: closing with %d (%s)", self.sid, code, why)
        await self.ws.close(code, truncate_utf8(reason, MAX_CLOSE_REASON_BYTES))

    async def _close_1007(self) -> None:
        """Exhausted free tier (reported): 1007 at the first response.create."""
        if not self.options.long_close_reason:
            await self._close(1007, FREE_TIER_REASON, "close-1007")
            return
        # The service is reported to send a reason longer than a close frame may carry; the
        # websockets library refuses to build one, so write the frame by hand and hang up.
        self._dead = True
        self._ended_by = "close-1007"
        payload = struct.pack(">H", 1007) + FREE_TIER_REASON.encode()
        header = bytes([0x88, 126]) + struct.pack(">H", len(payload))
        log.info("session %s: closing with 1007 (%d-byte payload)", self.sid, len(payload))
        self.ws.transport.write(header + payload)
        self.ws.transport.close()


def peer_of(ws: ServerConnection) -> str:
    addr = ws.remote_address
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


def _called(event: Event) -> bool:
    """A `response.done` whose output holds a function call."""
    if event.get("type") != "response.done":
        return False
    output = (event.get("response") or {}).get("output") or []
    return any(isinstance(item, dict) and item.get("type") == "function_call" for item in output)
