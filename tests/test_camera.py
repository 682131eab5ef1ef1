"""omnid.camera: the files source on real directories, the JPEG encoder on real pixels, the frame
policy under a fake clock, and the feed's threads against sources that fail, hang or crawl.

Nothing of ours is mocked. Where a test needs a camera that misbehaves, it subclasses the real
`FilesSource` (the stand-in for a device that hangs or is slow); the feed, encoder and policy
under test are the production code.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnid import events as ev
from omnid.camera import (
    MAX_B64_BYTES,
    CameraError,
    CameraFeed,
    FramePolicy,
    FrameSource,
    Jpeg,
    Picture,
    RGBArray,
    b64_len,
    encode_frame,
    fits_as_is,
    list_sources,
    open_feed,
    worst_case_tokens_per_minute,
)
from omnid.camera.encode import QUALITY_FLOOR, Attempt, quality_ladder
from omnid.camera.files import FilesSource
from omnid.camera.v4l2 import (
    Offer,
    V4L2Source,
    list_devices,
    mjpeg_picture,
    pick_mode,
    yuyv_to_rgb,
)
from omnid.config_schema import CameraSection
from omnid.models import image_tokens
from omnid.simulator.images import MAX_IMAGE_B64_BYTES, check_image, jpeg_size

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> None:
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", size, colour).save(path, fmt)


def pixels(picture: Picture) -> RGBArray:
    """The picture a source returned, which must be pixels here (decoded, not a JPEG as it is)."""
    assert isinstance(picture, np.ndarray), f"expected pixels, got {picture!r}"
    return picture


def mean_colour(rgb: RGBArray) -> tuple[int, int, int]:
    r, g, b = (round(float(c)) for c in rgb.reshape(-1, 3).mean(axis=0))
    return r, g, b


def near(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def camera_cfg(path: Path, **kw: object) -> CameraSection:
    return CameraSection.model_validate(
        {"enabled": True, "source": "files", "path": str(path), "width": 64, "height": 48, **kw}
    )


# ---------------------------------------------------------------------- files source


def test_files_cycle_in_name_order_and_relist(tmp_path: Path) -> None:
    write_image(tmp_path / "b.png", GREEN)
    write_image(tmp_path / "a.jpg", RED)
    write_image(tmp_path / "c.JPEG", BLUE)
    write_image(tmp_path / ".hidden.jpg", YELLOW)  # editors' and rsync's temporaries
    (tmp_path / "notes.txt").write_text("not an image")
    src = FilesSource(tmp_path)
    src.open(64, 48)
    seen = [mean_colour(pixels(src.capture())) for _ in range(4)]
    assert [near(c, e) for c, e in zip(seen, [RED, GREEN, BLUE, RED], strict=True)] == [True] * 4

    write_image(tmp_path / "ab.png", YELLOW)  # sorts between a.jpg (last shown) and b.png
    assert near(mean_colour(pixels(src.capture())), YELLOW)
    assert near(mean_colour(pixels(src.capture())), GREEN)
    (tmp_path / "c.JPEG").unlink()
    assert near(mean_colour(pixels(src.capture())), RED)  # wrapped round: c is gone
    src.close()


def test_files_png_and_jpeg_fit_within_the_configured_size(tmp_path: Path) -> None:
    Image.new("RGB", (400, 300), RED).save(tmp_path / "1-wide.jpg", "JPEG")
    rgba = Image.new("RGBA", (100, 400), (0, 0, 255, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 100, 100))  # the transparent top is flattened onto white
    rgba.save(tmp_path / "2-tall.png", "PNG")
    Image.new("RGB", (20, 10), GREEN).save(tmp_path / "3-tiny.png", "PNG")
    os.mkfifo(tmp_path / "4-fifo.jpg")  # opening a FIFO would block forever: must be skipped
    src = FilesSource(tmp_path)
    src.open(64, 48)
    wide, tall, tiny = (pixels(src.capture()) for _ in range(3))
    assert wide.shape == (48, 64, 3) and near(mean_colour(wide), RED)
    assert tall.shape == (48, 12, 3) and near(mean_colour(tall[24:]), BLUE)
    assert near(mean_colour(tall[:8]), (255, 255, 255))
    assert tiny.shape == (10, 20, 3)  # never upscaled
    assert wide.dtype == np.uint8 and near(mean_colour(pixels(src.capture())), RED)  # FIFO skipped


def test_files_scale_each_file_once(tmp_path: Path) -> None:
    Image.new("RGB", (4000, 3000), RED).save(tmp_path / "big.jpg", "JPEG")
    src = FilesSource(tmp_path)
    src.open(640, 480)
    first = pixels(src.capture())
    t0 = time.perf_counter()
    again = pixels(src.capture())
    # Decoding and scaling the 4000×3000 JPEG again would take ~100 ms; a cache hit is a few µs,
    # plus whatever a busy machine adds. `is` below is the exact proof.
    assert time.perf_counter() - t0 < 0.05
    assert again is first  # the scaled pixels are cached, not re-decoded
    assert first.shape == (480, 640, 3)


def test_files_missing_or_empty_directory_is_a_camera_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(CameraError, match="No such file"):
        FilesSource(tmp_path / "absent").open(64, 48)
    with pytest.raises(CameraError, match="no JPEG or PNG"):
        FilesSource(tmp_path).open(64, 48)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_image(tmp_path / "good.png", GREEN)
    src = FilesSource(tmp_path)
    src.open(64, 48)
    with caplog.at_level(logging.WARNING, logger="omnid.camera"):
        colours = [mean_colour(pixels(src.capture())) for _ in range(3)]
    assert all(near(c, GREEN) for c in colours)
    assert caplog.text.count("skipping bad.jpg") == 1  # once per file, not per cycle
    (tmp_path / "good.png").unlink()
    (tmp_path / "bad.jpg").unlink()
    with pytest.raises(CameraError):
        src.capture()


# ---------------------------------------------------------------------- encoder


def test_b64_len_is_the_real_base64_length() -> None:
    for n in range(0, 50):
        assert b64_len(n) == len(base64.b64encode(b"x" * n))


def noise(h: int, w: int, seed: int = 1) -> RGBArray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_noisy_4000x3000_frame_fits_the_limit() -> None:
    trace: list[Attempt] = []
    t0 = time.perf_counter()
    enc = encode_frame(noise(3000, 4000), quality=80, max_size=(640, 480), trace=trace)
    elapsed = time.perf_counter() - t0
    assert enc is not None
    b64 = base64.b64encode(enc.jpeg).decode()
    assert len(b64) <= MAX_B64_BYTES == MAX_IMAGE_B64_BYTES
    assert enc.jpeg[:3] == b"\xff\xd8\xff"
    info = check_image(b64)  # the simulator's own check: what the service would say
    assert (info.width, info.height) == (enc.width, enc.height) == (640, 480)
    assert enc.scaled  # the source ignored its size: scaled here (and the feed warns once)
    assert [a.fits for a in trace] == [False] * (len(trace) - 1) + [True]
    # Noise delivered at the configured size is not smoothed by scaling: quality must give way.
    native = encode_frame(noise(480, 640), quality=80, max_size=(640, 480))
    assert (
        native is not None and native.quality < 80 and (native.width, native.height) == (640, 480)
    )
    assert b64_len(len(native.jpeg)) <= MAX_B64_BYTES
    print(
        f"4000×3000 noise → {enc.width}×{enc.height} q{enc.quality} {len(enc.jpeg)} B "
        f"({len(b64)} B base64) in {elapsed * 1e3:.0f} ms, {len(trace)} attempts"
    )


def test_quality_is_lowered_before_size_and_nothing_oversized_escapes() -> None:
    trace: list[Attempt] = []
    enc = encode_frame(noise(1080, 1920), quality=85, max_size=(1920, 1080), trace=trace)
    assert enc is not None and b64_len(len(enc.jpeg)) <= MAX_B64_BYTES
    first_small = next(i for i, a in enumerate(trace) if a.width < 1920)
    at_full = trace[:first_small]
    assert at_full[0].quality == 85 and at_full[-1].quality == QUALITY_FLOOR
    assert all(a.width == 1920 and not a.fits for a in at_full)
    assert [a.quality for a in at_full] == sorted((a.quality for a in at_full), reverse=True)
    assert (enc.width, enc.height) == (trace[-1].width, trace[-1].height) == (960, 540)
    assert jpeg_size(enc.jpeg) == (enc.width, enc.height)
    assert quality_ladder(80) == [80, 70, 60, 50, 40] and quality_ladder(45) == [45, 40]
    assert quality_ladder(30) == [30]


def test_a_frame_that_cannot_fit_is_none_never_oversized() -> None:
    trace: list[Attempt] = []
    assert encode_frame(noise(256, 256), quality=80, max_b64=400, trace=trace) is None
    assert trace and not any(a.fits for a in trace)
    assert min(min(a.width, a.height) for a in trace) >= 32


def test_camera_like_frame_stays_at_configured_quality() -> None:
    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([x * 255 // 640, y * 255 // 480, (x + y) * 127 // 1120], -1).astype(np.uint8)
    t0 = time.perf_counter()
    enc = encode_frame(rgb, quality=80, max_size=(640, 480))
    elapsed = time.perf_counter() - t0
    assert enc is not None and enc.quality == 80 and not enc.scaled
    assert (enc.width, enc.height) == (640, 480)
    decoded = np.asarray(Image.open(io.BytesIO(enc.jpeg)).convert("RGB"))
    assert np.abs(decoded.astype(int) - rgb.astype(int)).mean() < 3
    print(f"640×480 gradient q80: {len(enc.jpeg)} B in {elapsed * 1e3:.1f} ms")


# ---------------------------------------------------------------------- policy


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Run:
    """Drives a FramePolicy the way the conversation will, on a fake clock in 10 ms steps, with a
    camera answering each request after `latency` s, and checks the wire rules from its own
    bookkeeping (not the policy's)."""

    def __init__(
        self, fps: float = 1.0, when: str = "turn", mode: str = "manual", latency: float = 0.05
    ) -> None:
        self.clock = FakeClock()
        self.policy = FramePolicy(fps, when, mode, self.clock)
        self.latency = latency
        self.pending: list[float] = []  # arrival times of requested frames
        self.requests: list[float] = []
        self.sent: list[float] = []
        self.appended_since_commit = False
        self.appends: list[float] = []
        self.commits: list[float] = []

    def append(self) -> None:
        self.policy.on_append()
        self.appended_since_commit = True
        self.appends.append(self.clock.t)
        self.pump()

    def commit(self) -> None:
        self.policy.on_commit()
        self.appended_since_commit = False
        self.commits.append(self.clock.t)

    def pump(self) -> None:
        frame = self.policy.take()
        if frame is not None:
            assert self.appended_since_commit, f"image before audio at {self.clock.t:.2f}"
            self.sent.append(self.clock.t)
        if self.policy.should_request():
            self.requests.append(self.clock.t)
            self.pending.append(self.clock.t + self.latency)

    def until(self, end: float, appending: bool = False) -> None:
        next_append = self.clock.t
        while self.clock.t < end - 1e-9:
            if appending and self.clock.t >= next_append - 1e-9:
                self.append()
                next_append += 0.1
            for due in [d for d in self.pending if d <= self.clock.t + 1e-9]:
                self.pending.remove(due)
                self.policy.offer(ev.Frame(b"\xff\xd8\xff", 640, 480, t=self.clock.t))
            self.pump()
            self.clock.t = round(self.clock.t + 0.01, 6)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.sent, self.sent[1:], strict=False)]


def test_manual_turn_one_frame_after_first_append_then_at_fps() -> None:
    r = Run()
    r.until(1.0)
    r.policy.on_turn_start()  # press
    r.until(1.15)  # connecting: no audio yet
    assert r.sent == []
    assert r.requests == [1.0], "the first frame is requested at the press, ready for audio"
    r.until(4.0, appending=True)  # first append at 1.15
    r.policy.on_turn_end()  # release
    r.commit()
    r.until(5.0)
    assert r.sent[0] == pytest.approx(1.15, abs=0.011)  # right after the first append
    assert all(g >= 1.0 for g in r.gaps()) and len(r.sent) == 3
    assert all(t < 4.0 for t in r.sent)
    assert r.policy.turn_counters() == (3, 3 * image_tokens(640, 480))
    assert r.policy.turn_counters() == (0, 0)

    r.policy.on_turn_start()  # next press: nothing until its first append
    r.until(5.3)
    assert len(r.sent) == 3
    r.until(6.0, appending=True)
    assert len(r.sent) == 4 and r.sent[-1] == pytest.approx(5.3, abs=0.011)


def test_a_frame_that_arrives_after_the_commit_is_dropped() -> None:
    r = Run(latency=0.3)
    r.policy.on_turn_start()
    r.until(0.5, appending=True)  # frame 1 at 0.3; frame 2 requested ~1.0
    r.until(1.2, appending=True)
    r.policy.on_turn_end()
    r.commit()
    r.until(2.0)
    dropped = r.policy.dropped
    r.policy.offer(ev.Frame(b"\xff\xd8\xff", 640, 480))  # a late arrival
    assert r.policy.take() is None and r.policy.dropped == dropped + 1
    assert all(t < 1.2 for t in r.sent)


def test_vad_turn_frames_only_while_the_user_speaks() -> None:
    r = Run(mode="vad")
    r.until(2.0, appending=True)  # VAD streams all the time
    r.policy.on_turn_start()  # speech_started
    r.until(4.5, appending=True)
    r.policy.on_turn_end()  # speech_stopped
    r.until(4.6, appending=True)
    r.commit()  # input_audio_buffer.committed
    r.until(6.0, appending=True)
    r.policy.on_turn_start()
    r.until(7.0, appending=True)
    r.policy.on_turn_end()
    r.until(8.0, appending=True)
    first, second = [t for t in r.sent if t < 5], [t for t in r.sent if t > 5]
    assert first[0] == pytest.approx(2.05, abs=0.011) and len(first) == 3
    assert second[0] == pytest.approx(6.05, abs=0.011) and len(second) == 1
    assert all(2.0 <= t <= 4.5 or 6.0 <= t <= 7.0 for t in r.sent)
    assert all(g >= 1.0 for g in r.gaps())


def test_always_mode_sends_whenever_audio_streams() -> None:
    r = Run(when="always")
    r.until(1.0)
    assert r.requests == []  # no audio, no request
    r.policy.on_turn_start()
    r.until(3.55, appending=True)
    r.policy.on_turn_end()
    r.commit()
    r.until(6.0)
    assert len(r.sent) == 3 and r.sent[0] == pytest.approx(1.0, abs=0.06)
    assert all(t < 3.55 for t in r.sent)

    v = Run(when="always", mode="vad")
    v.until(3.0, appending=True)
    v.commit()  # the service committed a turn; the next append refills the buffer
    v.until(6.0, appending=True)
    assert len(v.sent) >= 5 and all(g >= 1.0 for g in v.gaps())


def test_half_an_fps_means_two_seconds_apart() -> None:
    r = Run(fps=0.5)
    r.policy.on_turn_start()
    r.until(8.0, appending=True)
    assert len(r.sent) == 4 and all(g >= 2.0 for g in r.gaps())
    assert max(r.gaps()) < 2.05


def test_a_slow_camera_is_requested_early_so_the_rate_holds() -> None:
    r = Run(latency=0.8)
    r.policy.on_turn_start()
    r.until(10.0, appending=True)
    assert all(g >= 1.0 for g in r.gaps())
    assert sum(r.gaps()) / len(r.gaps()) < 1.25  # not 1.8 s: requests lead by the capture time


def test_policy_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError):
        FramePolicy(1.0, "sometimes", "manual")
    with pytest.raises(ValueError):
        FramePolicy(1.0, "turn", "auto")


def test_cost_of_the_config() -> None:
    cost = worst_case_tokens_per_minute(CameraSection(), "manual")
    assert (cost.tokens_per_frame, cost.frames_per_minute) == (300, 60)
    assert cost.image_tokens_per_minute == 18000 and cost.audio_tokens_per_minute == 750
    assert cost.images_dominate and not cost.continuous and "24.0×" in cost.summary()
    small = worst_case_tokens_per_minute(
        CameraSection(width=64, height=64, fps=0.5, when="always"), "vad"
    )
    assert (small.tokens_per_frame, small.image_tokens_per_minute) == (4, 120)
    assert not small.images_dominate and small.continuous


# ---------------------------------------------------------------------- feed


class Recorder:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: type) -> list:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


def camera_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "omnid.camera" and r.levelno >= logging.WARNING]


def test_feed_failing_open_warns_once_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="omnid.camera")
    cam_dir = tmp_path / "cam"
    cfg = camera_cfg(cam_dir)
    opened: list[FilesSource] = []

    def factory() -> FrameSource:
        opened.append(FilesSource(cam_dir))
        return opened[-1]

    rec = Recorder()
    feed = CameraFeed(cfg, rec, source_factory=factory, retry_base_s=0.02, retry_cap_s=0.1)
    feed.start()
    try:
        assert wait_until(lambda: len(opened) >= 5)
        feed.request()  # requests while in trouble are harmless
        assert len(rec.of(ev.CameraTrouble)) == 1 and "cam" in rec.of(ev.CameraTrouble)[0].reason
        assert len(camera_warnings(caplog)) == 1
        assert feed.trouble is not None

        cam_dir.mkdir()
        write_image(cam_dir / "a.png", RED, (640, 480))
        n = len(opened)
        assert wait_until(lambda: len(opened) > n and "opened files:" in caplog.text)
        feed.request()  # "back" once a frame is delivered again, not merely opened
        assert wait_until(lambda: len(rec.of(ev.Frame)) == 1)
        assert wait_until(lambda: "camera back" in caplog.text)
        assert feed.trouble is None
        frame = rec.of(ev.Frame)[0]
        assert frame.jpeg[:3] == b"\xff\xd8\xff" and (frame.width, frame.height) == (64, 48)
        assert jpeg_size(frame.jpeg) == (64, 48)
        assert len(rec.of(ev.CameraTrouble)) == 1 and len(camera_warnings(caplog)) == 1
    finally:
        feed.close()


class HangingSource(FilesSource):
    """A camera whose capture blocks in the driver while `hang` is set (the probe frame at open
    works), like a USB camera that stops streaming."""

    hang = threading.Event()
    release = threading.Event()

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.captures = 0

    def capture(self) -> Picture:
        self.captures += 1
        if self.captures > 1 and HangingSource.hang.is_set():
            HangingSource.release.wait(10)
        return super().capture()


def test_feed_survives_a_hanging_capture(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="omnid.camera")
    write_image(tmp_path / "a.png", GREEN)
    cfg = camera_cfg(tmp_path)
    HangingSource.hang.set()
    HangingSource.release.clear()
    rec = Recorder()
    feed = CameraFeed(
        cfg,
        rec,
        source_factory=lambda: HangingSource(tmp_path),
        stall_s=0.3,
        retry_base_s=0.05,
        retry_cap_s=0.2,
    )
    feed.start()
    try:
        assert wait_until(lambda: "camera: files:" in caplog.text)  # opened, probe frame ok
        worst = 0.0
        deadline = time.monotonic() + 1.2  # long enough for the replacement worker to hang too
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            feed.request()  # the first one starts the capture that hangs
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)
        # Blocking on the hung capture would take the 0.3 s stall watchdog at least (10 s, the
        # hang); a request is a lock and a flag, plus what a busy machine adds.
        assert worst < 0.1
        assert wait_until(lambda: len(rec.of(ev.CameraTrouble)) == 1)
        assert "stalled" in rec.of(ev.CameraTrouble)[0].reason
        assert rec.of(ev.Frame) == [] and len(camera_warnings(caplog)) == 1
        # The replacement opened (probe frame fine), then hung as well: same episode, no flapping.
        assert wait_until(
            lambda: "still failing" in caplog.text and "camera back" not in caplog.text
        )

        HangingSource.hang.clear()  # the device comes back; the stuck call returns
        HangingSource.release.set()

        def asked_and_got() -> bool:
            feed.request()  # keep asking: the replacement worker reopens after a backoff
            return len(rec.of(ev.Frame)) >= 1

        assert wait_until(asked_and_got)
        assert wait_until(lambda: "camera back" in caplog.text)
        assert len(rec.of(ev.CameraTrouble)) == 1 and len(camera_warnings(caplog)) == 1
    finally:
        HangingSource.release.set()
        feed.close()


def test_close_returns_while_the_camera_hangs(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", GREEN)
    HangingSource.hang.set()
    HangingSource.release.clear()
    rec = Recorder()
    feed = CameraFeed(
        camera_cfg(tmp_path), rec, source_factory=lambda: HangingSource(tmp_path), stall_s=5
    )
    feed.start()
    try:
        time.sleep(0.2)
        feed.request()
        time.sleep(0.2)  # now stuck inside capture()
        t0 = time.monotonic()
        feed.close()
        assert time.monotonic() - t0 < 1.1
        feed.request()  # after close: a no-op, not an error
    finally:
        HangingSource.release.set()


class SlowSource(FilesSource):
    def capture(self) -> Picture:
        time.sleep(0.8)
        return super().capture()


def test_a_slow_camera_never_blocks_request(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", BLUE, (640, 480))
    rec = Recorder()
    feed = CameraFeed(camera_cfg(tmp_path), rec, source_factory=lambda: SlowSource(tmp_path))
    feed.start()
    try:
        times = []
        end = time.monotonic() + 2.6
        while time.monotonic() < end:
            t0 = time.perf_counter()
            feed.request()
            times.append(time.perf_counter() - t0)
            time.sleep(0.01)
        # Waiting for the camera would take up to its 0.8 s capture; a request is µs, plus what
        # a busy machine adds to one of ~250 calls.
        assert max(times) < 0.1, f"request() took {max(times) * 1e3:.2f} ms"
        assert 1 <= len(rec.of(ev.Frame)) <= 3  # 0.8 s probe, then 0.8 s per frame
        assert rec.of(ev.CameraTrouble) == []
        print(f"request(): max {max(times) * 1e6:.0f} µs over {len(times)} calls")
    finally:
        feed.close()


class HugeNoiseSource(FrameSource):
    """A device that ignores the configured size and delivers 4000×3000 noise."""

    name = "noise"

    def open(self, width: int, height: int) -> None:
        self.rng = np.random.default_rng(7)

    def capture(self) -> RGBArray:
        return self.rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)

    def close(self) -> None:
        pass


def test_feed_turns_an_oversized_noisy_frame_into_one_that_fits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="omnid.camera")
    cfg = camera_cfg(tmp_path, width=640, height=480)
    rec = Recorder()
    feed = CameraFeed(cfg, rec, source_factory=HugeNoiseSource).start()
    try:
        for n in (1, 2):
            feed.request()
            assert wait_until(lambda: len(rec.of(ev.Frame)) == n, timeout=5)  # noqa: B023
        for frame in rec.of(ev.Frame):
            info = check_image(base64.b64encode(frame.jpeg).decode())
            assert info.b64_bytes <= MAX_IMAGE_B64_BYTES
            assert (info.width, info.height) == (frame.width, frame.height) == (640, 480)
        assert caplog.text.count("scaling every frame in Python") == 1
    finally:
        feed.close()


def test_open_feed_and_listing(tmp_path: Path) -> None:
    assert open_feed(CameraSection(enabled=False), Recorder()) is None
    write_image(tmp_path / "a.jpg", RED)
    rec = Recorder()
    feed = open_feed(camera_cfg(tmp_path), rec)
    assert feed is not None
    try:
        feed.request()
        assert wait_until(lambda: len(rec.of(ev.Frame)) == 1)
    finally:
        feed.close()
    lines = list_sources()
    assert lines and all(isinstance(line, str) for line in lines)
    assert any(line.startswith("picamera2") for line in lines)
    assert any(line.startswith("v4l2") for line in lines)


# ---------------------------------------------------------------------- JPEGs sent as they are


def scene(width: int, height: int, seed: int = 3) -> RGBArray:
    """A camera-like picture: smooth gradients with a little sensor noise."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    grain = np.random.default_rng(seed).integers(-6, 7, base.shape)
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def save_jpeg(path: Path, rgb: RGBArray, quality: int = 85, **options: object) -> bytes:
    Image.fromarray(rgb).save(path, "JPEG", quality=quality, **options)
    return path.read_bytes()


def jpeg_bytes(img: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **options)
    return buf.getvalue()


def without_huffman_tables(data: bytes) -> bytes:
    """The same JPEG with its DHT segments cut out, as many UVC webcams send MJPEG frames."""
    out, pos = bytearray(data[:2]), 2
    while True:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            return bytes(out + data[pos:])
        if marker != 0xC4:
            out += data[pos : pos + 2 + length]
        pos += 2 + length


def one_frame(directory: Path, width: int = 640, height: int = 480) -> ev.Frame:
    """The first frame the real feed posts for a `files` camera on `directory`."""
    rec = Recorder()
    feed = CameraFeed(camera_cfg(directory, width=width, height=height), rec).start()
    try:
        feed.request()
        assert wait_until(lambda: len(rec.of(ev.Frame)) == 1, timeout=5)
    finally:
        feed.close()
    return rec.of(ev.Frame)[0]


def test_jpeg_of_reads_the_headers_and_refuses_what_cannot_go_as_it_is() -> None:
    colour = Image.fromarray(scene(64, 48))
    baseline = jpeg_bytes(colour)
    for data in (baseline, jpeg_bytes(colour, progressive=True), jpeg_bytes(colour.convert("L"))):
        jpeg = Jpeg.of(data)
        assert jpeg is not None and (jpeg.width, jpeg.height) == (64, 48) and jpeg.data is data
    padded = Jpeg.of(baseline + bytes(300))  # a UVC buffer's zero padding is dropped
    assert padded is not None and padded.data == baseline
    assert "data" not in repr(padded)  # kilobytes of JPEG never end up in a log line
    assert Jpeg.of(jpeg_bytes(colour.convert("CMYK"))) is None
    assert Jpeg.of(without_huffman_tables(baseline)) is None
    assert Jpeg.of(baseline[:-40]) is None  # truncated: no end-of-image marker
    png = io.BytesIO()
    colour.save(png, "PNG")
    assert Jpeg.of(png.getvalue()) is None and Jpeg.of(b"") is None
    assert fits_as_is(Jpeg(b"x" * 3000, 64, 48), (64, 48), max_b64=4000)
    assert not fits_as_is(Jpeg(b"x" * 3001, 64, 48), (64, 48), max_b64=4000)
    assert not fits_as_is(Jpeg(b"x", 65, 48), (64, 48)) and not fits_as_is(
        Jpeg(b"x", 64, 49), (64, 48)
    )


def test_a_jpeg_file_that_fits_goes_out_byte_for_byte(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 1  # upright, said explicitly, as cameras write it
    data = save_jpeg(tmp_path / "a.jpg", scene(640, 480), exif=exif.tobytes())
    assert b64_len(len(data)) <= MAX_B64_BYTES
    src = FilesSource(tmp_path)
    src.open(640, 480)
    first, again = src.capture(), src.capture()
    assert (
        isinstance(first, Jpeg) and first.data == data and (first.width, first.height) == (640, 480)
    )
    assert again is first  # the last frame is kept: a still scene is read once
    frame = one_frame(tmp_path)
    assert frame.jpeg == data and (frame.width, frame.height) == (640, 480)

    grey = tmp_path / "grey"
    grey.mkdir()
    data = save_jpeg(grey / "g.jpeg", scene(320, 240)[..., 1], progressive=True)
    frame = one_frame(grey)
    assert frame.jpeg == data and (frame.width, frame.height) == (320, 240)


def test_a_jpeg_file_larger_than_the_box_is_scaled_as_before(tmp_path: Path) -> None:
    data = save_jpeg(tmp_path / "big.jpg", scene(1280, 960))
    frame = one_frame(tmp_path)
    assert frame.jpeg != data and (frame.width, frame.height) == (640, 480)
    assert jpeg_size(frame.jpeg) == (640, 480)
    with Image.open(io.BytesIO(frame.jpeg)) as img:
        assert near(mean_colour(np.asarray(img.convert("RGB"))), mean_colour(scene(1280, 960)))


def test_a_jpeg_file_over_the_base64_limit_is_encoded_again(tmp_path: Path) -> None:
    data = save_jpeg(tmp_path / "noisy.jpg", noise(480, 640), quality=95)
    assert b64_len(len(data)) > MAX_B64_BYTES  # fits the box, not the limit
    frame = one_frame(tmp_path)
    info = check_image(base64.b64encode(frame.jpeg).decode())
    assert info.b64_bytes <= MAX_IMAGE_B64_BYTES and (info.width, info.height) == (640, 480)
    assert frame.jpeg != data


def test_a_png_file_is_encoded_as_before(tmp_path: Path) -> None:
    rgb = scene(640, 480)
    Image.fromarray(rgb).save(tmp_path / "a.png", "PNG")
    frame = one_frame(tmp_path)
    before = encode_frame(rgb, quality=80, max_size=(640, 480))
    assert before is not None and frame.jpeg == before.jpeg
    assert (frame.width, frame.height) == (640, 480)


def test_a_cmyk_jpeg_file_is_encoded_again_in_rgb(tmp_path: Path) -> None:
    data = save_jpeg(tmp_path / "print.jpg", scene(320, 240))
    Image.open(io.BytesIO(data)).convert("CMYK").save(tmp_path / "print.jpg", "JPEG")
    frame = one_frame(tmp_path)
    with Image.open(io.BytesIO(frame.jpeg)) as img:
        assert img.mode == "RGB" and img.size == (320, 240)


def test_an_exif_rotated_jpeg_file_is_turned_upright_not_sent_as_it_is(tmp_path: Path) -> None:
    stored = np.zeros((360, 480, 3), np.uint8)
    stored[:, :240] = RED  # left half as stored: the top once turned 90° clockwise
    stored[:, 240:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view", as a phone held upright writes it
    data = save_jpeg(tmp_path / "phone.jpg", stored, exif=exif.tobytes())
    assert Jpeg.of(data) is not None  # a JPEG that could go as it is, but for the orientation
    frame = one_frame(tmp_path)
    assert frame.jpeg != data and (frame.width, frame.height) == (360, 480)
    with Image.open(io.BytesIO(frame.jpeg)) as img:
        upright = np.asarray(img.convert("RGB"))
    assert near(mean_colour(upright[:200]), RED) and near(mean_colour(upright[280:]), BLUE)


def test_a_multi_picture_jpeg_file_sends_its_first_picture_only(tmp_path: Path) -> None:
    first, depth = Image.new("RGB", (320, 240), RED), Image.new("RGB", (320, 240), BLUE)
    first.save(tmp_path / "stereo.jpg", "MPO", save_all=True, append_images=[depth])
    data = (tmp_path / "stereo.jpg").read_bytes()
    assert Jpeg.of(data) is not None  # a JPEG that could go as it is, with another one after it
    frame = one_frame(tmp_path)
    assert frame.jpeg != data and len(frame.jpeg) < len(data)
    with Image.open(io.BytesIO(frame.jpeg)) as img:
        assert img.format == "JPEG" and near(mean_colour(np.asarray(img.convert("RGB"))), RED)


class OversizedMjpegSource(FrameSource):
    """A webcam that delivers 1280×960 MJPEG whatever size it is asked for."""

    name = "mjpeg"

    def open(self, width: int, height: int) -> None:
        jpeg = Jpeg.of(jpeg_bytes(Image.fromarray(scene(1280, 960)), quality=85))
        assert jpeg is not None
        self.jpeg = jpeg

    def capture(self) -> Picture:
        return self.jpeg

    def close(self) -> None:
        pass


def test_feed_decodes_and_scales_a_jpeg_that_does_not_fit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="omnid.camera")
    rec = Recorder()
    feed = CameraFeed(
        camera_cfg(tmp_path, width=640, height=480), rec, source_factory=OversizedMjpegSource
    )
    feed.start()
    try:
        for n in (1, 2):
            feed.request()
            assert wait_until(lambda: len(rec.of(ev.Frame)) == n, timeout=5)  # noqa: B023
    finally:
        feed.close()
    for frame in rec.of(ev.Frame):
        assert (frame.width, frame.height) == jpeg_size(frame.jpeg) == (640, 480)
    assert caplog.text.count("delivers 1280×960, larger than") == 1


# ---------------------------------------------------------------------- v4l2 (no device here)


def test_v4l2_picks_the_largest_size_that_fits() -> None:
    offers = [
        Offer("YUYV", 640, 480),
        Offer("MJPEG", 640, 480),
        Offer("MJPEG", 1280, 720),
        Offer("YUYV", 320, 240),
        Offer("H264", 640, 480),
    ]
    assert pick_mode(offers, 640, 480) == Offer("MJPEG", 640, 480)
    assert pick_mode(offers, 400, 300) == Offer("YUYV", 320, 240)
    assert pick_mode(offers, 100, 100) == Offer("YUYV", 320, 240)  # none fits: the smallest
    assert pick_mode([Offer("H264", 640, 480)], 640, 480) is None


def test_yuyv_to_rgb_colours() -> None:
    # BT.601 limited range: (Y, U, V) of pure red, green, blue, white, with 8 bytes of row padding
    yuv = {
        RED: (81, 90, 240),
        GREEN: (145, 54, 34),
        BLUE: (41, 240, 110),
        (255,) * 3: (235, 128, 128),
    }
    for rgb, (y, u, v) in yuv.items():
        row = bytes([y, u, y, v]) * 2 + b"\0" * 8
        out = yuyv_to_rgb(row * 2, 4, 2, 16)
        assert out.shape == (2, 4, 3)
        assert near(tuple(int(c) for c in out[1, 3]), rgb, tol=4)  # type: ignore[arg-type]
    with pytest.raises(CameraError):
        yuyv_to_rgb(b"\0" * 10, 4, 2, 16)


def test_v4l2_mjpeg_goes_as_it_is_unless_it_lacks_huffman_tables_or_does_not_fit() -> None:
    data = jpeg_bytes(Image.fromarray(scene(640, 480)), quality=80)
    jpeg = mjpeg_picture(data + bytes(1000), (640, 480))  # with a buffer's zero padding
    assert isinstance(jpeg, Jpeg) and jpeg.data == data and (jpeg.width, jpeg.height) == (640, 480)
    bare = pixels(mjpeg_picture(without_huffman_tables(data), (640, 480)))  # standard tables
    assert bare.shape == (480, 640, 3) and near(mean_colour(bare), mean_colour(scene(640, 480)))
    assert pixels(mjpeg_picture(data, (320, 240))).shape == (240, 320, 3)  # decoded at 1/2 scale
    big = jpeg_bytes(Image.fromarray(noise(480, 640)), quality=95)
    assert pixels(mjpeg_picture(big, (640, 480))).shape == (480, 640, 3)  # over the limit


def test_v4l2_missing_device_is_a_camera_error() -> None:
    with pytest.raises(CameraError, match="video99"):
        V4L2Source("/dev/video99").open(640, 480)
    assert all(isinstance(line, str) for line in list_devices())
