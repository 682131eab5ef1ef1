"""The service's responses in the current session: which are running, which we gave up on.

The service runs one response at a time per session. Push-to-talk asks for each; hands-free, the
service starts them itself. A response we cancelled (barge-in, a lost turn, one nobody asked for)
keeps sending its tail for a moment: its id is remembered so none of that plays.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from omnid import protocol


class ServiceResponses:
    def __init__(self) -> None:
        self.active: set[str] = set()  # created in this session, not done yet
        self._dead: deque[str] = deque(maxlen=8)

    def created(self, response_id: str) -> None:
        self.active.add(response_id)

    def done(self, response_id: str) -> None:
        self.active.discard(response_id)

    def dead(self, response_id: str) -> bool:
        return response_id in self._dead

    def disown(self, response_id: str) -> None:
        """Whatever still comes of this response is ignored."""
        if response_id:
            self._dead.append(response_id)

    def cancel(self, send: Callable[[protocol.Event], bool] | None) -> None:
        """Cancel what the service is generating (`send` None: the session is not ready, so
        there is nothing to tell it); nothing of it will be played."""
        if self.active and send is not None:
            send(protocol.response_cancel())
        self._dead.extend(self.active)
        self.active.clear()

    def session_gone(self) -> None:
        """The session ended: its responses ended with it."""
        self.active.clear()
