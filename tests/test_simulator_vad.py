"""The simulator's server VAD against a plain websocket-client peer.

Audio is sent much faster than real time: the detector works on the audio timeline, not on wall
time, so every boundary below is exact to the sample that was sent, and the file runs in seconds.
Truths are known by construction (tone bursts placed at given offsets) or, for the recorded
sample, measured independently at 5 ms resolution.
"""

from __future__ import annotations

import base64
import json
import struct
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import soxr
import websocket

from omnid.simulator import RunningSimulator, start_in_thread
from omnid.simulator.vad import MIN_SPEECH_MS, threshold_dbfs

MODEL = "qwen3-omni-flash-realtime"
RATE = 16000
SAMPLE_WAV = Path(__file__).resolve().parent.parent / "omnid" / "data" / "sample.wav"
TOLERANCE_MS = 60
Event = dict[str, Any]
STARTED = "input_audio_buffer.speech_started"

RESPONSE_ORDER = [
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
]
RESPONSE_TAIL = [
    "response.audio_transcript.done",
    "response.audio.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]


@pytest.fixture
def make_sim() -> Iterator[Callable[..., RunningSimulator]]:
    started: list[RunningSimulator] = []

    def make(**options: Any) -> RunningSimulator:
        started.append(start_in_thread(**{"pace": 0, "first_audio_ms": 0, **options}))
        return started[-1]

    yield make
    while Peer.opened:
        Peer.opened.pop().close()
    for sim in started:
        sim.stop()


class Peer:
    """One websocket-client connection in VAD mode; `make_sim` closes it after the test."""

    opened: ClassVar[list[Peer]] = []

    def __init__(self, sim: RunningSimulator, **turn_detection: Any) -> None:
        Peer.opened.append(self)
        self.ws = websocket.create_connection(
            f"{sim.url}?model={MODEL}",
            header=[f"Authorization: Bearer {sim.api_key}"],
            timeout=5,
            skip_utf8_validation=True,
        )
        assert self.recv()["type"] == "session.created"
        td = {"type": "server_vad", "prefix_padding_ms": 300, **turn_detection}
        self.send("session.update", session={"turn_detection": td})
        updated = self.recv()
        assert updated["type"] == "session.updated", updated
        self.session: Event = updated["session"]

    def send(self, kind: str, **fields: Any) -> None:
        self.ws.send(json.dumps({"type": kind, **fields}))

    def recv(self) -> Event:
        event: Event = json.loads(self.ws.recv())
        return event

    def until(self, kind: str, count: int = 1) -> list[Event]:
        """Events up to and including the `count`-th one of `kind`."""
        events: list[Event] = []
        while sum(e["type"] == kind for e in events) < count:
            events.append(self.recv())
        return events

    def append(self, pcm: np.ndarray, chunk_ms: int = 100) -> None:
        step = RATE * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            audio = base64.b64encode(pcm[i : i + step].astype("<i2").tobytes()).decode()
            self.send("input_audio_buffer.append", audio=audio)

    def nothing_pending(self) -> list[Event]:
        """Send a clear; return what came before `cleared` (the server handles events in order)."""
        self.send("input_audio_buffer.clear")
        events = self.until("input_audio_buffer.cleared")
        return events[:-1]

    def close(self) -> None:
        self.ws.close(timeout=0.2)


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def tone(ms: int, hz: float = 300.0, amplitude: float = 6000.0) -> np.ndarray:
    """A tone burst with 5 ms ramps (no spectral splash), −18 dBFS at the default amplitude."""
    n = RATE * ms // 1000
    x = amplitude * np.sin(2 * np.pi * hz * np.arange(n) / RATE)
    ramp = min(80, n // 2)
    x[:ramp] *= np.linspace(0, 1, ramp)
    x[n - ramp :] *= np.linspace(1, 0, ramp)
    return x.astype(np.int16)


def noise(ms: int, dbfs: float, seed: int = 3) -> np.ndarray:
    rms = 32768 * 10 ** (dbfs / 20)
    rng = np.random.default_rng(seed)
    return (rms * rng.standard_normal(RATE * ms // 1000)).astype(np.int16)


def sample_speech() -> np.ndarray:
    with wave.open(str(SAMPLE_WAV)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def kinds(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e["type"] == kind]


def echoed(events: list[Event]) -> np.ndarray:
    chunks = [base64.b64decode(e["delta"]) for e in of(events, "response.audio.delta")]
    return np.frombuffer(b"".join(chunks), dtype="<i2")


def correlation(out: np.ndarray, segment: np.ndarray) -> float:
    expected = np.asarray(soxr.resample(segment, RATE, 24000), dtype=float)
    n = min(len(out), len(expected))
    a, b = out[:n].astype(float), expected[:n]
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def ms_slice(pcm: np.ndarray, start_ms: int, end_ms: int) -> np.ndarray:
    return pcm[start_ms * RATE // 1000 : end_ms * RATE // 1000]


def assert_full_vad_turn(events: list[Event]) -> tuple[Event, Event]:
    """The documented VAD order, one item id throughout; returns (speech_started, stopped)."""
    vad = [k for k in kinds(events) if not k.startswith("conversation.item.input_audio_trans")]
    assert vad[:4] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
    ], vad
    assert vad[4:8] == RESPONSE_ORDER and vad[-5:] == RESPONSE_TAIL, vad
    assert set(vad[8:-5]) == {"response.audio_transcript.delta", "response.audio.delta"}
    started = of(events, "input_audio_buffer.speech_started")[0]
    stopped = of(events, "input_audio_buffer.speech_stopped")[0]
    committed = of(events, "input_audio_buffer.committed")[0]
    user = of(events, "conversation.item.created")[0]["item"]
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == user["id"]
    assert user["role"] == "user"
    assert events[-1]["response"]["status"] == "completed"
    return started, stopped


# -- one turn: boundaries, order, echo ------------------------------------------------------------


@pytest.mark.parametrize("lead_ms", [700, 1013])  # frame-aligned and not
def test_tone_burst_is_one_turn_with_accurate_boundaries(
    make_sim: Callable[..., RunningSimulator], lead_ms: int
) -> None:
    peer = Peer(make_sim(), silence_duration_ms=500)
    pcm = np.concatenate([silence(lead_ms), tone(1000), silence(900)])
    peer.append(pcm, chunk_ms=30)
    events = peer.until("response.done")
    started, stopped = assert_full_vad_turn(events)
    assert abs(started["audio_start_ms"] - (lead_ms - 300)) <= TOLERANCE_MS
    assert abs(stopped["audio_end_ms"] - (lead_ms + 1000)) <= TOLERANCE_MS

    segment = ms_slice(pcm, started["audio_start_ms"], stopped["audio_end_ms"])
    out = echoed(events)
    assert abs(len(out) - len(segment) * 3 // 2) <= 48  # the committed segment, at 24 kHz
    assert correlation(out, segment) >= 0.9
    assert peer.nothing_pending() == []  # the trailing silence started nothing


def test_recorded_speech_is_one_turn_with_transcription(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    peer = Peer(make_sim(), threshold=0.5, silence_duration_ms=800)
    speech = sample_speech()
    lead = 500
    pcm = np.concatenate([silence(lead), speech, silence(1500)])
    peer.append(pcm)
    events = peer.until("response.done")
    started, stopped = assert_full_vad_turn(events)

    # The truth, measured apart from the detector: the first and last 5 ms window at or above
    # the threshold's level.
    windows = speech[: len(speech) // 80 * 80].reshape(-1, 80).astype(float)
    level = 10 * np.log10(np.mean(windows**2, axis=1) / 32768**2 + 1e-12)
    loud = np.flatnonzero(level >= threshold_dbfs(0.5))
    first_ms, last_ms = lead + loud[0] * 5, lead + (loud[-1] + 1) * 5
    assert abs(started["audio_start_ms"] - (first_ms - 300)) <= TOLERANCE_MS
    assert abs(stopped["audio_end_ms"] - last_ms) <= TOLERANCE_MS
    segment = ms_slice(pcm, started["audio_start_ms"], stopped["audio_end_ms"])
    assert correlation(echoed(events), segment) >= 0.9

    # Transcription: previews between started and stopped, the final text after the commit.
    order = kinds(events)
    deltas = of(events, "conversation.item.input_audio_transcription.delta")
    assert deltas and all(d["item_id"] == started["item_id"] for d in deltas)
    assert all(isinstance(d["text"], str) and isinstance(d["stash"], str) for d in deltas)
    first_delta = order.index("conversation.item.input_audio_transcription.delta")
    assert order.index(STARTED) < first_delta < order.index("input_audio_buffer.speech_stopped")
    completed = of(events, "conversation.item.input_audio_transcription.completed")
    seconds = (stopped["audio_end_ms"] - started["audio_start_ms"]) / 1000
    assert completed[0]["transcript"] == f"({seconds:.1f} s of speech)"
    assert order.index("input_audio_buffer.committed") < order.index(
        "conversation.item.input_audio_transcription.completed"
    )


# -- what must not start a turn -------------------------------------------------------------------


def test_silence_alone_starts_nothing(make_sim: Callable[..., RunningSimulator]) -> None:
    peer = Peer(make_sim(), threshold=-1.0)  # even at the most sensitive setting
    peer.append(silence(3000))
    assert peer.nothing_pending() == []


def test_a_click_starts_nothing(make_sim: Callable[..., RunningSimulator]) -> None:
    peer = Peer(make_sim(), silence_duration_ms=300)
    click = tone(20, hz=1000, amplitude=20000)
    short = tone(MIN_SPEECH_MS - 40, amplitude=20000)  # a loud but too-short burst
    peer.append(np.concatenate([silence(500), click, silence(800), short, silence(800)]))
    assert peer.nothing_pending() == []


def test_the_threshold_decides_whether_noise_is_speech(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    sim = make_sim()
    hum = np.concatenate([silence(300), noise(1000, dbfs=-50), silence(1000)])
    deaf = Peer(sim, threshold=0.5, silence_duration_ms=500)  # line at −40 dBFS
    keen = Peer(sim, threshold=-0.5, silence_duration_ms=500)  # line at −60 dBFS
    deaf.append(hum)
    assert deaf.nothing_pending() == []
    keen.append(hum)
    started, stopped = assert_full_vad_turn(keen.until("response.done"))
    assert abs(started["audio_start_ms"] - 0) <= TOLERANCE_MS  # 300 ms lead − 300 ms padding
    assert abs(stopped["audio_end_ms"] - 1300) <= TOLERANCE_MS


# -- silence_duration_ms --------------------------------------------------------------------------


@pytest.mark.parametrize(("silence_ms", "turns"), [(1500, 1), (300, 2)])
def test_silence_duration_decides_whether_a_pause_splits_the_utterance(
    make_sim: Callable[..., RunningSimulator], silence_ms: int, turns: int
) -> None:
    peer = Peer(make_sim(), silence_duration_ms=silence_ms)
    pcm = np.concatenate([silence(500), tone(600), silence(600), tone(600, hz=450), silence(2000)])
    peer.append(pcm)
    events = peer.until("input_audio_buffer.speech_stopped", turns)
    events += peer.until("response.done")
    while of(events, "response.done")[-1]["response"]["status"] != "completed":
        events += peer.until("response.done")  # with 2 turns the first answer may be cut off
    events += peer.nothing_pending()
    starts = of(events, "input_audio_buffer.speech_started")
    stops = of(events, "input_audio_buffer.speech_stopped")
    assert len(starts) == len(stops) == len(of(events, "input_audio_buffer.committed")) == turns
    assert abs(stops[-1]["audio_end_ms"] - 2300) <= TOLERANCE_MS
    if turns == 2:
        assert abs(stops[0]["audio_end_ms"] - 1100) <= TOLERANCE_MS
        # The second turn's padding reaches into the pause but never into the first turn.
        assert stops[0]["audio_end_ms"] <= starts[1]["audio_start_ms"]
        assert abs(starts[1]["audio_start_ms"] - (1700 - 300)) <= TOLERANCE_MS


# -- barge-in -------------------------------------------------------------------------------------


def test_speech_during_the_response_interrupts_it_and_starts_a_second_turn(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    peer = Peer(make_sim(pace=1.0), silence_duration_ms=300)  # answers play in real time
    first, second = tone(1500, hz=300), tone(600, hz=520)
    peer.append(np.concatenate([silence(400), first, silence(500)]))
    turn1 = peer.until("response.audio.delta")  # the answer is playing
    assert kinds(turn1).count("input_audio_buffer.committed") == 1

    peer.append(second)  # the user talks over the answer
    barge = peer.until("response.done")
    started = of(barge, "input_audio_buffer.speech_started")
    assert len(started) == 1
    assert kinds(barge).index(STARTED) < kinds(barge).index("response.audio_transcript.done")
    assert [k for k in kinds(barge) if k.endswith(".done")] == RESPONSE_TAIL
    done = barge[-1]["response"]
    assert done["status"] == "cancelled" and done["output"][0]["status"] == "incomplete"
    played = len(echoed(turn1 + barge)) / 24000
    assert played < 1.5  # cut well before the 1.8 s answer ended

    peer.send("response.create")  # the user is still speaking
    assert peer.recv()["error"]["message"] == "Cannot create response while user is speaking"
    peer.send("response.cancel")  # the server already stopped its answer
    assert peer.recv()["error"]["message"] == "Conversation has none active response"

    peer.append(silence(500))
    turn2 = peer.until("response.done")
    stopped = of(turn2, "input_audio_buffer.speech_stopped")[0]
    assert stopped["item_id"] == started[0]["item_id"]
    assert turn2[-1]["response"]["status"] == "completed"
    end_ms = 400 + 1500 + 500 + 600
    assert abs(stopped["audio_end_ms"] - end_ms) <= TOLERANCE_MS
    pcm = np.concatenate([silence(400), first, silence(500), second, silence(500)])
    segment = ms_slice(pcm, started[0]["audio_start_ms"], stopped["audio_end_ms"])
    assert correlation(echoed(turn2), segment) >= 0.9  # the second utterance only


# -- long sessions ------------------------------------------------------------------------------


def tiny_jpeg(width: int, height: int) -> bytes:
    """Just enough JPEG for the image rules: SOI, SOF0 with the size, EOI."""
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof0 + b"\xff\xd9"


def test_long_silence_is_trimmed_but_the_timeline_and_images_survive(
    make_sim: Callable[..., RunningSimulator],
) -> None:
    """40 s between turns: the buffer is trimmed past 30 s of silence; nothing visible changes."""
    peer = Peer(make_sim(), silence_duration_ms=400)
    peer.append(silence(1000), chunk_ms=500)
    peer.send("input_image_buffer.append", image=base64.b64encode(tiny_jpeg(64, 64)).decode())
    peer.append(silence(39_000), chunk_ms=500)
    burst = tone(700)
    peer.append(np.concatenate([burst, silence(600)]))
    events = peer.until("response.done")
    started, stopped = assert_full_vad_turn(events)
    assert abs(started["audio_start_ms"] - (40_000 - 300)) <= TOLERANCE_MS
    assert abs(stopped["audio_end_ms"] - 40_700) <= TOLERANCE_MS
    segment = np.concatenate([silence(40_000), burst])[started["audio_start_ms"] * 16 :]
    assert correlation(echoed(events), segment) >= 0.9
    usage = events[-1]["response"]["usage"]
    assert usage["input_tokens_details"]["image_tokens"] == 4  # the image sent 39 s earlier
    seconds = (stopped["audio_end_ms"] - started["audio_start_ms"]) / 1000
    assert usage["input_tokens_details"]["audio_tokens"] == round(seconds * 12.5)


# -- manual commit --------------------------------------------------------------------------------


def test_manual_commit_is_refused_in_vad_mode(make_sim: Callable[..., RunningSimulator]) -> None:
    peer = Peer(make_sim(), silence_duration_ms=300)
    peer.append(silence(200))
    peer.send("input_audio_buffer.commit")
    error = peer.recv()
    assert error["type"] == "error" and "VAD" in error["error"]["message"]
    peer.append(np.concatenate([tone(500), silence(400)]))  # the session still takes turns
    assert_full_vad_turn(peer.until("response.done"))
