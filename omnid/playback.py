"""What the speaker plays, and what that means for the microphone: answers, earcons, volume.

Owned by the conversation thread. The speaker itself may be swapped (a device lost is replaced by
`SilentSpeaker` until it returns). Two things blank the microphone before it reaches the wire:

- an earcon: the listening earcon is played as capture starts, so the microphone audio it
  overlaps is replaced with silence — from the press until the speaker reports its last sample
  handed to the device ("drained"), plus the way back through the room and the input buffer;
- the echo guard (`audio.echo_guard = "half_duplex"`): a one-microphone box would hear its own
  answer, so while an answer plays and for `echo_tail_ms` after, the microphone is silence. The
  price: in hands-free mode the user cannot interrupt by voice, only with the button or
  `omnid ctl tap`. `off` is for headsets and echo-cancelled inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from omnid.devices import Output
from omnid.diskwriter import DiskWriter
from omnid.earcons import Earcons
from omnid.feedback import Subscriber
from omnid.settings import Settings
from omnid.volume import VolumeStore, apply, to_gain

log = logging.getLogger("omnid.playback")

EARCON_RATE = 24_000
# Should the speaker never report the earcon drained, its mask ends this long after its length.
EARCON_MASK_LIMIT_S = 0.5
# From "drained" (last sample handed to the device) back to the wire: output buffer, room, input.
EARCON_DEVICE_LATENCY_S = 0.2
MIN_RING_VOLUME = 40  # percent: a timer is heard even with the volume turned right down


class EchoGuard:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.playing = False
        self.until = 0.0

    def started(self) -> None:
        """Audio handed to the speaker (before it sounds: never too late)."""
        self.playing = True

    def drained(self, t: float) -> None:
        if self.playing:  # an answer (not an earcon, which has its own exact mask) went quiet
            self.playing = False
            self.until = t + self._settings.current.audio.echo_tail_ms / 1000

    def lift(self) -> None:
        """The user spoke over the answer (the wake word), which has been flushed: what the
        microphone hears now is the user, and must not wait out the echo tail."""
        self.playing = False
        self.until = 0.0

    def speaker_changed(self) -> None:
        """The speaker was swapped (lost, or back): what the old one was playing will never
        report drained, and the new one plays nothing yet. Without this a speaker lost
        mid-answer would leave the microphone silenced until something else plays out."""
        self.playing = False

    def active(self, t: float) -> bool:
        guarding = self._settings.current.audio.echo_guard == "half_duplex"
        return guarding and (self.playing or t < self.until)


class Playback(Subscriber):
    def __init__(
        self,
        settings: Settings,
        speaker: Output,
        earcons: Earcons,
        disk: DiskWriter,
        clock: Callable[[], float],
        volume_store: VolumeStore | None = None,
        volume_pct: int = 100,
    ) -> None:
        self._settings = settings
        self.speaker = speaker
        self._earcons = earcons
        self._disk = disk
        self._clock = clock
        self._store = volume_store
        self.volume_pct = volume_pct
        self.guard = EchoGuard(settings)
        self._ringing = False
        self._mask_until = 0.0
        self._earcon_queued_t: float | None = None
        speaker.volume = to_gain(volume_pct)

    # ------------------------------------------------------------------ the speaker

    def use(self, speaker: Output) -> None:
        """A (re)opened speaker, at the current volume."""
        self.speaker = speaker
        self.guard.speaker_changed()
        speaker.volume = to_gain(self.volume_pct)

    def play(self, pcm: np.ndarray) -> None:
        """Part of an answer."""
        if len(pcm):
            self.guard.started()
            self.speaker.play(pcm)

    def ring(self, pcm: np.ndarray) -> None:
        """A due timer's alarm: never quieter than `MIN_RING_VOLUME`, whatever the volume, and
        held off the microphone like an answer (the echo guard)."""
        if not self._ringing:
            self._ringing = True
            self.speaker.volume = to_gain(max(self.volume_pct, MIN_RING_VOLUME))
        self.guard.started()
        self.speaker.play(pcm)

    def end_ring(self) -> None:
        """Silent at the next block, and back at the user's volume."""
        if self._ringing:
            self._ringing = False
            self.speaker.flush()
            self.speaker.volume = to_gain(self.volume_pct)

    def end_answer(self) -> None:
        """The answer's last audio is in: let the resampler hand over its tail."""
        self.speaker.play(np.zeros(0, np.int16), last=True)

    def flush(self) -> None:
        self.speaker.flush()

    @property
    def queued_s(self) -> float:
        return self.speaker.queued_s

    def on_speaker(self, kind: str, t: float) -> None:
        """The speaker's own report: all queued audio went to the device at `t` ("drained")."""
        if kind != "drained":
            return
        self.guard.drained(t)
        queued = self._earcon_queued_t
        if queued is not None and t >= queued:  # a drain stamped before it was queued: a flush's
            self._earcon_queued_t = None
            block_s = self._settings.current.block_ms / 1000
            self._mask_until = t + block_s + EARCON_DEVICE_LATENCY_S

    # ------------------------------------------------------------------ the microphone

    def silences_mic(self, t: float) -> bool:
        """Whether the microphone block captured at `t` must go out as silence."""
        return t < self._mask_until or self.guard.active(t)

    # ------------------------------------------------------------------ earcons

    def on_cue(self, cue: str, t: float | None) -> None:
        if cue not in Earcons.names():
            return  # a cue for the LED only
        if cue == "error":
            self.speaker.flush()  # the answer (if any) stops: the tone says it failed
        elif not self._settings.current.audio.earcons:
            return
        elif cue == "woken" and not self._settings.current.wake.earcon:
            return  # unmasked (it would cut the words after the wake word): the owner's choice
        pcm = self._earcons.get(cue)
        if t is not None:  # capture runs from `t`: blank what the earcon overlaps
            self._earcon_queued_t = self._clock()
            self._mask_until = t + len(pcm) / EARCON_RATE + EARCON_MASK_LIMIT_S
        self.speaker.play(pcm)

    # ------------------------------------------------------------------ volume

    def volume(self, args: list[str]) -> str:
        """`omnid ctl volume [up|down|N]`: applied to the next block played, and persisted.
        Returns an error message, or "" when done."""
        if not args:
            return ""
        try:
            self.volume_pct = apply(args, self.volume_pct)
        except ValueError as exc:
            return str(exc)
        if not self._ringing:  # a ringing alarm keeps its floor; the new volume follows it
            self.speaker.volume = to_gain(self.volume_pct)
        store, pct = self._store, self.volume_pct
        if store is not None:  # an fsync: never on the conversation thread
            self._disk.submit("volume", lambda: store.save(pct))
        log.info("volume %d %%", self.volume_pct)
        return ""
