"""Keeping the daemon honest with systemd: the watchdog is fed only while the microphone is.

The watchdog is pinged from the conversation loop's own tick, and only while microphone blocks
arrive (or the device is known missing and being reopened, or asleep on purpose): a stalled loop
or a dead capture stream stops the pings and systemd restarts the daemon — never a silently deaf
device.
"""

from __future__ import annotations

import logging

from omnid.supervisor import Notifier, Watchdog

log = logging.getLogger("omnid.health")


class Health:
    def __init__(self, notifier: Notifier, watchdog: Watchdog | None, now: float) -> None:
        self._notifier = notifier
        self._watchdog = watchdog
        self.last_mic_t = now
        self.mic_missing = False
        self.sleeping = False  # the microphone stopped on purpose (`micsleep.MicSleep`)
        self.audio_trouble = ""  # what STATUS says while a device is missing

    def heard(self, t: float) -> None:
        self.last_mic_t = t

    def audio_lost(self, reason: str) -> None:
        """Known missing and being reopened: the watchdog keeps being fed, STATUS says why."""
        self.mic_missing = True
        self.audio_trouble = f"audio device lost ({reason}); reopening"

    def audio_retry(self, reason: str, delay_s: float) -> None:
        self.audio_trouble = f"audio device missing ({reason}); retrying in {delay_s:.0f} s"

    def audio_back(self) -> None:
        self.mic_missing = False
        self.audio_trouble = ""
        log.info("audio resumed")

    @property
    def longest_tick_s(self) -> float:
        """How seldom the loop may tick and still ping on time (a ping goes out at the first
        tick after it is due): half the ping interval, so a ping is at most half late."""
        return float("inf") if self._watchdog is None else self._watchdog.interval_s / 2

    def tick(self, now: float) -> None:
        if self._watchdog is None or not self._watchdog.due(now):
            return
        stale_after = max(0.5, min(2.0, self._watchdog.interval_s))
        if self.mic_missing or self.sleeping or now - self.last_mic_t < stale_after:
            self._notifier.watchdog()
        else:
            log.debug(
                "watchdog: no microphone block for %.1f s: not pinging", now - self.last_mic_t
            )
