"""The official DashScope SDK completes a manual turn against the simulator without a single error.

This is the simulator's acceptance test from the other side: whatever the SDK sends (its `voice:
null`, its `input_audio_transcription: {"model": null}`, its new-style audio format block, its
`session.finish`) must be treated as the service treats it.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from dashscope.audio.qwen_omni import (
    MultiModality,
    OmniRealtimeCallback,
    OmniRealtimeConversation,
)
from dashscope.audio.qwen_omni.omni_realtime import AudioFormatConfig

from omnid.simulator import RunningSimulator, start_in_thread

MODEL = "qwen3-omni-flash-realtime"


class Collector(OmniRealtimeCallback):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed: tuple[Any, Any] | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def on_event(self, message: Any) -> None:  # the SDK passes the parsed dict
        with self._changed:
            self.events.append(message)
            self._changed.notify_all()

    def on_close(self, close_status_code: Any, close_msg: Any) -> None:
        self.closed = (close_status_code, close_msg)

    def wait_for(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(e.get("type") == kind for e in self.events), timeout
            )
        assert found, f"no {kind} within {timeout} s; got {[e.get('type') for e in self.events]}"
        return next(e for e in self.events if e.get("type") == kind)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("type") == kind]


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    running = start_in_thread(pace=0, first_audio_ms=0)
    yield running
    running.stop()


def one_second_of_audio() -> np.ndarray:
    t = np.arange(16000) / 16000
    return (6000 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.int16)


@pytest.mark.parametrize(
    "session_kwargs",
    [
        {"voice": None},
        {"voice": "Cherry"},
        {
            "voice": None,
            "input_audio_config": AudioFormatConfig(sample_rate=16000),
            "output_audio_config": AudioFormatConfig(sample_rate=24000),
            "instructions": "Be brief.",
        },
    ],
    ids=["voice-null", "default-voice", "new-style-audio-config"],
)
def test_sdk_completes_a_manual_turn(sim: RunningSimulator, session_kwargs: dict[str, Any]) -> None:
    callback = Collector()
    conversation = OmniRealtimeConversation(
        model=MODEL, callback=callback, url=sim.url, api_key=sim.api_key
    )
    conversation.connect()
    try:
        created = callback.wait_for("session.created")
        conversation.update_session(
            output_modalities=[MultiModality.AUDIO, MultiModality.TEXT],
            enable_turn_detection=False,
            **session_kwargs,
        )
        updated = callback.wait_for("session.updated")
        assert updated["session"]["id"] == created["session"]["id"]
        assert updated["session"]["turn_detection"] is None
        pcm = one_second_of_audio()
        for i in range(0, len(pcm), 1600):  # 100 ms chunks, base64, as the SDK samples do
            conversation.append_audio(base64.b64encode(pcm[i : i + 1600].tobytes()).decode())
        conversation.commit()
        conversation.create_response()
        done = callback.wait_for("response.done")
    finally:
        conversation.close()

    assert callback.of("error") == []
    assert callback.of("input_audio_buffer.committed")
    assert callback.of("conversation.item.input_audio_transcription.completed")
    deltas = callback.of("response.audio.delta")
    assert len(deltas) == 10  # the 1 s echoed at 24 kHz, in deltas of 100 ms
    usage = done["response"]["usage"]
    assert done["response"]["status"] == "completed"
    assert usage["input_tokens_details"]["audio_tokens"] == round(1.0 * 12.5)
    assert usage["output_tokens_details"]["audio_tokens"] == round(1.0 * 12.5)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert conversation.get_last_response_id() == done["response"]["id"]


def test_sdk_end_session_meets_invalid_event_type(sim: RunningSimulator) -> None:
    """`session.finish` is not an Omni event (docs/protocol.md): the SDK's end_session raises."""
    callback = Collector()
    conversation = OmniRealtimeConversation(
        model=MODEL, callback=callback, url=sim.url, api_key=sim.api_key
    )
    conversation.connect()
    try:
        callback.wait_for("session.created")
        with pytest.raises(RuntimeError, match=r"(?i)invalid event type"):
            conversation.end_session(timeout=5)
    finally:
        if conversation.ws is not None and conversation.ws.sock is not None:
            conversation.close()
