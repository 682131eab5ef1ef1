"""Server-side turn detection: the hook the session calls with every appended block in VAD mode.

The session owns what a detected turn *does* (speech_started → barge-in; speech_stopped →
commit → response, see `Session._on_vad_edge`); a detector only says *where* speech starts and
stops, in milliseconds of buffered audio. That split lets the energy-based detector promised in
design.md ("threshold", "silence_duration_ms", "prefix_padding_ms") land as one new class here
without touching the session or the response code.

Not implemented yet: `make_detector` returns `NoSpeechDetector`, so a session in VAD mode buffers
audio but never detects a turn (and refuses a manual commit, as the service does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np


@dataclass(frozen=True)
class VadEdge:
    """A detected boundary; `at_ms` counts from the first sample of the current buffer."""

    kind: Literal["speech_started", "speech_stopped"]
    at_ms: int


class TurnDetector(Protocol):
    def feed(self, samples: np.ndarray) -> list[VadEdge]:
        """Consume int16 16 kHz samples just appended; return the edges they complete."""
        ...

    def reset(self) -> None:
        """Forget all state (buffer cleared or committed)."""
        ...


class NoSpeechDetector:
    """Placeholder detector: hears nothing. Replaced by the energy VAD."""

    def feed(self, samples: np.ndarray) -> list[VadEdge]:
        return []

    def reset(self) -> None:
        return None


def make_detector(turn_detection: dict[str, Any]) -> TurnDetector:
    """The detector for an effective `session.turn_detection` object (not None)."""
    return NoSpeechDetector()
