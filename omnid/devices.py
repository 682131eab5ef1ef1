"""The audio devices' lifecycle: open at start, and reopen with backoff when one goes away.

A USB microphone pulled out (or not yet plugged in at boot) must not need a human: the daemon
stays up, says so in STATUS, keeps the watchdog fed while it is *known* missing and being
reopened, and resumes when the device returns. Reopening happens on a worker thread — closing a
failed stream can block — and PortAudio is re-initialised first, because it only enumerates
devices at initialisation. The worker only posts `AudioReady` / `AudioRetry`; the conversation
thread swaps the devices in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from omnid import events as ev
from omnid.audio import AudioDeviceError, Microphone, Speaker, open_audio
from omnid.config_schema import AudioSection
from omnid.micfeed import MicFeed

log = logging.getLogger("omnid.devices")

RETRY_BASE_S, RETRY_CAP_S = 1.0, 30.0
CLOSE_WAIT_S = 2.0


class Output(Protocol):
    """What the conversation needs of a speaker: `omnid.audio.Speaker`, or the stand-in below."""

    volume: float

    def play(self, pcm: np.ndarray, *, last: bool = False) -> None: ...
    def flush(self) -> None: ...
    @property
    def queued_s(self) -> float: ...


class SilentSpeaker:
    """Stands in while the speaker is missing: answers are dropped, nothing blocks."""

    name = "(missing)"
    device_rate = 24_000
    volume = 1.0
    queued_s = 0.0

    def play(self, pcm: np.ndarray, *, last: bool = False) -> None:
        pass

    def flush(self) -> None:
        pass

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class AudioDevices:
    """Opens the devices once, and again after a loss. Microphone blocks go to `feed` (every
    consumer's queue); the speaker's events are posted."""

    def __init__(
        self,
        audio: AudioSection,
        block_ms: int,
        post: Callable[[ev.Event], None],
        feed: MicFeed,
    ) -> None:
        self.audio = audio
        self.block_ms = block_ms
        self._post = post
        self.feed = feed
        self.mic: Microphone | None = None
        self.speaker: Speaker | None = None
        self._worker: threading.Thread | None = None
        self._closing = False

    def open(self) -> tuple[Microphone, Speaker]:
        """Open and start both; raises AudioDeviceError naming what is missing."""
        a = self.audio
        mic, speaker = open_audio(
            a.input_device,
            a.output_device,
            block_ms=self.block_ms,
            on_mic_block=self.feed,
            on_speaker_event=lambda kind, t: self._post(ev.SpeakerEvent(kind, t)),
        )  # the conversation sets the volume as it takes the speaker (`Playback.use`)
        for device in (mic, speaker):
            if hasattr(device, "on_lost"):
                device.on_lost = lambda why: self._post(ev.AudioLost(why))
        mic.start()  # first: with two wav: devices the shared clock starts with the microphone
        speaker.start()
        self.mic, self.speaker = mic, speaker
        return mic, speaker

    def reopen(self, why: str) -> None:
        """Close what is left and try again in the background, with backoff, until it works."""
        if self._worker is not None and self._worker.is_alive():
            return
        log.warning("audio device lost (%s): reopening", why)
        old = (self.mic, self.speaker)
        self.mic = self.speaker = None
        self._worker = threading.Thread(
            target=self._reopen, args=(old,), name="audio-reopen", daemon=True
        )
        self._worker.start()

    def _reopen(self, old: tuple[Any, Any]) -> None:
        closer = threading.Thread(
            target=lambda: [d.close() for d in old if d is not None], daemon=True
        )
        closer.start()
        closer.join(CLOSE_WAIT_S)  # a wedged driver may never return: do not wait for it
        delay = RETRY_BASE_S
        while not self._closing:
            try:
                self._reinit_portaudio()
                mic, speaker = self.open()
            except AudioDeviceError as exc:
                self._post(ev.AudioRetry(str(exc), delay))
                time.sleep(delay)
                delay = min(RETRY_CAP_S, delay * 2)
                continue
            log.info("audio devices back: in %s, out %s", mic.name, speaker.name)
            self._post(ev.AudioReady(mic, speaker))
            return

    def _reinit_portaudio(self) -> None:
        if all(d.startswith("wav:") for d in (self.audio.input_device, self.audio.output_device)):
            return
        import sounddevice as sd

        sd._terminate()  # PortAudio lists devices only at initialisation
        sd._initialize()

    def close(self) -> None:
        self._closing = True
        for device in (self.mic, self.speaker):
            if device is not None:
                device.close()
