"""What the camera costs in tokens, before it costs anything (issue 4, "Cost awareness").

The service bills an image by its pixel size — 1 token per 32×32 tile, 4…1280 per image — while
audio costs 12.5 tokens/s (750/min). A 640×480 frame every second is 300 tokens/s, 24× the
audio: worth saying at start-up, and worth a warning when images dominate. Every sent frame fits
within `camera.width`×`camera.height`, so the configured size prices the worst case.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnid.config_schema import CameraSection
from omnid.models import AUDIO_TOKENS_PER_S, image_tokens

AUDIO_TOKENS_PER_MIN = AUDIO_TOKENS_PER_S * 60
MIN_FRAME_INTERVAL_S = 1.0
"""The service takes at most one image per second, whatever `fps` says."""


def frame_interval_s(fps: float) -> float:
    """Seconds between two frames: 1/fps, but never under the service's 1 s."""
    return max(MIN_FRAME_INTERVAL_S, 1.0 / fps)


def frame_tokens(camera: CameraSection) -> int:
    """Tokens of the largest frame the config allows (the estimate for every frame sent)."""
    return image_tokens(camera.width, camera.height)


@dataclass(frozen=True, slots=True)
class CameraCost:
    tokens_per_frame: int
    frames_per_minute: float
    image_tokens_per_minute: float
    audio_tokens_per_minute: float
    continuous: bool
    """Frames flow whenever the microphone streams, also while nobody talks (`when = "always"`
    in VAD mode, where audio streams all the time)."""

    @property
    def images_dominate(self) -> bool:
        return self.image_tokens_per_minute > self.audio_tokens_per_minute

    def summary(self) -> str:
        """One log line: the worst case next to the audio's cost."""
        ratio = self.image_tokens_per_minute / self.audio_tokens_per_minute
        line = (
            f"camera: up to {self.frames_per_minute:g} frames/min × {self.tokens_per_frame} "
            f"tokens = {self.image_tokens_per_minute:g} image tokens/min, "
            f"{ratio:.1f}× the audio's {self.audio_tokens_per_minute:g}/min"
        )
        if self.continuous:
            line += ", whenever the microphone streams (also in silence)"
        return line


def worst_case_tokens_per_minute(camera: CameraSection, mode: str) -> CameraCost:
    """The most image tokens a minute of streaming can cost with this config.

    `mode` is `session.mode`: it does not change the rate (one frame per interval while frames
    flow, in either mode), but in VAD mode audio streams all the time, so `when = "always"`
    spends it even when the room is silent — `continuous` says so.
    """
    per_frame = frame_tokens(camera)
    per_minute = 60.0 / frame_interval_s(camera.fps)
    return CameraCost(
        tokens_per_frame=per_frame,
        frames_per_minute=round(per_minute, 2),
        image_tokens_per_minute=round(per_minute * per_frame, 1),
        audio_tokens_per_minute=AUDIO_TOKENS_PER_MIN,
        continuous=camera.when == "always" and mode == "vad",
    )
