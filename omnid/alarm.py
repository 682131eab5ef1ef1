"""A due timer rings: the alarm sound, the LED, and the journal, until someone stops it.

It rings until a tap, a press (the button or `omnid ctl press`/`tap`) or `tools.alarm_max_s`.
A timer that falls due while the box is busy (listening, thinking, answering) waits for the turn
to end and then rings, rather than talking over the answer or over the user: the answer is what
was asked for just now, the timer can wait seconds. While it rings the echo guard holds the
microphone silent, so in hands-free mode the service never hears the alarm as speech. Runs on
the conversation thread; it only queues audio.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from omnid.earcons import alarm_sound
from omnid.feedback import Feedback
from omnid.playback import Playback
from omnid.settings import Settings
from omnid.timers import Timer, Timers

log = logging.getLogger("omnid.alarm")

REFILL_S = 0.5  # keep at least this much of the alarm queued while it rings


class Alarm:
    def __init__(
        self,
        settings: Settings,
        timers: Timers,
        playback: Playback,
        feedback: Feedback,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._timers = timers
        self._playback = playback
        self._feedback = feedback
        self._clock = clock
        self._sound = alarm_sound()
        self.waiting: deque[tuple[Timer, str]] = deque()  # due, for the next idle moment
        self.ringing: Timer | None = None
        self._since = 0.0

    def due(self, timer: Timer, note: str = "") -> None:
        self.waiting.append((timer, note))

    def tick(self, idle: bool) -> None:
        """Start the next waiting one when the conversation is idle; keep one ringing fed; end
        it at `tools.alarm_max_s`. Called on every turn of the loop (it is cheap)."""
        now = self._clock()
        if self.ringing is not None:
            if now - self._since >= self._settings.current.tools.alarm_max_s:
                self.stop("nobody stopped it")
            elif self._playback.queued_s < REFILL_S:
                self._playback.ring(self._sound)
            return
        if self.waiting and idle:
            timer, note = self.waiting.popleft()
            self.ringing, self._since = timer, now
            log.info("%s %r rings%s", timer.kind, timer.label, f" ({note})" if note else "")
            self._timers.record("rang", timer, note)
            self._feedback.cue("alarm")
            self._playback.ring(self._sound)

    def stop(self, why: str) -> bool:
        """A tap or press while it rings: silent within a block. False when nothing rings."""
        timer = self.ringing
        if timer is None:
            return False
        self.ringing = None
        self._playback.end_ring()
        self._feedback.cue("alarm_over")
        rang = self._clock() - self._since
        log.info("%s %r stopped after %.1f s: %s", timer.kind, timer.label, rang, why)
        self._timers.record("stopped", timer, why)
        return True

    @property
    def active(self) -> bool:
        return self.ringing is not None
