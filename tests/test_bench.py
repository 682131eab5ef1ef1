"""`scripts/bench --quick --json`: one JSON object with exactly the report's keys, every one a
number.

The quick run exercises every scenario of the real benchmark (push-to-talk turns, barge-in,
rollovers, the load run against the official SDK, start-up; the wake-word detector on synthesised
speech in noise and without the wake word; the daemon waiting in each mode; a wake with wake
mode's session kept warm and opened on the wake word, on loopback and behind a slow handshake)
with tiny counts, so its figures mean nothing; what it proves is that a full run can produce all
of them. Some things hold even so: espeak-ng's reliable voices are heard clean, half a minute of
ordinary speech does not wake the detector, a warm session reopens on its own while a cold one
stays shut until the wake word opens one, and a handshake of 3.2 s does not hide behind the
question. The synthesised speech the wake-word benchmark and tests use (bench/speech.py) is
checked here too, the slow handshake's proxy (bench/slow_link.py), and `--only` on its own.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from bench import speech
from bench.report import KEYS, WAKE_KEYS
from bench.slow_link import SlowHandshake

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_quick_bench_prints_every_key_as_a_number() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # one JSON object and nothing else on stdout
    figures = json.loads(lines[0])
    assert list(figures) == list(KEYS)
    for key, value in figures.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value), (key, value)
    assert figures["rollover_lost_samples"] == 0
    assert figures["cpu_pct"] > 0 and figures["sdk_cpu_pct"] > 0
    assert 0 < figures["ready_s"] < 10
    assert figures["wake_detected_clean"] == figures["wake_utterances"] > 0
    assert figures["wake_false_activations"] == 0 and figures["wake_false_hours"] > 0
    assert 0 < figures["wake_cpu_pct"] < 100
    assert figures["wake_session_connects_per_wake_warm"] == 0
    assert figures["wake_session_connects_per_wake_cold"] == 1
    assert figures["wake_session_reconnects_per_min_warm"] > 0
    assert figures["wake_session_reconnects_per_min_cold"] == 0
    slow, warm = (figures[f"wake_session_first_audio_ms_{s}"] for s in ("cold_slow800", "warm"))
    assert 0 < warm < slow


@pytest.mark.timeout(60)
def test_only_wake_prints_the_wake_keys() -> None:
    """`--only wake` runs that section alone (no daemon, no setup) and reports its keys only."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "wake", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(json.loads(proc.stdout)) == list(WAKE_KEYS)


def test_slow_link_slows_the_handshake_and_nothing_after_it() -> None:
    """bench/slow_link.py: the server is reached two round trips late (TCP, TLS), and what it
    sends is held a round trip until `session.updated` has gone by; then nothing is held."""
    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    rtt = 0.1
    link = SlowHandshake(f"ws://127.0.0.1:{server.getsockname()[1]}/api-ws/v1/realtime", rtt)
    parts = urlsplit(link.url)
    assert parts.path == "/api-ws/v1/realtime" and parts.port != server.getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", parts.port or 0), timeout=5) as client:

            def ask(message: bytes) -> float:
                started = time.monotonic()
                client.sendall(message)
                got = b""
                while len(got) < len(message):
                    got += client.recv(4096)
                assert got == message
                return time.monotonic() - started

            first, updated, after = ask(b"upgrade"), ask(b'"session.updated"'), ask(b"audio")
    finally:
        link.close()
        server.close()
    assert 3 * rtt <= first < 3 * rtt + 0.15
    assert rtt <= updated < rtt + 0.15
    assert after < rtt / 2
    (shake,) = link.handshakes
    assert shake.ready is not None and shake.ready - shake.accepted >= 4 * rtt


needs_espeak = pytest.mark.skipif(not speech.available(), reason="espeak-ng is not installed")


@needs_espeak
def test_synth_is_deterministic_and_bounded() -> None:
    clip = speech.synth("okay nabu, what time is it", "en-us", 175, 50)
    speech._synth.cache_clear()
    again = speech.synth("okay nabu, what time is it", "en-us", 175, 50)
    assert clip.dtype == np.int16 and np.array_equal(clip, again)
    first, last = speech.speech_bounds(clip)
    assert 0 <= first < 0.1 * speech.RATE and last > len(clip) - 0.5 * speech.RATE  # espeak pads
    padded = np.concatenate([np.zeros(1234, np.int16), clip])
    assert speech.speech_bounds(padded) == (first + 1234, last + 1234)


@needs_espeak
def test_mix_at_snr_sets_the_ratio_and_never_clips() -> None:
    clip = np.concatenate([np.zeros(8000, np.int16), speech.synth("the kettle is broken")])
    first, last = speech.speech_bounds(clip)
    for noise in (speech.white_noise(len(clip), 1), speech.babble(len(clip), 2)):
        for snr in (20.0, 10.0, -10.0):
            mixed = speech.mix_at_snr(clip, noise, snr)
            # mixed = a·clip + b·noise (to rounding): recover a and b, then the ratio.
            parts = np.stack([clip, noise], axis=1).astype(float)
            (a, b), *_ = np.linalg.lstsq(parts, mixed.astype(float), rcond=None)
            s_rms = a * np.sqrt(np.mean(clip[first : last + 1].astype(float) ** 2))
            measured = 20 * np.log10(s_rms / (b * np.sqrt(np.mean(noise.astype(float) ** 2))))
            assert abs(measured - snr) < 0.05, (snr, measured)
            assert np.abs(mixed.astype(int)).max() <= 32767
            assert a == pytest.approx(1, abs=1e-3) or np.abs(mixed.astype(int)).max() > 32000
