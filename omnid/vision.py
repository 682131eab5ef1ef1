"""What the camera sends, and when, seen from the conversation.

Capture and encoding happen on the feed's own thread (a slow camera never delays audio); here,
on the conversation thread, the pure `FramePolicy` decides when to ask for a frame and whether a
ready one may go now: JPEG within 256 KB base64, at most one per second, and only after audio was
appended to the current buffer (after a commit it counts as empty again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from omnid import events as ev
from omnid import protocol
from omnid.camera import FramePolicy

if TYPE_CHECKING:
    from omnid.camera import CameraFeed

log = logging.getLogger("omnid.vision")


class Vision:
    def __init__(
        self,
        camera: CameraFeed | None,
        frames: FramePolicy,
        send: Callable[[protocol.Event], bool],
    ) -> None:
        self.camera = camera
        self.frames = frames
        self._send = send

    def appended(self) -> None:
        """Audio went into the service's buffer: images may follow it."""
        self.frames.on_append()
        self.tick()

    def tick(self) -> None:
        if self.camera is None:
            return
        frame = self.frames.take()
        if frame is not None:
            self._send(protocol.image_append(frame.jpeg))
        if self.frames.should_request():
            self.camera.request()

    def offer(self, frame: ev.Frame) -> None:
        self.frames.offer(frame)
        self.tick()

    def turn_start(self) -> None:
        self.frames.on_turn_start()

    def turn_end(self) -> None:
        self.frames.on_turn_end()

    def committed(self) -> None:
        self.frames.on_commit()

    def reset(self) -> None:
        """A new session: its buffer is empty."""
        self.frames.reset()

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()
