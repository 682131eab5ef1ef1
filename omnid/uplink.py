"""The microphone's way to the service, and its gate: mute, the masks, ~100 ms appends.

The gate: a muted microphone, and one the box itself is sounding into (an earcon, or an answer
under the echo guard: `playback.Playback.silences_mic`), goes out as silence.

Push-to-talk sends a turn's audio as it is held, and again whole to a new session after a drop.
Hands-free streams without pause once a session is ready — silence included, because the
service's VAD needs silence to find the end of speech — keeps what is said while offline, and
replays what a dead connection swallowed. Wake mode streams the same way, but only while its
window is open: `open_with` starts it with what was said just before, `shut` forgets all of it.
Every append opens the service's buffer for images.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from omnid import protocol
from omnid.events import MicBlock
from omnid.models import WIRE_INPUT_RATE
from omnid.playback import Playback
from omnid.session import Session
from omnid.settings import Settings
from omnid.turn import APPEND_SAMPLES, Turn
from omnid.vision import Vision

# How much streamed audio is kept until the service shows it is alive after it (any event): a
# stalled network is declared dead within about this long, and what it swallowed is replayed.
UNCONFIRMED_S = 30.0


class Uplink:
    def __init__(
        self, settings: Settings, session: Session, playback: Playback, vision: Vision
    ) -> None:
        self._settings = settings
        self._session = session
        self._playback = playback
        self._vision = vision
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

    def gate(self, block: MicBlock, masks: bool = True) -> np.ndarray:
        """What of the block may go to the service: all of it, or silence. Without `masks`
        only mute counts (the wake word's pre-roll: the user was heard speaking, whatever the
        speaker was doing)."""
        if self.muted or (masks and self._playback.silences_mic(block.t)):
            return np.zeros_like(block.pcm)
        return block.pcm

    def send(self, event: protocol.Event) -> bool:
        """Every audio append goes through here: it opens the buffer for images."""
        if not self._session.send(event):
            return False
        self._vision.appended()
        return True

    def send_turn(self, turn: Turn, final: bool) -> None:
        """Push-to-talk: send what the session has not got of the turn yet, in ~100 ms appends
        (all of it when final)."""
        session = self._session
        if not session.ready:
            return
        pcm = turn.unsent(session.session_id)
        if len(pcm) == 0 or (not final and len(pcm) < APPEND_SAMPLES):
            return
        if self._append(pcm):
            turn.mark_sent()

    def stream(self, pcm: np.ndarray, t: float) -> None:
        """Hands-free: send in ~100 ms appends; keep the last `max_turn_s` while offline."""
        if not self._session.ready:
            self._keep_offline(pcm)
            return
        self._unconfirmed.append((t, pcm))
        self._unconfirmed_n += len(pcm)
        while self._unconfirmed_n - len(self._unconfirmed[0][1]) >= self._max_unconfirmed:
            self._unconfirmed_n -= len(self._unconfirmed.popleft()[1])
        self._pending.append(pcm)
        self._pending_n += len(pcm)
        if self._pending_n >= APPEND_SAMPLES:
            self._flush()

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

    def open_with(self, blocks: list[MicBlock], masks: bool) -> None:
        """Wake mode's window opened: `blocks` (heard since just before the wake phrase or the
        question, already captured) go first, streamed like the rest; a session is asked for
        if none is ready (they wait for it)."""
        if not self._session.ready:
            self._session.connect_now(user=True)
        for block in blocks:
            self.stream(self.gate(block, masks), block.t)

    def shut(self) -> None:
        """Wake mode's window shut without a turn: nothing heard so far may still go out, now
        or after a reconnect (what was kept offline, not yet flushed, or kept for a replay),
        no image may follow it, and the service forgets what it got."""
        self._pending.clear()
        self._pending_n = 0
        self._offline.clear()
        self._offline_n = 0
        self._unconfirmed.clear()
        self._unconfirmed_n = 0
        self._vision.committed()
        if self._session.ready:
            self._session.send(protocol.audio_clear())

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

    def resume(self) -> None:
        """A session is ready again: what was said meanwhile goes first."""
        self._pending[:0] = list(self._offline)
        self._pending_n += self._offline_n
        self._offline.clear()
        self._offline_n = 0
        if self._pending_n:
            self._flush()

    def _flush(self) -> None:
        pcm = np.concatenate(self._pending)
        self._pending.clear()
        self._pending_n = 0
        self._append(pcm)

    def _append(self, pcm: np.ndarray) -> bool:
        """Appends of at most a second each; False once the link refuses one."""
        for start in range(0, len(pcm), APPEND_SAMPLES * 10):
            chunk = pcm[start : start + APPEND_SAMPLES * 10]
            if not self.send(protocol.audio_append(chunk.astype("<i2", copy=False).tobytes())):
                return False
        return True
