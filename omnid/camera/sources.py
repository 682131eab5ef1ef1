"""Pick the backend `camera.source` names; backends with optional libraries load only here."""

from __future__ import annotations

from omnid.camera.base import CameraError, FrameSource
from omnid.config_schema import CameraSection


def make_source(camera: CameraSection) -> FrameSource:
    """A new, unopened source for the config (the feed opens it on its own thread)."""
    if camera.source == "files":
        from omnid.camera.files import FilesSource

        if camera.path is None:
            raise CameraError("camera.path is not set (required for camera.source = 'files')")
        return FilesSource(camera.path)
    if camera.source == "picamera2":
        from omnid.camera.picamera2 import Picamera2Source

        return Picamera2Source()
    if camera.source == "v4l2":
        from omnid.camera.v4l2 import V4L2Source

        return V4L2Source(camera.device)
    raise CameraError(f"unknown camera.source {camera.source!r}")
