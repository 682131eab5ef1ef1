"""Run the real thing in tests: `omnid simulate` and `omnid run` as separate processes.

Nothing of ours is mocked: the daemon talks to the simulator over a real WebSocket on 127.0.0.1,
the test drives it through the real control socket, and reads back what a user or operator would
see: the simulator's record of the wire, the daemon's journal records (stderr `KEY=value` lines,
the documented non-systemd form), the audio that came out. The API key is a fresh throwaway per
test, passed by file and environment (never argv), and every captured output is checked for it.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from omnid.control import ctl

ROOT = Path(__file__).resolve().parent.parent


def make_key() -> str:
    return "sk-test-" + secrets.token_hex(12)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "OMNID_",
                "DASHSCOPE_",
                "NOTIFY_SOCKET",
                "JOURNAL_STREAM",
                "CREDENTIALS_DIRECTORY",
                "WATCHDOG_",
            )
        )
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONWARNINGS"] = "error::DeprecationWarning"  # as pyproject.toml's filterwarnings
    env.update(extra)
    return env


class Process:
    """A child process whose stdout and stderr are collected line by line; `omnid …` unless
    another module is named (the benchmark runs the SDK driver the same way)."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        secret: str,
        module: str = "omnid.cli",
        wrap: tuple[str, ...] = (),
    ) -> None:
        self.args = args
        self.name = f"omnid {args[0]}" if module == "omnid.cli" else module
        self.secret = secret
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", module, *args],  # wrap: e.g. nsenter into a netns
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
                    raise AssertionError(
                        f"{self.name}: expected line not seen; output:\n" + self.output()
                    )
                self._cond.wait(min(left, 0.2))

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def records(self, event: str | None = None) -> list[dict[str, str]]:
        """Structured journal records from the stderr lines (`OMNID_EVENT=… KEY=value …`)."""
        found = []
        for line in self.output().splitlines():
            if "OMNID_EVENT=" not in line:
                continue
            fields = dict(
                tok.split("=", 1)
                for tok in shlex.split(line[line.index("OMNID_EVENT=") :])
                if "=" in tok
            )
            if event is None or fields.get("OMNID_EVENT") == event:
                found.append(fields)
        return found

    def wait_record(
        self, event: str, count: int = 1, timeout: float = 20.0
    ) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.records(event)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{count} '{event}' record(s) not seen; output:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        """Its exit status (killed after `timeout`), once its output has been checked for the
        key."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(2)
        assert self.secret not in self.output(), f"API key leaked in {self.name} output"
        return code


class Simulator(Process):
    def __init__(self, tmp: Path, key: str, *flags: str, wrap: tuple[str, ...] = ()) -> None:
        self.record_path = tmp / "sim-record.jsonl"
        super().__init__(
            ["simulate", "--port", "0", "--record", str(self.record_path), *flags],
            clean_env(OMNID_SIM_API_KEY=key),
            key,
            wrap=wrap,
        )
        line = self.wait_for(lambda s: "listening on ws://" in s)
        self.url = line.split("listening on ", 1)[1].strip()

    def record(self) -> list[dict[str, Any]]:
        if not self.record_path.exists():
            return []
        text = self.record_path.read_text()
        # The simulator may be mid-way through a long line (an audio delta): only whole lines count.
        whole = text[: text.rfind("\n") + 1]
        return [json.loads(x) for x in whole.splitlines() if x.strip()]

    def wire(self, direction: str | None = None) -> list[dict[str, Any]]:
        """(t, direction, event) of every event on the wire, in order."""
        return [
            r
            for r in self.record()
            if r.get("dir") in ("recv", "send") and (direction is None or r["dir"] == direction)
        ]


def write_wav(path: Path, pcm: np.ndarray, rate: int = 16_000, channels: int = 1) -> None:
    """16-bit PCM WAV (`pcm` interleaved when `channels` > 1)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm).astype("<i2").tobytes())


def wav_devices(tmp: Path, *settings: str, mic: str = "mic.wav", spk: str = "spk.wav") -> str:
    """The `[audio]` section for `wav:` devices in `tmp`, plus further `key = value` lines."""
    lines = [f'input_device = "wav:{tmp / mic}"', f'output_device = "wav:{tmp / spk}"', *settings]
    return "[audio]\n" + "".join(line + "\n" for line in lines)


def write_config(tmp: Path, sim_url: str, key: str, extra: str = "") -> Path:
    key_file = tmp / "api-key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    path = tmp / "omnid.toml"
    path.write_text(
        f'[api]\nurl = "{sim_url}"\napi_key_file = "{key_file}"\n'
        f'[control]\nsocket = "{tmp / "control.sock"}"\n' + extra
    )
    return path


class NotifySocket:
    """A datagram socket in $NOTIFY_SOCKET, as systemd holds it: every message, each line stamped
    with `clock()` when it arrived (wall time by default; the benchmark uses monotonic). It stays
    bound until closed: a daemon must still be able to say STOPPING=1."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            now = self.clock()
            self.messages += [(now, line) for line in data.decode(errors="replace").splitlines()]

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in self.messages if m.startswith(prefix)]

    def wait(self, prefix: str, after: float = 0.0, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [t for t in self.times(prefix) if t >= after]
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"no {prefix} after {after}: {self.messages[-20:]}")

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


class Daemon(Process):
    def __init__(self, tmp: Path, config: Path, key: str, **env: str) -> None:
        self.socket = tmp / "control.sock"
        super().__init__(["run", "--config", str(config)], clean_env(**env), key)

    def ctl(self, command: str) -> dict[str, Any]:
        return ctl(self.socket, command)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                try:
                    if self.ctl("status").get("connected"):
                        return
                except OSError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("daemon did not connect; output:\n" + self.output())

    def audio_started_wall(self) -> float:
        line = self.wait_for(lambda s: "started at wall" in s)
        return float(line.rsplit("started at wall", 1)[1].split()[0])
