"""`omnid run` loads what its config uses, and nothing else (issue 18: peak RSS ≤ 60 MB).

The camera (Pillow), the GPIO button and LED (gpiozero, lgpio), MCP (the `mcp` SDK, anyio, httpx,
jsonschema), a sound card (sounddevice, PortAudio) and wake mode (pymicro_wakeword, TensorFlow
Lite) cost memory on a 512 MB board whether or not they are used, so each is imported only where
that part is opened. These tests start the real `omnid run` (`wav:` devices, manual mode, none of
those parts configured) against `omnid simulate`, take a turn, and look from outside:

- the shared objects mapped into the running daemon (`/proc/PID/maps`): what a user sees as
  memory, no test interface needed;
- for the pure-Python packages, the module table of the same `omnid run` code path, printed as
  the interpreter exits (the `omnid.cli` module run through `runpy`, as `python -m` runs it).

And once the other way round, so that the check can fail: with the camera on, Pillow is mapped.
"""

from __future__ import annotations

import re
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Daemon, Process, Simulator, clean_env, make_key, wav_devices, write_config

PILLOW = r"/PIL/_imaging\."
"""Pillow's shared object, in /proc/PID/maps once it is imported (the camera)."""

SHARED_OBJECTS = {
    "PortAudio (a sound card)": r"libportaudio\.so",
    "cffi (sounddevice's binding to PortAudio)": r"/_cffi_backend\.",
    "TensorFlow Lite (the wake-word detector)": r"libtensorflowlite|micro_features_cpp",
    "lgpio (the button and LED on a Pi)": r"lgpio",
}
"""What each other optional library maps when imported: a pattern for a path in /proc/PID/maps."""

MODULES = frozenset(
    {
        "gpiozero",  # the button, the LED
        "lgpio",
        "mcp",  # [[tools.mcp]]
        "anyio",
        "httpx",
        "httpx_sse",
        "jsonschema",
        "websockets",  # the simulator's server (the daemon's link is websocket-client)
        "sounddevice",  # a sound card
        "_sounddevice",
        "cffi",
        "pymicro_wakeword",  # wake mode
        "tflite_runtime",
        "picamera2",
        "v4l2",
        "pydantic.v1",  # not used at all
        "email_validator",
    }
)
"""Top-level packages (or, for pydantic.v1, the module) that a minimal `omnid run` must not
import. Pillow (`PIL`) has its own test below."""

TRACE = (
    "import atexit, runpy, sys\n"
    "del sys.argv[1:4]\n"
    "atexit.register(lambda: print('MODULES ' + ' '.join(sorted(sys.modules)), flush=True))\n"
    "runpy.run_module('omnid.cli', run_name='__main__', alter_sys=True)\n"
)
"""`omnid.cli` run as `python -m omnid.cli` runs it, its module table printed at exit. It is the
`wrap` of a harness process, `python -c TRACE python -m omnid.cli run --config …`: the program
sees `sys.argv = ['-c', python, '-m', 'omnid.cli', 'run', …]` and drops the three in between."""


def minimal_config(tmp: Path, sim: Simulator, key: str, extra: str = "") -> Path:
    """Manual mode, `wav:` devices; no camera, button, LED, MCP server or wake word (the
    defaults)."""
    with wave.open(str(tmp / "mic.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(bytes(2 * 16_000 * 3))  # 3 s of silence
    return write_config(tmp, sim.url, key, wav_devices(tmp) + extra)


def take_turn(daemon: Daemon) -> None:
    """A push-to-talk turn, answered: the code paths of a turn have run, not only start-up's."""
    daemon.wait_ready()
    assert daemon.ctl("press")["ok"]
    time.sleep(0.5)  # shorter presses are ignored
    assert daemon.ctl("release")["ok"]
    daemon.wait_record("turn", timeout=20)


def mapped(pid: int) -> set[str]:
    """The optional libraries whose shared objects the process `pid` has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name, pattern in SHARED_OBJECTS.items() if re.search(pattern, maps)}


def modules_at_exit(daemon: Daemon) -> set[str]:
    """The module table a `TracedDaemon` printed as it exited."""
    line = daemon.wait_for(lambda s: s.startswith("MODULES "))
    modules = set(line.split()[1:])
    assert "omnid.daemon" in modules and "omnid.conversation" in modules  # it did run
    return modules


class TracedDaemon(Daemon):
    """`omnid run` whose module table is printed when it exits (`TRACE`)."""

    def __init__(self, tmp: Path, config: Path, key: str) -> None:
        self.socket = tmp / "control.sock"
        Process.__init__(
            self,
            ["run", "--config", str(config)],
            clean_env(),
            key,
            wrap=(sys.executable, "-c", TRACE),
        )


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[Simulator, str]]:
    key = make_key()
    simulator = Simulator(tmp_path, key)
    yield simulator, key
    simulator.stop()


def test_a_minimal_run_maps_no_optional_library(tmp_path: Path, sim: tuple[Simulator, str]) -> None:
    simulator, key = sim
    daemon = Daemon(tmp_path, minimal_config(tmp_path, simulator, key), key)
    try:
        take_turn(daemon)
        loaded = mapped(daemon.proc.pid)
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert loaded == set(), f"mapped without being configured: {sorted(loaded)}"


def test_a_minimal_run_imports_no_optional_package(
    tmp_path: Path, sim: tuple[Simulator, str]
) -> None:
    simulator, key = sim
    daemon = TracedDaemon(tmp_path, minimal_config(tmp_path, simulator, key), key)
    try:
        take_turn(daemon)
    finally:
        assert daemon.stop() == 0, daemon.output()
    modules = modules_at_exit(daemon)
    imported = {m if m in MODULES else m.split(".")[0] for m in modules}.intersection(MODULES)
    assert imported == set(), f"imported without being configured: {sorted(imported)}"


def test_without_a_camera_pillow_is_neither_imported_nor_mapped(
    tmp_path: Path, sim: tuple[Simulator, str]
) -> None:
    simulator, key = sim
    daemon = TracedDaemon(tmp_path, minimal_config(tmp_path, simulator, key), key)
    try:
        take_turn(daemon)
        maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    finally:
        assert daemon.stop() == 0, daemon.output()
    pil = sorted(m for m in modules_at_exit(daemon) if m.split(".")[0] == "PIL")
    assert not re.search(PILLOW, maps) and not pil, f"Pillow loaded without a camera: {pil}"


def test_the_camera_maps_pillow(tmp_path: Path, sim: tuple[Simulator, str]) -> None:
    """The converse, so that the check above can fail: a part that is configured is loaded."""
    from PIL import Image

    simulator, key = sim
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(images / "frame.jpg")
    camera = f'[camera]\nenabled = true\nsource = "files"\npath = "{images}"\n'
    daemon = Daemon(tmp_path, minimal_config(tmp_path, simulator, key, camera), key)
    try:
        daemon.wait_ready()
        maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    finally:
        assert daemon.stop() == 0, daemon.output()
    assert re.search(PILLOW, maps), "the camera is on, but Pillow is not mapped"
