"""The microphone's blocks, handed from the audio callback to each of their consumers.

The callback must never wait, and one slow consumer must never hold up another, so each consumer
gets its own `MicQueue`: a deque the callback appends to and only that consumer pops from (a
deque's appends and pops are atomic, so the two threads share no lock). The callback wakes a
consumer every `every` blocks with a call it gave (the conversation posts an event on its queue;
a detector thread would set its own event); the wake-up says how many blocks were in by then, so
a consumer taking them keeps its own queue's order: a release queued behind a wake-up is not
overtaken by the blocks captured after it.

A queue is bounded (a consumer that stops taking loses the blocks past the limit, counted,
instead of eating memory). `PreRoll` keeps the last seconds a consumer saw, for a turn that
wants the words said just before it opened.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from omnid.events import MicBlock
from omnid.models import WIRE_INPUT_RATE

log = logging.getLogger("omnid.micfeed")

MIC_BATCH_MS = 100
"""How much audio the conversation thread gets per wake-up. It sends ~100 ms appends anyway, so
waking it for every 20 ms block only costs CPU (the wake-ups were most of its time)."""
QUEUE_LIMIT_S = 60.0


class MicQueue:
    """One consumer's blocks. `put` runs on the audio thread; everything else on the consumer's."""

    def __init__(self, name: str, wake: Callable[[int], None], every: int, limit: int) -> None:
        self.name = name
        self._wake = wake
        self._every = every
        self._limit = limit
        self._blocks: deque[MicBlock] = deque()
        self._put = 0  # blocks queued (written by the audio thread only) …
        self._taken = 0  # … and taken (by the consumer only)
        self.dropped = 0  # blocks refused while the consumer was `limit` blocks behind
        self._reported = 0

    def put(self, block: MicBlock) -> None:
        if len(self._blocks) >= self._limit:
            self.dropped += 1
            return
        self._blocks.append(block)
        self._put += 1
        if self._put % self._every == 0:
            self._wake(self._put)

    def take(self, upto: int | None = None) -> list[MicBlock]:
        """The blocks queued up to the `upto`-th (without it: all that are in), oldest first."""
        want = (self._put if upto is None else upto) - self._taken
        out: list[MicBlock] = []
        while want > 0 and self._blocks:
            out.append(self._blocks.popleft())
            want -= 1
        self._taken += len(out)
        if self.dropped != self._reported:
            log.warning(
                "microphone consumer %s fell behind: %d blocks dropped",
                self.name,
                self.dropped - self._reported,
            )
            self._reported = self.dropped
        return out


class MicFeed:
    """The microphone callback's target: every block goes to every consumer's queue."""

    def __init__(self, block_ms: int) -> None:
        self.block_ms = block_ms
        self._queues: tuple[MicQueue, ...] = ()

    def consumer(
        self, name: str, wake: Callable[[int], None], every_ms: int = MIC_BATCH_MS
    ) -> MicQueue:
        """A new consumer, woken about every `every_ms` of audio. Add consumers before the
        microphone starts: the callback reads the tuple without a lock."""
        every = max(1, every_ms // self.block_ms)
        q = MicQueue(name, wake, every, int(QUEUE_LIMIT_S * 1000 / self.block_ms))
        self._queues = (*self._queues, q)
        return q

    def __call__(self, pcm: np.ndarray, t: float) -> None:
        block = MicBlock(pcm, t)
        for q in self._queues:
            q.put(block)


class PreRoll:
    """The last `seconds` of microphone audio, kept by the consumer that saw it."""

    def __init__(self, seconds: float) -> None:
        self._limit = int(seconds * WIRE_INPUT_RATE)
        self._blocks: deque[MicBlock] = deque()
        self._n = 0

    def add(self, block: MicBlock) -> None:
        self._blocks.append(block)
        self._n += len(block.pcm)
        while self._blocks and self._n - len(self._blocks[0].pcm) >= self._limit:
            self._n -= len(self._blocks.popleft().pcm)

    def take(self, seconds: float, before: float) -> list[MicBlock]:
        """The blocks of the last `seconds` that ended by `before`, oldest first."""
        out: list[MicBlock] = []
        n, want = 0, int(seconds * WIRE_INPUT_RATE)
        for block in reversed(self._blocks):
            if n >= want:
                break
            if block.t <= before:
                out.append(block)
                n += len(block.pcm)
        return out[::-1]

    def since(self, t: float) -> list[MicBlock]:
        """The blocks that end after `t`, oldest first (a block begun before `t` is whole)."""
        out: list[MicBlock] = []
        for block in reversed(self._blocks):
            if block.t <= t:
                break
            out.append(block)
        return out[::-1]
