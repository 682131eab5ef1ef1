"""The box's own interface, seen from the conversation: the status LED, earcons and the volume.

A mixin of `Conversation`, run on its thread. On a headless box the light and a few short tones are
the whole user interface, so they follow every state change — but never get in the way of what the
user says: the listening earcon is played as capture starts and the microphone audio it overlaps
is replaced with silence before it reaches the wire (`Uplink.mask_until`), so it is never sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from omnid.earcons import Earcons
from omnid.volume import VolumeStore, apply, to_gain

if TYPE_CHECKING:
    from omnid.config import Config
    from omnid.devices import Output
    from omnid.diskwriter import DiskWriter
    from omnid.led import StatusLed
    from omnid.quota import DailyBudget
    from omnid.session import Session
    from omnid.supervisor import Notifier
    from omnid.uplink import Uplink

log = logging.getLogger("omnid.interface")

# Brief drops are healed before anyone notices; only an outage this long is announced.
ANNOUNCE_OFFLINE_AFTER_S = 3.0
# The listening earcon's mask runs from the press until the speaker has handed the earcon's last
# sample to the device (its "drained" event), then for the way from there back to the wire: the
# output buffer, the room, the input buffer, plus the block being captured. Should the speaker
# never report, it ends this long after the earcon's own length.
EARCON_DEVICE_LATENCY_S = 0.2
EARCON_MASK_LIMIT_S = 0.5


class DeviceInterface:
    cfg: Config
    speaker: Output
    session: Session
    uplink: Uplink
    led: StatusLed | None
    earcons: Earcons
    volume_store: VolumeStore | None
    volume_pct: int
    disk: DiskWriter
    _shown: str
    _earcon_queued_t: float | None = None
    _was_online: bool
    _announced_offline: bool
    _offline_since: float | None
    clock: Callable[[], float]
    notifier: Notifier
    budget: DailyBudget
    turns: int
    audio_trouble: str

    @property
    def public_state(self) -> str:
        raise NotImplementedError

    def _earcon(self, name: str, t: float | None = None) -> None:
        """Play an earcon; with `t`, also blank the microphone while it sounds."""
        if not self.cfg.audio.earcons and name != "error":
            return
        pcm = self.earcons.get(name)
        if t is not None:
            self._earcon_queued_t = self.clock()
            self.uplink.mask_until = t + len(pcm) / 24_000 + EARCON_MASK_LIMIT_S
        self.speaker.play(pcm)

    def _earcon_drained(self, t: float) -> None:
        """Speaker event: all queued audio went to the device at `t`. Once that includes the
        listening earcon (a drain stamped before it was queued is stale: a flush's), the mask
        ends when its last sample can have come back through the microphone."""
        queued = self._earcon_queued_t
        if queued is not None and t >= queued:
            self._earcon_queued_t = None
            block_s = self.cfg.audio.block_ms / 1000
            self.uplink.mask_until = t + block_s + EARCON_DEVICE_LATENCY_S

    def _indicate(self) -> None:
        """Follow the state on the LED, and say offline / back online once per change."""
        state = "muted" if self.uplink.muted and self.public_state == "idle" else self.public_state
        if state != self._shown:
            self._shown = state
            if self.led is not None:
                self.led.show(state)
        # Only real trouble is announced: an idle re-open or a rollover stays quiet.
        if self.session.ready:
            if self._announced_offline:
                self._announced_offline = False
                self._earcon("online")
            self._offline_since = None
            return
        now = self.clock()
        if self._offline_since is None:
            self._offline_since = now
        elif now - self._offline_since >= ANNOUNCE_OFFLINE_AFTER_S and not self._announced_offline:
            self._announced_offline = True
            self._earcon("offline")

    def _flash_error(self) -> None:
        if self.led is not None:
            self.led.show("error")

    def volume(self, args: list[str]) -> dict[str, Any]:
        """`omnid ctl volume [up|down|N]`: applied to the next block played, and persisted."""
        if args:
            try:
                self.volume_pct = apply(args, self.volume_pct)
            except ValueError as exc:
                return {"ok": False, "state": self.public_state, "error": str(exc)}
            self.speaker.volume = to_gain(self.volume_pct)
            store, pct = self.volume_store, self.volume_pct
            if store is not None:  # an fsync: never on this thread
                self.disk.submit("volume", lambda: store.save(pct))
            log.info("volume %d %%", self.volume_pct)
        return {"ok": True, "state": self.public_state, "volume": self.volume_pct}

    def status(self) -> dict[str, Any]:
        """`omnid ctl status`."""
        return {
            "ok": True,
            "state": self.public_state,
            "connected": self.session.ready,
            "session_id": self.session.session_id or None,
            "session_age_s": round(self.session.age_s(), 1),
            "turns": self.turns,
        }

    def status_line(self) -> str:
        """systemd's STATUS=: one human line."""
        state = self.public_state
        if self.audio_trouble:
            return self.audio_trouble
        if self.budget.exhausted:
            return f"daily token limit reached ({self.budget.tokens} tokens); resumes at midnight"
        if state == "idle":
            return f"idle (session {self.session.age_s() / 60:.0f} min, {self.turns} turns)"
        if state == "offline" and self.session.retry_at is not None:
            wait = max(0.0, self.session.retry_at - self.clock())
            return f"offline, retrying in {wait:.0f} s: {self.session.last_error}"
        return state

    def _status(self) -> None:
        self.notifier.status(self.status_line())
        self._indicate()
