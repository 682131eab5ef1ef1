"""Client events to build and server events to parse (docs/protocol.md). Pure: no I/O.

The parser is deliberately tolerant: the service adds fields, renames formats and sends events the
docs never mention. A server event we cannot understand must never take the daemon down, so
`parse()` returns `Unknown` for types we do not handle and fills missing fields with neutral values;
only text that is not a JSON object at all raises `ProtocolError` (the caller logs and skips it).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]


class ProtocolError(ValueError):
    """A server message that is not a JSON object with a string `type`."""


def new_event_id() -> str:
    """Same shape as the official SDK's ids, so server-side logs look familiar."""
    return "event_" + uuid.uuid4().hex


def _event(kind: str, **fields: Any) -> Event:
    return {"event_id": new_event_id(), "type": kind, **fields}


# ----------------------------------------------------------------------------- client events


def session_update(session: dict[str, Any]) -> Event:
    return _event("session.update", session=session)


def audio_append(pcm16: bytes) -> Event:
    """`pcm16`: little-endian 16-bit mono samples at the 16 kHz wire rate."""
    return _event("input_audio_buffer.append", audio=base64.b64encode(pcm16).decode("ascii"))


def audio_commit() -> Event:
    return _event("input_audio_buffer.commit")


def audio_clear() -> Event:
    return _event("input_audio_buffer.clear")


def image_append(jpeg: bytes) -> Event:
    return _event("input_image_buffer.append", image=base64.b64encode(jpeg).decode("ascii"))


def response_create(instructions: str | None = None, modalities: list[str] | None = None) -> Event:
    response: dict[str, Any] = {}
    if instructions is not None:
        response["instructions"] = instructions
    if modalities is not None:
        response["modalities"] = modalities
    return _event("response.create", response=response) if response else _event("response.create")


def response_cancel() -> Event:
    return _event("response.cancel")


def function_call_output(call_id: str, output: str) -> Event:
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    return _event("conversation.item.create", item=item)


def encode(event: Event) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------- server events


@dataclass(frozen=True, slots=True)
class ServerEvent:
    type: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Unknown(ServerEvent):
    data: Event = field(repr=False)


@dataclass(frozen=True, slots=True)
class Error(ServerEvent):
    code: str
    message: str
    param: str
    error_type: str

    @property
    def no_active_response(self) -> bool:
        """The expected race after our `response.cancel` (see the README): not worth a warning."""
        return "none active response" in self.message.lower()

    @property
    def idle_close(self) -> bool:
        return "no response was generated" in self.message.lower()


@dataclass(frozen=True, slots=True)
class SessionCreated(ServerEvent):
    session_id: str
    session: Event = field(repr=False)


@dataclass(frozen=True, slots=True)
class SessionUpdated(ServerEvent):
    session_id: str
    session: Event = field(repr=False)


@dataclass(frozen=True, slots=True)
class SpeechStarted(ServerEvent):
    audio_start_ms: int
    item_id: str


@dataclass(frozen=True, slots=True)
class SpeechStopped(ServerEvent):
    audio_end_ms: int
    item_id: str


@dataclass(frozen=True, slots=True)
class Committed(ServerEvent):
    item_id: str


@dataclass(frozen=True, slots=True)
class Cleared(ServerEvent):
    pass


@dataclass(frozen=True, slots=True)
class InputTranscriptDelta(ServerEvent):
    item_id: str
    text: str
    stash: str


@dataclass(frozen=True, slots=True)
class InputTranscriptCompleted(ServerEvent):
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class ResponseCreated(ServerEvent):
    response_id: str


@dataclass(frozen=True, slots=True)
class AudioDelta(ServerEvent):
    response_id: str
    pcm: bytes = field(repr=False)  # 16-bit mono at 24 kHz, whole samples only


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """An output item of type `function_call`: the model asks us to run `name`."""

    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (it may not parse)


@dataclass(frozen=True, slots=True)
class AudioDone(ServerEvent):
    response_id: str


@dataclass(frozen=True, slots=True)
class FunctionCallDone(ServerEvent):
    """`response.function_call_arguments.done`: a call is complete before its response is."""

    response_id: str
    call: FunctionCall


@dataclass(frozen=True, slots=True)
class TranscriptDelta(ServerEvent):
    """`response.audio_transcript.delta` or, in text-only sessions, `response.text.delta`."""

    response_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class TranscriptDone(ServerEvent):
    response_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0
    search_count: int = 0


@dataclass(frozen=True, slots=True)
class ResponseDone(ServerEvent):
    response_id: str
    status: str
    usage: Usage
    calls: tuple[FunctionCall, ...] = ()


# ----------------------------------------------------------------------------- parsing helpers


def _str(data: Any, *keys: str) -> str:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, str) else ""


def _int(data: Any, *keys: str) -> int:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    if isinstance(data, bool):
        return 0
    if isinstance(data, int):
        return data
    if isinstance(data, float) and data == data and abs(data) < 2**53:
        return int(data)
    return 0


def _dict(data: Any, key: str) -> Event:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _pcm(b64: str) -> bytes:
    try:
        raw = base64.b64decode(b64, validate=False)
    except (binascii.Error, ValueError):
        return b""
    return raw[: len(raw) & ~1]  # an odd trailing byte is not a sample


def parse_usage(usage: Any) -> Usage:
    """The service's numbers as received; absent fields (e.g. undocumented image_tokens) count 0."""
    return Usage(
        input_tokens=_int(usage, "input_tokens"),
        output_tokens=_int(usage, "output_tokens"),
        total_tokens=_int(usage, "total_tokens"),
        input_text_tokens=_int(usage, "input_tokens_details", "text_tokens"),
        input_audio_tokens=_int(usage, "input_tokens_details", "audio_tokens"),
        input_image_tokens=_int(usage, "input_tokens_details", "image_tokens"),
        output_text_tokens=_int(usage, "output_tokens_details", "text_tokens"),
        output_audio_tokens=_int(usage, "output_tokens_details", "audio_tokens"),
        search_count=_int(usage, "plugins", "search", "count"),
    )


def _calls(output: Any) -> tuple[FunctionCall, ...]:
    """The `function_call` items of a response's output; malformed items are skipped."""
    if not isinstance(output, list):
        return ()
    return tuple(
        FunctionCall(_str(item, "call_id"), _str(item, "name"), _str(item, "arguments"))
        for item in output
        if isinstance(item, dict) and item.get("type") == "function_call" and _str(item, "call_id")
    )


def _session(kind: type[SessionCreated] | type[SessionUpdated]) -> Callable[[str, str, Event], Any]:
    return lambda t, eid, d: kind(t, eid, _str(d, "session", "id"), _dict(d, "session"))


_PARSERS: dict[str, Callable[[str, str, Event], ServerEvent]] = {
    "error": lambda t, eid, d: Error(
        t,
        eid,
        _str(d, "error", "code"),
        _str(d, "error", "message") or _str(d, "message"),
        _str(d, "error", "param"),
        _str(d, "error", "type"),
    ),
    "session.created": _session(SessionCreated),
    "session.updated": _session(SessionUpdated),
    "input_audio_buffer.speech_started": lambda t, eid, d: SpeechStarted(
        t, eid, _int(d, "audio_start_ms"), _str(d, "item_id")
    ),
    "input_audio_buffer.speech_stopped": lambda t, eid, d: SpeechStopped(
        t, eid, _int(d, "audio_end_ms"), _str(d, "item_id")
    ),
    "input_audio_buffer.committed": lambda t, eid, d: Committed(t, eid, _str(d, "item_id")),
    "input_audio_buffer.cleared": lambda t, eid, d: Cleared(t, eid),
    "conversation.item.input_audio_transcription.delta": lambda t, eid, d: InputTranscriptDelta(
        t, eid, _str(d, "item_id"), _str(d, "text") or _str(d, "delta"), _str(d, "stash")
    ),
    "conversation.item.input_audio_transcription.completed": (
        lambda t, eid, d: InputTranscriptCompleted(
            t, eid, _str(d, "item_id"), _str(d, "transcript")
        )
    ),
    "response.created": lambda t, eid, d: ResponseCreated(t, eid, _str(d, "response", "id")),
    "response.audio.delta": lambda t, eid, d: AudioDelta(
        t, eid, _str(d, "response_id"), _pcm(_str(d, "delta"))
    ),
    "response.audio.done": lambda t, eid, d: AudioDone(t, eid, _str(d, "response_id")),
    "response.function_call_arguments.done": lambda t, eid, d: FunctionCallDone(
        t,
        eid,
        _str(d, "response_id"),
        FunctionCall(_str(d, "call_id"), _str(d, "name"), _str(d, "arguments")),
    ),
    "response.audio_transcript.delta": lambda t, eid, d: TranscriptDelta(
        t, eid, _str(d, "response_id"), _str(d, "delta")
    ),
    "response.text.delta": lambda t, eid, d: TranscriptDelta(
        t, eid, _str(d, "response_id"), _str(d, "delta")
    ),
    "response.audio_transcript.done": lambda t, eid, d: TranscriptDone(
        t, eid, _str(d, "response_id"), _str(d, "transcript")
    ),
    "response.text.done": lambda t, eid, d: TranscriptDone(
        t, eid, _str(d, "response_id"), _str(d, "text")
    ),
    "response.done": lambda t, eid, d: ResponseDone(
        t,
        eid,
        _str(d, "response", "id"),
        _str(d, "response", "status"),
        parse_usage(_dict(_dict(d, "response"), "usage")),
        _calls(_dict(d, "response").get("output")),
    ),
}


def parse(text: str | bytes) -> ServerEvent:
    """One server message → a typed event. Raises ProtocolError only for non-events."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("not an event object with a string 'type'")
    kind: str = data["type"]
    event_id = _str(data, "event_id")
    parser = _PARSERS.get(kind)
    if parser is None:
        return Unknown(kind, event_id, data)
    return parser(kind, event_id, data)
