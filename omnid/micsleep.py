"""The microphone's sleep while nothing on the box can need it.

In push-to-talk mode the microphone reaches the service only inside a turn, and nothing else
listens between turns (no wake word, no pre-roll). A running capture stream wakes the process
every block all the same, which is most of what a box waiting for a press costs; a stopped one
costs nothing. So after `SLEEP_AFTER_S` with no turn, the capture stream is stopped, and a press
starts it again before the turn opens (the stream starts on the backend's own thread; its first
block comes one block later, as it would from a stream that had been running).

While the microphone sleeps the watchdog is fed as when it is known missing: the loop that feeds
it is alive, and a device that went away meanwhile shows when the press starts it.
"""

from __future__ import annotations

import logging

from omnid.audio import Microphone
from omnid.devices import AudioDevices
from omnid.health import Health

log = logging.getLogger("omnid.micsleep")

SLEEP_AFTER_S = 5.0
"""Idle this long before the stream stops: a press right after an answer (a follow-up question)
finds it running."""


class MicSleep:
    def __init__(self, devices: AudioDevices | None, health: Health) -> None:
        self._devices = devices
        self._health = health
        self._idle_since: float | None = None
        self._sleeping: Microphone | None = None  # put to sleep (a reopened one is awake)

    @property
    def asleep(self) -> bool:
        return (
            self._sleeping is not None
            and self._devices is not None
            and (self._sleeping is self._devices.mic)
        )

    def tick(self, now: float, may_sleep: bool) -> None:
        """`may_sleep`: the mode lets the microphone sleep and the box is idle right now."""
        if not may_sleep:
            self._idle_since = None
            self.wake(now)
            return
        mic = None if self._devices is None else self._devices.mic
        if mic is None or self.asleep:
            return
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= SLEEP_AFTER_S:
            mic.suspend()
            self._sleeping = mic
            self._health.sleeping = True
            log.debug("microphone asleep until a press")

    def wake(self, now: float) -> None:
        """Start the stream again (a press is about to open a turn); returns at once."""
        self._idle_since = None
        if not self.asleep:
            self._sleeping = None
            self._health.sleeping = False
            return
        assert self._sleeping is not None
        self._sleeping.resume()
        self._sleeping = None
        self._health.sleeping = False
        self._health.heard(now)  # the watchdog measures the silence from the restart
        log.debug("microphone awake")
