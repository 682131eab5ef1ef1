"""One user turn: what was captured, what was sent to which session, and what came back.

A turn is one utterance and everything the service does about it, which may be several
responses: one that calls functions, then (once their results are in) the one that answers. Only
the last ends the turn; the journal record, timings and carry-over describe the utterance and its
final answer. Kept apart from the state machine so the bookkeeping (what to resend after a
reconnect, which timings to report) reads on its own. All of it lives on the conversation thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omnid import protocol
from omnid.models import WIRE_INPUT_RATE
from omnid.tools import Invocation

# ~100 ms per append is the documented habit; the tail is flushed at release whatever its size.
APPEND_SAMPLES = WIRE_INPUT_RATE // 10


@dataclass
class CallLedger:
    """Every function call of one turn, by what it asks (`Invocation.key`): each ask runs at
    most once per turn, even when the turn is asked again after a dropped connection and the
    service calls the same tool with the same arguments under a new call id."""

    keys: dict[str, str] = field(default_factory=dict)  # call id → key, of every call handled
    started: set[str] = field(default_factory=set)  # keys handed to the tools
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # key → (outcome, output)
    counted: int = 0  # calls that count against tools.max_calls_per_turn

    def running(self, key: str) -> bool:
        return key in self.started and key not in self.outcomes


@dataclass
class Turn:
    number: int
    mode: str
    started_t: float
    blocks: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    sent_blocks: int = 0  # blocks[:sent_blocks] are in the service's buffer of `sent_session`
    sent_session: str = ""
    released_t: float | None = None
    commit_pending: bool = False
    commit_sent_t: float | None = None
    response_requested: bool = False
    response_id: str = ""  # the response now running (the turn's latest)
    responses: int = 0  # responses of this turn that have ended (each done before the next)
    calls: list[protocol.FunctionCall] = field(default_factory=list)  # asked for, unanswered
    results: dict[str, str] = field(default_factory=dict)  # call id → output, in so far
    ledger: CallLedger = field(default_factory=CallLedger)  # survives a replay after a drop
    confirming: list[Invocation] = field(default_factory=list)  # waiting for the owner's press
    confirm_deadline: float = 0.0  # when the first of them gives up
    create_sent_t: float | None = None  # the turn's latest response.create (after results)
    create_retried: bool = False  # that response.create was sent a second time
    response_done: bool = False
    audio_done: bool = False  # the answer's last audio arrived (response.done may not follow)
    first_audio_t: float | None = None  # first audio delta received
    first_played_t: float | None = None  # its first sample handed to the device
    last_audio_t: float | None = None  # the latest audio delta received
    cancelled: bool = False
    retried: bool = False
    item_id: str = ""  # the user's conversation item, to match its late transcript
    user_text: str = ""
    assistant_text: str = ""

    @property
    def audio_s(self) -> float:
        return self.samples / WIRE_INPUT_RATE

    def add(self, pcm: np.ndarray) -> None:
        self.blocks.append(pcm)
        self.samples += len(pcm)

    def forget_audio(self) -> None:
        """The turn is over: its audio was kept to send it again after a dropped connection,
        which can no longer happen. The history keeps fifty finished turns for their words, and
        with their audio they held ~6 MB more than the box needs (a two-hour soak's growth)."""
        self.blocks = []
        self.sent_blocks = 0

    def unsent(self, session_id: str) -> np.ndarray:
        """Audio the service of `session_id` has not got yet (all of it, for a new session)."""
        if session_id != self.sent_session:
            self.sent_session = session_id
            self.sent_blocks = 0
        if self.sent_blocks >= len(self.blocks):
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self.blocks[self.sent_blocks :])

    def add_call(self, call: protocol.FunctionCall) -> None:
        if call.call_id and all(c.call_id != call.call_id for c in self.calls):
            self.calls.append(call)

    def next_response(self) -> None:
        """The running response ended asking for more (function calls): the next one is the
        turn's, and starts once the results are in."""
        self.responses += 1
        self.response_requested = False
        self.response_id = ""
        self.response_done = False
        self.audio_done = False
        self.assistant_text = ""  # the record and the carry-over keep the final answer's words
        self.create_sent_t = None
        self.create_retried = False

    def mark_sent(self) -> None:
        self.sent_blocks = len(self.blocks)

    def forget_sent(self) -> None:
        """The session that held our audio is gone: everything must go again."""
        self.sent_session = ""
        self.sent_blocks = 0
        self.commit_sent_t = None
        self.response_requested = False
        self.response_id = ""
        self.responses = 0
        self.calls.clear()
        self.results.clear()
        self.confirming.clear()  # never run: the replayed call asks again
        self.create_sent_t = None
        self.create_retried = False
        self.response_done = False
        self.audio_done = False
        self.first_audio_t = None
        self.first_played_t = None
        self.last_audio_t = None
        self.assistant_text = ""

    def ms(self, start: float | None, end: float | None) -> float | str:
        if start is None or end is None:
            return ""
        return round((end - start) * 1000, 1)

    def record_fields(self, outcome: str, session_id: str, now: float) -> dict[str, Any]:
        """The `turn` journal record's fields (see the README), timings in milliseconds."""
        return {
            "OUTCOME": outcome,
            "MODE": self.mode,
            "TURN": self.number,
            "SESSION": session_id,
            "RESPONSE": self.response_id,
            "SPEECH_MS": round(self.audio_s * 1000),
            "COMMIT_MS": self.ms(self.released_t, self.commit_sent_t),
            "FIRST_AUDIO_MS": self.ms(self.commit_sent_t, self.first_audio_t),
            "PLAY_MS": self.ms(self.first_audio_t, self.first_played_t),
            "TOTAL_MS": self.ms(self.started_t, now),
        }
