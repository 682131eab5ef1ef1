"""When to ask the camera for a frame, and whether a frame that arrived may go on the wire.

A pure state machine, no I/O and no threads: the conversation thread reports what happened to
the audio buffer and the turn, asks `should_request()` (then calls `CameraFeed.request()`), hands
arriving `Frame` events to `offer()`, and sends whatever `take()` returns. It keeps the service's
image rules (docs/protocol.md, "Images") and the `camera.when` policy of issue 4:

- at most one image per interval, interval = max(1/fps, 1.0 s), measured between sends;
- only after an `input_audio_buffer.append` in the current buffer — a commit (ours in manual
  mode, the service's `input_audio_buffer.committed` in VAD mode) empties it again; in VAD mode
  `speech_stopped` counts as empty too, since the service commits right after it;
- `when = "turn"`: while the user speaks (button held / speech_started…speech_stopped); the first
  frame is requested at the turn's start so it is ready right after the first append;
- `when = "always"`: whenever audio streams (an append within the last second).

A frame is requested a little early (by the measured capture time, at most 3/4 of an interval) and
held here until it may be sent, so a slow camera does not stretch the interval. A held frame is
dropped on commit, at the end of the turn, or after a second: never queued past a commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from omnid.camera.cost import frame_interval_s
from omnid.config_schema import CameraSection
from omnid.events import Frame
from omnid.models import image_tokens

STREAM_GAP_S = 1.0
"""`when = "always"`: audio counts as streaming while the last append is this recent."""
REQUEST_TIMEOUT_S = 3.0
"""A request unanswered this long is forgotten (the camera is in trouble): ask again when due."""
MAX_HOLD_S = 1.0
"""A frame that waited this long (for the first append, or the rate limit) is stale."""
LEAD_FRACTION = 0.75
LATENCY_SMOOTHING = 0.3


class FramePolicy:
    def __init__(
        self,
        fps: float,
        when: str,
        mode: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if when not in ("turn", "always"):
            raise ValueError(f"when must be 'turn' or 'always', not {when!r}")
        if mode not in ("manual", "vad", "wake"):
            raise ValueError(f"mode must be 'manual', 'vad' or 'wake', not {mode!r}")
        self.interval_s = frame_interval_s(fps)
        self.when = when
        self.mode = mode
        self.clock = clock
        self.frames_sent = 0
        """Frames taken for sending since the last `turn_counters()`."""
        self.image_tokens = 0
        """Their estimated tokens (`omnid.models.image_tokens` of each frame's real size)."""
        self.dropped = 0
        """Frames that arrived when they could not be used, or went stale waiting (debug aid)."""
        self._in_turn = False
        self._audio_in_buffer = False
        self._last_append: float | None = None
        self._last_sent: float | None = None
        self._requested_at: float | None = None
        self._held: Frame | None = None
        self._held_at = 0.0
        self._latency = 0.0  # smoothed request → frame time of this camera
        self._latency_known = False

    @classmethod
    def from_config(
        cls, camera: CameraSection, mode: str, clock: Callable[[], float] = time.monotonic
    ) -> FramePolicy:
        return cls(camera.fps, camera.when, mode, clock)

    # ------------------------------------------------------------------ what happened

    def on_turn_start(self) -> None:
        """Manual: the button was pressed. VAD: `input_audio_buffer.speech_started`."""
        self._in_turn = True
        self._drop_held()

    def on_turn_end(self) -> None:
        """Manual: released (before the commit). VAD and wake: `speech_stopped`."""
        self._in_turn = False
        self._drop_held()
        self._requested_at = None
        if self.mode != "manual":
            self._audio_in_buffer = False  # the service commits right after speech_stopped

    def on_append(self) -> None:
        """An `input_audio_buffer.append` was sent (call after each one)."""
        self._audio_in_buffer = True
        self._last_append = self.clock()

    def on_commit(self) -> None:
        """The buffer is empty again: we sent `input_audio_buffer.commit` (manual), or the
        service reported `input_audio_buffer.committed` (VAD)."""
        self._audio_in_buffer = False
        self._last_append = None
        self._requested_at = None
        self._drop_held()

    def reset(self) -> None:
        """A new session (reconnect, rollover): its buffer is empty. The rate limit is kept."""
        self.on_commit()

    # ------------------------------------------------------------------ decisions

    def should_request(self) -> bool:
        """True when the conversation should call `CameraFeed.request()` now; a True answer
        counts as the request (it is not repeated until the frame arrives or times out)."""
        now = self.clock()
        if not self._window_open(now) or self._held is not None:
            return False
        if self._requested_at is not None and now - self._requested_at < REQUEST_TIMEOUT_S:
            return False
        if self._last_sent is not None:
            lead = min(self._latency, LEAD_FRACTION * self.interval_s)
            if now < self._last_sent + self.interval_s - lead:
                return False
        self._requested_at = now
        return True

    def offer(self, frame: Frame) -> bool:
        """A `Frame` event arrived. Keep it (True) if it answers an open request in an open
        window, else drop it (False); pass it on with `take()`."""
        now = self.clock()
        if self._requested_at is None or not self._window_open(now):
            self.dropped += 1
            return False
        sample = now - self._requested_at
        if self._latency_known:
            self._latency += LATENCY_SMOOTHING * (sample - self._latency)
        else:
            self._latency, self._latency_known = sample, True
        self._requested_at = None
        self._drop_held()
        self._held, self._held_at = frame, now
        return True

    def may_send(self) -> bool:
        """Whether an image may go on the wire now (window open, audio in this buffer, interval
        since the last image elapsed)."""
        now = self.clock()
        return self._may_send(now)

    def take(self) -> Frame | None:
        """The held frame if it may be sent now — send it at once: taking it counts it as sent
        (rate limit and per-turn counters). Call after `offer()`, after each append and on tick."""
        if self._held is None:
            return None
        now = self.clock()
        if now - self._held_at > MAX_HOLD_S or not self._window_open(now):
            self._drop_held()
            return None
        if not self._may_send(now):
            return None
        frame, self._held = self._held, None
        self._last_sent = now
        self.frames_sent += 1
        self.image_tokens += image_tokens(frame.width, frame.height)
        return frame

    def turn_counters(self) -> tuple[int, int]:
        """(frames sent, estimated image tokens) since the last call, and start counting anew:
        call when a turn is finished, for its journal record."""
        counters = (self.frames_sent, self.image_tokens)
        self.frames_sent = self.image_tokens = 0
        return counters

    # ------------------------------------------------------------------ internals

    def _window_open(self, now: float) -> bool:
        if self.when == "turn":
            return self._in_turn
        return self._last_append is not None and now - self._last_append <= STREAM_GAP_S

    def _may_send(self, now: float) -> bool:
        if not (self._window_open(now) and self._audio_in_buffer):
            return False
        return self._last_sent is None or now - self._last_sent >= self.interval_s

    def _drop_held(self) -> None:
        if self._held is not None:
            self._held = None
            self.dropped += 1
