"""Simulator options: one dataclass shared by `omnid simulate` flags and `start_in_thread(**kw)`.

Defaults are the service's own numbers (120-minute sessions, 300 s idle close) so that a client
tested against a default simulator meets the same limits as in the field; tests shorten them.
By default the simulated model never calls a tool; `call` and `script` say which turns do
(their shapes and rules are in calls.py, which also validates them when the simulator starts).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_API_KEY = "sk-test-omnid-simulator"
API_KEY_ENV = "OMNID_SIM_API_KEY"
PATH = "/api-ws/v1/realtime"


@dataclass
class SimOptions:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None  # None: $OMNID_SIM_API_KEY, else DEFAULT_API_KEY
    max_session_s: float = 7200.0  # 0 = no limit
    idle_timeout_s: float = 300.0  # 0 = no limit
    first_audio_ms: float = 150.0
    pace: float = 2.0  # × real time; 0 = as fast as possible
    record: str | None = None
    seed: int | None = None
    drop_after_events: int | None = None
    drop_after_call: bool = False
    drop_every_s: float | None = None
    stall_after_events: int | None = None
    faulty_connections: int | None = None  # None: every connection meets the faults above
    refuse_status: int | None = None
    close_1007_on_response: bool = False
    long_close_reason: bool = False
    # Function calling (calls.py): `--call NAME[=JSON]` for every user turn, and/or a script
    # (a path to a JSON file, or — from start_in_thread — the already parsed list).
    call: list[str] = field(default_factory=list)
    script: str | list[Any] | None = None
    log_level: str = "info"

    def resolved_api_key(self) -> str:
        return self.api_key or os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY

    def __repr__(self) -> str:  # never show the key, even in a traceback
        shown = ", ".join(
            f"{f.name}={'***' if f.name == 'api_key' and self.api_key else getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"SimOptions({shown})"


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="omnid simulate",
        description="Local stand-in for Qwen-Omni-Realtime (docs/protocol.md).",
    )
    fl, it = _non_negative_float, _non_negative_int
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=it, default=0, help="TCP port; 0 picks a free one (default)")
    p.add_argument(
        "--api-key",
        help=f"accepted bearer key (default ${API_KEY_ENV}, else {DEFAULT_API_KEY})",
    )
    p.add_argument("--max-session-s", type=fl, default=7200.0, help="close sessions at this age")
    p.add_argument(
        "--idle-timeout-s",
        type=fl,
        default=300.0,
        help="error + close after this long without a response (0 = never)",
    )
    p.add_argument("--first-audio-ms", type=fl, default=150.0, help="delay of the first audio")
    p.add_argument("--pace", type=fl, default=2.0, help="audio pace × real time; 0 = no waiting")
    p.add_argument("--record", metavar="PATH", help="append a JSONL record of the wire here")
    p.add_argument("--seed", type=int, help="seed for randomised faults (--drop-every-s)")
    calls = p.add_argument_group(
        "function calling",
        "By default the model never calls a tool. A tool is called only if the session declared "
        "it in session.update.tools (unless forced), never by qwen3-omni-flash-realtime (it "
        "accepts tools and never calls them), and never by the answer to function_call_output "
        "items, which speaks each output ('The tool said: …') over the echo of the question.",
    )
    calls.add_argument(
        "--call",
        action="append",
        metavar="NAME[=JSON]",
        help=(
            "every user turn's response calls tool NAME with this JSON object as arguments "
            "(default {}); repeat for several calls in one response, in flag order"
        ),
    )
    calls.add_argument(
        "--script",
        metavar="PATH",
        help=(
            "JSON list, entry i for the i-th answered user turn of the simulator (all "
            "connections; a turn counts once a response without calls completes, so a turn "
            "asked again after a dropped connection meets the same entry). Entry: null or {} "
            '(plain answer) or {"calls": [{"name": N, "arguments": {…}} | {"name": N, '
            '"arguments_raw": "verbatim string"}, optionally with "force": true to call an '
            'undeclared name], "speak_first": false}; speak_first: speak, then call, in one '
            "response. Past its end, --call applies."
        ),
    )
    faults = p.add_argument_group("fault injection")
    faults.add_argument(
        "--drop-after-events",
        type=it,
        metavar="N",
        help="abort the TCP connection (no close frame) after N server events",
    )
    faults.add_argument(
        "--drop-after-call",
        action="store_true",
        help=(
            "abort the TCP connection right after the response.done of a response that called "
            "a function, before its output can arrive"
        ),
    )
    faults.add_argument(
        "--drop-every-s",
        type=fl,
        metavar="S",
        help="abort each connection after a random 0.5·S…1.5·S seconds",
    )
    faults.add_argument(
        "--stall-after-events",
        type=it,
        metavar="N",
        help=(
            "after N server events, stop reading and sending on the connection but keep its "
            "socket open (pings go unanswered): a dead link that shows no error"
        ),
    )
    faults.add_argument(
        "--faulty-connections",
        type=it,
        metavar="K",
        help=(
            "apply --drop-after-events, --drop-after-call, --drop-every-s and "
            "--stall-after-events to the first K "
            "connections only (default: to every connection), so a client can recover"
        ),
    )
    faults.add_argument(
        "--refuse-status",
        type=int,
        choices=(401, 429),
        help="refuse every WebSocket upgrade with this HTTP status and a JSON body",
    )
    faults.add_argument(
        "--close-1007-on-response",
        action="store_true",
        help="close with 1007 at the first response.create (exhausted free tier)",
    )
    faults.add_argument(
        "--long-close-reason",
        action="store_true",
        help="with --close-1007-on-response: send the full >125-byte reason (invalid frame)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="stderr log level (default info)",
    )
    return p


def parse_options(argv: list[str]) -> SimOptions:
    ns = build_parser().parse_args(argv)
    ns.call = ns.call or []
    return SimOptions(**{f.name: getattr(ns, f.name) for f in fields(SimOptions)})
