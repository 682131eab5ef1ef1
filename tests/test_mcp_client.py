"""McpHub (omnid/tools/mcp_client.py) against real MCP servers run as child processes.

The servers are tests/mcp_servers.py, written with the same SDK: a stdio one that the hub starts
itself, and a Streamable HTTP one behind a bearer token that a fixture starts on a free port.
Waits are wait-until with generous limits (a loaded 2-core machine), never sleeps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from omnid.tools.mcp_client import CHILD_PATH, McpHub, McpServerSpec, McpTool
from tests.secret_guard import assert_no_secret, make_key

SERVERS = Path(__file__).resolve().with_name("mcp_servers.py")
REPO = SERVERS.parent.parent
WAIT_S = 30.0


def wait_until(pred: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def read_calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def echo_texts(path: Path) -> list[str]:
    return [c["arguments"]["text"] for c in read_calls(path) if c["tool"] == "echo"]


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def stdio_spec(tmp_path: Path, *extra: str, name: str = "home") -> McpServerSpec:
    argv = (sys.executable, str(SERVERS), "stdio", "--calls", str(tmp_path / "calls.jsonl"))
    return McpServerSpec(name=name, command=(*argv, *extra))


@contextlib.contextmanager
def hub_running(specs: list[McpServerSpec], **kwargs: Any) -> Iterator[McpHub]:
    hub = McpHub(specs, **kwargs)
    hub.start()
    try:
        yield hub
    finally:
        hub.close()


class Changes:
    """on_change recorder: the states seen, from the hub's loop thread."""

    def __init__(self) -> None:
        self.hub: McpHub | None = None
        self.server = "home"
        self.states: list[str] = []
        self._lock = threading.Lock()

    def __call__(self) -> None:
        assert self.hub is not None
        with self._lock:
            self.states.append(self.hub.state(self.server))

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.states)


# ---- the HTTP server ----------------------------------------------------------------------


@dataclass
class HttpServer:
    url: str
    token: str
    calls: Path
    proc: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    token = make_key()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    calls = tmp_path / "http-calls.jsonl"
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.mcp_servers",
            "http",
            "--port",
            str(port),
            "--token-file",
            str(token_file),
            "--calls",
            str(calls),
        ],
        cwd=REPO,
    )

    def listening() -> bool:
        assert proc.poll() is None, "the HTTP test server exited"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        return False

    try:
        wait_until(listening, "the HTTP test server to listen")
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", token, calls, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ---- specs --------------------------------------------------------------------------------


def test_spec_checks_and_hides_the_token() -> None:
    token = make_key()
    spec = McpServerSpec("ha", url="https://ha.local/mcp_server/sse", token=token)
    assert_no_secret(repr(spec) + str(spec), token)
    with pytest.raises(ValueError, match="exactly one"):
        McpServerSpec("x")
    with pytest.raises(ValueError, match="exactly one"):
        McpServerSpec("x", url="https://a/mcp", command=("/bin/true",))
    with pytest.raises(ValueError, match="absolute"):
        McpServerSpec("x", command=("true",))
    with pytest.raises(ValueError, match="plain_http") as raised:
        McpServerSpec("x", url="http://a/mcp", token=token)
    assert_no_secret(str(raised.value), token)
    McpServerSpec("x", url="http://a/mcp", token=token, plain_http=True)


# ---- stdio --------------------------------------------------------------------------------


def test_stdio_lists_tools_and_calls_them(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    with hub_running([stdio_spec(tmp_path)]) as hub:
        assert hub.wait_ready(WAIT_S) == {"home": "connected"}
        tools = {t.name: t for t in hub.tools("home")}
        assert {"HassTurnOn", "GetLiveContext", "echo", "slow", "light.turn_on"} <= set(tools)
        assert all(isinstance(t, McpTool) and t.server == "home" for t in tools.values())
        assert tools["GetLiveContext"].read_only is True
        assert tools["echo"].read_only is False and tools["HassTurnOn"].read_only is False
        assert tools["HassTurnOn"].description.startswith("Turns on")
        schema = tools["HassTurnOn"].input_schema
        assert schema["required"] == ["name"]
        assert "$defs" in schema
        assert {"type": "null"} in schema["properties"]["area"]["anyOf"]
        assert tools["echo"].input_schema["properties"]["text"]["type"] == "string"

        assert hub.call("home", "echo", {"text": "hello"}, 10) == ("ok", "hello")
        assert hub.call("home", "light.turn_on", {"entity_id": "light.kitchen"}, 10) == (
            "ok",
            "light.kitchen on",
        )
        assert hub.call("home", "snapshot", {}, 10) == ("ok", "[image/png, 12 KB]")
        outcome, text = hub.call("home", "fail", {"reason": "no such device"}, 10)
        assert outcome == "error" and "no such device" in text
        long = "x" * 10_000
        outcome, text = hub.call("home", "echo", {"text": long}, 10)
        assert outcome == "ok" and len(text) == 4096 and text.startswith("xxx")

        started = time.monotonic()
        outcome, text = hub.call("home", "slow", {"seconds": 20}, 0.5)
        assert outcome == "timeout" and "slow" in text
        assert time.monotonic() - started < 5
        assert hub.call("home", "echo", {"text": "still there"}, 10) == ("ok", "still there")

        assert hub.call("nowhere", "echo", {"text": "x"}, 10)[0] == "error"
    assert echo_texts(calls) == ["hello", long, "still there"]
    assert [c["tool"] for c in read_calls(calls)].count("slow") == 1


def test_a_tool_list_change_is_followed(tmp_path: Path) -> None:
    changes = Changes()
    with hub_running([stdio_spec(tmp_path)], on_change=changes) as hub:
        changes.hub = hub
        assert hub.wait_ready(WAIT_S) == {"home": "connected"}
        seen = len(changes.seen())
        assert hub.call("home", "add_tool", {"name": "HassNewThing"}, 10)[0] == "ok"
        wait_until(
            lambda: "HassNewThing" in {t.name for t in hub.tools("home")}, "the new tool listed"
        )
        assert len(changes.seen()) > seen
        assert hub.call("home", "HassNewThing", {}, 10) == ("ok", "I am HassNewThing")


def test_stdio_server_killed_is_down_then_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="omnid.mcp")
    calls, pid_file, hold = tmp_path / "calls.jsonl", tmp_path / "pid", tmp_path / "hold"
    spec = stdio_spec(tmp_path, "--pid-file", str(pid_file), "--hold-file", str(hold))
    changes = Changes()
    with hub_running([spec], on_change=changes) as hub:
        changes.hub = hub
        assert hub.wait_ready(WAIT_S) == {"home": "connected"}
        first = int(pid_file.read_text())
        assert hub.call("home", "echo", {"text": "before"}, 10) == ("ok", "before")

        hold.touch()  # restarts fail (exit at once) until the file is gone
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: hub.state("home").startswith("down"), "the server to be down")
        assert hub.state("home") == "down: server exited"
        assert hub.tools("home") == []

        started = time.monotonic()
        outcome, text = hub.call("home", "echo", {"text": "during"}, 10)
        assert outcome == "error" and "not connected" in text and "home" in text
        assert time.monotonic() - started < 1.0

        hold.unlink()
        wait_until(lambda: hub.state("home") == "connected", "the hub to reconnect")
        assert int(pid_file.read_text()) != first
        assert hub.call("home", "echo", {"text": "after"}, 10) == ("ok", "after")

    assert echo_texts(calls) == ["before", "after"]  # "during" never reached a server
    states = changes.seen()
    assert states[0] == "connected" and states[-1] == "connected"
    assert "down: server exited" in states
    warnings = [r for r in caplog.records if r.name == "omnid.mcp" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "home" in warnings[0].getMessage()
    assert any("is back" in r.getMessage() for r in caplog.records if r.name == "omnid.mcp")


def test_stdio_child_gets_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = make_key()
    monkeypatch.setenv("DASHSCOPE_API_KEY", key)
    monkeypatch.setenv("OMNID_MCP_TOKEN", key)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/omnid.service")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    dump = tmp_path / "env.json"
    with hub_running([stdio_spec(tmp_path, "--env-dump", str(dump))]) as hub:
        assert hub.wait_ready(WAIT_S) == {"home": "connected"}
        env = json.loads(dump.read_text())
    assert env == {"PATH": CHILD_PATH, "LANG": "C.UTF-8", "TZ": "Europe/Berlin"}
    assert not [k for k in env if any(w in k for w in ("DASHSCOPE", "TOKEN", "CREDENTIALS"))]
    assert_no_secret(dump.read_text(), key)


def test_close_leaves_no_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hub = McpHub([stdio_spec(tmp_path, "--pid-file", str(pid_file))])
    hub.start()
    try:
        assert hub.wait_ready(WAIT_S) == {"home": "connected"}
        pid = int(pid_file.read_text())
        assert running(pid)
        # a call in flight when the hub closes
        result: list[tuple[str, str]] = []
        caller = threading.Thread(
            target=lambda: result.append(hub.call("home", "slow", {"seconds": 20}, 15))
        )
        caller.start()
        wait_until(
            lambda: "slow" in [c["tool"] for c in read_calls(tmp_path / "calls.jsonl")],
            "the slow call to reach the server",
        )
    finally:
        started = time.monotonic()
        hub.close()
        closed_in = time.monotonic() - started
    assert closed_in < 5
    caller.join(5)
    assert result and result[0][0] == "error"
    wait_until(lambda: not running(pid), "the stdio server to be gone", timeout_s=5)
    assert not [t for t in threading.enumerate() if t.name == "omnid-mcp"]
    assert hub.call("home", "echo", {"text": "x"}, 5)[0] == "error"


def test_close_kills_a_server_that_will_not_stop(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hub = McpHub([stdio_spec(tmp_path, "--pid-file", str(pid_file), "--stubborn")])
    hub.start()
    try:
        assert hub.wait_ready(WAIT_S) == {"home": "connected"}
        pid = int(pid_file.read_text())
    finally:
        started = time.monotonic()
        hub.close(timeout_s=1.0)
        closed_in = time.monotonic() - started
    assert closed_in < 3
    wait_until(lambda: not running(pid), "the stubborn server to be gone", timeout_s=5)


# ---- Streamable HTTP ----------------------------------------------------------------------


def test_http_with_the_right_token(http_server: HttpServer) -> None:
    spec = McpServerSpec("ha", url=http_server.url, token=http_server.token, plain_http=True)
    with hub_running([spec]) as hub:
        assert hub.wait_ready(WAIT_S) == {"ha": "connected"}
        tools = {t.name: t for t in hub.tools("ha")}
        assert tools["GetLiveContext"].read_only is True
        assert hub.call("ha", "HassTurnOn", {"name": "kitchen light", "area": "kitchen"}, 10) == (
            "ok",
            "Turned on kitchen light in kitchen",
        )
        assert hub.call("ha", "echo", {"text": "over http"}, 10) == ("ok", "over http")
    assert [c["tool"] for c in read_calls(http_server.calls)] == ["HassTurnOn", "echo"]


def test_http_with_a_wrong_token_is_refused_and_quiet(
    http_server: HttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and httpx's included
    for chatty in ("httpx", "httpcore", "mcp"):
        caplog.set_level(logging.DEBUG, logger=chatty)
    wrong = make_key()
    spec = McpServerSpec("ha", url=http_server.url, token=wrong, plain_http=True)
    with hub_running([spec]) as hub:
        states = hub.wait_ready(WAIT_S)
        assert states["ha"].startswith("refused: ") and "401" in states["ha"]
        assert hub.tools("ha") == []
        outcome, text = hub.call("ha", "echo", {"text": "x"}, 10)
        assert outcome == "error" and "not connected" in text
    seen = "\n".join(
        [caplog.text, repr(spec), str(states), text]
        + [r.getMessage() for r in caplog.records]
        + [repr(r.args) for r in caplog.records]
    )
    assert_no_secret(seen, wrong)
    warnings = [r for r in caplog.records if r.name == "omnid.mcp" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "refused" in warnings[0].getMessage()
    assert read_calls(http_server.calls) == []


def test_http_server_lost_mid_session(http_server: HttpServer) -> None:
    spec = McpServerSpec("ha", url=http_server.url, token=http_server.token, plain_http=True)
    with hub_running([spec]) as hub:
        assert hub.wait_ready(WAIT_S) == {"ha": "connected"}
        assert hub.call("ha", "echo", {"text": "one"}, 10) == ("ok", "one")
        http_server.proc.kill()
        http_server.proc.wait(10)
        # HTTP has no EOF to watch: the next call finds out, fails (never retried), and the
        # hub marks the server down
        outcome, _text = hub.call("ha", "echo", {"text": "two"}, 10)
        assert outcome == "error"
        wait_until(lambda: hub.state("ha").startswith("down: "), "the server to be down")
        assert hub.call("ha", "echo", {"text": "three"}, 10)[0] == "error"
    assert echo_texts(http_server.calls) == ["one"]


def test_http_server_not_there(tmp_path: Path) -> None:
    spec = McpServerSpec("ha", url=f"http://127.0.0.1:{_free_port()}/mcp", plain_http=True)
    with hub_running([spec]) as hub:
        assert hub.wait_ready(WAIT_S) == {"ha": "down: connection refused"}
        assert hub.call("ha", "echo", {"text": "x"}, 10)[0] == "error"
