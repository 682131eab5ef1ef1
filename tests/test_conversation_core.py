"""The production state machine, driven by hand: a manual turn, a hands-free turn with barge-in,
and a turn that takes two responses (a function call, then the answer).

Only the link (`StandInLink`), the speaker, the clock and a notification subscriber are stand-ins;
the conversation and every part it is assembled from (session, mode, uplink, playback, the
microphone's feed, the tools seam) are the production code, on the test's thread, with no
threads, sockets or audio devices. Each test asserts what went out on the wire, in order.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omnid import events as ev
from omnid import protocol
from omnid.assembly import assemble
from omnid.config import load_config
from omnid.feedback import Subscriber
from omnid.micfeed import MicFeed
from omnid.supervisor import Journal
from tests.test_rollover_swap import StandInLink


class Speaker:
    """The speaker's side the conversation uses: it records what was played and flushed."""

    def __init__(self) -> None:
        self.volume = 1.0
        self.played: list[np.ndarray] = []
        self.flushes = 0

    def play(self, pcm: np.ndarray, *, last: bool = False) -> None:
        if len(pcm):
            self.played.append(pcm)

    def flush(self) -> None:
        self.flushes += 1

    @property
    def queued_s(self) -> float:
        return 0.0  # plays at once

    def answer_blocks(self) -> int:
        """Blocks of the answers' audio played (the earcons are other sounds)."""
        return sum(1 for pcm in self.played if (pcm == 3000).all())


class Sink(Subscriber):
    """The notification seam's far end: what the LED, earcons, STATUS and journal would get."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.cues: list[str] = []
        self.turns: list[dict[str, Any]] = []
        self.timers: list[dict[str, Any]] = []

    def on_state(self, state: str) -> None:
        self.states.append(state)

    def on_cue(self, cue: str, t: float | None) -> None:
        self.cues.append(cue)

    def on_turn(self, fields: dict[str, Any], level: int) -> None:
        self.turns.append(fields)

    def on_timer(self, fields: dict[str, Any], level: int) -> None:
        self.timers.append(fields)


class Rig:
    def __init__(self, tmp: Path, mode: str, extra: str = "") -> None:
        (tmp / "key").write_text("sk-test-" + uuid.uuid4().hex)
        (tmp / "omnid.toml").write_text(
            f'[api]\nurl = "ws://127.0.0.1:9/api-ws/v1/realtime"\napi_key_file = "{tmp / "key"}"\n'
            f'[session]\nmode = "{mode}"\n[audio]\necho_guard = "off"\nearcons = false\n'
            f'[control]\nsocket = "{tmp / "control.sock"}"\n[log]\ntranscripts = true\n' + extra
        )
        cfg = load_config(tmp / "omnid.toml", require_api_key=True)
        self.now = 1000.0
        self.wall = 1_800_000_000.0  # the wall clock, which may step (NTP)
        self.links: list[StandInLink] = []
        self.speaker = Speaker()
        self.sink = Sink()
        self.feed = MicFeed(20)
        self.conv = assemble(
            cfg,
            Journal(),
            speaker=self.speaker,
            state_dir=tmp,
            feed=self.feed,
            clock=lambda: self.now,
            wall=lambda: self.wall,
            open_link=self._open,  # type: ignore[arg-type]
            subscribers=(self.sink,),
        )
        self.conv.session.connect_now()
        self.link = self.links[0]
        self.conv.handle(ev.LinkUp(self.link))  # type: ignore[arg-type]
        self.server("session.created", session={"id": "sess_1"})
        self.server("session.updated", session={"id": "sess_1"})
        assert self.conv.session.ready

    def _open(self) -> StandInLink:
        link = StandInLink()
        self.links.append(link)
        return link

    def pump(self) -> None:
        while (event := self.conv.inbox.get_nowait()) is not None:
            self.conv.handle(event)

    def server(self, kind: str, **fields: Any) -> None:
        message = json.dumps({"type": kind, "event_id": "ev_" + uuid.uuid4().hex, **fields})
        event = protocol.parse(message)
        self.conv.handle(ev.LinkMessage(self.link, event, self.now))  # type: ignore[arg-type]
        self.pump()

    def speak(self, seconds: float, level: int = 2000) -> None:
        for _ in range(round(seconds / 0.02)):
            self.now += 0.02
            self.feed(np.full(320, level, np.int16), self.now)
            self.pump()

    def ask(self) -> None:
        """A push-to-talk turn of one second."""
        self.conv.handle(ev.Press("test", self.now))
        self.speak(1.0)
        self.conv.handle(ev.Release("test", self.now))

    def audio(self, response_id: str, n: int = 2, level: int = 3000) -> None:
        pcm = base64.b64encode(np.full(2400, level, "<i2").tobytes()).decode()
        for _ in range(n):
            self.server("response.audio.delta", response_id=response_id, delta=pcm)

    def done(self, response_id: str, tokens: int, output: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        self.server(
            "response.done",
            response={
                "id": response_id,
                "status": "completed",
                "output": list(output),
                "usage": {"total_tokens": tokens},
            },
        )

    def sent(self) -> list[str]:
        """What went out after the session's configuration, appends collapsed into one."""
        out: list[str] = []
        for kind in self.link.types():
            if kind == "session.update" or (out and kind == out[-1] == "input_audio_buffer.append"):
                continue
            out.append(kind)
        return out


def test_a_manual_turn_goes_out_press_appends_commit_response_and_its_answer_plays(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, "manual")
    rig.conv.handle(ev.Press("test", rig.now))
    assert rig.conv.state == "listening" and rig.sink.cues == ["listening"]
    rig.speak(1.0)
    rig.conv.handle(ev.Release("test", rig.now))
    assert rig.sent() == [
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "response.create",
    ]
    appended = [e for e in rig.link.sent if e["type"] == "input_audio_buffer.append"]
    samples = sum(len(base64.b64decode(e["audio"])) // 2 for e in appended)
    assert samples == 50 * 320  # the whole second, nothing more

    rig.server("response.created", response={"id": "resp_1"})
    rig.audio("resp_1")
    assert rig.conv.state == "speaking" and rig.speaker.answer_blocks() == 2
    rig.server("response.audio.done", response_id="resp_1")
    rig.done("resp_1", tokens=120)
    assert rig.conv.state == "idle"
    [turn] = rig.sink.turns
    assert (turn["OUTCOME"], turn["RESPONSE"], turn["MODE"]) == ("answered", "resp_1", "manual")
    assert rig.sink.cues == ["listening", "sent"]
    assert rig.sink.states == ["connecting", "idle", "listening", "thinking", "speaking", "idle"]


def test_finished_turns_keep_their_words_for_the_carry_over_but_not_their_audio(
    tmp_path: Path,
) -> None:
    """A turn's audio is kept to send it again after a dropped connection; once the turn is
    over, only its words are (the next session's carry-over). Fifty finished turns with their
    audio were ~6 MB that a two-hour soak (scripts/soak-memory) showed as growth."""
    rig = Rig(tmp_path, "manual")
    for n in range(1, 4):
        rig.conv.handle(ev.Press("test", rig.now))
        rig.speak(1.0)
        rig.conv.handle(ev.Release("test", rig.now))
        rig.server("response.created", response={"id": f"resp_{n}"})
        rig.server("response.audio_transcript.done", response_id=f"resp_{n}", transcript="ok")
        rig.audio(f"resp_{n}")
        rig.server("response.audio.done", response_id=f"resp_{n}")
        rig.done(f"resp_{n}", tokens=120)
    assert [t["OUTCOME"] for t in rig.sink.turns] == ["answered"] * 3
    assert len(rig.conv.history) == 3 and all(t.assistant_text for t in rig.conv.history)
    assert [t.audio_s for t in rig.conv.history] == [1.0] * 3  # as the records say
    assert not any(t.blocks for t in rig.conv.history)


def test_a_handsfree_turn_is_cut_short_by_speech_over_its_answer(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "vad")
    rig.speak(0.2, level=0)  # hands-free streams silence too: the service's VAD needs it
    rig.server("input_audio_buffer.speech_started", item_id="item_1", audio_start_ms=200)
    assert rig.conv.state == "listening"
    rig.speak(1.0)
    rig.server("input_audio_buffer.speech_stopped", item_id="item_1", audio_end_ms=1200)
    rig.server("input_audio_buffer.committed", item_id="item_1")
    assert rig.conv.state == "thinking"
    rig.server("response.created", response={"id": "resp_1"})  # the service answers on its own
    rig.audio("resp_1")
    assert rig.conv.state == "speaking"
    flushes = rig.speaker.flushes

    rig.server("input_audio_buffer.speech_started", item_id="item_2", audio_start_ms=1900)

    assert rig.speaker.flushes > flushes  # quiet at once
    assert rig.sent() == ["input_audio_buffer.append", "response.cancel"]
    assert rig.link.types().count("response.cancel") == 1
    assert "response.create" not in rig.link.types()  # hands-free: the service asks itself
    [turn] = rig.sink.turns
    assert turn["OUTCOME"] == "cancelled" and turn["RESPONSE"] == "resp_1"
    assert rig.conv.state == "listening" and rig.conv.turn is not None
    assert rig.conv.turn.item_id == "item_2"
    rig.audio("resp_1")  # the cancelled answer's tail: not played
    assert rig.speaker.answer_blocks() == 2


def test_a_turn_with_a_function_call_takes_two_responses_and_records_one_turn(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, "manual")
    rig.ask()
    rig.server("response.created", response={"id": "resp_1"})
    rig.audio("resp_1", n=1)
    rig.server("response.audio_transcript.done", response_id="resp_1", transcript="Let me look.")
    call = {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"}
    args = {k: call[k] for k in ("call_id", "name", "arguments")}
    rig.server("response.function_call_arguments.done", response_id="resp_1", **args)
    rig.server("response.audio.done", response_id="resp_1")
    rig.now += 0.5
    rig.conv.tick(rig.now)  # played out, but a call was announced: its response.done comes
    assert rig.sink.turns == [] and "conversation.item.create" not in rig.link.types()
    rig.done("resp_1", tokens=100, output=[call])
    rig.server("response.done", response={"id": "resp_1", "status": "completed"})  # repeated

    # The first response's done did not end the turn: no tool is declared, so the call is
    # answered with an error the model can read, and the next response is asked for.
    assert rig.sink.turns == []
    assert rig.conv.state == "thinking"
    assert rig.sent() == [
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "response.create",
        "conversation.item.create",
        "response.create",
    ]
    item = next(e for e in rig.link.sent if e["type"] == "conversation.item.create")["item"]
    assert item["type"] == "function_call_output" and item["call_id"] == "call_1"
    assert "get_time" in json.loads(item["output"])["error"]

    rig.server("response.created", response={"id": "resp_2"})
    rig.audio("resp_2", n=3)
    rig.server("response.audio_transcript.delta", response_id="resp_2", delta="It is noon.")
    rig.server("response.audio.done", response_id="resp_2")
    rig.done("resp_2", tokens=150)
    [turn] = rig.sink.turns
    assert turn["OUTCOME"] == "answered"
    assert turn["RESPONSE"] == "resp_2" and turn["TURN"] == 1
    assert turn["ASSISTANT_TEXT"] == "It is noon."  # the final answer's words
    assert rig.speaker.answer_blocks() == 1 + 3
    assert rig.link.types().count("conversation.item.create") == 1  # the call ran once
    assert rig.conv.turn is None and rig.conv.state == "idle"


def test_a_mode_with_pre_roll_opens_its_turn_with_the_words_said_just_before(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, "manual")
    rig.conv.mode = dataclasses.replace(rig.conv.mode, pre_roll_s=0.4)
    rig.speak(1.0, level=111)  # said before the turn opened
    rig.conv.handle(ev.Press("test", rig.now))
    rig.speak(0.6, level=222)
    rig.conv.handle(ev.Release("test", rig.now))
    appended = [e for e in rig.link.sent if e["type"] == "input_audio_buffer.append"]
    audio = np.concatenate([np.frombuffer(base64.b64decode(e["audio"]), "<i2") for e in appended])
    assert len(audio) == (20 + 30) * 320  # 0.4 s of pre-roll, then the 0.6 s held
    assert set(audio[: 20 * 320].tolist()) == {111} and set(audio[20 * 320 :].tolist()) == {222}


def _called_and_answered(rig: Rig) -> None:
    """A turn whose first response calls an undeclared function: the error output and the
    follow-up `response.create` go out."""
    rig.ask()
    rig.server("response.created", response={"id": "resp_1"})
    call = {"type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": "{}"}
    rig.done("resp_1", tokens=100, output=[call])
    assert rig.sent()[-2:] == ["conversation.item.create", "response.create"]


def test_a_dropped_follow_up_request_is_asked_once_more_then_the_turn_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The service is reported to drop a `response.create` that races its own transcription and
    to refuse one while the user speaks: after the function results, no `response.created` in
    a few seconds means one more `response.create`; none after that either means the error tone
    and a lost turn — never a turn that waits for ever, never a third request."""
    rig = Rig(tmp_path, "manual")
    _called_and_answered(rig)
    rig.server(
        "error",
        error={
            "type": "invalid_request_error",
            "message": "Cannot create response while user is speaking",
        },
    )
    assert rig.conv.state == "thinking" and rig.sink.turns == []  # the refusal is not the end
    for _ in range(40):  # 4 s: not yet
        rig.now += 0.1
        rig.conv.tick(rig.now)
    assert rig.link.types().count("response.create") == 2  # the turn's first, the follow-up
    for _ in range(20):
        rig.now += 0.1
        rig.conv.tick(rig.now)
    assert rig.link.types().count("response.create") == 3  # asked once more
    for _ in range(60):
        rig.now += 0.1
        rig.conv.tick(rig.now)
    assert rig.link.types().count("response.create") == 3
    [turn] = rig.sink.turns
    assert turn["OUTCOME"] == "lost" and "after the function results" in turn["REASON"]
    assert rig.sink.cues[-1] == "error"


def test_the_second_request_is_answered(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "manual")
    _called_and_answered(rig)
    for _ in range(60):
        rig.now += 0.1
        rig.conv.tick(rig.now)
    assert rig.link.types().count("response.create") == 3
    rig.server("response.created", response={"id": "resp_2"})
    rig.audio("resp_2", n=2)
    rig.server("response.audio.done", response_id="resp_2")
    rig.done("resp_2", tokens=50)
    [turn] = rig.sink.turns
    assert turn["OUTCOME"] == "answered" and turn["RESPONSE"] == "resp_2"


def test_a_model_that_speaks_its_call_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Some models write `<tool_call>…` into the spoken answer instead of calling: the turn is
    answered as it is (nothing runs) and the log says what happened."""
    rig = Rig(tmp_path, "manual")
    rig.ask()
    rig.server("response.created", response={"id": "resp_1"})
    rig.audio("resp_1", n=1)
    markup = '<tool_call>{"name": "set_volume", "arguments": {"level": 30}}</tool_call>'
    with caplog.at_level("WARNING", logger="omnid.conversation"):
        rig.server("response.audio_transcript.done", response_id="resp_1", transcript=markup)
    rig.server("response.audio.done", response_id="resp_1")
    rig.done("resp_1", tokens=50)
    assert "spoke a tool call instead of making it" in caplog.text
    [turn] = rig.sink.turns
    assert turn["OUTCOME"] == "answered"
    assert "conversation.item.create" not in rig.link.types()


def _call(rig: Rig, name: str, arguments: dict[str, Any]) -> None:
    """A turn whose first response calls `name`; the answer after it plays and ends the turn."""
    rig.ask()
    rig.server("response.created", response={"id": "resp_1"})
    call = {"type": "function_call", "call_id": "call_1", "name": name}
    rig.done("resp_1", tokens=100, output=[{**call, "arguments": json.dumps(arguments)}])
    rig.pump()
    rig.server("response.created", response={"id": "resp_2"})
    rig.audio("resp_2", n=1)
    rig.server("response.audio.done", response_id="resp_2")
    rig.done("resp_2", tokens=50)
    assert rig.sink.turns[-1]["OUTCOME"] == "answered"


def _run_clock(rig: Rig, seconds: float, step: float = 0.1) -> None:
    for _ in range(round(seconds / step)):
        rig.now += step
        rig.wall += step
        rig.conv.tick(rig.now)


@pytest.mark.parametrize("step_s", [3600.0, -3600.0])
def test_a_wall_clock_step_does_not_move_a_timer(tmp_path: Path, step_s: float) -> None:
    """A Pi's wall clock jumps when NTP first synchronises. A 10-minute timer rings ten minutes
    after it was set, measured on the monotonic clock, whichever way the wall clock jumps in
    between (the clocks are injected: the wall clock steps by an hour); an alarm set for a time
    of day follows the wall clock instead."""
    rig = Rig(tmp_path, "manual", '[tools]\nenabled = true\nbuiltin = ["set_timer", "set_alarm"]\n')
    _call(rig, "set_timer", {"seconds": 600, "label": "pasta"})
    set_at = rig.now
    _run_clock(rig, 60)
    rig.wall += step_s  # NTP steps the clock
    _run_clock(rig, 600 - 60 - 0.3)
    assert "alarm" not in rig.sink.cues
    _run_clock(rig, 0.5)
    assert "alarm" in rig.sink.cues
    assert [t["ACTION"] for t in rig.sink.timers] == ["set", "rang"]
    print(
        f"\nwall clock stepped {step_s:+.0f} s: the timer rang {rig.now - set_at:.1f} s after set"
    )


def test_an_alarm_follows_the_wall_clock_through_a_step(tmp_path: Path) -> None:
    rig = Rig(tmp_path, "manual", '[tools]\nenabled = true\nbuiltin = ["set_alarm"]\n')
    local = dt.datetime.fromtimestamp(rig.wall).astimezone()
    at = (local + dt.timedelta(minutes=30)).strftime("%H:%M")
    _call(rig, "set_alarm", {"time": at, "label": "wake"})
    due_wall = float(rig.sink.timers[0]["DUE_WALL"])
    rig.wall += 20 * 60  # the clock was 20 minutes slow; NTP corrects it
    _run_clock(rig, due_wall - rig.wall - 0.3)
    assert "alarm" not in rig.sink.cues
    _run_clock(rig, 0.5)
    assert "alarm" in rig.sink.cues  # ~10 minutes after it was set, when the clock shows it
