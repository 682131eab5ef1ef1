"""Function calling in the simulator: scripted calls, the documented event order, strict tool
results, and the spoken follow-up — asserted on what crossed the wire (websocket-client and the
official SDK), never on the simulator's internals."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import websocket
from dashscope.audio.qwen_omni import MultiModality, OmniRealtimeConversation

from omnid.simulator import RunningSimulator, ScriptError, start_in_thread
from omnid.simulator.options import build_parser, parse_options
from tests import test_simulator
from tests.test_simulator import (
    RESPONSE_HEAD,
    append,
    connect,
    decoded_audio,
    error_of,
    manual,
    recv,
    recv_until,
    send,
    speech,
)
from tests.test_simulator_sdk import Collector

PLUS = "qwen3.5-omni-plus-realtime"
FLASH3 = "qwen3-omni-flash-realtime"
Event = dict[str, Any]
SET_VOLUME = 'set_volume={"level": 30}'
ARGS = '{"level": 30}'

make_sim = test_simulator.make_sim  # the fixture: pace 0, and it closes what `connect` opened


def tool(name: str) -> Event:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} for a test",
            "parameters": {"type": "object", "properties": {"level": {"type": "integer"}}},
        },
    }


def open_session(
    sim: RunningSimulator, model: str = PLUS, tools: tuple[str, ...] = ("set_volume",)
) -> websocket.WebSocket:
    """A manual-mode session (no input transcription) that declares `tools`."""
    ws = connect(sim, model=model)
    manual(ws, input_audio_transcription=None, tools=[tool(n) for n in tools])
    return ws


def ask(ws: websocket.WebSocket, pcm: np.ndarray) -> list[Event]:
    """Commit `pcm`, create a response, return its events (up to response.done)."""
    commit(ws, pcm)
    send(ws, "response.create")
    return recv_until(ws, "response.done")


def commit(ws: websocket.WebSocket, pcm: np.ndarray) -> Event:
    append(ws, pcm)
    send(ws, "input_audio_buffer.commit")
    user = recv_until(ws, "conversation.item.created")[-1]
    assert user["item"]["role"] == "user"
    return user


def answer(ws: websocket.WebSocket, call_id: str, output: str) -> Event:
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    send(ws, "conversation.item.create", item=item)
    created = recv(ws)
    assert created["type"] == "conversation.item.created", created
    return created


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


def kinds(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


def transcript(events: list[Event]) -> str:
    return "".join(e["delta"] for e in of(events, "response.audio_transcript.delta"))


def correlation(out: np.ndarray, pcm: np.ndarray) -> float:
    expected = soxr.resample(pcm, 16000, 24000)
    n = min(len(out), len(expected))
    a, b = out[:n].astype(float), expected[:n].astype(float)
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def call_events(events: list[Event]) -> list[str]:
    """The kinds of one call's events, deltas collapsed to one entry."""
    out: list[str] = []
    for kind in kinds(events):
        if not (out and kind == out[-1] == "response.function_call_arguments.delta"):
            out.append(kind)
    return out


CALL_ORDER = [
    "response.output_item.added",
    "conversation.item.created",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
]


# -- (a) the round trip ---------------------------------------------------------------------------


def test_declared_tool_is_called_in_the_documented_order_then_answered(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    ws = open_session(make_sim(call=[SET_VOLUME]))
    pcm = speech(1.0)
    user = commit(ws, pcm)
    send(ws, "response.create")
    events = recv_until(ws, "response.done")
    assert call_events(events) == ["response.created", *CALL_ORDER, "response.done"]
    response_id = events[0]["response"]["id"]
    added, created, *deltas = events[1:-3]
    args_done, item_done, done = events[-3], events[-2], events[-1]

    item = added["item"]
    assert added["response_id"] == response_id and added["output_index"] == 0
    assert item["object"] == "realtime.item" and item["type"] == "function_call"
    assert item["status"] == "in_progress" and item["arguments"] == ""
    assert item["name"] == "set_volume" and item["call_id"].startswith("call_")
    call_id, item_id = item["call_id"], item["id"]
    assert created["item"] == item and created["previous_item_id"] == user["item"]["id"]
    assert len(deltas) >= 2 and "".join(d["delta"] for d in deltas) == ARGS
    for event in [*deltas, args_done]:
        assert event["response_id"] == response_id and event["output_index"] == 0
        assert (event["item_id"], event["call_id"]) == (item_id, call_id)
    assert (args_done["name"], args_done["arguments"]) == ("set_volume", ARGS)
    assert json.loads(args_done["arguments"]) == {"level": 30}
    assert item_done["item"] == {**item, "status": "completed", "arguments": ARGS}
    assert done["response"]["status"] == "completed"
    assert done["response"]["output"] == [item_done["item"]]
    usage = done["response"]["usage"]
    assert usage["output_tokens_details"] == {
        "text_tokens": math.ceil(len(ARGS) / 4),
        "audio_tokens": 0,
    }
    assert usage["input_tokens_details"]["audio_tokens"] == round(1.0 * 12.5)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    output = '{"ok": true, "volume": 30}'
    assert answer(ws, call_id, output)["previous_item_id"] == item_id
    send(ws, "response.create")
    follow = recv_until(ws, "response.done")
    assert kinds(follow)[:4] == RESPONSE_HEAD
    assert not of(follow, "response.function_call_arguments.done")  # never calls again
    assert output in transcript(follow)
    assert follow[-5]["transcript"] == transcript(follow)
    out = decoded_audio(follow)
    assert correlation(out, pcm) > 0.9  # the echo of the question the call answered
    final = follow[-1]["response"]
    assert final["status"] == "completed"
    assert final["usage"]["input_tokens_details"]["text_tokens"] == math.ceil(len(output) / 4)
    assert final["usage"]["output_tokens_details"]["audio_tokens"] == round(len(out) / 24000 * 12.5)


def test_first_call_event_waits_for_first_audio_ms(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    ws = open_session(make_sim(call=["set_volume"], first_audio_ms=600))
    commit(ws, speech(0.3))
    send(ws, "response.create")
    assert recv(ws)["type"] == "response.created"
    started = time.monotonic()
    added = recv(ws)
    assert added["type"] == "response.output_item.added"
    assert time.monotonic() - started >= 0.5  # a lower bound only: robust under load
    rest = recv_until(ws, "response.done")
    assert of(rest, "response.function_call_arguments.done")[0]["arguments"] == "{}"


# -- (b) strict tool results ----------------------------------------------------------------------


def test_outputs_for_unknown_or_answered_calls_are_refused(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    ws = open_session(make_sim(call=[SET_VOLUME]))
    bogus = {"type": "function_call_output", "call_id": "call_never_issued", "output": "x"}
    send(ws, "conversation.item.create", item=bogus)
    error = error_of(ws)
    assert error["param"] == "item.call_id" and "call_never_issued" in error["message"]
    send(ws, "conversation.item.create", item={"type": "message", "role": "user"})
    assert error_of(ws)["param"] == "item.type"  # the existing check is kept

    done = ask(ws, speech(0.5))[-1]["response"]
    call_id = done["output"][0]["call_id"]
    answer(ws, call_id, "first")
    send(ws, "conversation.item.create", item={**bogus, "call_id": call_id, "output": "again"})
    error = error_of(ws)
    assert error["param"] == "item.call_id" and call_id in error["message"]
    send(ws, "response.create")  # the session is still usable: the answer comes
    follow = recv_until(ws, "response.done")
    assert "The tool said: first." in transcript(follow) and "again" not in transcript(follow)


def test_output_before_response_done_and_create_while_active_are_refused(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    """A slow response (2 s per arguments delta) leaves plenty of time to misbehave in."""
    ws = open_session(make_sim(call=[SET_VOLUME], pace=0.05))
    commit(ws, speech(0.3))
    send(ws, "response.create")
    added = recv_until(ws, "response.output_item.added")[-1]
    call_id = added["item"]["call_id"]
    send(ws, "conversation.item.create", item=output_item(call_id, "too early"))
    events = recv_until(ws, "error")
    assert "response.done" not in kinds(events)
    error = events[-1]["error"]
    assert error["param"] == "item.call_id" and error["code"] == "invalid_state"
    send(ws, "response.create")
    events = recv_until(ws, "error")
    assert events[-1]["error"]["message"] == "Conversation already has an active response"

    send(ws, "response.cancel")  # a cancelled calling response ends like a cancelled audio one
    events = recv_until(ws, "response.done")
    assert not of(events, "response.function_call_arguments.done")  # no truncated call to run
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert [i["status"] for i in done["output"]] == ["incomplete"]
    assert events[-2]["type"] == "response.output_item.done"
    assert events[-2]["item"]["status"] == "incomplete"
    assert ARGS.startswith(events[-2]["item"]["arguments"])
    send(ws, "conversation.item.create", item=output_item(call_id, "late"))
    assert error_of(ws)["param"] == "item.call_id"  # an incomplete call takes no output


def output_item(call_id: str, output: str) -> Event:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def test_response_create_needs_every_output_of_the_calling_response(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    ws = open_session(make_sim(call=[SET_VOLUME, "get_time"]), tools=("set_volume", "get_time"))
    events = ask(ws, speech(0.4))
    calls = of(events, "response.function_call_arguments.done")
    assert [c["name"] for c in calls] == ["set_volume", "get_time"]  # flag order
    assert [c["output_index"] for c in calls] == [0, 1]
    assert [i["name"] for i in events[-1]["response"]["output"]] == ["set_volume", "get_time"]
    first, second = (c["call_id"] for c in calls)
    assert first != second

    send(ws, "response.create")
    error = error_of(ws)
    assert error["code"] == "invalid_state"
    assert first in error["message"] and second in error["message"]
    answer(ws, first, "volume is 30")
    send(ws, "response.create")
    error = error_of(ws)
    assert error["code"] == "invalid_state"
    assert second in error["message"] and first not in error["message"]
    answer(ws, second, "it is noon")
    send(ws, "response.create")
    follow = recv_until(ws, "response.done")
    said = transcript(follow)
    assert "The tool said: volume is 30." in said and "The tool said: it is noon." in said
    assert follow[-1]["response"]["status"] == "completed"


def test_long_outputs_are_cut_in_the_spoken_answer(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    ws = open_session(make_sim(call=["set_volume"]))
    call_id = ask(ws, speech(0.3))[-1]["response"]["output"][0]["call_id"]
    output = "x" * 1000
    answer(ws, call_id, output)
    send(ws, "response.create")
    said = transcript(recv_until(ws, "response.done"))
    assert "x" * 299 + "…" in said and "x" * 300 not in said


# -- (c) when the model does not call -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "declared"),
    [(PLUS, ("get_time",)), (PLUS, ()), (FLASH3, ("set_volume",))],
    ids=["undeclared-name", "no-tools", "qwen3-omni-flash-never-calls"],
)
def test_plain_answer_when_the_model_would_not_call(
    make_sim: Callable[..., RunningSimulator], model: str, declared: tuple[str, ...]
) -> None:
    ws = open_session(make_sim(call=[SET_VOLUME]), model=model, tools=declared)
    pcm = speech(0.6)
    events = ask(ws, pcm)
    assert kinds(events)[:4] == RESPONSE_HEAD
    assert not of(events, "response.function_call_arguments.delta")
    done = events[-1]["response"]
    assert done["status"] == "completed" and [i["type"] for i in done["output"]] == ["message"]
    assert transcript(events) == "You said something 0.6 seconds long."
    assert correlation(decoded_audio(events), pcm) > 0.9


# -- (d) a script entry is asked again after a drop -----------------------------------------------


def test_script_entry_repeats_after_a_dropped_connection(
    make_sim: Callable[..., RunningSimulator], tmp_path: Path
) -> None:
    script = tmp_path / "turns.json"
    entry = {"calls": [{"name": "set_volume", "arguments": {"level": 30}}], "speak_first": False}
    script.write_text(json.dumps([entry, None]))
    sim = make_sim(script=str(script))

    first = open_session(sim)
    call1 = of(ask(first, speech(0.4)), "response.function_call_arguments.done")[0]
    first.close()  # before answering: the turn was never answered

    second = open_session(sim)
    events = ask(second, speech(0.4))
    call2 = of(events, "response.function_call_arguments.done")[0]
    assert (call2["name"], json.loads(call2["arguments"])) == ("set_volume", {"level": 30})
    assert call2["arguments"] == call1["arguments"]
    assert call2["call_id"] != call1["call_id"] and call2["call_id"].startswith("call_")
    answer(second, call2["call_id"], "done")
    send(second, "response.create")
    assert recv_until(second, "response.done")[-1]["response"]["status"] == "completed"

    for _ in range(2):  # entry 1 (null), then past the script's end without --call: plain
        events = ask(second, speech(0.3))
        assert [i["type"] for i in events[-1]["response"]["output"]] == ["message"]


# -- (e) arguments_raw and force ------------------------------------------------------------------


def test_arguments_raw_is_verbatim_and_force_calls_an_undeclared_name(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    raw = '{"level": 3'  # malformed on purpose: a client must survive it
    script = [
        {
            "calls": [
                {"name": "set_volume", "arguments_raw": raw},
                {"name": "ghost"},  # undeclared, not forced: a model would not call it
                {"name": "rm_rf", "arguments": {"path": "/"}, "force": True},
            ]
        }
    ]
    ws = open_session(make_sim(script=script))
    events = ask(ws, speech(0.3))
    calls = of(events, "response.function_call_arguments.done")
    assert [(c["name"], c["arguments"]) for c in calls] == [
        ("set_volume", raw),
        ("rm_rf", '{"path": "/"}'),
    ]
    for call in calls:  # the deltas of each call add up to its arguments, verbatim
        deltas = of(events, "response.function_call_arguments.delta")
        mine = [d["delta"] for d in deltas if d["call_id"] == call["call_id"]]
        assert "".join(mine) == call["arguments"]
    assert [c["output_index"] for c in calls] == [0, 1]
    for call, text in zip(calls, ["bad arguments", "refused"], strict=True):
        answer(ws, call["call_id"], text)
    send(ws, "response.create")
    said = transcript(recv_until(ws, "response.done"))
    assert "The tool said: bad arguments." in said and "The tool said: refused." in said


# -- (f) speak first, then call -------------------------------------------------------------------


def test_speak_first_streams_the_spoken_part_then_the_call(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    entry = {"calls": [{"name": "set_volume", "arguments": {"level": 30}}], "speak_first": True}
    ws = open_session(make_sim(script=[entry]))
    pcm = speech(0.8)
    events = ask(ws, pcm)
    split = kinds(events).index("response.output_item.done") + 1
    spoken, calling = events[:split], events[split:]
    assert kinds(spoken)[:4] == RESPONSE_HEAD
    assert kinds(spoken)[-4:] == [
        "response.audio_transcript.done",
        "response.audio.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert call_events(calling) == [*CALL_ORDER, "response.done"]
    assert calling[0]["output_index"] == 1 and calling[0]["item"]["type"] == "function_call"
    assert calling[1]["previous_item_id"] == spoken[2]["item"]["id"]
    done = events[-1]["response"]
    assert [i["type"] for i in done["output"]] == ["message", "function_call"]
    assert correlation(decoded_audio(spoken), pcm) > 0.9
    words = len(transcript(spoken).split())
    assert done["usage"]["output_tokens_details"] == {
        "text_tokens": words + math.ceil(len(ARGS) / 4),
        "audio_tokens": round(len(decoded_audio(spoken)) / 24000 * 12.5),
    }


# -- server VAD: a new turn moves on ---------------------------------------------------------------


def test_a_new_vad_turn_abandons_unanswered_calls(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    ws = connect(make_sim(call=["set_volume"]), model=PLUS)
    assert recv(ws)["type"] == "session.created"
    send(
        ws,
        "session.update",
        session={"input_audio_transcription": None, "tools": [tool("set_volume")]},
    )
    assert recv(ws)["type"] == "session.updated"
    silence = np.zeros(16000 * 3 // 2, dtype=np.int16)
    append(ws, np.concatenate([speech(0.8), silence]))
    first = of(recv_until(ws, "response.done"), "response.function_call_arguments.done")[0]
    append(ws, np.concatenate([speech(0.8, seed=2), silence]))  # no output sent: moves on
    events = recv_until(ws, "response.done")
    assert not of(events, "error")
    second = of(events, "response.function_call_arguments.done")[0]
    assert second["call_id"] != first["call_id"]
    answer(ws, first["call_id"], "late but welcome")  # still accepted, no longer required


# -- (g) the official SDK -------------------------------------------------------------------------


class Waiter(Collector):
    def wait_count(self, kind: str, count: int, timeout: float = 15.0) -> list[Event]:
        with self._changed:
            found = self._changed.wait_for(
                lambda: sum(e.get("type") == kind for e in self.events) >= count, timeout
            )
        assert found, f"fewer than {count} {kind} within {timeout} s"
        return self.of(kind)


def test_sdk_completes_a_tool_call_round_trip(make_sim: Callable[..., RunningSimulator]) -> None:
    sim = make_sim(call=[SET_VOLUME])
    callback = Waiter()
    conversation = OmniRealtimeConversation(
        model=PLUS, callback=callback, url=sim.url, api_key=sim.api_key
    )
    conversation.connect()
    output = "The volume is now 30."
    try:
        callback.wait_for("session.created")
        conversation.update_session(
            output_modalities=[MultiModality.AUDIO, MultiModality.TEXT],
            enable_turn_detection=False,
            tools=[tool("set_volume")],
        )
        assert callback.wait_for("session.updated")["session"]["tools"] == [tool("set_volume")]
        pcm = speech(1.0)
        for i in range(0, len(pcm), 1600):
            conversation.append_audio(base64_pcm(pcm[i : i + 1600]))
        conversation.commit()
        conversation.create_response()
        call = callback.wait_for("response.function_call_arguments.done")
        callback.wait_count("response.done", 1)
        conversation.create_item(
            {"type": "function_call_output", "call_id": call["call_id"], "output": output}
        )
        conversation.create_response()
        dones = callback.wait_count("response.done", 2)
    finally:
        conversation.close()

    assert callback.of("error") == []
    assert (call["name"], json.loads(call["arguments"])) == ("set_volume", {"level": 30})
    assert [d["response"]["status"] for d in dones] == ["completed", "completed"]
    transcripts = callback.of("response.audio_transcript.done")
    assert len(transcripts) == 1 and output in transcripts[0]["transcript"]
    assert conversation.get_last_response_id() == dones[1]["response"]["id"]


def base64_pcm(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode()


# -- (h) options and their validation ------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "[{not json",
        '{"calls": []}',
        '[{"calls": [{"name": ""}]}]',
        '[{"calls": [{"name": "x", "arguments": "{}"}]}]',
        '[{"calls": [{"name": "x", "arguments": {}, "arguments_raw": "{}"}]}]',
        '[{"call": []}]',
        '[{"calls": [], "speak_first": "yes"}]',
    ],
    ids=["bad-json", "not-a-list", "empty-name", "string-arguments", "both", "typo", "bool"],
)
def test_bad_script_exits_non_zero_with_one_readable_line(tmp_path: Path, content: str) -> None:
    script = tmp_path / "bad.json"
    script.write_text(content)
    cmd = [sys.executable, "-m", "omnid.cli", "simulate", "--port", "0", "--script", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("omnid simulate: --script ") and str(script) in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_bad_call_or_script_is_refused_by_start_in_thread(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="not valid JSON"):
        start_in_thread(call=["set_volume={level: 30}"])
    with pytest.raises(ScriptError, match="JSON object"):
        start_in_thread(call=["set_volume=[30]"])
    with pytest.raises(ValueError, match="entry 0"):
        start_in_thread(script=[{"calls": "set_volume"}])
    with pytest.raises(ScriptError, match="cannot read"):
        start_in_thread(script=str(tmp_path / "missing.json"))
    with pytest.raises(ScriptError, match="list of NAME"):
        start_in_thread(call="set_volume")  # a string, not a list of them
    with pytest.raises(ScriptError, match="path or a list"):
        start_in_thread(script={"calls": []})


def test_call_and_script_flags_are_parsed_and_documented() -> None:
    opts = parse_options(["--call", SET_VOLUME, "--call", "get_time", "--script", "t.json"])
    assert (opts.call, opts.script) == ([SET_VOLUME, "get_time"], "t.json")
    assert (parse_options([]).call, parse_options([]).script) == ([], None)
    text = build_parser().format_help()
    assert "--call NAME[=JSON]" in text and "--script PATH" in text
