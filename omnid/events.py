"""What other threads put on the conversation's inbox (docs/architecture.md).

Every producer (PortAudio callbacks, the socket reader, GPIO, the control socket, signals, timers)
only constructs one of these and calls `Inbox.post`; the conversation thread is the only
consumer and the only owner of state. Each event carries `t`, the monotonic time it happened, so
latencies are measured from the moment of the cause, not from when the loop got round to it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from omnid.link import Link, LinkError
    from omnid.protocol import ServerEvent


def _now() -> float:
    return time.monotonic()


@dataclass(slots=True)
class MicBlock:
    pcm: np.ndarray  # int16 mono at 16 kHz
    t: float


@dataclass(slots=True)
class MicReady:
    """The microphone has queued its `upto`-th block for the conversation (`micfeed.MicQueue`):
    the conversation wakes ten times a second instead of fifty and takes the blocks up to it,
    each with its own capture time for the masks."""

    upto: int
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class FunctionResult:
    """A function the model called has finished (on its own thread): `output` goes back to the
    service as the call's `function_call_output`; `outcome` (ok, error, timeout, refused …) and
    the duration go to the journal."""

    call_id: str
    output: str
    outcome: str = "ok"
    duration_ms: float = 0.0
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class SpeakerEvent:
    kind: str  # "started" | "drained"
    t: float


@dataclass(slots=True)
class Wake:
    """The wake word, heard on the box (`wake.WakeListener`) at `t` (capture time): an answer
    stops; the box waits for speech after it."""

    model: str
    probability: float
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class WakeSpeech:
    """Speech followed the wake word: the uplink opens with the audio captured since
    `start_t` (just before the phrase, or before the question after a pause)."""

    start_t: float
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class Press:
    source: str = "ctl"
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class Release:
    source: str = "ctl"
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class Tap:
    source: str = "ctl"
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class ControlRequest:
    """A control-socket command; `reply` is called once, from the conversation thread."""

    command: str
    args: list[str]
    reply: Callable[[dict[str, Any]], None]
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class LinkMessage:
    link: Link
    event: ServerEvent
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class LinkClosed:
    link: Link
    code: int | None
    reason: str
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class LinkUp:
    link: Link
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class LinkFailed:
    error: LinkError
    link: Link | None = None
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class Stop:
    reason: str = "SIGTERM"
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class Reload:
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class ToolsChanged:
    """An MCP server came, went, or changed its tools: the session's tool list is sent again
    at the next idle moment."""

    t: float = field(default_factory=_now)


@dataclass(slots=True)
class Frame:
    """A camera frame, already JPEG-encoded within the service's limits, off the conversation
    thread (a slow camera must not delay audio)."""

    jpeg: bytes
    width: int
    height: int
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class CameraTrouble:
    """The camera failed or stalled; the conversation carries on audio-only."""

    reason: str
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class AudioLost:
    """A device stopped on its own (unplugged, failing): reopen it."""

    reason: str
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class AudioRetry:
    """A reopen attempt failed; the next comes after `delay_s`."""

    reason: str
    delay_s: float
    t: float = field(default_factory=_now)


@dataclass(slots=True)
class AudioReady:
    """Both devices (re)opened and started by the reopen worker."""

    mic: Any
    speaker: Any
    t: float = field(default_factory=_now)


Event = (
    MicReady
    | FunctionResult
    | SpeakerEvent
    | Wake
    | WakeSpeech
    | Press
    | Release
    | Tap
    | ControlRequest
    | LinkMessage
    | LinkClosed
    | LinkUp
    | LinkFailed
    | Stop
    | Reload
    | ToolsChanged
    | Frame
    | CameraTrouble
    | AudioLost
    | AudioRetry
    | AudioReady
)


class Inbox:
    """The conversation's queue. Built first, so every part that posts to it can be given its
    `post` at construction."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def post(self, event: Event) -> None:
        """The only entry point for other threads: never blocks."""
        self.queue.put_nowait(event)

    def get(self, timeout: float) -> Event | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_nowait(self) -> Event | None:
        try:
            return self.queue.get_nowait()
        except queue.Empty:
            return None
