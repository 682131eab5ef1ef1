"""MCP servers as the box's tools, end to end: the daemon (`wav:` devices) against `omnid
simulate`, with two real MCP servers written with the official SDK (`tests/mcp_servers.py`): one
on stdio that the daemon starts, one on Streamable HTTP that demands a bearer token.

Asserted is what the owner would see: the tools in `session.update` (mapped names, schemas the
service takes), what reached each server (its calls file), the function outputs and the spoken
reply, the journal, `omnid tools`, and that the token shows up nowhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from omnid.config_schema import MCP_REQUIREMENT
from tests.harness import ROOT, NotifySocket, make_key
from tests.test_mcp_client import SERVERS, HttpServer, http_server, read_calls, wait_until
from tests.test_tools_e2e import events, start, talk, tool_records, tools_config

__all__ = ["http_server"]  # a fixture, used by name


def mcp_config(tmp: Path, http: HttpServer | None, token_file: Path | None, **stdio: str) -> str:
    command = [sys.executable, str(SERVERS), "stdio", "--calls", str(tmp / "calls.jsonl")]
    command += ["--pid-file", str(tmp / "stdio.pid"), "--env-dump", str(tmp / "stdio-env.json")]
    body = f"""[tools]
enabled = true
builtin = []
confirm_s = 3.0
[[tools.mcp]]
name = "local"
command = {json.dumps(command)}
allow = ["echo", "light.turn_on", "GetLiveContext"]
confirm = "{stdio.get("confirm", "press")}"
"""
    if http is not None:
        body += f"""[[tools.mcp]]
name = "home"
url = "{http.url}"
token_file = "{token_file}"
plain_http = true
allow = ["HassTurnOn", "GetLiveContext"]
confirm = "none"
"""
    return tools_config(tmp, body + "[log]\ntranscripts = true\n")


def declared(sim_wire: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The tools of the last `session.update`, by name."""
    updates = [e for d, e in sim_wire if d == "recv" and e["type"] == "session.update"]
    return {t["function"]["name"]: t["function"] for t in updates[-1]["session"].get("tools", [])}


def outputs(wire: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [
        e["item"]["output"]
        for d, e in wire
        if d == "recv" and e["type"] == "conversation.item.create"
    ]


@pytest.mark.timeout(150)
def test_mcp_tools_are_offered_called_and_answered(tmp_path: Path, http_server: HttpServer) -> None:
    """Both servers' allowed tools appear in `session.update` under mapped names with schemas
    the service takes; a scripted call reaches the server with the model's arguments and its
    answer is the function output and in the spoken reply; a tool not annotated read-only waits
    for the press; a disallowed tool is never offered and never run, even when named."""
    credentials = tmp_path / "credentials"  # as systemd's LoadCredential= hands it over
    credentials.mkdir()
    (credentials / "home-token").write_text(http_server.token + "\n")
    script = [
        {"calls": [{"name": "home__HassTurnOn", "arguments": {"name": "kitchen light"}}]},
        {"calls": [{"name": "local__GetLiveContext", "arguments": {}}]},
        {"calls": [{"name": "local__echo", "arguments": {"text": "pressed"}}]},
        {"calls": [{"name": "local__fail", "arguments": {}, "force": True}]},
    ]
    (tmp_path / "script.json").write_text(json.dumps(script))
    sim, daemon = start(
        tmp_path,
        mcp_config(tmp_path, http_server, Path("home-token")),  # a credential's name
        "--script",
        str(tmp_path / "script.json"),
        env={"CREDENTIALS_DIRECTORY": str(credentials)},
    )
    try:
        wait_until(
            lambda: (
                "home__HassTurnOn" in declared(events(sim))
                and "local__echo" in declared(events(sim))
            ),
            "both servers' tools in a session.update",
        )
        turns = [talk(daemon, 1), talk(daemon, 2)]
        assert daemon.ctl("press")["state"] == "listening"
        time.sleep(1.2)
        daemon.ctl("release")
        daemon.wait_for(lambda s: "waits for a press to confirm" in s, timeout=20)
        assert daemon.ctl("press")["ok"]
        turns.append(daemon.wait_record("turn", count=3, timeout=20)[2])
        turns.append(talk(daemon, 4))
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0
    assert [t["OMNID_OUTCOME"] for t in turns] == ["answered"] * 4
    wire = events(sim)
    tools = declared(wire)
    assert set(tools) == {
        "home__HassTurnOn",
        "home__GetLiveContext",
        "local__echo",
        "local__light_turn_on",
        "local__GetLiveContext",
    }
    for tool in tools.values():
        params = tool["parameters"]
        assert params["type"] == "object" and "$defs" not in json.dumps(params)
        assert "anyOf" not in json.dumps(params) or "null" not in json.dumps(params)
    assert tools["home__HassTurnOn"]["parameters"]["required"] == ["name"]
    home_calls = read_calls(http_server.calls)
    assert home_calls == [
        {"tool": "HassTurnOn", "arguments": {"name": "kitchen light", "area": None, "domain": None}}
    ]
    local_calls = read_calls(tmp_path / "calls.jsonl")
    assert [c["tool"] for c in local_calls] == ["GetLiveContext", "echo"]  # never `fail`
    said = outputs(wire)
    assert said[0] == "Turned on kitchen light"
    assert said[1].startswith("Live Context: kitchen light is off")
    assert said[2] == "pressed"
    assert "no function named 'local__fail'" in said[3]
    assert "Turned on kitchen light" in turns[0]["OMNID_ASSISTANT_TEXT"]
    assert "Live Context" in turns[1]["OMNID_ASSISTANT_TEXT"]
    records = tool_records(daemon)
    assert [(r["OMNID_TOOL"], r["OMNID_OUTCOME"]) for r in records] == [
        ("home__HassTurnOn", "ok"),
        ("local__GetLiveContext", "ok"),
        ("local__echo", "ok"),
        ("local__fail", "refused"),
    ]
    env = json.loads((tmp_path / "stdio-env.json").read_text())
    assert http_server.token not in json.dumps(env) and daemon.secret not in json.dumps(env)
    assert "CREDENTIALS_DIRECTORY" not in env
    assert http_server.token not in daemon.output()


@pytest.mark.timeout(120)
def test_a_wrong_token_leaves_that_server_out_and_the_box_talking(
    tmp_path: Path, http_server: HttpServer
) -> None:
    """A wrong token: one clear line, none of that server's tools, the other server's tools
    still work; the token appears in no output, log or journal."""
    wrong = "tok-" + make_key()
    token_file = tmp_path / "home-token"
    token_file.write_text(wrong + "\n")
    script = [{"calls": [{"name": "local__GetLiveContext", "arguments": {}}]}]
    (tmp_path / "script.json").write_text(json.dumps(script))
    notify = NotifySocket(tmp_path / "notify.sock")
    sim, daemon = start(
        tmp_path,
        mcp_config(tmp_path, http_server, token_file),
        "--script",
        str(tmp_path / "script.json"),
        env={"NOTIFY_SOCKET": str(notify.path)},
    )
    try:
        wait_until(lambda: "local__echo" in declared(events(sim)), "the stdio server's tools")
        turn = talk(daemon, 1)
        time.sleep(0.5)
    finally:
        code = daemon.stop()
        sim.stop()
        notify.close()
    assert code == 0 and turn["OMNID_OUTCOME"] == "answered"
    status = [m for _, m in notify.messages if m.startswith("STATUS=")]
    assert any("MCP home refused: HTTP 401" in m for m in status), status[-3:]
    assert not [name for name in declared(events(sim)) if name.startswith("home__")]
    refused = [line for line in daemon.lines if "home" in line and "401" in line]
    assert len(refused) == 1, refused
    assert wrong not in daemon.output()
    assert wrong not in (tmp_path / "stdio-env.json").read_text()
    assert read_calls(http_server.calls) == []


@pytest.mark.timeout(120)
def test_a_server_killed_mid_session_gets_an_error_output_not_a_crash(tmp_path: Path) -> None:
    """The stdio server dies between turns: the next call to it gets an error output (nothing
    queued for later, so nothing runs twice), the turn still ends in a spoken answer, and the
    daemon stays up; once it is back, its tools work again."""
    script = [
        {"calls": [{"name": "local__GetLiveContext", "arguments": {}}]},
        {"calls": [{"name": "local__GetLiveContext", "arguments": {}}]},
    ]
    (tmp_path / "script.json").write_text(json.dumps(script))
    sim, daemon = start(
        tmp_path,
        mcp_config(tmp_path, None, None),
        "--script",
        str(tmp_path / "script.json"),
    )
    try:
        wait_until(lambda: "local__echo" in declared(events(sim)), "the stdio server's tools")
        first = talk(daemon, 1)
        pid = int((tmp_path / "stdio.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        daemon.wait_for(lambda s: "local" in s and "down" in s, timeout=20)
        second = talk(daemon, 2)
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0 and alive
    assert [first["OMNID_OUTCOME"], second["OMNID_OUTCOME"]] == ["answered", "answered"]
    said = outputs(events(sim))
    assert said[0].startswith("Live Context")
    assert "local__GetLiveContext was not run" in said[1] and "not connected" in said[1]
    assert len(read_calls(tmp_path / "calls.jsonl")) == 1  # the second never reached it
    assert [r["OMNID_OUTCOME"] for r in tool_records(daemon)] == ["ok", "error"]


def omnid_tools(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omnid.cli", "tools", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )


@pytest.mark.timeout(150)
def test_omnid_tools_shows_each_server_and_its_tools(
    tmp_path: Path, http_server: HttpServer
) -> None:
    """`omnid tools`: per server its state and each tool offered (mapped name), not allowed,
    or left out; exit 0 when every configured server answers, 1 when one does not."""
    token_file = tmp_path / "home-token"
    token_file.write_text(http_server.token + "\n")
    config = tmp_path / "tools.toml"
    config.write_text(mcp_config(tmp_path, http_server, token_file))
    good = omnid_tools(config)
    print(good.stdout)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "MCP server local" in good.stdout and "MCP server home" in good.stdout
    assert "  local__light_turn_on (mcp:local; entity_id, brightness_pct; needs a press" in (
        good.stdout
    )
    assert "  fail: not allowed" in good.stdout and "  HassTurnOn: not allowed" in good.stdout
    assert "  home__GetLiveContext (mcp:home; no arguments)" in good.stdout  # read-only
    token_file.write_text("wrong-" + make_key() + "\n")
    refused = omnid_tools(config)
    print(refused.stdout)
    assert refused.returncode == 1
    assert "MCP server home" in refused.stdout and "refused" in refused.stdout
    assert http_server.token not in refused.stdout + refused.stderr


def test_without_mcp_servers_the_sdk_is_never_imported(tmp_path: Path) -> None:
    """No `[[tools.mcp]]`: nothing of the SDK is loaded (it costs ~20 MB)."""
    probe = (
        "import sys\n"
        "import omnid.cli, omnid.daemon, omnid.assembly, omnid.tools.catalog\n"
        "from omnid.config import load_config\n"
        "from omnid.tools.mcp import open_mcp\n"
        f"cfg = load_config({str(tmp_path / 'omnid.toml')!r}, require_api_key=False)\n"
        "assert open_mcp(cfg) is None\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))\n"
    )
    (tmp_path / "omnid.toml").write_text("[tools]\nenabled = true\n")
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_config_names_the_same_sdk_pin_as_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["mcp"] == [MCP_REQUIREMENT]
