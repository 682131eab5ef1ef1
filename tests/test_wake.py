"""Wake-word mode end to end: `omnid run` with `session.mode = "wake"` against `omnid simulate`,
hearing speech that espeak-ng synthesises, through `wav:` devices or the ALSA FIFO rig.

What a user notices: nothing leaves the box before the wake word; the question said straight
after it is heard from its first word; a wake with nothing after it, or speech without it, costs
nothing; a follow-up needs no wake word for a while; the wake word stops an answer, and the
box's own voice saying it does not.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.speech import ordinary_speech, speech_bounds, synth
from tests.alsa_rig import AlsaFifoRig
from tests.harness import Daemon, Simulator, make_key, wav_devices, write_config, write_wav

pytest.importorskip("pymicro_wakeword")

RATE = 16_000
OUT_RATE = 24_000
WAKE = '[session]\nmode = "wake"\n[session.vad]\ntype = "server_vad"\n'
GAP_S = 0.15  # the pause a comma makes: "okay nabu, what time is it"


def said(text: str, voice: str = "en-us") -> np.ndarray:
    """The phrase, trimmed to its audible part."""
    pcm = synth(text, voice)
    first, last = speech_bounds(pcm)
    return pcm[first : last + 1]


def place(total_s: float, parts: list[tuple[float, np.ndarray]]) -> np.ndarray:
    pcm = np.zeros(int(total_s * RATE), np.int16)
    for at, clip in parts:
        start = int(at * RATE)
        pcm[start : start + len(clip)] = clip
    return pcm


def start(tmp: Path, mic: np.ndarray, extra: str = "") -> tuple[Simulator, Daemon]:
    write_wav(tmp / "mic.wav", mic)
    key = make_key()
    sim = Simulator(tmp, key)
    config = write_config(tmp, sim.url, key, WAKE + extra + wav_devices(tmp))
    return sim, Daemon(tmp, config, key)


def received(sim: Simulator) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Every audio sample the simulator was sent, in order, and every event it received."""
    recv = [r["event"] for r in sim.wire("recv")]
    chunks = [
        np.frombuffer(base64.b64decode(e["audio"]), "<i2")
        for e in recv
        if e["type"] == "input_audio_buffer.append"
    ]
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), recv


def position(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where `needle` (an exact copy of part of `haystack`) lies in it."""
    h, n = haystack.astype(np.float64), needle.astype(np.float64)
    size = 1 << (len(h) + len(n)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)
    at = int(np.argmax(corr[: len(h) - len(n) + 1]))
    assert np.array_equal(haystack[at : at + len(needle)], needle), "not a copy of the microphone"
    return at


def wake_walls(daemon: Daemon) -> list[float]:
    lines = [x for x in daemon.output().splitlines() if "heard at wall" in x]
    return [float(x.rsplit("heard at wall", 1)[1].strip(" )")) for x in lines]


@pytest.mark.parametrize("pause_s", [GAP_S, 1.0])
def test_the_question_after_the_wake_word_is_heard_from_its_first_word(
    tmp_path: Path, pause_s: float
) -> None:
    """Straight on ("okay nabu, what time is it"), the uplink opens just before the phrase;
    after a pause, just before the question (the phrase alone would be a turn of its own)."""
    wake, question = said("okay nabu"), said("what time is it")
    onset = 2.0
    asked = onset + len(wake) / RATE + pause_s
    mic = place(12.0, [(onset, wake), (asked, question)])
    sim, daemon = start(tmp_path, mic)
    try:
        daemon.wait_ready()
        turn = daemon.wait_record("turn", timeout=30)[0]
        woke = daemon.wait_record("wake", timeout=10)[0]
    finally:
        assert daemon.stop() == 0
        sim.stop()
    assert turn["OMNID_OUTCOME"] == "answered" and turn["OMNID_MODE"] == "wake"
    assert woke["OMNID_WAKE_MODEL"] == "okay_nabu" and woke["OMNID_TURN"] == "true"
    assert float(woke["OMNID_PROBABILITY"]) > 0.85  # above the cutoff (okay_nabu's own)
    audio, _ = received(sim)
    speech_at = int(np.nonzero(np.abs(audio) > 300)[0][0])
    first = position(mic, audio[: speech_at + RATE // 2]) / RATE  # the first sample sent
    print(f"\nuplink opened {onset - first:.3f} s before the phrase ({pause_s:.2f} s pause)")
    assert first >= onset - 0.3, "sent audio from more than 0.3 s before the wake phrase"
    assert first <= asked - 0.05, "the question's first word was not sent"
    sent_end = first + len(audio) / RATE
    assert sent_end >= asked + len(question) / RATE, "the question was not sent whole"
    if pause_s >= 1.0:
        assert first > onset + len(wake) / RATE - 0.05, "the phrase went out on its own"


@pytest.mark.timeout(240)  # two minutes of speech, at the pace it is spoken
def test_speech_without_the_wake_word_never_leaves_the_box(tmp_path: Path) -> None:
    """Two minutes of talk (and a camera) without the wake word: nothing is sent."""
    talk = ordinary_speech(120 * RATE, seed=3)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48), (90, 140, 200)).save(images / "room.png")
    camera = f'[camera]\nenabled = true\nsource = "files"\npath = "{images}"\nwhen = "always"\n'
    sim, daemon = start(tmp_path, place(123.0, [(1.0, talk)]), camera)
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        time.sleep(max(0.0, wall0 + 123.0 - time.time()))
        status = daemon.ctl("status")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    _, recv = received(sim)
    kinds = [e["type"] for e in recv]
    assert kinds.count("input_audio_buffer.append") == 0
    assert kinds.count("input_image_buffer.append") == 0
    assert "response.create" not in kinds
    assert not [r for r in sim.wire("send") if r["event"]["type"] == "response.created"]
    assert daemon.records("wake") == [] and daemon.records("turn") == []
    assert status["wakes"] == 0 and status["state"] == "idle"


def test_a_wake_with_nothing_after_it_sends_nothing_and_is_recorded(tmp_path: Path) -> None:
    wake = said("okay nabu")
    sim, daemon = start(tmp_path, place(12.0, [(2.0, wake)]), "[wake]\nno_speech_s = 2\n")
    try:
        daemon.wait_ready()
        states = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not daemon.records("wake"):
            states.append(daemon.ctl("status")["state"])
            time.sleep(0.1)
        record = daemon.wait_record("wake", timeout=1)[0]
        recorded = time.time()
        status = daemon.ctl("status")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    heard = wake_walls(daemon)
    assert len(heard) == 1
    print(f"\nwindow shut {recorded - heard[0]:.2f} s after the wake word (no_speech_s 2)")
    assert 1.8 <= recorded - heard[0] <= 4.0
    assert record["OMNID_TURN"] == "false"
    assert "woken" in states and status["state"] == "idle"
    assert status["wakes"] == 1 and status["wakes_without_turn"] == 1
    audio, recv = received(sim)
    assert len(audio) == 0 and "response.create" not in [e["type"] for e in recv]
    assert daemon.records("turn") == []


def test_a_follow_up_needs_no_wake_word_until_the_window_shuts(tmp_path: Path) -> None:
    """follow_up_s = 6: asked ~2 s after the first answer ends, the second question is
    answered; asked ~9 s after the second answer, the third is not sent at all."""
    wake, first = said("okay nabu"), said("what time is it")
    second, third = said("and what day is it"), said("is it going to rain")
    t1 = 2.0
    end1 = t1 + (len(wake) + len(first)) / RATE + GAP_S
    # The first answer (the echo of what was sent, ~2 s) ends ~3 s after the question does.
    t2 = end1 + 5.0
    t3 = t2 + len(second) / RATE + 3.0 + 9.0
    mic = place(t3 + 5.0, [(t1, wake), (t1 + len(wake) / RATE + GAP_S, first)])
    mic[int(t2 * RATE) : int(t2 * RATE) + len(second)] = second
    mic[int(t3 * RATE) : int(t3 * RATE) + len(third)] = third
    sim, daemon = start(tmp_path, mic, "[wake]\nfollow_up_s = 6\n")
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        turns = daemon.wait_record("turn", count=2, timeout=40)
        time.sleep(max(0.0, wall0 + t3 + 4.5 - time.time()))
    finally:
        assert daemon.stop() == 0
        sim.stop()
    assert [t["OMNID_OUTCOME"] for t in turns] == ["answered", "answered"]
    assert len(daemon.records("turn")) == 2
    assert [r["OMNID_TURN"] for r in daemon.records("wake")] == ["true"]
    audio, recv = received(sim)
    first_sent = position(mic, audio[: RATE * 2]) / RATE
    sent_until = first_sent + len(audio) / RATE  # the audio went out contiguously
    assert sent_until >= t2 + len(second) / RATE, "the follow-up was not sent"
    assert sent_until < t3, "the question after the window shut was sent"
    assert "input_audio_buffer.clear" in [e["type"] for e in recv]


def test_the_wake_word_stops_an_answer_and_the_box_ignores_its_own_voice(tmp_path: Path) -> None:
    """The speaker feeds back into the microphone (the ALSA rig). Each answer is the echo of
    what was sent, so each begins with "okay nabu": neither may wake the box. The user's wake
    word over the first answer stops it within one block of being heard, and opens a new turn."""
    wake = said("okay nabu")
    long_question = said("tell me a long story about a dragon who lived under a big old bridge")
    question = said("what time is it")
    # The microphone's block is wake mode's 100 ms; the speaker's 20 ms (`audio.base.output_block`).
    rig = AlsaFifoRig(tmp_path, feedback_gain=0.1, block_ms=100, spk_block_ms=20).start()
    sim = daemon = None
    try:
        key = make_key()
        sim = Simulator(tmp_path, key)
        devices = f'input_device = "{rig.mic_device}"\noutput_device = "{rig.spk_device}"\n'
        config = write_config(tmp_path, sim.url, key, WAKE + "[audio]\n" + devices)
        daemon = Daemon(tmp_path, config, key, **rig.env)
        daemon.wait_ready()
        assert rig.wait_mic_reader(10)
        gap = np.zeros(int(GAP_S * RATE), np.int16)
        rig.say(np.concatenate([wake, gap, long_question]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (np.abs(rig.speaker_output()) > 300).sum() < 4800:
            time.sleep(0.05)  # until the first answer has played for ~0.2 s
        time.sleep(2.0)  # its "okay nabu" has been heard through the room by now
        interrupted = rig.say(np.concatenate([wake, gap, question]))
        turns = daemon.wait_record("turn", count=2, timeout=30)
        time.sleep(4.0)  # the second answer, which also begins with "okay nabu", plays out
    finally:
        if daemon is not None:
            assert daemon.stop() == 0
        rig.stop()
        if sim is not None:
            sim.stop()
    assert [t["OMNID_OUTCOME"] for t in turns] == ["cancelled", "answered"]
    assert len(daemon.records("turn")) == 2
    assert [r["OMNID_TURN"] for r in daemon.records("wake")] == ["true", "true"]
    # Both answers begin with "okay nabu", a tenth as loud through the room: the detector hears
    # the first at p ≈ 0.86–0.93 and drops it as the box's own voice; the second sits at the
    # cutoff (heard in about half the runs since the microphone moved to 100 ms blocks, whose
    # batches fall differently on the phrase). Heard or not, neither may wake the box (the two
    # turns above).
    assert daemon.output().count("in the box's own voice") >= 1
    heard = wake_walls(daemon)
    assert len(heard) == 2 and heard[1] > interrupted
    out = np.abs(rig.speaker_output())
    loud = np.nonzero(out > 64)[0]
    times = np.array([rig.speaker_time(int(i)) for i in loud[:: OUT_RATE // 100]])
    during = times[(times > heard[1] - 1.0) & (times < heard[1] + 1.0)]
    assert len(during) and during.min() < heard[1] - 0.5, "the first answer was not playing"
    after = during[during >= heard[1]]
    last = after.max() if len(after) else heard[1]
    silent_ms = (last - heard[1]) * 1000
    print(f"\nspeaker silent {silent_ms:.0f} ms after the wake word was heard")
    # One 20 ms block, plus what PortAudio had already handed to the rig's pipeline (up to
    # four blocks and the pipe: ~140 ms), plus the event's way across a busy machine.
    assert silent_ms <= 300


def test_a_press_wakes_the_box_and_mute_silences_the_wake_word(tmp_path: Path) -> None:
    """Muted (`omnid ctl mute`, or a press held 2 s), the wake word is not heard at all; a short
    press opens the window like the wake word (and is not counted as one)."""
    wake, question = said("okay nabu"), said("what time is it")
    spoken = np.concatenate([wake, np.zeros(int(GAP_S * RATE), np.int16), question])
    mic = place(26.0, [(4.0, spoken), (10.0, said("and what day is it")), (20.0, spoken)])
    sim, daemon = start(tmp_path, mic)
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        muted = daemon.ctl("mute")
        assert time.time() < wall0 + 3.5, "too slow to mute before the first wake word"

        def at(t: float) -> None:
            time.sleep(max(0.0, wall0 + t - time.time()))

        at(8.5)
        state_muted = daemon.ctl("status")
        unmuted = daemon.ctl("mute off")
        daemon.ctl("press")
        daemon.ctl("release")
        woken = daemon.ctl("status")["state"]
        turn = daemon.wait_record("turn", timeout=15)[0]
        at(16.0)
        daemon.ctl("press")
        time.sleep(2.3)
        long_press = daemon.ctl("release")
        at(25.5)
        status = daemon.ctl("status")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    assert muted == {"ok": True, "state": "muted", "muted": True}
    assert state_muted["state"] == "muted" and state_muted["wakes"] == 0
    assert unmuted["muted"] is False and woken == "woken"
    assert turn["OMNID_OUTCOME"] == "answered"
    assert long_press["state"] == "muted"
    assert status["muted"] and status["wakes"] == 0 and status["turns"] == 1
    assert daemon.records("wake") == [] and len(daemon.records("turn")) == 1
    audio, _ = received(sim)
    first = position(mic, audio[: RATE * 2]) / RATE
    assert first >= 8.5 and first + len(audio) / RATE < 20.0  # only the pressed-for question
