"""The load workload driven by the official DashScope SDK, the way its realtime samples do it.

Run as its own process (`python -m bench.sdk_client …`, key in $OMNID_BENCH_API_KEY) so the
benchmark can read its CPU time and RSS from /proc exactly as it reads the daemon's. What the
samples do, and so what this does:

- `OmniRealtimeConversation(...).connect()`, then `update_session(...)` with server VAD;
- the main loop reads the microphone 3200 frames (200 ms at 16 kHz) at a time — here from the same
  WAV the daemon's `wav:` microphone plays, paced in real time the way a blocking `mic.read()`
  paces it — and calls `append_audio(base64)` for each chunk as it is captured;
- once a second a camera frame is sent with `append_video(base64)`: the frames are the same files
  the daemon's `files` camera shows, read as each comes round (standing in for a camera's new
  frame); a JPEG file is sent as it is, its bytes base64-encoded (as the daemon sends a JPEG file
  that fits), and only a picture in another format is decoded, scaled to 640×480 and encoded at
  the daemon's `jpeg_quality` (as the daemon does);
- replies go to the samples' `B64PCMPlayer`: a decoder thread base64-decodes each delta into
  100 ms chunks, a player thread writes them out in real time (a blocking sound-card write; here
  a WAV file), and `speech_started` clears its queues (barge-in).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import queue
import threading
import time
import wave
from pathlib import Path
from typing import Any

from dashscope.audio.qwen_omni import (
    MultiModality,
    OmniRealtimeCallback,
    OmniRealtimeConversation,
)
from PIL import Image

IN_RATE, OUT_RATE = 16_000, 24_000
MIC_CHUNK = 3200  # frames per mic_stream.read() in the SDK's samples
KEY_ENV = "OMNID_BENCH_API_KEY"


class WavPlayer:
    """The samples' B64PCMPlayer with a WAV file where the sound card was."""

    def __init__(self, path: Path, chunk_ms: int = 100) -> None:
        self.chunk_bytes = chunk_ms * OUT_RATE * 2 // 1000
        self.out = wave.open(str(path), "wb")  # noqa: SIM115 - closed in shutdown()
        self.out.setnchannels(1)
        self.out.setsampwidth(2)
        self.out.setframerate(OUT_RATE)
        self.b64: queue.Queue[str] = queue.Queue()
        self.raw: queue.Queue[bytes] = queue.Queue()
        self.status = "playing"
        self.decoded = 0
        self.threads = [
            threading.Thread(target=self.decoder_loop, daemon=True),
            threading.Thread(target=self.player_loop, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def decoder_loop(self) -> None:
        while self.status != "stop":
            data = None
            with contextlib.suppress(queue.Empty):
                data = self.b64.get(timeout=0.1)
            if data is None:
                continue
            raw = base64.b64decode(data)
            self.decoded += len(raw) // 2
            for i in range(0, len(raw), self.chunk_bytes):
                self.raw.put(raw[i : i + self.chunk_bytes])

    def player_loop(self) -> None:
        due = 0.0
        while self.status != "stop":
            chunk = None
            with contextlib.suppress(queue.Empty):
                chunk = self.raw.get(timeout=0.1)
            if chunk is None:
                continue
            now = time.monotonic()
            due = max(due, now)
            self.out.writeframes(chunk)
            due += len(chunk) / 2 / OUT_RATE
            time.sleep(max(0.0, due - time.monotonic()))  # a blocking write to the device

    def cancel_playing(self) -> None:
        self.b64.queue.clear()
        self.raw.queue.clear()

    def add_data(self, data: str) -> None:
        self.b64.put(data)

    def shutdown(self) -> None:
        self.status = "stop"
        for t in self.threads:
            t.join()
        self.out.close()


class Callback(OmniRealtimeCallback):
    def __init__(self, player: WavPlayer) -> None:
        self.player = player
        self.counts: dict[str, int] = {}
        self.updated = threading.Event()

    def on_event(self, message: Any) -> None:  # the SDK passes the parsed dict
        kind = message.get("type", "")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "response.audio.delta":
            self.player.add_data(message["delta"])
        elif kind == "input_audio_buffer.speech_started":
            self.player.cancel_playing()
        elif kind == "session.updated":
            self.updated.set()


def frame_paths(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def load_frame(path: Path, width: int, height: int) -> Image.Image:
    with Image.open(path) as img:
        frame = img.convert("RGB")
    frame.thumbnail((width, height))
    return frame


def jpeg_b64(frame: Image.Image, quality: int) -> str:
    buf = io.BytesIO()
    frame.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def frame_b64(path: Path, quality: int) -> str:
    """A JPEG file's bytes as they are, base64; any other picture encoded as a 640×480 JPEG."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return base64.b64encode(path.read_bytes()).decode("ascii")
    return jpeg_b64(load_frame(path, 640, 480), quality)


def main() -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--wav", type=Path, required=True, help="16 kHz mono microphone recording")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="where the replies are written")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--quality", type=int, default=80, help="for pictures that are not JPEG")
    p.add_argument("--chunk", type=int, default=MIC_CHUNK, help="frames per microphone read")
    args = p.parse_args()

    mic = wave.open(str(args.wav), "rb")  # noqa: SIM115 - read as a microphone would deliver it
    frames = frame_paths(args.images)
    player = WavPlayer(args.out)
    callback = Callback(player)
    conversation = OmniRealtimeConversation(
        model=args.model, callback=callback, url=args.url, api_key=os.environ[KEY_ENV]
    )
    conversation.connect()
    conversation.update_session(
        output_modalities=[MultiModality.AUDIO, MultiModality.TEXT],
        enable_input_audio_transcription=True,
        input_audio_transcription_model="qwen3-asr-flash-realtime",
        enable_turn_detection=True,
        turn_detection_type="server_vad",
        turn_detection_threshold=0.5,
        turn_detection_silence_duration_ms=800,
    )
    if not callback.updated.wait(10):
        raise SystemExit("sdk client: no session.updated")
    print("sdk client: streaming", flush=True)
    chunk_bytes = args.chunk * 2
    start = time.monotonic()
    next_frame, sent_images, k = start, 0, 0
    while time.monotonic() - start < args.seconds:
        due = start + (k + 1) * args.chunk / IN_RATE  # mic.read() returns once it has the chunk
        time.sleep(max(0.0, due - time.monotonic()))
        audio = mic.readframes(args.chunk)
        audio += bytes(chunk_bytes - len(audio))  # silence after the file's end
        conversation.append_audio(base64.b64encode(audio).decode("ascii"))
        k += 1
        if frames and time.monotonic() >= next_frame:
            conversation.append_video(frame_b64(frames[sent_images % len(frames)], args.quality))
            sent_images += 1
            # Once a second; never closer than the service's limit after a late loop turn.
            next_frame = max(next_frame + 1.0, time.monotonic() + 0.95)
    conversation.close()
    mic.close()
    player.shutdown()
    summary = {
        "chunks": k,
        "images": sent_images,
        "responses": callback.counts.get("response.done", 0),
        "errors": callback.counts.get("error", 0),
        "decoded_samples": player.decoded,
    }
    print("sdk client: done " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
