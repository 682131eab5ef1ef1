"""One WebSocket to the service (websocket-client): connect, a reader thread, a writer thread,
ping, close.

The link knows nothing of sessions or turns. Its reader thread parses each message (JSON and base64
decoding stay off the conversation thread) and only puts `LinkMessage` / `LinkClosed` on the queue.

Sends never block the conversation thread: `send()` puts the event on a bounded outbound queue that
the link's own writer thread encodes and writes. A network that stops taking data (a Wi-Fi stall,
a router that drops everything) would otherwise block the whole daemon in `socket.send` until the
watchdog killed it. The queue's rules, so that nothing urgent waits and memory stays bounded:

- `response.cancel` goes ahead of any queued audio and image appends (they commute with it; a
  cancel must never wait behind megabytes of media), but never ahead of other control events;
- an image is not queued when more than `IMAGE_BACKLOG_BYTES` already wait: by the time it went
  out it would be stale, and the camera sends a fresh one a second later;
- everything else is queued; past `MAX_BACKLOG_BYTES` (minutes of audio) the link is declared
  dead, as it is when the writer has been stuck in one write for `WRITE_STALL_S` (`stalled()`,
  checked from the session's tick). The session then reconnects, and the conversation replays
  what the service may not have heard.

Secrets: the key goes into one request header and nowhere else; every error raised or logged here
is built from the HTTP status and body the server returned, and scrubbed of the key besides, because
a misconfigured proxy could echo request headers back.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import websocket

from omnid import protocol
from omnid.events import Event, LinkClosed, LinkMessage

log = logging.getLogger("omnid.link")

# A dead TCP connection (router reboot, Wi-Fi gone) shows no error until a read times out: we ping
# after PING_INTERVAL_S without sending or without hearing anything, and treat DEAD_AFTER_S
# without any frame (pong included) as a drop. (Hands-free mode sends all the time, and in a quiet
# room the service has nothing to say: without the second rule, nothing asked for a pong, and a
# healthy session was dropped every 30 s.)
PING_INTERVAL_S = 10.0
DEAD_AFTER_S = 30.0
CLOSE_GRACE_S = 1.0
WRITE_STALL_S = 10.0  # one write making no progress this long: the path is gone
IMAGE_BACKLOG_BYTES = 256 * 1024
MAX_BACKLOG_BYTES = 8 * 1024 * 1024
_MEDIA = ("input_audio_buffer.append", "input_image_buffer.append")


class LinkError(Exception):
    """Why a connection could not be made. `kind`: auth | quota | refused | network."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status

    @property
    def permanent(self) -> bool:
        """Auth and quota refusals will not heal by retrying quickly (≥ 60 s; see the README)."""
        return self.kind in ("auth", "quota")


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "<redacted>") if secret else text


def build_url(base: str, model: str) -> str:
    split = urlsplit(base)
    query = (split.query + "&" if split.query else "") + urlencode({"model": model})
    return split._replace(query=query).geturl()


class Link:
    """A single WebSocket: create, `connect()` (blocking, off the conversation thread), close."""

    _ids = itertools.count(1)

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str,
        post: Callable[[Event], None],
        *,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.id = next(self._ids)
        self.url = build_url(url, model)
        self.model = model
        self._key = api_key
        self._post = post
        self._connect_timeout_s = connect_timeout_s
        self._ws: websocket.WebSocket | None = None
        self._closing = False
        self._reader: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        # The outbound queue: (event or a ping/close marker, its size in bytes). Guarded by
        # `_cond`, which the conversation thread holds only to append: never across a write.
        self._outbox: deque[tuple[protocol.Event | _Control, int]] = deque()
        self._outbox_bytes = 0
        self._cond = threading.Condition()
        self._writing_since: float | None = None  # monotonic start of the write under way
        self._dead_reason = ""
        self.session_id = ""
        self.opened_at = 0.0
        self.last_send_t = 0.0
        self.last_recv_t = 0.0  # a frame with data (the reader's; pongs it swallows do not count)
        self.last_ping_t = 0.0

    def __repr__(self) -> str:
        return f"<Link #{self.id} {self.session_id or 'unconfigured'}>"

    def connect(self) -> None:
        """Open the socket. Raises LinkError with a key-free message."""
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        try:
            ws.connect(
                self.url,
                header=[f"Authorization: Bearer {self._key}"],
                timeout=self._connect_timeout_s,
            )
        except websocket.WebSocketBadStatusException as exc:
            raise self._refusal(exc) from None
        except (OSError, websocket.WebSocketException, ssl.SSLError) as exc:
            msg = _scrub(f"{type(exc).__name__}: {exc}", self._key)
            raise LinkError("network", f"cannot connect to {self._host()}: {msg}") from None
        ws.settimeout(DEAD_AFTER_S)
        self._ws = ws
        self.opened_at = time.monotonic()
        self.last_send_t = self.last_recv_t = self.opened_at

    def start_reader(self) -> None:
        """Start the reader and the writer; separate from connect() so `LinkUp` is queued
        first."""
        self._writer = threading.Thread(target=self._write, name=f"link-{self.id}-w", daemon=True)
        self._writer.start()
        self._reader = threading.Thread(target=self._read, name=f"link-{self.id}", daemon=True)
        self._reader.start()

    def _host(self) -> str:
        return urlsplit(self.url).netloc

    def _refusal(self, exc: websocket.WebSocketBadStatusException) -> LinkError:
        status = int(getattr(exc, "status_code", 0) or 0)
        body = getattr(exc, "resp_body", b"") or b""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        text = _scrub(" ".join(text.split())[:300], self._key)
        if status in (401, 403):
            kind, what = "auth", "authentication refused"
        elif status == 429:
            kind, what = "quota", "quota or rate limit refused"
        else:
            kind, what = "refused", "connection refused"
        return LinkError(kind, f"{what} by {self._host()}: HTTP {status} {text}".rstrip(), status)

    # ------------------------------------------------------------------ conversation-thread side

    def send(self, event: protocol.Event) -> bool:
        """Queue one client event for the writer; never blocks. False when the link is gone (a
        LinkClosed follows) or the event was an image skipped because the queue is backed up."""
        if self._ws is None or self._closing:
            return False
        kind = event.get("type", "")
        size = len(event.get("audio") or event.get("image") or "") + 64
        with self._cond:
            if kind == "input_image_buffer.append" and self._outbox_bytes > IMAGE_BACKLOG_BYTES:
                log.debug("link %s: camera frame skipped: the outbound queue is backed up", self.id)
                return False
            if self._outbox_bytes + size > MAX_BACKLOG_BYTES:
                backlog = self._outbox_bytes
            else:
                backlog = -1
                if kind == "response.cancel":
                    self._outbox.insert(self._after_last_control(), (event, size))
                else:
                    self._outbox.append((event, size))
                self._outbox_bytes += size
                self._cond.notify()
        if backlog >= 0:
            self.declare_dead(f"{backlog // 1024} KB waiting to be sent")
            return False
        self.last_send_t = time.monotonic()
        return True

    def _after_last_control(self) -> int:
        """Where a cancel goes: after the last queued event that is not a media append."""
        for i in range(len(self._outbox) - 1, -1, -1):
            item = self._outbox[i][0]
            if isinstance(item, _Control) or item.get("type") not in _MEDIA:
                return i + 1
        return 0

    def ping(self) -> None:
        self._enqueue_control(_Control("ping"))

    def _enqueue_control(self, marker: _Control) -> None:
        with self._cond:
            self._outbox.append((marker, 0))
            self._cond.notify()

    def check_writer(self) -> None:
        """Declare the link dead if its writer has made no progress for WRITE_STALL_S. Called
        from the session's tick; only a `shutdown()` syscall, which does not block."""
        since = self._writing_since
        stuck = 0.0 if since is None else time.monotonic() - since
        if stuck >= WRITE_STALL_S and self.is_open:
            self.declare_dead(f"nothing could be sent for {stuck:.0f} s (network stalled)")

    def declare_dead(self, why: str) -> None:
        if not self._dead_reason:
            self._dead_reason = why
            log.warning("link %s declared dead: %s", self.id, why)
        self._abort()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Queue a close frame behind what is waiting, and force the socket shut after a grace
        (a writer stuck on a dead network never gets to send it)."""
        if self._ws is None or self._closing:
            return
        self._closing = True
        self._enqueue_control(_Control("close", code, reason))
        timer = threading.Timer(CLOSE_GRACE_S, self._abort)
        timer.daemon = True
        timer.start()

    def finish(self, timeout: float = CLOSE_GRACE_S) -> None:
        """Wait (shutdown only) for the writer to send what is queued, the close frame last."""
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout)

    def _abort(self) -> None:
        ws = self._ws
        if ws is None:
            return
        sock = ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ writer thread

    def _write(self) -> None:
        ws = self._ws
        assert ws is not None
        while True:
            with self._cond:
                while not self._outbox and self._ws is not None:
                    # No timeout: every change it waits for notifies (send, ping, close, and the
                    # reader's end), and an idle box should not wake this thread every second.
                    self._cond.wait()
                if self._ws is None:
                    return
                item, size = self._outbox.popleft()
            self._writing_since = time.monotonic()
            try:
                if isinstance(item, _Control):
                    if item.kind == "ping":
                        ws.ping()
                    else:
                        ws.send_close(item.code, item.reason.encode())
                        return
                else:
                    ws.send(protocol.encode(item))
            except (OSError, websocket.WebSocketException) as exc:
                log.debug("link %s: send failed: %s", self.id, type(exc).__name__)
                self._abort()
                return
            finally:
                self._writing_since = None
                with self._cond:
                    self._outbox_bytes = max(0, self._outbox_bytes - size)

    # ------------------------------------------------------------------ reader thread

    def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        code: int | None = None
        reason = ""
        try:
            while True:
                opcode, data = ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code, reason = _close_frame(data)
                    break
                if opcode != websocket.ABNF.OPCODE_TEXT:
                    log.warning("link %s: ignoring a non-text frame (opcode %s)", self.id, opcode)
                    continue
                self.last_recv_t = time.monotonic()
                try:
                    event = protocol.parse(data)
                except protocol.ProtocolError as exc:
                    log.warning("link %s: skipping a bad server message: %s", self.id, exc)
                    continue
                self._post(LinkMessage(self, event))
        except websocket.WebSocketTimeoutException:
            reason = f"no data for {DEAD_AFTER_S:.0f} s (dead connection)"
        except (OSError, websocket.WebSocketException) as exc:
            if self._dead_reason:
                reason = self._dead_reason
            else:
                reason = "" if self._closing else f"connection lost ({type(exc).__name__})"
        except Exception:  # a bug here must not leave the conversation waiting forever
            log.exception("link %s: reader failed", self.id)
            reason = "reader failed"
        finally:
            with contextlib.suppress(Exception):
                ws.shutdown()
            with self._cond:
                self._ws = None
                self._outbox.clear()
                self._outbox_bytes = 0
                self._cond.notify()
            self._post(LinkClosed(self, code, _scrub(reason, self._key)))

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._closing


@dataclass(frozen=True)
class _Control:
    """A ping or a close frame, in the outbound queue's order."""

    kind: str  # ping | close
    code: int = 1000
    reason: str = ""


def _close_frame(data: Any) -> tuple[int | None, str]:
    """Close code and reason, read defensively (the service's reason may exceed 125 bytes)."""
    raw = bytes(data or b"")
    if len(raw) < 2:
        return None, ""
    (code,) = struct.unpack("!H", raw[:2])
    return code, raw[2:].decode("utf-8", "replace")[:500]
