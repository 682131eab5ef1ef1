"""`--record PATH`: what crossed the wire, one JSON line per event, for tests in other processes.

Line format (each line flushed as written, so a test may read the file while the simulator runs):

    {"t": <time.time()>, "session": "sess_…" | null, "dir": "recv" | "send", "event": {…}}
    {"t": …, "session": …, "dir": "conn", "what": "open" | "close" | "refused" | "drop" | "stall"}
    {"t": …, "session": …, "dir": "note", "what": "ignored_fields", "fields": […]}

`recv` lines hold the client event as parsed (`"event": null, "raw": "…"` when it was not JSON);
`send` lines hold the server event exactly as serialised on the wire, audio payloads included,
so a test can correlate what it played with what was sent; `conn` lines carry what explains
them (`peer`, `code`, `by`, `why`, `events_sent`…). The API key is never recorded.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, TextIO


class Recorder:
    """Append-only JSONL writer; a no-op when no path was given (so callers never branch)."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        if path is not None:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as us

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def sent(self, session: str | None, event_json: str) -> None:
        """A server event, given already serialised so big audio deltas are encoded once."""
        if self._file is not None:
            head = json.dumps({"t": time.time(), "session": session, "dir": "send"})
            self._write(f'{head[:-1]}, "event": {event_json}}}')

    def received(self, session: str | None, event: Any, raw: str | None = None) -> None:
        if self._file is not None:
            line: dict[str, Any] = {"t": time.time(), "session": session, "dir": "recv"}
            line["event"] = event
            if raw is not None:
                line["raw"] = raw
            self._write(json.dumps(line))

    def conn(self, session: str | None, what: str, **fields: Any) -> None:
        self.line(session, "conn", what, **fields)

    def note(self, session: str | None, what: str, **fields: Any) -> None:
        self.line(session, "note", what, **fields)

    def line(self, session: str | None, direction: str, what: str, **fields: Any) -> None:
        if self._file is not None:
            record = {"t": time.time(), "session": session, "dir": direction, "what": what}
            self._write(json.dumps({**record, **fields}, default=str))

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _write(self, text: str) -> None:
        with self._lock:
            if self._file is not None:
                self._file.write(text + "\n")
                self._file.flush()
