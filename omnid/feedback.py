"""One seam for what the box shows and says: the conversation publishes, the rest subscribe.

The conversation publishes each change once — the state it is in, a cue (a moment the user
should hear: listening, sent, error, offline, online), the STATUS line, a finished turn's record —
and does not know who listens. The LED, the earcons, systemd's STATUS and the journal are
subscribers; a new consumer (a display, a metrics exporter) is one more, with no change to the
conversation. Every call is made on the conversation thread, so a subscriber must not block:
the LED only posts to its own thread, the earcons only queue audio.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnid.led import StatusLed
    from omnid.supervisor import Journal, Notifier


class Subscriber:
    """Override what you listen to; the rest is ignored."""

    def on_state(self, state: str) -> None:
        """idle, woken (wake mode: the microphone is open, waiting for speech), listening,
        thinking, speaking, muted, connecting or offline (on change only)."""

    def on_cue(self, cue: str, t: float | None) -> None:
        """listening (with the press time `t`), sent, error, offline, online; confirm (a call
        waits for the owner's press) and confirm_over (it no longer does); alarm (a timer
        rings) and alarm_over."""

    def on_status(self, line: str) -> None:
        """A human line for systemd's STATUS= (published often; repeats included)."""

    def on_turn(self, fields: dict[str, Any], level: int) -> None:
        """A finished turn's journal fields (OUTCOME, TURN, timings …)."""

    def on_tool(self, fields: dict[str, Any], level: int) -> None:
        """A function call's journal fields (TOOL, CALL_ID, OUTCOME, DURATION_MS …)."""

    def on_timer(self, fields: dict[str, Any], level: int) -> None:
        """A timer's journal fields (ACTION set, rang, cancelled, stopped or missed; LABEL …)."""

    def on_wake(self, fields: dict[str, Any]) -> None:
        """A wake word's journal fields (WAKE_MODEL, PROBABILITY, TURN: whether a turn followed),
        once it is known whether a turn followed."""


class Feedback:
    def __init__(self, subscribers: list[Subscriber] | None = None) -> None:
        self._subscribers: list[Subscriber] = list(subscribers or [])
        self._shown = ""

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def state(self, state: str) -> None:
        if state == self._shown:
            return
        self._shown = state
        for s in self._subscribers:
            s.on_state(state)

    def cue(self, cue: str, t: float | None = None) -> None:
        for s in self._subscribers:
            s.on_cue(cue, t)

    def status(self, line: str) -> None:
        for s in self._subscribers:
            s.on_status(line)

    def turn(self, fields: dict[str, Any], level: int = logging.INFO) -> None:
        for s in self._subscribers:
            s.on_turn(fields, level)

    def tool(self, fields: dict[str, Any], level: int = logging.INFO) -> None:
        for s in self._subscribers:
            s.on_tool(fields, level)

    def timer(self, fields: dict[str, Any], level: int = logging.INFO) -> None:
        for s in self._subscribers:
            s.on_timer(fields, level)

    def wake(self, fields: dict[str, Any]) -> None:
        for s in self._subscribers:
            s.on_wake(fields)


class LedFeedback(Subscriber):
    """The status LED follows the state (in wake mode, "woken" while the microphone is open
    between turns); an error cue flashes it; a call waiting for the
    owner's press shows its own pattern until it is confirmed or given up."""

    def __init__(self, led: StatusLed) -> None:
        self.led = led
        self._state = "idle"

    def on_state(self, state: str) -> None:
        self._state = state
        self.led.show(state)

    def on_cue(self, cue: str, t: float | None) -> None:
        if cue in ("error", "confirm", "alarm"):
            self.led.show(cue)
        elif cue in ("confirm_over", "alarm_over"):
            self.led.show(self._state)


class StatusFeedback(Subscriber):
    """systemd's STATUS= (the notifier skips repeats)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def on_status(self, line: str) -> None:
        self.notifier.status(line)


class JournalFeedback(Subscriber):
    """Each finished turn becomes one `turn` record in the journal, each call one `tool`, each
    timer event one `timer`."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def on_turn(self, fields: dict[str, Any], level: int) -> None:
        message = f"turn {fields['TURN']} {fields['OUTCOME']}"
        self.journal.record("turn", message, level, **fields)

    def on_tool(self, fields: dict[str, Any], level: int) -> None:
        message = f"tool {fields['TOOL']} {fields['OUTCOME']}"
        self.journal.record("tool", message, level, **fields)

    def on_timer(self, fields: dict[str, Any], level: int) -> None:
        message = f"{fields['KIND']} {fields['LABEL']!r} {fields['ACTION']}"
        self.journal.record("timer", message, level, **fields)

    def on_wake(self, fields: dict[str, Any]) -> None:
        followed = "a turn followed" if fields["TURN"] == "true" else "no turn followed"
        message = f"wake word {fields['WAKE_MODEL']} (p={fields['PROBABILITY']}): {followed}"
        self.journal.record("wake", message, logging.INFO, **fields)
