"""Timers and alarms: the box keeps the time the model cannot.

A Pi has no battery-backed clock: the wall clock may be days off at boot and jumps when NTP
synchronises. So each kind keeps time on the clock that means what the user asked for:

- a **timer** ("ten minutes") is due on the monotonic clock: ten minutes after it was set,
  whatever the wall clock does meanwhile;
- an **alarm** ("at 07:30") is due when the wall clock shows that time: after a clock step its
  monotonic due time is worked out again from the wall.

Both are saved (through the disk thread) with their due time on the wall clock, re-derived
whenever the wall clock steps, so a restart finds them where they were: one still ahead rings on
time; one that fell due while the daemon was down rings at once (said so in the journal), or is
reported missed when it is more than an hour late. Everything here runs on the conversation
thread: it only reads clocks and hands writes to the disk thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omnid.diskwriter import DiskWriter
from omnid.feedback import Feedback

log = logging.getLogger("omnid.timers")

FILENAME = "timers.json"
MISSED_AFTER_S = 3600.0  # fell due this long before a restart: too late to ring
CLOCK_STEP_S = 2.0  # the wall clock moved this much against the monotonic one: a step


@dataclass
class Timer:
    label: str
    kind: str  # "timer" (monotonic) or "alarm" (wall clock)
    due: float  # monotonic, this run
    due_wall: float  # epoch seconds: what a restart goes by
    seconds: float = 0.0  # a timer's length, as asked
    late_s: float = 0.0  # restored after it fell due: how late it rings


class TimerError(ValueError):
    """A request the box cannot honour; the message is for the model to say."""


class TimerStore:
    """`state_dir/timers.json`: `[{"label", "kind", "due_wall", "seconds"}, …]`, written
    atomically (temporary file, fsync, rename). A missing file is no timers; a corrupt one is
    no timers and one warning."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILENAME

    def load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("timers: cannot read %s (%s); starting without timers", self.path, exc)
            return []
        if not isinstance(data, list):
            log.warning("timers: %s is not a list; starting without timers", self.path)
            return []
        return [t for t in data if isinstance(t, dict)]

    def save(self, timers: list[dict[str, Any]]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".timers-")
            with os.fdopen(fd, "w") as f:
                json.dump(timers, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("timers: cannot save %s (%s); they hold until a restart", self.path, exc)
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)


def next_occurrence(hhmm: str, now_wall: float) -> float:
    """Epoch seconds of the next time the local clock shows HH:MM (today, or tomorrow)."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    now = dt.datetime.fromtimestamp(now_wall).astimezone()
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at.timestamp() <= now_wall:
        at = (now + dt.timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at.timestamp()


class Timers:
    def __init__(
        self,
        limit: Callable[[], int],
        clock: Callable[[], float],
        wall: Callable[[], float],
        disk: DiskWriter,
        feedback: Feedback,
        store: TimerStore | None = None,
    ) -> None:
        self._limit = limit  # tools.max_timers, read live
        self._feedback = feedback
        self._clock = clock
        self._wall = wall
        self._disk = disk
        self._store = store
        self._timers: dict[str, Timer] = {}
        self._offset = wall() - clock()  # wall minus monotonic: a jump in it is a clock step

    # ------------------------------------------------------------------ requests (tools)

    def set_timer(self, label: str, seconds: float) -> Timer:
        now = self._clock()
        timer = Timer(label, "timer", now + seconds, self._wall() + seconds, seconds)
        return self._add(timer)

    def set_alarm(self, label: str, hhmm: str) -> Timer:
        now_wall = self._wall()
        due_wall = next_occurrence(hhmm, now_wall)
        return self._add(Timer(label, "alarm", self._clock() + due_wall - now_wall, due_wall))

    def _add(self, timer: Timer) -> Timer:
        if timer.label not in self._timers and len(self._timers) >= self._limit():
            raise TimerError(
                f"there are already {len(self._timers)} timers, the most this box keeps; "
                "cancel one first"
            )
        replaced = self._timers.get(timer.label)
        self._timers[timer.label] = timer  # the same label again replaces it
        self._save()
        self.record("set", timer, f"replaces the {replaced.kind} set before" if replaced else "")
        return timer

    def cancel(self, label: str) -> Timer:
        timer = self._timers.pop(label, None)
        if timer is None:
            known = ", ".join(sorted(self._timers)) or "none"
            raise TimerError(f"there is no timer called {label!r} (timers set: {known})")
        self._save()
        self.record("cancelled", timer)
        return timer

    def running(self) -> list[Timer]:
        return sorted(self._timers.values(), key=lambda t: t.due)

    def remaining_s(self, timer: Timer) -> float:
        return max(0.0, timer.due - self._clock())

    def describe(self, timer: Timer) -> dict[str, Any]:
        """What the model and `omnid ctl status` are told of one timer."""
        at = dt.datetime.fromtimestamp(self._wall() + self.remaining_s(timer)).astimezone()
        return {
            "label": timer.label,
            "kind": timer.kind,
            "rings_in_s": round(self.remaining_s(timer)),
            "rings_at": at.strftime("%H:%M:%S"),
        }

    def record(self, action: str, timer: Timer, why: str = "") -> None:
        """One `timer` journal record: set, rang, cancelled, stopped or missed."""
        due = dt.datetime.fromtimestamp(timer.due_wall).astimezone()
        fields: dict[str, Any] = {
            "ACTION": action,
            "LABEL": timer.label,
            "KIND": timer.kind,
            "DUE": due.isoformat(timespec="seconds"),
            "DUE_WALL": round(timer.due_wall, 3),
        }
        if why:
            fields["REASON"] = why
        level = logging.WARNING if action == "missed" else logging.INFO
        self._feedback.timer(fields, level)

    # ------------------------------------------------------------------ the clock

    def due(self) -> list[Timer]:
        """The timers due now, taken out (the caller rings them)."""
        self._check_clock_step()
        now = self._clock()
        ready = [t for t in self._timers.values() if t.due <= now]
        for timer in ready:
            del self._timers[timer.label]
        if ready:
            self._save()
        return sorted(ready, key=lambda t: t.due)

    def next_due_in(self) -> float | None:
        """Seconds until the next timer is due (None with none set): the loop's wake-up."""
        if not self._timers:
            return None
        return max(0.0, min(t.due for t in self._timers.values()) - self._clock())

    def _check_clock_step(self) -> None:
        offset = self._wall() - self._clock()
        step = offset - self._offset
        if abs(step) < CLOCK_STEP_S:
            return
        self._offset = offset
        log.info("timers: the wall clock stepped %+.0f s; timers keep their time", step)
        for timer in self._timers.values():
            if timer.kind == "alarm":  # due at a time of day: follow the wall clock
                timer.due = timer.due_wall - offset
            else:  # due after a length of time: the wall time it means has moved
                timer.due_wall = timer.due + offset
        self._save()

    # ------------------------------------------------------------------ a restart

    def restore(self, saved: list[dict[str, Any]]) -> tuple[list[Timer], list[Timer]]:
        """Timers from the state file. Returns (late, missed): those that fell due while the
        daemon was down — to ring at once — and those over an hour late, dropped."""
        now, now_wall = self._clock(), self._wall()
        late: list[Timer] = []
        missed: list[Timer] = []
        for entry in saved:
            try:
                label, kind = str(entry["label"]), str(entry["kind"])
                due_wall, seconds = float(entry["due_wall"]), float(entry.get("seconds", 0.0))
            except (KeyError, TypeError, ValueError):
                log.warning("timers: skipping an unreadable saved timer %r", entry)
                continue
            ahead = due_wall - now_wall
            timer = Timer(label, kind, now + ahead, due_wall, seconds, max(0.0, -ahead))
            if ahead >= 0:
                self._timers[label] = timer
            elif -ahead <= MISSED_AFTER_S:
                late.append(timer)
            else:
                missed.append(timer)
        if late or missed:
            self._save()
        return late, missed

    def _save(self) -> None:
        store = self._store
        if store is None:
            return
        entries = [
            {k: v for k, v in asdict(t).items() if k in ("label", "kind", "due_wall", "seconds")}
            for t in self._timers.values()
        ]
        self._disk.submit("timers", lambda: store.save(entries))
