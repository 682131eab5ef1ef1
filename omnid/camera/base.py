"""The one small interface every camera backend implements, and what they share.

As with `omnid.audio` (and gpiozero's `pins/`), the feed and the rest of the daemon code against
`FrameSource` only; each backend (`files`, `picamera2`, `v4l2`) is one file that turns its device
into RGB arrays. Resolution is configured *at the source* in `open()` — the camera's ISP or the
UVC firmware scales for free, while scaling every frame in Python would cost a Pi Zero more CPU
than the JPEG encode itself. The files backend scales once per image file and caches the result.

A source that already holds the picture as a JPEG the service takes (a picture file, a webcam's
MJPEG frame) hands over a `Jpeg` instead of pixels: decoding it only to encode it again was most
of the camera's CPU on a Pi Zero. The feed sends it as it is when it fits the configured box and
the 256 KB base64 limit, and decodes and encodes it the usual way when it does not.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

RGBArray = npt.NDArray[np.uint8]
"""H×W×3 uint8, channels in R, G, B order (whatever order the device delivers, backends convert)."""

SENDABLE_SOF = frozenset({0xC0, 0xC1, 0xC2})
"""Huffman-coded baseline, extended sequential and progressive JPEG: what every decoder takes.
Arithmetic-coded, lossless and hierarchical JPEGs are decoded and encoded again instead."""
_NON_SOF = frozenset({0xC4, 0xC8, 0xCC})  # DHT, JPG, DAC: in the SOF range but not frames


@dataclass(frozen=True, slots=True)
class Jpeg:
    """A picture a source already holds as a JPEG the service can take as it is: 8-bit, grey or
    colour (1 or 3 components: not CMYK), Huffman-coded baseline or progressive, with its Huffman
    tables (some UVC webcams leave the DHT segment out of MJPEG frames and rely on the standard
    ones, which not every decoder supplies) and complete (it ends with the end-of-image marker).
    `width`×`height` is the size its frame header declares: what the service bills.

    Make one with `Jpeg.of(data)`, which checks all that from the headers without decoding.
    Whether it also fits the configured box and the base64 limit is for `encode.fits_as_is`.
    A source must not hand over a JPEG that would need turning upright (EXIF orientation).
    """

    data: bytes = field(repr=False)
    width: int
    height: int

    @classmethod
    def of(cls, data: bytes) -> Jpeg | None:
        """`data` as a `Jpeg` if it is one the service can take as it is (see the class), else
        None: decode it instead. Trailing zero bytes (a UVC buffer's padding) are dropped."""
        end = len(data.rstrip(b"\0"))
        if data[:3] != b"\xff\xd8\xff" or data[end - 2 : end] != b"\xff\xd9":
            return None
        size: tuple[int, int] | None = None
        tables = False
        pos = 2
        while pos + 4 <= end:
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers, no length
                pos += 2
                continue
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            if length < 2:
                return None
            if marker == 0xDA:  # start of the first scan: everything it needs came before
                if size is None or not tables:
                    return None
                return cls(data if end == len(data) else data[:end], *size)
            if marker == 0xC4:
                tables = True
            elif 0xC0 <= marker <= 0xCF and marker not in _NON_SOF:
                segment = data[pos + 4 : pos + 2 + length]
                if marker not in SENDABLE_SOF or size is not None or len(segment) < 6:
                    return None
                bits, components = segment[0], segment[5]
                height = int.from_bytes(segment[1:3], "big")
                width = int.from_bytes(segment[3:5], "big")
                if bits != 8 or components not in (1, 3) or not width or not height:
                    return None
                size = (width, height)
            pos += 2 + length
        return None


Picture = RGBArray | Jpeg
"""What a source's `capture()` returns: pixels, or a JPEG it already had."""


def picture_size(picture: Picture) -> tuple[int, int]:
    """(width, height) of either kind of picture."""
    if isinstance(picture, Jpeg):
        return picture.width, picture.height
    return picture.shape[1], picture.shape[0]


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
    def capture(self) -> Picture:
        """Return the current picture as an H×W×3 uint8 RGB array (may be read-only: the caller
        never writes to it), or as a `Jpeg` when the device or file already holds one that fits
        the size given to `open()` and the service's limit (`encode.fits_as_is`). Block at most as
        long as the device needs for one frame."""

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
