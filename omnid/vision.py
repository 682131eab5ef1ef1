"""What the camera sends, and when, seen from the conversation (issue: the model can see).

A mixin of `Conversation`, run on its thread. Capture and encoding happen on the feed's own thread
(a slow camera never delays audio); here the pure `FramePolicy` decides when to ask for a frame and
whether a ready one may go now: JPEG within 256 KB base64, at most one per second, and only after
audio was appended to the current buffer (after a commit it counts as empty again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from omnid import protocol
from omnid.camera import FramePolicy, open_feed, worst_case_tokens_per_minute

if TYPE_CHECKING:
    from omnid import events as ev
    from omnid.camera import CameraFeed
    from omnid.config import Config
    from omnid.session import Session

log = logging.getLogger("omnid.vision")


class Vision:
    cfg: Config
    session: Session
    camera: CameraFeed | None
    frames: FramePolicy | None

    clock: Callable[[], float]

    def post(self, event: ev.Event) -> None:
        raise NotImplementedError

    def open_camera(self) -> None:
        """Start the feed (never raises for camera trouble) and say what the images may cost."""
        cam = self.cfg.camera
        self.camera = open_feed(cam, self.post)
        self.frames = FramePolicy.from_config(cam, self.cfg.session.mode, clock=self.clock)
        if self.camera is None:
            return
        cost = worst_case_tokens_per_minute(cam, self.cfg.session.mode)
        log.info("camera: %s", cost.summary())
        if cost.images_dominate:
            log.warning("camera: images would dominate the cost (see camera.fps, width, height)")

    def close_camera(self) -> None:
        if self.camera is not None:
            self.camera.close()

    def send_append(self, event: protocol.Event) -> bool:
        """Every audio append goes through here: it opens the buffer for images."""
        if not self.session.send(event):
            return False
        if self.frames is not None:
            self.frames.on_append()
            self.vision_tick()
        return True

    def vision_tick(self) -> None:
        if self.frames is None or self.camera is None:
            return
        frame = self.frames.take()
        if frame is not None:
            self.session.send(protocol.image_append(frame.jpeg))
        if self.frames.should_request():
            self.camera.request()

    def on_frame(self, frame: ev.Frame) -> None:
        if self.frames is not None:
            self.frames.offer(frame)
            self.vision_tick()

    def vision(self, what: str) -> None:
        """Turn and buffer edges: turn_start, turn_end, commit, reset."""
        frames = self.frames
        if frames is not None:
            {
                "turn_start": frames.on_turn_start,
                "turn_end": frames.on_turn_end,
                "commit": frames.on_commit,
                "reset": frames.reset,
            }[what]()
