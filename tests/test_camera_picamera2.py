"""The picamera2 adapter, through a stand-in module with picamera2's documented API surface.

libcamera's Python bindings exist only on Raspberry Pi OS, so `tests/fake_picamera2` provides a
`picamera2` package (strict about call order, like the real one) and this test puts it on
`sys.path`. The adapter, the encoder and the feed are the real code. On a Pi, the same checks can
be made against the real camera with `omnid devices` and a `files`-free config (see README).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from omnid import events as ev
from omnid.camera import CameraError, encode_frame, list_sources, open_feed
from omnid.camera.picamera2 import Picamera2Source
from omnid.config_schema import CameraSection

FAKE = Path(__file__).parent / "fake_picamera2"


@pytest.fixture
def picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(FAKE))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2 as module

    cls = module.Picamera2
    cls.instances.clear()
    cls._in_use.clear()
    monkeypatch.setattr(cls, "colour_rgb", (255, 0, 0))
    yield module
    for cam in cls.instances:
        cam.close()
    sys.modules.pop("picamera2", None)


def decoded_pixel(jpeg: bytes) -> tuple[int, int, int]:
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    r, g, b = (int(v) for v in rgb[rgb.shape[0] // 2, rgb.shape[1] // 2])
    return r, g, b


def test_adapter_configures_the_size_at_the_camera_and_keeps_colours(
    picamera2: ModuleType,
) -> None:
    src = Picamera2Source()
    src.open(320, 240)
    (cam,) = picamera2.Picamera2.instances
    configured = [arg for name, arg in cam.calls if name == "configure"]
    assert len(configured) == 1
    assert configured[0]["main"]["size"] == (320, 240)
    assert configured[0]["main"]["format"] == "RGB888"
    assert [name for name, _ in cam.calls][-1] == "start" and cam.started

    rgb = src.capture()
    assert rgb.shape == (240, 320, 3) and rgb.dtype == np.uint8
    assert tuple(int(c) for c in rgb[0, 0]) == (255, 0, 0)  # B,G,R in memory → R,G,B
    enc = encode_frame(rgb, quality=80, max_size=(320, 240))
    assert enc is not None and (enc.width, enc.height) == (320, 240)
    r, g, b = decoded_pixel(enc.jpeg)
    assert r > 240 and g < 16 and b < 16, (r, g, b)  # red stays red, not blue

    src.close()
    names = [name for name, _ in cam.calls]
    assert cam.closed and names.index("stop") < names.index("close")
    with pytest.raises(CameraError):
        src.capture()
    src.close()  # idempotent


def test_an_asymmetric_colour_survives(
    picamera2: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picamera2.Picamera2, "colour_rgb", (230, 120, 20))  # orange
    with Picamera2Source() as src:
        src.open(64, 48)
        rgb = src.capture()
    assert tuple(int(c) for c in rgb[10, 10]) == (230, 120, 20)


def test_camera_in_use_or_absent_is_a_camera_error(picamera2: ModuleType) -> None:
    first = Picamera2Source()
    first.open(64, 48)
    with pytest.raises(CameraError, match="cannot open the camera"):
        Picamera2Source().open(64, 48)
    first.close()
    second = Picamera2Source()
    second.open(64, 48)  # released by close(): usable again
    second.close()
    with pytest.raises(CameraError, match="cannot open the camera"):
        Picamera2Source(camera_num=3).open(64, 48)


def test_without_picamera2_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a non-Pi machine
    with pytest.raises(CameraError, match="python3-picamera2"):
        Picamera2Source().open(64, 48)
    assert any("python3-picamera2" in line for line in list_sources())


def test_feed_on_picamera2_posts_red_jpegs_and_releases_the_camera(
    picamera2: ModuleType,
) -> None:
    cfg = CameraSection(enabled=True, source="picamera2", width=320, height=240)
    events: list[ev.Event] = []
    feed = open_feed(cfg, events.append)
    assert feed is not None
    try:
        feed.request()
        deadline = time.monotonic() + 3
        while not any(isinstance(e, ev.Frame) for e in events) and time.monotonic() < deadline:
            time.sleep(0.01)
        frames = [e for e in events if isinstance(e, ev.Frame)]
        assert frames and (frames[0].width, frames[0].height) == (320, 240)
        r, g, b = decoded_pixel(frames[0].jpeg)
        assert r > 240 and g < 16 and b < 16
        assert not any(isinstance(e, ev.CameraTrouble) for e in events)
    finally:
        feed.close()
    (cam,) = picamera2.Picamera2.instances
    assert cam.closed
    assert "picamera2: camera 0: fake-imx708" in list_sources()
