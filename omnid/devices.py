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
from omnid.volume import to_gain

log = logging.getLogger("omnid.devices")

RETRY_BASE_S, RETRY_CAP_S = 1.0, 30.0
CLOSE_WAIT_S = 2.0
MIC_BATCH_MS = 100
"""How much microphone audio the conversation thread gets per wake-up. It sends ~100 ms appends
anyway, so waking it for every 20 ms block only costs CPU (the wake-ups were most of its time)."""


class MicBatcher:
    """The microphone callback's side of the conversation queue.

    The callback appends each block under a lock held for a list append (it never waits for
    more), and posts the batch once `MIC_BATCH_MS` of blocks are in. `drain()` lets the
    conversation take a partial batch at once — on release, the end of the utterance must go out
    with the commit, not 80 ms later. Posting happens under the same lock, so a block is either
    drained or posted, never both and never neither.
    """

    def __init__(self, post: Callable[[ev.Event], None], block_ms: int) -> None:
        self._post = post
        self.block_ms = block_ms
        self.every = max(1, MIC_BATCH_MS // block_ms)
        self._blocks: list[ev.MicBlock] = []
        self._lock = threading.Lock()
        self._posted = 0  # batches posted (audio thread) …
        self._handled = 0  # … and handled (conversation thread): the difference is in flight

    def __call__(self, pcm: np.ndarray, t: float) -> None:
        with self._lock:
            self._blocks.append(ev.MicBlock(pcm, t))
            if len(self._blocks) >= self.every:
                self._post(ev.MicBatch(self._blocks, t))
                self._blocks = []
                self._posted += 1

    def handled(self) -> None:
        """The conversation took a batch off its queue."""
        self._handled += 1

    @property
    def in_flight(self) -> bool:
        """A posted batch is still waiting in the conversation's queue: a release must wait for
        it, or the last words before the release (up to a batch) would miss the commit."""
        return self._posted > self._handled

    def drain(self, begun_before: float) -> list[ev.MicBlock]:
        """The blocks not yet posted that began before `begun_before` (the rest are dropped:
        they were recorded after the moment that ends the turn)."""
        with self._lock:
            blocks, self._blocks = self._blocks, []
        block_s = self.block_ms / 1000
        return [b for b in blocks if b.t - block_s < begun_before]


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
    def __init__(
        self,
        audio: AudioSection,
        post: Callable[[ev.Event], None],
        volume_pct: Callable[[], int],
    ) -> None:
        self.audio = audio
        self._post = post
        self._volume_pct = volume_pct
        self.mic: Microphone | None = None
        self.speaker: Speaker | None = None
        self._worker: threading.Thread | None = None
        self._closing = False
        self.batcher = MicBatcher(post, audio.block_ms)

    def open(self) -> tuple[Microphone, Speaker]:
        """Open and start both; raises AudioDeviceError naming what is missing."""
        a = self.audio
        self.batcher = MicBatcher(self._post, a.block_ms)  # block_ms may have been reloaded
        mic, speaker = open_audio(
            a.input_device,
            a.output_device,
            block_ms=a.block_ms,
            on_mic_block=self.batcher,
            on_speaker_event=lambda kind, t: self._post(ev.SpeakerEvent(kind, t)),
            volume=to_gain(self._volume_pct()),
        )
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
