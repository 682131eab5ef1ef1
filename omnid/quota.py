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

from omnid.settings import Settings

log = logging.getLogger("omnid.quota")


class DailyBudget:
    """The limit is read live from the settings (a reload changes it at once)."""

    def __init__(
        self,
        settings: Settings,
        path: Path,
        tokens: int = 0,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self._settings = settings
        self.path = path
        self._today = today
        self.day = today()
        self.tokens = tokens

    @classmethod
    def load(
        cls, settings: Settings, state_dir: Path, today: Callable[[], dt.date] = dt.date.today
    ) -> DailyBudget:
        """Today's count as a previous run left it (a restart must not reset the budget)."""
        path = state_dir / "usage-today.json"
        tokens = 0
        try:
            data = json.loads(path.read_text())
            if data.get("date") == today().isoformat():
                tokens = int(data.get("tokens", 0))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
        return cls(settings, path, tokens, today)

    @property
    def limit(self) -> int:
        return self._settings.current.usage.daily_token_limit

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
