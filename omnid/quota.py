"""`usage.daily_token_limit`: once a day's tokens reach it, new turns are refused until local
midnight. The day's count lives in a small state file so a restart does not reset the budget.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("omnid.quota")


class DailyBudget:
    def __init__(
        self,
        limit: int,
        state_dir: Path,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self.limit = limit
        self.path = state_dir / "usage-today.json"
        self._today = today
        self.day = today()
        self.tokens = 0
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("date") == self.day.isoformat():
                self.tokens = int(data.get("tokens", 0))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)

    def _roll(self) -> None:
        today = self._today()
        if today != self.day:
            self.day, self.tokens = today, 0

    def add(self, tokens: int) -> Callable[[], None] | None:
        """Count `tokens`; returns the write that saves the new count (made off the
        conversation thread), or None when there is no limit to keep across a restart."""
        self._roll()
        self.tokens += max(0, tokens)
        if self.limit <= 0:
            return None
        path, payload = self.path, json.dumps({"date": self.day.isoformat(), "tokens": self.tokens})
        return lambda: _save(path, payload)

    @property
    def exhausted(self) -> bool:
        self._roll()
        return self.limit > 0 and self.tokens >= self.limit


def _save(path: Path, payload: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(payload)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot save the day's token count to %s: %s", path, exc)
