"""Client events have the documented shapes; server events parse tolerantly and never crash."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnid import protocol

USAGE = {
    "total_tokens": 377,
    "input_tokens": 336,
    "output_tokens": 41,
    "input_tokens_details": {"text_tokens": 228, "audio_tokens": 108},
    "output_tokens_details": {"text_tokens": 9, "audio_tokens": 32},
    "plugins": {"search": {"count": 1, "strategy": "agent"}},
}


def test_client_events_have_ids_types_and_documented_fields() -> None:
    pcm = np.arange(-800, 800, dtype=np.int16).tobytes()
    append = protocol.audio_append(pcm)
    assert append["type"] == "input_audio_buffer.append"
    assert append["event_id"].startswith("event_") and len(append["event_id"]) == 38
    assert base64.b64decode(append["audio"]) == pcm
    assert protocol.audio_commit()["type"] == "input_audio_buffer.commit"
    assert protocol.audio_clear()["type"] == "input_audio_buffer.clear"
    assert protocol.response_cancel()["type"] == "response.cancel"
    assert "response" not in protocol.response_create()
    created = protocol.response_create(instructions="be brief", modalities=["text"])
    assert created["response"] == {"instructions": "be brief", "modalities": ["text"]}
    image = protocol.image_append(b"\xff\xd8\xff\xe0jpeg")
    assert base64.b64decode(image["image"]).startswith(b"\xff\xd8")
    item = protocol.function_call_output("call_1", "42")["item"]
    assert item == {"type": "function_call_output", "call_id": "call_1", "output": "42"}
    update = protocol.session_update({"modalities": ["text", "audio"]})
    assert json.loads(protocol.encode(update))["session"]["modalities"] == ["text", "audio"]
    assert protocol.audio_commit()["event_id"] != protocol.audio_commit()["event_id"]


def _msg(kind: str, **fields: object) -> str:
    return json.dumps({"event_id": "event_x", "type": kind, **fields})


def test_response_done_usage_is_read_as_received() -> None:
    done = protocol.parse(
        _msg("response.done", response={"id": "resp_1", "status": "completed", "usage": USAGE})
    )
    assert isinstance(done, protocol.ResponseDone)
    assert done.response_id == "resp_1" and done.status == "completed"
    u = done.usage
    assert (u.total_tokens, u.input_tokens, u.output_tokens) == (377, 336, 41)
    assert (u.input_text_tokens, u.input_audio_tokens, u.input_image_tokens) == (228, 108, 0)
    assert (u.output_text_tokens, u.output_audio_tokens, u.search_count) == (9, 32, 1)


def test_audio_delta_decodes_whole_samples_only() -> None:
    raw = np.array([1, -2, 3], dtype="<i2").tobytes() + b"\x07"  # one stray byte
    delta = protocol.parse(
        _msg("response.audio.delta", response_id="resp_1", delta=base64.b64encode(raw).decode())
    )
    assert isinstance(delta, protocol.AudioDelta)
    assert np.frombuffer(delta.pcm, dtype="<i2").tolist() == [1, -2, 3]
    bad = protocol.parse(_msg("response.audio.delta", response_id="r", delta="%%%not base64"))
    assert isinstance(bad, protocol.AudioDelta) and len(bad.pcm) % 2 == 0


@pytest.mark.parametrize(
    ("message", "kind", "check"),
    [
        (
            _msg("session.created", session={"id": "sess_1", "model": "m"}),
            protocol.SessionCreated,
            lambda e: e.session_id == "sess_1",
        ),
        (
            _msg("session.updated", session={"id": "sess_1"}),
            protocol.SessionUpdated,
            lambda e: e.session["id"] == "sess_1",
        ),
        (
            _msg("input_audio_buffer.speech_started", audio_start_ms=480, item_id="item_1"),
            protocol.SpeechStarted,
            lambda e: e.audio_start_ms == 480,
        ),
        (
            _msg("input_audio_buffer.speech_stopped", audio_end_ms=2200, item_id="item_1"),
            protocol.SpeechStopped,
            lambda e: e.audio_end_ms == 2200,
        ),
        (
            _msg("input_audio_buffer.committed", item_id="item_1"),
            protocol.Committed,
            lambda e: e.item_id == "item_1",
        ),
        (
            _msg(
                "conversation.item.input_audio_transcription.delta",
                item_id="i",
                text="hel",
                stash="lo",
            ),
            protocol.InputTranscriptDelta,
            lambda e: e.text + e.stash == "hello",
        ),
        (
            _msg(
                "conversation.item.input_audio_transcription.completed",
                item_id="i",
                transcript="hello",
            ),
            protocol.InputTranscriptCompleted,
            lambda e: e.transcript == "hello",
        ),
        (
            _msg("response.created", response={"id": "resp_9", "status": "in_progress"}),
            protocol.ResponseCreated,
            lambda e: e.response_id == "resp_9",
        ),
        (
            _msg("response.audio_transcript.delta", response_id="r", delta="Hi"),
            protocol.TranscriptDelta,
            lambda e: e.delta == "Hi",
        ),
        (
            _msg("response.text.done", response_id="r", text="Hi there"),
            protocol.TranscriptDone,
            lambda e: e.transcript == "Hi there",
        ),
        (
            _msg(
                "error",
                error={
                    "type": "invalid_request_error",
                    "code": "x",
                    "message": "Conversation has none active response",
                    "param": None,
                },
            ),
            protocol.Error,
            lambda e: e.no_active_response and e.param == "",
        ),
        (
            _msg(
                "error",
                error={
                    "message": "Your session was closed because no response was "
                    "generated for 300 seconds."
                },
            ),
            protocol.Error,
            lambda e: e.idle_close,
        ),
        (
            _msg("response.output_item.added", response_id="r", output_index=0, item={}),
            protocol.Unknown,
            lambda e: e.data["output_index"] == 0,
        ),
    ],
)
def test_every_documented_server_event_parses(message: str, kind: type, check: object) -> None:
    event = protocol.parse(message)
    assert isinstance(event, kind)
    assert check(event)  # type: ignore[operator]


@pytest.mark.parametrize(
    "text", ["", "not json", "[1, 2]", '{"no": "type"}', '{"type": 7}', b"\xff\xfe"]
)
def test_non_events_raise_protocol_error_only(text: str | bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(text)


def test_missing_and_mistyped_fields_get_neutral_values() -> None:
    done = protocol.parse(_msg("response.done", response="oops"))
    assert isinstance(done, protocol.ResponseDone)
    assert done.response_id == "" and done.usage.total_tokens == 0
    weird = protocol.parse(
        _msg(
            "response.done",
            response={
                "usage": {
                    "input_tokens": "12",
                    "output_tokens": True,
                    "total_tokens": 1e400,
                    "input_tokens_details": [1, 2],
                }
            },
        )
    )
    assert isinstance(weird, protocol.ResponseDone)
    assert weird.usage == protocol.Usage()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
known_types = st.sampled_from(
    [
        "error",
        "session.created",
        "session.updated",
        "response.done",
        "response.audio.delta",
        "response.created",
        "input_audio_buffer.speech_started",
        "response.text.delta",
        "conversation.item.input_audio_transcription.completed",
        "zzz",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    kind=known_types,
    fields=st.dictionaries(
        st.sampled_from(
            [
                "response",
                "session",
                "error",
                "delta",
                "usage",
                "item_id",
                "response_id",
                "audio_start_ms",
                "transcript",
                "text",
            ]
        ),
        json_values,
        max_size=5,
    ),
)
def test_generated_server_events_never_crash_the_parser(kind: str, fields: dict) -> None:
    event = protocol.parse(json.dumps({"type": kind, **fields}))
    assert event.type == kind
