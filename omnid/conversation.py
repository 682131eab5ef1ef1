"""The turn state machine: one thread, one queue, no locks.

States: idle → listening → thinking → speaking → idle, with offline/connecting reported from the
session while idle. Every input arrives as an event on the inbox; timers run from `tick()` driven
by the injected clock, so the machine can be tested by feeding events with a fake clock.

The conversation owns the turn and decides; its collaborators own the rest, and are given to it
at construction: the session (links, rollover), the mode (when the microphone reaches the service
and what ends a turn), the uplink (hands-free streaming), playback (speaker, earcons, the
microphone's masks, volume), the service's running responses, the vision (camera frames), the
function calls of the turn, the daily budget, and the feedback seam that the LED, earcons,
STATUS and journal subscribe to. A turn is one utterance and may take several responses
(function calls, then the answer); only the last ends it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from omnid import events as ev
from omnid import protocol
from omnid.alarm import Alarm
from omnid.calls import Calls, spoke_markup
from omnid.config import Config
from omnid.control import answer
from omnid.devices import AudioDevices
from omnid.diskwriter import DiskWriter
from omnid.feedback import Feedback
from omnid.health import Health
from omnid.micfeed import MicQueue, PreRoll
from omnid.micsleep import MicSleep
from omnid.models import WIRE_INPUT_RATE
from omnid.modes import MODES, Mode
from omnid.playback import Playback
from omnid.quota import DailyBudget
from omnid.responses import ServiceResponses
from omnid.session import Session
from omnid.settings import Settings
from omnid.status import Status
from omnid.supervisor import Journal, Notifier
from omnid.testhooks import TestHooks
from omnid.timers import Timers
from omnid.turn import Turn
from omnid.uplink import Uplink
from omnid.usage import record_usage
from omnid.vision import Vision
from omnid.wake import WakeListener
from omnid.wakewindow import WakeWindow

log = logging.getLogger("omnid.conversation")

TICK_S = 0.1
IDLE_TICK_S = 1.0  # the microphone asleep, nothing ringing: what is left to time is seconds-coarse
MIN_TURN_S = 0.3  # a shorter press is a tap (or a bump of the button), not speech
RESPONSE_TIMEOUT_S = 20.0  # commit sent, nothing back: the answer is not coming
OFFLINE_TURN_TIMEOUT_S = 30.0  # released while offline: give up after this long
CONFIRM_MARGIN_S = 1.0  # audio sent this shortly before a server event may still be in flight
PRE_ROLL_S = 3.0  # recent microphone audio kept for a turn that opens after its first words
CREATE_RETRY_S = 5.0  # results sent, no response.created: ask again (once) after this long
LONG_PRESS_S = 2.0  # wake mode: a press held this long mutes (or unmutes) the microphone


class Conversation:
    def __init__(
        self,
        settings: Settings,
        inbox: ev.Inbox,
        session: Session,
        playback: Playback,
        uplink: Uplink,
        vision: Vision,
        mic: MicQueue,
        feedback: Feedback,
        health: Health,
        budget: DailyBudget,
        calls: Calls,
        timers: Timers,
        alarm: Alarm,
        journal: Journal,
        notifier: Notifier,
        disk: DiskWriter,
        history: deque[Turn],
        clock: Callable[[], float],
        devices: AudioDevices | None = None,
        hooks: TestHooks | None = None,
        listener: WakeListener | None = None,
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.session = session
        self.playback = playback
        self.uplink = uplink
        self.vision = vision
        self.mic = mic
        self.feedback = feedback
        self.health = health
        self.budget = budget
        self.calls = calls
        self.timers = timers
        self.alarm = alarm
        self.journal = journal  # usage records (turn records go through the feedback seam)
        self.notifier = notifier
        self.disk = disk
        self.history = history  # finished turns, for the carry-over into the next session
        self.clock = clock
        self.devices = devices
        self.hooks = hooks
        self.listener = listener  # wake mode's detector (it hears what is played, too)
        self.mode: Mode = MODES[settings.current.session.mode]  # restart-only: fixed
        self.window = WakeWindow(settings, feedback, clock)
        self.mic_sleep = MicSleep(devices, health)
        self.responses = ServiceResponses()
        self.pre_roll = PreRoll(PRE_ROLL_S)
        self.status_report = Status(
            session,
            uplink,
            health,
            budget,
            feedback,
            timers,
            calls.tools,
            clock,
            self.window if self.mode.gated else None,
        )
        self.state = "idle"  # idle | listening | thinking | speaking
        self.turn: Turn | None = None
        self.turns = 0
        self.running = False
        self._last_tick = 0.0
        self._wait_key: tuple[int, bool, bool, int] | None = None  # what the thinking clock times
        self._wait_since = 0.0
        self._disowned_answer = False  # the next unasked-for answer belongs to a lost turn
        self._tools_changed = False  # an MCP server's tools came or went since the last update
        self._declared: list[dict[str, Any]] = []  # the tools the current session was given
        self._pressed_t: float | None = None  # wake mode: when the button went down

    @property
    def cfg(self) -> Config:
        return self.settings.current

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        self.running = True
        self.session.connect_now()
        self._status()
        while self.running:
            tick_s = TICK_S
            # Coarse ticks only while nothing is in the air: offline, the outage notice is due
            # 3 s after the loss and the next reconnect at its moment, to the tick.
            if self.mic_sleep.asleep and not self.alarm.active and self.session.ready:
                tick_s = max(TICK_S, min(IDLE_TICK_S, self.health.longest_tick_s))
            # Until the next tick is due, not a whole tick from the last event: the microphone's
            # batches come every 100 ms too, and a wait restarted by each would wake the loop
            # twice per tick.
            wait = max(0.0, self._last_tick + tick_s - self.clock())
            due_in = self.timers.next_due_in()
            event = self.inbox.get(timeout=wait if due_in is None else min(wait, due_in))
            if event is not None:
                self.handle(event)
            self.ring_due()  # a timer rings on time, not at the next tick
            now = self.clock()
            if now - self._last_tick >= tick_s:
                self._last_tick = now
                self.tick(now)
        self.session.close()
        self.disk.flush()

    def handle(self, event: ev.Event) -> None:
        try:
            self._dispatch(event)
        except Exception:  # one bad event must not end the conversation
            log.exception("error handling %s", type(event).__name__)

    def _dispatch(self, event: ev.Event) -> None:
        match event:
            case ev.MicReady():
                self._take_mic(event.upto)
                return  # audio cannot change what STATUS or the LED show; tick() refreshes them
            case ev.LinkMessage():
                self._on_server(event)
            case ev.SpeakerEvent():
                self._on_speaker(event)
            case ev.Wake():
                self.wake(event)
            case ev.WakeSpeech():
                if self.mode.gated and self.window.speech():
                    self.uplink.open_with(self.pre_roll.since(event.start_t), masks=False)
            case ev.Press():
                self.press(event.t)
            case ev.Release():
                self.release(event.t)
            case ev.Tap():
                self.tap(event.t)
            case ev.ControlRequest():
                if self.hooks is None or not self.hooks.handle(event):
                    answer(self, event)
            case ev.FunctionResult():
                self._on_function_result(event)
            case ev.LinkUp():
                self.session.on_link_up(event.link)
            case ev.LinkFailed():
                self.session.on_link_failed(event.error, event.link)
            case ev.LinkClosed():
                if self.session.on_closed(event.link, event.code, event.reason):
                    self._on_session_lost()
                    if self.session.next_ready:  # mid-rollover: the successor takes over now
                        self._swap()
            case ev.Stop():
                log.info("stopping (%s)", event.reason)
                self.running = False  # first: nothing after this may keep the loop alive
                self.notifier.stopping()
            case ev.Reload():
                if not self.settings.read_update():
                    self.notifier.ready()  # reported; the running configuration stays
            case ev.ToolsChanged():
                self._tools_changed = True  # declared again at the next idle moment
            case ev.Frame():
                self.vision.offer(event)
            case ev.AudioLost():
                self._on_audio_lost(event.reason)
            case ev.AudioRetry():
                self.health.audio_retry(event.reason, event.delay_s)
            case ev.AudioReady():
                self.playback.use(event.speaker)
                self.health.audio_back()
        self._status()

    def ring_due(self) -> None:
        """Due timers ring — once the conversation is idle: never over the user or an answer."""
        for timer in self.timers.due():
            self.alarm.due(timer)
        self.alarm.tick(idle=self.turn is None and self.state == "idle")

    def tick(self, now: float) -> None:
        self._status()  # the clock moves STATUS too ("retrying in 8 s", "session 37 min")
        self.ring_due()
        self.session.tick(now)
        idle = self.turn is None and self.state == "idle" and not self.alarm.active
        self.mic_sleep.tick(now, self.mode.mic_sleeps and idle)
        self.health.tick(now)
        self.vision.tick()
        if self.mode.gated and self.window.expired(now):
            self.uplink.shut()
        turn = self.turn
        if turn is None:
            if self.settings.pending is not None:
                self._apply_reload()
            elif self._tools_changed and self.session.ready:
                self._tools_changed = False
                declared = self.calls.tools.declared(self.cfg)
                if declared != self._declared:  # a server retrying changes nothing on offer
                    self._declared = declared
                    log.info("the tools on offer changed: the session is told")
                    self.session.reconfigure()
            elif self.session.next_ready:
                self._swap()  # rollover, at a turn boundary
            elif self.session.rollover_due(now):
                self.session.start_rollover()
            return
        if self.state == "listening" and now - turn.started_t >= self.cfg.audio.max_turn_s:
            if self.mode.overlong == "lose":
                self._lose(turn, "the service heard no end of speech")
                # It will still answer that speech once it ends: that answer is the lost
                # turn's, and must not play after the error tone as a turn of its own.
                self._disowned_answer = True
            elif turn.released_t is None:
                log.warning(
                    "turn %d held past max_turn_s (%.0f s): sending it",
                    turn.number,
                    self.cfg.audio.max_turn_s,
                )
                self.release(now)
        elif self.state == "thinking":
            if self.calls.tick(turn, now) and not turn.response_requested:
                self._send_results(turn)
            self._thinking_timeouts(turn, now)
        elif self.state == "speaking" and self.playback.queued_s <= 0:
            # response.done may never follow the audio — unless calls are announced: those run
            # once it does.
            if turn.response_done or (turn.audio_done and not turn.calls):
                self._answered_or_next(turn)
            elif turn.last_audio_t is not None and now - turn.last_audio_t > RESPONSE_TIMEOUT_S:
                self._lose(turn, "the answer stopped coming")

    def _thinking_timeouts(self, turn: Turn, now: float) -> None:
        """Every wait for the service ends: the clock starts when the wait does (the release,
        the service's commit, a replay after a drop, each further response), so no turn can
        wait for ever."""
        key = (turn.number, turn.retried, turn.commit_pending, turn.responses)
        if key != self._wait_key:
            self._wait_key, self._wait_since = key, now
        waited = now - self._wait_since
        if turn.commit_pending:
            if waited > OFFLINE_TURN_TIMEOUT_S:
                self._lose(turn, f"offline for {OFFLINE_TURN_TIMEOUT_S:.0f} s after release")
        elif turn.calls and not turn.response_requested:  # the tools are at work
            if waited > self.calls.patience_s():
                self._lose(turn, "the functions the model called did not finish")
        elif turn.create_sent_t is not None and not turn.response_id:
            self._follow_up_timeouts(turn, now)
        elif waited > RESPONSE_TIMEOUT_S:
            self._lose(turn, "no answer from the service")

    def _follow_up_timeouts(self, turn: Turn, now: float) -> None:
        """The results went out with a `response.create`, and no response has started. The
        service is reported to drop one that races its own transcription, and refuses one
        while the user speaks: ask once more, then give up."""
        assert turn.create_sent_t is not None
        if now - turn.create_sent_t < CREATE_RETRY_S:
            return
        if turn.create_retried:
            self._lose(turn, "the service did not answer after the function results")
            return
        log.warning("turn %d: no response after the function results; asking again", turn.number)
        turn.create_retried, turn.create_sent_t = True, now
        self._request_response(turn)

    # ------------------------------------------------------------------ user actions

    def press(self, t: float) -> None:
        self.mic_sleep.wake(self.clock())  # first: the turn's audio starts at the press
        if self.alarm.stop("a press"):
            return  # the press silenced a ringing timer; it starts no turn
        if self.calls.confirm(self.turn):
            return  # the press confirmed a waiting command; it starts no turn
        if self.budget.exhausted and self.state == "idle":
            self._refuse(t)
            return
        self._pressed_t = t
        if self.state in ("thinking", "speaking"):
            self._interrupt()  # over the answer: stop it (push-to-talk then listens)
            if self.mode.press == "mute":
                return
        elif self.mode.press == "mute":
            if self.state == "idle":
                self._mute(not self.uplink.muted)
            return
        if self.state == "listening":
            return
        if self.mode.press == "wake":
            if not self.uplink.muted:  # a long press (the release decides) unmutes
                self.window.press(t)
                self.uplink.open_with(self.pre_roll.since(t), masks=True)
            return
        self._open_turn(t)
        self.feedback.cue("listening", t)  # capture runs from the press; the earcon is masked
        if not self.session.ready:
            self.session.connect_now(user=True)  # a press while offline tries at once

    def _new_turn(self, t: float) -> Turn:
        self.turns += 1
        self.turn = Turn(self.turns, self.mode.name, t)
        return self.turn

    def _open_turn(self, t: float, item_id: str = "") -> Turn:
        turn = self._new_turn(t)
        turn.item_id = item_id
        for block in self.pre_roll.take(self.mode.pre_roll_s, before=t):
            turn.add(block.pcm)
        self.state = "listening"
        self.vision.turn_start()
        return turn

    def release(self, t: float) -> None:
        pressed, self._pressed_t = self._pressed_t, None
        if self.mode.press == "wake" and pressed is not None and self.state != "listening":
            if t - pressed >= LONG_PRESS_S:
                self._mute(not self.uplink.muted)
            return
        turn = self.turn
        if turn is None or self.state != "listening" or self.mode.service_detects_turns:
            return
        if turn.released_t is None:
            turn.released_t = t
        t = turn.released_t
        self._take_mic(None)  # the end of the utterance, already captured: with the commit
        if turn.audio_s < MIN_TURN_S:
            log.info("press of %.2f s ignored (shorter than %.1f s)", turn.audio_s, MIN_TURN_S)
            self.turn, self.state = None, "idle"
            self.turns -= 1  # a tap is not a turn
            return
        self.state = "thinking"
        turn.commit_pending = True
        self.vision.turn_end()
        self.feedback.cue("sent")
        self._commit(turn)

    def wake(self, event: ev.Wake) -> None:
        """The wake word, heard on the box: over an answer it interrupts; the uplink opens once
        speech follows (`WakeSpeech`), with the words said since just before it."""
        if not self.mode.gated or self.uplink.muted:
            return  # muted: the box hears nothing (a detection already on its way is dropped)
        if self.alarm.stop("the wake word"):
            return
        if self.state == "listening":
            return  # the wake word said again inside a turn is part of what is said
        if self.budget.exhausted:
            self._refuse(event.t)
            return
        if self.state in ("thinking", "speaking"):
            self._interrupt()
            self.playback.guard.lift()  # the user is speaking: no echo tail to wait out
        self.window.wake(event.model, event.probability, event.t)
        if not self.session.ready:
            self.session.connect_now(user=True)  # the handshake runs while the user speaks
        self.feedback.cue("woken")

    def _mute(self, muted: bool) -> None:
        """Hands-free and wake mode: the microphone off (or on again); in wake mode the
        detector stops listening too."""
        self.uplink.muted = muted
        if self.listener is not None:
            self.listener.paused = muted
        if muted and self.mode.gated and self.window.awake and self.turn is None:
            self.window.shut()
            self.uplink.shut()
        log.info("microphone %s", "muted" if muted else "unmuted")

    def mute(self, args: list[str]) -> dict[str, Any]:
        """`omnid ctl mute [on|off]` (without an argument: toggle)."""
        if args and args[0] not in ("on", "off"):
            return {"ok": False, "state": self.public_state, "error": "mute takes on or off"}
        self._mute(args[0] == "on" if args else not self.uplink.muted)
        self._status()
        return {"ok": True, "state": self.public_state, "muted": self.uplink.muted}

    def tap(self, t: float) -> None:
        if self.alarm.stop("a tap"):
            return
        if self.state in ("thinking", "speaking"):
            self._interrupt()

    def _send_cancel(self) -> None:
        """Cancel what the service is generating: nothing of it will be played."""
        self.responses.cancel(self.session.send if self.session.ready else None)

    def _interrupt(self) -> None:
        """Stop the answer: silence the speaker now, then tell the service."""
        self.playback.flush()
        turn = self.turn
        if turn is None:
            return
        turn.cancelled = True
        self.responses.disown(turn.response_id)
        if turn.response_requested and not turn.response_done:
            self.session.send(protocol.response_cancel())
            self.responses.cancel(None)
        for call_id, output in self.calls.supersede(turn):  # no response: nothing more is said
            if self.session.ready:
                self.session.send(protocol.function_call_output(call_id, output))
        self._finish(turn, "cancelled")

    # ------------------------------------------------------------------ audio in

    def _take_mic(self, upto: int | None) -> None:
        for block in self.mic.take(upto):
            self._on_mic(block)

    def _on_mic(self, block: ev.MicBlock) -> None:
        self.health.heard(block.t)
        self.pre_roll.add(block)
        if self.budget.exhausted:
            return  # nothing goes to the service until midnight
        pcm = self.uplink.gate(block)
        turn = self.turn
        if self.mode.streams_always:
            if self.mode.gated and not self.window.is_open:
                return  # nothing leaves the box before the wake word
            self.uplink.stream(pcm, block.t)
            if turn is not None and self.state == "listening":
                turn.add(pcm)  # kept for a replay should the link drop before the answer
            return
        if turn is None or self.state != "listening" or block.t <= turn.started_t:
            return  # a block that ended before the press
        begun = block.t - len(pcm) / WIRE_INPUT_RATE
        if turn.released_t is not None and begun >= turn.released_t - 1e-3:
            return  # begun after the release
        turn.add(pcm)
        self.uplink.send_turn(turn, final=False)

    def _commit(self, turn: Turn) -> None:
        if not self.session.ready:
            return  # sent when the session is ready again (buffered in the turn)
        self.uplink.send_turn(turn, final=True)
        if not self.session.send(protocol.audio_commit()):
            return
        turn.commit_sent_t = self.clock()
        turn.commit_pending = False
        self.vision.committed()
        self._request_response(turn)

    def _request_response(self, turn: Turn) -> None:
        self._send_cancel()  # one active response at a time: a stale one goes first
        if self.session.send(protocol.response_create()):
            turn.response_requested = True

    # ------------------------------------------------------------------ the service

    def _on_server(self, msg: ev.LinkMessage) -> None:
        session = self.session
        if msg.link is session.next:
            session.on_message(msg.link, msg.event)  # a rollover successor, configuring
            if session.next_ready and not session.ready:
                self._swap()  # the current session is gone: no reason to wait for a boundary
            return
        if msg.link is not session.link:
            return  # a late event from a link we already left
        event = msg.event
        if self.mode.streams_always:  # the service is alive: it has heard what it got before
            self.uplink.confirm(msg.t - CONFIRM_MARGIN_S)
        if session.on_message(msg.link, event):
            self._on_session_ready()
            return
        turn = self.turn
        match event:
            case protocol.AudioDelta():
                if turn is not None and self._current(turn, event.response_id):
                    self._play(turn, event, msg.t)
            case protocol.SpeechStarted():
                self._on_speech_started(event, msg.t)
            case protocol.SpeechStopped():
                vad = self.mode.service_detects_turns
                if turn is not None and vad and self.state == "listening":
                    turn.released_t = turn.commit_sent_t = msg.t  # the service commits now
                    turn.response_requested = True  # and answers on its own
                    self.state = "thinking"
                    self.vision.turn_end()
            case protocol.Committed():
                if self.mode.service_detects_turns:
                    self.vision.committed()
                if turn is not None and not turn.item_id:
                    turn.item_id = event.item_id
            case protocol.ResponseCreated():
                self._on_response_created(event, msg.t)
            case protocol.TranscriptDelta():
                if turn is not None and self._current(turn, event.response_id):
                    turn.assistant_text += event.delta
            case protocol.TranscriptDone():
                if turn is not None and self._current(turn, event.response_id):
                    turn.assistant_text = event.transcript or turn.assistant_text
                    if spoke_markup(turn.assistant_text):
                        log.warning(
                            "turn %d: the model spoke a tool call instead of making it "
                            "(a known habit of some models); nothing was run",
                            turn.number,
                        )
            case protocol.InputTranscriptDelta():
                log.debug("hearing: %s", event.text + event.stash)
            case protocol.InputTranscriptCompleted():
                # Arrives asynchronously, possibly after the answer: match it by item.
                for past in (turn, *self.history):
                    if past is not None and (past.item_id == event.item_id or not past.item_id):
                        past.user_text = event.transcript
                        break
            case protocol.AudioDone():
                if turn is not None and self._current(turn, event.response_id):
                    turn.audio_done = True
                    self.playback.end_answer()
            case protocol.FunctionCallDone():
                if turn is not None and self._current(turn, event.response_id):
                    turn.add_call(event.call)  # it runs when the response is done
            case protocol.ResponseDone():
                self.responses.done(event.response_id)
                self._on_response_done(event)
            case protocol.Error():
                self._on_error(event)
            case protocol.Unknown():
                log.debug("ignoring server event %s", event.type)

    def _on_speech_started(self, event: protocol.SpeechStarted, t: float) -> None:
        """The service heard the user begin. Over the answer, that is a barge-in: the speaker
        goes quiet at once, and the service (which also stops on its own) gets one cancel."""
        turn = self.turn
        if not self.mode.service_detects_turns:
            return
        if turn is not None and turn.retried and not turn.response_id:
            return  # the service hearing our replay of a dropped turn
        self._disowned_answer = False  # a new utterance: whatever comes now answers it
        if self.state in ("thinking", "speaking"):
            self._interrupt()
        if self.state != "listening":
            if self.mode.gated:
                self.window.turn_started()
            self._open_turn(t, event.item_id)

    def _on_response_created(self, event: protocol.ResponseCreated, t: float) -> None:
        self.responses.created(event.response_id)
        if self.responses.dead(event.response_id):
            return
        turn = self.turn
        mine = turn is not None and turn.response_id in ("", event.response_id)
        if turn is not None and turn.response_requested and mine:
            turn.response_id = event.response_id
            return
        if not self.mode.service_detects_turns:
            self._send_cancel()  # push-to-talk asked for none: nothing may speak
        elif turn is None and self._disowned_answer:
            self._disowned_answer = False
            self._send_cancel()  # the answer to a turn already given up as lost
        elif turn is None:  # hands-free: an answer to speech whose speech_started we missed
            if self.mode.gated:
                self.window.turn_started()
            turn = self._new_turn(t)
            turn.response_requested, turn.response_id = True, event.response_id
            self.state = "thinking"

    def _current(self, turn: Turn, response_id: str) -> bool:
        if turn.cancelled or not turn.response_requested or self.responses.dead(response_id):
            return False
        return not turn.response_id or not response_id or response_id == turn.response_id

    def _play(self, turn: Turn, delta: protocol.AudioDelta, t: float) -> None:
        turn.last_audio_t = t
        if turn.first_audio_t is None:
            turn.first_audio_t = t
        if self.state == "thinking":
            self.state = "speaking"
        pcm = np.frombuffer(delta.pcm, dtype="<i2")
        if self.listener is not None:  # it must know its own voice when the microphone hears it
            self.listener.played(pcm, self.clock() + self.playback.queued_s)
        self.playback.play(pcm)

    def _on_response_done(self, done: protocol.ResponseDone) -> None:
        turn = self.turn
        mine = turn is not None and self._current(turn, done.response_id)
        first_ms: float | str = ""
        if turn is not None and mine:
            first_ms = turn.ms(turn.commit_sent_t, turn.first_audio_t)
        record_usage(self.journal, self.cfg.api.model, self.session.session_id, done, first_ms)
        save = self.budget.add(done.usage.total_tokens)
        if save is not None:
            self.disk.submit("usage-today", save)
        if turn is None or not mine or turn.cancelled:
            return
        turn.response_done = True
        if done.status not in ("completed", ""):
            log.warning("response %s ended %s", done.response_id, done.status)
        for call in done.calls:
            turn.add_call(call)
        if done.status not in ("completed", ""):
            turn.calls.clear()  # an answer cut short asks for nothing
        self.calls.dispatch(turn)
        if self.state == "thinking" or self.playback.queued_s <= 0:
            self._answered_or_next(turn)

    def _answered_or_next(self, turn: Turn) -> None:
        """The running response has ended and played out. It answered the turn, or it called
        functions and the turn goes on with the next response once their results are in."""
        if not turn.calls:
            self._finish(turn, "answered")
            return
        if turn.response_requested:  # the calling response: the turn moves past it
            names = ", ".join(c.name for c in turn.calls)
            log.info("turn %d: response %s called %s", turn.number, turn.response_id, names)
            self.responses.disown(turn.response_id)  # whatever still comes of it is stale
            turn.next_response()
            self.state = "thinking"
        self._send_results(turn)

    def _on_function_result(self, result: ev.FunctionResult) -> None:
        turn = self.turn
        if self.calls.result(turn, result) and turn is not None and not turn.response_requested:
            self._send_results(turn)  # the calling response has ended (and played out)

    def _send_results(self, turn: Turn) -> None:
        """All results in: they go to the service in the order the model called, then the
        turn's next response is asked for."""
        outputs = turn.results
        missing = any(c.call_id not in outputs for c in turn.calls)
        if not turn.calls or missing or not self.session.ready:
            return
        for call in turn.calls:
            self.session.send(protocol.function_call_output(call.call_id, outputs[call.call_id]))
        turn.calls.clear()
        turn.results.clear()
        turn.create_sent_t, turn.create_retried = self.clock(), False
        self._request_response(turn)

    def _on_error(self, error: protocol.Error) -> None:
        if error.no_active_response:
            self.responses.session_gone()
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
        if turn is not None and turn.create_sent_t is not None and not turn.response_id:
            return  # the response after the function results: asked again, or given up, in tick
        if turn is not None and self.state == "thinking" and not turn.response_id:
            self._lose(turn, f"the service refused the turn: {error.message}")

    def _on_speaker(self, event: ev.SpeakerEvent) -> None:
        self.playback.on_speaker(event.kind, event.t)
        turn = self.turn
        if turn is None:
            return
        if event.kind == "started" and turn.first_played_t is None and turn.first_audio_t:
            turn.first_played_t = event.t
        elif event.kind == "drained" and self.state == "speaking" and turn.response_done:
            self._answered_or_next(turn)

    # ------------------------------------------------------------------ session changes

    def _swap(self) -> None:
        self.session.swap()
        self.responses.session_gone()  # the new session has no response running
        self._on_session_ready()

    def _on_session_ready(self) -> None:
        self.vision.reset()  # a new session's buffer is empty
        self._declared = self.calls.tools.declared(self.cfg)
        turn = self.turn
        if self.mode.streams_always:
            if turn is not None and turn.commit_pending:  # a drop cost the answer: replay
                turn.commit_pending = False
                self.uplink.replay(turn.blocks, self.cfg.session.vad.silence_duration_ms)
            self.uplink.resume()
            return
        if turn is None:
            return
        if self.state == "listening":
            self.uplink.send_turn(turn, final=False)
        elif turn.commit_pending:
            self._commit(turn)

    def _on_session_lost(self) -> None:
        self.responses.session_gone()
        if self.mode.streams_always:  # what the service may not have heard goes to the next
            self.uplink.requeue_unconfirmed()
        turn = self.turn
        if turn is None or (self.state == "listening" and not self.mode.service_detects_turns):
            return  # still capturing: the audio is resent to the next session
        if (turn.response_done or turn.audio_done) and not turn.calls:
            turn.response_done = True  # all of the answer is here: let it play out
            if self.state == "thinking" or self.playback.queued_s <= 0:
                self._finish(turn, "answered")
            return
        if self.state == "speaking":
            # Cut off mid-answer: stop the fragment now; the question is asked again below
            # (the whole answer then plays), or the turn is lost with the error tone.
            self.playback.flush()
            self.responses.disown(turn.response_id)
        self.calls.forget_confirmations(turn)
        if self.cfg.session.retry_turn_on_drop and not turn.retried:
            log.info("connection lost mid-turn %d: replaying it in the next session", turn.number)
            turn.retried = True
            turn.forget_sent()
            turn.commit_pending = True
            # Hands-free, the service answers the replayed speech on its own.
            turn.response_requested = self.mode.service_detects_turns
            self.state = "thinking"
            self.session.connect_now(user=True)  # someone is waiting: no backoff wait
            return
        self._lose(turn, "connection lost before the answer")

    def _apply_reload(self) -> None:
        """Swap the reloaded configuration in, at an idle moment: the next turn runs under it."""
        swapped = self.settings.swap()
        if swapped is None:
            return
        how = self.session.adopt(*swapped)
        log.info("reload: applied%s", how)
        self.notifier.ready()

    # ------------------------------------------------------------------ devices

    def _on_audio_lost(self, reason: str) -> None:
        from omnid.devices import SilentSpeaker

        self.health.audio_lost(reason)
        self.playback.flush()
        self.playback.use(SilentSpeaker())
        if self.turn is not None and self.state == "speaking":
            self._finish(self.turn, "lost", "the speaker went away during the answer")
        if self.devices is not None:
            self.devices.reopen(reason)

    # ------------------------------------------------------------------ endings

    def _lose(self, turn: Turn, why: str) -> None:
        log.warning("turn %d lost: %s", turn.number, why)
        self.feedback.cue("error")
        self._finish(turn, "lost", why)

    def _refuse(self, t: float) -> None:
        """Daily token limit reached: the user hears it, the journal records it."""
        why = f"daily token limit of {self.budget.limit} reached ({self.budget.tokens} used)"
        log.warning("turn refused: %s", why)
        self.feedback.cue("error")
        self._finish(self._new_turn(t), "refused", why)

    def _finish(self, turn: Turn, outcome: str, why: str = "") -> None:
        if outcome == "answered" and turn.retried:
            outcome = "retried"
        if outcome == "lost":
            self._send_cancel()  # an answer given up on must not keep running (and billing)
        fields = turn.record_fields(outcome, self.session.session_id, self.clock())
        fields["FRAMES"], fields["IMAGE_TOKENS_EST"] = self.vision.frames.turn_counters()
        if why:
            fields["REASON"] = why
        if self.cfg.log.transcripts:
            fields["USER_TEXT"] = turn.user_text
            fields["ASSISTANT_TEXT"] = turn.assistant_text
        self.feedback.turn(fields, logging.WARNING if outcome == "lost" else logging.INFO)
        turn.forget_audio()
        if turn.user_text or turn.assistant_text or turn.item_id:
            self.history.append(turn)  # for the context carry-over into the next session
        if outcome in ("answered", "retried"):
            self.session.backoff.proved()
        self.turn = None
        self.state = "idle"
        if self.mode.gated:
            self.window.turn_ended(outcome in ("answered", "retried"), self.clock())
            if not self.window.is_open:
                self.uplink.shut()

    # ------------------------------------------------------------------ control and status

    @property
    def shown_state(self) -> str:
        """The state, with wake mode's open window between turns shown as "woken"."""
        if self.state == "idle" and self.mode.gated and self.window.awake:
            return "woken"
        return self.state

    @property
    def public_state(self) -> str:
        return self.status_report.public(self.shown_state)

    def volume(self, args: list[str]) -> dict[str, Any]:
        """`omnid ctl volume [up|down|N]`."""
        error = self.playback.volume(args)
        if error:
            return {"ok": False, "state": self.public_state, "error": error}
        return {"ok": True, "state": self.public_state, "volume": self.playback.volume_pct}

    def status(self) -> dict[str, Any]:
        """`omnid ctl status`."""
        return self.status_report.reply(self.shown_state, self.turns)

    def _status(self) -> None:
        self.status_report.publish(self.shown_state, self.turns)
