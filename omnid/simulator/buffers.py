"""The input buffer (audio + images since the last commit/clear) and committed pending input.

Kept apart from the session so that the buffer rules of docs/protocol.md — PCM16 in whole samples,
images only after audio in the *same* buffer, at most one image per second across the session —
sit in one place that the future VAD auto-commit uses exactly like a manual commit.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omnid.models import WIRE_INPUT_RATE
from omnid.simulator.events import ProtocolError
from omnid.simulator.images import (
    APPEND_IMAGE_BEFORE_AUDIO,
    MIN_IMAGE_INTERVAL_S,
    ImageInfo,
    check_image,
)

EMPTY_COMMIT = (
    "Error committing input audio buffer: buffer too small. "
    "Expected at least 1 sample of audio, but buffer only has 0.00ms of audio."
)


@dataclass
class PendingInput:
    """A committed user item (or a tool result) that no response has answered yet."""

    item_id: str
    audio: bytes = b""
    images: list[ImageInfo] = field(default_factory=list)
    tool_output: str | None = None  # a function_call_output item: its output…
    call_id: str | None = None  # …and the call it answers

    @property
    def seconds(self) -> float:
        return len(self.audio) / 2 / WIRE_INPUT_RATE


class InputBuffer:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._audio = bytearray()
        self._images: list[ImageInfo] = []
        self._last_image_at: float | None = None  # not reset by commit: the rate is per session

    def __len__(self) -> int:
        """Bytes of audio buffered."""
        return len(self._audio)

    def append_audio(self, b64: Any) -> bytes:
        """Decode and buffer one `input_audio_buffer.append`; returns the PCM16 bytes."""
        pcm = decode_pcm16(b64)
        self._audio += pcm
        return pcm

    def append_image(self, b64: Any) -> ImageInfo:
        if not self._audio:
            raise ProtocolError(APPEND_IMAGE_BEFORE_AUDIO, param="image")
        info = check_image(b64)
        now = self._clock()
        if self._last_image_at is not None and now - self._last_image_at < MIN_IMAGE_INTERVAL_S:
            raise ProtocolError("Too many images: at most one image per second.", param="image")
        self._last_image_at = now
        self._images.append(info)
        return info

    def take(self, item_id: str) -> PendingInput:
        """Empty the buffer into a committed item (the commit of audio and images together)."""
        if not self._audio:
            raise ProtocolError(EMPTY_COMMIT, code="input_audio_buffer_commit_empty")
        pending = PendingInput(item_id, bytes(self._audio), self._images)
        self.clear()
        return pending

    def clear(self) -> None:
        self._audio = bytearray()
        self._images = []


def decode_pcm16(audio: Any) -> bytes:
    if not isinstance(audio, str):
        raise ProtocolError("audio must be a base64 string", param="audio")
    try:
        pcm = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("Invalid audio: not valid base64.", param="audio") from exc
    if len(pcm) % 2:
        raise ProtocolError(
            f"Invalid audio: PCM16 needs an even number of bytes, got {len(pcm)}.", param="audio"
        )
    return pcm
