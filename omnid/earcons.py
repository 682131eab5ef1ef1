"""Short tones generated at start-up (no binary assets): what a headless box says without words.

Every earcon is int16 mono at the wire's output rate (24 kHz, what `Speaker.play` takes), well
below full scale (peak 0.3 or less) so it never clips after the speaker's gain and never startles,
and built from notes with raised-cosine edges, so it starts and ends at zero: no click.

Each earcon uses its own notes (no two share a pitch) so they are told apart by ear and by
`correlates()`, which the tests and the "no earcon on the wire" check rely on:

| name      | notes (Hz)            | shape                                   | length |
|-----------|-----------------------|-----------------------------------------|--------|
| listening | 784 → 1047 (G5 → C6)  | rising fourth, short: it overlaps the   | 130 ms |
|           |                       | start of capture                        |        |
| sent      | 1568 → 1175 (G6 → D6) | two soft bell-like blips, falling: "got | 100 ms |
|           |                       | it"; two pitches, not one, so that no   |        |
|           |                       | vowel of speech resembles it            |        |
| error     | 660 → 440             | two falling notes: "that did not work"  | 280 ms |
| offline   | 392 → 311 → 262       | low, descending (G4 Eb4 C4)             | 360 ms |
| online    | 587 → 740 → 880       | ascending (D5 F#5 A5, a major triad)    | 270 ms |
| woken     | 2093 (C7)             | one soft blip (`wake.earcon`): short    |  50 ms |
|           |                       | and quiet, since it is not masked from  |        |
|           |                       | the words that follow the wake word     |        |
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from omnid.models import WIRE_OUTPUT_RATE

Int16Array = npt.NDArray[np.int16]
RATE = WIRE_OUTPUT_RATE
LEVEL = 0.3
"""Peak level as a fraction of full scale: clearly audible next to speech at the same volume
(the model's voice peaks near full scale) and far from clipping."""


def tone(freqs_hz: list[float], each_ms: int = 140, level: float = 0.3) -> np.ndarray:
    """Consecutive sine notes with 10 ms raised-cosine edges (no clicks), int16 at 24 kHz."""
    n = WIRE_OUTPUT_RATE * each_ms // 1000
    t = np.arange(n) / WIRE_OUTPUT_RATE
    ramp = min(n // 2, WIRE_OUTPUT_RATE // 100)
    envelope = np.ones(n)
    edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
    envelope[:ramp], envelope[n - ramp :] = edge, edge[::-1]
    notes = [np.sin(2 * np.pi * f * t) * envelope for f in freqs_hz]
    return (np.concatenate(notes) * level * 32767).astype(np.int16)


def error_tone() -> np.ndarray:
    """Two falling notes: 'that did not work'."""
    return tone([660.0, 440.0])


def _note(
    freq_hz: float, ms: float, *, attack_ms: float = 8.0, release_ms: float = 20.0
) -> npt.NDArray[np.float64]:
    """One note, peak 1.0: a sine with a little second harmonic (rounder than a bare sine,
    closer to a soft mallet), raised-cosine attack and release so it begins and ends at 0."""
    n = round(RATE * ms / 1000)
    t = np.arange(n) / RATE
    wave = np.sin(2 * np.pi * freq_hz * t) + 0.2 * np.sin(2 * np.pi * 2 * freq_hz * t)
    envelope = np.ones(n)
    a = min(n // 2, round(RATE * attack_ms / 1000))
    r = min(n - a, round(RATE * release_ms / 1000))
    envelope[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
    envelope[n - r :] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
    out = wave * envelope
    return out / np.max(np.abs(out))


def _blip(freq_hz: float, ms: float) -> npt.NDArray[np.float64]:
    """A soft, short bell: quick attack, then an exponential decay that a raised cosine takes
    to exactly zero at the end."""
    n = round(RATE * ms / 1000)
    t = np.arange(n) / RATE
    decay = np.exp(-t / (ms / 1000 / 4))
    attack = min(n, round(RATE * 0.006))
    decay[:attack] *= 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, attack))
    decay *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, n))
    out = np.sin(2 * np.pi * freq_hz * t) * decay
    return out / np.max(np.abs(out))


def _pcm(*parts: npt.NDArray[np.float64], level: float = LEVEL) -> Int16Array:
    pcm = (np.concatenate(parts) * level * 32767).round().astype(np.int16)
    pcm.flags.writeable = False  # shared by every play(): nobody may scribble on it
    return pcm


@dataclass(frozen=True, eq=False)
class Earcons:
    """The set of earcons, built once at start-up by `Earcons.generate()` (~1 ms of numpy) and
    then only read: pass an attribute to `Speaker.play()`. The arrays are read-only."""

    listening: Int16Array
    sent: Int16Array
    error: Int16Array
    offline: Int16Array
    online: Int16Array
    confirm: Int16Array
    woken: Int16Array

    @classmethod
    def generate(cls) -> Earcons:
        error = error_tone()
        error.flags.writeable = False
        return cls(
            listening=_pcm(_note(784.0, 65, release_ms=15), _note(1047.0, 65, release_ms=25)),
            sent=_pcm(_blip(1568.0, 40), _blip(1174.7, 60), level=0.2),
            error=error,
            offline=_pcm(*(_note(f, 120, release_ms=40) for f in (392.0, 311.1, 261.6))),
            online=_pcm(*(_note(f, 90, release_ms=30) for f in (587.3, 740.0, 880.0))),
            # A question, "press to confirm?": three quick high blips, then a higher note.
            confirm=_pcm(
                _blip(1318.5, 45),
                _blip(1318.5, 45),
                _blip(1318.5, 45),
                _note(1760.0, 120, release_ms=40),
                level=0.25,
            ),
            woken=_pcm(_blip(2093.0, 50), level=0.12),
        )

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Earcons))

    def get(self, name: str) -> Int16Array:
        """The earcon called `name` (KeyError for an unknown one)."""
        if name not in self.names():
            raise KeyError(f"no earcon {name!r}; there are {', '.join(self.names())}")
        pcm: Int16Array = getattr(self, name)
        return pcm

    def duration_s(self, name: str) -> float:
        """How long `name` plays, in seconds: e.g. how long the microphone audio it overlaps
        must be kept off the wire."""
        return len(self.get(name)) / RATE


def alarm_sound() -> Int16Array:
    """One second of a timer's alarm, played again and again while it rings: four bright beeps,
    then a pause. Louder than the earcons (it must wake someone), and not one of them: it plays
    whatever `audio.earcons` says."""
    beep = _note(1046.5, 90, attack_ms=5, release_ms=15)
    gap = np.zeros(round(RATE * 0.06))
    return _pcm(*([beep, gap] * 4), np.zeros(round(RATE * 0.4)), level=0.45)


def correlates(signal: npt.ArrayLike, earcon: npt.ArrayLike, *, rate: int = RATE) -> float:
    """How strongly `earcon` occurs anywhere in `signal`: the peak over all alignments of the
    normalised cross-correlation |<window, earcon>| / (‖window‖·‖earcon‖), 0.0 – 1.0.

    1.0 means an exact (scaled) copy is in there; a different earcon, speech or noise scores low.
    Scale-free, so a quieter copy (speaker volume) scores as high as the original. `signal` is
    mono at `rate` Hz; the earcon (at 24 kHz) is resampled to it, so the 16 kHz wire audio can
    be checked directly. Windows quieter than about 1 LSB RMS (digital silence) score 0 rather
    than dividing noise by nothing. FFT-based: a minute of audio takes a few hundred ms.
    """
    x = np.asarray(signal, dtype=np.float64).ravel()
    e = np.asarray(earcon, dtype=np.float64).ravel()
    if rate != RATE:
        import soxr

        e = soxr.resample(e, RATE, rate, quality="HQ")
    m = len(e)
    if m == 0 or len(x) < m:
        return 0.0
    e_norm = float(np.sqrt(np.dot(e, e)))
    if e_norm == 0.0:
        return 0.0
    size = 1 << int(np.ceil(np.log2(len(x) + m - 1)))
    # correlation = convolution with the time-reversed earcon; keep the fully overlapping lags
    full = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(e[::-1], size), size)
    dots = full[m - 1 : len(x)]
    energy = np.cumsum(np.concatenate(([0.0], x * x)))
    window = np.sqrt(np.maximum(energy[m:] - energy[:-m], 0.0))
    valid = window > np.sqrt(m)  # RMS above 1 LSB
    if not valid.any():
        return 0.0
    ncc = np.abs(dots[valid]) / (window[valid] * e_norm)
    return float(min(1.0, ncc.max()))
