"""`camera.source = "picamera2"`: the Raspberry Pi camera modules through libcamera.

picamera2 is not on PyPI in a usable form: its libcamera bindings come from Raspberry Pi OS
(`apt install python3-picamera2`), so the daemon's venv is created with `--system-site-packages`
and this module imports it only when the source is opened. Everything else in `omnid.camera`
works without it, and the adapter is tested against a stand-in module with picamera2's documented
API surface (`tests/fake_picamera2`).

What we use, all from the Picamera2 manual: `Picamera2(camera_num)`,
`create_video_configuration(main={"size": (w, h), "format": "RGB888"})`, `configure`, `start`,
`capture_array("main")`, `stop`, `close`.

- A *video* configuration, not a still one: the camera keeps streaming at the small configured
  size (the ISP scales in hardware), so a capture returns the next frame at once with exposure
  and white balance already settled, instead of a mode switch and several dark frames per turn.
- "RGB888" is libcamera's name for 24-bit pixels stored B, G, R in memory (the manual's format
  table), so the array is reversed on its last axis to give the RGB the encoder expects.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from omnid.camera.base import CameraError, FrameSource, RGBArray

PI_INSTALL_HINT = (
    "on Raspberry Pi OS: sudo apt install python3-picamera2, "
    "and create the venv with --system-site-packages"
)


class Picamera2Source(FrameSource):
    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.name = f"picamera2:{camera_num}"
        self._cam: Any = None

    def open(self, width: int, height: int) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(f"picamera2 is not installed ({exc}); {PI_INSTALL_HINT}") from None
        try:
            cam = Picamera2(self.camera_num)
        except Exception as exc:  # RuntimeError or IndexError: no camera, or in use
            raise CameraError(f"{self.name}: cannot open the camera: {exc}") from None
        try:
            config = cam.create_video_configuration(
                main={"size": (width, height), "format": "RGB888"}
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            _quietly_close(cam)
            raise CameraError(f"{self.name}: cannot configure {width}×{height}: {exc}") from None
        self._cam = cam

    def capture(self) -> RGBArray:
        if self._cam is None:
            raise CameraError(f"{self.name}: capture() before open()")
        bgr = np.asarray(self._cam.capture_array("main"))
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] < 3:
            raise CameraError(f"{self.name}: unexpected frame {bgr.dtype} {bgr.shape}")
        # B, G, R (and X on a 4-channel format) → R, G, B
        return np.ascontiguousarray(bgr[:, :, 2::-1])

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            _quietly_close(cam)


def _quietly_close(cam: Any) -> None:
    """stop() then close(); a camera that is already gone must not turn a close into an error."""
    for step in (cam.stop, cam.close):
        with contextlib.suppress(Exception):
            step()


def list_cameras() -> list[str]:
    """One line per camera libcamera sees, or one line saying why there are none; never raises."""
    try:
        from picamera2 import Picamera2
    except Exception as exc:
        return [f"picamera2: not available ({type(exc).__name__}: {exc}); {PI_INSTALL_HINT}"]
    try:
        infos = Picamera2.global_camera_info()
    except Exception as exc:
        return [f"picamera2: cannot list cameras: {exc}"]
    if not infos:
        return ["picamera2: installed, no camera connected"]
    lines = []
    for num, info in enumerate(infos):
        model = info.get("Model", "?") if isinstance(info, dict) else info
        lines.append(f"picamera2: camera {num}: {model}")
    return lines
