"""Latency scenarios: release → commit over utterances of growing length (push-to-talk), and
`speech_started` → silent speaker when talking over an answer (hands-free).

Both read what the daemon itself reports only where it is the measuring point the issue names:
`OMNID_COMMIT_MS` runs from the release event (stamped when the control socket read it) to the
commit on the socket, `OMNID_PLAY_MS` from the first audio delta received to its first sample
handed to the device. Barge-in is read from the outside instead: the simulator's record says when
`speech_started` went out, the `wav:` speaker's file says when the sound stopped (a sample's
position in it is its play time on the daemon's clock).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    OUT_RATE,
    VAD,
    Simulator,
    launch,
    make_key,
    read_wav,
    speech,
    timeline,
    vowel,
)

LEAD_S = 2.0  # silence before the first utterance: the session is up well before it
RELEASE_AFTER_S = 0.3  # held a little after the speech ends, as people do
NEXT_PRESS_S = 1.2  # after a release, the next press: the answer is playing by then
LOUD = 64  # |sample| above this is sound (the tests' threshold)


def _devices(tmp: Path, extra: str = "") -> str:
    return (
        f'[audio]\ninput_device = "wav:{tmp / "mic.wav"}"\n'
        f'output_device = "wav:{tmp / "spk.wav"}"\n{extra}'
    )


def _wait_wall(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def commit_turns(tmp: Path, lengths: list[float]) -> dict[str, Any]:
    """Push-to-talk turns of the given lengths, one daemon. Each press after the first comes
    while the previous answer plays (it interrupts it: the turn is recorded `cancelled`, with
    its timings), so long utterances do not cost their answer's playing time too."""
    schedule: list[tuple[float, float]] = []
    at = LEAD_S
    for seconds in lengths:
        schedule.append((at, seconds))
        at += seconds + RELEASE_AFTER_S + NEXT_PRESS_S
    timeline(tmp / "mic.wav", at + lengths[-1] + 3, [(s, speech(n)) for s, n in schedule])
    key = make_key()
    sim = Simulator(tmp, key)
    try:
        daemon = launch(tmp, sim, key, _devices(tmp))
        try:
            wall0 = daemon.audio_started_wall()
            for start, seconds in schedule:
                _wait_wall(wall0 + start - 0.2)
                daemon.ctl("press")
                _wait_wall(wall0 + start + seconds + RELEASE_AFTER_S)
                daemon.ctl("release")
            turns = daemon.wait_record("turn", count=len(lengths), timeout=lengths[-1] + 20)
        finally:
            daemon.stop()
    finally:
        sim.stop()
    commits = []
    for seconds, turn in zip(lengths, turns, strict=True):
        if turn.get("OMNID_OUTCOME") not in ("answered", "cancelled"):
            raise RuntimeError(f"commit scenario: turn not answered: {turn}")
        commits.append((seconds, float(turn["OMNID_COMMIT_MS"])))
    return {"commits": commits, "turns": turns, "ready_s": daemon.ready_s}


def barge_ins(tmp: Path, count: int) -> dict[str, Any]:
    """Hands-free, echo guard off: a continuous vowel, its (echoed) answer, and the next vowel
    spoken over that answer, `count` times. For every `speech_started` sent while the speaker
    played: how long sound went on after it (0 when the block already playing was the last)."""
    segment, gap = 2.0, 1.0  # the next vowel starts 1 s after the last ended: mid-answer
    starts = [LEAD_S + k * (segment + gap) for k in range(count + 1)]
    total = starts[-1] + segment + 4.0
    timeline(tmp / "mic.wav", total, [(s, vowel(segment)) for s in starts])
    key = make_key()
    sim = Simulator(tmp, key)
    vad = VAD + "silence_duration_ms = 300\n"
    try:
        daemon = launch(tmp, sim, key, vad + _devices(tmp, 'echo_guard = "off"\n'))
        try:
            wall0 = daemon.audio_started_wall()
            turns = daemon.wait_record("turn", count=count + 1, timeout=total + 20)
            time.sleep(0.3)
        finally:
            daemon.stop()
    finally:
        sim.stop()
    started = [
        r["t"]
        for r in sim.wire("send")
        if r["event"]["type"] == "input_audio_buffer.speech_started"
    ]
    out = np.abs(read_wav(tmp / "spk.wav").astype(np.int32))
    silent_after: list[float] = []
    for t in started:
        i = int((t - wall0) * OUT_RATE)
        if i < OUT_RATE // 5 or out[i - OUT_RATE // 5 : i].max() <= LOUD:
            continue  # nothing was playing: a turn, not a barge-in
        loud = np.nonzero(out[i : i + OUT_RATE] > LOUD)[0]
        silent_after.append((loud[-1] + 1) / OUT_RATE * 1000 if len(loud) else 0.0)
    if len(silent_after) < count:
        raise RuntimeError(f"barge-in scenario: {len(silent_after)} of {count} barge-ins seen")
    return {"barge_ms": silent_after, "turns": turns, "ready_s": daemon.ready_s}


def taps(tmp: Path, count: int) -> dict[str, Any]:
    """Push-to-talk: a held vowel, its (echoed) answer, and a tap of the button 0.6 s into that
    answer, `count` times. For every tap: how long sound went on after the tap was sent
    (`omnid ctl tap`, stamped just before it left; 0 when nothing sounded after it)."""
    segment, answer_at, cycle = 1.5, 0.6, 5.0
    starts = [LEAD_S + k * cycle for k in range(count)]
    total = starts[-1] + cycle + 2.0
    timeline(tmp / "mic.wav", total, [(s, vowel(segment)) for s in starts])
    key = make_key()
    sim = Simulator(tmp, key)
    tapped: list[float] = []
    try:
        daemon = launch(tmp, sim, key, _devices(tmp, "earcons = false\n"))
        try:
            wall0 = daemon.audio_started_wall()
            for k, start in enumerate(starts):
                _wait_wall(wall0 + start - 0.1)
                daemon.ctl("press")
                _wait_wall(wall0 + start + segment + 0.1)
                daemon.ctl("release")
                deadline = time.time() + 10
                while daemon.ctl("status")["state"] != "speaking" and time.time() < deadline:
                    time.sleep(0.01)
                time.sleep(answer_at)
                tapped.append(time.time())
                daemon.ctl("tap")
                daemon.wait_record("turn", count=k + 1, timeout=10)
            time.sleep(0.3)
        finally:
            daemon.stop()
    finally:
        sim.stop()
    out = np.abs(read_wav(tmp / "spk.wav").astype(np.int32))
    silent_after: list[float] = []
    for t in tapped:
        i = int((t - wall0) * OUT_RATE)
        if out[i - OUT_RATE // 5 : i].max() <= LOUD:
            raise RuntimeError("tap scenario: nothing was playing when the tap was sent")
        loud = np.nonzero(out[i : i + OUT_RATE] > LOUD)[0]
        silent_after.append((loud[-1] + 1) / OUT_RATE * 1000 if len(loud) else 0.0)
    return {"tap_ms": silent_after, "ready_s": daemon.ready_s}
