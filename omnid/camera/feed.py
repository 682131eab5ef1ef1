"""The camera's own thread: capture and encode off the conversation thread.

`CameraFeed.request()` is called by the conversation thread and only flips a flag under a lock
that no one holds for longer than a few assignments, so it never waits for the camera. The
worker thread owns the source: it opens it (and probes one frame), then waits for requests;
for each it captures, encodes (`encode.encode_frame`) and posts an `omnid.events.Frame`. A JPEG
the source already had (`base.Jpeg`: a picture file, a webcam's MJPEG) is posted as it is when it
fits the configured box and the base64 limit (`encode.fits_as_is`), and decoded and encoded like
pixels when it does not. Requests that arrive while a capture is in progress are answered by that
capture.

Failure is one episode, not a stream of errors: the first failure (open, capture, or a stall)
posts one `CameraTrouble` and logs one warning; the worker then closes the source and retries
opening with backoff (1 s doubling to 60 s) quietly; the first success logs "camera back".

A stall is a capture or open that has not returned after `stall_s`. Python cannot interrupt a
thread stuck in a driver call, so a watchdog thread abandons the stuck worker (it exits, closing
its source, if the call ever returns) and starts a fresh one, which retries with backoff —
opening may fail while the stuck thread still holds the device. At most `MAX_STUCK` abandoned
threads are tolerated before the feed stops trying; `close()` joins with a bound and never hangs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable

from omnid.camera.base import FrameSource, Jpeg, fit_within, picture_size
from omnid.camera.encode import decode_jpeg, encode_frame, fits_as_is
from omnid.camera.sources import make_source
from omnid.config_schema import CameraSection
from omnid.events import CameraTrouble, Event, Frame

log = logging.getLogger("omnid.camera")

STALL_S = 3.0
RETRY_BASE_S = 1.0
RETRY_CAP_S = 60.0
CLOSE_JOIN_S = 1.0
MAX_STUCK = 2

SourceFactory = Callable[[], FrameSource]


class CameraFeed:
    def __init__(
        self,
        camera: CameraSection,
        post: Callable[[Event], None],
        *,
        source_factory: SourceFactory | None = None,
        stall_s: float = STALL_S,
        retry_base_s: float = RETRY_BASE_S,
        retry_cap_s: float = RETRY_CAP_S,
    ) -> None:
        self.width = camera.width
        self.height = camera.height
        self.quality = camera.jpeg_quality
        self._post = post
        self._factory: SourceFactory = source_factory or functools.partial(make_source, camera)
        self._stall_s = stall_s
        self._retry_base_s = retry_base_s
        self._retry_cap_s = retry_cap_s
        self._cond = threading.Condition()
        # Everything below is guarded by _cond.
        self._gen = 0  # the current worker's number; an abandoned worker sees it change
        self._worker: threading.Thread | None = None
        self._stuck: list[threading.Thread] = []
        self._wanted = False
        self._capturing = False
        self._busy_since: float | None = None  # an open or capture in progress, for the watchdog
        self._busy_what = ""
        self._closed = False
        self._started = False
        self._trouble: str | None = None
        self._retry_s = retry_base_s
        self._ever_open = False
        self._warned_scaling = False
        self._warned_too_big = False
        self.frames_posted = 0
        self._watchdog = threading.Thread(target=self._watch, name="camera-watchdog", daemon=True)

    # ------------------------------------------------------------------ conversation thread

    def start(self) -> CameraFeed:
        with self._cond:
            if self._started or self._closed:
                return self
            self._started = True
            self._spawn_locked(after_stall=False)
        self._watchdog.start()
        return self

    def request(self) -> None:
        """Ask for one frame; never blocks. It arrives later as a `Frame` event (or not at all
        while the camera is in trouble)."""
        with self._cond:
            if self._closed or self._capturing:
                return  # a capture in progress answers this request too
            self._wanted = True
            self._cond.notify_all()

    @property
    def trouble(self) -> str | None:
        """Why the camera is not delivering, or None when it is healthy."""
        with self._cond:
            return self._trouble

    def close(self, timeout: float = CLOSE_JOIN_S) -> None:
        """Stop the threads; the worker closes the source. Returns within `timeout` even if the
        camera is stuck (the stuck thread is a daemon and closes its source if it ever returns)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._gen += 1
            worker = self._worker
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in (worker, self._watchdog):
            if thread is not None and thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        if worker is not None and worker.is_alive():
            log.debug("camera: worker still busy at close; left to finish on its own")

    # ------------------------------------------------------------------ worker

    def _spawn_locked(self, after_stall: bool) -> None:
        gen = self._gen
        self._worker = threading.Thread(
            target=self._run, args=(gen, after_stall), name=f"camera-{gen}", daemon=True
        )
        self._worker.start()

    def _current(self, gen: int) -> bool:
        with self._cond:
            return gen == self._gen and not self._closed

    def _run(self, gen: int, after_stall: bool) -> None:
        try:
            self._loop(gen, after_stall)
        except Exception:  # a bug here must not leave the feed silently dead
            log.exception("camera: worker failed")
            self._fail(gen, "camera worker failed (see the traceback above)")

    def _loop(self, gen: int, after_stall: bool) -> None:
        source: FrameSource | None = None
        try:
            if after_stall:
                self._backoff(gen)
            while self._current(gen):
                if source is None:
                    source = self._open(gen)
                    continue
                if not self._next_request(gen, source.name):
                    return
                try:
                    frame = self._capture(gen, source)
                except Exception as exc:
                    if not self._current(gen):
                        return
                    self._fail(gen, f"{source.name}: capture failed: {_why(exc, source.name)}")
                    _close_quietly(source)
                    source = None
                    self._backoff(gen)
                    continue
                if not self._current(gen):
                    return
                self._recovered(gen, source.name)
                if frame is not None:
                    self.frames_posted += 1
                    self._post(frame)  # queue.put_nowait: never blocks
        finally:
            if source is not None:
                _close_quietly(source)

    def _open(self, gen: int) -> FrameSource | None:
        with self._cond:
            self._stuck = [t for t in self._stuck if t.is_alive()]
            too_many = len(self._stuck) >= MAX_STUCK
        if too_many:  # do not pile up threads on a device that hangs every call
            self._backoff(gen)
            return None
        source: FrameSource | None = None
        self._set_busy(gen, "camera open")  # the factory too: constructing a camera object can hang
        try:
            source = self._factory()
            source.open(self.width, self.height)
            probe = source.capture()
        except Exception as exc:
            self._set_busy(gen, None)
            name = source.name if source is not None else "camera"
            if source is not None:
                _close_quietly(source)
            if self._current(gen):
                self._fail(gen, f"{name}: cannot open: {_why(exc, name)}")
                self._backoff(gen)
            return None
        self._set_busy(gen, None)
        if not self._current(gen):
            _close_quietly(source)
            return None
        width, height = picture_size(probe)
        self._opened(f"{source.name} {width}×{height}")
        return source

    def _next_request(self, gen: int, name: str) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self._wanted or self._closed or gen != self._gen)
            if self._closed or gen != self._gen:
                return False
            self._wanted = False
            self._capturing = True
            self._busy_since, self._busy_what = time.monotonic(), f"{name}: capture"
            self._cond.notify_all()
            return True

    def _capture(self, gen: int, source: FrameSource) -> Frame | None:
        box = (self.width, self.height)
        try:
            t = time.monotonic()
            picture = source.capture()
            if isinstance(picture, Jpeg) and fits_as_is(picture, box):
                return Frame(picture.data, picture.width, picture.height, t)  # sent as it is
            rgb = decode_jpeg(picture, box) if isinstance(picture, Jpeg) else picture
            encoded = encode_frame(rgb, quality=self.quality, max_size=box)
        finally:
            with self._cond:
                if gen == self._gen:
                    self._capturing = False
                    self._busy_since = None
        width, height = picture_size(picture)
        # Not `encoded.scaled`: a JPEG is decoded at a reduced scale first, often right to the box.
        oversized = fit_within(width, height, *box) != (width, height)
        if encoded is not None and oversized and not self._warned_scaling:
            self._warned_scaling = True
            log.warning(
                "camera: %s delivers %d×%d, larger than camera.width×height = %d×%d; "
                "scaling every frame in Python",
                source.name,
                width,
                height,
                self.width,
                self.height,
            )
        if encoded is None:
            level = logging.DEBUG if self._warned_too_big else logging.WARNING
            self._warned_too_big = True
            log.log(level, "camera: frame skipped: no JPEG of it fits the 256 KB image limit")
            return None
        return Frame(encoded.jpeg, encoded.width, encoded.height, t)

    def _set_busy(self, gen: int, what: str | None) -> None:
        with self._cond:
            if gen != self._gen:
                return
            self._busy_since = None if what is None else time.monotonic()
            self._busy_what = what or ""
            self._cond.notify_all()

    def _backoff(self, gen: int) -> None:
        with self._cond:
            delay = self._retry_s
            self._retry_s = min(self._retry_cap_s, delay * 2)
            self._cond.wait_for(lambda: self._closed or gen != self._gen, timeout=delay)

    # ------------------------------------------------------------------ episodes

    def _fail(self, gen: int, reason: str) -> None:
        with self._cond:
            if gen != self._gen:
                return
            first = self._trouble is None
            if first:
                self._trouble = reason
            self._wanted = False  # a request made before the failure is stale by the reopen
        self._report(first, reason)

    def _report(self, first: bool, reason: str) -> None:
        if first:
            log.warning("camera: %s; carrying on audio-only, retrying in the background", reason)
            self._post(CameraTrouble(reason))
        else:
            log.debug("camera: still failing: %s", reason)

    def _opened(self, what: str) -> None:
        with self._cond:
            first = not self._ever_open
            self._ever_open = True
            trouble = self._trouble is not None
        if first and not trouble:
            log.info("camera: %s", what)
        else:
            log.debug("camera: opened %s", what)

    def _recovered(self, gen: int, name: str) -> None:
        """A requested capture worked. Only this ends a trouble episode (an open whose probe
        frame works, on a device that then stalls on every capture, must not flap between
        "back" and a new warning) and resets the backoff."""
        with self._cond:
            if gen != self._gen or self._trouble is None:
                return
            self._trouble = None
            self._retry_s = self._retry_base_s
        log.info("camera back: %s", name)

    # ------------------------------------------------------------------ watchdog

    def _watch(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                since = self._busy_since
                if since is None:
                    self._cond.wait()
                    continue
                remaining = since + self._stall_s - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                reason = f"{self._busy_what} stalled for more than {self._stall_s:g} s"
                if self._worker is not None:
                    self._stuck.append(self._worker)
                self._gen += 1
                self._busy_since = None
                self._capturing = False
                self._wanted = False
                first = self._trouble is None
                if first:
                    self._trouble = reason
                self._spawn_locked(after_stall=True)
                self._cond.notify_all()
            self._report(first, reason)


def _why(exc: BaseException, name: str) -> str:
    """The exception's text without a leading "<source name>: " (the reason already names it)."""
    text = str(exc) or type(exc).__name__
    return text.removeprefix(f"{name}: ")


def _close_quietly(source: FrameSource) -> None:
    with contextlib.suppress(Exception):
        source.close()
