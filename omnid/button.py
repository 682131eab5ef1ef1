"""The push-to-talk button: a gpiozero `Button` whose edges become `Press`/`Release` events.

gpiozero calls `when_pressed`/`when_released` on its own thread (lgpio's callback thread on a Pi,
the caller's thread with the mock pin factory), so the callbacks here only decide whether an edge
counts and then `post` one event; everything else happens on the conversation thread.

Why a debounce of our own on top of gpiozero's `bounce_time`: what `bounce_time` does depends on
the pin factory. lgpio reports a level only after it has been stable for that long (clean, but
every edge is late by `bounce_ms`), RPi.GPIO drops edges that follow another within it (which can
lose a release), and the mock and native factories ignore it. `_Debouncer` gives the same
guarantee with every factory: contact chatter never produces a second turn, and a real release is
never lost. See `_Debouncer` for how.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from omnid.events import Press, Release

if TYPE_CHECKING:
    from omnid.config_schema import ButtonSection
    from omnid.events import Event

log = logging.getLogger(__name__)

SOURCE = "button"
"""`Press.source` / `Release.source` of button events (the control socket uses "ctl")."""

T = TypeVar("T")


class _Debouncer:
    """Turns raw press/release edges into a clean alternating Press, Release, Press, … stream.

    Leading edge plus lockout, with a re-check when the lockout ends:

    - An edge to the state already reported (a press while pressed) is ignored.
    - The first edge after a quiet spell is reported at once, stamped with its own time: the
      press must feel instant and its `t` is what latency is measured from.
    - For `bounce_s` after a reported edge, further edges are not reported (that is where
      chatter lives); instead a one-shot timer is armed for the end of that window.
    - When it fires, the pin's *current* level is read; if it differs from what was reported
      (a real release came during the window, e.g. a very short tap), that edge is reported
      then, stamped with the time of the last raw edge. So chatter yields one event, and the
      button can never stay "stuck" pressed.

    The timer is a `threading.Timer` started only when chatter (or a tap shorter than
    `bounce_s`) happens, so an ordinary press costs no thread. One lock orders everything: the
    gpiozero thread and the timer thread can both report, and events must alternate.
    """

    def __init__(
        self,
        bounce_s: float,
        read_pressed: Callable[[], bool],
        report: Callable[[bool, float], None],
        initially_pressed: bool,
    ) -> None:
        self._bounce_s = bounce_s
        self._read_pressed = read_pressed
        self._report = report
        self._lock = threading.Lock()
        self._pressed = initially_pressed
        self._last_t = -float("inf")  # when the last reported edge happened
        self._raw_t = -float("inf")  # when the last raw edge (reported or not) happened
        self._timer: threading.Timer | None = None
        self._closed = False

    @property
    def pressed(self) -> bool:
        """The debounced state: what the last reported event said."""
        return self._pressed

    def edge(self, pressed: bool, t: float) -> None:
        """A raw edge seen at monotonic time `t` (any thread)."""
        with self._lock:
            self._raw_t = t
            if self._closed or pressed == self._pressed:
                return
            wait = self._last_t + self._bounce_s - t
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._settle)
                    self._timer.daemon = True
                    self._timer.name = "omnid-button-debounce"
                    self._timer.start()
                return
            self._set(pressed, t)

    def _settle(self) -> None:
        """Timer thread: the lockout is over; report the level the pin has settled on."""
        with self._lock:
            self._timer = None
            if self._closed:
                return
            try:
                pressed = self._read_pressed()
            except Exception:  # the device was closed under us
                return
            if pressed != self._pressed:
                # Stamped with the last raw edge: when the level really got where it now is.
                self._set(pressed, max(self._raw_t, self._last_t))

    def _set(self, pressed: bool, t: float) -> None:
        self._pressed = pressed
        self._last_t = t
        self._report(pressed, t)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class TalkButton:
    """A momentary push button between `pin` and ground (pull_up=True) or 3V3 (pull_up=False).

    Posts `Press("button")` on press and `Release("button")` on release, each stamped with the
    monotonic time of the edge, exactly alternating, after debouncing (see `_Debouncer`). What a
    press *means* (hold-to-talk, tap to stop, mute toggle, max_turn_s) is the conversation's
    business, not the button's.

    A button that already reads pressed when opened posts nothing until it is released and
    pressed again (a short-circuited or mis-pulled input must not start a turn at boot); it logs
    a warning, since that is usually wiring or the wrong `pull_up`.
    """

    def __init__(
        self,
        pin: str,
        pull_up: bool,
        bounce_ms: int,
        post: Callable[[Event], None],
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import Button  # lazily: importing gpiozero is slow on a Pi Zero

        if bounce_ms < 0:
            raise ValueError(f"bounce_ms must be 0 or more, not {bounce_ms}")
        self.pin = pin
        self._post = post
        self._button = Button(
            pin,
            pull_up=pull_up,
            bounce_time=bounce_ms / 1000 or None,
            pin_factory=pin_factory,
        )
        try:
            initially = bool(self._button.is_pressed)
            self._debounce = _Debouncer(
                bounce_ms / 1000, self._read_pressed, self._report, initially
            )
            if initially:
                log.warning(
                    "button on %s reads pressed at start-up: ignored until released "
                    "(check the wiring and button.pull_up = %s)",
                    pin,
                    "true" if pull_up else "false",
                )
            self._button.when_pressed = self._on_pressed
            self._button.when_released = self._on_released
        except BaseException:
            self._button.close()
            raise

    @property
    def is_pressed(self) -> bool:
        """The debounced state (what the last posted event said)."""
        return self._debounce.pressed

    def _on_pressed(self) -> None:
        """gpiozero's thread: only timestamp and hand over."""
        self._debounce.edge(True, time.monotonic())

    def _on_released(self) -> None:
        self._debounce.edge(False, time.monotonic())

    def _read_pressed(self) -> bool:
        return bool(self._button.is_pressed)

    def _report(self, pressed: bool, t: float) -> None:
        try:
            self._post(Press(SOURCE, t) if pressed else Release(SOURCE, t))
        except Exception:
            # Raising into gpiozero's callback thread would only print a traceback there.
            log.exception(
                "button on %s: posting the %s failed", self.pin, "press" if pressed else "release"
            )

    def close(self) -> None:
        """Stop reporting and release the pin. Idempotent."""
        self._debounce.close()
        self._button.close()

    def __enter__(self) -> TalkButton:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TalkButton {self.pin} pressed={self.is_pressed}>"


def open_gpio(
    what: str,
    pin: str,
    make: Callable[[], T],
    *,
    without: str = "carrying on without it",
    logger: logging.Logger = log,
) -> T | None:
    """Run `make()` (which opens a gpiozero device on `pin`); on any failure log ONE error that
    names the pin and the reason (and, in `without`, what the box does instead) to `logger`,
    and return None.

    The box must keep working without its button or LED (the control socket still drives
    turns), so nothing here may raise. gpiozero tries each pin factory in turn and warns
    (`PinFactoryFallback`) for every one that fails before raising a bare "Unable to load any
    default pin factory!"; those warnings are collected and folded into the one error, which is
    what says *why* (no lgpio module, not a Raspberry Pi, …).
    """
    from gpiozero.exc import PinFactoryFallback

    device: T | None = None
    failure: Exception | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            device = make()
        except Exception as exc:
            failure = exc
    fallbacks = []
    for w in caught:
        if issubclass(w.category, PinFactoryFallback):
            fallbacks.append(str(w.message))
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if failure is not None:
        reason = str(failure) or type(failure).__name__
        if fallbacks:
            reason += " (" + "; ".join(fallbacks) + ")"
        logger.error(
            "%s: cannot open pin %s: %s [%s]; %s",
            what,
            pin,
            reason,
            type(failure).__name__,
            without,
        )
        logger.debug("%s: opening pin %s failed", what, pin, exc_info=failure)
        return None
    for message in fallbacks:
        logger.debug("%s: %s", what, message)
    return device


def open_button(
    cfg: ButtonSection, post: Callable[[Event], None], pin_factory: Any = None
) -> TalkButton | None:
    """The configured button, or None when `[button]` is disabled or its pin cannot be opened
    (one error logged; the control socket is then the only trigger). Call once at start-up,
    before READY=1, and `close()` it on shutdown."""
    if not cfg.enabled:
        return None
    button = open_gpio(
        "button",
        cfg.pin,
        lambda: TalkButton(cfg.pin, cfg.pull_up, cfg.bounce_ms, post, pin_factory=pin_factory),
        without="carrying on without it: 'omnid ctl press' / 'release' still start turns",
    )
    if button is not None:
        log.info("button on %s (pull_up=%s, bounce %d ms)", cfg.pin, cfg.pull_up, cfg.bounce_ms)
    return button
