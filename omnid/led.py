"""The status LED: one light pattern per conversation state, driven by gpiozero.

`StatusLed.show(state)` is called from the conversation thread on every state change. It only
switches which pattern gpiozero plays; the timing runs on gpiozero's own background threads
(`blink`/`pulse` threads, or a `source` thread for multi-step patterns), so `show()` never waits
for a pattern and returns in well under a millisecond (stopping the previous pattern joins a
thread that is asleep on an event, which wakes at once).

PWMLED, falling back to LED: with PWM the "speaking" state can *pulse* (fade in and out), which
is the one way to tell speaking from listening at a glance in hands-free mode, where both would
otherwise be a steady light. lgpio (the Pi 5's and Bookworm's default pin factory) does software
PWM on any GPIO, so PWMLED usually works; a factory without PWM (gpiozero's native one, the
plain mock pin) raises `PinPWMUnsupported`, and then a plain `LED` is used and "speaking" is
steady on. Every other pattern is on/off only, so both behave the same.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from omnid.button import open_gpio

if TYPE_CHECKING:
    from omnid.config_schema import LedSection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pattern:
    """How the LED shows one state.

    `steps` are (brightness 0–1, seconds), played in order and repeated; a single step is a
    steady level. With `pulse`, a two-step pattern fades up over the first step's time and down
    over the second's instead of switching (PWM only; steady on without PWM).
    """

    steps: tuple[tuple[float, float], ...]
    meaning: str
    pulse: bool = False

    @property
    def steady(self) -> bool:
        return len(self.steps) == 1

    @property
    def period_s(self) -> float:
        return math.inf if self.steady else sum(s for _, s in self.steps)


STEADY = math.inf
ERROR_SECONDS = 3.0
"""How long the "error" pattern plays before the LED returns to the current state's pattern."""

PATTERNS: Mapping[str, Pattern] = MappingProxyType(
    {
        "idle": Pattern(
            ((0.0, STEADY),), "off: ready, nothing happening (wake mode: waiting for the wake word)"
        ),
        "woken": Pattern(
            ((0.3, STEADY),),
            "dim (on without PWM): woken, or after an answer, listening for a question",
        ),
        "listening": Pattern(((1.0, STEADY),), "on: the microphone is going to the service"),
        "thinking": Pattern(((1.0, 0.5), (0.0, 0.5)), "slow blink, 1 Hz: waiting for the answer"),
        "speaking": Pattern(
            ((1.0, 0.6), (0.0, 0.6)),
            "pulse (fade up 0.6 s, down 0.6 s); steady on without PWM: answering",
            pulse=True,
        ),
        "muted": Pattern(
            ((1.0, 0.1), (0.0, 0.1), (1.0, 0.1), (0.0, 1.2)),
            "double blink every 1.5 s: microphone muted (hands-free and wake mode)",
        ),
        "offline": Pattern(
            ((1.0, 0.1), (0.0, 1.9)), "heartbeat, a 0.1 s flash every 2 s: no service, retrying"
        ),
        "connecting": Pattern(
            ((1.0, 0.1), (0.0, 1.9)), "heartbeat, a 0.1 s flash every 2 s: opening a session"
        ),
        "confirm": Pattern(
            ((1.0, 0.15), (0.0, 0.15), (1.0, 0.15), (0.0, 0.15), (1.0, 0.15), (0.0, 0.75)),
            "triple blink every 1.5 s: a command waits for a press of the button to confirm it",
        ),
        "alarm": Pattern(
            (
                (1.0, 0.1),
                (0.0, 0.1),
                (1.0, 0.1),
                (0.0, 0.1),
                (1.0, 0.1),
                (0.0, 0.1),
                (1.0, 0.1),
                (0.0, 0.3),
            ),
            "four quick flashes a second: a timer or alarm rings (a tap or press stops it)",
        ),
        "error": Pattern(
            ((1.0, 0.1), (0.0, 0.1)),
            f"fast blink, 5 Hz, for {ERROR_SECONDS:g} s, then the current state's pattern",
        ),
    }
)
"""state → pattern, for `show()`, the tests and the README."""

OVERLAY = "error"
"""The one state that is shown for a while on top of the current one rather than replacing it."""


def _quantum(steps: tuple[tuple[float, float], ...]) -> float:
    """The largest time step that divides every step's duration (to play it as a level list)."""
    fractions = [Fraction(s).limit_denominator(1000) for _, s in steps]
    num = math.gcd(*(f.numerator for f in fractions))
    den = math.lcm(*(f.denominator for f in fractions))
    return num / den


class StatusLed:
    """An LED from `pin` through a resistor to ground (lit when the pin is high).

    `show(state)` picks the pattern from `PATTERNS`; an unknown state is shown as off (and
    warned about once). "error" is an overlay: it blinks fast for `error_s` seconds and then the
    LED shows whatever state is current by then. States shown during the overlay are remembered
    and wait for it to end, except "listening", which cuts it short: someone just pressed the
    button and must see that the box hears them.
    """

    def __init__(self, pin: str, pin_factory: Any = None, *, error_s: float = ERROR_SECONDS):
        from gpiozero import LED, PWMLED  # lazily: importing gpiozero is slow on a Pi Zero
        from gpiozero.exc import PinPWMUnsupported

        self.pin = pin
        self.error_s = error_s
        self._led: Any
        try:
            self._led = PWMLED(pin, pin_factory=pin_factory)
            self.pwm = True
        except PinPWMUnsupported:
            self._led = LED(pin, pin_factory=pin_factory)
            self.pwm = False
        self._lock = threading.Lock()
        self._state = "idle"  # the state to show once no overlay plays
        self._shown: str | None = None  # the pattern the LED is playing now
        self._overlay: threading.Timer | None = None
        self._generation = 0  # tells a stale overlay timer that it was superseded
        self._warned: set[str] = set()
        self._closed = False
        # show() only posts here; the LED's own thread hands patterns to gpiozero, whose
        # stopping of the previous pattern joins a thread (seconds on a starved machine).
        self._mailbox: deque[str] = deque()
        self._posted = threading.Condition()
        self._requested = "idle"
        self._worker: threading.Thread | None = None

    @property
    def state(self) -> str:
        """The current conversation state as last shown (not "error", which is an overlay)."""
        return self._requested

    def show(self, state: str) -> None:
        """Show `state`'s pattern. Any thread; never blocks: the pattern changes on the LED's
        own thread."""
        with self._posted:
            if self._closed:
                return
            if state != OVERLAY:
                self._requested = state
            self._mailbox.append(state)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="omnid-led", daemon=True)
                self._worker.start()
            self._posted.notify()

    def _run(self) -> None:
        while True:
            with self._posted:
                while not self._mailbox and not self._closed:
                    self._posted.wait()
                if self._closed:
                    return
                state = self._mailbox.popleft()
            self._apply(state)

    def _apply(self, state: str) -> None:
        with self._lock:
            if self._closed:
                return
            if state == OVERLAY:
                self._start_overlay()
                return
            self._state = state
            if self._overlay is not None:
                if state != "listening":
                    return  # shown when the overlay ends
                self._cancel_overlay()
            if self._shown != state:
                self._play(state)

    def _start_overlay(self) -> None:
        self._cancel_overlay()
        self._generation += 1
        timer = threading.Timer(self.error_s, self._end_overlay, args=(self._generation,))
        timer.daemon = True
        timer.name = "omnid-led-error"
        self._overlay = timer
        self._play(OVERLAY, repeat=max(1, round(self.error_s / PATTERNS[OVERLAY].period_s)))
        timer.start()

    def _end_overlay(self, generation: int) -> None:
        """Timer thread: the error has been shown long enough; back to the current state."""
        with self._lock:
            if self._closed or generation != self._generation:
                return
            self._overlay = None
            self._play(self._state)

    def _cancel_overlay(self) -> None:
        if self._overlay is not None:
            self._overlay.cancel()
            self._overlay = None
            self._generation += 1

    def _play(self, state: str, repeat: int | None = None) -> None:
        """Hand the pattern to gpiozero (lock held). Each branch replaces what played before:
        `source = None` stops a source thread, and on/off/value/blink/pulse stop a blink one."""
        pattern = PATTERNS.get(state)
        if pattern is None:
            if state not in self._warned:
                self._warned.add(state)
                log.warning("LED: no pattern for state %r; showing it as off", state)
            pattern = PATTERNS["idle"]
        self._shown = state
        led = self._led
        led.source = None
        steps = pattern.steps
        if pattern.steady or (pattern.pulse and not self.pwm):
            level = steps[0][0] if pattern.steady else 1.0
            led.value = level if self.pwm else float(level > 0)  # "dim" is on without PWM
        elif pattern.pulse:
            led.pulse(fade_in_time=steps[0][1], fade_out_time=steps[1][1], n=repeat)
        elif len(steps) == 2 and steps[0][0] and not steps[1][0]:
            led.blink(on_time=steps[0][1], off_time=steps[1][1], n=repeat)
        else:
            # blink() knows one on/off pair; a longer pattern is a list of levels that
            # gpiozero's source thread plays at a fixed step.
            dt = _quantum(steps)
            levels = [level for level, s in steps for _ in range(round(s / dt))]
            led.source_delay = dt
            led.source = _levels(levels, repeat)

    def close(self) -> None:
        """Turn off, stop the patterns and release the pin. Idempotent."""
        with self._posted:
            if self._closed:
                return
            self._closed = True
            self._posted.notify()
        worker = self._worker
        if worker is not None:
            worker.join(2.0)
        with self._lock:
            self._cancel_overlay()
        self._led.close()

    def __enter__(self) -> StatusLed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<StatusLed {self.pin} {self._state!r}{' pwm' if self.pwm else ''}>"


def _levels(levels: list[float], repeat: int | None) -> Iterator[float]:
    cycle = itertools.cycle(levels) if repeat is None else itertools.chain(*[levels] * repeat)
    yield from cycle
    yield 0.0


def open_led(cfg: LedSection, pin_factory: Any = None) -> StatusLed | None:
    """The configured status LED, or None when `[led]` is disabled or its pin cannot be opened
    (one error logged; the box works without it). Call once at start-up, then `show()` on every
    state change, and `close()` on shutdown."""
    if not cfg.enabled:
        return None
    led = open_gpio(
        "led",
        cfg.pin,
        lambda: StatusLed(cfg.pin, pin_factory=pin_factory),
        without="carrying on without a status light",
        logger=log,
    )
    if led is not None:
        log.info("status LED on %s (%s)", cfg.pin, "PWM" if led.pwm else "on/off")
    return led
