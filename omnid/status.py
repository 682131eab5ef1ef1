"""What the box says about itself: the state it shows, the STATUS line, `omnid ctl status`, and
when an outage is worth announcing. Read from the parts that own each fact, published through
the feedback seam; the conversation only says which state it is in and how many turns it took.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omnid.feedback import Feedback
from omnid.health import Health
from omnid.quota import DailyBudget
from omnid.session import Session
from omnid.timers import Timers
from omnid.tools import Toolbox
from omnid.uplink import Uplink
from omnid.wakewindow import WakeWindow

# Brief drops are healed before anyone notices; only an outage this long is announced.
ANNOUNCE_OFFLINE_AFTER_S = 3.0


class OutageNotice:
    """Says "offline" once an outage has lasted `ANNOUNCE_OFFLINE_AFTER_S`, and "online" when it
    ends — only then: an idle re-open or a rollover stays quiet."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._announced = False

    def update(self, online: bool, now: float) -> str | None:
        if online:
            self._since = None
            if self._announced:
                self._announced = False
                return "online"
            return None
        if self._since is None:
            self._since = now
        elif now - self._since >= ANNOUNCE_OFFLINE_AFTER_S and not self._announced:
            self._announced = True
            return "offline"
        return None


class Status:
    def __init__(
        self,
        session: Session,
        uplink: Uplink,
        health: Health,
        budget: DailyBudget,
        feedback: Feedback,
        timers: Timers,
        tools: Toolbox,
        clock: Callable[[], float],
        wake: WakeWindow | None = None,
    ) -> None:
        self._wake = wake  # wake mode's window: its activations, and those without a turn
        self._timers = timers
        self._tools = tools
        self._session = session
        self._uplink = uplink
        self._health = health
        self._budget = budget
        self._feedback = feedback
        self._clock = clock
        self._outage = OutageNotice()

    def public(self, state: str) -> str:
        """The conversation's state, or while idle, whether the session is there and whether
        the microphone is muted."""
        if state != "idle":
            return state
        if self._session.ready:
            return "muted" if self._uplink.muted else "idle"
        return "offline" if self._session.state == "offline" else "connecting"

    def reply(self, state: str, turns: int) -> dict[str, Any]:
        """`omnid ctl status`."""
        session = self._session
        return {
            "ok": True,
            "state": self.public(state),
            "connected": session.ready,
            "session_id": session.session_id or None,
            "session_age_s": round(session.age_s(), 1),
            "turns": turns,
            "timers": [self._timers.describe(t) for t in self._timers.running()],
            "muted": self._uplink.muted,
            **self._wakes(),
        }

    def _wakes(self) -> dict[str, int]:
        if self._wake is None:
            return {}
        return {"wakes": self._wake.activations, "wakes_without_turn": self._wake.without_turn}

    def line(self, state: str, turns: int) -> str:
        """systemd's STATUS=: one human line, the timers running, and a tool server that is
        not there (an MCP server down or refusing the token)."""
        parts = [self._line(state, turns)]
        timers = self._timers.running()
        if timers:
            left = ", ".join(f"{t.label} {_mm_ss(self._timers.remaining_s(t))}" for t in timers)
            parts.append(f"timers: {left}")
        parts += self._tools.trouble()
        return "; ".join(parts)

    def _line(self, state: str, turns: int) -> str:
        state = self.public(state)
        session, budget = self._session, self._budget
        if self._health.audio_trouble:
            return self._health.audio_trouble
        if budget.exhausted:
            return f"daily token limit reached ({budget.tokens} tokens); resumes at midnight"
        if state in ("idle", "muted"):
            wake = self._wake
            wakes = (
                f", {wake.activations} wakes, {wake.without_turn} without a turn"
                if wake is not None
                else ""
            )
            return f"{state} (session {session.age_s() / 60:.0f} min, {turns} turns{wakes})"
        if state == "offline" and session.retry_at is not None:
            wait = max(0.0, session.retry_at - self._clock())
            return f"offline, retrying in {wait:.0f} s: {session.last_error}"
        return state

    def publish(self, state: str, turns: int) -> None:
        """The state shown (muted is idle with the microphone off), the STATUS line, and an
        outage's start and end."""
        feedback = self._feedback
        feedback.status(self.line(state, turns))
        feedback.state(self.public(state))
        cue = self._outage.update(self._session.ready, self._clock())
        if cue is not None:
            feedback.cue(cue)


def _mm_ss(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
