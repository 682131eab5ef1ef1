"""`omnid simulate`: a local stand-in for Qwen-Omni-Realtime, faithful to docs/protocol.md.

Two ways in:
- `main(argv)` — the CLI (`omnid simulate --port 0 …`): prints exactly one line,
  `omnid simulate: listening on ws://HOST:PORT/api-ws/v1/realtime`, then serves until SIGTERM or
  SIGINT and exits 0. Tests in other processes parse the URL from that line.
- `start_in_thread(**options)` — the same server on a daemon thread with its own event loop, for
  `omnid demo` and in-process tests; keyword names are the fields of `SimOptions`.

The simulated model answers by echoing the user's audio; it calls tools only when told to
(`--call`, `--script`: calls.py), so a client's function-calling path can be tested turn by turn.

Layout: `server` (upgrade checks) → `connection` (socket, record, limits, faults) → `session`
(state machine) → `validate` (session.update), `response` (streaming + usage), `functions`
(call ids, tool outputs, the follow-up), `calls` (which turns call what), `images`, `vad`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from typing import Any

from omnid.simulator.calls import ScriptError
from omnid.simulator.options import (
    API_KEY_ENV,
    DEFAULT_API_KEY,
    PATH,
    SimOptions,
    parse_options,
)
from omnid.simulator.server import Simulator

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_API_KEY",
    "PATH",
    "RunningSimulator",
    "ScriptError",
    "SimOptions",
    "Simulator",
    "main",
    "start_in_thread",
]

log = logging.getLogger(__name__)


class RunningSimulator:
    """Handle on a simulator running on its own thread; `stop()` is idempotent."""

    def __init__(
        self,
        simulator: Simulator,
        loop: asyncio.AbstractEventLoop,
        stop_event: asyncio.Event,
        thread: threading.Thread,
    ) -> None:
        self._simulator = simulator
        self._loop = loop
        self._stop_event = stop_event
        self._thread = thread

    @property
    def url(self) -> str:
        """`ws://127.0.0.1:PORT/api-ws/v1/realtime` — add `?model=…` to connect."""
        return self._simulator.url

    @property
    def port(self) -> int:
        return self._simulator.port

    @property
    def options(self) -> SimOptions:
        return self._simulator.options

    @property
    def api_key(self) -> str:
        """The key this simulator accepts (for in-process clients; never logged)."""
        return self._simulator.options.resolved_api_key()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop_event.set)
            self._thread.join(timeout)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(**options: Any) -> RunningSimulator:
    """Start a simulator on a daemon thread and return once it listens.

    Keywords are `SimOptions` fields (`port=0`, `pace=0`, `record=…`, fault flags…); an unknown
    one raises TypeError here rather than being silently ignored. Function calling:
    `call=["set_volume={\"level\": 30}"]` is `--call`; `script=` takes a path to a JSON file
    (`--script`) or the already parsed list itself. A bad call or script raises `ScriptError`
    (a ValueError) here, before any thread starts.
    """
    opts = SimOptions(**options)
    simulator = Simulator(opts)  # validates call/script; creates no asyncio object
    ready = threading.Event()
    started: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stop_event = asyncio.Event()
        try:
            loop.run_until_complete(simulator.start())
        except BaseException as exc:  # surfaced to the caller below
            started["error"] = exc
            ready.set()
            loop.close()
            return
        started["running"] = RunningSimulator(
            simulator, loop, stop_event, threading.current_thread()
        )
        ready.set()
        try:
            loop.run_until_complete(stop_event.wait())
            loop.run_until_complete(simulator.stop())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="omnid-simulator", daemon=True)
    thread.start()
    if not ready.wait(10.0):
        raise TimeoutError("the simulator did not start within 10 s")
    if "error" in started:
        raise started["error"]
    running: RunningSimulator = started["running"]
    return running


async def _serve_until_signal(simulator: Simulator) -> int:
    await simulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"omnid simulate: listening on {simulator.url}", flush=True)
    await stop.wait()
    log.info("stopping")
    await simulator.stop()
    return 0


def main(argv: list[str]) -> int:
    """`omnid simulate …`; returns the exit status (0 after SIGTERM/SIGINT)."""
    options = parse_options(argv)
    logging.basicConfig(
        level=options.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if options.log_level != "debug":
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        simulator = Simulator(options)
    except ScriptError as exc:  # one readable line, no traceback
        print(f"omnid simulate: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve_until_signal(simulator))
    except OSError as exc:  # e.g. the port is taken
        print(f"omnid simulate: {exc}", file=sys.stderr)
        return 1
