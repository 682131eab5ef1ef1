"""The wake-word detector on synthesised speech (issue 17): how often it hears the wake phrase in
noise, how often it hears it where nobody said it, and what listening costs.

It measures `omnid.wake.Detector` itself, in this process, fed the way the daemon's wake thread
feeds it — 20 ms blocks of 16 kHz int16, one stream, the configured defaults (the model's own
cutoff, a 1.0 s refractory) — so the figures are the detector's, not the daemon's; the daemon's
cost while waiting in wake mode is `bench/waiting.py`'s.

- detection: `okay nabu, <question>` in the reliable voices, speeds and pitches (bench/speech.py),
  each in a clip of its own with a second of noise before and after, at 20, 15 and 10 dB SNR in
  white, pink and babble noise (and clean, the baseline): detected when the detector fires after
  the phrase's first sound;
- false activations: an hour (by default) of ordinary speech without the wake word, one talker a
  minute in turn over a background that changes with each minute, streamed through one detector
  without a reset; near-miss phrases are run apart and reported apart (they are the detector's
  known weak spot, not ordinary speech);
- CPU: process time spent inside `feed()` per second of audio fed, over the false-activation
  stream (synthesis and mixing are outside the window).

Noise comes from beds made once per kind and sliced at random offsets, so a long run costs
synthesis once (babble is six talkers of speech).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import speech as sp
from bench.speech import RATE

BLOCK = RATE * 20 // 1000  # what the daemon's microphone delivers
REFRACTORY_S = 1.0  # `wake.refractory_s`'s default
MODEL = "okay_nabu"  # `wake.model`'s default
SNRS = (20, 15, 10)
NOISES = ("white", "pink", "babble")
LEAD_S, TAIL_S = 1.0, 1.0  # noise before and after a wake utterance
SEGMENT_S = 60.0  # one talker and one background per segment of the false-activation stream
# The false-activation stream's backgrounds, in turn: (noise, SNR dB). A quiet room first.
BACKGROUNDS = (
    ("white", 40),
    ("pink", 20),
    ("babble", 15),
    ("white", 15),
    ("pink", 10),
    ("babble", 10),
)
BED_S = 120.0  # length of each noise bed


def _log(message: str) -> None:
    print(f"bench: wake: {message}", file=sys.stderr, flush=True)


NOISE_MAKERS: dict[str, Callable[[int, int], np.ndarray]] = {
    "white": sp.white_noise,
    "pink": sp.pink_noise,
    "babble": sp.babble,
}


class NoiseBank:
    """One seeded bed of each noise, sliced at random offsets (wrapping around)."""

    def __init__(self, seed: int, seconds: float = BED_S) -> None:
        self.rng = np.random.default_rng(seed)
        n = int(seconds * RATE)
        self.beds = {kind: make(n, seed + i) for i, (kind, make) in enumerate(NOISE_MAKERS.items())}

    def take(self, kind: str, n: int) -> np.ndarray:
        bed = self.beds[kind]
        start = int(self.rng.integers(len(bed)))
        reps = (start + n) // len(bed) + 1
        return np.tile(bed, reps)[start : start + n] if reps > 1 else bed[start : start + n]


class Stream:
    """A detector fed in 20 ms blocks on its own sample clock, its CPU time and peak kept."""

    def __init__(self, model: str = MODEL, cutoff: float | None = None) -> None:
        from omnid.wake import Detector

        self.detector = Detector(model, cutoff, REFRACTORY_S)
        self.samples = 0
        self.cpu_s = 0.0
        self.peak = 0.0
        self.peak_at = 0.0

    @property
    def t(self) -> float:
        return self.samples / RATE

    def _heard(self, t: float, p: float) -> None:
        if p > self.peak:
            self.peak, self.peak_at = p, t

    def feed(self, pcm: np.ndarray, stop_after: float | None = None) -> list[float]:
        """Feed `pcm`; the stream times (s) of the detections in it. With `stop_after`, stops at
        the first detection at or after that stream time (the rest is not fed)."""
        fired: list[float] = []
        for i in range(0, len(pcm), BLOCK):
            block = pcm[i : i + BLOCK]
            self.samples += len(block)
            c0 = time.process_time()
            found = self.detector.feed(block, self.t, self._heard)
            self.cpu_s += time.process_time() - c0
            fired += [d.t for d in found]
            if stop_after is not None and any(t >= stop_after for t in fired):
                break
        return fired


@dataclass
class Utterance:
    voice: str
    speed: int
    pitch: int
    question: str
    pcm: np.ndarray  # the padded clip, clean
    onset: int  # first audible sample of the phrase in `pcm`


def utterances(count: int, seed: int) -> list[Utterance]:
    """`count` wake utterances: distinct (voice, speed, pitch) of the reliable set while they
    last, a question each, padded with `LEAD_S` / `TAIL_S` of silence for the noise to fill."""
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(sp.VOICES, sp.SPEEDS, sp.PITCHES))
    order = [combos[int(i)] for i in rng.permutation(len(combos))]
    out = []
    for k in range(count):
        voice, speed, pitch = order[k % len(order)]
        question = sp.QUESTIONS[k % len(sp.QUESTIONS)]
        clip = sp.synth(f"{sp.WAKE_PHRASE}, {question}", voice, speed, pitch)
        lead, tail = np.zeros(int(LEAD_S * RATE), np.int16), np.zeros(int(TAIL_S * RATE), np.int16)
        padded = np.concatenate([lead, clip, tail])
        out.append(Utterance(voice, speed, pitch, question, padded, sp.speech_bounds(padded)[0]))
    return out


def detection(utts: list[Utterance], bank: NoiseBank) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each utterance alone (a fresh detector), clean and in every noise at every SNR. Returns
    the detected counts ({"clean": n, "white": {20: n, …}, …}), and the feeding's CPU and audio
    seconds plus misses and detections in the noise before the phrase."""
    counts: dict[str, Any] = {"clean": 0} | {kind: dict.fromkeys(SNRS, 0) for kind in NOISES}
    misses: list[str] = []
    early = 0
    cpu = audio = 0.0
    conditions: list[tuple[str, int | None]] = [("clean", None)]
    conditions += [(kind, snr) for kind in NOISES for snr in SNRS]
    for kind, snr in conditions:
        for u in utts:
            pcm = u.pcm if snr is None else sp.mix_at_snr(u.pcm, bank.take(kind, len(u.pcm)), snr)
            stream = Stream()
            onset_s = u.onset / RATE
            fired = stream.feed(pcm, stop_after=onset_s)
            cpu, audio = cpu + stream.cpu_s, audio + stream.t
            early += sum(t < onset_s for t in fired)
            if any(t >= onset_s for t in fired):
                if snr is None:
                    counts["clean"] += 1
                else:
                    counts[kind][snr] += 1
            else:
                misses.append(f"{kind} {snr} dB: {u.voice} -s {u.speed} -p {u.pitch}")
    return counts, {"cpu_s": cpu, "audio_s": audio, "misses": misses, "early": early}


def false_activations(seconds: float, bank: NoiseBank, seed: int) -> dict[str, Any]:
    """`seconds` of ordinary speech over changing backgrounds through one detector."""
    rng = np.random.default_rng(seed)
    talkers = list(itertools.product(sp.TALKER_VOICES, sp.TALKER_SPEEDS, sp.TALKER_PITCHES))
    stream = Stream()
    fired: list[tuple[float, str]] = []
    top: list[tuple[float, str]] = []  # each segment's peak probability and what it was
    segments = max(1, round(seconds / SEGMENT_S))
    seg_n = int(seconds / segments * RATE)
    for k in range(segments):
        voice, speed, pitch = talkers[int(rng.integers(len(talkers)))]
        kind, snr = BACKGROUNDS[k % len(BACKGROUNDS)]
        talk = sp.ordinary_speech(seg_n, int(rng.integers(2**31)), voice, speed, pitch)
        pcm = sp.mix_at_snr(talk, bank.take(kind, seg_n), snr)
        what = f"{voice} -s {speed} -p {pitch} over {kind} at {snr} dB"
        stream.peak = 0.0
        fired += [(t, what) for t in stream.feed(pcm)]
        top.append((stream.peak, what))
        if segments > 5 and (k + 1) % max(1, segments // 6) == 0:
            _log(f"false activations: {k + 1}/{segments} minutes, {len(fired)} so far")
    hours = stream.t / 3600
    return {
        "hours": hours,
        "activations": len(fired),
        "per_hour": len(fired) / hours,
        "max_probability": max(p for p, _ in top),
        "top": sorted(top, reverse=True)[:3],
        "fired": fired[:10],
        "cpu_s": stream.cpu_s,
        "audio_s": stream.t,
        "cutoff": stream.detector.cutoff,
    }


def near_misses(voices: tuple[str, ...], bank: NoiseBank) -> dict[str, Any]:
    """Every `NEAR_MISSES` phrase in each of `voices`, 1.5 s apart over a quiet room, through
    one detector: the phrases that fired (within the phrase or 1 s after it)."""
    stream = Stream()
    by_phrase: dict[str, int] = dict.fromkeys(sp.NEAR_MISSES, 0)
    total = 0
    gap = np.zeros(int(1.5 * RATE), np.int16)
    for voice in voices:
        for phrase in sp.NEAR_MISSES:
            clip = np.concatenate([gap, sp.synth(phrase, voice, 175, 50), gap])
            pcm = sp.mix_at_snr(clip, bank.take("white", len(clip)), 40)
            start = stream.t
            fired = stream.feed(pcm)
            total += 1
            if any(t >= start + len(gap) / RATE for t in fired):
                by_phrase[phrase] += 1
    return {
        "phrases": total,
        "activated": sum(by_phrase.values()),
        "by_phrase": {k: v for k, v in by_phrase.items() if v},
        "hours": stream.t / 3600,
    }


def wake(
    utterance_count: int, false_s: float, near_miss_voices: int, bed_s: float = BED_S
) -> dict[str, Any]:
    """The wake-word section of `scripts/bench`: raw results for bench/report.py."""
    from omnid import wake as omnid_wake

    if not omnid_wake.available():
        raise RuntimeError("pymicro-wakeword is not installed: " + omnid_wake.INSTALL_HINT)
    if not sp.available():
        raise RuntimeError("espeak-ng is not installed (scripts/setup installs it)")
    started = time.monotonic()
    bank = NoiseBank(seed=17, seconds=bed_s)
    utts = utterances(utterance_count, seed=17)
    _log(f"{len(utts)} wake utterances in {len(NOISES)} noises at {len(SNRS)} SNRs")
    counts, det = detection(utts, bank)
    _log(f"false activations over {false_s / 60:.1f} min of speech")
    fa = false_activations(false_s, bank, seed=18)
    near = near_misses(sp.VOICES[:near_miss_voices], bank)
    return {
        "model": MODEL,
        "cutoff": fa["cutoff"],
        "utterances": len(utts),
        "detected": counts,
        "detection": det,
        "false": fa,
        "near_miss": near,
        "cpu_pct": 100 * fa["cpu_s"] / fa["audio_s"],
        "seconds": time.monotonic() - started,
    }
