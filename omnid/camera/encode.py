"""RGB array → JPEG within the service's image limit (docs/protocol.md, "Images").

Why Pillow and not simplejpeg: the `files` source needs a PNG and JPEG decoder and a good
downscaler anyway, Pillow's wheels bundle libjpeg-turbo (so encoding is as fast: measured here
1.1 ms for a 640×480 camera-like frame at quality 80, simplejpeg 0.9 ms), it has wheels for
aarch64 and armv7l on PyPI and piwheels, and Raspberry Pi OS already installs it as a dependency of
python3-picamera2. One well-kept library instead of two.

The rule that matters: an image is refused by the service when its base64 form exceeds 256 KB. A
camera frame at 640×480 is usually 30–80 KB, but a noisy, dark or very detailed scene can be five
times that, so the encoder tries the configured quality, then lower qualities in steps down to a
floor, and only then halves the dimensions (fewer pixels cost the model more than JPEG artefacts
do) — and it never returns bytes that do not fit: if nothing fits it returns None.

A source's ready JPEG (`base.Jpeg`) skips all of that when `fits_as_is` says so: it is sent
byte for byte, at whatever quality it was made. One that does not fit is decoded here
(`decode_jpeg`) and goes the same way as pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from omnid.camera.base import Jpeg, RGBArray, fit_within

MAX_B64_BYTES = 256 * 1024
QUALITY_FLOOR = 40
QUALITY_STEP = 10
MIN_SIDE = 32
"""Never halve below this (the config's own minimum width/height): a smaller picture is useless."""
HOPELESS = 2.5
"""An attempt this many times over the limit cannot be saved by the remaining quality steps
(quality 80 → 40 roughly halves a JPEG): skip straight to the floor, then to halving."""


def b64_len(n: int) -> int:
    """Length of the base64 encoding of `n` bytes (padding included): 4·ceil(n/3)."""
    return 4 * math.ceil(n / 3)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One encode tried on the way to a frame that fits (for tests and debug logs)."""

    width: int
    height: int
    quality: int
    nbytes: int
    b64_bytes: int
    fits: bool


@dataclass(frozen=True, slots=True)
class Encoded:
    jpeg: bytes
    width: int
    height: int
    quality: int
    scaled: bool
    """True when the input was larger than the requested box and was scaled here, in Python
    (a source that ignores its configured size: worth one warning from the caller)."""


def fits_as_is(jpeg: Jpeg, max_size: tuple[int, int], max_b64: int = MAX_B64_BYTES) -> bool:
    """True when `jpeg` can be sent as it is: within the `max_size` box (the configured camera
    width and height) and at most `max_b64` bytes in base64."""
    max_width, max_height = max_size
    return (
        jpeg.width <= max_width and jpeg.height <= max_height and b64_len(len(jpeg.data)) <= max_b64
    )


def decode_jpeg(jpeg: Jpeg, max_size: tuple[int, int]) -> RGBArray:
    """A JPEG that cannot go as it is, as RGB pixels for `encode_frame`; one larger than the box
    is decoded at a reduced DCT scale (1/2, 1/4, 1/8) that is still at least the box."""
    with Image.open(io.BytesIO(jpeg.data)) as img:
        img.draft("RGB", max_size)
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8)


def quality_ladder(quality: int, floor: int = QUALITY_FLOOR, step: int = QUALITY_STEP) -> list[int]:
    """`quality`, then `step` lower each time, ending exactly at `floor` (or just `quality` when it
    is already at or below the floor)."""
    if quality <= floor:
        return [quality]
    return [*range(quality, floor, -step), floor]


def encode_frame(
    rgb: RGBArray,
    *,
    quality: int,
    max_size: tuple[int, int] | None = None,
    max_b64: int = MAX_B64_BYTES,
    floor: int = QUALITY_FLOOR,
    trace: list[Attempt] | None = None,
) -> Encoded | None:
    """Encode `rgb` (H×W×3 uint8) as a JPEG that fits within `max_size` and whose base64 form is
    at most `max_b64` bytes; None if even the smallest size at the floor quality does not fit.

    Every attempt is appended to `trace` when given, so a caller (or test) can see that quality
    was lowered before the size was.
    """
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"encode_frame takes H×W×3 uint8 RGB, not {arr.dtype} {arr.shape}")
    img = Image.fromarray(np.ascontiguousarray(arr), "RGB")
    scaled = False
    if max_size is not None:
        size = fit_within(img.width, img.height, *max_size)
        if size != img.size:
            img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
            scaled = True
    ladder = quality_ladder(quality, floor)
    while True:
        i = 0
        while i < len(ladder):
            q = ladder[i]
            jpeg = _jpeg(img, q)
            n64 = b64_len(len(jpeg))
            fits = n64 <= max_b64
            if trace is not None:
                trace.append(Attempt(img.width, img.height, q, len(jpeg), n64, fits))
            if fits:
                return Encoded(jpeg, img.width, img.height, q, scaled)
            i = len(ladder) - 1 if n64 > HOPELESS * max_b64 and i < len(ladder) - 1 else i + 1
        if min(img.width, img.height) // 2 < MIN_SIDE:
            return None
        img = img.reduce(2)


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
