"""Hands-free mode end to end: the service's VAD drives turns, talking over the answer stops it,
and a one-microphone box never answers its own voice.

`omnid simulate` (energy VAD) and `omnid run` run as processes. The output timeline comes from the
`wav:` speaker or from the ALSA rig, which can also feed the speaker back into the microphone the
way a loudspeaker next to a microphone does.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soxr

from tests.alsa_rig import AlsaFifoRig
from tests.harness import Daemon, Simulator, make_key, wav_devices, write_config, write_wav
from tests.test_turn_wav import IN_RATE, OUT_RATE, best_correlation, read_wav, speech, vowel

VAD = '[session]\nmode = "vad"\n[session.vad]\ntype = "server_vad"\n'
BARGE_IN_MS_MAX = 250.0
"""speech_started sent by the simulator → the speaker's last sound. The speaker goes quiet at the
end of the block in progress when the daemon handles the event (0.0 ms measurable here); the
event crosses from the simulator's process to the daemon's first, which a busy machine can delay
by tens of ms. Well under the ~1.5 s of answer still queued then (see below), which is what a
speaker that was not flushed would play."""


def timeline(path: Path, parts: list[tuple[float, np.ndarray | None]]) -> dict[int, float]:
    """Write a mic WAV with utterances at given offsets; return {index: start second}."""
    end = max(at + (len(u) / IN_RATE if u is not None else 0) for at, u in parts)
    pcm = np.zeros(int((end + 0.1) * IN_RATE), np.int16)
    for at, utterance in parts:
        if utterance is not None:
            pcm[int(at * IN_RATE) : int(at * IN_RATE) + len(utterance)] = utterance
    write_wav(path, pcm)
    return {i: at for i, (at, _) in enumerate(parts)}


def start(tmp: Path, extra: str, *sim_flags: str) -> tuple[Simulator, Daemon]:
    key = make_key()
    sim = Simulator(tmp, key, *sim_flags)
    config = write_config(tmp, sim.url, key, VAD + extra)
    return sim, Daemon(tmp, config, key)


def sent(sim: Simulator, kind: str) -> list[float]:
    return [r["t"] for r in sim.wire("send") if r["event"]["type"] == kind]


def test_each_utterance_is_one_turn_and_the_daemon_keeps_listening(tmp_path: Path) -> None:
    first, second = speech(3.0), speech(2.0)[::-1].copy()  # two different utterances
    timeline(tmp_path / "mic.wav", [(1.0, first), (11.0, second), (17.0, None)])
    sim, daemon = start(
        tmp_path,
        wav_devices(tmp_path),
    )
    try:
        daemon.wait_ready()
        turns = daemon.wait_record("turn", count=2, timeout=30)
        time.sleep(1.0)
        status = daemon.ctl("status")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    assert [t["OMNID_OUTCOME"] for t in turns] == ["answered", "answered"]
    assert {t["OMNID_MODE"] for t in turns} == {"vad"}
    assert status["state"] == "idle" and status["connected"] and status["turns"] == 2
    assert len(sent(sim, "input_audio_buffer.speech_started")) == 2
    recv = sim.wire("recv")
    assert not [r for r in recv if r["event"]["type"] == "input_audio_buffer.commit"]
    last_done = sent(sim, "response.done")[-1]
    later = [
        r
        for r in recv
        if r["event"]["type"] == "input_audio_buffer.append" and r["t"] > last_done + 0.5
    ]
    assert len(later) >= 3, "the microphone stopped streaming after the turn"

    out = read_wav(tmp_path / "spk.wav")
    for utterance in (first, second):
        expected = soxr.resample(utterance.astype(np.float64), IN_RATE, OUT_RATE)
        assert best_correlation(out, expected) >= 0.8


def test_talking_over_the_answer_silences_it_within_one_block(tmp_path: Path) -> None:
    first, second = vowel(3.0), speech(2.0)[::-1].copy()
    timeline(tmp_path / "mic.wav", [(1.0, first), (6.5, second), (13.0, None)])
    sim, daemon = start(
        tmp_path,
        wav_devices(tmp_path, 'echo_guard = "off"'),
    )
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        turns = daemon.wait_record("turn", count=2, timeout=30)
    finally:
        assert daemon.stop() == 0
        sim.stop()
    assert [t["OMNID_OUTCOME"] for t in turns] == ["cancelled", "answered"]
    starts = sent(sim, "input_audio_buffer.speech_started")
    assert len(starts) == 2
    cancels = [r for r in sim.wire("recv") if r["event"]["type"] == "response.cancel"]
    assert len(cancels) <= 1

    out = np.abs(read_wav(tmp_path / "spk.wav"))
    barge = starts[1]  # when the service said the user started talking again

    def index(t: float) -> int:
        return int((t - wall0) * OUT_RATE)

    assert out[index(barge) - 4800 : index(barge)].max() > 64, "the answer was not playing"
    window = out[index(barge) : index(barge + 1.0)]
    loud = np.nonzero(window > 64)[0]
    silent_after_ms = (loud[-1] + 1) / OUT_RATE * 1000 if len(loud) else 0.0
    print(f"\nspeaker silent {silent_after_ms:.1f} ms after speech_started was sent")
    assert silent_after_ms <= BARGE_IN_MS_MAX
    # On the output timeline alone (one clock): the first answer, the echo of the 3 s vowel,
    # stopped well before its end (about 1.5 s of it is left when the user talks over it; all
    # of it had arrived by then, so an unflushed speaker would have played it out).
    answer_start = int(np.nonzero(out > 64)[0][0])
    quiet = np.concatenate([[0], np.cumsum(out[index(barge) :] <= 64)])
    gap = OUT_RATE // 10  # where the first answer stopped: the first 100 ms of silence after
    silent = np.nonzero(quiet[gap:] - quiet[:-gap] == gap)[0]
    assert len(silent), "the speaker never went quiet after the barge-in"
    cut = index(barge) + int(silent[0])
    unplayed_s = len(first) / IN_RATE - (cut - answer_start) / OUT_RATE
    assert unplayed_s > 0.5, f"only {unplayed_s:.2f} s of the answer were left unplayed"


def echo_run(tmp: Path, guard: str) -> tuple[int, int]:
    """One utterance into a box whose speaker feeds back into its microphone."""
    # The microphone's block is vad mode's 100 ms; the speaker's 20 ms (`audio.base.output_block`).
    rig = AlsaFifoRig(tmp, feedback_gain=0.5, block_ms=100, spk_block_ms=20).start()
    sim, daemon = None, None
    try:
        key = make_key()
        sim = Simulator(tmp, key)
        config = write_config(
            tmp,
            sim.url,
            key,
            VAD
            + (
                f'[audio]\ninput_device = "{rig.mic_device}"\noutput_device = "{rig.spk_device}"\n'
                f'echo_guard = "{guard}"\n'
            ),
        )
        daemon = Daemon(tmp, config, key, **rig.env)
        daemon.wait_ready()
        assert rig.wait_mic_reader(10)
        utterance = speech(2.5)
        rig.say(utterance)
        daemon.wait_record("turn", timeout=20)
        time.sleep(2.5 + 2.0)  # the answer plays (and echoes) out, and then some
    finally:
        if daemon is not None:
            assert daemon.stop() == 0
        rig.stop()
        if sim is not None:
            sim.stop()
    return len(sent(sim, "input_audio_buffer.speech_started")), len(daemon.records("turn"))


def test_half_duplex_never_answers_its_own_voice(tmp_path: Path) -> None:
    speech_starts, turns = echo_run(tmp_path / "guarded", "half_duplex")
    assert (speech_starts, turns) == (1, 1)


def test_without_the_guard_the_echo_becomes_a_turn(tmp_path: Path) -> None:
    """The same path with echo_guard off: proves the echo test above can fail."""
    speech_starts, turns = echo_run(tmp_path / "open", "off")
    assert speech_starts >= 2 and turns >= 2
