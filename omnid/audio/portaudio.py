"""Sound cards through PortAudio (python-sounddevice).

Imported only when a non-`wav:` device is asked for: sounddevice loads libportaudio at import, and
`omnid demo` must run on a machine without it.

Devices are named as sounddevice matches them (an ALSA name or a unique substring of
"name, host API"), by index, or "default". Each direction negotiates a rate: the wire rate first
(no resampling), then the rates USB and HAT devices commonly accept; mono first, then stereo for
devices that only open two channels (capture keeps the first channel, playback duplicates).

The streams are sounddevice's raw ones: the callbacks get PortAudio's buffers as bytes and shape
the int16 views here. sounddevice's NumPy streams build each callback's array by assigning to
`ndarray.shape`, which NumPy 2.5 deprecates and a later NumPy removes; in the audio callback that
would stop capture and playback the day the removal lands, so nothing here depends on it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import sounddevice as sd

from omnid.audio.base import (
    WIRE_IN,
    WIRE_OUT,
    AudioDeviceError,
    MicCallback,
    Microphone,
    Speaker,
    SpeakerEventCallback,
)

log = logging.getLogger(__name__)

Kind = Literal["input", "output"]
INPUT_RATES: tuple[int, ...] = (WIRE_IN, 48_000, 44_100, 24_000)
OUTPUT_RATES: tuple[int, ...] = (WIRE_OUT, 48_000, 44_100, 16_000)
LISTED_RATES: tuple[int, ...] = (16_000, 24_000, 44_100, 48_000)
PaBuffer = Any
"""What a raw stream's callback gets: a cffi buffer over PortAudio's memory, valid only during the
callback (NumPy's stubs do not know the type, which is why it is `Any`)."""
_CHANNELS_KEY = {"input": "max_input_channels", "output": "max_output_channels"}


def _available(kind: Kind) -> str:
    """One line per device that can do `kind`, for error messages."""
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as exc:
        return f"(cannot list devices: {exc})"
    names = [f"{d['index']}: {d['name']!r}" for d in devices if d[_CHANNELS_KEY[kind]] > 0]
    return "; ".join(names) if names else "none"


def resolve_device(spec: str, kind: Kind) -> dict[str, Any]:
    """Turn a configured name into sounddevice's device dict, or say what exists instead."""
    spec = spec.strip()
    try:
        if spec in ("", "default"):
            info = sd.query_devices(kind=kind)  # PortAudio's default for this direction
        elif spec.isdigit():
            info = sd.query_devices(int(spec))
        else:
            info = sd.query_devices(spec, kind=kind)
    except (ValueError, sd.PortAudioError) as exc:
        raise AudioDeviceError(
            f"{kind} device {spec!r}: {exc}; available {kind} devices: {_available(kind)}"
        ) from None
    if info[_CHANNELS_KEY[kind]] < 1:
        raise AudioDeviceError(
            f"{kind} device {spec!r} ({info['name']}) has no {kind} channels; available "
            f"{kind} devices: {_available(kind)}"
        )
    return dict(info)


def negotiate(
    check: Callable[..., None], device: int, rates: Sequence[int], max_channels: int
) -> tuple[int, int]:
    """First (rate, channels) that `check` (sd.check_input_settings / check_output_settings)
    accepts, rates in preference order, mono before stereo at each rate: a stereo device at the
    wire rate is cheaper than mono at a rate that needs resampling."""
    channel_options = (1, 2) if max_channels >= 2 else (1,)
    refusals = []
    for rate in rates:
        for channels in channel_options:
            try:
                check(device=device, samplerate=rate, channels=channels, dtype="int16")
            except (ValueError, sd.PortAudioError) as exc:
                refusals.append(f"{rate} Hz×{channels}: {exc}")
                continue
            return rate, channels
    raise AudioDeviceError("no usable rate/channels (" + "; ".join(refusals) + ")")


def _open(kind: Kind, spec: str, rates: Sequence[int]) -> tuple[dict[str, Any], int, int]:
    info = resolve_device(spec, kind)
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        rate, channels = negotiate(check, info["index"], rates, info[_CHANNELS_KEY[kind]])
    except AudioDeviceError as exc:
        raise AudioDeviceError(f"{kind} device {spec!r} ({info['name']}): {exc}") from None
    return info, rate, channels


class _StreamOwner:
    """start/close shared by both directions: start once, close idempotently with abort(); and
    stopping and starting again on demand (a microphone nobody needs, a speaker with nothing to
    play), on a thread of its own: PortAudio's stop and start wait on the device, and they are
    asked for by the conversation's thread and the audio callback, neither of which may wait."""

    _stream: Any
    name: str

    on_lost: Callable[[str], None] | None = None
    """Called (from PortAudio's thread; must only enqueue) when the stream stops on its own —
    a device unplugged or failing — as opposed to our close() or a stop we asked for."""

    def _init_stream(self, make: Callable[[], Any], kind: Kind, spec: str) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._ours = False  # a stop we asked for is under way: not a lost device
        self._wanted: queue.SimpleQueue[bool | None] = queue.SimpleQueue()
        self._control: threading.Thread | None = None
        try:
            self._stream = make()
        except (ValueError, sd.PortAudioError) as exc:
            raise AudioDeviceError(f"{kind} device {spec!r} ({self.name}): {exc}") from None

    def _start_stream(self) -> None:
        with self._lock:
            if self._closed:
                raise AudioDeviceError(f"{self.name}: start() after close()")
            if self._started:
                return
            try:
                self._stream.start()
            except sd.PortAudioError as exc:
                raise AudioDeviceError(f"{self.name}: cannot start: {exc}") from None
            self._started = True

    def _request(self, running: bool) -> None:
        """Have the stream started or stopped, in the order asked; returns at once."""
        if self._control is None:
            self._control = threading.Thread(
                target=self._control_loop, name=f"omnid-pa-{self.name}", daemon=True
            )
            self._control.start()
        self._wanted.put(running)

    def _control_loop(self) -> None:
        while (running := self._wanted.get()) is not None:
            with self._lock:
                if self._closed or not self._started:
                    return
                try:
                    if running and not self._stream.active:
                        self._stream.start()
                    elif not running and self._stream.active:
                        self._ours = True
                        try:
                            self._stream.abort()  # drops what the device holds: silent now
                        finally:
                            self._ours = False
                        self._stopped(time.monotonic())
                except sd.PortAudioError as exc:
                    if self.on_lost is not None:
                        self.on_lost(f"{self.name}: cannot {'start' if running else 'stop'}: {exc}")

    def _stopped(self, t: float) -> None:
        """The stream was stopped on request (the callback no longer runs)."""

    def _finished(self) -> None:
        if not self._closed and not self._ours and self.on_lost is not None:
            self.on_lost(f"{self.name}: the stream stopped")

    def lose(self) -> None:
        """Stop the stream the way a failing device does (test hook: the real finished path)."""
        self._stream.abort(ignore_errors=True)

    def _close_stream(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wanted.put(None)
            try:
                self._stream.abort(ignore_errors=True)
            finally:
                self._stream.close(ignore_errors=True)


class PortAudioMicrophone(_StreamOwner, Microphone):
    """Capture from a PortAudio device (see `Microphone`)."""

    def __init__(
        self,
        spec: str,
        *,
        block_ms: int,
        on_mic_block: MicCallback,
        rates: Sequence[int] = INPUT_RATES,
    ) -> None:
        info, rate, channels = _open("input", spec, rates)
        Microphone.__init__(self, info["name"], rate, block_ms=block_ms, on_mic_block=on_mic_block)
        self.channels = channels
        self.overflows = 0
        self._init_stream(
            lambda: sd.RawInputStream(
                device=info["index"],
                samplerate=rate,
                channels=channels,
                dtype="int16",
                blocksize=rate * block_ms // 1000,
                latency="low",
                callback=self._callback,
                finished_callback=self._finished,
            ),
            "input",
            spec,
        )
        log.debug("input %r opened at %d Hz × %d", self.name, rate, channels)

    def _callback(self, indata: PaBuffer, frames: int, time_info: Any, status: Any) -> None:
        t = time.monotonic()
        if status.input_overflow:
            self.overflows += 1
        samples = np.frombuffer(indata, dtype=np.int16)
        self._deliver(samples if self.channels == 1 else samples[:: self.channels], t)

    def start(self) -> None:
        self._start_stream()
        self.last_block_t = time.monotonic()

    def suspend(self) -> None:
        self._request(False)

    def resume(self) -> None:
        self.last_block_t = time.monotonic()
        self._request(True)

    def close(self) -> None:
        self._close_stream()


class PortAudioSpeaker(_StreamOwner, Speaker):
    """Playback to a PortAudio device (see `Speaker`)."""

    def __init__(
        self,
        spec: str,
        *,
        block_ms: int,
        on_speaker_event: SpeakerEventCallback | None = None,
        volume: float = 1.0,
        rates: Sequence[int] = OUTPUT_RATES,
    ) -> None:
        info, rate, channels = _open("output", spec, rates)
        Speaker.__init__(self, info["name"], rate, on_speaker_event=on_speaker_event, volume=volume)
        self.channels = channels
        self.underflows = 0
        blocksize = rate * block_ms // 1000
        self._mono = np.zeros(blocksize, dtype=np.int16)  # allocated here, not in the callback
        self._scaled = np.zeros(blocksize, dtype=np.float32)
        self._init_stream(
            lambda: sd.RawOutputStream(
                device=info["index"],
                samplerate=rate,
                channels=channels,
                dtype="int16",
                blocksize=blocksize,
                latency="low",
                callback=self._callback,
                finished_callback=self._finished,
                # A start fills the device's buffer from the queue, not with silence: the first
                # audio after standing by is not held back by a buffer's worth of zeros.
                prime_output_buffers_using_stream_callback=True,
            ),
            "output",
            spec,
        )
        log.debug("output %r opened at %d Hz × %d", self.name, rate, channels)

    def _callback(self, outdata: PaBuffer, frames: int, time_info: Any, status: Any) -> None:
        if status.output_underflow:
            self.underflows += 1
        out = np.frombuffer(outdata, dtype=np.int16).reshape(frames, self.channels)
        self._render(out, time.monotonic())

    def start(self) -> None:
        self._start_stream()

    def _park(self) -> None:
        self._request(False)

    def _unpark(self) -> None:
        self._request(True)

    def _cut(self) -> None:
        """Abort the stream: what the device has buffered is dropped, not played out, so a
        barge-in is silent at once whatever the period; the next play() starts it again."""
        with self._standby_lock:
            if not self._parked:
                self._parked = True
                self._park()

    def _stopped(self, t: float) -> None:
        if self._playing:  # the callback is stopped: its state is ours to settle
            self._playing = False
            self._event("drained", t)

    def close(self) -> None:
        self._close_stream()


def _accepted_rates(check: Callable[..., None], index: int, max_channels: int) -> list[int]:
    if max_channels < 1:
        return []
    accepted = []
    for rate in LISTED_RATES:
        for channels in (1, 2) if max_channels >= 2 else (1,):
            try:
                check(device=index, samplerate=rate, channels=channels, dtype="int16")
            except (ValueError, sd.PortAudioError):
                continue
            accepted.append(rate)
            break
    return accepted


def list_devices() -> list[dict[str, Any]]:
    """Every PortAudio device with the wire-relevant rates each direction accepts.

    Checking a rate opens the device, so a device in use (by a running daemon) may list no rates.
    """
    result = []
    for d in sd.query_devices():
        index = d["index"]
        result.append(
            {
                "index": index,
                "name": d["name"],
                "hostapi": sd.query_hostapis(d["hostapi"])["name"],
                "max_input_channels": d["max_input_channels"],
                "max_output_channels": d["max_output_channels"],
                "default_samplerate": d["default_samplerate"],
                "input_rates": _accepted_rates(
                    sd.check_input_settings, index, d["max_input_channels"]
                ),
                "output_rates": _accepted_rates(
                    sd.check_output_settings, index, d["max_output_channels"]
                ),
            }
        )
    return result
