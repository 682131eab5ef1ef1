"""What the daemon costs while nobody is talking to it, in each `session.mode`, in one run.

Waiting is what a box does nearly all day, and the modes wait differently: `manual` keeps the
microphone open for the button, `vad` streams it to the service without pause, `wake` keeps it
on the box and runs the wake-word detector over it. Each mode's `omnid run` (`wav:` devices, the
simulator, no camera) hears the same quiet room — faint noise, no speech — and is measured from
/proc after READY=1 and a warm-up: CPU as % of one core, and context switches per second summed
over its threads (each wakes up on its own; /proc/PID/status alone counts the main thread); the
simulator's record says how much microphone audio went out meanwhile (wake mode: none).
Rounds are interleaved (manual, vad, wake, manual, …) so that what else the machine does falls
on every mode; the report takes the medians.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import CpuWindow, Simulator, launch, make_key, sleep_until, timeline

MODES = ("manual", "vad", "wake")


def switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of all of `pid`'s threads now alive."""
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:  # the thread ended between listing and reading
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return vol, invol


def appends(sim: Simulator) -> int:
    """Microphone audio events the simulator has received so far (from every daemon)."""
    return sum(1 for r in sim.wire("recv") if r["event"]["type"] == "input_audio_buffer.append")


def threads(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())


def waiting_once(
    tmp: Path, sim: Simulator, key: str, mode: str, warmup: float, seconds: float
) -> dict[str, Any]:
    mic = tmp / "mic.wav"
    timeline(mic, warmup + seconds + 15, [], noise_seed=11)  # a quiet room for the whole run
    config = (
        f'[session]\nmode = "{mode}"\n'
        + ('[session.vad]\ntype = "server_vad"\n' if mode == "vad" else "")
        + f'[audio]\ninput_device = "wav:{mic}"\noutput_device = "wav:{tmp / "spk.wav"}"\n'
    )
    # Wake mode need not hold a session while it waits: READY=1 is the start, not `connected`.
    daemon = launch(tmp, sim, key, config, connected=False)
    try:
        start = time.monotonic()
        sleep_until(start + warmup)
        pid = daemon.proc.pid
        sent0 = appends(sim)
        window, (v0, i0), w0 = CpuWindow(pid), switches(pid), time.monotonic()
        sleep_until(w0 + seconds)
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"omnid run ({mode}) exited while waiting:\n" + daemon.output())
        cpu = window.pct()
        v1, i1 = switches(pid)
        wall = time.monotonic() - w0
        sent = appends(sim) - sent0
        status = daemon.ctl("status")
        count = threads(pid)
    finally:
        daemon.stop()
    return {
        "cpu_pct": cpu,
        "vcsw_per_s": (v1 - v0) / wall,
        "ivcsw_per_s": (i1 - i0) / wall,
        "threads": count,
        "appends_per_s": sent / wall,  # the microphone streamed to the service while waiting
        "connected": bool(status.get("connected")),
        "wakes": status.get("wakes"),  # present only when wake mode's window exists
        "ready_s": daemon.ready_s,
    }


def waiting(
    tmp: Path, warmup: float, seconds: float, rounds: int = 1, modes: tuple[str, ...] = MODES
) -> dict[str, Any]:
    """`rounds` interleaved runs of each of `modes`; per mode, the runs and their medians."""
    key = make_key()
    sim = Simulator(tmp, key)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    try:
        for i in range(rounds):
            for mode in modes:
                sub = tmp / f"{mode}{i}"
                sub.mkdir()
                runs[mode].append(waiting_once(sub, sim, key, mode, warmup, seconds))
    finally:
        sim.stop()
    return {
        mode: {
            "cpu_pct": statistics.median(r["cpu_pct"] for r in rs),
            "vcsw_per_s": statistics.median(r["vcsw_per_s"] for r in rs),
            "ivcsw_per_s": statistics.median(r["ivcsw_per_s"] for r in rs),
            "runs": rs,
        }
        for mode, rs in runs.items()
    }
