"""The turn state machine: one thread, one queue, no locks (design.md, "Inside").

States: idle → listening → thinking → speaking → idle, with offline/connecting reported from the
session while idle. Every input arrives as an event on `self.queue`; timers run from `tick()`
driven by the injected clock, so the machine can be tested by feeding events with a fake clock.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from omnid import events as ev
from omnid import protocol
from omnid.config import Config
from omnid.control import answer
from omnid.devices import Output
from omnid.diskwriter import DiskWriter
from omnid.earcons import Earcons
from omnid.interface import DeviceInterface
from omnid.models import WIRE_INPUT_RATE
from omnid.quota import DailyBudget
from omnid.replies import ServiceEvents
from omnid.session import Session, carry_over_instructions
from omnid.supervisor import Journal, Notifier, Watchdog
from omnid.turn import APPEND_SAMPLES, Turn
from omnid.upkeep import Upkeep
from omnid.uplink import Uplink
from omnid.vision import Vision
from omnid.volume import default_state_dir

log = logging.getLogger("omnid.conversation")

TICK_S = 0.1
MIN_TURN_S = 0.3  # a shorter press is a tap (or a bump of the button), not speech
RESPONSE_TIMEOUT_S = 20.0  # commit sent, nothing back: the answer is not coming
OFFLINE_TURN_TIMEOUT_S = 30.0  # released while offline: give up after this long
HISTORY_TURNS = 50  # the most `session.carry_over_turns` allows; a reload may raise it


class Conversation(ServiceEvents, Upkeep, DeviceInterface, Vision):
    def __init__(
        self,
        cfg: Config,
        speaker: Output,
        journal: Journal,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.speaker = speaker
        self.journal = journal
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.queue: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()
        self.session = Session(cfg, self.post, journal, clock)
        self.session.instructions = self._instructions
        self.state = "idle"  # idle | listening | thinking | speaking
        self.vad = cfg.session.mode == "vad"
        self.uplink = Uplink(cfg.audio.echo_guard, cfg.audio.echo_tail_ms, cfg.audio.max_turn_s)
        self.history: deque[Turn] = deque(maxlen=HISTORY_TURNS)
        self._dead: deque[str] = deque(maxlen=8)  # responses we cancelled: ignore their tail
        self.turn: Turn | None = None
        self.turns = 0
        self.running = False
        self._last_tick = 0.0
        self.earcons = Earcons.generate()
        self.led: Any = None  # the daemon attaches the LED and the volume store
        self.volume_store: Any = None
        self.volume_pct = cfg.audio.output_volume
        self._shown = ""
        self._announced_offline = False
        self._offline_since: float | None = None
        self.watchdog = Watchdog.from_env()
        self.last_mic_t = clock()
        self.mic_missing = False
        self.mic: Any = None  # set by the daemon, with the device keeper
        self.devices: Any = None
        self.audio_trouble = ""
        self._pending_cfg: Config | None = None
        self._wait_key: tuple[int, bool, bool] | None = None  # what the thinking clock times
        self._wait_since = 0.0
        self._active: set[str] = set()  # the service's responses running in this session
        self._disowned_answer = False  # the next unasked-for answer belongs to a lost turn
        self.budget = DailyBudget(cfg.usage.daily_token_limit, default_state_dir())
        self.disk = DiskWriter()  # state files: never written on this thread
        self.camera: Any = None  # opened by open_camera(): a feed and its FramePolicy
        self.frames: Any = None

    def _instructions(self) -> str:
        """What a new session is told, from the configuration in force now (a reload swaps it)."""
        keep = self.cfg.session.carry_over_turns
        return carry_over_instructions(
            self.cfg.session.instructions, list(self.history)[-keep:] if keep else []
        )

    def post(self, event: ev.Event) -> None:
        """The only entry point for other threads: never blocks."""
        self.queue.put_nowait(event)

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        self.running = True
        self.session.connect_now()
        self._status()
        while self.running:
            try:
                event: ev.Event | None = self.queue.get(timeout=TICK_S)
            except queue.Empty:
                event = None
            if event is not None:
                self.handle(event)
            now = self.clock()
            if now - self._last_tick >= TICK_S:
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
            case ev.MicBatch():
                for block in event.blocks:
                    self._on_mic(block)
                if self.devices is not None:
                    self.devices.batcher.handled()
                turn = self.turn
                if turn is not None and turn.released_t is not None and self.state == "listening":
                    self.release(turn.released_t)  # the batch it waited for is in
                return  # audio cannot change what STATUS or the LED show; tick() refreshes them
            case ev.MicBlock():
                self._on_mic(event)
                return
            case ev.LinkMessage():
                self._on_server(event)
            case ev.SpeakerEvent():
                self._on_speaker(event)
            case ev.Press():
                self.press(event.t)
            case ev.Release():
                self.release(event.t)
            case ev.Tap():
                self.tap(event.t)
            case ev.ControlRequest():
                if not self._test_hook(event):
                    answer(self, event)
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
                self._on_reload()
            case ev.Frame():
                self.on_frame(event)
            case ev.AudioLost():
                self._on_audio_lost(event.reason)
            case ev.AudioRetry():
                self._on_audio_retry(event)
            case ev.AudioReady():
                self._on_audio_ready(event)
        self._status()

    def tick(self, now: float) -> None:
        self._status()  # the clock moves STATUS too ("retrying in 8 s", "session 37 min")
        self.session.tick(now)
        self._watchdog_tick(now)
        self.vision_tick()
        turn = self.turn
        if turn is None:
            if self._pending_cfg is not None:
                self._apply_reload()
            elif self.session.next_ready:
                self._swap()  # rollover, at a turn boundary
            elif self.session.rollover_due(now):
                self.session.start_rollover()
            return
        if self.state == "listening" and self.vad:
            if now - turn.started_t >= self.cfg.audio.max_turn_s:
                self._lose(turn, "the service heard no end of speech")
                # It will still answer that speech once it ends: that answer is the lost
                # turn's, and must not play after the error tone as a turn of its own.
                self._disowned_answer = True
        elif (
            self.state == "listening"
            and turn.released_t is None
            and now - turn.started_t >= self.cfg.audio.max_turn_s
        ):
            log.warning(
                "turn %d held past max_turn_s (%.0f s): sending it",
                turn.number,
                self.cfg.audio.max_turn_s,
            )
            self.release(now)
        elif self.state == "thinking":
            self._thinking_timeouts(turn, now)
        elif self.state == "speaking" and self.speaker.queued_s <= 0:
            if turn.response_done or turn.audio_done:  # response.done may never follow
                self._finish(turn, "answered")
            elif turn.last_audio_t is not None and now - turn.last_audio_t > RESPONSE_TIMEOUT_S:
                self._lose(turn, "the answer stopped coming")

    def _thinking_timeouts(self, turn: Turn, now: float) -> None:
        """Every wait for the service ends: the clock starts when the wait does (the release,
        the service's commit, or a replay after a drop), so no turn can wait for ever."""
        key = (turn.number, turn.retried, turn.commit_pending)
        if key != self._wait_key:
            self._wait_key, self._wait_since = key, now
        waited = now - self._wait_since
        if turn.commit_pending:
            if waited > OFFLINE_TURN_TIMEOUT_S:
                self._lose(turn, f"offline for {OFFLINE_TURN_TIMEOUT_S:.0f} s after release")
        elif waited > RESPONSE_TIMEOUT_S:
            self._lose(turn, "no answer from the service")

    # ------------------------------------------------------------------ user actions

    def press(self, t: float) -> None:
        if self.budget.exhausted and self.state == "idle":
            self._refuse(t)
            return
        if self.vad:  # hands-free: the button interrupts the answer, or (idle) toggles mute
            if self.state in ("thinking", "speaking"):
                self._interrupt()
            elif self.state == "idle":
                self.uplink.muted = not self.uplink.muted
                log.info("microphone %s", "muted" if self.uplink.muted else "unmuted")
            return
        if self.state in ("thinking", "speaking"):
            self._interrupt()  # push-to-talk over the answer: stop it and listen
        if self.state == "listening":
            return
        self._new_turn(t)
        self.state = "listening"
        self.vision("turn_start")
        self._earcon("listening", t)  # capture runs from the press; the earcon is masked out
        if not self.session.ready:
            self.session.connect_now(user=True)  # a press while offline tries at once

    def _new_turn(self, t: float) -> Turn:
        self.turns += 1
        self.turn = Turn(self.turns, self.cfg.session.mode, t)
        return self.turn

    def release(self, t: float) -> None:
        turn = self.turn
        if turn is None or self.state != "listening" or self.vad:
            return
        if turn.released_t is None:
            turn.released_t = t
        t = turn.released_t
        if self.devices is not None:  # the end of the utterance, not yet handed over in a batch
            if self.devices.batcher.in_flight:
                return  # a posted batch holds more of it: released again once it is handled
            for block in self.devices.batcher.drain(begun_before=t):
                self._on_mic(block)
        if turn.audio_s < MIN_TURN_S:
            log.info("press of %.2f s ignored (shorter than %.1f s)", turn.audio_s, MIN_TURN_S)
            self.turn, self.state = None, "idle"
            self.turns -= 1  # a tap is not a turn
            return
        self.state = "thinking"
        turn.commit_pending = True
        self.vision("turn_end")
        self._earcon("sent")
        self._commit(turn)

    def tap(self, t: float) -> None:
        if self.state in ("thinking", "speaking"):
            self._interrupt()

    def _cancel_active(self) -> None:
        """Cancel what the service is generating: nothing of it will be played."""
        if self._active and self.session.ready:
            self.session.send(protocol.response_cancel())
        self._dead.extend(self._active)
        self._active.clear()

    def _interrupt(self) -> None:
        """Stop the answer: silence the speaker now, then tell the service."""
        self.speaker.flush()
        turn = self.turn
        if turn is None:
            return
        turn.cancelled = True
        if turn.response_id:
            self._dead.append(turn.response_id)
        if turn.response_requested and not turn.response_done:
            self.session.send(protocol.response_cancel())
            self._dead.extend(self._active)
            self._active.clear()
        self._finish(turn, "cancelled")

    # ------------------------------------------------------------------ audio in

    def _on_mic(self, block: ev.MicBlock) -> None:
        self.last_mic_t = block.t
        if self.budget.exhausted:
            return  # nothing goes to the service until midnight
        pcm = self.uplink.mask(block.pcm, block.t)
        if self.vad:
            self.uplink.stream(pcm, block.t, self.session.ready, self.send_append)
            if self.turn is not None and self.state == "listening":
                self.turn.add(pcm)  # kept for a replay should the link drop before the answer
            return
        turn = self.turn
        if turn is None or self.state != "listening" or block.t <= turn.started_t:
            return  # a block that ended before the press came in the same batch as the press
        begun = block.t - len(pcm) / WIRE_INPUT_RATE
        if turn.released_t is not None and begun >= turn.released_t - 1e-3:
            return  # begun after the release (it came in the batch the release waited for)
        turn.add(pcm)
        self._stream(turn, final=False)

    def _stream(self, turn: Turn, final: bool) -> None:
        """Send what the service has not got yet, in ~100 ms appends (all of it when final)."""
        if not self.session.ready:
            return
        pcm = turn.unsent(self.session.session_id)
        if len(pcm) == 0 or (not final and len(pcm) < APPEND_SAMPLES):
            return
        for start in range(0, len(pcm), APPEND_SAMPLES * 10):
            chunk = pcm[start : start + APPEND_SAMPLES * 10]
            if not self.send_append(protocol.audio_append(chunk.astype("<i2").tobytes())):
                return
        turn.mark_sent()

    def _commit(self, turn: Turn) -> None:
        if not self.session.ready:
            return  # sent when the session is ready again (buffered in the turn)
        self._stream(turn, final=True)
        if not self.session.send(protocol.audio_commit()):
            return
        turn.commit_sent_t = self.clock()
        turn.commit_pending = False
        self.vision("commit")
        self._cancel_active()  # one active response at a time: a stale one goes first
        if self.session.send(protocol.response_create()):
            turn.response_requested = True

    # ------------------------------------------------------------------ session changes

    def _swap(self) -> None:
        self.session.swap()
        self._active.clear()  # the new session has no response running
        self._on_session_ready()

    def _on_session_ready(self) -> None:
        self.vision("reset")  # a new session's buffer is empty
        turn = self.turn
        if self.vad:
            if turn is not None and turn.commit_pending:  # a drop cost the answer: replay
                turn.commit_pending = False
                self.uplink.replay(turn.blocks, self.cfg.session.vad.silence_duration_ms)
            self.uplink.resume(self.send_append)
            return
        if turn is None:
            return
        if self.state == "listening":
            self._stream(turn, final=False)
        elif turn.commit_pending:
            self._commit(turn)

    def _on_session_lost(self) -> None:
        self._active.clear()  # gone with the session
        if self.vad:  # what the service may not have heard goes to the next session
            self.uplink.requeue_unconfirmed()
        turn = self.turn
        if turn is None or (self.state == "listening" and not self.vad):
            return  # still capturing: the audio is resent to the next session
        if turn.response_done or turn.audio_done:
            turn.response_done = True  # all of the answer is here: let it play out
            if self.state == "thinking" or self.speaker.queued_s <= 0:
                self._finish(turn, "answered")
            return
        if self.state == "speaking":
            # Cut off mid-answer: stop the fragment now; the question is asked again below
            # (the whole answer then plays), or the turn is lost with the error tone.
            self.speaker.flush()
            if turn.response_id:
                self._dead.append(turn.response_id)
        if self.cfg.session.retry_turn_on_drop and not turn.retried:
            log.info("connection lost mid-turn %d: replaying it in the next session", turn.number)
            turn.retried = True
            turn.forget_sent()
            turn.commit_pending = True
            turn.response_requested = self.vad  # hands-free: the service answers on its own
            self.state = "thinking"
            self.session.connect_now(user=True)  # someone is waiting: no backoff wait
            return
        self._lose(turn, "connection lost before the answer")

    # ------------------------------------------------------------------ endings

    def _error_earcon(self) -> None:
        self.speaker.flush()
        self._earcon("error")
        self._flash_error()

    def _lose(self, turn: Turn, why: str) -> None:
        log.warning("turn %d lost: %s", turn.number, why)
        self._error_earcon()
        self._finish(turn, "lost", why)

    def _refuse(self, t: float) -> None:
        """Daily token limit reached: the user hears it, the journal records it."""
        why = f"daily token limit of {self.budget.limit} reached ({self.budget.tokens} used)"
        log.warning("turn refused: %s", why)
        self._error_earcon()
        self._finish(self._new_turn(t), "refused", why)

    def _finish(self, turn: Turn, outcome: str, why: str = "") -> None:
        if outcome == "answered" and turn.retried:
            outcome = "retried"
        if outcome == "lost":
            self._cancel_active()  # an answer given up on must not keep running (and billing)
        fields = turn.record_fields(outcome, self.session.session_id, self.clock())
        if self.frames is not None:
            fields["FRAMES"], fields["IMAGE_TOKENS_EST"] = self.frames.turn_counters()
        if why:
            fields["REASON"] = why
        if self.cfg.log.transcripts:
            fields["USER_TEXT"] = turn.user_text
            fields["ASSISTANT_TEXT"] = turn.assistant_text
        level = logging.WARNING if outcome == "lost" else logging.INFO
        self.journal.record("turn", f"turn {turn.number} {outcome}", level, **fields)
        if turn.user_text or turn.assistant_text or turn.item_id:
            self.history.append(turn)  # for the context carry-over into the next session
        if outcome in ("answered", "retried"):
            self.session.backoff.proved()
        self.turn = None
        self.state = "idle"

    # ------------------------------------------------------------------ control and status

    @property
    def public_state(self) -> str:
        if self.state != "idle" or self.session.ready:
            return self.state
        return "offline" if self.session.state == "offline" else "connecting"
