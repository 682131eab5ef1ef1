"""Putting a conversation together: every part built once, and handed to those that use it.

The daemon calls `assemble` with the real devices; tests call it with a stand-in link and clock,
and get the same production parts. Nothing here reads the environment or the disk: the caller
passes the state directory's contents in (the volume store, the day's budget).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from omnid import events as ev
from omnid.alarm import Alarm
from omnid.calls import Calls
from omnid.camera import FramePolicy
from omnid.config import Config
from omnid.conversation import Conversation
from omnid.devices import AudioDevices, Output
from omnid.diskwriter import DiskWriter
from omnid.earcons import Earcons
from omnid.feedback import Feedback, JournalFeedback, LedFeedback, StatusFeedback, Subscriber
from omnid.health import Health
from omnid.led import StatusLed
from omnid.link import Link
from omnid.micfeed import MicFeed
from omnid.playback import Playback
from omnid.quota import DailyBudget
from omnid.session import Session
from omnid.settings import Settings
from omnid.supervisor import Journal, Notifier, Watchdog
from omnid.testhooks import TestHooks
from omnid.timers import Timers, TimerStore
from omnid.tools import Toolbox
from omnid.tools.catalog import build_catalog
from omnid.tools.mcp import server_trouble, why_missing
from omnid.turn import Turn
from omnid.uplink import Uplink
from omnid.vision import Vision
from omnid.volume import VolumeStore
from omnid.wake import WakeListener

if TYPE_CHECKING:
    from omnid.camera import CameraFeed
    from omnid.tools.mcp_client import McpHub

HISTORY_TURNS = 50  # the most `session.carry_over_turns` allows; a reload may raise it


def assemble(
    cfg: Config,
    journal: Journal,
    *,
    speaker: Output,
    state_dir: Path,
    feed: MicFeed,
    inbox: ev.Inbox | None = None,
    notifier: Notifier | None = None,
    clock: Callable[[], float] = time.monotonic,
    devices: AudioDevices | None = None,
    camera: CameraFeed | None = None,
    led: StatusLed | None = None,
    watchdog: Watchdog | None = None,
    volume_store: VolumeStore | None = None,
    timer_store: TimerStore | None = None,
    mcp: McpHub | None = None,
    listener: WakeListener | None = None,
    wall: Callable[[], float] = time.time,
    open_link: Callable[[], Link] | None = None,
    test_hooks: bool = False,
    subscribers: tuple[Subscriber, ...] = (),
) -> Conversation:
    inbox = inbox or ev.Inbox()
    notifier = notifier or Notifier()
    settings = Settings(cfg)
    history: deque[Turn] = deque(maxlen=HISTORY_TURNS)
    disk = DiskWriter()  # state files: never written on the conversation thread
    volume = volume_store.load() if volume_store is not None else cfg.audio.output_volume
    playback = Playback(settings, speaker, Earcons.generate(), disk, clock, volume_store, volume)
    feedback = Feedback([StatusFeedback(notifier), JournalFeedback(journal), playback])
    if led is not None:
        feedback.subscribe(LedFeedback(led))
    for subscriber in subscribers:
        feedback.subscribe(subscriber)
    timers = Timers(
        lambda: settings.current.tools.max_timers, clock, wall, disk, feedback, timer_store
    )
    alarm = Alarm(settings, timers, playback, feedback, clock)
    late, missed = timers.restore(timer_store.load() if timer_store is not None else [])
    for timer in late:
        alarm.due(timer, f"fell due while omnid was not running; {timer.late_s:.0f} s late")
    for timer in missed:
        timers.record("missed", timer, f"fell due {timer.late_s / 60:.0f} min before omnid started")
    tools = Toolbox(
        settings,
        build_catalog(playback.volume, timers, mcp),
        cfg.session.mode,
        version=(lambda: mcp.generation) if mcp is not None else (lambda: 0),
        missing=why_missing(cfg, mcp) if mcp is not None else (lambda name: ""),
        trouble=server_trouble(mcp) if mcp is not None else (lambda: []),
    )
    session = Session(
        settings, inbox.post, journal, clock, history, open_link, declare=tools.declared
    )
    frames = FramePolicy.from_config(cfg.camera, cfg.session.mode, clock=clock)
    hooks = TestHooks(devices) if test_hooks and devices is not None else None
    mic = feed.consumer("conversation", lambda upto: inbox.post(ev.MicReady(upto)))
    vision = Vision(camera, frames, session.send)
    return Conversation(
        settings=settings,
        inbox=inbox,
        session=session,
        playback=playback,
        uplink=Uplink(settings, session, playback, vision),
        vision=vision,
        mic=mic,
        feedback=feedback,
        health=Health(notifier, watchdog, clock()),
        budget=DailyBudget.load(settings, state_dir),
        calls=Calls(settings, tools, feedback, inbox.post, clock),
        timers=timers,
        alarm=alarm,
        journal=journal,
        notifier=notifier,
        disk=disk,
        history=history,
        clock=clock,
        devices=devices,
        hooks=hooks,
        listener=listener,
    )
