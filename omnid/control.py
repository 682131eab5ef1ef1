"""The control socket: one text command per line in, one JSON line out.

The server thread only turns lines into `ControlRequest` events and waits for the conversation
thread's reply, so `omnid ctl press` and the GPIO button drive exactly the same code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from omnid.events import ControlRequest, Event

log = logging.getLogger("omnid.control")

REPLY_TIMEOUT_S = 2.0
MAX_LINE = 1024


class Controllable(Protocol):
    """What the commands act on: the conversation (kept abstract to avoid an import cycle)."""

    @property
    def public_state(self) -> str: ...
    def press(self, t: float) -> None: ...
    def release(self, t: float) -> None: ...
    def tap(self, t: float) -> None: ...
    def status(self) -> dict[str, Any]: ...
    def volume(self, args: list[str]) -> dict[str, Any]: ...
    def mute(self, args: list[str]) -> dict[str, Any]: ...


def answer(target: Controllable, req: ControlRequest) -> None:
    """Carry out one command on the conversation thread and reply with the resulting state."""
    actions: dict[str, Callable[[float], None]] = {
        "press": target.press,
        "release": target.release,
        "tap": target.tap,
    }
    if req.command in actions:
        actions[req.command](req.t)
        req.reply({"ok": True, "state": target.public_state})
    elif req.command == "status":
        req.reply(target.status())
    elif req.command == "volume":
        req.reply(target.volume(req.args))
    elif req.command == "mute":
        req.reply(target.mute(req.args))
    else:
        req.reply(
            {
                "ok": False,
                "state": target.public_state,
                "error": (
                    f"unknown command {req.command!r} (press, release, tap, status, volume, mute)"
                ),
            }
        )


class ControlServer:
    def __init__(self, path: Path, post: Callable[[Event], None]) -> None:
        self.path = Path(path)
        self._post = post
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and listen (before READY=1, so `omnid ctl` works as soon as systemd says up)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()  # stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            conn.settimeout(30)
            try:
                for raw in stream:
                    if len(raw) > MAX_LINE:
                        self._write(stream, {"ok": False, "error": "line too long"})
                        return
                    line = raw.decode("utf-8", "replace").strip()
                    if line:
                        self._write(stream, self.request(line))
            except OSError:
                return

    def request(self, line: str) -> dict[str, Any]:
        """Hand one command to the conversation and wait for its answer."""
        words = line.split()
        done = threading.Event()
        answer: dict[str, Any] = {}

        def reply(result: dict[str, Any]) -> None:
            answer.update(result)
            done.set()

        self._post(ControlRequest(words[0].lower(), words[1:], reply))
        if not done.wait(REPLY_TIMEOUT_S):
            return {
                "ok": False,
                "state": "unknown",
                "error": "the conversation loop did not answer",
            }
        return answer

    @staticmethod
    def _write(stream: Any, obj: dict[str, Any]) -> None:
        stream.write(json.dumps(obj).encode() + b"\n")
        stream.flush()


def ctl(path: Path, command: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Client side of `omnid ctl`: send one line, read one JSON line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    result: dict[str, Any] = json.loads(data.decode() or "{}")
    return result
