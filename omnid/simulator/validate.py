"""`session.update` validation, as strict as docs/protocol.md says the service is.

The simulator is the test peer for every client, so it must refuse what the service refuses (so a
client bug shows up here rather than in the field) and accept everything the service accepts —
in particular all that the official SDK sends: `"voice": null`, `input_audio_transcription:
{"model": null}`, the new-style `session.audio.{input,output}.format` dicts, `sample_rate`,
`translation`/`video` blocks. Unknown fields are ignored (the service ignores them too) but
returned to the caller so the record shows them.

An update is applied atomically: any error leaves the session as it was.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from omnid.models import WIRE_INPUT_RATE, WIRE_OUTPUT_RATE, ModelInfo
from omnid.simulator.events import ProtocolError

Session = dict[str, Any]

AUDIO_FORMATS = frozenset({"pcm", "pcm16", "pcm24"})
TRANSCRIPTION_MODEL = "qwen3-asr-flash-realtime"  # newer docs: fixed, not selectable
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad")
DEFAULT_TURN_DETECTION: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 800,
    "create_response": True,
    "interrupt_response": True,
}
_MODALITY_COMBINATIONS = ({"text"}, {"text", "audio"})


def default_session(session_id: str, model: ModelInfo) -> Session:
    """The configuration `session.created` announces (docs' example, per model)."""
    return {
        "id": session_id,
        "object": "realtime.session",
        "model": model.name,
        "modalities": ["text", "audio"],
        "voice": model.default_voice,
        "instructions": "",
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": {"model": TRANSCRIPTION_MODEL},
        "turn_detection": dict(DEFAULT_TURN_DETECTION),
        "tools": [],
        "tool_choice": "auto",
        "temperature": 0.8,
        "enable_search": False,
        "search_options": {},
    }


def apply_session_update(
    current: Session, update: Any, model: ModelInfo, *, audio_produced: bool
) -> tuple[Session, list[str]]:
    """Return (new effective session, ignored field names) or raise `ProtocolError`."""
    if not isinstance(update, dict):
        raise ProtocolError("session must be an object", param="session")
    new = copy.deepcopy(current)
    ignored: list[str] = []
    for key, value in update.items():
        check = _FIELDS.get(key)
        if check is None:  # unknown, or read-only (id, object, model)
            ignored.append(key)
            continue
        check(new, value, model)
    if new.get("enable_search") and new.get("tools"):
        raise ProtocolError(
            "enable_search and tools cannot be used together", param="session.enable_search"
        )
    if audio_produced and new["voice"] != current["voice"]:
        # Reported behaviour: the voice is fixed once the session has spoken.
        raise ProtocolError(
            f"Voice cannot be changed after audio has been generated "
            f"(current voice {current['voice']!r}).",
            param="session.voice",
        )
    return new, ignored


def check_modalities(value: Any, param: str) -> list[str]:
    """`["text"]` or `["text","audio"]` in any order; the docs' own error text otherwise."""
    ok = (
        isinstance(value, list)
        and all(isinstance(m, str) for m in value)
        and len(set(value)) == len(value)
        and set(value) in _MODALITY_COMBINATIONS
    )
    if not ok:
        raise ProtocolError(
            f"Invalid modalities: {value!r}. Supported combinations are: "
            "['text'] and ['audio', 'text'].",
            param=param,
        )
    return ["text", "audio"] if "audio" in value else ["text"]


def _number(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{param.rsplit('.', 1)[-1]} must be a number", param=param)
    return float(value)


def _integer(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{param.rsplit('.', 1)[-1]} must be an integer", param=param)
    return value


def _out_of_range(name: str, value: Any, allowed: str, param: str) -> ProtocolError:
    return ProtocolError(f"Invalid {name}: {value!r}, must be in {allowed}.", param=param)


def _modalities(s: Session, v: Any, _m: ModelInfo) -> None:
    s["modalities"] = check_modalities(v, "session.modalities")


def _voice(s: Session, v: Any, m: ModelInfo) -> None:
    if v is None:  # the SDK sends null when no voice is given: keep the current one
        return
    if not isinstance(v, str) or v not in m.voices:
        raise ProtocolError(
            f"Invalid voice: {v!r}. Voices for {m.name}: {', '.join(sorted(m.voices))}.",
            param="session.voice",
        )
    s["voice"] = v


def _instructions(s: Session, v: Any, _m: ModelInfo) -> None:
    if v is None:
        return
    if not isinstance(v, str):
        raise ProtocolError("instructions must be a string", param="session.instructions")
    s["instructions"] = v


def _legacy_format(key: str) -> Callable[[Session, Any, ModelInfo], None]:
    def check(s: Session, v: Any, _m: ModelInfo) -> None:
        if v is None:
            return
        if v not in AUDIO_FORMATS:
            raise ProtocolError(
                f"Invalid {key}: {v!r}, supported: {', '.join(sorted(AUDIO_FORMATS))}.",
                param=f"session.{key}",
            )
        s[key] = v

    return check


def _audio(s: Session, v: Any, _m: ModelInfo) -> None:
    """New-style SDK block: `audio: {input: {format: {type, sample_rate, …}}, output: …}`."""
    if not isinstance(v, dict):
        raise ProtocolError("audio must be an object", param="session.audio")
    echoed: dict[str, Any] = {}
    for side, rate in (("input", WIRE_INPUT_RATE), ("output", WIRE_OUTPUT_RATE)):
        block = v.get(side)
        if block is None:
            continue
        param = f"session.audio.{side}.format"
        fmt = block.get("format") if isinstance(block, dict) else None
        if not isinstance(fmt, dict):
            raise ProtocolError(f"{param} must be an object", param=param)
        if fmt.get("type", "pcm") != "pcm":
            raise ProtocolError(
                f"Invalid {side} audio format {fmt.get('type')!r}: only 'pcm' is supported.",
                param=f"{param}.type",
            )
        if fmt.get("sample_rate", rate) != rate:
            raise ProtocolError(
                f"Invalid {side} sample_rate {fmt.get('sample_rate')!r}: "
                f"{side} audio is {rate} Hz mono PCM16.",
                param=f"{param}.sample_rate",
            )
        s[f"{side}_audio_format"] = "pcm"
        echoed[side] = {"format": dict(fmt)}
    s["audio"] = echoed


def _transcription(s: Session, v: Any, _m: ModelInfo) -> None:
    if v is None:
        s["input_audio_transcription"] = None
        return
    if not isinstance(v, dict) or not isinstance(v.get("model"), str | None):
        raise ProtocolError(
            "input_audio_transcription must be null or an object {model}",
            param="session.input_audio_transcription",
        )
    # The transcription model is fixed by the service; `{"model": null}` (SDK default) enables it.
    s["input_audio_transcription"] = {**v, "model": TRANSCRIPTION_MODEL}


def _turn_detection(s: Session, v: Any, m: ModelInfo) -> None:
    if v is None:
        s["turn_detection"] = None
        return
    p = "session.turn_detection"
    if not isinstance(v, dict):
        raise ProtocolError("turn_detection must be null or an object", param=p)
    td = {**DEFAULT_TURN_DETECTION, **v}
    if td["type"] not in TURN_DETECTION_TYPES:
        raise ProtocolError(
            f"Invalid turn_detection type: {td['type']!r}, supported: server_vad, semantic_vad.",
            param=f"{p}.type",
        )
    if td["type"] == "semantic_vad" and not m.semantic_vad:
        raise ProtocolError(f"semantic_vad is not supported by {m.name}.", param=f"{p}.type")
    threshold = _number(td["threshold"], f"{p}.threshold")
    if not -1.0 <= threshold <= 1.0:
        raise _out_of_range("threshold", td["threshold"], "[-1, 1]", f"{p}.threshold")
    silence = _integer(td["silence_duration_ms"], f"{p}.silence_duration_ms")
    if not 200 <= silence <= 6000:
        raise _out_of_range(
            "silence_duration_ms", silence, "[200, 6000]", f"{p}.silence_duration_ms"
        )
    padding = _integer(td["prefix_padding_ms"], f"{p}.prefix_padding_ms")
    if padding < 0:
        raise _out_of_range("prefix_padding_ms", padding, "[0, ∞)", f"{p}.prefix_padding_ms")
    s["turn_detection"] = td


def _ranged(
    name: str, low: float, high: float, low_open: bool, high_open: bool, integer: bool = False
) -> Callable[[Session, Any, ModelInfo], None]:
    allowed = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(s: Session, v: Any, _m: ModelInfo) -> None:
        if v is None:
            s.pop(name, None)
            return
        x = _integer(v, f"session.{name}") if integer else _number(v, f"session.{name}")
        if x < low or x > high or (low_open and x == low) or (high_open and x == high):
            raise _out_of_range(name, v, allowed, f"session.{name}")
        s[name] = v

    return check


def _smooth_output(s: Session, v: Any, _m: ModelInfo) -> None:
    if v is not None and not isinstance(v, bool):
        raise ProtocolError(
            "smooth_output must be true, false or null", param="session.smooth_output"
        )
    s["smooth_output"] = v


def _enable_search(s: Session, v: Any, m: ModelInfo) -> None:
    if not isinstance(v, bool):
        raise ProtocolError("enable_search must be a boolean", param="session.enable_search")
    if v and not m.search:
        raise ProtocolError(
            f"enable_search is not supported by {m.name}.", param="session.enable_search"
        )
    s["enable_search"] = v


def _search_options(s: Session, v: Any, _m: ModelInfo) -> None:
    if not isinstance(v, dict):
        raise ProtocolError("search_options must be an object", param="session.search_options")
    s["search_options"] = v


def _tools(s: Session, v: Any, _m: ModelInfo) -> None:
    if v is None:
        v = []
    if not isinstance(v, list):
        raise ProtocolError("tools must be a list", param="session.tools")
    for i, tool in enumerate(v):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not fn["name"]
        ):
            raise ProtocolError(
                'Invalid tool: expected {"type": "function", "function": {"name": …, '
                '"description": …, "parameters": …}}.',
                param=f"session.tools[{i}]",
            )
    s["tools"] = v


def _tool_choice(s: Session, v: Any, _m: ModelInfo) -> None:
    if not isinstance(v, str | dict):
        raise ProtocolError(
            "tool_choice must be a string or an object", param="session.tool_choice"
        )
    s["tool_choice"] = v


_FIELDS: dict[str, Callable[[Session, Any, ModelInfo], None]] = {
    "modalities": _modalities,
    "voice": _voice,
    "instructions": _instructions,
    "input_audio_format": _legacy_format("input_audio_format"),
    "output_audio_format": _legacy_format("output_audio_format"),
    "audio": _audio,
    "input_audio_transcription": _transcription,
    "turn_detection": _turn_detection,
    "temperature": _ranged("temperature", 0.0, 2.0, low_open=False, high_open=True),
    "top_p": _ranged("top_p", 0.0, 1.0, low_open=True, high_open=False),
    "top_k": _ranged("top_k", 0, 2**31 - 1, low_open=False, high_open=False, integer=True),
    "max_tokens": _ranged(
        "max_tokens", 1, 2**31 - 1, low_open=False, high_open=False, integer=True
    ),
    "seed": _ranged("seed", 0, 2**31 - 1, low_open=False, high_open=False, integer=True),
    "repetition_penalty": _ranged("repetition_penalty", 0.0, math.inf, True, False),
    "presence_penalty": _ranged("presence_penalty", -2.0, 2.0, low_open=False, high_open=False),
    "smooth_output": _smooth_output,
    "enable_search": _enable_search,
    "search_options": _search_options,
    "tools": _tools,
    "tool_choice": _tool_choice,
}
