"""`scripts/soak-memory`: issue 18's memory target — the daemon's RSS grows by at most 1 MB over a
two-hour wall-clock soak. Not part of CI: it takes the hours it says.

The workload is the load scenario's (`bench/load.py`) for the whole soak: the real `omnid run`
against the real `omnid simulate`, hands-free (server VAD), `wav:` microphone and speaker, the
`files` camera at 1 fps 640×480 with `camera.when = "always"` (a frame every second), and a
conversation on top — a 3 s utterance every 20 s, each answered by the simulator with its echo.
Sessions roll over every 10 minutes (`session.rollover_after_min`; shorter in a soak of under
40 minutes, so that a trial sees a few), with the simulator's session cap a little above it, so a
rollover that never happens shows up as a capped session.

Every `--every` seconds it reads the daemon's VmRSS, VmHWM and thread count (/proc/PID/status),
Pss, Private_Clean + Private_Dirty and Anonymous (/proc/PID/smaps_rollup), its open descriptors,
its CPU over the interval, and the `turn` and `rollover` journal records so far; every sample goes
to `samples.csv` in the work directory as it is taken. Growth is VmRSS at the end (the median of
the last 5 samples) minus VmRSS at the end of the warm-up (the median of the 5 samples nearest to
it); the slope is the least-squares line through every sample after the warm-up. PASS: growth
≤ 1.0 MB, the daemon up throughout and exiting 0 at SIGTERM, and the workload actually run (at
least 90 % of the utterances answered) — a soak in which nothing happened measures nothing.

The work directory, /var/tmp/omnid-memory-soak-<timestamp>, survives the run (and a reboot's
/tmp cleaning). On PASS its large files (the microphone WAV, the speaker WAV and the simulator's
wire record: ~2 GB for two hours) are removed; the CSV, the logs and the summary stay.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import time
import wave
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    IN_RATE,
    ROOT,
    VAD,
    BenchDaemon,
    Simulator,
    cpu_seconds,
    launch,
    machine,
    make_key,
    speech,
)
from bench.load import make_images

UTTERANCE_S, TURN_EVERY_S, FIRST_AT_S = 3.0, 20.0, 2.0
ANSWER_GRACE_S = 10.0  # an utterance counts as due once this long past its end
ROLLOVER_MIN = 10.0
TARGET_MB = 1.0
AROUND = 5  # samples in each median
MIN_ANSWERED = 0.9  # of the utterances due: below this the workload did not run
WORK_ROOT = Path("/var/tmp")
BYTES_PER_S = 250_000  # disk per second of soak: mic 32 kB, speaker 48 kB, wire record ~150 kB
BIG_FILES = ("mic.wav", "spk.wav", "sim-record.jsonl")
TAG = "soak-memory:"


@dataclass
class Sample:
    t_s: float  # since the daemon's audio clock started
    rss_mb: float
    hwm_mb: float
    private_mb: float  # Private_Clean + Private_Dirty
    anon_mb: float
    pss_mb: float
    threads: int
    fds: int
    cpu_pct: float  # of one core, over the interval since the previous sample
    turns: int
    answered: int
    lost: int
    rollovers: int
    sim_rss_mb: float


class Died(Exception):
    """The daemon exited (or vanished from /proc) during the soak."""


def _kb_fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in names:
                found[key] = int(value.split()[0])
    return found


def read_memory(pid: int) -> dict[str, float]:
    status = _kb_fields(f"/proc/{pid}/status", ("VmRSS", "VmHWM", "Threads"))
    rollup = _kb_fields(
        f"/proc/{pid}/smaps_rollup", ("Pss", "Private_Clean", "Private_Dirty", "Anonymous")
    )
    return {
        "rss_mb": status["VmRSS"] / 1024,
        "hwm_mb": status["VmHWM"] / 1024,
        "threads": status["Threads"],  # a plain count, not kB
        "private_mb": (rollup["Private_Clean"] + rollup["Private_Dirty"]) / 1024,
        "anon_mb": rollup["Anonymous"] / 1024,
        "pss_mb": rollup["Pss"] / 1024,
    }


def write_mic(path: Path, seconds: float) -> None:
    """The microphone WAV, one 20 s period (a 3 s utterance at 2 s, silence around it) at a
    time: two hours are 230 MB, never held in memory (the `wav:` microphone reads a 16 kHz mono
    file as it plays, so the daemon does not hold it either)."""
    period = np.zeros(int(TURN_EVERY_S * IN_RATE), np.int16)
    utterance = speech(UTTERANCE_S)
    at = int(FIRST_AT_S * IN_RATE)
    period[at : at + len(utterance)] = utterance
    raw = period.astype("<i2").tobytes()
    full, rest = divmod(int(seconds * IN_RATE), len(period))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(IN_RATE)
        for _ in range(full):
            w.writeframes(raw)
        w.writeframes(raw[: 2 * rest])


def utterances_due(t: float) -> int:
    """Utterances played and given time to be answered by `t` seconds into the microphone."""
    last_start = t - UTTERANCE_S - ANSWER_GRACE_S
    return 0 if last_start < FIRST_AT_S else int((last_start - FIRST_AT_S) // TURN_EVERY_S) + 1


def at_end_of(samples: list[float], n: int = AROUND) -> float:
    return statistics.median(samples[-n:])


def around(times: list[float], values: list[float], t: float, n: int = AROUND) -> float:
    """The median of the `n` samples nearest in time to `t`."""
    nearest = sorted(range(len(times)), key=lambda i: abs(times[i] - t))[:n]
    return statistics.median(values[i] for i in nearest)


def slope_per_hour(times: list[float], values: list[float]) -> float:
    """The least-squares slope, MB per hour; NaN for fewer than two points."""
    if len(times) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(times) / 3600, np.asarray(values), 1)[0])


def hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def say(message: str) -> None:
    print(f"{TAG} {message}", file=sys.stderr, flush=True)


def commit() -> str:
    """The checkout's commit, `+dirty` when omnid/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "omnid"], cwd=ROOT, capture_output=True
        ).stdout.strip()
    except OSError:
        return "?"
    return (head or "?") + ("+dirty" if dirty else "")


def wire_summary(record: Path) -> dict[str, int]:
    """Sessions opened and capped, pictures received and errors sent, read from the simulator's
    wire record a line at a time (it is ~1 GB after two hours: never loaded whole)."""
    counts = {"sessions": 0, "capped": 0, "images_sent": 0, "simulator_errors": 0}
    kind = re.compile(r'"dir": "(\w+)"')
    event = re.compile(r'"type":\s*"([\w.]+)"')
    if not record.exists():
        return counts
    with open(record, encoding="utf-8") as f:
        for line in f:
            head = line[:400]  # the direction and the event's type come before any payload
            d = kind.search(head)
            if d is None:
                continue
            if d.group(1) == "conn":
                conn = json.loads(line)
                counts["sessions"] += conn.get("what") == "open"
                counts["capped"] += conn.get("what") == "close" and conn.get("by") == "max-session"
                continue
            e = event.search(head)
            if e is None:
                continue
            if d.group(1) == "recv" and e.group(1) == "input_image_buffer.append":
                counts["images_sent"] += 1
            elif d.group(1) == "send" and e.group(1) == "error":
                counts["simulator_errors"] += 1
    return counts


def exited(daemon: BenchDaemon, otherwise: str = "") -> str:
    """How the daemon ended mid-soak."""
    code = daemon.proc.poll()
    if code is None:
        return f"omnid run {otherwise}"
    how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
    return f"omnid run {how} mid-soak"


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.duration = args.hours * 3600
        self.warmup = args.warmup_min * 60
        self.rollover_min = min(args.rollover_min, self.duration / 60 / 4)
        self.cap_s = self.rollover_min * 60 * 1.2 + 30  # a missed rollover is cut, and counted
        self.samples: list[Sample] = []
        self.csv_path = work / "samples.csv"
        self.daemon_exit: int | None = None
        self.died = ""
        self.interrupted = False
        self.wire: dict[str, int] = {}
        self.turn_records: list[dict[str, str]] = []

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        images = self.work / "images"
        make_images(images)
        mic = self.work / "mic.wav"
        write_mic(mic, self.duration + 30)
        with open(self.csv_path, "w", newline="") as f:  # the header, whatever follows
            csv.writer(f).writerow([x.name for x in fields(Sample)])
        key = make_key()
        sim = Simulator(self.work, key, "--max-session-s", f"{self.cap_s:g}")
        session = f"[session]\nrollover_after_min = {self.rollover_min:g}\n"
        config = (
            VAD.replace("[session]\n", session)
            + f'[audio]\ninput_device = "wav:{mic}"\n'
            + f'output_device = "wav:{self.work / "spk.wav"}"\n'
            + f'[camera]\nenabled = true\nsource = "files"\npath = "{images}"\n'
            + 'width = 640\nheight = 480\nfps = 1.0\nwhen = "always"\n'
        )
        daemon: BenchDaemon | None = None
        try:
            try:
                daemon = launch(self.work, sim, key, config)
            except (RuntimeError, AssertionError) as exc:  # the message holds its output
                print(f"{TAG} omnid run did not start: {exc}", file=sys.stderr)
                raise Died("omnid run did not start (its output above)") from None
            say(
                f"omnid run (pid {daemon.proc.pid}) up in {daemon.ready_s:.2f} s; soaking for "
                f"{hms(self.duration)} (warm-up {hms(self.warmup)}, a sample every "
                f"{self.args.every:g} s, rollover every {self.rollover_min:g} min)"
            )
            self._sample_loop(daemon, sim)
        except KeyboardInterrupt:
            self.interrupted = True
            say("interrupted: reporting what was sampled")
        except Died as exc:
            self.died = str(exc)
        finally:
            try:
                if daemon is not None:
                    alive = daemon.proc.poll() is None
                    self.daemon_exit = daemon.stop(timeout=15)
                    if not alive and not self.died and not self.interrupted:
                        self.died = f"omnid run exited with {self.daemon_exit} during the soak"
                    self.turn_records = daemon.records("turn")
            finally:
                sim.stop()  # whatever happened to the daemon: no simulator left behind
            for name in ("api-key", "notify.sock"):  # a throwaway key, but not left behind
                (self.work / name).unlink(missing_ok=True)
            if daemon is not None:
                (self.work / "daemon.log").write_text(daemon.output() + "\n")
            (self.work / "simulator.log").write_text(sim.output() + "\n")
            if self.died and daemon is not None:
                tail = "\n".join(daemon.output().splitlines()[-40:])
                print(f"{TAG} {self.died}; its output's last lines:\n{tail}", file=sys.stderr)
        self.wire = wire_summary(self.work / "sim-record.jsonl")

    def _sample_loop(self, daemon: BenchDaemon, sim: Simulator) -> None:
        pid = daemon.proc.pid
        wall0 = daemon.audio_started_wall()
        t0 = time.monotonic() - (time.time() - wall0)  # the audio clock's start, monotonic
        progress_every = min(300.0, max(self.args.every, self.duration / 6))
        next_progress = progress_every
        warmup_said = False
        cpu0, at0 = cpu_seconds(pid), time.monotonic()
        with open(self.csv_path, "a", newline="") as f:
            out = csv.writer(f)
            k = 1
            while k * self.args.every <= self.duration + 1e-6:
                deadline = t0 + k * self.args.every
                while (left := deadline - time.monotonic()) > 0:
                    if daemon.proc.poll() is not None:
                        raise Died(exited(daemon))
                    time.sleep(min(1.0, left))
                try:
                    mem = read_memory(pid)
                    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
                    cpu, at = cpu_seconds(pid), time.monotonic()
                except (OSError, KeyError) as exc:  # exiting: a zombie has no smaps_rollup
                    time.sleep(0.5)
                    raise Died(exited(daemon, f"gone from /proc ({exc})")) from None
                try:
                    sim_rss = read_memory(sim.proc.pid)["rss_mb"]
                except (OSError, KeyError):
                    sim_rss = float("nan")
                turns = daemon.records("turn")
                outcomes = [t.get("OMNID_OUTCOME") for t in turns]
                sample = Sample(
                    t_s=round(at - t0, 2),
                    rss_mb=round(mem["rss_mb"], 3),
                    hwm_mb=round(mem["hwm_mb"], 3),
                    private_mb=round(mem["private_mb"], 3),
                    anon_mb=round(mem["anon_mb"], 3),
                    pss_mb=round(mem["pss_mb"], 3),
                    threads=int(mem["threads"]),
                    fds=fds,
                    cpu_pct=round(100 * (cpu - cpu0) / (at - at0), 2),
                    turns=len(turns),
                    answered=sum(o in ("answered", "retried") for o in outcomes),
                    lost=outcomes.count("lost"),
                    rollovers=len(daemon.records("rollover")),
                    sim_rss_mb=round(sim_rss, 3),
                )
                cpu0, at0 = cpu, at
                self.samples.append(sample)
                out.writerow(astuple(sample))
                f.flush()
                if not warmup_said and sample.t_s >= self.warmup:
                    warmup_said = True
                    say(f"warm-up over at {hms(sample.t_s)}: RSS {sample.rss_mb:.1f} MB")
                if sample.t_s >= next_progress - 1e-6:
                    next_progress += progress_every
                    say(
                        f"{hms(sample.t_s)} / {hms(self.duration)}  RSS {sample.rss_mb:.1f} MB "
                        f"(private {sample.private_mb:.1f}, peak {sample.hwm_mb:.1f})  "
                        f"turns {sample.answered} answered, {sample.lost} lost  "
                        f"rollovers {sample.rollovers}  threads {sample.threads}  fds {sample.fds}"
                    )
                k += 1

    # ------------------------------------------------------------------ the verdict

    def result(self) -> dict[str, Any]:
        s = self.samples
        t = [x.t_s for x in s]
        after = [x for x in s if x.t_s >= self.warmup]
        ta = [x.t_s for x in after]
        enough = len(after) >= AROUND and len(s) >= AROUND

        def growth(field: str) -> tuple[float, float, float, float]:
            values = [getattr(x, field) for x in s]
            if not enough:
                return (math.nan,) * 4
            start = around(t, values, self.warmup)
            end = at_end_of(values)
            return start, end, end - start, slope_per_hour(ta, [getattr(x, field) for x in after])

        rss0, rss1, rss_growth, rss_slope = growth("rss_mb")
        _, _, private_growth, private_slope = growth("private_mb")
        _, _, anon_growth, anon_slope = growth("anon_mb")
        last = s[-1] if s else None
        outcomes: dict[str, int] = {}
        for r in self.turn_records:
            o = r.get("OMNID_OUTCOME", "?")
            outcomes[o] = outcomes.get(o, 0) + 1
        answered = outcomes.get("answered", 0) + outcomes.get("retried", 0)
        due = utterances_due(last.t_s) if last else 0

        reasons = []
        if self.died:
            reasons.append(self.died)
        if self.interrupted:
            reasons.append("interrupted before the end")
        if self.daemon_exit not in (0, None) and not self.died:
            reasons.append(f"omnid run exited with {self.daemon_exit} at SIGTERM")
        if not enough:
            reasons.append(f"fewer than {AROUND} samples after the warm-up")
        elif not rss_growth <= TARGET_MB:
            reasons.append(f"RSS grew {rss_growth:.2f} MB (target ≤ {TARGET_MB:g})")
        if answered < MIN_ANSWERED * due:
            reasons.append(
                f"only {answered} of {due} utterances answered: the workload did not run"
            )
        return {
            "verdict": "PASS" if not reasons else "INTERRUPTED" if self.interrupted else "FAIL",
            "reasons": reasons,
            "target_growth_mb": TARGET_MB,
            "rss_growth_mb": _r(rss_growth),
            "rss_after_warmup_mb": _r(rss0),
            "rss_end_mb": _r(rss1),
            "rss_slope_mb_per_h": _r(rss_slope),
            "peak_hwm_mb": last.hwm_mb if last else None,
            "private_growth_mb": _r(private_growth),
            "private_slope_mb_per_h": _r(private_slope),
            "anon_growth_mb": _r(anon_growth),
            "anon_slope_mb_per_h": _r(anon_slope),
            "turns_answered": answered,
            "turns_lost": outcomes.get("lost", 0),
            "turn_outcomes": outcomes,
            "utterances_due": due,
            "rollovers": last.rollovers if last else 0,
            **self.wire,
            "threads_after_warmup": after[0].threads if after else None,
            "threads_end": last.threads if last else None,
            "fds_after_warmup": after[0].fds if after else None,
            "fds_end": last.fds if last else None,
            "cpu_pct_after_warmup": _r(statistics.mean(x.cpu_pct for x in after))
            if after
            else None,
            "simulator_rss_mb": ([_r(s[0].sim_rss_mb), _r(s[-1].sim_rss_mb)] if s else None),
            "daemon_exit": self.daemon_exit,
            "soaked_s": last.t_s if last else 0.0,
            "samples": len(s),
            "hours": self.args.hours,
            "warmup_min": self.args.warmup_min,
            "every_s": self.args.every,
            "rollover_min": self.rollover_min,
            "session_cap_s": self.cap_s,
            "commit": commit(),
            "machine": machine(),
            "work_dir": str(self.work),
            "csv": str(self.csv_path),
        }


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 3)


def table(r: dict[str, Any]) -> str:
    def mb(x: float | None, signed: bool = False) -> str:
        return "—" if x is None else f"{x:+.2f} MB" if signed else f"{x:.2f} MB"

    def rate(x: float | None) -> str:
        return "—" if x is None else f"{x:+.2f} MB/h"

    m = r["machine"]
    rows = [
        ("verdict", f"{r['verdict']}  (growth ≤ {r['target_growth_mb']:g} MB)"),
        ("soaked", f"{hms(r['soaked_s'])} ({r['samples']} samples, one every {r['every_s']:g} s)"),
        (
            "RSS after warm-up",
            f"{mb(r['rss_after_warmup_mb'])}  (median of 5 around {hms(r['warmup_min'] * 60)})",
        ),
        ("RSS at the end", f"{mb(r['rss_end_mb'])}  (median of the last 5)"),
        ("growth", mb(r["rss_growth_mb"], signed=True)),
        ("slope after warm-up", rate(r["rss_slope_mb_per_h"])),
        ("peak (VmHWM)", mb(r["peak_hwm_mb"])),
        (
            "private (clean+dirty)",
            f"{mb(r['private_growth_mb'], signed=True)}, {rate(r['private_slope_mb_per_h'])}",
        ),
        ("anonymous", f"{mb(r['anon_growth_mb'], signed=True)}, {rate(r['anon_slope_mb_per_h'])}"),
        (
            "turns",
            f"{r['turns_answered']} answered, {r['turns_lost']} lost of "
            f"{r['utterances_due']} utterances due  {r['turn_outcomes']}",
        ),
        (
            "sessions",
            f"{r['sessions']} opened, {r['rollovers']} rollovers (every "
            f"{r['rollover_min']:g} min), {r['capped']} cut at the cap",
        ),
        ("camera", f"{r['images_sent']} pictures sent; {r['simulator_errors']} simulator errors"),
        (
            "threads / fds",
            f"{r['threads_after_warmup']} → {r['threads_end']} / "
            f"{r['fds_after_warmup']} → {r['fds_end']}",
        ),
        (
            "CPU after warm-up",
            "—"
            if r["cpu_pct_after_warmup"] is None
            else f"{r['cpu_pct_after_warmup']:.2f} % of a core",
        ),
        ("daemon exit", str(r["daemon_exit"])),
        ("commit", r["commit"]),
        ("machine", f"{m['cpu']}, {m['cores']} cores, {m['memory']}, Python {m['python']}"),
        ("samples (CSV)", r["csv"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"{'':<{width}}  {why}" for why in r["reasons"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/soak-memory",
        description="omnid run's memory over a long hands-free soak with camera and conversation "
        "(issue 18: growth ≤ 1 MB over two hours). Exit 0 on PASS, 1 otherwise.",
    )
    p.add_argument("--hours", type=float, default=2.0, help="length of the soak (default 2.0)")
    p.add_argument("--every", type=float, default=30.0, help="sample period, s (default 30)")
    p.add_argument(
        "--warmup-min",
        type=float,
        default=10.0,
        help="growth is measured from the end of this warm-up, minutes (default 10)",
    )
    p.add_argument(
        "--rollover-min",
        type=float,
        default=ROLLOVER_MIN,
        help="session rollover period, minutes (default 10; at most a quarter of the soak)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object, not a table")
    args = p.parse_args(argv)
    duration = args.hours * 3600
    if args.every <= 0 or args.hours <= 0 or args.warmup_min < 0:
        p.error("--hours and --every must be positive, --warmup-min not negative")
    if duration - args.warmup_min * 60 < 2 * AROUND * args.every:
        p.error(
            f"the soak after the warm-up must hold at least {2 * AROUND} samples "
            f"({2 * AROUND} × --every s)"
        )
    if not 0 < args.rollover_min < 120:
        p.error("--rollover-min must be between 0 and 120")
    need = duration * BYTES_PER_S + 200e6
    free = shutil.disk_usage(WORK_ROOT).free
    if free < need:
        p.error(f"{WORK_ROOT} has {free / 1e9:.1f} GB free; the soak needs ~{need / 1e9:.1f} GB")

    work = WORK_ROOT / f"omnid-memory-soak-{datetime.now():%Y%m%d-%H%M%S}"
    work.mkdir(parents=True)
    say(f"work directory {work} (samples in {work / 'samples.csv'})")
    soak = Soak(args, work)
    soak.run()
    result = soak.result()
    (work / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    if result["verdict"] == "PASS":
        for name in BIG_FILES:
            (work / name).unlink(missing_ok=True)
    print(json.dumps(result) if args.json else table(result))
    say(f"samples: {soak.csv_path}")
    if result["verdict"] == "INTERRUPTED":
        return 130
    return 0 if result["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
