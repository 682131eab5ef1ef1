"""`camera.source = "v4l2"`: USB webcams (UVC) and other Video4Linux2 capture devices.

Library: linuxpy (`pip install 'omnid[v4l2]'`). It is the maintained successor of v4l2py (same
author; v4l2py now points to it), pure Python over ctypes — no compiler or libv4l on the Pi —,
covers format/size enumeration, `S_FMT`, frame rate and mmap streaming, and is released
regularly. OpenCV would also do, but pulls ~60 MB into a Pi Zero for one `VideoCapture`.
It is imported only when a v4l2 source is opened or listed.

The size is configured on the device (`S_FMT`), choosing among the sizes it offers the largest
that fits within `width`×`height`, preferring MJPEG (a quarter of YUYV's USB bandwidth, so
webcams offer it at more sizes) and falling back to YUYV. A streaming device fills its few
buffers and then waits, so a buffered frame may be seconds old by the time we ask; `capture()`
therefore drops what is queued and returns the next frame the device produces.

An MJPEG frame is already a JPEG: it is handed over as it is (`base.Jpeg`) when it fits the
configured size and the base64 limit and is complete, with its own Huffman tables — many UVC
webcams leave the DHT segment out and rely on the standard tables, which a decoder need not
supply; such a frame is decoded here and encoded again, as every MJPEG frame used to be.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import io
import re
import select
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from omnid.camera.base import CameraError, FrameSource, Jpeg, Picture, RGBArray
from omnid.camera.encode import fits_as_is

V4L2_HINT = "install the v4l2 extra: pip install 'omnid[v4l2]'"
READ_TIMEOUT_S = 2.0
DEVICE_FPS = 10
"""Asked of the device (it picks the nearest it supports): we read at most 1 frame/s, a lower
rate saves USB and driver work and allows longer exposures indoors; 10 fps keeps a fresh frame
within 100 ms of a request."""
BUFFERS = 2
PREFERENCE = ("MJPEG", "YUYV")


class Offer(NamedTuple):
    fourcc: str  # linuxpy PixelFormat name: "MJPEG" or "YUYV"
    width: int
    height: int


def pick_mode(offers: Iterable[Offer], width: int, height: int) -> Offer | None:
    """The largest offered size within `width`×`height` (MJPEG before YUYV at equal size); if
    none fits, the smallest offered (the encoder then scales it down, and the feed warns)."""
    usable = [o for o in offers if o.fourcc in PREFERENCE]
    if not usable:
        return None

    def rank(o: Offer) -> int:
        return PREFERENCE.index(o.fourcc)

    fitting = [o for o in usable if o.width <= width and o.height <= height]
    if fitting:
        return min(fitting, key=lambda o: (-o.width * o.height, rank(o)))
    return min(usable, key=lambda o: (o.width * o.height, rank(o)))


def yuyv_to_rgb(data: bytes | memoryview, width: int, height: int, stride: int) -> RGBArray:
    """Packed YUYV 4:2:2 (BT.601, limited range, as UVC cameras send it) → H×W×3 RGB."""
    stride = stride or width * 2
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size < stride * height:
        raise CameraError(f"short YUYV frame: {raw.size} bytes for {width}×{height}")
    rows = raw[: stride * height].reshape(height, stride)[:, : width * 2]
    y = rows[:, 0::2].astype(np.float32) - 16.0
    u = np.repeat(rows[:, 1::4].astype(np.float32) - 128.0, 2, axis=1)[:, :width]
    v = np.repeat(rows[:, 3::4].astype(np.float32) - 128.0, 2, axis=1)[:, :width]
    y *= 1.164
    rgb = np.empty((height, width, 3), dtype=np.float32)
    rgb[..., 0] = y + 1.596 * v
    rgb[..., 1] = y - 0.392 * u - 0.813 * v
    rgb[..., 2] = y + 2.017 * u
    return np.clip(rgb, 0, 255, out=rgb).round().astype(np.uint8)


def mjpeg_picture(data: bytes, box: tuple[int, int]) -> Picture:
    """One MJPEG frame: as it is when it can be sent so (`Jpeg.of`: complete, with its Huffman
    tables; within `box` and the base64 limit), else decoded to RGB (at a reduced DCT scale when
    it is larger than the box)."""
    jpeg = Jpeg.of(data)
    if jpeg is not None and fits_as_is(jpeg, box):
        return jpeg
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", box)
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _linuxpy(name: str) -> Any:
    try:
        return importlib.import_module("linuxpy.video.device")
    except ImportError as exc:
        raise CameraError(f"{name}: needs linuxpy ({exc}); {V4L2_HINT}") from None


class V4L2Source(FrameSource):
    def __init__(self, device: str) -> None:
        self.device = device
        self.name = f"v4l2:{device}"
        self._dev: Any = None
        self._capture: Any = None
        self._reader: Any = None
        self._mode: Offer | None = None
        self._stride = 0
        self._box = (0, 0)

    def open(self, width: int, height: int) -> None:
        lv = _linuxpy(self.name)
        self._box = (width, height)
        try:
            dev = lv.Device(self.device)
            dev.open()
        except OSError as exc:
            raise CameraError(f"{self.name}: cannot open: {exc.strerror or exc}") from None
        self._dev = dev
        try:
            mode = pick_mode(_offers(lv, dev, width, height), width, height)
            if mode is None:
                raise CameraError(f"{self.name}: offers neither MJPEG nor YUYV capture")
            capture_type = lv.BufferType.VIDEO_CAPTURE
            fourcc = "MJPG" if mode.fourcc == "MJPEG" else mode.fourcc
            dev.set_format(capture_type, mode.width, mode.height, fourcc)
            fmt = dev.get_format(capture_type)
            self._mode = Offer(fmt.pixel_format.name, fmt.width, fmt.height)
            self._stride = fmt.bytes_per_line
            with contextlib.suppress(OSError):  # not every driver lets the rate be chosen
                dev.set_fps(capture_type, DEVICE_FPS)
            self._capture = lv.VideoCapture(dev, size=BUFFERS)
            self._capture.open()
            self._reader = self._capture.buffer
        except CameraError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise CameraError(f"{self.name}: cannot start capture: {exc}") from None

    def capture(self) -> Picture:
        if self._reader is None or self._mode is None:
            raise CameraError(f"{self.name}: capture() before open()")
        fd = self._dev.fileno()
        for _ in range(BUFFERS + 2):  # drop frames queued before we asked
            if not select.select([fd], [], [], 0)[0]:
                break
            try:
                self._reader.raw_read()
            except BlockingIOError:
                break
        if not select.select([fd], [], [], READ_TIMEOUT_S)[0]:
            raise CameraError(f"{self.name}: no frame within {READ_TIMEOUT_S:.0f} s")
        frame = self._reader.raw_read()
        data = frame.data
        mode = self._mode
        if mode.fourcc == "YUYV":
            return yuyv_to_rgb(data, mode.width, mode.height, self._stride)
        return mjpeg_picture(bytes(data), self._box)

    def close(self) -> None:
        capture, self._capture, self._reader = self._capture, None, None
        dev, self._dev = self._dev, None
        if capture is not None:
            with contextlib.suppress(Exception):  # the device may already be unplugged
                capture.close()
        if dev is not None:
            with contextlib.suppress(Exception):
                dev.close()


def _offers(lv: Any, dev: Any, width: int, height: int) -> list[Offer]:
    """Every (format, size) the device offers for capture in MJPEG or YUYV; a stepwise or
    continuous range contributes the requested size clamped and aligned to its steps."""
    capture_type = lv.BufferType.VIDEO_CAPTURE
    offers: list[Offer] = []
    for fmt in dev.info.formats:
        name = getattr(fmt.pixel_format, "name", "")
        if fmt.type != capture_type or name not in PREFERENCE:
            continue
        for fs in dev.info.format_frame_sizes(fmt.pixel_format):
            info = fs.info
            if hasattr(info, "width"):
                offers.append(Offer(name, info.width, info.height))
            else:
                offers.append(
                    Offer(
                        name,
                        _clamp(width, info.min_width, info.max_width, info.step_width),
                        _clamp(height, info.min_height, info.max_height, info.step_height),
                    )
                )
    return offers


def _clamp(value: int, low: int, high: int, step: int) -> int:
    value = min(max(value, low), high)
    step = max(1, step)
    return low + (value - low) // step * step


def list_devices() -> list[str]:
    """One line per V4L2 capture device (codec and ISP nodes skipped); never raises."""
    paths = sorted(glob.glob("/dev/video*"), key=lambda p: [int(n) for n in re.findall(r"\d+", p)])
    if not paths:
        return ["v4l2: no /dev/video* devices"]
    try:
        lv = importlib.import_module("linuxpy.video.device")
    except Exception:
        return [f"v4l2: {p} (details: {V4L2_HINT})" for p in paths]
    lines = []
    for path in paths:
        try:
            with lv.Device(path) as dev:
                info = dev.info
                if lv.Capability.VIDEO_CAPTURE not in info.device_capabilities:
                    continue
                kinds = sorted(
                    {
                        f.pixel_format.name
                        for f in info.formats
                        if f.type == lv.BufferType.VIDEO_CAPTURE
                    }
                )
                lines.append(f"v4l2: {path}: {info.card} ({info.driver}; {', '.join(kinds)})")
        except Exception as exc:
            lines.append(f"v4l2: {path}: cannot query ({exc})")
    return lines or ["v4l2: no video capture devices"]
