"""Function calling end to end: the daemon with `wav:` devices against `omnid simulate`.

The simulator plays the model: told which tool a turn calls (`--call`, or a `--script` entry per
answered turn), it sends the call in the documented event order, checks our outputs and the
`response.create` order, and then speaks an answer that quotes the tool's output and echoes the
user's words. What is asserted is what a user and an operator would see: the events on the wire,
the audio in the speaker file, the `turn` and `tool` journal records, the volume saved in the
state directory, and what the owner's commands left on disk.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omnid.usage_command import run as usage_run
from tests.harness import (
    Daemon,
    Simulator,
    make_key,
    wav_devices,
    write_config,
    write_wav,
)
from tests.test_safety_device import earcon_times
from tests.test_turn_wav import IN_RATE, best_correlation, read_wav, speech

TALK_S = 1.2


def events(sim: Simulator) -> list[tuple[str, dict[str, Any]]]:
    return [(r["dir"], r["event"]) for r in sim.wire() if isinstance(r.get("event"), dict)]


def index(wire: list[tuple[str, dict[str, Any]]], direction: str, kind: str, **match: Any) -> int:
    """Where the first `kind` event in `direction` whose fields match is, on the wire."""
    for i, (d, e) in enumerate(wire):
        if d == direction and e.get("type") == kind:
            item = e.get("item") or e.get("response") or {}
            if all(e.get(k, item.get(k)) == v for k, v in match.items()):
                return i
    raise AssertionError(f"no {direction} {kind} {match} on the wire")


def response_audio(wire: list[tuple[str, dict[str, Any]]], response_id: str) -> np.ndarray:
    pcm = b"".join(
        base64.b64decode(e["delta"])
        for d, e in wire
        if d == "send" and e["type"] == "response.audio.delta" and e["response_id"] == response_id
    )
    return np.frombuffer(pcm, "<i2").astype(np.float64)


def tools_config(tmp: Path, body: str, *audio: str) -> str:
    return wav_devices(tmp, "earcons = false", 'echo_guard = "off"', *audio) + body


def start(
    tmp: Path,
    extra: str,
    *sim_flags: str,
    mic: np.ndarray | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Simulator, Daemon]:
    key = make_key()
    write_wav(tmp / "mic.wav", speech(90.0) if mic is None else mic)
    sim = Simulator(tmp, key, *sim_flags)
    config = write_config(tmp, sim.url, key, extra)
    daemon = Daemon(tmp, config, key, STATE_DIRECTORY=str(tmp / "state"), **(env or {}))
    daemon.wait_ready()
    return sim, daemon


def talk(daemon: Daemon, turns: int, timeout: float = 30.0) -> dict[str, str]:
    """One push-to-talk turn of continuous speech; its `turn` record (the `turns`-th)."""
    assert daemon.ctl("press")["state"] == "listening"
    time.sleep(TALK_S)
    daemon.ctl("release")
    return daemon.wait_record("turn", count=turns, timeout=timeout)[turns - 1]


def tool_records(daemon: Daemon) -> list[dict[str, str]]:
    return daemon.records("tool")


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# ---------------------------------------------------------------------------- set_volume


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["manual", "vad"])
def test_set_volume_call_then_the_spoken_answer(tmp_path: Path, mode: str) -> None:
    """A turn whose first response calls `set_volume`: the output goes out after that
    response's `response.done`, then exactly one `response.create`; the volume is in effect and
    saved; the answer that follows is played through the speaker — in both modes."""
    mic = None
    if mode == "vad":  # one utterance, then silence, for the service's VAD to end the turn
        words = speech(1.5)
        mic = np.concatenate([np.zeros(IN_RATE, np.int16), words, np.zeros(30 * IN_RATE, np.int16)])
    extra = tools_config(tmp_path, f'[session]\nmode = "{mode}"\n[tools]\nenabled = true\n')
    extra += "[log]\ntranscripts = true\n"
    sim, daemon = start(tmp_path, extra, "--call", 'set_volume={"level": 30}', mic=mic)
    try:
        turn = talk(daemon, 1) if mode == "manual" else daemon.wait_record("turn", timeout=30)[0]
        volume = daemon.ctl("volume")
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0
    assert turn["OMNID_OUTCOME"] == "answered"
    wire = events(sim)
    update = wire[index(wire, "recv", "session.update")][1]["session"]
    names = ["get_time", "set_volume", "set_timer", "cancel_timer", "list_timers"]
    assert [t["function"]["name"] for t in update["tools"]] == names  # the default built-ins
    assert all(set(t) == {"type", "function"} and t["type"] == "function" for t in update["tools"])
    level = update["tools"][1]["function"]["parameters"]["properties"]["level"]
    assert (level["type"], level["minimum"], level["maximum"]) == ("integer", 0, 100)
    assert not {"tool_choice", "parallel_tool_calls"} & set(update)
    called = index(wire, "send", "response.function_call_arguments.done", name="set_volume")
    call_id, calling = wire[called][1]["call_id"], wire[called][1]["response_id"]
    done = index(wire, "send", "response.done", id=calling)
    output = index(wire, "recv", "conversation.item.create", call_id=call_id)
    assert called < done < output
    assert json.loads(wire[output][1]["item"]["output"]) == {"volume": 30}
    creates = [i for i, (d, e) in enumerate(wire) if d == "recv" and e["type"] == "response.create"]
    assert len([i for i in creates if i > output]) == 1
    answer = [e for d, e in wire[output:] if d == "send" and e["type"] == "response.created"]
    final = answer[0]["response"]["id"]
    assert turn["OMNID_RESPONSE"] == final
    assert '{"volume": 30}' in turn["OMNID_ASSISTANT_TEXT"]  # the answer quotes the tool's output
    score = best_correlation(read_wav(tmp_path / "spk.wav"), response_audio(wire, final))
    print(f"\n{mode}: the answer after set_volume through the speaker: correlation {score:.3f}")
    assert score > 0.9
    assert volume["volume"] == 30
    saved = json.loads((tmp_path / "state" / "volume.json").read_text())
    assert saved["percent"] == 30
    [record] = tool_records(daemon)
    assert record["OMNID_TOOL"] == "set_volume" and record["OMNID_OUTCOME"] == "ok"
    assert record["OMNID_CALL_ID"] == call_id and float(record["OMNID_DURATION_MS"]) >= 0


# ---------------------------------------------------------------------------- command tools

SCRIPT_TURNS = [  # (what the model calls, the tool records it must leave)
    ([{"name": "relay", "arguments": {"state": "on"}}], ["ok"]),
    ([{"name": "relay", "arguments": {"state": "explode"}}], ["refused"]),  # outside its enum
    ([{"name": "greet", "arguments": {"name": "-rf"}}], ["refused"]),  # an option, not a name
    ([{"name": "unlock", "arguments": {}, "force": True}], ["refused"]),  # never declared
    ([{"name": "relay", "arguments_raw": '{"state": "on"'}], ["refused"]),  # malformed JSON
    ([{"name": "hang", "arguments": {}}], ["timeout"]),
    (
        [
            {"name": "relay", "arguments": {"state": "off"}},
            {"name": "greet", "arguments": {"name": "bob"}},
            {"name": "relay", "arguments": {"state": "on"}},  # past max_calls_per_turn = 2
        ],
        ["ok", "ok", "refused"],
    ),
]


@pytest.mark.timeout(150)
def test_command_tools_run_validated_and_nothing_else_runs(tmp_path: Path) -> None:
    """The owner's commands: a valid call runs with its argument as one argv element and an
    environment without the key or any token; an argument outside its enum, a leading `-`, an
    unknown tool and malformed JSON run nothing; a command that hangs is killed with its child
    at its timeout; the call past `max_calls_per_turn` is refused. Every turn still ends in a
    spoken answer that tells the model's side of it."""
    relay = write_script(
        tmp_path / "relay",
        'd=$(dirname "$0")\necho "$@" >> "$d/relay.txt"\nenv > "$d/env.txt"\necho "relay $1"\n',
    )
    greet = write_script(tmp_path / "greet", 'echo "$1" >> "$(dirname "$0")/greet.txt"\n')
    hang = write_script(
        tmp_path / "hang",
        'd=$(dirname "$0")\nsleep 60 &\necho $! > "$d/child.pid"\necho $$ > "$d/leader.pid"\n'
        "sleep 60\n",
    )
    (tmp_path / "script.json").write_text(json.dumps([{"calls": c} for c, _ in SCRIPT_TURNS]))
    body = f"""[tools]
enabled = true
builtin = []
max_calls_per_turn = 2
[[tools.command]]
name = "relay"
description = "Switch the lamp relay"
argv = ["{relay}", "{{state}}"]
confirm = "none"
[tools.command.parameters.state]
type = "string"
enum = ["on", "off"]
[[tools.command]]
name = "greet"
description = "Greet someone by name"
argv = ["{greet}", "{{name}}"]
confirm = "none"
[tools.command.parameters.name]
type = "string"
[[tools.command]]
name = "hang"
description = "A command that never ends"
argv = ["{hang}"]
confirm = "none"
timeout_s = 1.5
[log]
transcripts = true
"""
    key_dir = tmp_path / "creds"
    key_dir.mkdir()
    secret_env = {"CREDENTIALS_DIRECTORY": str(key_dir), "HOME_ASSISTANT_TOKEN": "tok-" + "9" * 20}
    sim, daemon = start(
        tmp_path,
        tools_config(tmp_path, body),
        "--script",
        str(tmp_path / "script.json"),
        env=secret_env,
    )
    turns = []
    try:
        for n in range(1, len(SCRIPT_TURNS) + 1):
            turns.append(talk(daemon, n))
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0
    assert [t["OMNID_OUTCOME"] for t in turns] == ["answered"] * len(SCRIPT_TURNS)
    records = tool_records(daemon)
    for n, (_, expected) in enumerate(SCRIPT_TURNS, 1):  # refusals are recorded at once
        got = [r["OMNID_OUTCOME"] for r in records if r["OMNID_TURN"] == str(n)]
        assert sorted(got) == sorted(expected), f"turn {n}"
    assert len(records) == sum(len(expected) for _, expected in SCRIPT_TURNS)
    assert (tmp_path / "relay.txt").read_text().split() == ["on", "off"]
    assert (tmp_path / "greet.txt").read_text().split() == ["bob"]
    env = (tmp_path / "env.txt").read_text()
    assert daemon.secret not in env and "tok-9999" not in env and "CREDENTIALS" not in env
    assert "DASHSCOPE" not in env and "NOTIFY_SOCKET" not in env
    for name in ("leader.pid", "child.pid"):
        pid = int((tmp_path / name).read_text())
        assert not alive(pid), f"{name} {pid} survived the timeout"
    said = [t["OMNID_ASSISTANT_TEXT"] for t in turns]
    print("\n" + "\n".join(said))
    assert "relay on" in said[0]
    assert "must be one of on, off" in said[1]
    assert "must not start with '-'" in said[2] and "not valid JSON" in said[4]
    assert "unlock" in said[3]
    assert "hang" in said[5] and "without finishing" in said[5]
    assert "relay off" in said[6] and "at most 2 calls" in said[6]


# ---------------------------------------------------------------------------- confirmation


def journal_export(path: Path, records: list[dict[str, str]]) -> Path:
    """The records as `journalctl -o json` would give them (what `omnid usage --file` reads)."""
    now = int(time.time() * 1e6)
    lines = [
        json.dumps({"__CURSOR": f"c{i}", "__REALTIME_TIMESTAMP": str(now + i), **r}) + "\n"
        for i, r in enumerate(records)
    ]
    path.write_text("".join(lines))
    return path


@pytest.mark.timeout(90)
def test_a_command_that_needs_a_press_runs_only_when_pressed(tmp_path: Path) -> None:
    """`confirm = "press"`: the box asks (the confirm earcon), and the command runs only if the
    button (here `omnid ctl press`) comes within `tools.confirm_s`; that press starts no turn.
    Without it nothing runs and the answer says why. The `tool` records carry no arguments or
    output by default, and `omnid usage` counts the calls per tool."""
    garage = write_script(tmp_path / "garage", 'echo "$1" >> "$(dirname "$0")/garage.txt"\n')
    body = f"""[tools]
enabled = true
builtin = []
confirm_s = 2.0
[[tools.command]]
name = "garage"
description = "Open or close the garage door"
argv = ["{garage}", "{{action}}"]
confirm = "press"
[tools.command.parameters.action]
type = "string"
enum = ["open", "close"]
"""
    extra = wav_devices(tmp_path, "earcons = true", 'echo_guard = "off"') + body
    sim, daemon = start(tmp_path, extra, "--call", 'garage={"action": "open"}')
    try:
        assert daemon.ctl("press")["state"] == "listening"
        time.sleep(TALK_S)
        daemon.ctl("release")
        daemon.wait_for(lambda s: "waits for a press to confirm" in s, timeout=20)
        confirmed = daemon.ctl("press")
        first = daemon.wait_record("turn", count=1, timeout=20)[0]
        ran_after_press = (tmp_path / "garage.txt").read_text().split()
        second = talk(daemon, 2)
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0
    assert confirmed["ok"] and confirmed["state"] == "thinking"  # no new turn
    assert first["OMNID_OUTCOME"] == "answered" and second["OMNID_OUTCOME"] == "answered"
    assert ran_after_press == ["open"]
    assert (tmp_path / "garage.txt").read_text().split() == ["open"]  # not again
    wire = events(sim)
    transcripts = [
        e["transcript"] for d, e in wire if e["type"] == "response.audio_transcript.done"
    ]
    assert "nobody pressed it within 2 seconds" in transcripts[-1]
    records = tool_records(daemon)
    assert [r["OMNID_OUTCOME"] for r in records] == ["ok", "unconfirmed"]
    assert all("OMNID_ARGUMENTS" not in r and "OMNID_OUTPUT" not in r for r in records)
    asked = earcon_times(read_wav(tmp_path / "spk.wav"), "confirm")
    assert len(asked) == 2, asked
    export = journal_export(tmp_path / "export.json", daemon.records())
    out, err = io.StringIO(), io.StringIO()
    assert usage_run(tmp_path / "omnid.toml", export, None, None, True, out, err) == 0, err
    report = json.loads(out.getvalue())
    assert report["total"]["tools"] == {"garage": {"calls": 2, "ok": 1, "unconfirmed": 1}}


# ---------------------------------------------------------------------------- interruptions


@pytest.mark.timeout(90)
def test_a_tap_while_a_command_runs_supersedes_its_call(tmp_path: Path) -> None:
    """A tap while the called command still runs: the call gets a "superseded" output and no
    `response.create` follows (nothing more is said, no dangling call in the model's history);
    the turn is cancelled. The command itself is left to finish (README: a half-run command
    leaves the house in a state nobody asked for)."""
    slow = write_script(
        tmp_path / "slow",
        'd=$(dirname "$0")\necho start >> "$d/slow.txt"\nsleep 2\necho end >> "$d/slow.txt"\n',
    )
    body = f"""[tools]
enabled = true
builtin = []
[[tools.command]]
name = "slow"
description = "Something that takes a while"
argv = ["{slow}"]
confirm = "none"
"""
    sim, daemon = start(tmp_path, tools_config(tmp_path, body), "--call", "slow")
    try:
        assert daemon.ctl("press")["state"] == "listening"
        time.sleep(TALK_S)
        daemon.ctl("release")
        deadline = time.monotonic() + 20
        while not (tmp_path / "slow.txt").exists():
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.05)
        daemon.ctl("tap")
        turn = daemon.wait_record("turn", timeout=10)[0]
        deadline = time.monotonic() + 10
        while "end" not in (tmp_path / "slow.txt").read_text():
            assert time.monotonic() < deadline, "the command did not finish"
            time.sleep(0.05)
        time.sleep(1.0)  # anything the daemon would still send has been sent
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0
    assert turn["OMNID_OUTCOME"] == "cancelled"
    wire = events(sim)
    called = index(wire, "send", "response.function_call_arguments.done", name="slow")
    output = index(wire, "recv", "conversation.item.create", call_id=wire[called][1]["call_id"])
    assert "superseded" in wire[output][1]["item"]["output"]
    assert [e["type"] for d, e in wire[output:] if d == "recv"].count("response.create") == 0
    assert not [e for d, e in wire[output:] if d == "send" and e["type"] == "response.created"]
    assert [r["OMNID_OUTCOME"] for r in tool_records(daemon)] == ["superseded"]
    assert (tmp_path / "slow.txt").read_text().split() == ["start", "end"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("runs_s", [0.0, 2.0], ids=["done-before-reconnect", "still-running"])
def test_a_call_replayed_after_a_drop_runs_once(tmp_path: Path, runs_s: float) -> None:
    """The connection drops right after the calling response's `response.done`, before our
    output can arrive. The turn is asked again in the next session, and the service calls the
    same tool with the same arguments under a new call id: the command has run once (its
    result, stored or still awaited, answers the new id) and the answer is spoken."""
    once = write_script(
        tmp_path / "once",
        f'echo "$1" >> "$(dirname "$0")/once.txt"\nsleep {runs_s}\necho "ran for $1"\n',
    )
    body = f"""[tools]
enabled = true
builtin = []
[[tools.command]]
name = "once"
description = "Something that must happen once"
argv = ["{once}", "{{what}}"]
confirm = "none"
[tools.command.parameters.what]
type = "string"
"""
    flags = ("--call", 'once={"what": "feed the cat"}', "--drop-after-call")
    sim, daemon = start(tmp_path, tools_config(tmp_path, body), *flags, "--faulty-connections", "1")
    try:
        turn = talk(daemon, 1, timeout=40)
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0
    assert turn["OMNID_OUTCOME"] == "retried"
    wire = events(sim)
    calls = [
        e for d, e in wire if d == "send" and e["type"] == "response.function_call_arguments.done"
    ]
    assert len(calls) == 2 and calls[0]["call_id"] != calls[1]["call_id"]
    assert calls[0]["arguments"] == calls[1]["arguments"]
    outputs = [
        e["item"] for d, e in wire if d == "recv" and e["type"] == "conversation.item.create"
    ]
    assert [o["call_id"] for o in outputs] == [calls[1]["call_id"]]  # the first died unanswered
    assert outputs[0]["output"] == "ran for feed the cat"
    assert (tmp_path / "once.txt").read_text().splitlines() == ["feed the cat"]
    assert [r["OMNID_OUTCOME"] for r in tool_records(daemon)] == ["ok"]
    final = [e for d, e in wire if d == "send" and e["type"] == "response.created"][-1]
    assert turn["OMNID_RESPONSE"] == final["response"]["id"]
    score = best_correlation(
        read_wav(tmp_path / "spk.wav"), response_audio(wire, final["response"]["id"])
    )
    assert score > 0.9


# ---------------------------------------------------------------- get_time, `omnid tools`


@pytest.mark.timeout(60)
def test_get_time_answers_from_the_box_clock(tmp_path: Path) -> None:
    """`get_time` gives the local date, time, weekday and zone, and says whether the clock is
    synchronised (a Pi has no battery clock); the answer quotes it."""
    extra = tools_config(tmp_path, "[tools]\nenabled = true\n")
    sim, daemon = start(tmp_path, extra, "--call", "get_time")
    try:
        before = dt.datetime.now().astimezone()
        turn = talk(daemon, 1)
        after = dt.datetime.now().astimezone()
    finally:
        code = daemon.stop()
        sim.stop()
    assert code == 0 and turn["OMNID_OUTCOME"] == "answered"
    wire = events(sim)
    [item] = [e["item"] for d, e in wire if d == "recv" and e["type"] == "conversation.item.create"]
    told = json.loads(item["output"])
    assert set(told) == {"date", "time", "weekday", "time_zone", "utc_offset", "clock_synchronised"}
    assert told["date"] in {before.date().isoformat(), after.date().isoformat()}
    assert told["weekday"] in {before.strftime("%A"), after.strftime("%A")}
    assert told["time"] in {before.strftime("%H:%M"), after.strftime("%H:%M")}
    assert told["time_zone"] == before.tzname()
    assert told["clock_synchronised"] in (True, False, None)


def omnid_tools(tmp: Path, body: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "tools.toml"
    config.write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "omnid.cli", "tools", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_omnid_tools_lists_what_the_model_sees_and_what_cannot_run(tmp_path: Path) -> None:
    relay = write_script(tmp_path / "relay", "echo on\n")
    body = f"""[tools]
enabled = true
builtin = ["get_time", "set_volume"]
[[tools.command]]
name = "relay"
description = "Switch the lamp relay"
argv = ["{relay}"]
confirm = "press"
[[tools.command]]
name = "vacuum"
description = "Start the vacuum robot"
argv = ["{tmp_path / "not-installed"}"]
confirm = "none"
[[tools.command]]
name = "blinds"
description = "Close the blinds"
argv = ["{relay}"]
confirm = "none"
modes = ["vad"]
"""
    done = omnid_tools(tmp_path, body)
    print(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("get_time (builtin")
    assert lines[2].startswith("set_volume (builtin; level)")
    assert lines[4].startswith("relay (command; no arguments; needs a press to confirm)")
    assert lines[5].strip() == "reachable"
    assert lines[6].startswith("vacuum (command")
    assert "NOT reachable" in lines[7] and "not-installed does not exist" in lines[7]
    assert lines[8] == "not in mode 'manual': blinds"  # hands-free only: not declared here
    relay_only = body.split('[[tools.command]]\nname = "vacuum"')[0]
    assert omnid_tools(tmp_path, relay_only).returncode == 0
    off = omnid_tools(tmp_path, "")
    assert off.returncode == 0 and "tools are off" in off.stdout
