"""`omnid run`: put the parts together, tell systemd, and stop cleanly on a signal.

Signals are blocked in every thread and read by one `sigwait` thread that only posts events: a
Python signal handler calling `queue.put` on the thread that may hold the queue's lock could
deadlock, and the conversation thread must stay the only owner of state.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnid import events as ev
from omnid.assembly import assemble
from omnid.audio import AudioDeviceError
from omnid.button import TalkButton, open_button
from omnid.camera import open_feed, worst_case_tokens_per_minute
from omnid.config import Config
from omnid.control import ControlServer
from omnid.conversation import Conversation
from omnid.devices import AudioDevices, SilentSpeaker
from omnid.led import StatusLed, open_led
from omnid.micfeed import MicFeed
from omnid.supervisor import Journal, Notifier, Watchdog
from omnid.timers import TimerStore
from omnid.tools.mcp import open_mcp
from omnid.volume import VolumeStore, default_state_dir
from omnid.wake import WakeListener, open_listener

if TYPE_CHECKING:
    from omnid.camera import CameraFeed
    from omnid.tools.mcp_client import McpHub

log = logging.getLogger("omnid.daemon")

EX_OK = 0
EX_SOFTWARE = 70


class Daemon:
    """The running daemon's parts. `open()`, then `run()` on the thread that will own the state.

    The composition root: with `run()`, the one place that reads the environment (systemd's
    sockets, the state directory, the test interface's switch) and hands what it found to the
    parts; `open()` reads the state directory."""

    def __init__(
        self,
        cfg: Config,
        journal: Journal | None = None,
        pin_factory: Any = None,
        notifier: Notifier | None = None,
        test_hooks: bool = False,
    ) -> None:
        self.cfg = cfg
        self.pin_factory = pin_factory  # gpiozero's; None = its default (tests pass MockFactory)
        self.test_hooks = test_hooks
        self.journal = journal or Journal()
        self.notifier = notifier or Notifier()  # disabled: `run()` passes systemd's
        self.inbox = ev.Inbox()
        self.feed = MicFeed(cfg.block_ms)
        self.devices = AudioDevices(cfg.audio, cfg.block_ms, self.inbox.post, self.feed)
        self.button: TalkButton | None = None
        self.led: StatusLed | None = None
        self.camera: CameraFeed | None = None
        self.control: ControlServer | None = None
        self.conversation: Conversation | None = None
        self.mcp: McpHub | None = None
        self.wake: WakeListener | None = None

    def open(self) -> None:
        """Open the local devices and the control socket. A missing audio device does not stop
        the daemon: it is reopened with backoff, and STATUS says so."""
        cfg = self.cfg
        self.led = open_led(cfg.led, pin_factory=self.pin_factory)
        self.camera = open_feed(cfg.camera, self.inbox.post)
        if self.camera is not None:
            cost = worst_case_tokens_per_minute(cfg.camera, cfg.session.mode)
            log.info("camera: %s", cost.summary())
            if cost.images_dominate:
                log.warning("camera: images would dominate the cost (camera.fps, width, height)")
        state_dir = default_state_dir()
        self.mcp = open_mcp(cfg, on_change=lambda: self.inbox.post(ev.ToolsChanged()))
        self.wake = open_listener(cfg, self.feed, self.inbox.post)
        conversation = assemble(
            cfg,
            self.journal,
            speaker=SilentSpeaker(),
            state_dir=state_dir,
            feed=self.feed,
            inbox=self.inbox,
            notifier=self.notifier,
            devices=self.devices,
            camera=self.camera,
            led=self.led,
            watchdog=Watchdog.from_env(),
            volume_store=VolumeStore(state_dir, default=cfg.audio.output_volume),
            timer_store=TimerStore(state_dir),
            mcp=self.mcp,
            listener=self.wake,
            test_hooks=self.test_hooks,
        )
        self.conversation = conversation
        # The button only posts events; a pin that cannot be opened leaves the socket as trigger.
        self.button = open_button(cfg.button, self.inbox.post, pin_factory=self.pin_factory)
        self.control = ControlServer(Path(cfg.control.socket), self.inbox.post)
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
            self.inbox.post(ev.AudioLost(str(exc)))
            return
        conversation.playback.use(speaker)
        # "started at wall": part of the test interface (omnid/testhooks.py).
        log.info(
            "audio open: in %s @ %d Hz, out %s @ %d Hz; started at wall %.6f",
            mic.name,
            mic.device_rate,
            speaker.name,
            speaker.device_rate,
            time.time(),
        )

    def post(self, event: ev.Event) -> None:
        self.inbox.post(event)

    def run(self) -> None:
        assert self.conversation is not None, "open() first"
        self.notifier.ready()
        self.conversation.run()

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
        if self.mcp is not None:
            self.mcp.close()
        if self.wake is not None:
            self.wake.stop()
        for part in (self.button, self.led, self.control):
            if part is not None:
                part.close()
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
    hooks = os.environ.get("OMNID_TEST_HOOKS") == "1"
    daemon = Daemon(cfg, notifier=Notifier.from_env(), test_hooks=hooks)
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
