"""The image rules of docs/protocol.md ("Images"), and the JPEG size that usage is billed on.

The service bills an image by its pixel size (`omnid.models.image_tokens`), so the simulator reads
the real dimensions from the JPEG's SOF header instead of trusting anything the client says;
that is also the cheapest honest way to check that the bytes are a JPEG at all.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from omnid.models import image_tokens
from omnid.simulator.events import ProtocolError

MAX_IMAGE_B64_BYTES = 256 * 1024
# "At most one per second". Frames a client sends exactly 1 s apart can arrive a little closer
# after network jitter; 10 % slack keeps such a client legal while a 2 fps one is still refused.
MIN_IMAGE_INTERVAL_S = 0.9
APPEND_IMAGE_BEFORE_AUDIO = "Error append image before append audio."

# SOF0…SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    b64_bytes: int

    @property
    def tokens(self) -> int:
        return image_tokens(self.width, self.height)


def check_image(b64: object) -> ImageInfo:
    """Decode one `input_image_buffer.append` payload or raise the error the service would."""
    if not isinstance(b64, str) or not b64:
        raise ProtocolError("image must be a non-empty base64 string", param="image")
    if len(b64) > MAX_IMAGE_B64_BYTES:
        raise ProtocolError(
            f"Image too large: {len(b64)} bytes after base64, the limit is {MAX_IMAGE_B64_BYTES}.",
            param="image",
        )
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("image is not valid base64", param="image") from exc
    size = jpeg_size(data)
    if size is None:
        raise ProtocolError("Invalid image: only JPEG images are supported.", param="image")
    return ImageInfo(width=size[0], height=size[1], b64_bytes=len(b64))


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF segment, or None if `data` is not a usable JPEG."""
    if len(data) < 4 or data[:3] != b"\xff\xd8\xff":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers, no length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return (width, height) if width and height else None
        if marker == 0xDA or length < 2:  # start of scan before any SOF, or corrupt
            return None
        pos += 2 + length
    return None
