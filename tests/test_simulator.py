"""The simulator against a plain websocket-client peer: assertions are on what crossed the wire."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import websocket

from omnid.models import MODELS
from omnid.simulator import RunningSimulator, start_in_thread
from omnid.simulator.session import Session
from omnid.simulator.vad import VadEdge

MODEL = "qwen3-omni-flash-realtime"
Event = dict[str, Any]
_open_sockets: list[websocket.WebSocket] = []


@pytest.fixture
def make_sim() -> Iterator[Callable[..., RunningSimulator]]:
    started: list[RunningSimulator] = []

    def make(**options: Any) -> RunningSimulator:
        options = {"pace": 0, "first_audio_ms": 0, **options}
        started.append(start_in_thread(**options))
        return started[-1]

    yield make
    while _open_sockets:
        _open_sockets.pop().close(timeout=0.2)
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: Callable[..., RunningSimulator], tmp_path: Path) -> RunningSimulator:
    return make_sim(record=str(tmp_path / "wire.jsonl"))


def connect(
    sim: RunningSimulator, model: str = MODEL, key: str | None = None
) -> websocket.WebSocket:
    ws = websocket.create_connection(
        f"{sim.url}?model={model}",
        header=[f"Authorization: Bearer {key or sim.api_key}"],
        timeout=5,
        skip_utf8_validation=True,
    )
    _open_sockets.append(ws)
    return ws


def recv(ws: websocket.WebSocket) -> Event:
    event: Event = json.loads(ws.recv())
    assert event["event_id"].startswith("event_")
    return event


def recv_until(ws: websocket.WebSocket, kind: str) -> list[Event]:
    events = [recv(ws)]
    while events[-1]["type"] != kind:
        events.append(recv(ws))
    return events


def send(ws: websocket.WebSocket, kind: str, **fields: Any) -> None:
    ws.send(json.dumps({"type": kind, **fields}))


def manual(ws: websocket.WebSocket, **session: Any) -> Event:
    assert recv(ws)["type"] == "session.created"
    send(ws, "session.update", session={"turn_detection": None, **session})
    event = recv(ws)
    assert event["type"] == "session.updated", event
    return event["session"]


def speech(seconds: float, seed: int = 1) -> np.ndarray:
    """A speech-like test signal: a few partials under a syllable-rate envelope, plus noise."""
    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(seed)
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 900), 1))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    x = 6000 * envelope * voiced + 300 * rng.standard_normal(len(t))
    return x.astype(np.int16)


def append(ws: websocket.WebSocket, pcm: np.ndarray, chunk_ms: int = 100) -> None:
    step = 16 * chunk_ms
    for i in range(0, len(pcm), step):
        audio = base64.b64encode(pcm[i : i + step].astype("<i2").tobytes()).decode()
        send(ws, "input_audio_buffer.append", audio=audio)


def decoded_audio(events: list[Event]) -> np.ndarray:
    chunks = [base64.b64decode(e["delta"]) for e in events if e["type"] == "response.audio.delta"]
    return np.frombuffer(b"".join(chunks), dtype="<i2")


def error_of(ws: websocket.WebSocket) -> dict[str, Any]:
    event = recv(ws)
    assert event["type"] == "error", event
    return dict(event["error"])


def tiny_jpeg(width: int, height: int) -> bytes:
    """Just enough JPEG for the header rules: SOI, APP0, SOF0 with the size, EOI."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


# -- the upgrade ----------------------------------------------------------------------------------


def test_bad_or_missing_key_is_http_401_with_json_body(sim: RunningSimulator) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as bad:
        connect(sim, key="sk-wrong")
    assert bad.value.status_code == 401
    assert json.loads(bad.value.resp_body or b"")["code"] == "InvalidApiKey"
    with pytest.raises(websocket.WebSocketBadStatusException) as missing:
        websocket.create_connection(f"{sim.url}?model={MODEL}", timeout=5)
    assert missing.value.status_code == 401


def test_model_is_required_and_must_be_known(sim: RunningSimulator) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as unknown:
        connect(sim, model="qwen-omni-nonexistent")
    assert unknown.value.status_code == 404
    assert "qwen-omni-nonexistent" in json.loads(unknown.value.resp_body or b"")["message"]
    with pytest.raises(websocket.WebSocketBadStatusException) as missing:
        connect(sim, model="")
    assert missing.value.status_code == 400


def test_session_created_comes_first_with_full_defaults(sim: RunningSimulator) -> None:
    ws = connect(sim, model="qwen3.5-omni-plus-realtime")
    event = recv(ws)
    assert event["type"] == "session.created"
    session = event["session"]
    assert session["id"].startswith("sess_")
    assert session["model"] == "qwen3.5-omni-plus-realtime"
    assert session["voice"] == "Tina"
    assert session["modalities"] == ["text", "audio"]
    assert session["input_audio_format"] == session["output_audio_format"] == "pcm16"
    assert session["turn_detection"]["type"] == "server_vad"


# -- session.update -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "param"),
    [
        ({"modalities": ["audio"]}, "session.modalities"),
        (
            {"turn_detection": {"type": "server_vad", "threshold": 1.5}},
            "session.turn_detection.threshold",
        ),
        (
            {"turn_detection": {"silence_duration_ms": 100}},
            "session.turn_detection.silence_duration_ms",
        ),
        ({"turn_detection": {"type": "semantic_vad"}}, "session.turn_detection.type"),
        ({"voice": "Tina"}, "session.voice"),  # a qwen3.5 voice on qwen3-omni-flash
        ({"temperature": 2.0}, "session.temperature"),
        ({"enable_search": True}, "session.enable_search"),
    ],
)
def test_session_update_refuses_what_the_service_refuses(
    sim: RunningSimulator, update: Event, param: str
) -> None:
    ws = connect(sim)
    recv(ws)
    send(ws, "session.update", session=update)
    error = error_of(ws)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_value"
    send(ws, "session.update", session={})  # the refused update changed nothing
    assert recv(ws)["session"]["voice"] == "Cherry"


def test_session_update_accepts_what_the_sdk_sends(sim: RunningSimulator) -> None:
    ws = connect(sim)
    recv(ws)
    update = {
        "modalities": ["audio", "text"],
        "voice": None,
        "audio": {"input": {"format": {"type": "pcm", "sample_rate": 16000}}},
        "input_audio_transcription": {"model": None},
        "sample_rate": 16000,
        "some_future_field": {"x": 1},
        "turn_detection": None,
    }
    send(ws, "session.update", session=update)
    event = recv(ws)
    assert event["type"] == "session.updated"
    assert event["session"]["voice"] == "Cherry" and event["session"]["turn_detection"] is None
    assert "some_future_field" not in event["session"]


@pytest.mark.parametrize("named", ["qwen3-asr-flash-realtime", "gummy-realtime-v1", None])
def test_the_transcription_model_is_the_services_whatever_is_named(
    sim: RunningSimulator, named: str | None
) -> None:
    """The newest docs name one transcription model that cannot be changed: an older config's
    `gummy-realtime-v1` and the SDK's null are accepted, and the session says which one runs."""
    ws = connect(sim)
    recv(ws)
    send(ws, "session.update", session={"input_audio_transcription": {"model": named}})
    event = recv(ws)
    assert event["type"] == "session.updated"
    assert event["session"]["input_audio_transcription"] == {"model": "qwen3-asr-flash-realtime"}


# -- a manual turn --------------------------------------------------------------------------------

RESPONSE_HEAD = [
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
]
AUDIO_TAIL = [
    "response.audio_transcript.done",
    "response.audio.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]


def test_manual_turn_order_echo_audio_and_usage(sim: RunningSimulator) -> None:
    ws = connect(sim)
    manual(ws, instructions="Answer briefly, please.")
    pcm = speech(1.2)
    append(ws, pcm)
    send(ws, "input_audio_buffer.commit")
    committed, user_item, transcript = recv(ws), recv(ws), recv(ws)
    assert committed["type"] == "input_audio_buffer.committed"
    assert user_item["type"] == "conversation.item.created"
    assert user_item["item"]["id"] == committed["item_id"] and user_item["item"]["role"] == "user"
    assert transcript["type"] == "conversation.item.input_audio_transcription.completed"
    send(ws, "response.create")
    events = recv_until(ws, "response.done")
    kinds = [e["type"] for e in events]
    assert kinds[:4] == RESPONSE_HEAD and kinds[-5:] == AUDIO_TAIL
    assert set(kinds[4:-5]) == {"response.audio_transcript.delta", "response.audio.delta"}

    out = decoded_audio(events)
    expected = soxr.resample(pcm, 16000, 24000)
    assert abs(len(out) - len(expected)) <= 24
    n = min(len(out), len(expected))
    a, b = out[:n].astype(float), expected[:n].astype(float)
    assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.95
    deltas = [e for e in events if e["type"] == "response.audio.delta"]
    assert all(len(base64.b64decode(e["delta"])) <= 4800 for e in deltas)  # 100 ms each

    text = "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta")
    assert text == "You said something 1.2 seconds long." == events[-5]["transcript"]
    done = events[-1]["response"]
    assert done["status"] == "completed"
    usage = done["usage"]
    assert usage["input_tokens_details"] == {
        "text_tokens": math.ceil(len("Answer briefly, please.") / 4),
        "audio_tokens": round(1.2 * 12.5),
    }
    assert usage["output_tokens_details"] == {
        "text_tokens": len(text.split()),
        "audio_tokens": round(len(out) / 24000 * 12.5),
    }
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_text_only_modality_streams_text_and_no_audio(sim: RunningSimulator) -> None:
    ws = connect(sim)
    manual(ws, modalities=["text"], input_audio_transcription=None)
    append(ws, speech(0.4))
    send(ws, "input_audio_buffer.commit")
    recv_until(ws, "conversation.item.created")
    send(ws, "response.create")
    kinds = [e["type"] for e in recv_until(ws, "response.done")]
    assert "response.audio.delta" not in kinds and "response.text.delta" in kinds
    assert kinds[-4:-2] == ["response.text.done", "response.content_part.done"]


def test_cancel_mid_stream_finishes_cancelled_with_less_audio(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(pace=4.0)
    ws = connect(sim)
    manual(ws, input_audio_transcription=None)
    append(ws, speech(3.0))
    send(ws, "input_audio_buffer.commit")
    recv_until(ws, "conversation.item.created")
    send(ws, "response.create")
    events = recv_until(ws, "response.audio.delta")
    events += recv_until(ws, "response.audio.delta")
    send(ws, "response.cancel")
    events += recv_until(ws, "response.done")
    deltas = [e for e in events if e["type"] == "response.audio.delta"]
    assert 2 <= len(deltas) < 30
    assert [e["type"] for e in events[-5:]] == AUDIO_TAIL
    done = events[-1]["response"]
    assert done["status"] == "cancelled" and done["output"][0]["status"] == "incomplete"
    sent_s = len(decoded_audio(events)) / 24000
    assert done["usage"]["output_tokens_details"]["audio_tokens"] == round(sent_s * 12.5)
    send(ws, "response.cancel")  # nothing active any more
    assert error_of(ws)["message"] == "Conversation has none active response"


def test_response_create_while_active_is_refused(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(pace=1.0, first_audio_ms=300)
    ws = connect(sim)
    manual(ws, input_audio_transcription=None)
    append(ws, speech(1.0))
    send(ws, "input_audio_buffer.commit")
    recv_until(ws, "conversation.item.created")
    send(ws, "response.create")
    recv_until(ws, "response.content_part.added")
    send(ws, "response.create")
    assert error_of(ws)["message"] == "Conversation already has an active response"
    send(ws, "response.cancel")
    assert recv_until(ws, "response.done")[-1]["response"]["status"] == "cancelled"


def test_protocol_errors_leave_the_connection_usable(sim: RunningSimulator) -> None:
    ws = connect(sim)
    manual(ws)
    send(ws, "response.cancel")
    assert error_of(ws)["message"] == "Conversation has none active response"
    send(ws, "input_audio_buffer.commit")
    assert "buffer too small" in error_of(ws)["message"]
    send(ws, "response.create")
    assert error_of(ws)["type"] == "invalid_request_error"
    ws.send("{this is not json")
    assert "JSON" in error_of(ws)["message"]
    send(ws, "session.finish")
    assert "invalid event type" in error_of(ws)["message"].lower()
    send(ws, "no.such.event")
    assert "invalid event type" in error_of(ws)["message"].lower()
    send(ws, "input_audio_buffer.append", audio="AAA")  # 3 bytes of base64: not decodable
    assert error_of(ws)["param"] == "audio"
    send(ws, "input_audio_buffer.append", audio=base64.b64encode(b"\x00\x01\x02").decode())
    assert "even number of bytes" in error_of(ws)["message"]
    send(ws, "input_audio_buffer.clear")
    assert recv(ws)["type"] == "input_audio_buffer.cleared"
    send(ws, "session.update", session={"voice": "Ethan"})
    assert recv(ws)["session"]["voice"] == "Ethan"


def test_commit_is_refused_in_vad_mode(sim: RunningSimulator) -> None:
    ws = connect(sim)
    recv(ws)  # default session: server_vad
    append(ws, np.zeros(4800, dtype=np.int16))  # silence: no VAD turn may start before the error
    send(ws, "input_audio_buffer.commit")
    assert "VAD" in error_of(ws)["message"]


def test_voice_cannot_change_after_audio_was_produced(sim: RunningSimulator) -> None:
    ws = connect(sim)
    manual(ws, input_audio_transcription=None)
    append(ws, speech(0.2))
    send(ws, "input_audio_buffer.commit")
    recv_until(ws, "conversation.item.created")
    send(ws, "response.create")
    recv_until(ws, "response.done")
    send(ws, "session.update", session={"voice": "Ethan"})
    assert error_of(ws)["param"] == "session.voice"


def test_image_rules_and_image_tokens(sim: RunningSimulator) -> None:
    ws = connect(sim)
    manual(ws, input_audio_transcription=None)
    jpeg = base64.b64encode(tiny_jpeg(640, 480)).decode()
    send(ws, "input_image_buffer.append", image=jpeg)
    assert error_of(ws)["message"] == "Error append image before append audio."
    append(ws, speech(0.5))
    send(ws, "input_image_buffer.append", image=base64.b64encode(b"\x89PNG\r\n\x1a\n").decode())
    assert "JPEG" in error_of(ws)["message"]
    send(ws, "input_image_buffer.append", image="A" * (256 * 1024 + 4))
    assert "too large" in error_of(ws)["message"]
    send(ws, "input_image_buffer.append", image=jpeg)  # accepted: no event
    send(ws, "input_image_buffer.append", image=jpeg)  # a second one within a second
    assert "one image per second" in error_of(ws)["message"]
    send(ws, "input_audio_buffer.commit")
    recv_until(ws, "conversation.item.created")
    send(ws, "response.create")
    usage = recv_until(ws, "response.done")[-1]["response"]["usage"]
    assert usage["input_tokens_details"]["image_tokens"] == 20 * 15
    assert usage["input_tokens"] == sum(usage["input_tokens_details"].values())


# -- limits and faults ----------------------------------------------------------------------------


def test_idle_timeout_sends_the_service_error_then_closes(make_sim: Callable[..., Any]) -> None:
    ws = connect(make_sim(idle_timeout_s=0.5))
    recv(ws)
    error = error_of(ws)
    assert error["message"] == (
        "Your session was closed because no response was generated for 0.5 seconds."
    )
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and struct.unpack(">H", data[:2])[0] == 1000


def test_max_session_closes_the_socket(make_sim: Callable[..., Any]) -> None:
    ws = connect(make_sim(max_session_s=0.3))
    recv(ws)
    started = time.monotonic()
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and struct.unpack(">H", data[:2])[0] == 1000
    assert time.monotonic() - started < 2


def test_drop_after_events_aborts_without_close_frame(make_sim: Callable[..., Any]) -> None:
    ws = connect(make_sim(drop_after_events=2))
    recv(ws)
    send(ws, "session.update", session={"turn_detection": None})
    assert recv(ws)["type"] == "session.updated"
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        ws.recv_data(control_frame=True)


def test_drop_every_s_drops_each_connection_in_its_window(make_sim: Callable[..., Any]) -> None:
    ws = connect(make_sim(drop_every_s=0.4, seed=7))
    recv(ws)
    started = time.monotonic()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        ws.recv_data(control_frame=True)
    assert 0.15 <= time.monotonic() - started <= 1.5


def no_frame_within(ws: websocket.WebSocket, seconds: float) -> bool:
    """True when nothing at all (no event, no pong, no close) arrives for `seconds` and the
    socket is still open: what a stalled peer looks like from the client."""
    ws.settimeout(seconds)
    try:
        ws.recv_data(control_frame=True)
    except websocket.WebSocketTimeoutException:
        return True
    return False


def test_stall_after_events_stops_reading_and_sending_but_keeps_the_socket(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    """A stalled service shows no error: the socket stays open, events go unanswered and —
    unlike a merely slow server — so do pings (websockets answers them only while it reads)."""
    record = tmp_path / "wire.jsonl"
    ws = connect(make_sim(stall_after_events=2, record=str(record)))
    manual(ws)  # session.created, session.updated: two events, then the stall
    ws.ping(b"anyone?")
    send(ws, "input_audio_buffer.clear")  # would be answered by input_audio_buffer.cleared
    assert no_frame_within(ws, 1.5), "the stalled connection answered"
    ws.ping(b"still there?")  # the socket still takes data: no RST, no close
    time.sleep(0.2)
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    stalls = [line for line in lines if line["dir"] == "conn" and line["what"] == "stall"]
    assert len(stalls) == 1 and stalls[0]["events_sent"] == 2
    assert stalls[0]["why"] == "stall-after-events 2"
    after = [line for line in lines if line["t"] > stalls[0]["t"] and line["dir"] != "conn"]
    assert after == [], "the simulator read or sent something after stalling"
    assert not [line for line in lines if line["dir"] == "conn" and line["what"] == "close"]


def test_faulty_connections_limits_the_faults_to_the_first_ones(
    make_sim: Callable[..., Any],
) -> None:
    """With `--faulty-connections 1` the first connection stalls (or drops) and the next one is
    served normally, so a client's recovery can be tested end to end."""
    sim = make_sim(stall_after_events=1, faulty_connections=1)
    first = connect(sim)
    assert recv(first)["type"] == "session.created"
    first.ping(b"1")
    assert no_frame_within(first, 1.0)
    second = connect(sim)
    manual(second)  # more than one event: not stalled
    second.ping(b"2")
    opcode, data = second.recv_data(control_frame=True)
    assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"2")

    dropping = make_sim(drop_after_events=1, faulty_connections=1)
    first = connect(dropping)
    recv(first)
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        first.recv_data(control_frame=True)
    manual(connect(dropping))


def test_stall_flags_on_the_command_line() -> None:
    from omnid.simulator.options import parse_options

    opts = parse_options(["--stall-after-events", "3", "--faulty-connections", "1"])
    assert (opts.stall_after_events, opts.faulty_connections) == (3, 1)
    assert parse_options([]).faulty_connections is None  # default: every connection


def test_refuse_status_429(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(refuse_status=429)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(sim)
    assert refused.value.status_code == 429
    assert json.loads(refused.value.resp_body or b"")["code"].startswith("Throttling")


def test_close_1007_at_first_response(make_sim: Callable[..., Any]) -> None:
    ws = connect(make_sim(close_1007_on_response=True))
    manual(ws)
    send(ws, "response.create")
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and struct.unpack(">H", data[:2])[0] == 1007


def test_long_1007_reason_is_an_oversized_close_frame(make_sim: Callable[..., Any]) -> None:
    """Reported service behaviour; websocket-client cannot parse it, so clients must cope."""
    ws = connect(make_sim(close_1007_on_response=True, long_close_reason=True))
    recv(ws)
    send(ws, "response.create")
    with pytest.raises(websocket.WebSocketProtocolException, match="close frame"):
        ws.recv_data(control_frame=True)


def test_record_has_both_directions_and_never_the_key(sim: RunningSimulator) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException):
        connect(sim, key="sk-wrong-key-123")
    ws = connect(sim)
    manual(ws, input_audio_transcription=None)
    append(ws, speech(0.3))
    send(ws, "input_audio_buffer.commit")
    recv_until(ws, "conversation.item.created")
    send(ws, "response.create")
    events = recv_until(ws, "response.done")
    ws.close()
    time.sleep(0.2)
    path = Path(sim.options.record or "")
    text = path.read_text()
    assert sim.api_key not in text and "sk-wrong-key-123" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["what"] for line in lines if line["dir"] == "conn"] == ["refused", "open", "close"]
    sent = [line["event"] for line in lines if line["dir"] == "send"]
    assert sent[-len(events) :] == events  # byte-identical events, audio included, in wire order
    received = [line["event"]["type"] for line in lines if line["dir"] == "recv"]
    assert received[0] == "session.update" and received[-1] == "response.create"
    assert all(line["t"] > 0 for line in lines)


# -- the VAD hook, driven without a socket --------------------------------------------------------


class ScriptedDetector:
    """Speech starts at the first block and stops at the third: stands in for the energy VAD."""

    def __init__(self) -> None:
        self.blocks = 0

    def feed(self, samples: np.ndarray) -> list[VadEdge]:
        self.blocks += 1
        edges = {1: "speech_started", 3: "speech_stopped"}
        kind = edges.get(self.blocks)
        return [VadEdge(kind, self.blocks * 100)] if kind else []  # type: ignore[arg-type]

    def reset(self) -> None:
        return None


def test_vad_hook_commits_and_responds_on_detected_turn() -> None:
    async def scenario() -> list[str]:
        sent: list[Event] = []

        async def collect(event: Event) -> None:
            sent.append(event)

        session = Session(
            MODELS[MODEL],
            collect,
            first_audio_s=0,
            pace=0,
            detector_factory=lambda td: ScriptedDetector(),
        )
        audio = base64.b64encode(speech(0.1).tobytes()).decode()
        for _ in range(3):
            await session.handle({"type": "input_audio_buffer.append", "audio": audio})
        while session.response is not None:
            await asyncio.sleep(0.01)
        await session.close()
        return [e["type"] for e in sent]

    kinds = asyncio.run(scenario())
    assert kinds[:4] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
    ]
    assert "response.created" in kinds and kinds[-1] == "response.done"


# -- the command ----------------------------------------------------------------------------------


def test_cli_serves_a_turn_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    record = tmp_path / "cli.jsonl"
    cmd = [sys.executable, "-m", "omnid.cli", "simulate", "--port", "0", "--pace", "0"]
    cmd += ["--first-audio-ms", "0", "--record", str(record)]
    env = {**os.environ, "OMNID_SIM_API_KEY": "sk-from-env"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        prefix = "omnid simulate: listening on "
        assert line.startswith(prefix), line
        url = line[len(prefix) :].strip()
        ws = websocket.create_connection(
            f"{url}?model={MODEL}", header=["Authorization: Bearer sk-from-env"], timeout=5
        )
        manual(ws)
        append(ws, speech(0.5))
        send(ws, "input_audio_buffer.commit")
        recv_until(ws, "conversation.item.created")
        send(ws, "response.create")
        assert recv_until(ws, "response.done")[-1]["response"]["status"] == "completed"
        ws.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "sk-from-env" not in stderr
    assert any(json.loads(line)["dir"] == "send" for line in record.read_text().splitlines())
