"""What the box does while it waits for a press: next to nothing, and the press loses nothing.

In push-to-talk mode the microphone's stream stops after a few idle seconds and the speaker's
after two silent ones (`omnid/micsleep.py`, `audio.base.STANDBY_AFTER_S`); a press starts the
microphone again before the turn opens, and the answer starts the speaker. What a user would
notice is asserted: the process stops waking up (context switches, read from /proc, as a battery
or a Pi Zero's temperature would tell), the turn after the sleep sends exactly the audio held
(`wav:`), and through real PortAudio on the ALSA rig the question is heard and the answer plays.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soxr

from omnid.link import DEAD_AFTER_S
from omnid.micsleep import SLEEP_AFTER_S
from tests.alsa_rig import AlsaFifoRig
from tests.harness import Daemon, Simulator, make_key, wav_devices, write_config, write_wav
from tests.test_safety_network import appended, assert_held_stretch, hold, kinds, noise, sleep_until
from tests.test_turn_wav import IN_RATE, OUT_RATE, best_correlation, speech


def switches_per_s(pid: int, seconds: float) -> float:
    """Context switches per second (voluntary and not) of all of `pid`'s threads: how often the
    process wakes up."""

    def total() -> int:
        n = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                status = (task / "status").read_text()
            except OSError:  # the thread ended meanwhile
                continue
            for line in status.splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    n += int(line.split()[1])
        return n

    before, t0 = total(), time.monotonic()
    time.sleep(seconds)
    return (total() - before) / (time.monotonic() - t0)


def test_waiting_for_a_press_the_process_sleeps_and_the_next_turn_is_whole(tmp_path: Path) -> None:
    key = make_key()
    mic = noise(40.0, seed=5)
    write_wav(tmp_path / "mic.wav", mic)
    sim = Simulator(tmp_path, key)
    config = write_config(tmp_path, sim.url, key, wav_devices(tmp_path, "earcons = false"))
    daemon = Daemon(tmp_path, config, key)
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        awake = switches_per_s(daemon.proc.pid, 2.0)  # the microphone still runs (20 ms blocks)
        sleep_until(wall0 + SLEEP_AFTER_S + 2.0)
        asleep = switches_per_s(daemon.proc.pid, 3.0)
        held = hold(daemon, 1.5)
        turn = daemon.wait_record("turn", timeout=20)[0]
        status = daemon.ctl("status")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    print(f"\nwake-ups: {awake:.1f}/s with the microphone running, {asleep:.1f}/s asleep")
    assert awake >= 40  # 50 blocks a second, as before the sleep
    assert asleep <= 15, "the process kept waking up while it waited for a press"
    assert turn["OMNID_OUTCOME"] == "answered" and status["turns"] == 1
    recv = sim.wire("recv")
    commit_at = kinds(recv).index("input_audio_buffer.commit")
    sent = assert_held_stretch(mic, appended(recv[:commit_at]), held, wall0)
    print(
        f"held {held.pressed - wall0:.3f}–{held.released - wall0:.3f} s "
        f"(±{held.slack_s * 1000:.1f} ms), sent {sent[0]:.3f}–{sent[1]:.3f} s"
    )


def test_after_the_sleep_portaudio_hears_the_question_and_plays_the_answer(tmp_path: Path) -> None:
    key = make_key()
    utterance = speech(2.0)
    rig = AlsaFifoRig(tmp_path).start()
    sim = Simulator(tmp_path, key)
    devices = f'[audio]\ninput_device = "{rig.mic_device}"\noutput_device = "{rig.spk_device}"\n'
    daemon = Daemon(tmp_path, write_config(tmp_path, sim.url, key, devices), key, **rig.env)
    try:
        daemon.wait_ready()
        assert rig.wait_mic_reader(10), "the daemon's microphone stream is not reading"
        time.sleep(SLEEP_AFTER_S + 2.0)
        assert rig._pending_mic_bytes() > 0, "the microphone stream still reads while idle"
        asleep = switches_per_s(daemon.proc.pid, 2.0)
        assert daemon.ctl("press")["state"] == "listening"
        assert rig.wait_mic_reader(2), "the press did not start the microphone"
        spoken_at = rig.say(utterance)
        time.sleep(max(0.0, spoken_at + len(utterance) / IN_RATE + 0.3 - time.time()))
        daemon.ctl("release")
        turn = daemon.wait_record("turn", timeout=20)[0]
    finally:
        assert daemon.stop() == 0  # the streams close before the rig stops (alsa_rig docstring)
        rig.stop()
        sim.stop()
    print(f"\nwake-ups while asleep, through PortAudio: {asleep:.1f}/s")
    assert asleep <= 15
    assert turn["OMNID_OUTCOME"] == "answered"
    out = rig.speaker_output().astype(np.float64)
    expected = soxr.resample(utterance.astype(np.float64), IN_RATE, OUT_RATE)
    score = best_correlation(out, expected)
    print(f"speaker output vs utterance: normalised correlation {score:.3f}")
    assert score >= 0.8  # the whole question was heard, and the whole answer played


def test_streaming_into_a_quiet_room_keeps_its_session(tmp_path: Path) -> None:
    """Hands-free mode sends the microphone all the time, and a quiet room gives the service
    nothing to answer: the link must still ask for a pong (PING_INTERVAL_S without hearing
    anything), or its 30 s dead-connection rule drops a healthy session twice a minute."""
    key = make_key()
    write_wav(tmp_path / "mic.wav", noise(60.0, seed=9) // 100)  # about -60 dBFS: no speech
    sim = Simulator(tmp_path, key)
    vad = '[session]\nmode = "vad"\n[session.vad]\ntype = "server_vad"\n'
    daemon = Daemon(
        tmp_path, write_config(tmp_path, sim.url, key, vad + wav_devices(tmp_path)), key
    )
    try:
        daemon.wait_ready()
        time.sleep(DEAD_AFTER_S + 8.0)
        status = daemon.ctl("status")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    appends = [r for r in sim.wire("recv") if r["event"]["type"] == "input_audio_buffer.append"]
    sent = [r for r in sim.wire("send") if r["event"]["type"] != "session.updated"]
    print(f"\n{len(appends)} appends, {len(sent)} server events besides session.updated")
    assert len(appends) >= 10 * DEAD_AFTER_S  # it streamed the whole time …
    assert not [r for r in sent if r["event"]["type"] == "input_audio_buffer.speech_started"]
    assert len(daemon.records("session_open")) == 1, "the quiet session was dropped"
    assert "dead connection" not in daemon.output() and status["connected"]
