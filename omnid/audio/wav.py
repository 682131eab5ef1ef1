"""`wav:PATH` devices: a WAV file as microphone or speaker, paced in real time by our own clock.

Why real time rather than as fast as possible: everything downstream (the service's VAD, the
conversation's timers, barge-in) is about time, so `omnid demo`, timing tests and benchmarks need
the same pacing a sound card gives, without one.

- Input: the file (any rate and channel count of 16-bit PCM; read as it plays when it is 16 kHz
  mono, else converted at open) is delivered one `block_ms` block per input tick from start(),
  then silence forever.
- Output: every tick pulls what has played since the last one (a speaker block, or an input
  block's worth while the speaker stands by) through the same playback queue/volume/event logic
  as a sound card and appends it to a 24 kHz mono 16-bit WAV: a continuous timeline, silence
  included. The header is rewritten at least once a second and at close, so a killed process
  leaves a readable file.
- Clock: a `WavClock` (`omnid.audio.wav_clock`), shared when both devices are `wav:`: sample i
  of the output file plays at i/24000 s after the clock's t0, as the input's sample j was heard
  at j/16000 s after its start. Audio queued while
  nothing plays starts at the moment it was queued, and a flush cuts at the moment of the flush,
  to the sample: so a test reads latency and barge-in straight off the output file, and what it
  reads is what a sound card started and aborted on demand would play. The clock starts with
  the first start(); a speaker started later first writes that much silence, so the file still
  starts at the clock's t0 (start the microphone first, as the daemon does: an input started
  late plays its file from then).
"""

from __future__ import annotations

import logging
import os
import struct
import time
import wave
from pathlib import Path

import numpy as np
import soxr

from omnid.audio.base import (
    WIRE_IN,
    WIRE_OUT,
    AudioDeviceError,
    Int16Array,
    MicCallback,
    Microphone,
    Speaker,
    SpeakerEventCallback,
)
from omnid.audio.wav_clock import WavClock

log = logging.getLogger(__name__)

PREFIX = "wav:"
_HEADER_BYTES = 44
_MAX_DATA_BYTES = 0xFFFFFFFF - 36


def _path(spec: str) -> Path:
    path = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    if not path:
        raise AudioDeviceError(f"device {spec!r}: no file name after {PREFIX!r}")
    return Path(path).expanduser()


def _open_native(path: Path) -> wave.Wave_read | None:
    """The file open for reading if it is already 16-bit mono at 16 kHz, else None."""
    try:
        w = wave.open(str(path), "rb")  # noqa: SIM115 (kept open: the microphone reads it)
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioDeviceError(f"input device 'wav:{path}': cannot read: {exc}") from None
    if (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, WIRE_IN):
        return w
    w.close()
    return None


def read_wav_16k(path: Path) -> Int16Array:
    """A 16-bit PCM WAV of any rate and channel count, as 16 kHz mono int16 (channels averaged)."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioDeviceError(f"input device 'wav:{path}': cannot read: {exc}") from None
    if width != 2:
        raise AudioDeviceError(
            f"input device 'wav:{path}': {8 * width}-bit samples; only 16-bit PCM is supported"
        )
    frames = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
    if channels == 1 and rate == WIRE_IN:
        return frames[:, 0].astype(np.int16)
    mono = frames.mean(axis=1, dtype=np.float32)
    if rate != WIRE_IN:
        mono = soxr.resample(mono, rate, WIRE_IN, quality="HQ")
    return np.clip(np.rint(mono), -32768, 32767).astype(np.int16)


def wav_header(data_bytes: int, rate: int = WIRE_OUT) -> bytes:
    """RIFF/WAVE header for 16-bit mono PCM with `data_bytes` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        rate,
        rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


class WavMicrophone(Microphone):
    """Plays a WAV file into `on_mic_block` from start(), then silence (see module docstring).

    A 16 kHz mono file (what the demo, tests and benchmarks use) is read as it plays, a second
    ahead, so an hour-long recording costs no memory; any other file is converted whole at open.
    """

    def __init__(
        self, spec: str, *, block_ms: int, on_mic_block: MicCallback, clock: WavClock
    ) -> None:
        path = _path(spec)
        self._reader: wave.Wave_read | None = _open_native(path)
        self.samples: Int16Array | None = None  # the converted file, when not read as it plays
        if self._reader is not None:
            self._frames = self._reader.getnframes()
        else:
            self.samples = read_wav_16k(path)
            self._frames = len(self.samples)
        super().__init__(f"{PREFIX}{path}", WIRE_IN, block_ms=block_ms, on_mic_block=on_mic_block)
        self._clock = clock
        self._pos = 0
        self._first_n = 0  # the clock's step of this microphone's first block
        self._silence = np.zeros(self.block_n, dtype=np.int16)
        self._ahead = self._silence[:0]  # read-ahead of the file, whole blocks
        self._ahead_at = 0
        self._state = "open"

    @property
    def ended(self) -> bool:
        """True once the whole file has been delivered (silence follows)."""
        return self._pos >= self._frames

    def _tick(self, t: float) -> None:
        clock = self._clock
        self._skip_to((clock.ticks - self._first_n) // clock.every * self.block_n)
        block = self._next() if self._pos < self._frames else self._silence
        if len(block) < self.block_n:
            padded = self._silence.copy()
            padded[: len(block)] = block
            block = padded
        self._pos += self.block_n
        self._deliver(block, t)

    def _skip_to(self, pos: int) -> None:
        """After a pause, on to where the file has got to meanwhile (a room goes on talking)."""
        if pos <= self._pos:
            return
        self._pos = pos
        if self._reader is not None and pos < self._frames:
            try:
                self._reader.setpos(pos)
            except (OSError, EOFError, wave.Error) as exc:
                log.error("%s: cannot seek (%s): silence from here", self.name, exc)
                self._frames = self._pos
            self._ahead, self._ahead_at = self._silence[:0], 0

    def _next(self) -> Int16Array:
        if self.samples is not None:
            return self.samples[self._pos : self._pos + self.block_n]
        assert self._reader is not None
        if self._ahead_at >= len(self._ahead):  # read a second at a time: one read per 50 ticks
            try:
                raw = self._reader.readframes(self.block_n * max(1, 1000 // self.block_ms))
            except (OSError, EOFError, wave.Error) as exc:  # the file was cut short under us
                log.error("%s: cannot read further (%s): silence from here", self.name, exc)
                self._frames = self._pos
                return self._silence
            self._ahead = np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)
            self._ahead_at = 0
        block = self._ahead[self._ahead_at : self._ahead_at + self.block_n]
        self._ahead_at += self.block_n
        return block

    def start(self) -> None:
        if self._state == "closed":
            raise AudioDeviceError(f"{self.name}: start() after close()")
        if self._state == "open":
            self._state = "started"
            self.last_block_t = time.monotonic()
            every = self._clock.every
            self._first_n = (self._clock.join(self, "input") // every + 1) * every

    def suspend(self) -> None:
        if self._state == "started":
            self._state = "suspended"
            self._clock.pause(self)

    def resume(self) -> None:
        if self._state == "suspended":
            self._state = "started"
            self.last_block_t = time.monotonic()
            self._clock.resume(self)

    def close(self) -> None:
        if self._state != "closed":
            self._state = "closed"
            self._clock.leave(self)  # waits for a tick in progress
            if self._reader is not None:
                self._reader.close()


class WavSpeaker(Speaker):
    """Writes what is played to a 24 kHz mono WAV, up to each tick's time (module docstring).

    Two moments are kept to the sample, so that the file shows what a sound card with its
    stream started and aborted on demand would play, whatever the block size: audio queued while
    nothing plays starts at the moment it was queued, and a flush cuts the sound at the moment
    of the flush (what was queued up to then plays; nothing after it). With nothing to play the
    speaker stands by (the clock need not step for it) and writes the silence in bigger pieces.
    """

    def __init__(
        self,
        spec: str,
        *,
        block_ms: int,
        clock: WavClock,
        on_speaker_event: SpeakerEventCallback | None = None,
        volume: float = 1.0,
    ) -> None:
        path = _path(spec)
        super().__init__(
            f"{PREFIX}{path}", WIRE_OUT, on_speaker_event=on_speaker_event, volume=volume
        )
        self.path = path
        self.block_n = WIRE_OUT * block_ms // 1000
        self._clock = clock
        # One tick renders up to an input block's worth (the step while it stands by; the first
        # tick after play() may still be on that step): more only after a gap, which is silence.
        self._span = self.block_n * clock.every
        self._block = np.zeros((self._span, 1), dtype=np.int16)
        self._written = 0  # samples in the file: sample i plays at t0 + i/24000
        self._start_at: int | None = None  # audio queued while idle begins at this sample
        self._cut_at: int | None = None  # a flush: silent from this sample
        self._data_bytes = 0
        self._header_bytes = 0  # data size the header on disk states
        self._write_failed = False
        self._state = "open"
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(self._fd, wav_header(0))
        except OSError as exc:
            raise AudioDeviceError(f"output device {spec!r}: cannot write: {exc}") from None

    def _append(self, data: bytes | memoryview) -> None:
        if self._write_failed:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            # Keep ticking: the shared clock also feeds the microphone.
            self._write_failed = True
            log.error("%s: write failed, output no longer recorded: %s", self.name, exc)
            return
        self._data_bytes += len(data)
        if self._data_bytes - self._header_bytes >= 2 * WIRE_OUT:  # once per second of audio
            self._patch_header()

    def _patch_header(self) -> None:
        size = min(self._data_bytes, _MAX_DATA_BYTES)
        try:
            os.pwrite(self._fd, struct.pack("<I", 36 + size), 4)
            os.pwrite(self._fd, struct.pack("<I", size), 40)
        except OSError as exc:
            log.error("%s: cannot update the WAV header: %s", self.name, exc)
        self._header_bytes = self._data_bytes

    def _sample(self, t: float) -> int:
        return round((t - self._clock.t0) * WIRE_OUT)

    def _silence_until(self, end: int) -> None:
        """Pad the file with silence up to sample `end` (a second at a time)."""
        while self._written < end:
            n = min(end - self._written, WIRE_OUT)
            self._append(bytes(2 * n))
            self._written += n

    def _tick(self, t: float) -> None:
        end = self._sample(t)
        self._silence_until(end - self._span)  # what it sat out, if it sat anything out
        begin = self._written
        n = end - begin
        if n <= 0:
            return
        block = self._block[:n]
        lo, hi = begin, end
        if self._start_at is not None:
            lo = min(end, max(begin, self._start_at))
            if self._start_at < end:
                self._start_at = None
        if self._cut_at is not None:
            hi, self._cut_at = min(end, max(lo, self._cut_at)), None
        block[: lo - begin] = 0
        block[hi - begin :] = 0
        if lo < hi:
            t0 = self._clock.t0
            self._render(block[lo - begin : hi - begin], t0 + hi / WIRE_OUT, t0 + lo / WIRE_OUT)
        self._append(block.data.cast("B"))
        self._written = end

    def play(self, pcm: Int16Array, *, last: bool = False) -> None:
        with self._clock.lock:  # the clock's lock first, as on the tick: one order, no deadlock
            idle = not self._playing and not self._queue.available
            super().play(pcm, last=last)
            if idle and self._queue.available:
                self._start_at = self._sample(self._clock.now())

    def flush(self) -> None:
        with self._clock.lock:
            cut = max(self._written, self._sample(self._clock.now()))
            lo = self._written if self._start_at is None else max(self._written, self._start_at)
            head = np.zeros(max(0, cut - lo), dtype=np.int16)
            if self._playing or self._start_at is not None:
                head = head[: self._queue.read_into(head)]  # played before the flush came
            super().flush()
            if len(head):
                self._queue.write(head)
                self._cut_at = lo + len(head)
            else:
                self._start_at = None

    def _park(self) -> None:
        self._clock.pause(self)

    def _unpark(self) -> None:
        self._clock.resume(self)

    def start(self) -> None:
        if self._state == "closed":
            raise AudioDeviceError(f"{self.name}: start() after close()")
        if self._state == "open":
            self._state = "started"
            with self._clock.lock:  # no tick between joining and catching up
                self._clock.join(self, "output")
                self._silence_until(self._sample(self._clock.last_t))

    def close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        with self._clock.lock:  # the time it stood by is silence, up to the last whole step
            if self._clock.t0:
                step = round(self._clock.step_s * WIRE_OUT)
                self._silence_until(self._sample(self._clock.now()) // step * step)
        self._clock.leave(self)
        self._patch_header()
        os.close(self._fd)
