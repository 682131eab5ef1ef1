"""`omnid run`: put the parts together, tell systemd, and stop cleanly on a signal.

Signals are blocked in every thread and read by one `sigwait` thread that only posts events: a
Python signal handler calling `queue.put` on the thread that may hold the queue's lock could
deadlock, and the conversation thread must stay the only owner of state.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from omnid import events as ev
from omnid.audio import AudioDeviceError
from omnid.button import TalkButton, open_button
from omnid.config import Config
from omnid.control import ControlServer
from omnid.conversation import Conversation
from omnid.devices import AudioDevices, SilentSpeaker
from omnid.led import StatusLed, open_led
from omnid.supervisor import Journal, Notifier
from omnid.volume import VolumeStore, default_state_dir

log = logging.getLogger("omnid.daemon")

EX_OK = 0
EX_SOFTWARE = 70


class Daemon:
    """The running daemon's parts. `open()`, then `run()` on the thread that will own the state."""

    def __init__(
        self, cfg: Config, journal: Journal | None = None, pin_factory: Any = None
    ) -> None:
        self.cfg = cfg
        self.pin_factory = pin_factory  # gpiozero's; None = its default (tests pass MockFactory)
        self.button: TalkButton | None = None
        self.led: StatusLed | None = None
        self.journal = journal or Journal()
        self.notifier = Notifier()
        self.devices: AudioDevices | None = None
        self.control: ControlServer | None = None
        self.conversation: Conversation | None = None

    def open(self) -> None:
        """Open the local devices and the control socket. A missing audio device does not stop
        the daemon: it is reopened with backoff, and STATUS says so."""
        cfg = self.cfg
        conversation = Conversation(cfg, SilentSpeaker(), self.journal, self.notifier)
        self.conversation = conversation
        store = VolumeStore(default_state_dir(), default=cfg.audio.output_volume)
        conversation.volume_store, conversation.volume_pct = store, store.load()
        self.devices = conversation.devices = AudioDevices(
            cfg.audio, self.post, lambda: conversation.volume_pct
        )
        self.led = conversation.led = open_led(cfg.led, pin_factory=self.pin_factory)
        conversation.open_camera()
        # The button only posts events; a pin that cannot be opened leaves the socket as trigger.
        self.button = open_button(cfg.button, self.post, pin_factory=self.pin_factory)
        self.control = ControlServer(Path(cfg.control.socket), self.post)
        try:
            self.control.start()
        except OSError as exc:
            # The button (or nothing) still drives turns; a missing socket must not stop the box.
            log.error("control socket %s unavailable: %s", cfg.control.socket, exc)
            self.control = None
        try:
            mic, speaker = self.devices.open()
        except AudioDeviceError as exc:
            log.error("audio device unavailable: %s", exc)
            conversation.post(ev.AudioLost(str(exc)))
            return
        conversation.mic, conversation.speaker = mic, speaker
        log.info(
            "audio open: in %s @ %d Hz, out %s @ %d Hz; started at wall %.6f",
            mic.name,
            mic.device_rate,
            speaker.name,
            speaker.device_rate,
            time.time(),
        )

    def post(self, event: ev.Event) -> None:
        conversation = self.conversation
        if conversation is not None:
            conversation.post(event)

    def run(self) -> None:
        assert self.conversation is not None, "open() first"
        self.notifier.ready()
        self.conversation.run()

    def close(self) -> None:
        if self.conversation is not None:
            self.conversation.close_camera()
        for part in (self.button, self.led, self.control):
            if part is not None:
                part.close()
        if self.devices is not None:
            self.devices.close()


def _signals(daemon: Daemon) -> None:
    wanted = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    while True:
        sig = signal.sigwait(wanted)
        if sig == signal.SIGHUP:
            daemon.notifier.reloading()
            daemon.post(ev.Reload())
        else:
            daemon.post(ev.Stop(signal.Signals(sig).name))


def run(cfg: Config) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    daemon = Daemon(cfg)
    daemon.open()
    threading.Thread(target=_signals, args=(daemon,), name="signals", daemon=True).start()
    try:
        daemon.run()
    except Exception:
        log.exception("conversation loop failed")
        return EX_SOFTWARE
    finally:
        daemon.close()
    log.info("stopped")
    return EX_OK
