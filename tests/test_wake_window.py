"""Wake mode's window on the conversation's own clock: when the microphone may reach the
service, what the journal, STATUS and the LED are told. The production parts (`assemble`), a
stand-in link and a fake clock; the wake-word events are posted as the listener would post them.
The detector itself is tested end to end in tests/test_wake.py."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from omnid import events as ev
from tests.test_conversation_core import Rig, Sink


class WakeSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.wakes: list[dict[str, Any]] = []
        self.lines: list[str] = []

    def on_wake(self, fields: dict[str, Any]) -> None:
        self.wakes.append(fields)

    def on_status(self, line: str) -> None:
        self.lines.append(line)


def rig(tmp: Path, extra: str = "") -> tuple[Rig, WakeSink]:
    r = Rig(tmp, "wake", '[session.vad]\ntype = "server_vad"\n' + extra)
    sink = WakeSink()
    r.conv.feedback.subscribe(sink)
    return r, sink


def appends(r: Rig) -> int:
    return r.link.types().count("input_audio_buffer.append")


def sent_audio(r: Rig) -> np.ndarray:
    chunks = [
        np.frombuffer(base64.b64decode(e["audio"]), "<i2")
        for e in r.link.sent
        if e["type"] == "input_audio_buffer.append"
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def wake(r: Rig, probability: float = 0.93) -> None:
    r.conv.handle(ev.Wake("okay_nabu", probability, r.now))
    r.pump()


def test_nothing_goes_out_until_speech_follows_the_wake_word(tmp_path: Path) -> None:
    r, sink = rig(tmp_path)
    r.speak(2.0, level=111)  # the room, before the wake word
    wake(r)
    assert r.conv.public_state == "woken" and sink.states[-1] == "woken"
    r.speak(0.4, level=222)  # the listener has not yet said speech followed
    assert appends(r) == 0
    r.conv.handle(ev.WakeSpeech(r.now - 0.5, r.now))
    r.speak(0.5, level=333)
    sent = sent_audio(r)
    assert len(sent) == round((0.5 + 0.5) * 16000)  # from start_t on, then as it comes
    assert set(sent[: 5 * 320].tolist()) == {111} and set(sent[-320:].tolist()) == {333}


def test_a_wake_without_speech_shuts_after_no_speech_s_and_is_recorded(tmp_path: Path) -> None:
    r, sink = rig(tmp_path, "[wake]\nno_speech_s = 3\n")
    wake(r, 0.912)
    for _ in range(29):
        r.now += 0.1
        r.conv.tick(r.now)
    assert sink.wakes == [] and r.conv.public_state == "woken"
    r.now += 0.15
    r.conv.tick(r.now)
    assert sink.wakes == [{"WAKE_MODEL": "okay_nabu", "PROBABILITY": "0.912", "TURN": "false"}]
    assert r.conv.public_state == "idle" and appends(r) == 0
    r.conv.tick(r.now)
    assert sink.lines[-1].endswith("0 turns, 1 wakes, 1 without a turn)")
    assert r.conv.status()["wakes_without_turn"] == 1


def test_speech_started_makes_a_turn_and_an_answer_leaves_the_window_open(
    tmp_path: Path,
) -> None:
    r, sink = rig(tmp_path, "[wake]\nfollow_up_s = 5\n")
    wake(r)
    r.conv.handle(ev.WakeSpeech(r.now, r.now))
    r.speak(0.5)
    r.server("input_audio_buffer.speech_started", item_id="item_1", audio_start_ms=0)
    assert sink.wakes[-1]["TURN"] == "true" and r.conv.state == "listening"
    r.speak(1.0)
    r.server("input_audio_buffer.speech_stopped", item_id="item_1", audio_end_ms=1500)
    r.server("response.created", response={"id": "resp_1"})
    r.audio("resp_1")
    r.done("resp_1", tokens=50)
    r.conv.tick(r.now)
    assert sink.turns[-1]["OUTCOME"] == "answered" and r.conv.public_state == "woken"
    before = appends(r)
    r.speak(4.8)  # the follow-up window: the microphone still streams
    r.conv.tick(r.now)
    assert appends(r) > before and r.conv.public_state == "woken"
    r.speak(0.4)
    r.conv.tick(r.now)
    assert r.conv.public_state == "idle" and r.link.types()[-1] == "input_audio_buffer.clear"
    after = appends(r)
    r.speak(2.0)
    assert appends(r) == after
    assert len(sink.wakes) == 1  # a follow-up is no wake


def test_muted_the_wake_word_is_ignored_and_status_says_so(tmp_path: Path) -> None:
    r, sink = rig(tmp_path)
    assert r.conv.mute([]) == {"ok": True, "state": "muted", "muted": True}
    wake(r)
    r.conv.handle(ev.WakeSpeech(r.now, r.now))
    r.speak(1.0)
    r.conv.tick(r.now)
    assert appends(r) == 0 and sink.wakes == [] and r.conv.public_state == "muted"
    assert sink.lines[-1].startswith("muted (session")
    assert r.conv.mute(["maybe"])["ok"] is False
    assert r.conv.mute(["off"])["state"] == "idle"


def test_the_wake_earcon_is_opt_in_and_never_blanks_the_words_after_it(tmp_path: Path) -> None:
    """`wake.earcon`: a short tone on the wake word, without the mask the listening earcon
    puts on the microphone (the question follows at once)."""
    from omnid.earcons import Earcons

    woken = Earcons.generate().woken
    for opted in (False, True):
        (tmp_path / str(opted)).mkdir()
        r, _ = rig(tmp_path / str(opted), f"[wake]\nearcon = {str(opted).lower()}\n")
        cfg = r.conv.settings.current
        r.conv.settings.current = cfg.model_copy(
            update={"audio": cfg.audio.model_copy(update={"earcons": True})}
        )
        wake(r)
        played = [p for p in r.speaker.played if len(p) == len(woken) and (p == woken).all()]
        assert len(played) == int(opted)
        r.conv.handle(ev.WakeSpeech(r.now, r.now))
        r.speak(0.5, level=444)
        assert set(sent_audio(r).tolist()) == {444}  # nothing of it blanked
