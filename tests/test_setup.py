"""`scripts/setup` on a machine it has already set up: the README promises that a second run
touches nothing and needs no network, so a box set up once can run its tests or demo offline.

The run happens in a network namespace of its own with no interface but a downed loopback: any
apt-get or pip that went to the network would fail there, and setup (set -e) with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAMP = REPO / ".venv" / ".omnid-setup-stamp"


def _offline_prefix() -> list[str] | None:
    """`unshare -n` as root, a user namespace around it otherwise; None where neither works."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if prefix == ["unshare", "-n"] and os.geteuid() != 0:
            continue
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


def test_a_second_setup_touches_nothing_and_needs_no_network() -> None:
    prefix = _offline_prefix()
    if prefix is None:
        pytest.skip("no network namespace can be made here (unshare -n / -rn)")
    if not STAMP.exists() or (REPO / "pyproject.toml").stat().st_mtime > STAMP.stat().st_mtime:
        pytest.skip("pyproject.toml changed since scripts/setup last ran: run it first")
    # Proof the namespace really is offline: nothing, not even loopback, is reachable.
    probe = subprocess.run(
        [*prefix, "python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 9), 1)"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "unreachable" in probe.stderr.lower()

    run = subprocess.run(
        [*prefix, str(REPO / "scripts" / "setup")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "setup: nothing was needed" in run.stdout
    assert "installing" not in run.stdout + run.stderr
