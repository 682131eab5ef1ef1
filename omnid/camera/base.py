"""The one small interface every camera backend implements, and what they share.

As with `omnid.audio` (and gpiozero's `pins/`), the feed and the rest of the daemon code against
`FrameSource` only; each backend (`files`, `picamera2`, `v4l2`) is one file that turns its device
into RGB arrays. Resolution is configured *at the source* in `open()` — the camera's ISP or the
UVC firmware scales for free, while scaling every frame in Python would cost a Pi Zero more CPU
than the JPEG encode itself. The files backend scales once per image file and caches the result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

RGBArray = npt.NDArray[np.uint8]
"""H×W×3 uint8, channels in R, G, B order (whatever order the device delivers, backends convert)."""


class CameraError(Exception):
    """A source could not be opened or could not deliver a frame; the message says which source
    and why, in words an operator can act on (it ends up in one journal warning)."""


class FrameSource(ABC):
    """A camera the feed's worker thread owns: `open`, then `capture` as often as asked, `close`.

    Only one thread ever calls a source, so backends need no locking. Any method may raise
    (`CameraError` for problems we understand, anything else for the ones we do not); the feed
    turns either into one warning and a retry with backoff, never into a crash.
    """

    name: str = "camera"

    @abstractmethod
    def open(self, width: int, height: int) -> None:
        """Acquire the device and configure it so frames fit within `width`×`height`, keeping the
        device's aspect ratio. Raise `CameraError` if it cannot be used."""

    @abstractmethod
    def capture(self) -> RGBArray:
        """Return the current picture as an H×W×3 uint8 RGB array (may be read-only: the caller
        never writes to it). Block at most as long as the device needs for one frame."""

    @abstractmethod
    def close(self) -> None:
        """Release the device. Idempotent; never raises for a device that is already gone."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def fit_within(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size with `width`:`height`'s aspect ratio that fits within the box, never
    larger than the original (upscaling only adds image tokens, not detail); at least 1×1."""
    if width <= max_width and height <= max_height:
        return width, height
    scale = min(max_width / width, max_height / height)
    return max(1, min(max_width, round(width * scale))), max(
        1, min(max_height, round(height * scale))
    )
