"""What the service says, handled on the conversation thread: speech edges, the answer's audio
and transcripts, `response.done`, errors — and the speaker's own events.

A mixin of `Conversation`, split out because this half reacts to the service while the other
half acts for the user; both share the conversation's state and run on its one thread.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from omnid import events as ev
from omnid import protocol
from omnid.turn import Turn
from omnid.usage import record_usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from omnid.config import Config
    from omnid.devices import Output
    from omnid.diskwriter import DiskWriter
    from omnid.quota import DailyBudget
    from omnid.session import Session
    from omnid.supervisor import Journal
    from omnid.uplink import Uplink

log = logging.getLogger("omnid.conversation")

CONFIRM_MARGIN_S = 1.0  # audio sent this shortly before a server event may still be in flight


class ServiceEvents:
    cfg: Config
    speaker: Output
    journal: Journal
    session: Session
    uplink: Uplink
    state: str
    turn: Turn | None
    vad: bool
    history: deque[Turn]
    _dead: deque[str]
    _active: set[str]
    _disowned_answer: bool
    budget: DailyBudget
    disk: DiskWriter

    # Provided by Conversation.
    def _new_turn(self, t: float) -> Turn:
        raise NotImplementedError

    def _interrupt(self) -> None: ...
    def _swap(self) -> None: ...
    def _cancel_active(self) -> None: ...
    def _on_session_ready(self) -> None: ...
    def _finish(self, turn: Turn, outcome: str, why: str = "") -> None: ...
    def _lose(self, turn: Turn, why: str) -> None: ...

    # Provided by Vision, which comes after this class in Conversation's bases: a stub here would
    # shadow it, so it is only declared for the type checker.
    vision: Callable[[str], None]
    _earcon_drained: Callable[[float], None]  # DeviceInterface's, likewise

    def _on_server(self, msg: ev.LinkMessage) -> None:
        if msg.link is self.session.next:
            self.session.on_message(msg.link, msg.event)  # a rollover successor, configuring
            if self.session.next_ready and not self.session.ready:
                self._swap()  # the current session is gone: no reason to wait for a boundary
            return
        if msg.link is not self.session.link:
            return  # a late event from a link we already left
        event = msg.event
        if self.vad:  # the service is alive: what it was sent well before now, it has heard
            self.uplink.confirm(msg.t - CONFIRM_MARGIN_S)
        if self.session.on_message(msg.link, event):
            self._on_session_ready()
            return
        turn = self.turn
        match event:
            case protocol.AudioDelta():
                if turn is not None and self._current_response(turn, event.response_id):
                    self._play(turn, event, msg.t)
            case protocol.SpeechStarted():
                self._on_speech_started(event, msg.t)
            case protocol.SpeechStopped():
                if turn is not None and self.vad and self.state == "listening":
                    turn.released_t = turn.commit_sent_t = msg.t  # the service commits now
                    turn.response_requested = True  # and answers on its own
                    self.state = "thinking"
                    self.vision("turn_end")
            case protocol.Committed():
                if self.vad:
                    self.vision("commit")
                if turn is not None and not turn.item_id:
                    turn.item_id = event.item_id
            case protocol.ResponseCreated():
                self._active.add(event.response_id)
                if event.response_id in self._dead:
                    return
                if not self.vad and (
                    turn is None
                    or not turn.response_requested
                    or turn.response_id not in ("", event.response_id)
                ):
                    self._cancel_active()  # push-to-talk asked for none: nothing may speak
                    return
                if turn is None and self.vad and self._disowned_answer:
                    self._disowned_answer = False
                    self._cancel_active()
                    return
                if turn is None and self.vad:  # an answer without a speech_started we saw
                    turn = self._new_turn(msg.t)
                    turn.response_requested, self.state = True, "thinking"
                if turn is not None and turn.response_requested and not turn.response_id:
                    turn.response_id = event.response_id
            case protocol.TranscriptDelta():
                if turn is not None and self._current_response(turn, event.response_id):
                    turn.assistant_text += event.delta
            case protocol.TranscriptDone():
                if turn is not None and self._current_response(turn, event.response_id):
                    turn.assistant_text = event.transcript or turn.assistant_text
            case protocol.InputTranscriptDelta():
                log.debug("hearing: %s", event.text + event.stash)
            case protocol.InputTranscriptCompleted():
                # Arrives asynchronously, possibly after the answer: match it by item.
                for past in (turn, *self.history):
                    if past is not None and (past.item_id == event.item_id or not past.item_id):
                        past.user_text = event.transcript
                        break
            case protocol.AudioDone():
                if turn is not None and self._current_response(turn, event.response_id):
                    turn.audio_done = True
                    self.speaker.play(np.zeros(0, np.int16), last=True)  # resampler tail
            case protocol.ResponseDone():
                self._active.discard(event.response_id)
                self._on_response_done(event)
            case protocol.Error():
                self._on_error(event)
            case protocol.Unknown():
                log.debug("ignoring server event %s", event.type)

    def _on_speech_started(self, event: protocol.SpeechStarted, t: float) -> None:
        """The service heard the user begin. Over the answer, that is a barge-in: the speaker
        goes quiet at once, and the service (which also stops on its own) gets one cancel."""
        turn = self.turn
        if not self.vad or (turn is not None and turn.retried and not turn.response_id):
            return  # (the second case: the service hearing our replay of a dropped turn)
        self._disowned_answer = False  # a new utterance: whatever comes now answers it
        if self.state in ("thinking", "speaking"):
            self._interrupt()
        if self.state != "listening":
            self._new_turn(t).item_id = event.item_id
            self.state = "listening"
            self.vision("turn_start")

    def _current_response(self, turn: Turn, response_id: str) -> bool:
        if turn.cancelled or not turn.response_requested or response_id in self._dead:
            return False
        return not turn.response_id or not response_id or response_id == turn.response_id

    def _play(self, turn: Turn, delta: protocol.AudioDelta, t: float) -> None:
        turn.last_audio_t = t
        if turn.first_audio_t is None:
            turn.first_audio_t = t
        if self.state == "thinking":
            self.state = "speaking"
        if delta.pcm:
            self.uplink.guard.started()
            self.speaker.play(np.frombuffer(delta.pcm, dtype="<i2"))

    def _on_response_done(self, done: protocol.ResponseDone) -> None:
        turn = self.turn
        mine = turn is not None and self._current_response(turn, done.response_id)
        first_ms: float | str = ""
        if turn is not None and mine:
            first_ms = turn.ms(turn.commit_sent_t, turn.first_audio_t)
            turn.usage_tokens = done.usage.total_tokens
        record_usage(self.journal, self.cfg.api.model, self.session.session_id, done, first_ms)
        save = self.budget.add(done.usage.total_tokens)
        if save is not None:
            self.disk.submit("usage-today", save)
        if turn is None or not mine or turn.cancelled:
            return
        turn.response_done = True
        if done.status not in ("completed", ""):
            log.warning("response %s ended %s", done.response_id, done.status)
        if self.state == "thinking" or self.speaker.queued_s <= 0:
            self._finish(turn, "answered")

    def _on_error(self, error: protocol.Error) -> None:
        if error.no_active_response:
            self._active.clear()
            log.debug("service: %s (expected after a cancel)", error.message)
            return
        if error.idle_close:
            log.info("service closed the idle session: %s", error.message)
            return
        log.warning(
            "service error %s: %s (param %s)",
            error.code or error.error_type,
            error.message,
            error.param or "-",
        )
        turn = self.turn
        if turn is not None and self.state == "thinking" and not turn.response_id:
            self._lose(turn, f"the service refused the turn: {error.message}")

    def _on_speaker(self, event: ev.SpeakerEvent) -> None:
        turn = self.turn
        if event.kind == "drained":
            self.uplink.guard.drained(event.t)
            self._earcon_drained(event.t)
        if turn is None:
            return
        if event.kind == "started" and turn.first_played_t is None and turn.first_audio_t:
            turn.first_played_t = event.t
        elif event.kind == "drained" and self.state == "speaking" and turn.response_done:
            self._finish(turn, "answered")
