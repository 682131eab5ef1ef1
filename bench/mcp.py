"""What an MCP server costs the daemon in memory: the idle daemon without one and with one stdio
server configured, side by side in one run (the SDK is imported only when a server is)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, launch, rss_mb
from tests.harness import Simulator, make_key


def _devices(tmp: Path) -> str:
    return (
        f'[audio]\ninput_device = "wav:{ROOT / "omnid" / "data" / "sample.wav"}"\n'
        f'output_device = "wav:{tmp / "spk.wav"}"\n'
    )


def _server(tmp: Path) -> str:
    command = [sys.executable, str(ROOT / "tests" / "mcp_servers.py"), "stdio"]
    return (
        '[tools]\nenabled = true\n[[tools.mcp]]\nname = "home"\n'
        f'command = {json.dumps(command)}\nallow = ["*"]\n'
    )


def mcp_rss(tmp: Path, settle_s: float) -> dict[str, Any]:
    """Idle RSS and peak RSS (VmHWM) of `omnid run`, `settle_s` after it is ready."""
    key = make_key()
    sim = Simulator(tmp, key)
    out: dict[str, Any] = {}
    try:
        for name, tools in (("without", ""), ("with", None)):
            directory = tmp / name
            directory.mkdir()
            extra = _devices(directory) + (tools if tools is not None else _server(directory))
            daemon = launch(directory, sim, key, extra)
            try:
                if tools is None:
                    daemon.wait_for(lambda s: "the tools on offer changed" in s, timeout=30)
                time.sleep(settle_s)
                out[name] = {
                    "rss_mb": rss_mb(daemon.proc.pid),
                    "hwm_mb": rss_mb(daemon.proc.pid, "VmHWM"),
                }
            finally:
                daemon.stop()
    finally:
        sim.stop()
    return out
