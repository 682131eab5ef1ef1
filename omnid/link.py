"""One WebSocket to the service (websocket-client): connect, a reader thread, send, ping, close.

The link knows nothing of sessions or turns. Its reader thread parses each message (JSON and base64
decoding stay off the conversation thread) and only puts `LinkMessage` / `LinkClosed` on the queue.
Sends come from the conversation thread alone.

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
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import websocket

from omnid import protocol
from omnid.events import Event, LinkClosed, LinkMessage

log = logging.getLogger("omnid.link")

# A dead TCP connection (router reboot, Wi-Fi gone) shows no error until a read times out: we ping
# every PING_INTERVAL_S and treat DEAD_AFTER_S without any frame (pong included) as a drop.
PING_INTERVAL_S = 10.0
DEAD_AFTER_S = 30.0
CLOSE_GRACE_S = 1.0


class LinkError(Exception):
    """Why a connection could not be made. `kind`: auth | quota | refused | network."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status

    @property
    def permanent(self) -> bool:
        """Auth and quota refusals will not heal by retrying quickly (design.md: ≥ 60 s)."""
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
        self.session_id = ""
        self.opened_at = 0.0
        self.last_send_t = 0.0

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
        self.last_send_t = self.opened_at

    def start_reader(self) -> None:
        """Start feeding the queue; separate from connect() so `LinkUp` is queued first."""
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
        """Send one client event; False (and a LinkClosed will follow) when the socket is gone."""
        ws = self._ws
        if ws is None or self._closing:
            return False
        try:
            ws.send(protocol.encode(event))
        except (OSError, websocket.WebSocketException) as exc:
            log.debug("link %s: send failed: %s", self.id, type(exc).__name__)
            self._abort()
            return False
        self.last_send_t = time.monotonic()
        return True

    def ping(self) -> None:
        ws = self._ws
        if ws is None or self._closing:
            return
        try:
            ws.ping()
        except (OSError, websocket.WebSocketException):
            self._abort()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and let the reader finish; force the socket shut after a grace."""
        ws = self._ws
        if ws is None or self._closing:
            return
        self._closing = True
        with contextlib.suppress(OSError, websocket.WebSocketException):
            ws.send_close(code, reason.encode())
        timer = threading.Timer(CLOSE_GRACE_S, self._abort)
        timer.daemon = True
        timer.start()

    def _abort(self) -> None:
        ws = self._ws
        if ws is None:
            return
        sock = ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

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
                try:
                    event = protocol.parse(data)
                except protocol.ProtocolError as exc:
                    log.warning("link %s: skipping a bad server message: %s", self.id, exc)
                    continue
                self._post(LinkMessage(self, event))
        except websocket.WebSocketTimeoutException:
            reason = f"no data for {DEAD_AFTER_S:.0f} s (dead connection)"
        except (OSError, websocket.WebSocketException) as exc:
            reason = "" if self._closing else f"connection lost ({type(exc).__name__})"
        except Exception:  # a bug here must not leave the conversation waiting forever
            log.exception("link %s: reader failed", self.id)
            reason = "reader failed"
        finally:
            with contextlib.suppress(Exception):
                ws.shutdown()
            self._ws = None
            self._post(LinkClosed(self, code, _scrub(reason, self._key)))

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._closing


def _close_frame(data: Any) -> tuple[int | None, str]:
    """Close code and reason, read defensively (the service's reason may exceed 125 bytes)."""
    raw = bytes(data or b"")
    if len(raw) < 2:
        return None, ""
    (code,) = struct.unpack("!H", raw[:2])
    return code, raw[2:].decode("utf-8", "replace")[:500]
