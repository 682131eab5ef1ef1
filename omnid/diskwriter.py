"""State files written off the conversation thread.

The volume and the day's token count are small files, but writing one means a rename and, for the
volume, an fsync: tens of milliseconds on a worn SD card, and unbounded on a failing one. The
conversation thread must never wait on that, so it hands each write here as a callable. Writes
under one name coalesce: only the newest is still worth making, and a burst of `volume up` costs
one write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("omnid.diskwriter")


class DiskWriter:
    def __init__(self) -> None:
        self._due: dict[str, Callable[[], object]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._idle = True

    def submit(self, name: str, write: Callable[[], object]) -> None:
        """Make `write` soon, replacing a write of the same name not made yet. Never blocks."""
        with self._cond:
            self._due[name] = write
            self._idle = False
            if self._thread is None:  # started on first use: most runs never write anything
                self._thread = threading.Thread(target=self._run, name="disk", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every submitted write is made (at shutdown; tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._idle, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    self._idle = True
                    self._cond.notify_all()
                    self._cond.wait()
                name, write = next(iter(self._due.items()))
                del self._due[name]
            try:
                write()
            except Exception:  # a failed write is the writer's to report; the thread goes on
                log.exception("writing %s failed", name)
