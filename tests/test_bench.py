"""`scripts/bench --quick --json`: one JSON object with exactly issue 8's keys, every one a number.

The quick run exercises every scenario of the real benchmark (push-to-talk turns, barge-in,
rollovers, the load run against the official SDK, start-up) with tiny counts, so
its figures mean nothing; what it proves is that a full run can produce all of them.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from bench.report import KEYS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_quick_bench_prints_every_key_as_a_number() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
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
