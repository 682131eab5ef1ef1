"""`scripts/soak`: the reliability suite of issue 8, at full counts, with one table at the end.

    connection faults    tests/test_lifecycle.py's chaos test with OMNID_CHAOS_DROPS (≥ 100):
                         abrupt TCP drops (no close frame) at random moments while a user takes
                         turn after turn through real PortAudio; every turn answered or recorded
                         lost, the daemon up and exiting 0 at the end
    server events        tests/test_state_fuzz.py with OMNID_FUZZ_EXAMPLES: ≥ 10 000 generated
                         server events through `protocol.parse` and the conversation state machine
    broken configs       tests/test_config.py: every broken config is one readable line and exit 78
    key leaks            every run's output: each test checks its own (the harness at every
                         process stop, the config tests and the fuzz on everything they saw); this
                         driver also scans the pytest output and every record and log file the
                         runs left for anything shaped like a test key

A crash is a failed or erroring test: a daemon that died, exited non-zero, logged a traceback
from a handler, or left a turn unaccounted for.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY_SHAPE = re.compile(r"sk-test-[0-9a-f]{12}")  # tests' keys: sk-test- + 24 hex digits
PYTEST = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"]
SCANNED_SUFFIXES = {".jsonl", ".log", ".txt", ".out"}


@dataclass
class Part:
    name: str
    count: int = 0
    minimum: int = 0
    tests: int = 0
    failed: int = 0
    leaks: int = 0
    scanned: int = 0
    seconds: float = 0.0
    note: str = ""
    output: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return (
            self.failed == 0 and self.leaks == 0 and self.count >= self.minimum and self.tests > 0
        )


def pytest(part: Part, work: Path, args: list[str], env: dict[str, str]) -> None:
    """Run pytest on `args` in its own base temp; count tests, failures and key-shaped leaks."""
    base = work / part.name.replace(" ", "-")
    junit = work / f"{base.name}.xml"
    started = time.monotonic()
    proc = subprocess.run(
        [*PYTEST, f"--basetemp={base}", f"--junitxml={junit}", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    part.seconds = time.monotonic() - started
    part.output = proc.stdout + proc.stderr
    (work / f"{base.name}.out").write_text(part.output)
    try:
        suite = ET.parse(junit).getroot()
        cases = suite.iter("testcase")
        for case in cases:
            part.tests += 1
            if case.find("failure") is not None or case.find("error") is not None:
                part.failed += 1
    except (OSError, ET.ParseError):
        part.failed += 1
    if proc.returncode != 0 and part.failed == 0:
        part.failed = 1  # pytest itself failed (collection, internal error)
    for path in [work / f"{base.name}.out", *sorted(base.rglob("*"))]:
        if path.is_file() and path.suffix in SCANNED_SUFFIXES:
            part.scanned += 1
            part.leaks += len(KEY_SHAPE.findall(path.read_text(errors="replace")))


def chaos(work: Path, drops: int) -> Part:
    part = Part("connection faults", minimum=drops)
    test = "tests/test_lifecycle.py::test_chaos_every_turn_is_answered_or_recorded_lost"
    pytest(part, work, [test], {"OMNID_CHAOS_DROPS": str(drops)})
    m = re.search(
        r"(\d+) drops(?: \((\d+) between a commit and its answer\))?, (\d+) turns: "
        r"(\{[^}]*\}); (\d+) reconnects, max delay ([\d.]+) s",
        part.output,
    )
    if m:
        part.count = int(m[1])
        hit = f" ({m[2]} between a commit and its answer)" if m[2] else ""
        part.note = f"{m[3]} turns {m[4]}{hit}; {m[5]} reconnects, longest wait {m[6]} s"
    return part


def fuzz(work: Path, examples: int, minimum: int) -> Part:
    part = Part("generated server events", minimum=minimum)
    env = {"OMNID_FUZZ_EXAMPLES": str(examples)}
    pytest(part, work, ["tests/test_state_fuzz.py"], env)
    m = re.search(
        r"(\d+) conversations, (\d+) generated server events .*?\((\d+) more rejected by the "
        r"parser\), (\d+) events in all, (\d+) outputs scanned",
        part.output,
    )
    if m:
        part.count = int(m[2])
        part.scanned += int(m[5])
        part.note = f"{m[1]} conversations, {m[4]} events in all, {m[3]} rejected by the parser"
    return part


def configs(work: Path, minimum: int) -> Part:
    part = Part("broken configs", minimum=minimum)
    pytest(part, work, ["tests/test_config.py"], {})
    junit = work / "broken-configs.xml"
    broken = 0
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name", "")
            one_bad_file = name.startswith("test_broken_config_") or name.startswith("test_two_")
            if one_bad_file and case.find("failure") is None and case.find("error") is None:
                broken += 1
    part.count = broken
    part.note = f"{part.tests} config tests in all (key secrecy included)"
    return part


def report(parts: list[Part], elapsed: float) -> str:
    head = f"{'soak':<26} {'count':>7} {'min':>6} {'tests':>6} {'crashes':>8} {'key leaks':>10}"
    lines = [head, "-" * len(head)]
    for p in parts:
        lines.append(
            f"{p.name:<26} {p.count:>7} {p.minimum:>6} {p.tests:>6} {p.failed:>8} {p.leaks:>10}"
            f"  {'ok' if p.ok else 'FAILED'}"
        )
    scanned = sum(p.scanned for p in parts)
    leaks = sum(p.leaks for p in parts)
    lines.append(
        f"{'outputs scanned for a key':<26} {scanned:>7} {'':>6} {'':>6} {'':>8} {leaks:>10}"
    )
    lines.append("")
    lines += [f"{p.name}: {p.note} ({p.seconds:.0f} s)" for p in parts if p.note]
    verdict = "all passed" if all(p.ok for p in parts) else "FAILED"
    lines.append(f"soak: {verdict}: 0 crashes and 0 key leaks required; {elapsed:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/soak", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    p.add_argument("--drops", type=int, default=100, help="connection faults to inject (100)")
    p.add_argument("--examples", type=int, default=400, help="fuzzed conversations (400)")
    p.add_argument("--min-events", type=int, default=10_000, help="server events required")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="omnid-soak-"))
    started = time.monotonic()
    parts: list[Part] = []
    try:
        for name, run in (
            ("server events", lambda: fuzz(work, args.examples, args.min_events)),
            ("broken configs", lambda: configs(work, 20)),
            ("connection faults", lambda: chaos(work, args.drops)),
        ):
            print(f"soak: {name}…", file=sys.stderr, flush=True)
            parts.append(run())
            if not parts[-1].ok:
                print(parts[-1].output[-4000:], file=sys.stderr)
    finally:
        if args.keep:
            print(f"soak: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(report(parts, time.monotonic() - started))
    return 0 if all(p.ok for p in parts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
