"""The status LED through gpiozero's real LED/PWMLED on its mock pin factory.

Mock pins record every level change with its time (`pin.states`: the time since the previous
change, and the new level), so the test reads back exactly what the LED did. All scenarios run
at once, each on its own pin, from one schedule: the slowest pattern (the 3 s error overlay)
sets the wall time, about 4 s for the whole module.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

import pytest
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from omnid.config_schema import LedSection
from omnid.led import ERROR_SECONDS, PATTERNS, StatusLed, open_led

END_S = ERROR_SECONDS + 0.9  # long enough to see the error overlay end and the pattern after it
TOL = 0.06  # seconds of timing slack per edge (threads on a busy test machine)

# name: (pwm?, [(at_s, state), ...])
SCENARIOS: dict[str, tuple[bool, list[tuple[float, str]]]] = {
    "idle": (True, [(0.0, "idle")]),
    "listening": (True, [(0.0, "listening")]),
    "thinking": (True, [(0.0, "thinking")]),
    "speaking": (True, [(0.0, "speaking")]),
    "speaking-no-pwm": (False, [(0.0, "speaking")]),
    "thinking-no-pwm": (False, [(0.0, "thinking")]),
    "muted": (True, [(0.0, "muted")]),
    "offline": (True, [(0.0, "offline")]),
    "connecting": (True, [(0.0, "connecting")]),
    "error-over-thinking": (True, [(0.0, "thinking"), (0.0, "error")]),
    "error-then-idle": (True, [(0.0, "listening"), (0.0, "error"), (0.5, "idle")]),
    "error-cut-by-listening": (True, [(0.0, "idle"), (0.0, "error"), (1.0, "listening")]),
    "thinking-then-listening": (True, [(0.0, "thinking"), (0.8, "listening")]),
    "unknown-state": (True, [(0.0, "listening"), (0.2, "no-such-state")]),
    "confirm": (True, [(0.0, "confirm")]),
    "alarm": (True, [(0.0, "alarm")]),
}


@dataclass
class Run:
    histories: dict[str, list[tuple[float, float]]]  # name -> [(t since start, level), ...]
    pwm: dict[str, bool]
    show_s: list[float] = field(default_factory=list)  # how long each show() took
    warnings: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    """caplog is function-scoped; the module-scoped run collects its own records."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def run() -> Run:
    pwm_factory = MockFactory(pin_class=MockPWMPin)
    plain_factory = MockFactory(pin_class=MockPin)
    leds: dict[str, StatusLed] = {}
    pins: dict[str, MockPin] = {}
    for i, (name, (pwm, _)) in enumerate(SCENARIOS.items()):
        factory = pwm_factory if pwm else plain_factory
        pin = f"GPIO{2 + i}"
        leds[name] = StatusLed(pin, pin_factory=factory)
        pins[name] = factory.pin(pin)
    schedule = sorted(  # by time only: a scenario's actions at the same time keep their order
        ((at, name, state) for name, (_, actions) in SCENARIOS.items() for at, state in actions),
        key=lambda action: action[0],
    )
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logging.getLogger("omnid.led").addHandler(handler)
    show_s: list[float] = []
    try:
        for pin in pins.values():
            pin.clear_states()
        start = time.monotonic()
        for at, name, state in schedule:
            time.sleep(max(0.0, start + at - time.monotonic()))
            before = time.perf_counter()
            leds[name].show(state)
            show_s.append(time.perf_counter() - before)
        time.sleep(max(0.0, start + END_S - time.monotonic()))
        histories = {}
        for name, pin in pins.items():
            # pin.states: (seconds since the previous change, new level); make times absolute
            times = accumulate(s.timestamp for s in pin.states)
            histories[name] = [(t, float(s.state)) for t, s in zip(times, pin.states, strict=True)]
    finally:
        for led in leds.values():
            led.close()
        logging.getLogger("omnid.led").removeHandler(handler)
        pwm_factory.close()
        plain_factory.close()
    return Run(
        histories,
        {name: led.pwm for name, led in leds.items()},
        show_s,
        [r.getMessage() for r in records if r.levelno >= logging.WARNING],
    )


def segments(history: list[tuple[float, float]], start: float = 0.0, end: float = END_S):
    """(from, to, level) runs within [start, end], the last one cut at `end`."""
    out = []
    for (t, level), nxt in zip(history, [*history[1:], (end, None)], strict=True):
        a, b = max(t, start), min(nxt[0], end)
        if b > a:
            out.append((a, b, level))
    return out


def lit(history, start: float = 0.0, end: float = END_S) -> list[tuple[float, float]]:
    """(from, to) of each lit stretch (any level above zero counts as lit)."""
    runs: list[tuple[float, float]] = []
    for a, b, level in segments(history, start, end):
        if level > 0:
            if runs and abs(runs[-1][1] - a) < 1e-9:
                runs[-1] = (runs[-1][0], b)
            else:
                runs.append((a, b))
    return runs


def assert_blinks(runs: list[tuple[float, float]], on_s: float, period_s: float, end: float):
    """Every complete lit stretch lasts `on_s` and they start `period_s` apart."""
    complete = [r for r in runs if r[1] < end - 1e-6]
    assert len(complete) >= 2, runs
    # gpiozero's blink thread sleeps between edges; on a machine running three test workers
    # a sleep overshoots by tens of ms, so each stretch gets a quarter of itself as slack too
    # (0.5 s on still cannot pass for 0.25 s, nor a 1 s period for 0.5 s).
    for a, b in complete:
        assert b - a == pytest.approx(on_s, abs=max(TOL, on_s / 4)), runs
    for (a1, _), (a2, _) in pairwise(runs):
        assert a2 - a1 == pytest.approx(period_s, abs=max(TOL, period_s / 4)), runs


def test_show_never_blocks(run: Run) -> None:
    # Blocking on a pattern would take one of its steps at least (0.1 s, the shortest); show()
    # starts a thread and returns, which a busy machine can stretch to tens of ms.
    assert max(run.show_s) < 0.1, run.show_s


def test_pwm_is_used_when_the_pin_can_do_it(run: Run) -> None:
    assert run.pwm["speaking"] and not run.pwm["speaking-no-pwm"]


def test_idle_is_always_off(run: Run) -> None:
    assert lit(run.histories["idle"]) == []


def test_listening_is_always_on(run: Run) -> None:
    runs = lit(run.histories["listening"])
    assert len(runs) == 1
    assert runs[0][0] < TOL and runs[0][1] == END_S


@pytest.mark.parametrize("name", ["thinking", "thinking-no-pwm"])
def test_thinking_blinks_slowly(run: Run, name: str) -> None:
    (_, on_s), (_, off_s) = PATTERNS["thinking"].steps
    assert on_s == off_s == 0.5  # 1 Hz, as the README says
    assert_blinks(lit(run.histories[name]), on_s, on_s + off_s, END_S)


def test_speaking_pulses_with_pwm(run: Run) -> None:
    history = run.histories["speaking"]
    levels = [level for _, level in history]
    assert len(set(levels)) > 10  # a fade, not a switch
    period = PATTERNS["speaking"].period_s
    # one full cycle: up to (nearly) full brightness and back down to (nearly) dark
    cycle = [level for t, level in history if period / 4 <= t <= period / 4 + period]
    assert max(cycle) > 0.9 and min(cycle) < 0.1


def test_speaking_is_steady_on_without_pwm(run: Run) -> None:
    runs = lit(run.histories["speaking-no-pwm"])
    assert len(runs) == 1 and runs[0][0] < TOL and runs[0][1] == END_S


def test_muted_double_blinks(run: Run) -> None:
    steps = PATTERNS["muted"].steps
    runs = lit(run.histories["muted"])
    period = PATTERNS["muted"].period_s
    complete = [r for r in runs if r[1] < END_S - 1e-6]
    assert len(complete) >= 4
    for a, b in complete:
        assert b - a == pytest.approx(steps[0][1], abs=TOL)
    gaps = [b[0] - a[1] for a, b in pairwise(runs)]
    assert gaps[0] == pytest.approx(steps[1][1], abs=TOL)  # the short gap inside the pair
    assert gaps[1] == pytest.approx(steps[3][1], abs=TOL)  # the long pause after it
    assert runs[2][0] - runs[0][0] == pytest.approx(period, abs=TOL)


@pytest.mark.parametrize("name", ["offline", "connecting"])
def test_offline_and_connecting_are_a_slow_heartbeat(run: Run, name: str) -> None:
    (_, on_s), (_, off_s) = PATTERNS[name].steps
    assert_blinks(lit(run.histories[name]), on_s, on_s + off_s, END_S)


def test_error_blinks_fast_then_returns_to_the_state(run: Run) -> None:
    history = run.histories["error-over-thinking"]
    (_, on_s), (_, off_s) = PATTERNS["error"].steps
    fast = lit(history, 0.0, ERROR_SECONDS - 0.05)
    assert len(fast) >= ERROR_SECONDS / (on_s + off_s) - 2
    assert_blinks(fast, on_s, on_s + off_s, ERROR_SECONDS - 0.05)
    # then thinking again: its 0.5 s light from the moment the overlay ends, and off after
    a, b = lit(history)[-1]
    assert a == pytest.approx(ERROR_SECONDS, abs=TOL)
    assert b - a == pytest.approx(0.5, abs=TOL)


def test_state_during_error_waits_for_it(run: Run) -> None:
    history = run.histories["error-then-idle"]
    assert len(lit(history, 0.6, ERROR_SECONDS - 0.1)) >= 5  # still blinking after "idle"
    assert lit(history, ERROR_SECONDS + TOL, END_S) == []  # then idle: off


def test_listening_cuts_the_error_short(run: Run) -> None:
    history = run.histories["error-cut-by-listening"]
    assert len(lit(history, 0.0, 0.95)) >= 4
    after = lit(history, 1.0 + TOL, END_S)
    assert after == [(1.0 + TOL, END_S)]  # steady on from the press to the end


def test_a_new_state_replaces_a_blinking_pattern(run: Run) -> None:
    history = run.histories["thinking-then-listening"]
    runs = lit(history, 0.0, END_S)
    assert runs[-1][0] == pytest.approx(0.8, abs=TOL) and runs[-1][1] == END_S


def test_unknown_state_is_off_with_one_warning(run: Run) -> None:
    assert lit(run.histories["unknown-state"], 0.2 + TOL, END_S) == []
    assert sum("no-such-state" in w for w in run.warnings) == 1


@pytest.mark.parametrize(("name", "flashes"), [("confirm", 3), ("alarm", 4)])
def test_confirm_and_alarm_flash_in_groups_every_period(run: Run, name: str, flashes: int) -> None:
    """README: a command waiting for a press blinks three times every 1.5 s; a ringing timer
    flashes four times a second."""
    runs = lit(run.histories[name])
    period = PATTERNS[name].period_s
    assert period == {"confirm": 1.5, "alarm": 1.0}[name]
    starts = [a for a, _ in runs]
    whole = [a for a in starts if a + period <= END_S]
    assert whole, runs
    first = starts[0]
    in_period = [a for a in starts if first <= a < first + period - TOL]
    assert len(in_period) == flashes, runs
    for a, b in runs[: flashes - 1]:
        assert b - a == pytest.approx(PATTERNS[name].steps[0][1], abs=max(TOL, 0.03)), runs


def test_pattern_table_covers_every_state() -> None:
    states = {"idle", "woken", "listening", "thinking", "speaking", "muted", "offline"}
    states |= {"connecting"}
    assert states | {"error"} <= set(PATTERNS)
    for name, pattern in PATTERNS.items():
        assert pattern.meaning, name
        for level, seconds in pattern.steps:
            assert 0.0 <= level <= 1.0 and seconds > 0


def test_close_turns_off_and_frees_the_pin() -> None:
    factory = MockFactory(pin_class=MockPWMPin)
    led = StatusLed("GPIO27", pin_factory=factory)
    led.show("thinking")
    led.show("error")
    led.close()
    led.close()
    led.show("listening")  # ignored after close, no exception
    assert factory.pin("GPIO27").state == 0
    StatusLed("GPIO27", pin_factory=factory).close()  # the reservation is gone
    factory.close()


@pytest.mark.parametrize("pin", ["GPIO99", "nonsense"])
def test_open_led_bad_pin_is_one_error_and_none(caplog: pytest.LogCaptureFixture, pin: str) -> None:
    factory = MockFactory()
    with caplog.at_level(logging.DEBUG):
        assert open_led(LedSection(enabled=True, pin=pin), pin_factory=factory) is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and pin in errors[0].getMessage()
    factory.close()


def test_open_led_pin_in_use_is_one_error_and_none(caplog: pytest.LogCaptureFixture) -> None:
    from gpiozero import Button

    factory = MockFactory()
    holder = Button("GPIO27", pin_factory=factory)
    with caplog.at_level(logging.DEBUG):
        assert open_led(LedSection(enabled=True, pin="GPIO27"), pin_factory=factory) is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "GPIO27" in errors[0].getMessage()
    holder.close()
    factory.close()


def test_open_led_disabled_is_none() -> None:
    assert open_led(LedSection(enabled=False, pin="GPIO27"), pin_factory=MockFactory()) is None
