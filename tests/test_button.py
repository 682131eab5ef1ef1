"""The push-to-talk button through gpiozero's real Button on its mock pin factory.

The mock factory runs gpiozero's own device and event code; only the pin is simulated, and
`drive_low()`/`drive_high()` call the edge callbacks synchronously, so edge timing here is the
test's own `sleep`s. The mock pin ignores `bounce_time` (gpiozero 2.0), which makes it the
strictest case for our debounce.

Times are checked on one clock, the monotonic one the button stamps with: an edge's stamp must
fall within the `drive_*()` call that made it (`Edges`), however long a busy machine makes the
sleeps between them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from omnid.button import TalkButton, open_button
from omnid.config_schema import ButtonSection
from omnid.events import Event, Press, Release

PIN = "GPIO17"


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.close()


class Recorder:
    """What the button posted, in order (stands in for the conversation's queue.put_nowait),
    and when each was posted."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.posted: list[float] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.posted.append(time.monotonic())

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]


def open_talk_button(
    factory: MockFactory, post: Recorder, bounce_ms: int = 20, pull_up: bool = True
) -> tuple[TalkButton, MockPin]:
    button = TalkButton(PIN, pull_up, bounce_ms, post, pin_factory=factory)
    return button, factory.pin(PIN)


class Edges:
    """Drives a pin and keeps (before, after) monotonic time around each `drive_*()` call: the
    interval the button's stamp of that edge must fall in."""

    def __init__(self, pin: MockPin) -> None:
        self.pin = pin
        self.spans: list[tuple[float, float]] = []

    def low(self) -> None:
        self._drive(self.pin.drive_low)

    def high(self) -> None:
        self._drive(self.pin.drive_high)

    def _drive(self, drive: Callable[[], None]) -> None:
        before = time.monotonic()
        drive()
        self.spans.append((before, time.monotonic()))


def chatter(pin: MockPin, final_low: bool, edges: int = 5, within_s: float = 0.010) -> None:
    """`edges` alternating edges spread over `within_s`, ending at the final level."""
    levels = [final_low if (edges - 1 - i) % 2 == 0 else not final_low for i in range(edges)]
    for low in levels:
        pin.drive_low() if low else pin.drive_high()
        time.sleep(within_s / edges)


def test_press_hold_release_posts_press_then_release(factory: MockFactory) -> None:
    post = Recorder()
    button, pin = open_talk_button(factory, post)
    edges = Edges(pin)
    before = time.monotonic()
    edges.low()  # pull_up=True: pressed pulls the pin to ground
    time.sleep(0.3)
    assert post.kinds() == ["Press"]
    assert button.is_pressed
    edges.high()
    time.sleep(0.05)  # past the lockout: nothing late may arrive
    after = time.monotonic()
    button.close()

    assert post.kinds() == ["Press", "Release"]
    press, release = post.events
    assert isinstance(press, Press) and isinstance(release, Release)
    assert press.source == release.source == "button"
    assert before <= press.t < release.t <= after
    # Each stamped with its own edge (so the 0.3 s hold is what they measure), not later.
    (low_from, low_to), (high_from, high_to) = edges.spans
    assert low_from <= press.t <= low_to and high_from <= release.t <= high_to
    assert release.t - press.t >= 0.3


def test_pull_down_wiring_presses_high(factory: MockFactory) -> None:
    post = Recorder()
    button, pin = open_talk_button(factory, post, pull_up=False)
    pin.drive_high()
    time.sleep(0.05)
    pin.drive_low()
    time.sleep(0.05)
    button.close()
    assert post.kinds() == ["Press", "Release"]


def test_chatter_at_press_and_release_gives_one_press_and_one_release(
    factory: MockFactory,
) -> None:
    post = Recorder()
    button, pin = open_talk_button(factory, post, bounce_ms=20)
    chatter(pin, final_low=True)  # five edges within 10 ms, then held
    assert pin.state is False
    time.sleep(0.3)
    assert post.kinds() == ["Press"]
    chatter(pin, final_low=False)  # the contact bounces on the way up too
    time.sleep(0.1)
    button.close()

    assert post.kinds() == ["Press", "Release"]
    assert post.events[0].t < post.events[1].t


def test_chatter_does_not_reach_gpiozero_debounced(factory: MockFactory) -> None:
    """Proof the test above tests *our* debounce: gpiozero alone passes the chatter through."""
    from gpiozero import Button

    seen: list[str] = []
    raw = Button(PIN, pull_up=True, bounce_time=0.02, pin_factory=factory)
    raw.when_pressed = lambda: seen.append("press")
    chatter(factory.pin(PIN), final_low=True)
    raw.close()
    assert seen.count("press") > 1


def test_tap_of_50_ms_gives_press_and_release_50_ms_apart(factory: MockFactory) -> None:
    post = Recorder()
    button, pin = open_talk_button(factory, post)
    edges = Edges(pin)
    edges.low()
    time.sleep(0.05)
    edges.high()
    time.sleep(0.05)
    button.close()

    assert post.kinds() == ["Press", "Release"]
    # Past the 20 ms lockout, both edges are reported as they happen, each with its own time:
    # 50 ms apart when the sleep is exact, more when a busy machine stretches it.
    (low_from, low_to), (high_from, high_to) = edges.spans
    assert low_from <= post.events[0].t <= low_to
    assert high_from <= post.events[1].t <= high_to
    assert post.posted[1] <= high_to  # reported at the edge, not at a timer
    assert post.events[1].t - post.events[0].t >= 0.05


def test_tap_shorter_than_bounce_is_not_lost(factory: MockFactory) -> None:
    """A release inside the lockout is reported when it ends: never stuck pressed. (A 200 ms
    window, so that the 10 ms tap stays inside it however a busy machine stretches the sleep.)"""
    post = Recorder()
    bounce_s = 0.2
    button, pin = open_talk_button(factory, post, bounce_ms=round(bounce_s * 1000))
    edges = Edges(pin)
    edges.low()
    time.sleep(0.01)
    edges.high()
    (low_from, low_to), (high_from, high_to) = edges.spans
    assert high_to - low_from < bounce_s, "the tap outlasted the window: not the case tested"
    deadline = time.monotonic() + 5.0
    while len(post.events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert post.kinds() == ["Press", "Release"]
    assert not button.is_pressed
    press, release = post.events
    assert low_from <= press.t <= low_to  # the press at once, stamped with its edge
    assert post.posted[1] >= press.t + bounce_s  # the release held back until the window closed
    assert high_from <= release.t <= high_to  # ...and stamped with its edge, not with that
    button.close()


def test_two_separate_presses_are_two_turns(factory: MockFactory) -> None:
    post = Recorder()
    button, pin = open_talk_button(factory, post)
    for _ in range(2):
        pin.drive_low()
        time.sleep(0.06)
        pin.drive_high()
        time.sleep(0.06)
    button.close()
    assert post.kinds() == ["Press", "Release", "Press", "Release"]
    times = [e.t for e in post.events]
    assert times == sorted(times)


def test_bounce_zero_reports_every_edge(factory: MockFactory) -> None:
    post = Recorder()
    button, pin = open_talk_button(factory, post, bounce_ms=0)
    pin.drive_low()
    pin.drive_high()
    pin.drive_low()
    button.close()
    assert post.kinds() == ["Press", "Release", "Press"]


class HeldDownPin(MockPin):
    """A pin whose button is held (or shorted) to ground: setting the pull-up cannot raise it."""

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        self.drive_low()


def test_held_at_start_posts_nothing_until_pressed_again(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    factory.pin(PIN, pin_class=HeldDownPin)
    post = Recorder()
    with caplog.at_level(logging.WARNING, logger="omnid.button"):
        button, pin = open_talk_button(factory, post)
    assert "reads pressed at start-up" in caplog.text
    pin.drive_high()
    time.sleep(0.03)
    pin.drive_low()
    time.sleep(0.03)
    button.close()
    assert post.kinds() == ["Release", "Press"]  # the release of a press we never reported


def test_close_stops_events_and_frees_the_pin(factory: MockFactory) -> None:
    post = Recorder()
    button, pin = open_talk_button(factory, post)
    button.close()
    button.close()  # idempotent
    pin.drive_low()
    assert post.events == []
    again, _ = open_talk_button(factory, post)  # the reservation was released
    again.close()


def test_a_raising_post_does_not_break_the_button(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Event] = []

    def post(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("queue gone")

    button = TalkButton(PIN, True, 20, post, pin_factory=factory)
    pin = factory.pin(PIN)
    pin.drive_low()
    time.sleep(0.03)
    pin.drive_high()
    button.close()
    assert len(calls) == 2
    assert "posting the press failed" in caplog.text


def cfg(pin: str, enabled: bool = True) -> ButtonSection:
    return ButtonSection(enabled=enabled, pin=pin, pull_up=True, bounce_ms=20)


@pytest.mark.parametrize("pin", ["GPIO99", "nonsense"])
def test_invalid_pin_is_one_error_and_none(
    factory: MockFactory, caplog: pytest.LogCaptureFixture, pin: str
) -> None:
    with caplog.at_level(logging.DEBUG):
        assert open_button(cfg(pin), Recorder(), pin_factory=factory) is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert pin in message and "not a valid pin" in message


def test_pin_in_use_is_one_error_and_none(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from gpiozero import LED

    holder = LED(PIN, pin_factory=factory)
    with caplog.at_level(logging.DEBUG):
        assert open_button(cfg(PIN), Recorder(), pin_factory=factory) is None
    holder.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert PIN in errors[0].getMessage() and "in use" in errors[0].getMessage()


def test_no_gpio_at_all_is_one_error_naming_why(
    caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    """Off a Pi gpiozero finds no pin factory; its per-factory fallback warnings become part of
    the one error instead of a burst of warnings."""
    from gpiozero import Device

    if Device.pin_factory is not None:
        pytest.skip("a default pin factory is already loaded in this process")
    try:
        import lgpio  # noqa: F401

        pytest.skip("lgpio is importable: this may be a real Pi")
    except ImportError:
        pass
    with caplog.at_level(logging.DEBUG):
        assert open_button(cfg(PIN), Recorder()) is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert PIN in message and "lgpio" in message
    assert not [w for w in recwarn if "Falling back" in str(w.message)]


def test_disabled_button_is_none_without_error(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    assert open_button(cfg(PIN, enabled=False), Recorder(), pin_factory=factory) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_open_button_works_end_to_end(factory: MockFactory) -> None:
    post = Recorder()
    button = open_button(cfg(PIN), post, pin_factory=factory)
    assert button is not None
    pin = factory.pin(PIN)
    pin.drive_low()
    time.sleep(0.03)
    pin.drive_high()
    button.close()
    assert post.kinds() == ["Press", "Release"]
