"""The official DashScope SDK completes a server-VAD turn against the simulator without an error.

The SDK's VAD settings are its own defaults (threshold 0.2, prefix_padding_ms 300, silence 800 ms),
sent by `update_session(enable_turn_detection=True, …)`; the audio is the bundled recorded sample
then 1.5 s of silence, in 100 ms base64 chunks as the SDK's samples send a microphone. Sent faster
than real time: the simulator's VAD runs on the audio timeline.
"""

from __future__ import annotations

import base64
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dashscope.audio.qwen_omni import (
    MultiModality,
    OmniRealtimeCallback,
    OmniRealtimeConversation,
)

from omnid.simulator import RunningSimulator, start_in_thread

MODEL = "qwen3-omni-flash-realtime"
SAMPLE_WAV = Path(__file__).resolve().parent.parent / "omnid" / "data" / "sample.wav"
CHUNK = 1600  # 100 ms at 16 kHz


class Collector(OmniRealtimeCallback):
    """Every event the SDK hands over, with a wait that fails with what did arrive."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()

    def on_event(self, message: Any) -> None:  # the SDK passes the parsed dict
        with self._changed:
            self.events.append(message)
            self._changed.notify_all()

    def wait_for(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        with self._changed:
            found = self._changed.wait_for(lambda: bool(self.of(kind)), timeout)
            got = [e.get("type") for e in self.events]
        assert found, f"no {kind} within {timeout} s; got {got}"
        return self.of(kind)[0]

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.events if e.get("type") == kind]


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    running = start_in_thread(pace=0, first_audio_ms=0)
    yield running
    running.stop()


def sample_then_silence() -> np.ndarray:
    with wave.open(str(SAMPLE_WAV)) as w:
        speech = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return np.concatenate([speech, np.zeros(16000 * 3 // 2, dtype="<i2")])


def test_sdk_completes_a_server_vad_turn(sim: RunningSimulator) -> None:
    callback = Collector()
    conversation = OmniRealtimeConversation(
        model=MODEL, callback=callback, url=sim.url, api_key=sim.api_key
    )
    conversation.connect()
    try:
        callback.wait_for("session.created")
        conversation.update_session(
            output_modalities=[MultiModality.AUDIO, MultiModality.TEXT],
            enable_turn_detection=True,
            turn_detection_type="server_vad",
        )
        td = callback.wait_for("session.updated")["session"]["turn_detection"]
        assert (td["threshold"], td["prefix_padding_ms"]) == (0.2, 300)
        pcm = sample_then_silence()
        for i in range(0, len(pcm), CHUNK):
            conversation.append_audio(base64.b64encode(pcm[i : i + CHUNK].tobytes()).decode())
        done = callback.wait_for("response.done")
    finally:
        conversation.close()

    assert callback.of("error") == []
    started = callback.of("input_audio_buffer.speech_started")
    stopped = callback.of("input_audio_buffer.speech_stopped")
    assert len(started) == len(stopped) == 1  # the 0.36 s pause in the sample is not a turn
    assert started[0]["item_id"] == stopped[0]["item_id"]
    assert callback.of("input_audio_buffer.committed")[0]["item_id"] == stopped[0]["item_id"]
    assert callback.of("conversation.item.input_audio_transcription.delta")
    assert callback.of("conversation.item.input_audio_transcription.completed")
    assert done["response"]["status"] == "completed"
    segment_s = (stopped[0]["audio_end_ms"] - started[0]["audio_start_ms"]) / 1000
    assert 3.5 <= segment_s <= 4.3  # ~3.7 s of speech plus the 0.3 s prefix padding
    usage = done["response"]["usage"]
    assert usage["input_tokens_details"]["audio_tokens"] == round(segment_s * 12.5)
    deltas = callback.of("response.audio.delta")
    out_s = sum(len(base64.b64decode(d["delta"])) for d in deltas) / 2 / 24000
    assert abs(out_s - segment_s) < 0.01  # the committed segment, echoed
    assert conversation.get_last_response_id() == done["response"]["id"]
