"""`wav:PATH` devices: a WAV file as microphone or speaker, paced in real time by our own clock.

Why real time rather than as fast as possible: everything downstream (the service's VAD, the
conversation's timers, barge-in) is about time, so `omnid demo`, timing tests and benchmarks need
the same pacing a sound card gives, without one.

- Input: the file (any rate and channel count of 16-bit PCM; read as it plays when it is 16 kHz
  mono, else converted at open) is delivered one `block_ms` block per tick from start(), then
  silence forever.
- Output: every tick pulls one block through the same playback queue/volume/event logic as a sound
  card and appends it to a 24 kHz mono 16-bit WAV: a continuous timeline, silence included. The
  header is rewritten at least once a second and at close, so a killed process leaves a readable
  file.
- Clock: a thread on an absolute schedule (tick n at t0 + n·block, never drifting; after a stall it
  catches up rather than skipping). When both devices are `wav:` they share one clock, and each
  tick delivers the input block *then* pulls the output block. So output sample i is played at
  input time i/24000 s: a reaction to input block k made within the tick lands at output block k,
  and the test reads latency and barge-in straight off the output file. The clock starts with the
  first start(); a speaker started some ticks later first writes that much silence, so the file
  still starts at the clock's t0 (start the microphone first, as the daemon does: an input
  started late plays its file from then).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import wave
from pathlib import Path
from typing import Protocol

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

log = logging.getLogger(__name__)

PREFIX = "wav:"
_HEADER_BYTES = 44
_MAX_DATA_BYTES = 0xFFFFFFFF - 36


class _Member(Protocol):
    def _tick(self, t: float) -> None: ...


class WavClock:
    """The ticker: calls the input's then the output's `_tick(t)` every `block_ms`.

    `t` is the tick's scheduled monotonic time (the moment the block's capture ended), so
    timestamps are exact even when the thread wakes late. The members run under `_lock`, so
    `leave()` (from close()) waits for a tick in progress and never races a file write.
    """

    def __init__(self, block_ms: int) -> None:
        self.block_s = block_ms / 1000
        self.ticks = 0
        self._lock = threading.RLock()
        self._input: _Member | None = None
        self._output: _Member | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def join(self, member: _Member, role: str) -> int:
        """Attach a started member; start the clock if needed. Returns ticks already elapsed."""
        with self._lock:
            if role == "input":
                self._input = member
            else:
                self._output = member
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="omnid-wav-clock"
                )
                self._thread.daemon = True
                self._thread.start()
            return self.ticks

    def leave(self, member: _Member) -> None:
        """Detach; stop the clock when nothing is attached."""
        with self._lock:
            if self._input is member:
                self._input = None
            if self._output is member:
                self._output = None
            idle = self._input is None and self._output is None
            thread = self._thread
        if idle and thread is not None:
            self._stop.set()
            if thread is not threading.current_thread():
                thread.join()
            with self._lock:  # a later start() gets a fresh clock
                if self._thread is thread:
                    self._thread, self._stop, self.ticks = None, threading.Event(), 0

    def _run(self, stop: threading.Event) -> None:
        t0 = time.monotonic()
        n = 0
        while True:
            n += 1
            target = t0 + n * self.block_s
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # a third cheaper than Event.wait; stop waits ≤ one block
            if stop.is_set():
                return
            with self._lock:
                self.ticks = n
                if self._input is not None:
                    self._input._tick(target)
                if self._output is not None:
                    self._output._tick(target)


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
        self._silence = np.zeros(self.block_n, dtype=np.int16)
        self._ahead = self._silence[:0]  # read-ahead of the file, whole blocks
        self._ahead_at = 0
        self._state = "open"

    @property
    def ended(self) -> bool:
        """True once the whole file has been delivered (silence follows)."""
        return self._pos >= self._frames

    def _tick(self, t: float) -> None:
        block = self._next() if self._pos < self._frames else self._silence
        if len(block) < self.block_n:
            padded = self._silence.copy()
            padded[: len(block)] = block
            block = padded
        self._pos += self.block_n
        self._deliver(block, t)

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
            self._clock.join(self, "input")

    def close(self) -> None:
        if self._state != "closed":
            self._state = "closed"
            self._clock.leave(self)  # waits for a tick in progress
            if self._reader is not None:
                self._reader.close()


class WavSpeaker(Speaker):
    """Writes what is played to a 24 kHz mono WAV, one block per tick (see module docstring)."""

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
        self._block = np.zeros((self.block_n, 1), dtype=np.int16)
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

    def _tick(self, t: float) -> None:
        self._render(self._block, t)
        self._append(self._block.data.cast("B"))

    def start(self) -> None:
        if self._state == "closed":
            raise AudioDeviceError(f"{self.name}: start() after close()")
        if self._state == "open":
            self._state = "started"
            with self._clock._lock:  # no tick between counting and joining
                silence = bytes(2 * self.block_n)
                for _ in range(self._clock.join(self, "output")):
                    self._append(silence)

    def close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        self._clock.leave(self)
        self._patch_header()
        os.close(self._fd)
