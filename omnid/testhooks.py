"""A deliberate test interface: faults the end-to-end tests inject through the control socket.

Enabled only when `omnid run` starts with `OMNID_TEST_HOOKS=1` in its environment (the unit file
never sets it); otherwise these commands are unknown like any other. They are handled on the
conversation thread, like every control command:

- `_stall S` blocks the conversation loop for S seconds (default 5): the watchdog must stop.
- `_kill-mic` closes the capture stream behind the daemon's back, reporting nothing: the
  watchdog must notice that no block arrives.
- `_lose-mic` stops the stream as PortAudio does for a failing device: the reopen must handle it.

The other half of the test interface is the `audio open: … started at wall T` log line, which
gives the wall-clock time the `wav:` devices' shared clock started, so a test can place the
samples it wrote and read on the daemon's timeline; so does the wake word's `heard at wall T`
line (`wake.py`), the capture time of the block in which the detector fired.
"""

from __future__ import annotations

import time

from omnid.devices import AudioDevices
from omnid.events import ControlRequest


class TestHooks:
    __test__ = False  # not a pytest class

    def __init__(self, devices: AudioDevices) -> None:
        self._devices = devices

    def handle(self, req: ControlRequest) -> bool:
        if not req.command.startswith("_"):
            return False
        req.reply({"ok": True, "state": "hook"})
        mic = self._devices.mic
        if req.command == "_stall":
            time.sleep(float(req.args[0]) if req.args else 5.0)
        elif req.command == "_kill-mic" and mic is not None:
            mic.close()  # behind the daemon's back: no loss is reported
        elif req.command == "_lose-mic" and mic is not None and hasattr(mic, "lose"):
            mic.lose()  # PortAudio stops the stream as for a failing device
        return True
