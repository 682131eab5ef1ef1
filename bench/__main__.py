"""`scripts/bench`: omnid's latency, losses, CPU and memory against `omnid simulate`, and the
official SDK's CPU and memory on the same workload (issue 8); the wake-word detector's hits,
false activations and cost on synthesised speech, the daemon's CPU while it waits in each
mode, and wake mode's session kept warm or opened on the wake word (issue 17); waiting, the
device buffer, barge-in and tap through real PortAudio on the ALSA FIFO rig (issue 18).

    scripts/bench                a table, with the targets and the machine
    scripts/bench --json         one JSON object with exactly the keys of the report, all numbers
    scripts/bench --quick        a smoke run (seconds, not minutes; figures not meaningful)
    scripts/bench --only wake    one section (issue8, wake, waiting, wake-session, alsa;
                                 comma-separated for several)

Everything runs on loopback with `wav:` audio devices: `omnid run` and `omnid simulate` as their
own processes, driven through the control socket, read back from the journal records, the
simulator's record of the wire and the speaker's output file; the wake-word detector runs in this
process on espeak-ng's speech. The alsa section puts real PortAudio in place of the `wav:`
devices: tests/alsa_rig.py's FIFO-backed ALSA PCMs, written and read in real time by this process.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.alsa import alsa
from bench.common import loadavg, machine
from bench.latency import barge_ins, commit_turns, taps
from bench.load import load
from bench.mcp import mcp_rss
from bench.report import SECTIONS, keys, summarise, table
from bench.sessions import sessions
from bench.speech import VOICES
from bench.waiting import waiting
from bench.wake import wake
from bench.wake_session import wake_session


@dataclass
class Plan:
    rounds: int  # push-to-talk runs, each one daemon with `lengths`
    lengths: list[float]
    barge_runs: int
    barge_count: int  # barge-ins per run
    load_rounds: int  # runs of each client under load, interleaved
    load_warmup_s: float
    load_s: float
    sessions_s: float
    sessions_warmup_s: float
    wake_utterances: int  # wake phrases, each in every noise at every SNR
    wake_false_s: float  # speech without the wake word through one detector
    wake_near_miss_voices: int
    wake_bed_s: float  # length of each noise bed
    waiting_s: float  # each mode's measuring window (after `load_warmup_s`), `load_rounds` runs
    wake_session_rounds: int  # runs of each session setting, one wake each, interleaved
    wake_session_parallel: bool  # a round's settings at once (a smoke run's shortcut)
    alsa_buffer_s: float  # the ALSA rig's device buffer: the steady window it is read over
    alsa_barges: int  # barge-ins per daemon through the ALSA rig (`barge_runs` daemons)
    alsa_taps: int  # taps per daemon through the ALSA rig (`barge_runs` daemons)

    @classmethod
    def full(cls, repeat: int) -> Plan:
        return cls(
            *(repeat, [15.0, 1.0, 5.0, 1.0], repeat, 6, repeat, 5.0, 60.0, 100.0, 20.0),
            wake_utterances=50,
            wake_false_s=3600.0,
            wake_near_miss_voices=len(VOICES),
            wake_bed_s=120.0,
            waiting_s=30.0,
            wake_session_rounds=3 * repeat,
            wake_session_parallel=False,
            alsa_buffer_s=10.0,
            alsa_barges=6,
            alsa_taps=6,
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            *(1, [1.0, 1.0], 1, 1, 1, 1.0, 5.0, 11.0, 4.0),
            wake_utterances=3,
            wake_false_s=30.0,
            wake_near_miss_voices=1,
            wake_bed_s=10.0,
            waiting_s=3.0,
            wake_session_rounds=1,
            wake_session_parallel=True,
            alsa_buffer_s=1.0,
            alsa_barges=1,
            alsa_taps=1,
        )


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(plan: Plan, work: Path, sections: list[str]) -> dict[str, Any]:
    jobs: list[tuple[str, Callable[[Path], dict[str, Any]]]] = []
    if "issue8" in sections:
        for i in range(plan.rounds):
            jobs.append((f"commit{i}", lambda d: commit_turns(d, plan.lengths)))
        for i in range(plan.barge_runs):
            jobs.append((f"barge{i}", lambda d: barge_ins(d, plan.barge_count)))
            jobs.append((f"tap{i}", lambda d: taps(d, plan.barge_count)))
        jobs.append(("load", lambda d: load(d, plan.load_warmup_s, plan.load_s, plan.load_rounds)))
        jobs.append(("sessions", lambda d: sessions(d, plan.sessions_s, plan.sessions_warmup_s)))
        jobs.append(("mcp", lambda d: mcp_rss(d, plan.load_warmup_s)))
    if "wake" in sections:
        jobs.append(
            (
                "wake",
                lambda _d: wake(
                    plan.wake_utterances,
                    plan.wake_false_s,
                    plan.wake_near_miss_voices,
                    plan.wake_bed_s,
                ),
            )
        )
    if "waiting" in sections:
        jobs.append(
            ("waiting", lambda d: waiting(d, plan.load_warmup_s, plan.waiting_s, plan.load_rounds))
        )
    if "wake-session" in sections:
        jobs.append(
            (
                "wake-session",
                lambda d: wake_session(d, plan.wake_session_rounds, plan.wake_session_parallel),
            )
        )

    if "alsa" in sections:
        jobs.append(
            (
                "alsa",
                lambda d: alsa(
                    d,
                    plan.load_warmup_s,
                    plan.waiting_s,
                    plan.load_rounds,
                    plan.alsa_buffer_s,
                    plan.barge_runs,
                    plan.alsa_barges,
                    plan.alsa_taps,
                ),
            )
        )

    def one(name: str, job: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        directory = work / name
        directory.mkdir()
        started = time.monotonic()
        log(f"{name}: running")
        result = job(directory)
        log(f"{name}: done in {time.monotonic() - started:.0f} s")
        return result

    return {name: one(name, job) for name, job in jobs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/bench", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    p.add_argument("--json", action="store_true", help="one JSON object with the report's keys")
    p.add_argument("--quick", action="store_true", help="a smoke run: keys, not measurements")
    p.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs of each scenario but sessions and wake (2); wake-session: 3 × this",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument(
        "--only",
        metavar="SECTION[,SECTION]",
        help=f"run only these sections ({', '.join(SECTIONS)}); all of them by default",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    sections = list(SECTIONS)
    if args.only is not None:
        sections = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in sections if s not in SECTIONS]
        if unknown or not sections:
            p.error(f"--only takes {', '.join(SECTIONS)}, comma-separated; not {args.only!r}")
    plan = Plan.quick() if args.quick else Plan.full(args.repeat)
    work = Path(tempfile.mkdtemp(prefix="omnid-bench-"))
    started = time.monotonic()
    load_before = loadavg()
    try:
        raw = run(plan, work, sections)
    finally:
        if args.keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    figures, details = summarise(raw, max(plan.lengths))
    elapsed = time.monotonic() - started
    wanted = keys(sections)
    bad = [k for k in wanted if not math.isfinite(figures.get(k, math.nan))]
    if bad:
        log(f"no figure for {', '.join(bad)}")
        return 1
    if args.json:
        print(json.dumps({k: figures[k] for k in wanted}))
    else:
        info = machine() | {"load": f"{load_before} before, {loadavg()} after"}
        print(table(figures, details, info))
        print(f"run time: {elapsed:.0f} s ({'quick' if args.quick else f'--repeat {args.repeat}'})")
    log(f"finished in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
