"""What every scenario shares: processes, sd_notify, /proc readings, WAV timelines, statistics.

The daemon and the simulator run as the tests run them (`tests/harness.py`: `omnid run` and
`omnid simulate` as separate processes, a fresh throwaway key by file, every output checked for it
at stop); this module adds what a benchmark needs on top: the time from process start to READY=1,
CPU and RSS of one process read from /proc, and the machine it ran on.
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import time
import wave
from pathlib import Path

import numpy as np

from tests.harness import Daemon, NotifySocket, Simulator, make_key, write_config, write_wav

ROOT = Path(__file__).resolve().parent.parent
IN_RATE, OUT_RATE = 16_000, 24_000
SAMPLE = ROOT / "omnid" / "data" / "sample.wav"
VAD = '[session]\nmode = "vad"\n[session.vad]\ntype = "server_vad"\n'
MODEL = "qwen3-omni-flash-realtime"  # server VAD only: the same turn detection for omnid and SDK
CLK_TCK = os.sysconf("SC_CLK_TCK")

__all__ = ["Daemon", "Simulator", "make_key", "write_config", "write_wav"]


# ------------------------------------------------------------------ audio timelines


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def speech(seconds: float) -> np.ndarray:
    """The bundled spoken sample, repeated or cut to length (int16 at 16 kHz)."""
    sample = read_wav(SAMPLE)
    reps = int(np.ceil(seconds * IN_RATE / len(sample)))
    return np.tile(sample, reps)[: int(seconds * IN_RATE)].astype(np.int16)


def vowel(seconds: float) -> np.ndarray:
    """A continuous voiced sound (150 Hz and harmonics, -12 dBFS) with no pauses, so the moment
    its echo stops in the output is the moment playback was cut (as tests/test_handsfree.py)."""
    t = np.arange(int(seconds * IN_RATE)) / IN_RATE
    wave_ = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    return (wave_ / np.abs(wave_).max() * 0.25 * 32767).astype(np.int16)


def timeline(
    path: Path, seconds: float, parts: list[tuple[float, np.ndarray]], noise_seed: int | None = None
) -> np.ndarray:
    """A microphone WAV of `seconds`: `parts` (start second, int16 samples) over silence, or mixed
    over faint white noise (about -63 dBFS, far below any VAD threshold) when `noise_seed` is
    given — the noise makes every stretch of the file unique, so appended audio can be located."""
    n = int(seconds * IN_RATE)
    if noise_seed is None:
        pcm = np.zeros(n, np.int16)
    else:
        pcm = np.random.default_rng(noise_seed).integers(-40, 41, n).astype(np.int16)
        pcm[pcm == 0] = 1  # no run of digital silence anywhere
    for at, part in parts:
        i = int(at * IN_RATE)
        chunk = part[: max(0, n - i)].astype(np.int32) + pcm[i : i + min(len(part), n - i)]
        pcm[i : i + len(chunk)] = np.clip(chunk, -32768, 32767)  # over the noise: still unique
    write_wav(path, pcm)
    return pcm


# ------------------------------------------------------------------ processes


class BenchDaemon(Daemon):
    """`omnid run` with its sd_notify socket, which stays bound until the daemon has stopped
    (systemd's does: a daemon must be able to say STOPPING=1)."""

    ready_s = 0.0  # process start → READY=1, seconds
    notify: NotifySocket | None = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        try:
            return super().stop(sig, timeout)
        finally:
            if self.notify is not None:
                self.notify.close()


def launch(
    tmp: Path,
    sim: Simulator,
    key: str,
    extra: str,
    timeout: float = 20.0,
    env: dict[str, str] | None = None,
    connected: bool = True,
    url: str | None = None,
) -> BenchDaemon:
    """`omnid run` against `sim` (`extra` added to its config, `env` to its environment), with
    `daemon.ready_s` = process start → READY=1 and, unless `connected` is False (a mode that
    need not hold a session while it waits), the session connected before returning. `url`:
    where it connects instead of the simulator's own address (a proxy in front of it)."""
    config = write_config(tmp, url or sim.url, key, extra)
    notify = NotifySocket(tmp / "notify.sock", clock=time.monotonic)
    started = time.monotonic()
    daemon = BenchDaemon(tmp, config, key, NOTIFY_SOCKET=str(notify.path), **(env or {}))
    daemon.notify = notify
    try:
        deadline = started + timeout
        while not notify.times("READY=1") and time.monotonic() < deadline:
            if daemon.proc.poll() is not None:
                break
            time.sleep(0.005)
        if not notify.times("READY=1"):
            raise RuntimeError("no READY=1 from omnid run; output:\n" + daemon.output())
        daemon.ready_s = notify.times("READY=1")[0] - started
        if connected:
            daemon.wait_ready(timeout)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


class CpuWindow:
    """CPU time of `pid` over a wall-clock window: percent of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0 = cpu_seconds(pid)
        self.wall0 = time.monotonic()

    def pct(self) -> float:
        return 100 * (cpu_seconds(self.pid) - self.cpu0) / (time.monotonic() - self.wall0)


def rss_over(pid: int, seconds: float) -> list[float]:
    """VmRSS once a second for `seconds` (the caller's measuring window). Its median is the
    figure: one reading can land on a camera frame's buffers in flight (~3 MB for a moment)."""
    start, samples = time.monotonic(), []
    for k in range(1, int(seconds) + 1):
        sleep_until(start + k)
        try:
            samples.append(rss_mb(pid))
        except (OSError, RuntimeError):  # it exited: the caller finds out and says why
            break
    sleep_until(start + seconds)
    return samples


def sleep_until(deadline: float) -> None:
    """Sleep until `deadline` on the monotonic clock."""
    time.sleep(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------ statistics and machine


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (linear interpolation); NaN for no values (never in a full run)."""
    return float(np.percentile(values, p)) if values else float("nan")


def numbers(records: list[dict[str, str]], field: str) -> list[float]:
    """A numeric journal field from turn records; records without it (e.g. no audio) skipped."""
    out = []
    for r in records:
        try:
            out.append(float(r[field]))
        except (KeyError, ValueError):
            continue
    return out


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and value.strip():
                model = value.strip()  # "Model" (a Pi's board) comes last and wins
    except OSError:
        pass
    total = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"
    except OSError:
        pass
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "memory": total,
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


def loadavg() -> str:
    """The 1-minute load average: the machine may be shared, and CPU figures show it."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"
