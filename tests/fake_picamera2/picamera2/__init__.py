"""A stand-in for Raspberry Pi's `picamera2` package, for tests on machines without libcamera.

It implements the part of the documented API surface omnid uses (the Picamera2 manual: the
`Picamera2` class, `global_camera_info`, `create_still_configuration`,
`create_video_configuration`, `configure`, `start`, `capture_array`, `stop`, `close`) and is
strict where the real library is: configure before start, start before capture, one owner per
camera, no configure while running. Frames are synthetic and laid out as the real "RGB888"
format is in memory: B, G, R. Tests put this directory on `sys.path`; omnid's own code is real.

For tests that run the daemon as a subprocess (where nothing can be patched), two environment
variables make the camera misbehave the way real ones do, read at each `capture_array`:

- `FAKE_PICAMERA2_CAPTURE_S`: seconds each capture takes (a slow sensor or a busy ISP);
- `FAKE_PICAMERA2_HANG_FILE`: a path; while a file exists there, `capture_array` blocks like a
  driver that stopped delivering frames, and returns once it is removed (never later than
  `HANG_LIMIT_S`, so a broken test cannot leave a thread behind forever).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import numpy as np

HANG_LIMIT_S = 60.0

_FORMATS = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4}


class Picamera2:
    cameras: ClassVar[list[dict[str, Any]]] = [{"Model": "fake-imx708", "Id": "/fake/0"}]
    colour_rgb: ClassVar[tuple[int, int, int]] = (255, 0, 0)
    """What the scene looks like (R, G, B); frames store it in the format's memory order."""
    instances: ClassVar[list[Picamera2]] = []
    _in_use: ClassVar[set[int]] = set()

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [dict(c) for c in Picamera2.cameras]

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num >= len(Picamera2.cameras):
            raise IndexError("list index out of range")
        if camera_num in Picamera2._in_use:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        Picamera2._in_use.add(camera_num)
        self.camera_num = camera_num
        self.calls: list[tuple[str, Any]] = [("__init__", camera_num)]
        self.configured: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        Picamera2.instances.append(self)

    def _config(self, use_case: str, main: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
        main = dict(main or {})
        main.setdefault("size", (640, 480))
        main.setdefault("format", "XBGR8888")
        if main["format"] not in _FORMATS:
            raise ValueError(f"unsupported format {main['format']}")
        return {"use_case": use_case, "main": main, **kw}

    def create_still_configuration(
        self, main: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        self.calls.append(("create_still_configuration", main))
        return self._config("still", main, **kw)

    def create_video_configuration(
        self, main: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        self.calls.append(("create_video_configuration", main))
        return self._config("video", main, **kw)

    def configure(self, camera_config: dict[str, Any]) -> None:
        self._check_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.calls.append(("configure", camera_config))
        self.configured = camera_config

    def start(self, config: dict[str, Any] | None = None, show_preview: bool = False) -> None:
        self._check_open()
        if config is not None:
            self.configure(config)
        if self.configured is None:
            raise RuntimeError("Camera has not been configured")
        self.calls.append(("start", None))
        self.started = True

    def capture_array(self, name: str = "main", wait: Any = None) -> np.ndarray:
        self._check_open()
        if not self.started:
            raise RuntimeError("Camera must be started before capturing")
        assert self.configured is not None
        stream = self.configured[name]
        width, height = stream["size"]
        fmt = stream["format"]
        r, g, b = Picamera2.colour_rgb
        # Memory order per the manual's table: RGB888 is [B, G, R], BGR888 is [R, G, B].
        pixel = {
            "RGB888": (b, g, r),
            "BGR888": (r, g, b),
            "XRGB8888": (b, g, r, 255),
            "XBGR8888": (r, g, b, 255),
        }[fmt]
        self.calls.append(("capture_array", name))
        _misbehave()
        return np.tile(np.array(pixel, dtype=np.uint8), (height, width, 1))

    def stop(self) -> None:
        self.calls.append(("stop", None))
        self.started = False

    def close(self) -> None:
        if self.closed:
            return
        self.stop()
        self.calls.append(("close", None))
        self.closed = True
        Picamera2._in_use.discard(self.camera_num)

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("Camera is closed")


def _misbehave() -> None:
    """What the environment asks of this capture: take a while, or hang until released."""
    delay = float(os.environ.get("FAKE_PICAMERA2_CAPTURE_S") or 0)
    if delay > 0:
        time.sleep(delay)
    hang = os.environ.get("FAKE_PICAMERA2_HANG_FILE")
    if hang:
        deadline = time.monotonic() + HANG_LIMIT_S
        while os.path.exists(hang) and time.monotonic() < deadline:
            time.sleep(0.02)
