"""Camera frames for the model: sources, JPEG within the service's limits, pacing, and cost.

As with `omnid.audio` (and gpiozero's `pins/`): a small base (`base.FrameSource`), one file per
backend — `files` (a directory of images; tests, demo, replay), `picamera2` (Pi camera modules,
imported lazily: it comes from Raspberry Pi OS), `v4l2` (USB webcams, optional extra
`omnid[v4l2]`) — chosen by `camera.source`. A source returns pixels, or a `Jpeg` it already had
(a picture file, a webcam's MJPEG frame), which is sent as it is when it fits.
`feed.CameraFeed` runs capture and encoding on its own thread; `policy.FramePolicy` is the pure
state machine the conversation thread consults; `cost` prices the config in tokens.

How the conversation uses it (one thread, no blocking):

    feed = open_feed(cfg.camera, inbox.post)        # None when the camera is disabled
    frames = FramePolicy.from_config(cfg.camera, cfg.session.mode, clock)
    ... frames.on_turn_start() / on_turn_end() / on_append() / on_commit() / reset()
    ... if frames.should_request(): feed.request()          # each tick and after appends
    ... on a Frame event: frames.offer(event)
    ... if (f := frames.take()) is not None: session.send(protocol.image_append(f.jpeg))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from omnid.camera.base import CameraError, FrameSource, Jpeg, Picture, RGBArray, fit_within
from omnid.camera.cost import CameraCost, frame_tokens, worst_case_tokens_per_minute
from omnid.camera.policy import FramePolicy
from omnid.camera.sources import make_source
from omnid.config_schema import CameraSection
from omnid.events import Event

if TYPE_CHECKING:
    from omnid.camera.encode import MAX_B64_BYTES, Encoded, b64_len, encode_frame, fits_as_is
    from omnid.camera.feed import CameraFeed

_LAZY = {
    "MAX_B64_BYTES": "encode",
    "Encoded": "encode",
    "b64_len": "encode",
    "encode_frame": "encode",
    "fits_as_is": "encode",
    "CameraFeed": "feed",
}
"""Names from the modules that import Pillow (`encode`, and `feed` through it), imported at first
use: a box without a camera never maps Pillow and its image libraries (about 2 MB; issue 18).
Everything the conversation needs without a camera (`FramePolicy`, the cost) is imported here."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "MAX_B64_BYTES",
    "CameraCost",
    "CameraError",
    "CameraFeed",
    "Encoded",
    "FramePolicy",
    "FrameSource",
    "Jpeg",
    "Picture",
    "RGBArray",
    "b64_len",
    "encode_frame",
    "fit_within",
    "fits_as_is",
    "frame_tokens",
    "list_sources",
    "make_source",
    "open_feed",
    "worst_case_tokens_per_minute",
]


def open_feed(camera: CameraSection, post: Callable[[Event], None]) -> CameraFeed | None:
    """A started feed for the configured source, or None when `camera.enabled` is false.

    Never raises for camera problems: a source that cannot open is reported by the feed (one
    `CameraTrouble` event, one warning) and retried in the background.
    """
    if not camera.enabled:
        return None
    from omnid.camera.feed import CameraFeed  # Pillow: only with a camera

    return CameraFeed(camera, post).start()


def list_sources() -> list[str]:
    """Lines for `omnid devices`: picamera2 cameras, then V4L2 capture devices. Never raises."""
    from omnid.camera.picamera2 import list_cameras
    from omnid.camera.v4l2 import list_devices

    lines: list[str] = []
    for lister in (list_cameras, list_devices):
        try:
            lines.extend(lister())
        except Exception as exc:  # a listing must never take `omnid devices` down
            lines.append(f"{lister.__module__.rsplit('.', 1)[-1]}: cannot list: {exc}")
    return lines
