"""Push-to-talk turns through `wav:` devices: the daemon's own clock is the timeline.

With both devices `wav:`, a sample's position in the output file is its play time relative to the
moment the streams started, so what the user would hear — and when — is measured from the output
file itself, not from what the daemon says about itself.

The file is also a clock the test can read while the daemon runs: it grows a block at a time as
the daemon's clock ticks, never ahead of it, so its length just before a command and just after
the reply brackets, on the daemon's own timeline, the moment the daemon acted on the command —
no wall-clock mapping, no scheduling slack. Only the other direction (how far the daemon's clock
may have fallen behind real time when a reply came) needs a margin: CLOCK_LAG_BLOCKS.
"""

from __future__ import annotations

import base64
import os
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from omnid.demo import bundled_sample
from tests.harness import Daemon, Simulator, make_key, wav_devices, write_config, write_wav

IN_RATE, OUT_RATE = 16_000, 24_000
BLOCK_S = 0.020
LEAD_S = 1.0
SPK_BLOCK = int(BLOCK_S * OUT_RATE)  # 480 output samples: one tick of the `wav:` clock
WAV_HEADER = 44  # omnid.audio.wav writes a plain 44-byte header, then the samples
CLOCK_LAG_BLOCKS = 2
"""How many blocks the daemon's `wav:` clock may run behind real time on a loaded machine when
the test reads the file (it catches up; late blocks keep their scheduled place on the timeline)."""
COMMIT_MS_MAX = 100.0
"""release → commit as the daemon measures it (one clock, but two of its threads: the control
thread stamps the release, the conversation thread sends the commit). 0.1–0.5 ms is usual; the
margin is for a busy machine and stays under one 100 ms microphone batch, the delay a commit
that waited for the next batch would show."""


def timeline_samples(path: Path) -> int:
    """How far the `wav:` speaker's timeline has got, in output samples: the file's length now.
    It never runs ahead of the daemon's clock, so everything the daemon does after this moment
    lands at or after this position."""
    return (os.path.getsize(path) - WAV_HEADER) // 2


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def speech(seconds: float) -> np.ndarray:
    """The bundled spoken sample, repeated or cut to length (int16 @ 16 kHz)."""
    sample = read_wav(bundled_sample())
    reps = int(np.ceil(seconds * IN_RATE / len(sample)))
    return np.tile(sample, reps)[: int(seconds * IN_RATE)].astype(np.int16)


def vowel(seconds: float) -> np.ndarray:
    """A continuous voiced sound (150 Hz and harmonics, -12 dBFS): unlike speech it has no
    pauses, so the moment its echo stops in the output is the moment playback was cut."""
    t = np.arange(int(seconds * IN_RATE)) / IN_RATE
    wave_ = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    return (wave_ / np.abs(wave_).max() * 0.25 * 32767).astype(np.int16)


def write_input(path: Path, utterance: np.ndarray) -> None:
    silence = np.zeros(int(LEAD_S * IN_RATE), np.int16)
    write_wav(path, np.concatenate([silence, utterance, np.zeros(IN_RATE, np.int16)]))


def best_correlation(haystack: np.ndarray, needle: np.ndarray) -> float:
    """Peak normalised cross-correlation of `needle` anywhere in `haystack` (FFT-based)."""
    n = len(haystack) + len(needle)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(haystack, size) * np.conj(np.fft.rfft(needle, size)), size)
    corr = corr[: len(haystack) - len(needle) + 1]
    window = np.convolve(haystack**2, np.ones(len(needle)), mode="valid")
    score = corr / (np.sqrt(np.maximum(window, 1e-9)) * np.linalg.norm(needle))
    return float(score.max())


def run_turn(tmp: Path, utterance: np.ndarray, *, sim_flags: tuple[str, ...] = ()) -> dict:
    key = make_key()
    write_input(tmp / "mic.wav", utterance)
    sim = Simulator(tmp, key, *sim_flags)
    config = write_config(
        tmp,
        sim.url,
        key,
        wav_devices(tmp),
    )
    daemon = Daemon(tmp, config, key)
    return {"sim": sim, "daemon": daemon, "key": key}


def test_a_held_turn_sends_exactly_the_audio_between_press_and_release(tmp_path: Path) -> None:
    """The microphone reaches the conversation in 100 ms batches; the turn must still begin at
    the press and end at the release, to within the 20 ms block in progress at each (the one at
    the release is still being recorded, and the commit does not wait for it) — the last words
    before the release go out with the commit, not with the next batch. The microphone file is
    unique noise, so every sent sample can be found on its timeline (earcons off: no mask)."""
    key = make_key()
    rng = np.random.default_rng(11)
    mic = rng.integers(-3000, 3001, 16 * IN_RATE).astype(np.int16)
    write_wav(tmp_path / "mic.wav", mic)
    sim = Simulator(tmp_path, key)
    config = write_config(
        tmp_path,
        sim.url,
        key,
        wav_devices(tmp_path, "earcons = false", 'echo_guard = "off"'),
    )
    daemon = Daemon(tmp_path, config, key)
    held: list[tuple[float, float]] = []  # (press, release) on the microphone timeline, s
    # (press, release) each as (before the command, after its reply) on the daemon's own
    # timeline, in microphone samples: read off the speaker file (module docstring).
    bracket: list[tuple[tuple[int, int], tuple[int, int]]] = []
    spk = tmp_path / "spk.wav"

    def mic_position() -> int:
        return timeline_samples(spk) * IN_RATE // OUT_RATE

    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        for k in range(4):  # release at four phases of the 100 ms batch
            at = 1.0 + 3.0 * k + 0.027 * k
            time.sleep(max(0.0, wall0 + at - time.time()))
            before = time.time()
            press_at = (mic_position(), 0)
            assert daemon.ctl("press")["state"] == "listening"
            press = (before + time.time()) / 2 - wall0
            press_at = (press_at[0], mic_position())
            time.sleep(max(0.0, wall0 + at + 1.2 - time.time()))
            before = time.time()
            release_at = (mic_position(), 0)
            assert daemon.ctl("release")["ok"]
            held.append((press, (before + time.time()) / 2 - wall0))
            bracket.append((press_at, (release_at[0], mic_position())))
            daemon.wait_record("turn", count=k + 1, timeout=10)
    finally:
        assert daemon.stop() == 0
        sim.stop()

    turns: list[list[np.ndarray]] = [[]]
    for r in sim.wire("recv"):
        kind = r["event"]["type"]
        if kind == "input_audio_buffer.append":
            turns[-1].append(np.frombuffer(base64.b64decode(r["event"]["audio"]), dtype="<i2"))
        elif kind == "input_audio_buffer.commit":
            turns.append([])
    sent = [np.concatenate(t) for t in turns[:-1]]
    assert len(sent) == len(held) == 4
    block = int(BLOCK_S * IN_RATE)
    late = block + CLOCK_LAG_BLOCKS * block  # the block in progress, and a clock running late
    for (press, release), pcm, (pressed, released) in zip(held, sent, bracket, strict=True):
        start = locate(mic, pcm[:64])
        end = locate(mic, pcm[-64:]) + 64
        assert np.array_equal(mic[start:end], pcm)  # one unbroken stretch of the microphone
        print(
            f"\nheld {press:.3f}–{release:.3f} s; sent {start / IN_RATE:.3f}–{end / IN_RATE:.3f} s"
        )
        # Exact, on the daemon's timeline: nothing recorded before the press was asked for, and
        # everything recorded before the release was asked for, went out with the turn.
        assert start >= pressed[0], "audio from before the press was sent"
        assert end >= released[0], "the end of the utterance did not go out with the commit"
        # The turn starts with the block in progress when the press was acted on (before its
        # reply), and ends with the one in progress at the release.
        assert start <= pressed[1] + late, "the turn began later than the press"
        assert end <= released[1] + late, "audio from after the release was sent"


def locate(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where the unique `needle` starts in `haystack`."""
    hits = np.flatnonzero(haystack[: len(haystack) - len(needle) + 1] == needle[0])
    for pos in hits:
        if np.array_equal(haystack[pos : pos + len(needle)], needle):
            return int(pos)
    raise AssertionError("sent audio not found on the microphone timeline")


@pytest.mark.parametrize("seconds", [1.0, 10.0])
def test_release_to_commit_is_fast_whatever_the_utterance_length(
    tmp_path: Path, seconds: float
) -> None:
    utterance = speech(seconds)
    parts = run_turn(tmp_path, utterance)
    sim, daemon = parts["sim"], parts["daemon"]
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        assert daemon.ctl("press")["state"] == "listening"
        time.sleep(max(0.0, wall0 + LEAD_S + seconds + 0.3 - time.time()))
        released = time.time()
        assert daemon.ctl("release")["ok"]
        turn = daemon.wait_record("turn", timeout=seconds + 20)[0]
    finally:
        assert daemon.stop() == 0
        sim.stop()

    assert turn["OMNID_OUTCOME"] == "answered"
    commit_ms = float(turn["OMNID_COMMIT_MS"])
    print(
        f"\n{seconds:.0f} s utterance: release→commit {commit_ms} ms, "
        f"commit→first audio {turn['OMNID_FIRST_AUDIO_MS']} ms"
    )
    assert commit_ms < COMMIT_MS_MAX

    wire = sim.wire("recv")
    kinds = [r["event"]["type"] for r in wire]
    commit_i = kinds.index("input_audio_buffer.commit")
    appends = [r for r in wire[:commit_i] if r["event"]["type"] == "input_audio_buffer.append"]
    # Audio streamed while the button was held: most of it arrived before the release.
    assert sum(r["t"] < released for r in appends) >= len(appends) * 0.8
    assert wire[commit_i]["t"] >= released
    assert kinds[commit_i + 1] == "response.create"

    reply = read_wav(tmp_path / "spk.wav")
    expected = soxr.resample(utterance.astype(np.float64), IN_RATE, OUT_RATE)
    score = best_correlation(reply, expected)
    print(f"reply vs utterance correlation {score:.3f}")
    assert score >= 0.8


def test_tap_during_playback_silences_within_one_block_and_cancels(tmp_path: Path) -> None:
    utterance = vowel(4.0)
    parts = run_turn(tmp_path, utterance, sim_flags=("--pace", "1.0"))
    sim, daemon = parts["sim"], parts["daemon"]
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        daemon.ctl("press")
        time.sleep(max(0.0, wall0 + LEAD_S + 4.3 - time.time()))
        daemon.ctl("release")
        released = int((time.time() - wall0 + 0.5) * OUT_RATE)  # past the "sent" earcon
        # The answer echoes the turn from the press, so it opens with the silence held before the
        # vowel (up to LEAD_S, however soon the daemon was ready): wait for the vowel itself.
        deadline = time.time() + 10
        while time.time() < deadline:
            played = np.fromfile(tmp_path / "spk.wav", dtype="<i2", offset=WAV_HEADER)
            if (np.abs(played[released:].astype(np.int32)) > 64).sum() > OUT_RATE // 10:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # half a second into the vowel
        tap_sent = time.time()
        reply = daemon.ctl("tap")
        tap_done = time.time()
        # The reply comes after the speaker was flushed: whatever the timeline holds beyond
        # this point was rendered after the flush, but for the one block a tick may have been
        # rendering at that moment.
        at_ack = timeline_samples(tmp_path / "spk.wav")
        assert reply["ok"] and reply["state"] == "idle"
        time.sleep(1.0)  # let the timeline run on: it must stay silent
        turn = daemon.wait_record("turn")[0]
    finally:
        assert daemon.stop() == 0
        sim.stop()

    assert turn["OMNID_OUTCOME"] == "cancelled"
    out = read_wav(tmp_path / "spk.wav")
    loud = np.nonzero(np.abs(out) > 64)[0]
    assert len(loud), "nothing was played before the tap"
    last_sound = wall0 + loud[-1] / OUT_RATE
    before_tap = out[int((tap_sent - wall0 - 0.2) * OUT_RATE) : int((tap_sent - wall0) * OUT_RATE)]
    assert np.abs(before_tap).max() > 64, "the answer was not playing when we tapped"
    lag_ms = (last_sound - tap_done) * 1000
    print(f"\nlast reply sample played {lag_ms:.1f} ms after the tap was acknowledged")
    assert loud[-1] < at_ack + SPK_BLOCK, "reply audio more than one block after the tap"

    sent = [r for r in sim.wire("recv") if r["event"]["type"] == "response.cancel"]
    assert len(sent) == 1 and sent[0]["t"] >= tap_sent
