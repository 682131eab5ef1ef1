"""The microphone's way to the service when it streams all the time: mute, ~100 ms appends, an
offline buffer, and a replay of what a dead connection swallowed.

Hands-free mode streams without pause once a session is ready — silence included, because the
service's VAD needs silence to find the end of speech. (What blanks the microphone while the box
itself makes sound is `playback.Playback.silences_mic`.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from omnid import protocol
from omnid.models import WIRE_INPUT_RATE
from omnid.settings import Settings
from omnid.turn import APPEND_SAMPLES

# How much streamed audio is kept until the service shows it is alive after it (any event): a
# stalled network is declared dead within about this long, and what it swallowed is replayed.
UNCONFIRMED_S = 30.0


class Uplink:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.muted = False
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._offline: deque[np.ndarray] = deque()
        self._offline_n = 0
        # Sent, but not yet known to be heard: (capture time, block), trimmed by `confirm()`.
        self._unconfirmed: deque[tuple[float, np.ndarray]] = deque()
        self._unconfirmed_n = 0
        self._max_unconfirmed = int(UNCONFIRMED_S * WIRE_INPUT_RATE)

    @property
    def _max_offline(self) -> int:
        """Kept while offline: as much as one turn may last (`audio.max_turn_s`)."""
        return int(self._settings.current.audio.max_turn_s * WIRE_INPUT_RATE)

    def stream(
        self, pcm: np.ndarray, t: float, ready: bool, send: Callable[[protocol.Event], bool]
    ) -> None:
        """Hands-free: send in ~100 ms appends; keep the last `max_buffer_s` while offline."""
        if not ready:
            self._keep_offline(pcm)
            return
        self._unconfirmed.append((t, pcm))
        self._unconfirmed_n += len(pcm)
        while self._unconfirmed_n - len(self._unconfirmed[0][1]) >= self._max_unconfirmed:
            self._unconfirmed_n -= len(self._unconfirmed.popleft()[1])
        self._pending.append(pcm)
        self._pending_n += len(pcm)
        if self._pending_n >= APPEND_SAMPLES:
            self._flush(send)

    def _keep_offline(self, pcm: np.ndarray) -> None:
        self._offline.append(pcm)
        self._offline_n += len(pcm)
        while self._offline_n - len(self._offline[0]) >= self._max_offline:
            self._offline_n -= len(self._offline.popleft())

    def confirm(self, t: float) -> None:
        """The service answered after hearing everything captured before `t`."""
        while self._unconfirmed and self._unconfirmed[0][0] < t:
            self._unconfirmed_n -= len(self._unconfirmed.popleft()[1])

    def requeue_unconfirmed(self) -> None:
        """The session is gone without a word since some of our audio went out (a stalled or
        dropped network): that audio, and what had not been flushed, goes to the next session
        first, so speech said into a dead connection is heard after all."""
        blocks = [pcm for _, pcm in self._unconfirmed] + self._pending
        self._unconfirmed.clear()
        self._unconfirmed_n = 0
        self._pending.clear()
        self._pending_n = 0
        self._offline.extendleft(reversed(blocks))
        self._offline_n += sum(len(b) for b in blocks)
        while self._offline and self._offline_n - len(self._offline[0]) >= self._max_offline:
            self._offline_n -= len(self._offline.popleft())

    def replay(self, blocks: list[np.ndarray], silence_ms: int) -> None:
        """Queue a dropped turn's audio, then enough silence for the service's VAD to end it.
        It replaces what was buffered offline (that audio is part of the turn already)."""
        self._offline.clear()
        self._offline_n = 0
        self._pending.clear()
        self._pending_n = 0
        tail = np.zeros((silence_ms + 300) * WIRE_INPUT_RATE // 1000, dtype=np.int16)
        self._pending[:0] = [*blocks, tail]
        self._pending_n += sum(len(b) for b in blocks) + len(tail)

    def resume(self, send: Callable[[protocol.Event], bool]) -> None:
        """A session is ready again: what was said meanwhile goes first."""
        self._pending[:0] = list(self._offline)
        self._pending_n += self._offline_n
        self._offline.clear()
        self._offline_n = 0
        if self._pending_n:
            self._flush(send)

    def _flush(self, send: Callable[[protocol.Event], bool]) -> None:
        pcm = np.concatenate(self._pending)
        self._pending.clear()
        self._pending_n = 0
        for start in range(0, len(pcm), APPEND_SAMPLES * 10):
            if not send(protocol.audio_append(pcm[start : start + APPEND_SAMPLES * 10].tobytes())):
                return
