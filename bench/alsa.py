"""The daemon through real PortAudio on the ALSA FIFO rig (tests/alsa_rig.py), not `wav:` devices
(issue 18): what the `wav:` backend costs must not be mistaken for what a sound card costs.

- Waiting: each `session.mode` as bench/waiting.py measures it — `omnid run` hears a quiet room
  (the same faint noise) for a warm-up and a window, rounds interleaved, medians reported — but
  with `input_device`/`output_device` the rig's PCMs: two PortAudio streams (capture and
  playback, each with its own thread in PortAudio's ALSA backend) instead of the `wav:` clock's
  one thread. CPU of the daemon's process only, and context switches per second summed over its
  threads; the rig runs in this process and is not counted.
- The device buffer: how much sound the rig's device holds ahead of the speaker. A flush
  (barge-in, tap) empties the daemon's playback queue at once, but what PortAudio has already
  handed to ALSA still plays on the rig: the file plugin writes it into the speaker pipe as it
  is handed over, where no abort can take it back (on a card, aborting the stream drops the
  card's buffer; the rig cannot show that). It is measured in this process with the daemon's
  own speaker class (`PortAudioSpeaker`: the same block, latency setting and priming) on its
  own rig: every callback's time and frame count, aligned to the rig's output by two marks,
  give for any moment T the last sample handed over by T and when the rig sounds it
  (`AlsaFifoRig.speaker_time`, which models the reader as a DAC); their difference, for T every
  millisecond of a steady window, is what a flush at a random moment leaves to play.
  `alsa_device_buffer_ms` is its median at the barge-in's (`vad` mode's) speaker block, and
  `alsa_device_buffer_ms_p95` its 95th percentile (the refills make it saw); a barge-in through
  the rig costs about that on top of the daemon's own reaction (which the `wav:` timeline
  measures: `barge_in_ms_p95`), hence the issue's "≤ 25 ms + the device buffer", p95 against
  p95. The speaker's own flush is measured beside it, in the same process.
  The blocks are each mode's defaults (the microphone's `block_ms()`, the speaker's
  `speaker_block_ms()`), and so are the rig's: they decide how often the daemon's streams wake
  and how much PortAudio hands over at once.
- Barge-in: hands-free with the service's VAD (the simulator's energy VAD), echo guard off as
  bench/latency.py's `barge_ins`: a continuous vowel, its echo as the answer, the next vowel
  spoken 1 s into that answer, `count` times, all written into the rig's microphone in real
  time. Per `speech_started` sent while the speaker sounded: the last loud sample's time at the
  rig's speaker (`speaker_time`, device buffer included) − the event's send time (the
  simulator's record, the same wall clock).
- Tap: push-to-talk turns (a 3 s vowel between press and release), and `omnid ctl tap` (through
  the control socket) once the rig's speaker has sounded the answer (not the release's earcon)
  for 0.3 s: last loud sample − the time the tap was sent.

One rig per daemon, started before it and stopped after it (the rig's stop order).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import (
    OUT_RATE,
    VAD,
    CpuWindow,
    Simulator,
    launch,
    make_key,
    pct,
    sleep_until,
    timeline,
    vowel,
)
from bench.waiting import MODES, appends, threads
from omnid.audio.base import output_block
from omnid.modes import MODES as MODE_BY_NAME
from tests.alsa_rig import AlsaFifoRig

LOUD = 64  # |sample| above this is sound (the tests' threshold)
LEAD_S = 2.0  # quiet before the first utterance: the session is up well before it
MARK = np.full(OUT_RATE // 25, 8000, np.int16)  # 40 ms, loud from its first sample


def block_ms(mode: str) -> int:
    """The daemon's microphone block in `mode` with `audio.block_ms` left unset: the rig writes
    the microphone in blocks of exactly this, since a capture read of more than the pipe holds
    comes back short and padded with silence, and blocks written in bigger pieces would wake
    the stream in bursts (alsa_rig's docstring)."""
    return MODE_BY_NAME[mode].block_ms


def speaker_block_ms(mode: str) -> int:
    """The daemon's speaker block in `mode` (`output_block`: never over 20 ms)."""
    return output_block(block_ms(mode))


def _rig(tmp: Path, mode: str, **options: Any) -> AlsaFifoRig:
    """A started rig for a daemon in `mode`: its microphone written in the mode's blocks, its
    speaker read in the speaker's (a DAC plays continuously: a reader taking bigger pieces would
    count sound in its own hands as device buffer)."""
    return AlsaFifoRig(
        tmp, block_ms=block_ms(mode), spk_block_ms=speaker_block_ms(mode), **options
    ).start()


def _devices(rig: AlsaFifoRig, extra: str = "") -> str:
    return (
        f'[audio]\ninput_device = "{rig.mic_device}"\noutput_device = "{rig.spk_device}"\n{extra}'
    )


def _listening(rig: AlsaFifoRig, what: str) -> None:
    if not rig.wait_mic_reader(15):
        raise RuntimeError(f"alsa {what}: the daemon's microphone stream is not reading")


def _index_at(rig: AlsaFifoRig, t: float, n: int) -> int:
    """The first of the `n` speaker samples read that sounded at or after `t` (n if none)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if rig.speaker_time(mid) < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _sounding(rig: AlsaFifoRig, seconds: float) -> bool:
    """Whether every 20 ms of the rig's last `seconds` of speaker output was loud: the vowel's
    echo, which has no pauses, rather than an earcon (~150 ms)."""
    n = OUT_RATE // 50
    tail = np.abs(rig.speaker_output()[-int(seconds * OUT_RATE) :].astype(np.int32))
    blocks = tail[: len(tail) // n * n].reshape(-1, n)
    return len(blocks) * n >= int(seconds * OUT_RATE) - n and bool((blocks.max(1) > LOUD).all())


def _silent_after_ms(rig: AlsaFifoRig, out: npt.NDArray[np.int32], t: float) -> float | None:
    """ms from `t` until the rig's speaker sounded its last loud sample of the next second;
    None when it was not sounding in the 200 ms before `t` (nothing to silence). By the rig's
    time, not sample counts: a stopped stream leaves no silence in the output."""
    before, i, after = (_index_at(rig, t + d, len(out)) for d in (-0.2, 0.0, 1.0))
    if before == i or int(np.max(out[before:i])) <= LOUD:
        return None
    loud = np.nonzero(out[i:after] > LOUD)[0]
    if not len(loud):
        return 0.0
    last = i + int(loud[-1])
    return max(0.0, (rig.speaker_time(last) + 1 / OUT_RATE - t) * 1000)


# ------------------------------------------------------------------ waiting


class SwitchMeter:
    """Context switches of all of a process's threads over a window, read from
    /proc/PID/task/*/status every `poll()` — often, because PortAudio's threads come and go with
    their streams (a speaker standing by, a microphone asleep), and a thread's counts go with
    it: summing the threads alive at the window's two ends would lose a thread that ended in
    between (or read negative). Each poll adds every thread's increase since it was last seen,
    and all of a thread born since the last poll (born within the window). A thread that ends
    loses at most its last poll interval. Each poll also notes which threads are PortAudio's: the
    one in read(2) on the rig's mic pipe is capture's, the one in write(2) on its speaker pipe
    playback's (where each waits for the next block)."""

    def __init__(self, pid: int, rig: AlsaFifoRig) -> None:
        self.pid = pid
        self.pipes = {str(rig.mic_fifo): ("0", "capture"), str(rig.spk_fifo): ("1", "playback")}
        self.last: dict[str, tuple[int, int]] = {}
        self.total: dict[str, list[int]] = {}  # tid → [voluntary, involuntary] in the window
        self.stream: dict[str, str] = {}  # tid → "capture" | "playback"
        self.poll(first=True)

    def poll(self, first: bool = False) -> None:
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                status = (task / "status").read_text()
                call = (task / "syscall").read_text().split()
            except OSError:  # it ended between listing and reading
                continue
            counts = [0, 0]
            for line in status.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    counts[0] = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    counts[1] = int(line.split()[1])
            before = self.last.get(task.name, (0, 0) if not first else (counts[0], counts[1]))
            self.last[task.name] = (counts[0], counts[1])
            mine = self.total.setdefault(task.name, [0, 0])
            mine[0] += counts[0] - before[0]
            mine[1] += counts[1] - before[1]
            if call and call[0] in ("0", "1") and len(call) > 1:
                try:
                    target = os.readlink(f"/proc/{self.pid}/fd/{int(call[1], 16)}")
                except (OSError, ValueError):
                    continue
                if self.pipes.get(target, ("", ""))[0] == call[0]:
                    self.stream[task.name] = self.pipes[target][1]

    def sums(self) -> tuple[int, int, dict[str, int]]:
        """(voluntary, involuntary, per stream: capture, playback, other) over the window."""
        by = {"capture": 0, "playback": 0, "other": 0}
        for tid, (vol, invol) in self.total.items():
            by[self.stream.get(tid, "other")] += vol + invol
        return (
            sum(v for v, _ in self.total.values()),
            sum(i for _, i in self.total.values()),
            by,
        )


def waiting_once(
    tmp: Path, sim: Simulator, key: str, mode: str, warmup: float, seconds: float
) -> dict[str, Any]:
    """One `omnid run` in `mode` on its own rig, hearing a quiet room; bench/waiting.py's
    `waiting_once` through PortAudio."""
    rig = _rig(tmp, mode)
    try:
        # The quiet room: queued now, written in real time whether or not anybody reads it yet.
        rig.say(timeline(tmp / "mic.wav", warmup + seconds + 20, [], noise_seed=11))
        config = (
            f'[session]\nmode = "{mode}"\n'
            + ('[session.vad]\ntype = "server_vad"\n' if mode == "vad" else "")
            + _devices(rig)
        )
        daemon = launch(tmp, sim, key, config, connected=False, env=rig.env)
        try:
            sleep_until(time.monotonic() + warmup)
            pid = daemon.proc.pid
            sent0, heard0 = appends(sim), len(rig.speaker_output())
            dropped0 = rig.mic_dropped_blocks
            window, meter = CpuWindow(pid), SwitchMeter(pid, rig)
            w0 = time.monotonic()
            while time.monotonic() < w0 + seconds:
                sleep_until(min(w0 + seconds, time.monotonic() + 0.2))
                meter.poll()
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"alsa: omnid run ({mode}) exited:\n" + daemon.output())
            cpu = window.pct()
            meter.poll()
            wall = time.monotonic() - w0
            sent = appends(sim) - sent0
            played = len(rig.speaker_output()) - heard0
            dropped = rig.mic_dropped_blocks - dropped0
            status = daemon.ctl("status")
            count = threads(pid)
        finally:
            daemon.stop()  # the streams close before the rig stops
    finally:
        rig.stop()
    vol, invol, by_stream = meter.sums()
    return {
        "cpu_pct": cpu,
        "vcsw_per_s": vol / wall,
        "ivcsw_per_s": invol / wall,
        "threads": count,
        "switches_by_stream": {k: v / wall for k, v in by_stream.items()},
        "appends_per_s": sent / wall,
        "speaker_s_per_s": played / OUT_RATE / wall,  # the playback stream kept real time
        "mic_unread_s": dropped * rig.block_ms / 1000 / wall,  # the capture stream stood by
        "connected": bool(status.get("connected")),
        "wakes": status.get("wakes"),
        "ready_s": daemon.ready_s,
    }


def waiting(
    tmp: Path, sim: Simulator, key: str, warmup: float, seconds: float, rounds: int
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for i in range(rounds):
        for mode in MODES:
            sub = tmp / f"{mode}{i}"
            sub.mkdir()
            runs[mode].append(waiting_once(sub, sim, key, mode, warmup, seconds))
    return {
        mode: {
            "cpu_pct": statistics.median(r["cpu_pct"] for r in rs),
            "vcsw_per_s": statistics.median(r["vcsw_per_s"] for r in rs),
            "ivcsw_per_s": statistics.median(r["ivcsw_per_s"] for r in rs),
            "runs": rs,
        }
        for mode, rs in runs.items()
    }


# ------------------------------------------------------------------ the device buffer


def device_buffer(tmp: Path, seconds: float, block: int) -> dict[str, Any]:
    """The sound held between PortAudio and the speaker at a random moment (module docstring),
    with the daemon's speaker class on a rig of its own, in this process, at the speaker's
    `block` ms."""
    from omnid.audio.portaudio import PortAudioSpeaker

    calls: list[tuple[float, int, int, int]] = []  # (time, frames before, frames, first loud)

    class Timed(PortAudioSpeaker):
        def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
            t = time.monotonic()
            super()._callback(outdata, frames, time_info, status)
            before = calls[-1][1] + calls[-1][2] if calls else 0
            loud = np.nonzero(np.abs(np.frombuffer(outdata, np.int16)) > LOUD)[0]
            calls.append((t, before, frames, int(loud[0]) if len(loud) else -1))

    # One signal, queued at once: a faint hum (below LOUD, never silence, so the speaker never
    # has nothing to play and stands by) with a mark after 0.5 s and another `seconds` later.
    # The marks tie PortAudio's frame count to the rig's output (which can hold frames no
    # callback rendered: silence written at a start); between them, the steady state.
    hum = np.ones(OUT_RATE // 2, np.int16)
    steady = np.ones(int((seconds + 0.4) * OUT_RATE), np.int16)
    signal = np.concatenate([hum, MARK, steady, MARK, hum])
    rig = AlsaFifoRig(tmp, block_ms=block, clock=time.monotonic).start()
    try:
        with rig.in_process():
            speaker = Timed(rig.spk_device, block_ms=block)
            try:
                if speaker.device_rate != OUT_RATE:
                    raise RuntimeError(f"alsa: the rig's speaker opened at {speaker.device_rate}")
                speaker.start()
                reported = float(speaker._stream.latency)  # what PortAudio says it adds
                speaker.play(signal)
                time.sleep(len(signal) / OUT_RATE + 0.4)  # all of it reaches the reader
                marks_calls, marks_out = len(calls), len(rig.speaker_output())
                flushed = _flushes(speaker, max(2, int(seconds)))
            finally:
                speaker.close()  # before the rig stops
    finally:
        rig.stop()
    out = np.abs(rig.speaker_output().astype(np.int32))
    onsets = [int(i) for i in np.nonzero(out[:marks_out] > LOUD)[0]]
    edges = [i for k, i in enumerate(onsets) if k == 0 or i - onsets[k - 1] > len(MARK)]
    marked = [(t, b, frames, loud) for t, b, frames, loud in calls[:marks_calls] if loud >= 0]
    firsts = [
        (t, b + loud)
        for k, (t, b, _, loud) in enumerate(marked)
        if k == 0 or b != marked[k - 1][1] + marked[k - 1][2]
    ]
    if len(edges) != 2 or len(firsts) != 2:
        raise RuntimeError(f"alsa: marks heard at {edges}, handed over at {firsts}")
    offsets = [e - b for e, (_, b) in zip(edges, firsts, strict=True)]
    if offsets[0] != offsets[1]:
        raise RuntimeError(f"alsa: the rig's output and PortAudio's frames disagree: {offsets}")
    offset = offsets[0]  # rig output index − PortAudio frame index
    t0, t1 = firsts[0][0] + 0.2, firsts[1][0] - 0.1
    times = np.array([c[0] for c in calls])
    handed = np.array([c[1] + c[2] for c in calls])  # frames handed over by each callback's end
    ahead = []
    for t in np.arange(t0, t1, 0.001):
        k = int(np.searchsorted(times, t, side="right")) - 1
        last = int(handed[k]) - 1 + offset  # the last sample handed over by t, in the output
        ahead.append((rig.speaker_time(last) + 1 / OUT_RATE - t) * 1000)
    gaps = np.diff(times[(times >= t0) & (times <= t1)]) * 1000
    loud_at = out > LOUD
    after_flush = []
    for t in flushed:
        i, j = (_index_at(rig, t + d, len(out)) for d in (0.0, 0.45))
        heard = np.nonzero(loud_at[i:j])[0]
        end = rig.speaker_time(i + int(heard[-1])) + 1 / OUT_RATE if len(heard) else t
        after_flush.append((end - t) * 1000)
    return {
        "ms_p50": pct(ahead, 50),
        "ms_p5": pct(ahead, 5),
        "ms_p95": pct(ahead, 95),
        "ms_max": max(ahead),
        "start_offset_ms": offset / OUT_RATE * 1000,
        "portaudio_latency_ms": reported * 1000,
        "callbacks_per_s": len(gaps) / (t1 - t0),
        "back_to_back_pct": 100 * float(np.mean(gaps < 2)) if len(gaps) else 0.0,
        "flush_ms": after_flush,  # the speaker's own flush, in this process: what it leaves
    }


def _flushes(speaker: Any, count: int) -> list[float]:
    """`count` times: a loud second queued, flushed (`Speaker.flush`, what a barge-in and a tap
    do) at a random moment 0.3–0.5 s into it; the flushes' times, for the rig's output to say
    how long sound went on after each."""
    rng = np.random.default_rng(18)
    times = []
    for _ in range(count):
        speaker.play(np.full(OUT_RATE, 8000, np.int16))
        time.sleep(0.3 + 0.2 * rng.random())
        times.append(time.monotonic())
        speaker.flush()
        time.sleep(0.6)  # the rest plays out, then quiet
    return times


# ------------------------------------------------------------------ barge-in and tap


def barge_ins(tmp: Path, count: int) -> dict[str, Any]:
    """bench/latency.py's `barge_ins` through the rig (module docstring)."""
    segment, gap = 2.0, 1.0  # the next vowel starts 1 s after the last ended: mid-answer
    starts = [LEAD_S + k * (segment + gap) for k in range(count + 1)]
    total = starts[-1] + segment + 4.0
    pcm = timeline(tmp / "mic.wav", total, [(s, vowel(segment)) for s in starts], noise_seed=12)
    key = make_key()
    sim = Simulator(tmp, key)
    rig = _rig(tmp, "vad")
    try:
        vad = VAD + "silence_duration_ms = 300\n"
        daemon = launch(tmp, sim, key, vad + _devices(rig, 'echo_guard = "off"\n'), env=rig.env)
        try:
            _listening(rig, "barge-in")
            rig.say(pcm)
            turns = daemon.wait_record("turn", count=count + 1, timeout=total + 20)
            time.sleep(0.5)
        finally:
            daemon.stop()
    finally:
        rig.stop()
        sim.stop()
    started = [
        r["t"]
        for r in sim.wire("send")
        if r["event"]["type"] == "input_audio_buffer.speech_started"
    ]
    out = np.abs(rig.speaker_output().astype(np.int32))
    found = [_silent_after_ms(rig, out, t) for t in started]
    silent_after = [ms for ms in found if ms is not None]
    if len(silent_after) < count:
        raise RuntimeError(f"alsa barge-in: {len(silent_after)} of {count} barge-ins seen")
    return {"barge_ms": silent_after, "turns": turns, "ready_s": daemon.ready_s}


def taps(tmp: Path, count: int) -> dict[str, Any]:
    """Push-to-talk turns through the rig, each answer stopped by a tap (module docstring)."""
    segment = 3.0
    key = make_key()
    sim = Simulator(tmp, key)
    rig = _rig(tmp, "manual")
    sent: list[float] = []
    try:
        daemon = launch(tmp, sim, key, _devices(rig), env=rig.env)
        try:
            for k in range(count):
                daemon.ctl("press")
                _listening(rig, "tap")  # the microphone may stand by between turns
                spoken = rig.say(vowel(segment))
                time.sleep(max(0.0, spoken + segment + 0.3 - time.time()))
                daemon.ctl("release")
                deadline = time.monotonic() + 10
                while daemon.ctl("status")["state"] != "speaking":
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"alsa tap: answer {k + 1} never played")
                    time.sleep(0.01)
                while not _sounding(rig, 0.3):  # the answer, not the release's earcon
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"alsa tap: answer {k + 1} never sounded")
                    time.sleep(0.01)
                sent.append(time.time())
                reply = daemon.ctl("tap")
                if not reply.get("ok"):
                    raise RuntimeError(f"alsa tap: {reply}")
                time.sleep(1.0)  # the speaker falls silent; the next turn starts in quiet
            turns = daemon.wait_record("turn", count=count, timeout=20)
        finally:
            daemon.stop()
    finally:
        rig.stop()
        sim.stop()
    out = np.abs(rig.speaker_output().astype(np.int32))
    found = [_silent_after_ms(rig, out, t) for t in sent]
    silent_after = [ms for ms in found if ms is not None]
    if len(silent_after) < count:
        raise RuntimeError(f"alsa tap: the answer was sounding at {len(silent_after)} of {count}")
    return {"tap_ms": silent_after, "turns": turns, "ready_s": daemon.ready_s}


# ------------------------------------------------------------------ the section


def alsa(
    tmp: Path,
    warmup: float,
    seconds: float,
    rounds: int,
    buffer_s: float,
    runs: int,
    barges: int,
    tap_count: int,
) -> dict[str, Any]:
    """The section: waiting in each mode (`rounds` interleaved, `warmup` + `seconds` each), the
    device buffer over `buffer_s`, and `runs` daemons each of `barges` barge-ins and of
    `tap_count` taps."""
    key = make_key()
    (tmp / "waiting").mkdir()
    sim = Simulator(tmp / "waiting", key)
    try:
        waited = waiting(tmp / "waiting", sim, key, warmup, seconds, rounds)
    finally:
        sim.stop()
    buffers: dict[int, dict[str, Any]] = {}
    for mode in ("vad", "manual"):  # the barge-in's and the tap's
        block = speaker_block_ms(mode)
        if block not in buffers:
            (tmp / f"buffer{block}").mkdir()
            buffers[block] = device_buffer(tmp / f"buffer{block}", buffer_s, block)
    buffer = {
        mode: {"block_ms": speaker_block_ms(mode), **buffers[speaker_block_ms(mode)]}
        for mode in MODES
    }
    barge: list[float] = []
    tapped: list[float] = []
    for i in range(runs):
        for name, job, n, into, field in (
            ("barge", barge_ins, barges, barge, "barge_ms"),
            ("tap", taps, tap_count, tapped, "tap_ms"),
        ):
            sub = tmp / f"{name}{i}"
            sub.mkdir()
            into += job(sub, n)[field]
    return {"waiting": waited, "buffer": buffer, "barge_ms": barge, "tap_ms": tapped}
