"""Short tones generated at start-up (no binary assets): what a headless box says without words.

Only the error tone exists yet (a lost turn must be audible, design.md); the device-interface work
adds the rest of the set.
"""

from __future__ import annotations

import numpy as np

from omnid.models import WIRE_OUTPUT_RATE


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
