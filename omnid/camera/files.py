"""`camera.source = "files"`: a directory of JPEG/PNG images, cycled in name order.

For tests, the demo and replaying a recorded scene. It behaves like a camera where that matters:
it fails the way a camera fails (a missing or unreadable directory is a `CameraError`, so the
feed's warning-and-retry path is exercised by unplugging a directory), and it picks up changes
while running — the directory is re-listed when its mtime or inode changes (and every few seconds,
for filesystems with coarse timestamps), so a script can drop new pictures in.

A JPEG file that the service can take as it is — within the configured width×height and the
256 KB base64 limit, a baseline or progressive grey or colour JPEG (`base.Jpeg.of`), upright (no
EXIF orientation other than 1) — is handed over as its bytes (`base.Jpeg`) and sent unchanged:
only its headers are read, nothing is decoded or encoded again.

Any other file has a fixed size of its own, so "configure the size at the source" means: scale it
when it is loaded (JPEGs are decoded at a reduced DCT scale first, which is what makes a 12 MP
photo cheap), turned upright. The last frame is kept (keyed by name, mtime and size), so a
one-picture directory — a still scene — is read once; a cycled directory reads (and decodes, if
it must) each picture as it comes round, as a camera delivers a new frame each time. Keeping
every picture's pixels saved ~1 ms of CPU per frame at 640×480 and cost 0.9 MB per picture held,
memory a camera does not use. Only regular files count: a FIFO or device node named `x.jpg` would
block the reader forever.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from omnid.camera.base import CameraError, FrameSource, Jpeg, Picture, RGBArray, fit_within
from omnid.camera.encode import MAX_B64_BYTES, b64_len, fits_as_is

log = logging.getLogger("omnid.camera")

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})
RELIST_S = 5.0
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that rotate by 90°


class FilesSource(FrameSource):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = f"files:{self.path}"
        self._size: tuple[int, int] | None = None
        self._names: list[str] = []
        self._dir_key: tuple[int, int] | None = None
        self._listed_at = 0.0
        self._last: str | None = None
        self._held: tuple[tuple[str, int, int], Picture] | None = None  # the last frame
        self._bad: set[tuple[str, int, int]] = set()

    def open(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._relist(force=True)

    def close(self) -> None:
        self._size = None
        self._held = None

    def capture(self) -> Picture:
        if self._size is None:
            raise CameraError(f"{self.name}: capture() before open()")
        self._relist()
        if not self._names:
            raise CameraError(f"{self.name}: no JPEG or PNG images in the directory")
        start = self._next_index()
        for k in range(len(self._names)):
            name = self._names[(start + k) % len(self._names)]
            picture = self._load(name)
            if picture is not None:
                self._last = name
                return picture
        raise CameraError(f"{self.name}: none of the {len(self._names)} images could be read")

    # ------------------------------------------------------------------ listing

    def _relist(self, force: bool = False) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise CameraError(f"{self.name}: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise CameraError(f"{self.name}: not a directory")
        key = (st.st_ino, st.st_mtime_ns)
        now = time.monotonic()
        if not force and key == self._dir_key and now - self._listed_at < RELIST_S:
            return
        try:
            with os.scandir(self.path) as it:
                names = sorted(
                    e.name
                    for e in it
                    if not e.name.startswith(".")
                    and os.path.splitext(e.name)[1].lower() in EXTENSIONS
                    and e.is_file()  # regular files only (follows symlinks): no FIFOs
                )
        except OSError as exc:
            raise CameraError(f"{self.name}: cannot list: {exc.strerror or exc}") from None
        if names != self._names:
            log.debug("%s: %d images", self.name, len(names))
        self._names = names
        self._dir_key = key
        self._listed_at = now
        if not names:
            raise CameraError(f"{self.name}: no JPEG or PNG images in the directory")

    def _next_index(self) -> int:
        """The first name after the last one shown, so a re-listed directory continues the cycle
        where it was instead of starting over."""
        if self._last is None:
            return 0
        for i, name in enumerate(self._names):
            if name > self._last:
                return i
        return 0

    # ------------------------------------------------------------------ loading

    def _load(self, name: str) -> Picture | None:
        assert self._size is not None
        path = self.path / name
        try:
            st = os.stat(path)
        except OSError:
            self._dir_key = None  # it went away: re-list at the next capture
            return None
        key = (name, st.st_mtime_ns, st.st_size)
        if self._held is not None and self._held[0] == key:
            return self._held[1]
        if key in self._bad:
            return None
        try:
            picture = load_picture(path, st.st_size, *self._size)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            self._bad.add(key)
            log.warning("%s: skipping %s: %s", self.name, name, exc)
            return None
        self._held = (key, picture)
        return picture


def load_picture(path: Path, nbytes: int, width: int, height: int) -> Picture:
    """The file as it is (`Jpeg`) when it is a JPEG the service takes that fits within
    `width`×`height` and the base64 limit and needs no turning upright; otherwise decoded and
    scaled (`load_scaled`). `nbytes` is its size from `stat`: a file too big to go as it is is
    decoded from disk without being read into memory whole first."""
    if path.suffix.lower() not in JPEG_EXTENSIONS or b64_len(nbytes) > MAX_B64_BYTES:
        return load_scaled(path, width, height)
    data = path.read_bytes()
    jpeg = Jpeg.of(data)
    if jpeg is not None and fits_as_is(jpeg, (width, height)) and _one_upright_picture(data):
        return jpeg
    return load_scaled(io.BytesIO(data), width, height)


def _one_upright_picture(data: bytes) -> bool:
    """No EXIF orientation, or 1 ("top left"): the picture needs no turning; and one picture,
    not a multi-picture file (MPO: a stereo pair, a phone's depth map) whose extra pictures would
    travel along unseen. Pillow reads the headers only."""
    with Image.open(io.BytesIO(data)) as img:
        return img.format == "JPEG" and img.getexif().get(_EXIF_ORIENTATION, 1) == 1


def load_scaled(file: Path | io.BytesIO, width: int, height: int) -> RGBArray:
    """Decode an image file upright (EXIF orientation applied), flattened onto white if it has
    transparency, scaled to fit within `width`×`height`; a read-only RGB array."""
    # Every step that has nothing to do is skipped rather than run as a copy: each full-size
    # copy is a fresh allocation, and at one frame a second those showed up in the CPU figure.
    with Image.open(file) as img:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        swap = orientation in _SWAPS_AXES
        # JPEG only: decode at 1/2, 1/4 or 1/8 scale while still at least the requested size.
        img.draft("RGB", (height, width) if swap else (width, height))
        upright = ImageOps.exif_transpose(img) if orientation != 1 else img
        if upright.mode in ("RGBA", "LA") or "transparency" in upright.info:
            rgba = upright.convert("RGBA")
            flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            flat.alpha_composite(rgba)
            upright = flat
        rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
        size = fit_within(rgb.width, rgb.height, width, height)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        arr = np.array(rgb, dtype=np.uint8)
    arr.flags.writeable = False
    return arr
