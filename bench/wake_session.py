"""Wake mode's session: kept warm while waiting, or opened on the wake word (issue 17)?

With `session.keep_warm = true` (the default) the daemon holds a session while nobody talks and
reopens it at once whenever the service closes it for idling (~300 s: 12 reconnects an hour);
with `false` it lets it go and connects on the wake word, the handshake running while the user
is still saying the question (the uplink keeps the audio until the session is ready). This
measures both, each `omnid run` in wake mode (`wav:` devices, no earcons) against one
`omnid simulate --idle-timeout-s IDLE_S`:

- first audio after a wake: "okay nabu, what time is it" (espeak-ng, each round in another of
  its reliable voices; the phrase and the question each trimmed, a comma's 150 ms between) said
  into a quiet room once the simulator's idle close has had its effect — `keep_warm = false`: no
  session; `true`: one reopened twice. Timed from the daemon's `heard at wall` line to the
  answer's first sample in the speaker's WAV (sample i sounded at the `audio open: … started at
  wall` time + i/24000; the speaker writes digital silence until then), and from the end of the
  question, which is what the user waits through. The first sample, not the first loud one: the
  simulator's answer echoes the committed audio, which starts with some quiet room (~160 ms, the
  VAD's prefix padding) before the phrase, where a real answer starts speaking at once;
- the same cold start through `bench/slow_link.py`, which makes each of the handshake's round
  trips (TCP, TLS, upgrade, `session.update`) take 300 ms, then 800 ms: does the handshake hide
  behind the question and the service's end-of-speech silence?
- reconnects while waiting: the daemon's `session_open` records before the wake (timed by the
  simulator's record of each session's opening), per minute at the simulator's IDLE_S, and per
  hour scaled to the service's 300 s; and the sessions each wake opened.

One wake per daemon run: the simulator's idle clock restarts with every answer, so a later wake
in the same run would meet the warm session's next close at a point that depends on the
answer's length, and a warm session closed in the middle of a turn is a third case, not the
warm one. The first wake's place is known: `CYCLES` idle closes after the start, plus
`AFTER_REOPEN_S`, so that the turn (~2.5 s from the phrase's first sound to the response, which
restarts the idle clock) has its response well before the next close. Each wake is checked all
the same — was a session open when it was heard, did one close before the answer — and one that
met the other case is counted apart, not in the medians. Runs are interleaved (warm, cold,
cold 300, cold 800, warm, …), each round in another voice.

The simulator's model answers 150 ms after the commit, and the end of the question is found by
its VAD after 800 ms of silence (`session.vad`'s default): both are in every setting's figure,
so compare the settings, not the figures with the service's. The uplink sends audio in 100 ms
appends, and when the VAD has its 800 ms depends on where they fall (a cold start's backlog goes
in one burst and shifts them): settings within ~100 ms of each other are the same.
"""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import speech as sp
from bench.common import IN_RATE, OUT_RATE, Simulator, launch, make_key, timeline
from bench.slow_link import SlowHandshake

IDLE_S = 4.0  # the simulator's idle close (the service's: SERVICE_IDLE_S)
SERVICE_IDLE_S = 300.0
CYCLES = 2  # idle closes before the wake: the warm session has been reopened twice
AFTER_REOPEN_S = 0.2  # the phrase's first sound, after the warm session's last reopen
GAP_S = 0.15  # the comma's pause between the wake phrase and the question
TAIL_S = 12.0  # quiet room after the question (the run stops at the answer)
ANSWER_WITHIN_S = 20.0  # after the phrase: no answer by then is a run that failed


@dataclass(frozen=True)
class Setting:
    name: str
    keep_warm: bool
    rtt_s: float | None = None  # through SlowHandshake, each handshake round trip this long


SETTINGS = (
    Setting("warm", True),
    Setting("cold", False),
    Setting("cold_slow300", False, 0.3),
    Setting("cold_slow800", False, 0.8),
)
NAMES = tuple(s.name for s in SETTINGS)


def round_voice(round_: int) -> str:
    """Each round in another of espeak-ng's voices that say the wake phrase reliably: the
    simulator and the `wav:` clock are deterministic, so one voice would give one figure."""
    return sp.VOICES[round_ % len(sp.VOICES)]


def _log(message: str) -> None:
    print(f"bench: wake-session: {message}", file=sys.stderr, flush=True)


def utterance(voice: str) -> np.ndarray:
    """ "okay nabu, what time is it" in `voice`: each part trimmed to its sound, `GAP_S`
    between."""

    def said(text: str) -> np.ndarray:
        pcm = sp.synth(text, voice)
        first, last = sp.speech_bounds(pcm)
        return np.asarray(pcm[first : last + 1])

    gap = np.zeros(int(GAP_S * IN_RATE), np.int16)
    return np.concatenate([said(sp.WAKE_PHRASE), gap, said("what time is it")])


def _answer_start(path: Path, index: int) -> int | None:
    """The first sample at or after `index` that is not digital silence, in a speaker WAV still
    being written (the header's sizes lag: the samples are read raw, after its 44 bytes)."""
    try:
        raw = path.read_bytes()[44:]
    except OSError:
        return None
    sound = np.flatnonzero(np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2")[index:])
    return index + int(sound[0]) if len(sound) else None


def _heard_walls(output: str) -> list[float]:
    lines = [x for x in output.splitlines() if "heard at wall" in x]
    return [float(x.rsplit("heard at wall", 1)[1].strip(" )")) for x in lines]


def _sessions(sim: Simulator, ids: set[str]) -> tuple[list[tuple[float, float]], list[float]]:
    """The daemon's sessions as the simulator saw them: (opened, closed or inf) in order, and
    the times microphone audio arrived from them."""
    opened: dict[str, float] = {}
    closed: dict[str, float] = {}
    appends: list[float] = []
    for r in sim.record():
        sid = r.get("session")
        if sid not in ids:
            continue
        if r.get("dir") == "conn" and r.get("what") == "open":
            opened[sid] = r["t"]
        elif r.get("dir") == "conn" and r.get("what") == "close":
            closed[sid] = r["t"]
        elif r.get("dir") == "recv" and (r.get("event") or {}).get("type") == (
            "input_audio_buffer.append"
        ):
            appends.append(r["t"])
    spans = sorted((t, closed.get(sid, float("inf"))) for sid, t in opened.items())
    return spans, appends


def one_wake(
    tmp: Path, sim: Simulator, key: str, setting: Setting, link: SlowHandshake | None, voice: str
) -> dict[str, Any]:
    """One daemon run with one wake in `voice`: its timings and what the session was doing."""
    clip = utterance(voice)
    onset = CYCLES * IDLE_S + AFTER_REOPEN_S
    question_end = onset + len(clip) / IN_RATE
    mic, spk = tmp / "mic.wav", tmp / "spk.wav"
    timeline(mic, question_end + TAIL_S, [(onset, clip)], noise_seed=17)
    config = (
        f'[session]\nmode = "wake"\nkeep_warm = {"true" if setting.keep_warm else "false"}\n'
        f'[audio]\nearcons = false\ninput_device = "wav:{mic}"\noutput_device = "wav:{spk}"\n'
    )
    daemon = launch(tmp, sim, key, config, connected=False, url=link.url if link else None)
    try:
        wall0 = daemon.audio_started_wall()
        deadline = wall0 + onset + ANSWER_WITHIN_S
        while _answer_start(spk, int(onset * OUT_RATE)) is None and time.time() < deadline:
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"omnid run ({setting.name}) exited:\n" + daemon.output())
            time.sleep(0.1)
    finally:
        daemon.stop()
    heard = [h for h in _heard_walls(daemon.output()) if h >= wall0 + onset]
    ids = {r["OMNID_SESSION"] for r in daemon.records("session_open")}
    spans, appends = _sessions(sim, ids)
    result: dict[str, Any] = {
        "setting": setting.name,
        "voice": voice,
        "utterance_s": len(clip) / IN_RATE,
        "heard": bool(heard),
        "answered": False,
    }
    if spans:
        first_open = spans[0][0]
        waiting = [t for t, _ in spans[1:] if t < wall0 + onset]  # the idle reopens
        # The time they took: from the first session to the last reopen (none: to the wake).
        result["reconnects_waiting"] = len(waiting)
        result["waiting_s"] = (waiting[-1] if waiting else wall0 + onset) - first_open
    if not heard:
        return result
    h = heard[0]
    at = _answer_start(spk, int((h - wall0) * OUT_RATE))
    if at is None:
        return result
    answer = wall0 + at / OUT_RATE
    shakes = [s for s in (link.handshakes if link else []) if h - 0.05 <= s.accepted <= answer]
    result |= {
        "answered": True,
        "first_audio_ms": 1000 * (answer - h),
        "after_question_ms": 1000 * (answer - (wall0 + question_end)),
        "heard_after_phrase_s": h - wall0 - onset,
        "open_at_wake": any(t0 <= h < t1 for t0, t1 in spans),
        "closed_in_turn": any(h < t1 < answer for _, t1 in spans),
        "connects_after_wake": sum(1 for t0, _ in spans if h <= t0 <= answer),
        "uplink_ms": next((1000 * (t - h) for t in appends if t >= h), None),
        "handshake_ms": (
            1000 * (shakes[0].ready - shakes[0].accepted)
            if shakes and shakes[0].ready is not None
            else None
        ),
    }
    # The case this setting is about: warm, a session open all through the turn; cold, none.
    warm_case = result["open_at_wake"] and not result["closed_in_turn"]
    result["as_intended"] = warm_case if setting.keep_warm else not result["open_at_wake"]
    return result


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if r["answered"] and r["as_intended"]]
    waited = [r for r in runs if "waiting_s" in r]
    seconds = sum(r["waiting_s"] for r in waited)
    per_min = 60 * sum(r["reconnects_waiting"] for r in waited) / seconds if seconds else 0.0
    optional = {
        k: _median([r[k] for r in good if r.get(k) is not None])
        for k in ("uplink_ms", "handshake_ms")
    }
    return {
        "wakes": len(runs),
        "heard": sum(r["heard"] for r in runs),
        "answered": sum(r["answered"] for r in runs),
        "as_intended": len(good),
        "first_audio_ms": _median([r["first_audio_ms"] for r in good]),
        "after_question_ms": _median([r["after_question_ms"] for r in good]),
        "first_audio_range_ms": (
            (min(r["first_audio_ms"] for r in good), max(r["first_audio_ms"] for r in good))
            if good
            else None
        ),
        "connects_per_wake": (
            statistics.mean(r["connects_after_wake"] for r in good) if good else float("nan")
        ),
        "reconnects_per_min": per_min,
        "reconnects_per_hour": per_min * 60 * IDLE_S / SERVICE_IDLE_S,
        "waiting_s": seconds,
        "runs": runs,
    } | optional


def wake_session(tmp: Path, rounds: int, parallel: bool = False) -> dict[str, Any]:
    """`rounds` interleaved runs of each setting (all of a round at once with `parallel`: a
    smoke run, its figures not meaningful); per setting, the runs and their summary."""
    from omnid import wake as omnid_wake

    if not omnid_wake.available():
        raise RuntimeError("pymicro-wakeword is not installed: " + omnid_wake.INSTALL_HINT)
    if not sp.available():
        raise RuntimeError("espeak-ng is not installed (scripts/setup installs it)")
    started = time.monotonic()
    key = make_key()
    sim = Simulator(tmp, key, "--idle-timeout-s", f"{IDLE_S:g}")
    links: dict[str, SlowHandshake] = {}
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in SETTINGS}
    try:
        for s in SETTINGS:
            if s.rtt_s is not None:
                links[s.name] = SlowHandshake(sim.url, s.rtt_s)

        def run(i: int, s: Setting) -> dict[str, Any]:
            sub = tmp / f"{s.name}{i}"
            sub.mkdir()
            return one_wake(sub, sim, key, s, links.get(s.name), round_voice(i))

        for i in range(rounds):
            if parallel:
                with ThreadPoolExecutor(len(SETTINGS)) as pool:
                    done = list(pool.map(run, [i] * len(SETTINGS), SETTINGS))
            else:
                done = [run(i, s) for s in SETTINGS]
            for s, r in zip(SETTINGS, done, strict=True):
                runs[s.name].append(r)
            _log(
                f"round {i + 1}/{rounds}: "
                + ", ".join(
                    f"{r['setting']} "
                    + (f"{r['first_audio_ms']:.0f} ms" if r["answered"] else "no answer")
                    for r in done
                )
            )
    finally:
        for link in links.values():
            link.close()
        sim.stop()
    return {
        "idle_s": IDLE_S,
        "service_idle_s": SERVICE_IDLE_S,
        "onset_s": CYCLES * IDLE_S + AFTER_REOPEN_S,
        "voices": [round_voice(i) for i in range(rounds)],
        "settings": {name: _summary(rs) for name, rs in runs.items()},
        "rtts": {s.name: s.rtt_s for s in SETTINGS if s.rtt_s is not None},
        "seconds": time.monotonic() - started,
    }
