"""Timers and alarms end to end: the daemon with `wav:` devices against `omnid simulate`, which
plays the model that calls `set_timer` and friends.

When a timer rings is read off the speaker file: with `wav:` devices a sample's position is its
play time on the daemon's own clock, whose start the daemon logs as a wall time; the `timer`
journal record carries the due time on the wall clock. So "rings on time" is measured as the
distance between where the alarm starts in the file and where the due time falls on it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soxr

from omnid.earcons import alarm_sound
from omnid.playback import MIN_RING_VOLUME
from omnid.volume import to_gain
from tests.harness import Daemon, NotifySocket, wav_devices
from tests.test_tools_e2e import events, response_audio, start, talk
from tests.test_turn_wav import (
    CLOCK_LAG_BLOCKS,
    IN_RATE,
    OUT_RATE,
    SPK_BLOCK,
    read_wav,
    speech,
    timeline_samples,
)

ALARM = alarm_sound()
BEEP = ALARM[: int(0.09 * OUT_RATE)].astype(np.float64)  # the first beep


def onset(out: np.ndarray, near: int, within_s: float = 1.0) -> int:
    """Where the alarm's first beep starts, searching ±within_s around sample `near`."""
    lo = max(0, near - int(within_s * OUT_RATE))
    hi = min(len(out), near + int(within_s * OUT_RATE) + len(BEEP))
    region = out[lo:hi]
    assert len(region) > len(BEEP), "the speaker file does not reach the due time"
    corr = np.correlate(region, BEEP, mode="valid")
    energy = np.sqrt(np.convolve(region**2, np.ones(len(BEEP)), mode="valid")) + 1e-9
    score = corr / (energy * np.linalg.norm(BEEP))
    best = int(np.argmax(score))
    assert score[best] > 0.9, f"no alarm near the due time (best match {score[best]:.2f})"
    return lo + best


def position(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where `needle` best matches in `haystack` (normalised cross-correlation, by FFT)."""
    m = len(needle)
    size = 1 << (len(haystack) + m - 1).bit_length()
    spectrum = np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size))
    corr = np.fft.irfft(spectrum, size)[: len(haystack) - m + 1]
    power = np.concatenate([[0.0], np.cumsum(haystack**2)])
    energy = np.sqrt(np.maximum(power[m:] - power[:-m], 0.0))
    norm = np.linalg.norm(needle)
    score = np.where(energy > 1e-3 * norm, corr / (energy * norm + 1e-9), 0.0)  # not silence
    return int(np.argmax(score))


def timer_config(tmp: Path, *audio: str) -> str:
    return wav_devices(tmp, "earcons = false", *audio) + "[tools]\nenabled = true\n"


@pytest.mark.timeout(90)
def test_a_timer_rings_on_time_until_a_tap(tmp_path: Path) -> None:
    """A timer set by the model rings at its due time (to within one block on the speaker's
    timeline), keeps ringing, and a tap silences it within one block. The volume is at 0 and
    earcons are off: the alarm still rings, at its floor of 40 %."""
    flags = ("--call", 'set_timer={"seconds": 3, "label": "pasta"}')
    extra = timer_config(tmp_path, 'echo_guard = "off"', "output_volume = 0")
    sim, daemon = start(tmp_path, extra, *flags)
    try:
        wall0 = daemon.audio_started_wall()
        turn = talk(daemon, 1)
        [set_] = daemon.wait_record("timer", timeout=10)
        due_wall = float(set_["OMNID_DUE_WALL"])
        time.sleep(max(0.0, due_wall + 2.0 - time.time()))  # two seconds of ringing
        ringing = daemon.ctl("status")
        reply = daemon.ctl("tap")
        at_ack = timeline_samples(tmp_path / "spk.wav")
        time.sleep(1.0)  # the timeline runs on: it must stay silent
        records = daemon.wait_record("timer", count=3, timeout=10)
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0 and turn["OMNID_OUTCOME"] == "answered"
    assert reply["ok"] and ringing["timers"] == []  # it rang: no longer pending
    assert [(r["OMNID_ACTION"], r["OMNID_LABEL"]) for r in records] == [
        ("set", "pasta"),
        ("rang", "pasta"),
        ("stopped", "pasta"),
    ]
    assert records[2]["OMNID_REASON"] == "a tap"
    out = read_wav(tmp_path / "spk.wav")
    expected = int((due_wall - wall0) * OUT_RATE)
    start_at = onset(out, expected)
    late_ms = (start_at - expected) / OUT_RATE * 1000
    print(f"\nthe alarm started {late_ms:+.1f} ms from its due time (a block is 20 ms)")
    assert -SPK_BLOCK <= start_at - expected <= SPK_BLOCK * (1 + CLOCK_LAG_BLOCKS)
    loud = np.flatnonzero(np.abs(out) > 64)
    assert loud[-1] < at_ack + SPK_BLOCK, "the alarm sounded more than a block after the tap"
    assert loud[-1] - start_at > 1.5 * OUT_RATE  # it kept ringing until the tap
    floor = np.abs(ALARM).max() * to_gain(MIN_RING_VOLUME)
    assert np.abs(out[start_at : loud[-1]]).max() >= 0.95 * floor


@pytest.mark.timeout(90)
def test_a_timer_survives_a_restart_and_rings_at_its_time(tmp_path: Path) -> None:
    """Set, daemon stopped and started again with the same state directory: the timer rings at
    its original due time (± 1 s)."""
    flags = ("--call", 'set_timer={"seconds": 8, "label": "bread"}')
    extra = timer_config(tmp_path, 'echo_guard = "off"')
    sim, daemon = start(tmp_path, extra, *flags)
    try:
        talk(daemon, 1)
        [set_] = daemon.wait_record("timer", timeout=10)
        due_wall = float(set_["OMNID_DUE_WALL"])
        time.sleep(0.5)  # the disk thread saves it
    finally:
        assert daemon.stop() == 0
    saved = json.loads((tmp_path / "state" / "timers.json").read_text())
    assert [t["label"] for t in saved] == ["bread"]
    config = tmp_path / "omnid.toml"
    again = Daemon(tmp_path, config, daemon.secret, STATE_DIRECTORY=str(tmp_path / "state"))
    try:
        again.wait_ready()
        wall0 = again.audio_started_wall()
        time.sleep(max(0.0, due_wall + 1.5 - time.time()))
        again.ctl("tap")
        records = again.wait_record("timer", count=2, timeout=10)  # the journal line follows
    finally:
        code = again.stop()
        sim.stop()
    assert code == 0
    assert [r["OMNID_ACTION"] for r in records] == ["rang", "stopped"]
    out = read_wav(tmp_path / "spk.wav")
    start_at = onset(out, int((due_wall - wall0) * OUT_RATE), within_s=1.5)
    off_s = start_at / OUT_RATE + wall0 - due_wall
    print(f"\nafter the restart the timer rang {off_s:+.3f} s from its original due time")
    assert abs(off_s) <= 1.0


def test_a_timer_due_while_the_daemon_was_down_rings_at_once_or_is_missed(
    tmp_path: Path,
) -> None:
    """At start, a saved timer that fell due while the daemon was down rings at once (the
    journal says how late); one over an hour late is reported missed and does not ring."""
    state = tmp_path / "state"
    state.mkdir()
    now = time.time()
    (state / "timers.json").write_text(
        json.dumps(
            [
                {"label": "tea", "kind": "timer", "due_wall": now - 30, "seconds": 300},
                {"label": "nap", "kind": "timer", "due_wall": now - 7200, "seconds": 600},
            ]
        )
    )
    sim, daemon = start(tmp_path, timer_config(tmp_path, 'echo_guard = "off"'))
    try:
        rang = daemon.wait_record("timer", count=2, timeout=10)
        time.sleep(0.5)
        daemon.ctl("tap")
        records = daemon.wait_record("timer", count=3, timeout=10)  # the journal line follows
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0
    by_action = {(r["OMNID_ACTION"], r["OMNID_LABEL"]): r for r in records}
    assert set(by_action) == {("missed", "nap"), ("rang", "tea"), ("stopped", "tea")}, rang
    assert "not running" in by_action[("rang", "tea")]["OMNID_REASON"]
    assert "120 min" in by_action[("missed", "nap")]["OMNID_REASON"]
    assert json.loads((state / "timers.json").read_text()) == []


@pytest.mark.timeout(90)
def test_an_alarm_during_a_handsfree_answer_is_not_heard_as_the_user(tmp_path: Path) -> None:
    """Hands-free, a timer falls due while the answer plays: it rings once the answer has
    ended, and its sound — put on the microphone here, as a real room would — never reaches the
    service as speech (the echo guard): one user turn on the wire, no more."""
    words = speech(1.5)
    mic = np.zeros(20 * IN_RATE, np.int16)
    mic[IN_RATE : IN_RATE + len(words)] = words
    # The room: the alarm comes back off the walls (a 0.1 s reverberation tail fills its gaps).
    ring = soxr.resample(np.tile(ALARM, 5).astype(np.float64), OUT_RATE, IN_RATE)
    tail = np.arange(int(0.3 * IN_RATE))
    room = np.random.default_rng(5).normal(size=len(tail)) * np.exp(-tail / (0.1 * IN_RATE))
    echo = np.convolve(ring, room)
    echo *= 0.3 * 32767 / np.abs(echo).max()
    heard_from, heard_to = 4.0, 8.0  # the alarm's sound in the room, as the microphone hears it
    span = mic[int(heard_from * IN_RATE) : int(heard_to * IN_RATE)]
    span[:] = echo[: len(span)].astype(np.int16)
    flags = ("--call", 'set_timer={"seconds": 1, "label": "tea"}', "--pace", "1.0")
    extra = timer_config(tmp_path) + '[session]\nmode = "vad"\n'
    sim, daemon = start(tmp_path, extra, *flags, mic=mic)
    try:
        wall0 = daemon.audio_started_wall()
        turn = daemon.wait_record("turn", timeout=30)[0]
        daemon.wait_record("timer", count=2, timeout=20)  # set, rang
        time.sleep(max(0.0, wall0 + heard_to - 0.1 - time.time()))
        daemon.ctl("tap")  # the alarm stops as its sound in the room ends
        time.sleep(2.5)  # long enough for the service's VAD to have heard anything after it
        turns = daemon.records("turn")
        records = daemon.wait_record("timer", count=3, timeout=10)
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0 and turn["OMNID_OUTCOME"] == "answered"
    assert len(turns) == 1
    wire = events(sim)
    started = [
        e for d, e in wire if d == "send" and e["type"] == "input_audio_buffer.speech_started"
    ]
    assert len(started) == 1, "the alarm was heard as the user"
    assert [r["OMNID_ACTION"] for r in records] == ["set", "rang", "stopped"]
    out = read_wav(tmp_path / "spk.wav")
    due = int((float(records[0]["OMNID_DUE_WALL"]) - wall0) * OUT_RATE)
    answer = response_audio(wire, turn["OMNID_RESPONSE"])
    answer_at = position(out, answer)
    rang_at = onset(out, due, within_s=4.0)
    answer_end = answer_at + len(answer)
    print(
        f"\nthe timer fell due {(due - answer_at) / OUT_RATE:.2f} s into the answer; "
        f"it rang {(rang_at - answer_end) / OUT_RATE * 1000:+.0f} ms from the answer's end"
    )
    assert answer_at < due < answer_end  # it fell due during the answer…
    assert rang_at >= answer_end - SPK_BLOCK  # …and waited for its end


@pytest.mark.timeout(120)
def test_timers_by_label_in_the_journal_status_and_ctl(tmp_path: Path) -> None:
    """`set_timer`, `list_timers` and `cancel_timer` work by label; `omnid ctl status` and
    systemd's STATUS list what runs; the journal records each set and cancel."""
    script = [
        {"calls": [{"name": "set_timer", "arguments": {"seconds": 600, "label": "pasta"}}]},
        {"calls": [{"name": "set_timer", "arguments": {"seconds": 300, "label": "eggs"}}]},
        {"calls": [{"name": "list_timers", "arguments": {}}]},
        {"calls": [{"name": "cancel_timer", "arguments": {"label": "pasta"}}]},
        {"calls": [{"name": "cancel_timer", "arguments": {"label": "rice"}}]},
        {"calls": [{"name": "list_timers", "arguments": {}}]},
    ]
    (tmp_path / "script.json").write_text(json.dumps(script))
    notify = NotifySocket(tmp_path / "notify.sock")
    sim, daemon = start(
        tmp_path,
        timer_config(tmp_path, 'echo_guard = "off"'),
        "--script",
        str(tmp_path / "script.json"),
        env={"NOTIFY_SOCKET": str(notify.path)},
    )
    try:
        for n in range(1, len(script) + 1):
            assert talk(daemon, n)["OMNID_OUTCOME"] == "answered"
        status = daemon.ctl("status")
        records = daemon.wait_record("timer", count=3, timeout=10)
    finally:
        code = daemon.stop()
        sim.stop()
        notify.close()
    assert code == 0
    outputs = [
        json.loads(e["item"]["output"])
        for d, e in events(sim)
        if d == "recv" and e["type"] == "conversation.item.create"
    ]
    listed = outputs[2]["timers"]
    assert [(t["label"], t["kind"]) for t in listed] == [("eggs", "timer"), ("pasta", "timer")]
    assert 280 <= listed[0]["rings_in_s"] <= 300 and 580 <= listed[1]["rings_in_s"] <= 600
    assert outputs[3] == {"cancelled": "pasta"}
    assert "no timer called 'rice'" in outputs[4]["error"]
    assert [t["label"] for t in outputs[5]["timers"]] == ["eggs"]
    assert [t["label"] for t in status["timers"]] == ["eggs"]
    assert [(r["OMNID_ACTION"], r["OMNID_LABEL"]) for r in records] == [
        ("set", "pasta"),
        ("set", "eggs"),
        ("cancelled", "pasta"),
    ]
    lines = [m for _, m in notify.messages if m.startswith("STATUS=")]
    assert any("timers: eggs 4:" in line for line in lines), lines[-3:]
