"""The walking skeleton end to end on real parts: `omnid run` and `omnid simulate` as processes,
audio through real PortAudio into FIFO-backed ALSA `file` PCMs paced in real time by the test,
turns driven by `omnid ctl`. What is asserted is what a user and the service would observe: the
events on the wire and the sound that came out of the speaker.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soxr

from tests.alsa_rig import AlsaFifoRig
from tests.harness import ROOT, Daemon, Simulator, make_key, write_config
from tests.test_turn_wav import IN_RATE, OUT_RATE, best_correlation, speech


def omnid_ctl(socket: Path, action: str) -> str:
    """The real `omnid ctl` command, as an operator would type it."""
    done = subprocess.run(
        [sys.executable, "-m", "omnid.cli", "ctl", action, "--socket", str(socket)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_push_to_talk_turn_through_portaudio_and_the_simulator(tmp_path: Path) -> None:
    key = make_key()
    utterance = speech(3.0)
    rig = AlsaFifoRig(tmp_path).start()
    sim = Simulator(tmp_path, key)
    config = write_config(
        tmp_path,
        sim.url,
        key,
        (f'[audio]\ninput_device = "{rig.mic_device}"\noutput_device = "{rig.spk_device}"\n'),
    )
    daemon = Daemon(tmp_path, config, key, **rig.env)
    try:
        daemon.wait_ready()
        assert rig.wait_mic_reader(10), "the daemon's microphone stream is not reading"
        assert '"state": "listening"' in omnid_ctl(daemon.socket, "press")
        spoken_at = rig.say(utterance)
        time.sleep(max(0.0, spoken_at + len(utterance) / IN_RATE + 0.3 - time.time()))
        released = time.time()
        omnid_ctl(daemon.socket, "release")
        turn = daemon.wait_record("turn", timeout=20)[0]
        status = omnid_ctl(daemon.socket, "status")
    finally:
        code = daemon.stop()  # the streams close before the rig stops (alsa_rig docstring)
        rig.stop()
        sim.stop()
    assert code == 0
    assert turn["OMNID_OUTCOME"] == "answered"
    assert '"turns": 1' in status and '"connected": true' in status

    wire = sim.wire("recv")
    kinds = [r["event"]["type"] for r in wire]
    commit_i = kinds.index("input_audio_buffer.commit")
    appends = [r["t"] for r in wire[:commit_i] if r["event"]["type"] == "input_audio_buffer.append"]
    assert appends and appends[0] < spoken_at + 1.0, "audio did not stream while speaking"
    assert sum(t < released for t in appends) >= 0.8 * len(appends)
    assert wire[commit_i]["t"] >= released
    assert kinds[commit_i + 1] == "response.create"
    assert "input_audio_buffer.append" not in kinds[commit_i:]

    out = rig.speaker_output().astype(np.float64)
    expected = soxr.resample(utterance.astype(np.float64), IN_RATE, OUT_RATE)
    score = best_correlation(out, expected)
    print(f"\nspeaker output vs utterance: normalised correlation {score:.3f}")
    assert score >= 0.8
