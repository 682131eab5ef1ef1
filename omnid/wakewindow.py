"""Wake mode's window: when the microphone may reach the service, and the `wake` records.

Nothing leaves the box while the window is shut. The wake word wakes it (`woken`), and the
window opens once speech follows the phrase (the listener's `WakeSpeech`); a press opens it at
once. If no speech starts within `wake.no_speech_s` of the wake it shuts again (a false wake
must not stream the room), and the activation is recorded as one without a turn. Speech that
starts inside the window holds it open until its turn ends; an answered turn leaves it open for
`wake.follow_up_s`, so a follow-up question needs no wake word. Owned by the conversation
thread, which asks `expired`
on its tick and does what shutting means on the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from omnid.feedback import Feedback
from omnid.settings import Settings

log = logging.getLogger("omnid.wakewindow")


@dataclass(slots=True)
class Activation:
    """One wake word heard, waiting to learn whether a turn follows."""

    model: str
    probability: float
    t: float


class WakeWindow:
    def __init__(self, settings: Settings, feedback: Feedback, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._feedback = feedback
        self._clock = clock
        self.is_open = False  # the microphone goes to the service
        self.woken = False  # the wake word was heard; speech after it has not been yet
        self.why = ""  # wake, press or follow-up: what opened it
        self._deadline: float | None = None  # None while a turn holds it open
        self._pending: Activation | None = None
        self.activations = 0
        self.without_turn = 0

    @property
    def awake(self) -> bool:
        """Woken or open: the LED says the box is listening."""
        return self.woken or self.is_open

    def wake(self, model: str, probability: float, t: float) -> None:
        """The wake word: wait to see whether speech follows (already open, say in a
        follow-up window, the audio keeps going)."""
        self._settle(turn=False)  # woken again before speaking: the first one led nowhere
        self._pending = Activation(model, probability, t)
        self.activations += 1
        self.woken = not self.is_open
        self.why = "wake"
        self._deadline = t + self._settings.current.wake.no_speech_s

    def speech(self) -> bool:
        """Speech followed the wake word: open. True if it opened now."""
        if not self.woken:
            return False
        self.woken = False
        self.is_open = True
        return True

    def press(self, t: float) -> None:
        """A press (the button, `omnid ctl press`): the same as the wake word, without a record."""
        self._settle(turn=False)
        self._open("press", t + self._settings.current.wake.no_speech_s)

    def turn_started(self) -> None:
        """Speech began inside the window: it stays open until the turn ends."""
        self._settle(turn=True)
        if not self.is_open:
            self._open("speech", None)  # the service heard speech sent just before it shut
        self.woken = False
        self._deadline = None

    def turn_ended(self, answered: bool, t: float) -> None:
        """An answered turn leaves the window open for a follow-up; any other end shuts it."""
        follow_up = self._settings.current.wake.follow_up_s
        if answered and follow_up > 0 and self.is_open:
            self._open("follow-up", t + follow_up)
        else:
            self.shut()

    def expired(self, now: float) -> bool:
        """Whether the window shut now: no speech began within its time."""
        if not self.awake or self._deadline is None or now < self._deadline:
            return False
        log.info("no speech within the %s window: the microphone stays on the box", self.why)
        self.shut()
        return True

    def shut(self) -> None:
        self._settle(turn=False)
        self.is_open = self.woken = False
        self.why = ""
        self._deadline = None

    def _open(self, why: str, deadline: float | None) -> None:
        self.is_open, self.woken = True, False
        self.why = why
        self._deadline = deadline

    def _settle(self, turn: bool) -> None:
        """The pending activation's `wake` record, now that its outcome is known."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if not turn:
            self.without_turn += 1
        self._feedback.wake(
            {
                "WAKE_MODEL": pending.model,
                "PROBABILITY": f"{pending.probability:.3f}",
                "TURN": "true" if turn else "false",
            }
        )
