"""`scripts/bench`: omnid's latency, losses, CPU and memory against `omnid simulate`, and the
official SDK's CPU and memory on the same workload (issue 8).

    scripts/bench            a table, with the targets and the machine
    scripts/bench --json     one JSON object with exactly the keys of issue 8, all numbers
    scripts/bench --quick    a smoke run (seconds, not minutes; figures not meaningful)

Everything runs on loopback with `wav:` audio devices: `omnid run` and `omnid simulate` as their
own processes, driven through the control socket, read back from the journal records, the
simulator's record of the wire and the speaker's output file. Progress goes to stderr.
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

from bench.common import loadavg, machine
from bench.latency import barge_ins, commit_turns
from bench.load import load
from bench.mcp import mcp_rss
from bench.report import KEYS, summarise, table
from bench.sessions import sessions


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

    @classmethod
    def full(cls, repeat: int) -> Plan:
        return cls(repeat, [15.0, 1.0, 5.0, 1.0], repeat, 6, repeat, 5.0, 60.0, 100.0, 20.0)

    @classmethod
    def quick(cls) -> Plan:
        return cls(1, [1.0, 1.0], 1, 1, 1, 1.0, 5.0, 11.0, 4.0)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(plan: Plan, work: Path) -> dict[str, Any]:
    jobs: list[tuple[str, Callable[[Path], dict[str, Any]]]] = []
    for i in range(plan.rounds):
        jobs.append((f"commit{i}", lambda d: commit_turns(d, plan.lengths)))
    for i in range(plan.barge_runs):
        jobs.append((f"barge{i}", lambda d: barge_ins(d, plan.barge_count)))
    jobs.append(("load", lambda d: load(d, plan.load_warmup_s, plan.load_s, plan.load_rounds)))
    jobs.append(("sessions", lambda d: sessions(d, plan.sessions_s, plan.sessions_warmup_s)))
    jobs.append(("mcp", lambda d: mcp_rss(d, plan.load_warmup_s)))

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
    p.add_argument("--json", action="store_true", help="one JSON object with issue 8's keys")
    p.add_argument("--quick", action="store_true", help="a smoke run: keys, not measurements")
    p.add_argument("--repeat", type=int, default=2, help="runs of each scenario but sessions (2)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    plan = Plan.quick() if args.quick else Plan.full(args.repeat)
    work = Path(tempfile.mkdtemp(prefix="omnid-bench-"))
    started = time.monotonic()
    load_before = loadavg()
    try:
        raw = run(plan, work)
    finally:
        if args.keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    figures, details = summarise(raw, max(plan.lengths))
    elapsed = time.monotonic() - started
    bad = [k for k in KEYS if not math.isfinite(figures[k])]
    if bad:
        log(f"no figure for {', '.join(bad)}")
        return 1
    if args.json:
        print(json.dumps({k: figures[k] for k in KEYS}))
    else:
        info = machine() | {"load": f"{load_before} before, {loadavg()} after"}
        print(table(figures, details, info))
        print(f"run time: {elapsed:.0f} s ({'quick' if args.quick else f'--repeat {args.repeat}'})")
    log(f"finished in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
