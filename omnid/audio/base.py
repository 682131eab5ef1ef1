"""The audio interfaces and the pieces every backend shares.

The conversation thread codes against `Microphone` and `Speaker` only; a backend (PortAudio, `wav:`)
supplies the thread that moves samples and calls `_deliver` (capture) or `_render` (playback) from
it. Everything that must behave identically on a sound card and in a test file lives here: the
wire rates, re-blocking of resampled capture to exact `block_ms` blocks, the bounded playback
buffer, volume, flush (barge-in) and the started/drained events. Keeping it in one place is what
lets the `wav:` backend stand in for a sound card in timing tests without testing something else.
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt
import soxr

from omnid.models import WIRE_INPUT_RATE, WIRE_OUTPUT_RATE

log = logging.getLogger(__name__)

WIRE_IN = WIRE_INPUT_RATE
WIRE_OUT = WIRE_OUTPUT_RATE
QUEUE_SECONDS = 120.0
"""Playback queue bound. The service streams answers faster than real time, so a long answer is
mostly queued here; 120 s holds any answer we have seen while capping memory (≈11 MB at 48 kHz,
used only while that much is queued)."""

# Capture is resampled with soxr's HQ filter: the model's speech recognition is what hears it, and
# the cost is ~5 µs per 20 ms block. Playback uses LQ: it is still a proper polyphase filter, but
# its delay is ~2.5 ms instead of ~30 ms, so the tail of an answer is not held back in the
# resampler (see `Speaker.play(last=...)`) and a flush leaves little to drop.
STANDBY_AFTER_S = 2.0
"""A speaker that has had nothing to play for this long stops moving blocks (a sound card's
stream is stopped, the `wav:` clock leaves it out) until the next `play()`: while nothing plays,
nothing needs waking 50 times a second. Long enough that the pauses inside an answer (between
its deltas, before a function call's result) do not stop and start the device."""

MIC_RESAMPLE_QUALITY = "HQ"
SPEAKER_RESAMPLE_QUALITY = "LQ"

Int16Array = npt.NDArray[np.int16]
MicCallback = Callable[[Int16Array, float], None]
SpeakerEventCallback = Callable[[str, float], None]


class AudioDeviceError(Exception):
    """A device could not be found, negotiated, opened or started; the message says which, why,
    and (when the name did not match) which devices exist."""


class PlaybackQueue:
    """Bounded int16 FIFO between one writer thread and the audio callback.

    Why a queue of chunks and not a preallocated ring: a ring sized for the longest answer (two
    minutes) costs its full size in memory once answers have passed through every part of it,
    page by page over hours, which reads as a leak on a 512 MB board. Chunks cost what is queued
    and go back when played. Why not `queue.Queue`: the callback must fill exactly `frames`
    samples from chunks of any size, and `clear()` must make the very next read come back empty
    (barge-in). The lock is held for index arithmetic and the copies of one block, so the audio
    thread never waits for more than a few microseconds.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"playback queue capacity must be positive, not {capacity}")
        self._cap = capacity
        self._chunks: deque[Int16Array] = deque()
        self._offset = 0  # samples of _chunks[0] already read
        self._available = 0
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def available(self) -> int:
        """Samples written and not yet read."""
        return self._available

    def write(self, data: Int16Array) -> int:
        """Append as much of `data` as fits; return how many samples were taken (the rest is
        dropped: a bounded buffer must refuse rather than grow without limit)."""
        chunk = np.array(data, dtype=np.int16)  # our own copy, made outside the lock
        with self._lock:
            n = min(len(chunk), self._cap - self._available)
            if n:
                self._chunks.append(chunk[:n])
                self._available += n
        return n

    def read_into(self, out: Int16Array) -> int:
        """Move up to `len(out)` samples into `out`; return how many. Never blocks for long."""
        filled = 0
        with self._lock:
            while filled < len(out) and self._chunks:
                chunk = self._chunks[0]
                take = min(len(chunk) - self._offset, len(out) - filled)
                out[filled : filled + take] = chunk[self._offset : self._offset + take]
                filled += take
                self._offset += take
                if self._offset == len(chunk):
                    self._chunks.popleft()
                    self._offset = 0
            self._available -= filled
        return filled

    def clear(self) -> int:
        """Drop everything queued; return how many samples were dropped."""
        with self._lock:
            dropped = self._available
            self._chunks.clear()
            self._offset = self._available = 0
        return dropped


class _Closable(ABC):
    """start/close plus the context-manager sugar both directions share."""

    name: str
    device_rate: int

    @abstractmethod
    def start(self) -> None:
        """Begin moving samples. Idempotent."""

    @abstractmethod
    def close(self) -> None:
        """Stop at once (abort, not drain) and release the device. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} @ {self.device_rate} Hz>"


class Microphone(_Closable):
    """Capture: delivers int16 mono blocks of exactly `block_ms` at 16 kHz to `on_mic_block`.

    The backend's audio thread calls `_deliver` with device-rate mono samples. Without resampling
    one device block is one delivered block. With resampling, soxr's output comes in bursts (its
    HQ filter works on ~1000-sample frames: 0, 490, 0, 489, … samples per 960 in at 48 kHz), so
    blocks are re-cut to exactly `block_n` samples: a device callback then delivers 0, 1 or 2
    blocks, never a ragged one. `on_mic_block` runs on the audio thread and must only enqueue.
    """

    def __init__(
        self, name: str, device_rate: int, *, block_ms: int, on_mic_block: MicCallback
    ) -> None:
        if block_ms <= 0:
            raise ValueError(f"block_ms must be positive, not {block_ms}")
        self.name = name
        self.device_rate = device_rate
        self.block_ms = block_ms
        self.block_n = WIRE_IN * block_ms // 1000
        self.last_block_t = 0.0
        """monotonic time of the last delivered block; set to the start time by start(), so a
        watchdog measures silence from then, not from the epoch."""
        self.blocks_delivered = 0
        self._on_mic_block = on_mic_block
        self._callback_errors = 0
        # Owned by the audio thread: only `_deliver` touches these.
        self._resampler: soxr.ResampleStream | None = None
        if device_rate != WIRE_IN:
            self._resampler = soxr.ResampleStream(
                device_rate, WIRE_IN, 1, dtype="int16", quality=MIC_RESAMPLE_QUALITY
            )
        self._acc = np.zeros(4 * self.block_n, dtype=np.int16)
        self._acc_n = 0

    @abstractmethod
    def suspend(self) -> None:
        """Stop capturing until `resume()`, and return at once. Nothing is delivered meanwhile
        and nothing is kept: what is said while the microphone sleeps is not recorded, as with
        a sound card whose stream is stopped. Idempotent."""

    @abstractmethod
    def resume(self) -> None:
        """Capture again after `suspend()`, and return at once (a sound card's stream is
        started on a thread of the backend's). Idempotent."""

    def _deliver(self, samples: Int16Array, t: float) -> None:
        """Audio thread: take one device block (mono, device rate; may be a view the backend
        reuses), resample, re-block, and hand each full 16 kHz block to `on_mic_block`."""
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(np.ascontiguousarray(samples))
        n = len(samples)
        if self._acc_n == 0 and n == self.block_n:
            self._emit(samples.copy(), t)
            return
        end = self._acc_n + n
        if end > len(self._acc):  # only if a device hands us oversized blocks
            grown = np.zeros(2 * end, dtype=np.int16)
            grown[: self._acc_n] = self._acc[: self._acc_n]
            self._acc = grown
        self._acc[self._acc_n : end] = samples
        off = 0
        while end - off >= self.block_n:
            self._emit(self._acc[off : off + self.block_n].copy(), t)
            off += self.block_n
        rest = end - off
        if off and rest:
            self._acc[:rest] = self._acc[off:end]
        self._acc_n = rest

    def _emit(self, block: Int16Array, t: float) -> None:
        self.last_block_t = t
        self.blocks_delivered += 1
        try:
            self._on_mic_block(block, t)
        except Exception:
            # A raising callback would otherwise stop the stream (sounddevice aborts on an
            # exception): a deaf daemon is worse than a dropped block. Log the first one only,
            # this runs 50 times a second.
            self._callback_errors += 1
            if self._callback_errors == 1:
                log.exception("on_mic_block raised (further errors are counted, not logged)")


class Speaker(_Closable):
    """Playback: `play()` queues 24 kHz int16 mono; the backend's audio thread pulls with `_render`.

    `play`/`flush` run on the caller's (conversation) thread, which owns the 24 kHz → device-rate
    soxr stream; `_render` runs on the audio thread and only copies out of the playback queue, so
    the two meet only inside `PlaybackQueue`'s short lock.
    """

    def __init__(
        self,
        name: str,
        device_rate: int,
        *,
        on_speaker_event: SpeakerEventCallback | None = None,
        volume: float = 1.0,
        queue_seconds: float = QUEUE_SECONDS,
    ) -> None:
        self.name = name
        self.device_rate = device_rate
        self.volume = volume
        self.dropped_samples = 0
        self._on_event = on_speaker_event
        self._queue = PlaybackQueue(int(device_rate * queue_seconds))
        self._resampler: soxr.ResampleStream | None = None
        if device_rate != WIRE_OUT:
            self._resampler = soxr.ResampleStream(
                WIRE_OUT, device_rate, 1, dtype="int16", quality=SPEAKER_RESAMPLE_QUALITY
            )
        self.standby_after_s: float | None = STANDBY_AFTER_S  # None: never stand by
        self._standby_lock = threading.Lock()
        self._parked = False  # standing by: the backend moves no blocks until the next play()
        # Owned by the audio thread.
        self._playing = False
        self._quiet_since: float | None = None
        self._mono = np.zeros(0, dtype=np.int16)
        self._scaled = np.zeros(0, dtype=np.float32)

    @property
    def volume(self) -> float:
        """0.0–1.0; read by the audio thread once per block, so a change applies to the next one."""
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        value = float(value)
        if math.isnan(value):
            raise ValueError("volume must be a number between 0.0 and 1.0")
        self._volume = min(1.0, max(0.0, value))

    @property
    def queued_s(self) -> float:
        """Seconds queued and not yet handed to the device."""
        return self._queue.available / self.device_rate

    def play(self, pcm: Int16Array, *, last: bool = False) -> None:
        """Queue int16 mono 24 kHz samples behind what is already queued.

        `last=True` (optional; at the end of an answer) also pushes out the resampler's tail, the
        last few ms it holds back for its filter. Without it that tail plays before the next
        `play()`. No effect when the device runs at 24 kHz.
        """
        pcm = np.asarray(pcm)
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"play() takes 1-D int16 samples, not {pcm.dtype} {pcm.shape}")
        if self._resampler is not None:
            pcm = self._resampler.resample_chunk(pcm, last=last)
            if last:
                self._resampler.clear()
        if not len(pcm):
            return
        taken = self._queue.write(pcm)
        self._wake_up()
        if taken < len(pcm):
            if not self.dropped_samples:
                log.warning(
                    "%s: playback queue full (%.0f s); dropping audio", self.name, QUEUE_SECONDS
                )
            self.dropped_samples += len(pcm) - taken

    def flush(self) -> None:
        """Barge-in: drop everything queued, and stop what the device holds (`_cut`): silent
        now, whatever the block size."""
        self._queue.clear()
        if self._resampler is not None:
            self._resampler.clear()
        self._cut()

    def _cut(self) -> None:
        """Backend: silence what has already been handed to the device. Without one, a block
        already handed over (at most one) still plays out."""

    @property
    def standing_by(self) -> bool:
        return self._parked

    def _park(self) -> None:
        """Backend: stop moving blocks, and return at once (called under `_standby_lock`)."""

    def _unpark(self) -> None:
        """Backend: move blocks again, and return at once (called under `_standby_lock`)."""

    def _stand_by(self) -> None:
        with self._standby_lock:
            if self._parked or self._queue.available:
                return  # already, or play() queued something since the callback looked
            self._parked = True
            self._park()

    def _wake_up(self) -> None:
        with self._standby_lock:
            if not self._parked:
                return
            self._parked = False
            self._unpark()

    def _render(self, out: Int16Array, t: float, first_t: float | None = None) -> None:
        """Audio thread: fill `out` (shape (frames, channels)) from the playback queue, silence on
        underrun, volume applied in float and clipped so nothing wraps; emit started (at
        `first_t`, when the backend knows the first sample's time better) and drained (at `t`)."""
        if not self._playing and not self._queue.available:
            out.fill(0)  # the usual case while nothing plays: skip the rest
            if self._quiet_since is None:
                self._quiet_since = t
            elif self.standby_after_s is not None and t - self._quiet_since >= self.standby_after_s:
                self._quiet_since = None
                self._stand_by()
            return
        self._quiet_since = None
        frames = out.shape[0]
        if len(self._mono) < frames:
            self._mono = np.zeros(frames, dtype=np.int16)
            self._scaled = np.zeros(frames, dtype=np.float32)
        mono = self._mono[:frames]
        n = self._queue.read_into(mono)
        mono[n:] = 0
        volume = self._volume
        if n and volume != 1.0:
            scaled = self._scaled[:frames]
            np.multiply(mono, volume, out=scaled)
            np.rint(scaled, out=scaled)
            np.clip(scaled, -32768, 32767, out=scaled)
            mono[:] = scaled
        out[:] = mono[:, np.newaxis]
        if n and not self._playing:
            self._playing = True
            self._event("started", t if first_t is None else first_t)
        if self._playing and self._queue.available == 0:
            self._playing = False
            self._event("drained", t)

    def _event(self, kind: str, t: float) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(kind, t)
        except Exception:
            log.exception("on_speaker_event(%r) raised", kind)


def output_block(block_ms: int) -> int:
    """The speaker's block for an audio block of `block_ms`: never over 20 ms.

    What has been handed to a device still plays where the device cannot drop it, and the
    first sample of an answer waits for the next block: both stay within one 20 ms block
    whatever the microphone's block. A speaker costs its wake-ups only while it plays (it
    stands by otherwise), so the small block is cheap. A whole divisor of `block_ms`, so one
    clock can run both."""
    if block_ms <= 20:
        return block_ms
    return 20 if block_ms % 20 == 0 else 10
