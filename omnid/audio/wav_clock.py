"""The `wav:` devices' clock: what a sound card's own crystal is to its streams.

An absolute schedule (never drifting; after a stall it catches up rather than skipping), shared by
the `wav:` microphone and speaker when both are `wav:`, so that sample i of the speaker's file
plays at i/24000 s after the clock's t0, as the microphone's sample j was heard at j/16000 s after
its start. Each tick delivers the input block *then* pulls the output. The clock starts with the
first member's start() and stops when the last one leaves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from omnid.audio.base import output_block


class ClockMember(Protocol):
    def _tick(self, t: float) -> None: ...


class WavClock:
    """The ticker: calls the input's then the output's `_tick(t)` on an absolute schedule.

    `t` is the tick's scheduled monotonic time (the moment the block's capture ended), so
    timestamps are exact even when the thread wakes late. The members run under `lock`, which a
    member also takes to touch the timeline itself (one lock order, no deadlock), so `leave()`
    (from close()) waits for a tick in progress and never races a file write.

    Two cadences, as a sound card's two streams have two periods: the output's small step
    (`output_block_ms`) while the speaker plays, and the input's block (a whole multiple of it)
    otherwise. A member may `pause()` (a microphone nobody needs, a speaker with nothing to
    play) and `resume()` later; the timeline goes on. A paused microphone gets no ticks; a
    paused speaker still gets the microphone's (its file is the timeline tests and benchmarks
    read) but keeps none coming itself. With both paused the thread sleeps without waking at
    all, as a sound card with its streams stopped costs nothing. The paused stretch is skipped,
    not caught up: the microphone's file plays on meanwhile, as a room does, and the speaker
    fills its file with that much silence.
    """

    def __init__(
        self,
        block_ms: int,
        output_block_ms: int | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        step_ms = output_block_ms or output_block(block_ms)
        if block_ms % step_ms:
            raise ValueError(f"block_ms {block_ms} is not a multiple of the output's {step_ms}")
        self.step_s = step_ms / 1000
        self.every = block_ms // step_ms  # output steps per input block
        self.now = now  # the timeline's clock (a test driving the ticks itself brings its own)
        self.ticks = 0  # output steps since t0, as of the last tick
        self.t0 = 0.0
        self.lock = threading.RLock()
        self._attached = threading.Condition(self.lock)
        self._members: dict[ClockMember, bool] = {}  # joined members → running (not paused)
        self._input: ClockMember | None = None
        self._output: ClockMember | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def last_t(self) -> float:
        """When the last tick ran on the timeline."""
        return self.t0 + self.ticks * self.step_s

    def join(self, member: ClockMember, role: str) -> int:
        """Attach a started member; start the clock if needed. Returns the steps elapsed."""
        with self.lock:
            self._members[member] = True
            if role == "input":
                self._input = member
            else:
                self._output = member
            if self._thread is None:
                self.t0 = time.monotonic()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="omnid-wav-clock"
                )
                self._thread.daemon = True
                self._thread.start()
            self._attached.notify_all()
            return self.ticks

    def pause(self, member: ClockMember) -> None:
        """Stop ticking `member` until `resume()`; the timeline goes on without it."""
        with self.lock:
            if member in self._members:
                self._members[member] = False

    def resume(self, member: ClockMember) -> None:
        with self.lock:
            if member in self._members:
                self._members[member] = True
                self._attached.notify_all()

    def leave(self, member: ClockMember) -> None:
        """Detach; stop the clock when nothing is attached."""
        with self.lock:
            self._members.pop(member, None)
            if self._input is member:
                self._input = None
            if self._output is member:
                self._output = None
            idle = not self._members
            thread = self._thread
            if idle:
                self._stop.set()
                self._attached.notify_all()
        if idle and thread is not None:
            if thread is not threading.current_thread():
                thread.join()
            with self.lock:  # a later start() gets a fresh clock
                if self._thread is thread:
                    self._thread, self._stop, self.ticks = None, threading.Event(), 0

    def _running(self, member: ClockMember | None) -> bool:
        return member is not None and self._members.get(member, False)

    def _run(self, stop: threading.Event) -> None:
        n = 0
        while True:
            with self.lock:
                if not any(self._members.values()) and not stop.is_set():
                    while not any(self._members.values()) and not stop.is_set():
                        self._attached.wait()  # nobody to tick: no wake-ups at all
                    n = max(n, int((time.monotonic() - self.t0) / self.step_s))
                fine = self._running(self._output)
            if stop.is_set():
                return
            n = n + 1 if fine else (n // self.every + 1) * self.every
            target = self.t0 + n * self.step_s
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # a third cheaper than Event.wait; stop waits ≤ one step
            if stop.is_set():
                return
            with self.lock:
                self.ticks = n
                if n % self.every == 0 and self._running(self._input):
                    self._input._tick(target)  # type: ignore[union-attr]
                if self._output is not None:  # standing by or not: its file is the timeline
                    self._output._tick(target)
