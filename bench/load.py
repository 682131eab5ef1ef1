"""CPU and memory under load: omnid against the official SDK doing the same work.

The workload (issue 8): hands-free streaming without pause, the `files` camera at 1 fps 640×480
(`camera.when = "always"`, so a frame goes out every second, as the SDK driver sends one), and a
conversation on top — 3 s utterances every 10 s, each answered with its echo, which is decoded
and written out. Both clients read the same microphone WAV in real time, see the same pictures
and talk to the same `omnid simulate` process; each is measured alone, from /proc, over the same
window after the same warm-up.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.common import (
    VAD,
    CpuWindow,
    Simulator,
    launch,
    make_key,
    rss_mb,
    rss_over,
    sleep_until,
    speech,
    timeline,
)
from bench.sdk_client import KEY_ENV
from tests.harness import Process, clean_env

UTTERANCE_S, EVERY_S = 3.0, 10.0


def make_images(directory: Path, count: int = 4) -> None:
    """Camera-like 640×480 pictures: shapes, gradients and sensor noise (JPEG ~60–90 KB)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        y, x = np.mgrid[0:480, 0:640]
        base = np.stack([(x * (i + 1)) % 256, (y + 40 * i) % 256, (x + y) // 5 % 256], axis=-1)
        img = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, 600)), int(rng.integers(0, 440))
            box = (x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 160)))
            draw.ellipse(box, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        img = img.filter(ImageFilter.GaussianBlur(1.5))
        noisy = np.asarray(img, np.int16) + rng.integers(-6, 7, (480, 640, 3))
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            directory / f"frame{i}.jpg", quality=92
        )


def _mic(tmp: Path, seconds: float) -> Path:
    path = tmp / "mic.wav"
    starts = np.arange(2.0, seconds, EVERY_S)
    timeline(path, seconds, [(float(s), speech(UTTERANCE_S)) for s in starts])
    return path


def omnid_load(
    tmp: Path, images: Path, sim: Simulator, key: str, warmup: float, seconds: float, **env: str
) -> dict:
    config = (
        VAD
        + f'[audio]\ninput_device = "wav:{_mic(tmp, warmup + seconds + 15)}"\n'
        + f'output_device = "wav:{tmp / "spk.wav"}"\n'
        + f'[camera]\nenabled = true\nsource = "files"\npath = "{images}"\n'
        + 'width = 640\nheight = 480\nfps = 1.0\nwhen = "always"\n'
    )
    daemon = launch(tmp, sim, key, config, env=env)
    try:
        wall0 = daemon.audio_started_wall()
        time.sleep(max(0.0, wall0 + warmup - time.time()))
        window = CpuWindow(daemon.proc.pid)
        samples = rss_over(daemon.proc.pid, seconds)
        if not samples:
            raise RuntimeError("omnid run exited under load:\n" + daemon.output())
        cpu = window.pct()
        rss = statistics.median(samples)
        hwm = rss_mb(daemon.proc.pid, "VmHWM")
        turns = daemon.records("turn")
    finally:
        daemon.stop()
    return {
        "cpu_pct": cpu,
        "rss_mb": rss,
        "rss_range_mb": (min(samples), max(samples)),
        "hwm_mb": hwm,
        "turns": turns,
        "ready_s": daemon.ready_s,
    }


class _Child(Process):
    """The SDK driver process, its output collected and checked for the key, as the daemon's."""

    def __init__(self, args: list[str], key: str) -> None:
        super().__init__(args, clean_env(**{KEY_ENV: key}), key, module="bench.sdk_client")

    def finish(self, timeout: float) -> str:
        """Wait for it to end on its own (it runs for `--seconds`); its output."""
        self.wait(timeout)
        return self.output()


def sdk_load(
    tmp: Path,
    images: Path,
    sim: Simulator,
    key: str,
    warmup: float,
    seconds: float,
    *extra: str,
) -> dict:
    args = ["--url", sim.url, "--model", "qwen3.5-omni-plus-realtime", *extra]
    args += ["--wav", str(_mic(tmp, warmup + seconds + 15)), "--images", str(images)]
    args += ["--out", str(tmp / "sdk-reply.wav"), "--seconds", str(warmup + seconds + 1)]
    child = _Child(args, key)
    cpu = rss = hwm = 0.0
    try:
        child.wait_for(lambda line: "streaming" in line, 30)
        start = time.monotonic()
        sleep_until(start + warmup)
        window = CpuWindow(child.proc.pid)
        samples = rss_over(child.proc.pid, seconds)
        if child.proc.poll() is None and samples:
            cpu = window.pct()
            rss = statistics.median(samples)
            hwm = rss_mb(child.proc.pid, "VmHWM")
    finally:
        out = child.finish(20)
    done = [ln for ln in out.splitlines() if "sdk client: done" in ln]
    if child.proc.returncode != 0 or not done or not cpu:
        raise RuntimeError("sdk client failed:\n" + out)
    return {
        "cpu_pct": cpu,
        "rss_mb": rss,
        "rss_range_mb": (min(samples), max(samples)),
        "hwm_mb": hwm,
        "summary": done[0].split("done ", 1)[1],
    }


def load(tmp: Path, warmup: float, seconds: float, rounds: int = 1) -> dict[str, Any]:
    """`rounds` runs of each client, interleaved (omnid, SDK, omnid, SDK …) so that a change in
    what else the machine is doing falls on both; the report takes the medians."""
    images = tmp / "images"
    make_images(images)
    key = make_key()
    sim = Simulator(tmp, key)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    try:
        for i in range(rounds):
            for sub in (f"omnid{i}", f"sdk{i}"):
                (tmp / sub).mkdir()
            ours.append(omnid_load(tmp / f"omnid{i}", images, sim, key, warmup, seconds))
            theirs.append(sdk_load(tmp / f"sdk{i}", images, sim, key, warmup, seconds))
    finally:
        sim.stop()
    sent = [r for r in sim.wire("recv") if r["event"]["type"] == "input_image_buffer.append"]
    errors = [r for r in sim.wire("send") if r["event"]["type"] == "error"]
    return {"omnid": ours, "sdk": theirs, "images_sent": len(sent), "errors": len(errors)}
