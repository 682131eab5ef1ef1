"""Talking to systemd: logging to the journal, structured records, and sd_notify.

Under systemd (`$JOURNAL_STREAM` names our stderr, as systemd documents) logs go through
`JournalHandler`, and structured records carry `OMNID_EVENT` plus upper-case `OMNID_*` fields that
`omnid usage` reads back. Elsewhere the same records are one stderr line each with `KEY=value`
fields, so tests and a person at a terminal see exactly what the journal would hold.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("omnid")

Listener = Callable[[str, dict[str, Any]], None]


def under_journal() -> bool:
    """True when stderr is the journal stream systemd gave us (device:inode match)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class _FieldsFormatter(logging.Formatter):
    """Stderr lines: `LEVEL logger: message KEY=value …` with the record's OMNID_* fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "omnid_fields", None)
        if fields:
            line += " " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items())
        return line


def _plain(value: Any) -> str:
    """A field value as one shell word (`shlex.split` reads the line back), on one line: a
    transcript or a tool's output may hold quotes of both kinds and line breaks."""
    return shlex.quote(str(value).replace("\n", "\\n"))


def _fields_only(send: Callable[..., Any]) -> Callable[..., Any]:
    """JournalHandler passes every LogRecord attribute; journald drops the lower-case ones anyway,
    so send only valid (upper-case) field names and keep each datagram small."""

    def sender(text: str, /, **fields: Any) -> Any:
        return send(text, **{k: v for k, v in fields.items() if k.isupper()})

    return sender


def setup_logging(level: str = "info", sender: Callable[..., Any] | None = None) -> None:
    """Route the root logger to the journal or stderr. `sender` replaces journal.send in tests."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    out: logging.Handler
    if sender is not None or under_journal():
        from systemd.journal import JournalHandler, send

        out = JournalHandler(
            sender_function=_fields_only(sender or send), SYSLOG_IDENTIFIER="omnid"
        )
        out.setFormatter(logging.Formatter("%(message)s"))
    else:
        out = logging.StreamHandler(sys.stderr)
        out.setFormatter(_FieldsFormatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(out)
    root.setLevel(level.upper())
    # Third-party chatter (websocket-client logs handshake details at debug; httpx every request,
    # MCP pings included; the MCP SDK its session ids) stays quiet.
    for noisy in ("websocket", "websockets", "urllib3", "dashscope", "httpx", "httpcore", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Journal:
    """Structured records (README, "Status, logs and usage").

    Listeners see every record (demo, tests).
    """

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._log = logging.getLogger("omnid.journal")

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def record(self, event: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
        payload = {"OMNID_EVENT": event}
        payload.update({f"OMNID_{k}": v for k, v in fields.items()})
        # For JournalHandler the upper-case attributes become journal fields; for stderr the
        # formatter prints them from omnid_fields.
        extra: dict[str, Any] = dict(payload)
        extra["omnid_fields"] = payload
        self._log.log(level, message, extra=extra)
        for listener in self._listeners:
            listener(event, payload)


class Watchdog:
    """Pings due every half `WATCHDOG_USEC` (sd_watchdog_enabled(3) semantics: only for the
    process named by `WATCHDOG_PID`, when set). The caller decides whether it is alive."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = float("-inf")

    @classmethod
    def from_env(cls) -> Watchdog | None:
        try:
            usec = int(os.environ.get("WATCHDOG_USEC", "0"))
            pid = int(os.environ.get("WATCHDOG_PID", "0") or 0)
        except ValueError:
            return None
        if usec <= 0 or (pid and pid != os.getpid()):
            return None
        return cls(usec / 1e6 / 2)

    def due(self, now: float) -> bool:
        if now - self._last >= self.interval_s:
            self._last = now
            return True
        return False


class Notifier:
    """sd_notify; a no-op without $NOTIFY_SOCKET. Remembers STATUS to skip repeats."""

    def __init__(self, enabled: bool = False) -> None:
        self._status = ""
        self.enabled = enabled

    @classmethod
    def from_env(cls) -> Notifier:
        """Enabled when systemd gave us a socket to notify ($NOTIFY_SOCKET)."""
        return cls(bool(os.environ.get("NOTIFY_SOCKET")))

    def send(self, state: str) -> None:
        if not self.enabled:
            return
        from systemd.daemon import notify

        try:
            notify(state)
        except OSError as exc:  # systemd's socket gone: a status line must never stop the daemon
            log.debug("sd_notify %s failed: %s", state.split("=", 1)[0], exc)

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, line: str) -> None:
        if line != self._status:
            self._status = line
            self.send(f"STATUS={line}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def reloading(self) -> None:
        self.send("RELOADING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")
