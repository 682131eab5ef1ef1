"""Server-side turn detection: an energy VAD that honours `session.turn_detection`.

The session owns what a detected turn *does* (speech_started → barge-in; speech_stopped →
commit → response, see `Session._on_vad_edge`); a detector only says *where* speech starts and
stops on its own audio timeline. `InputTimeline` maps that onto the session's input-audio
timeline (ms since the first append of the session, which is what `audio_start_ms` and
`audio_end_ms` count) and cuts the committed segment out of the input buffer.

How `EnergyDetector` hears speech — cheap and deterministic, so tests can compute the truth:
- the audio (16 kHz PCM16, any append size) is cut into 20 ms frames; a frame is *loud* when its
  RMS level, DC removed, reaches `threshold_dbfs(threshold)` (the mapping is explained there);
- a turn starts after `MIN_SPEECH_MS` of consecutive loud frames, so a click or a single plosive
  does not start one; `speech_started.audio_start_ms` is the first loud frame minus
  `prefix_padding_ms` (never before the end of the previous turn or the start of the buffer) —
  the committed audio starts there, as on the service;
- a turn ends once `silence_duration_ms` of audio has had no loud frame; `audio_end_ms` is the end
  of the last loud frame (the committed audio ends there; the trailing silence is not committed);
- `semantic_vad` uses the same detector: a stand-in (the service's model also judges whether the
  sentence is finished; no energy detector can), good enough to drive a client's turn logic.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from omnid.models import WIRE_INPUT_RATE
from omnid.simulator.buffers import InputBuffer, PendingInput
from omnid.simulator.images import ImageInfo

FRAME_MS = 20
FRAME_SAMPLES = WIRE_INPUT_RATE * FRAME_MS // 1000
MIN_SPEECH_MS = 200  # consecutive loud audio before a turn starts (clicks are shorter)
PROGRESS_MS = 500  # a `speech_continues` edge per this much speech (drives transcription deltas)
DBFS_AT_THRESHOLD_0 = -50.0
DB_PER_THRESHOLD_UNIT = 20.0
_SAMPLES_PER_MS = WIRE_INPUT_RATE // 1000

EdgeKind = Literal["speech_started", "speech_continues", "speech_stopped"]


@dataclass(frozen=True)
class VadEdge:
    """A detected boundary; `at_ms` counts from the first sample fed since the detector was made
    or last reset. `speech_continues` is a heartbeat while speech goes on."""

    kind: EdgeKind
    at_ms: int


class TurnDetector(Protocol):
    def feed(self, samples: np.ndarray) -> list[VadEdge]:
        """Consume int16 16 kHz samples just appended; return the edges they complete."""
        ...

    def reset(self) -> None:
        """Forget all state and restart the timeline at 0 (buffer cleared)."""
        ...


def threshold_dbfs(threshold: float) -> float:
    """The frame level (dBFS RMS; a full-scale sine is −3 dBFS) that counts as speech.

    Linear and strictly increasing (higher threshold = less sensitive, as docs/protocol.md says):
    `−50 + 20·threshold`, so −1 → −70 dBFS (hears a whisper, and a quiet room's hum), 0 → −50,
    0.2 (the SDK's default) → −46, 0.5 (the service's default) → −40 dBFS, 1 → −30 dBFS (only
    close, loud speech). At 0.5 conversational speech at a microphone (−30…−15 dBFS per frame)
    is 10–25 dB above the line, and room noise (−60…−50 dBFS) 10–20 dB below it.
    """
    return DBFS_AT_THRESHOLD_0 + DB_PER_THRESHOLD_UNIT * threshold


def frame_levels_dbfs(frames: np.ndarray) -> np.ndarray:
    """RMS level of each row of int16 `frames` in dBFS, DC removed (a mic offset is not speech)."""
    x = frames.astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    power = np.mean(x * x, axis=1) / (32768.0 * 32768.0)
    return np.asarray(10.0 * np.log10(power + 1e-12))


class EnergyDetector:
    """Streaming energy VAD; see the module docstring for the rules."""

    def __init__(self, threshold: float, silence_duration_ms: int, prefix_padding_ms: int) -> None:
        self.threshold_db = threshold_dbfs(threshold)
        self.silence_ms = silence_duration_ms
        self.padding_ms = prefix_padding_ms
        self.reset()

    def reset(self) -> None:
        self._carry = np.zeros(0, dtype=np.int16)  # < 1 frame left over from the last append
        self._frames = 0  # frames processed since reset
        self._run_start: int | None = None  # first loud frame of the current loud run (ms)
        self._speaking = False
        self._last_loud_end = 0
        self._progress_at = 0
        self._floor_ms = 0  # a turn never reaches back before here (end of the previous one)

    def feed(self, samples: np.ndarray) -> list[VadEdge]:
        data = np.concatenate([self._carry, np.asarray(samples, dtype=np.int16)])
        whole = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
        self._carry = data[whole:]
        if whole == 0:
            return []
        loud = frame_levels_dbfs(data[:whole].reshape(-1, FRAME_SAMPLES)) >= self.threshold_db
        edges: list[VadEdge] = []
        for is_loud in loud.tolist():
            edge = self._step(bool(is_loud))
            if edge is not None:
                edges.append(edge)
        return edges

    def _step(self, loud: bool) -> VadEdge | None:
        start = self._frames * FRAME_MS
        self._frames += 1
        end = start + FRAME_MS
        if not self._speaking:
            if not loud:
                self._run_start = None
                return None
            if self._run_start is None:
                self._run_start = start
            if end - self._run_start < MIN_SPEECH_MS:
                return None
            self._speaking = True
            self._last_loud_end = self._progress_at = end
            at = max(self._run_start - self.padding_ms, self._floor_ms)
            return VadEdge("speech_started", at)
        if loud:
            self._last_loud_end = end
            if end - self._progress_at >= PROGRESS_MS:
                self._progress_at = end
                return VadEdge("speech_continues", end)
            return None
        if end - self._last_loud_end < self.silence_ms:
            return None
        self._speaking = False
        self._run_start = None
        self._floor_ms = self._last_loud_end
        return VadEdge("speech_stopped", self._last_loud_end)


def make_detector(turn_detection: dict[str, Any]) -> TurnDetector:
    """The detector for an effective `session.turn_detection` object (validated, not None)."""
    return EnergyDetector(
        threshold=float(turn_detection.get("threshold", 0.5)),
        silence_duration_ms=int(turn_detection.get("silence_duration_ms", 800)),
        prefix_padding_ms=int(turn_detection.get("prefix_padding_ms", 300)),
    )


class InputTimeline:
    """Where the input buffer and the detector sit on the session's input-audio timeline.

    Counted in samples since the first append of the session (clears and commits do not restart
    it), so `audio_start_ms`/`audio_end_ms` of successive turns keep increasing, as the service's
    do. The session calls `appended` for every append, `detector_restarted` when it makes or
    resets a detector, and `buffer_emptied` after a manual commit or a clear.
    """

    def __init__(self) -> None:
        self.samples_in = 0
        self.buffer_origin = 0  # timeline sample of the input buffer's first sample
        self.detector_origin = 0  # timeline sample the detector's at_ms = 0 refers to
        self._carried_images: list[ImageInfo] = []

    @staticmethod
    def ms(samples: int) -> int:
        return samples // _SAMPLES_PER_MS

    def appended(self, pcm_bytes: int) -> None:
        self.samples_in += pcm_bytes // 2

    def detector_restarted(self) -> None:
        self.detector_origin = self.samples_in

    def buffer_emptied(self) -> None:
        self.buffer_origin = self.samples_in
        self._carried_images = []

    def edge_ms(self, edge: VadEdge) -> int:
        """An edge on the session timeline; a start never reaches back before the buffer."""
        at = self.ms(self.detector_origin) + edge.at_ms
        if edge.kind == "speech_started":
            at = max(at, -(-self.buffer_origin // _SAMPLES_PER_MS))
        return at

    def cut(self, buffer: InputBuffer, item_id: str, start_ms: int, end_ms: int) -> PendingInput:
        """Commit [start_ms, end_ms) of the buffer; the audio after it stays buffered.

        The audio before the segment (silence since the last turn) is dropped, as the service
        drops it; images buffered since the last commit go with the segment.
        """
        turn = buffer.take(item_id)
        first = max(start_ms * _SAMPLES_PER_MS - self.buffer_origin, 0) * 2
        last = max(end_ms * _SAMPLES_PER_MS - self.buffer_origin, 0) * 2
        rest = turn.audio[last:]
        turn.audio = turn.audio[first:last]
        turn.images = self._carried_images + turn.images
        self._carried_images = []
        self.buffer_origin = self.samples_in - len(rest) // 2
        if rest:
            buffer.append_audio(base64.b64encode(rest).decode("ascii"))
        return turn

    def trim(self, buffer: InputBuffer, max_ms: int, keep_ms: int) -> None:
        """Between turns, drop all but the last `keep_ms` once the buffer holds over `max_ms`.

        VAD sessions stream silence for hours; without this the buffer would grow by 115 MB an
        hour. Images buffered meanwhile are kept for the next turn.
        """
        if len(buffer) // 2 <= max_ms * _SAMPLES_PER_MS:
            return
        turn = buffer.take("trim")
        rest = turn.audio[-keep_ms * _SAMPLES_PER_MS * 2 :]
        self._carried_images += turn.images
        self.buffer_origin = self.samples_in - len(rest) // 2
        buffer.append_audio(base64.b64encode(rest).decode("ascii"))
