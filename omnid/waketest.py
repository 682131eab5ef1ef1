"""`omnid wake-test`: what the wake-word detector hears in this room, live.

The cutoff that suits a room is found by listening in it: the owner runs this on the box, says
the wake word from where people will say it, talks and plays the radio as the room usually
sounds, and sets `wake.probability_cutoff` between the two — below the peaks the wake word
reaches, above what everything else does. It opens `audio.input_device` as the daemon does (a
sound card, or a `wav:` file played in real time) and runs the same `Detector` with the same
`[wake]` settings, but on its own: nothing is sent anywhere and no audio is written to disk.

Every `LINE_S` of audio one line: the latest probability, the highest since the last line, a bar
of that highest with the cutoff marked on it:

    p=0.12 peak=0.40 ▕████████         ┊  ▏ cutoff 0.85

and on each detection (as the daemon would wake, refractory period included) `WAKE p=0.93 …`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from omnid.models import WIRE_INPUT_RATE as RATE

if TYPE_CHECKING:
    from omnid.config import Config

EX_OK = 0
EX_UNAVAILABLE = 69  # the microphone could not be opened, or went silent
EX_CONFIG = 78
LINE_S = 0.25
BAR_CELLS = 20
NO_AUDIO_S = 3.0  # the microphone delivered nothing this long: give up rather than hang
_EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(peak: float, cutoff: float, cells: int = BAR_CELLS) -> str:
    """`peak` (0…1) as a bar `cells` wide, in eighths of a cell, with the cutoff's cell marked."""
    eighths = round(max(0.0, min(1.0, peak)) * cells * 8)
    full, part = divmod(eighths, 8)
    out = ["█"] * full
    if full < cells:
        out.append(_EIGHTHS[part])
        out += [" "] * (cells - full - 1)
    mark = min(cells - 1, int(cutoff * cells))
    if out[mark] == " ":
        out[mark] = "┊"
    return "▕" + "".join(out) + "▏"


class _Report:
    """What has been heard, and the lines that say so."""

    def __init__(self, cutoff: float, out: TextIO) -> None:
        self.cutoff = cutoff
        self.out = out
        self.heard = 0  # samples heard
        self.t0: float | None = None  # the capture time at which the first block began
        self.p = 0.0  # the latest real inference
        self.peak = 0.0  # the highest since the last line
        self.highest = 0.0  # the highest of the run
        self.wakes = 0
        self._next_line = LINE_S

    def probability(self, _t: float, p: float) -> None:
        self.p = p
        self.peak = max(self.peak, p)
        self.highest = max(self.highest, p)

    def wake(self, t: float, p: float) -> None:
        self.wakes += 1
        at = t - (self.t0 if self.t0 is not None else t)
        self._say(f"WAKE p={p:.2f} at {at:.2f} s")

    @property
    def heard_s(self) -> float:
        return self.heard / RATE

    def advance(self, samples: int) -> None:
        """`samples` more were heard: the status lines they complete."""
        self.heard += samples
        while self.heard_s >= self._next_line:
            self._next_line += LINE_S
            self._say(
                f"p={self.p:.2f} peak={self.peak:.2f} {bar(self.peak, self.cutoff)} "
                f"cutoff {self.cutoff:.2f}"
            )
            self.peak = 0.0

    def summary(self) -> None:
        wakes = "1 wake" if self.wakes == 1 else f"{self.wakes} wakes"
        self._say(
            f"heard {self.heard_s:.1f} s: {wakes}, highest p={self.highest:.2f} "
            f"(cutoff {self.cutoff:.2f})"
        )

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(cfg: Config, seconds: float | None, out: TextIO = sys.stdout) -> int:
    """Listen until `seconds` of audio were heard (None: until Ctrl-C); the exit status."""
    from omnid.config import wake_detector_missing, wake_model_problems

    missing = wake_detector_missing()
    if missing:
        print(f"omnid wake-test: {missing}", file=sys.stderr)
        return EX_CONFIG
    problems = wake_model_problems(cfg.wake.model)
    for problem in problems:
        print(f"omnid: config: {problem}", file=sys.stderr)
    if problems:
        return EX_CONFIG

    from omnid.audio import AudioDeviceError, WavMicrophone, open_microphone
    from omnid.micfeed import MicFeed
    from omnid.wake import Detector

    w = cfg.wake
    try:
        detector = Detector(w.model, w.probability_cutoff, w.refractory_s)
    except Exception as exc:  # a manifest that is not one, a model file that will not load
        print(f"omnid wake-test: wake.model = {w.model!r}: cannot load it: {exc}", file=sys.stderr)
        return EX_CONFIG

    ready = threading.Event()
    feed = MicFeed(cfg.block_ms)
    queue = feed.consumer("wake-test", lambda _upto: ready.set(), every_ms=50)
    device = cfg.audio.input_device
    try:
        mic = open_microphone(device, block_ms=cfg.block_ms, on_mic_block=feed)
        mic.start()
    except AudioDeviceError as exc:
        hint = ""
        if not device.startswith("wav:"):
            hint = " (a running omnid may hold it: sudo systemctl stop omnid while testing)"
        print(f"omnid wake-test: {exc}{hint}", file=sys.stderr)
        return EX_UNAVAILABLE

    report = _Report(detector.cutoff, out)
    source = "wake.probability_cutoff" if w.probability_cutoff is not None else "the model's own"
    length = ""
    if isinstance(mic, WavMicrophone):
        length = " (a file: it plays in real time, then silence)"
    until = f"for {seconds:g} s" if seconds is not None else "until Ctrl-C"
    print(
        f"omnid wake-test: {detector.name} on {mic.name}{length}, cutoff {detector.cutoff:.2f} "
        f"({source}), {until}; nothing is sent or recorded",
        file=out,
        flush=True,
    )
    status = EX_OK
    last_audio = time.monotonic()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `timeout 60 omnid wake-test` ends as Ctrl-C
    try:
        while seconds is None or report.heard_s < seconds:
            ready.wait(0.1)
            ready.clear()
            blocks = queue.take()
            if not blocks:
                if time.monotonic() - last_audio > NO_AUDIO_S:
                    print(
                        f"omnid wake-test: {mic.name} delivered no audio for {NO_AUDIO_S:g} s",
                        file=sys.stderr,
                    )
                    status = EX_UNAVAILABLE
                    break
                continue
            last_audio = time.monotonic()
            for block in blocks:
                if report.t0 is None:
                    report.t0 = block.t - len(block.pcm) / RATE
                for found in detector.feed(block.pcm, block.t, report.probability):
                    report.wake(found.t, found.probability)
                report.advance(len(block.pcm))
                if seconds is not None and report.heard_s >= seconds:
                    break
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM) is how a run without --seconds ends
    finally:
        mic.close()
    report.summary()
    return status
