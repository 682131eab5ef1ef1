"""Many short sessions: compressed-time rollovers under a continuous hands-free conversation.

One run answers two questions of issue 8:

- `rollover_lost_samples`: does every microphone sample reach a session across the swaps? The
  microphone file is faint unique noise (with speech on top), so each appended chunk the
  simulator recorded can be located in it; every sample of the microphone timeline up to the
  last one sent must have reached some session. Missing samples are lost, samples sent twice are
  counted apart (a replay after a drop would show there). Echo guard off: the microphone goes
  to the wire unchanged, so content identifies it.
- `rss_growth_mb`: the daemon's RSS at the end minus after warm-up, across sessions rolled over
  every few seconds (the service's 120-minute cap and 300 s idle close, compressed), with a turn
  every few seconds.
"""

from __future__ import annotations

import base64
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import IN_RATE, VAD, Simulator, launch, make_key, rss_mb, speech, timeline

ROLLOVER_AFTER_MIN = 0.05  # 3 s
MAX_SESSION_S = 8  # the service's cap, compressed: a session that misses its rollover is cut
TURN_EVERY_S, UTTERANCE_S = 3.0, 0.8


def _locate(mic: np.ndarray, chunk: np.ndarray) -> int | None:
    """Where `chunk` occurs in `mic` (unique noise makes one place), or None."""
    n = len(chunk)
    if n < 4 or n > len(mic):
        return None
    last = len(mic) - n + 1
    hits = np.flatnonzero(mic[:last] == chunk[0])
    for k in range(1, 4):
        hits = hits[mic[hits + k] == chunk[k]]
    for pos in hits:
        if np.array_equal(mic[pos : pos + n], chunk):
            return int(pos)
    return None


def coverage(mic: np.ndarray, appends: list[np.ndarray]) -> dict[str, int]:
    """How the appended audio covers the microphone timeline up to the last sample sent."""
    covered = np.zeros(len(mic), np.int32)
    expected, end, foreign = 0, 0, 0
    for chunk in appends:
        n = len(chunk)
        if np.array_equal(mic[expected : expected + n], chunk):
            pos: int | None = expected
        else:
            pos = _locate(mic, chunk)
        if pos is None:
            foreign += n  # e.g. silence a replay adds after a dropped turn
            continue
        covered[pos : pos + n] += 1
        expected = pos + n
        end = max(end, expected)
    return {
        "captured": end,
        "lost": int(np.count_nonzero(covered[:end] == 0)),
        "duplicated": int(np.count_nonzero(covered[:end] > 1)),
        "foreign": foreign,
    }


def sessions(tmp: Path, seconds: float, warmup: float) -> dict[str, Any]:
    total = seconds + 10
    starts = np.arange(2.0, total - 2, TURN_EVERY_S)
    mic = timeline(
        tmp / "mic.wav", total, [(float(s), speech(UTTERANCE_S)) for s in starts], noise_seed=8
    )
    key = make_key()
    sim = Simulator(tmp, key, "--max-session-s", str(MAX_SESSION_S))
    config = VAD.replace("[session]\n", f"[session]\nrollover_after_min = {ROLLOVER_AFTER_MIN}\n")
    config += "silence_duration_ms = 300\n"
    config += (
        f'[audio]\ninput_device = "wav:{tmp / "mic.wav"}"\n'
        f'output_device = "wav:{tmp / "spk.wav"}"\necho_guard = "off"\n'
    )
    rss: list[tuple[float, float]] = []
    try:
        daemon = launch(tmp, sim, key, config)
        try:
            wall0 = daemon.audio_started_wall()
            while time.time() < wall0 + seconds:
                at = time.time() - wall0
                rss.append((at, rss_mb(daemon.proc.pid)))
                time.sleep(max(0.0, 1.0 - (time.time() - wall0) % 1.0))
            turns = daemon.records("turn")
            rollovers = daemon.records("rollover")
        finally:
            daemon.stop()
    finally:
        sim.stop()
    record = sim.record()
    appends = [
        np.frombuffer(base64.b64decode(r["event"]["audio"]), dtype="<i2")
        for r in record
        if r.get("dir") == "recv"
        and isinstance(r.get("event"), dict)
        and r["event"].get("type") == "input_audio_buffer.append"
    ]
    conns = [r for r in record if r.get("dir") == "conn"]
    after = [v for t, v in rss if warmup - 2 <= t <= warmup + 2] or [rss[0][1]]
    return {
        **coverage(mic, appends),
        "mic_seconds": len(mic) / IN_RATE,
        "sessions": sum(1 for c in conns if c["what"] == "open"),
        "capped": sum(1 for c in conns if c["what"] == "close" and c.get("by") == "max-session"),
        "rollovers": len(rollovers),
        "turns": turns,
        "rss_after_warmup_mb": statistics.median(after),
        "rss_end_mb": statistics.median(v for _, v in rss[-5:]),
        "ready_s": daemon.ready_s,
    }
