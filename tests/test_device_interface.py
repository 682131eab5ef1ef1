"""Acceptance of issue 7, the box's own interface, on real parts.

- Button and LED: gpiozero's real `Button`/`PWMLED` on its mock pin factory, inside an in-process
  `Daemon` (as `omnid demo` runs one) with `wav:` devices, against `omnid simulate` as a process.
  The mock pin's `drive_low()` calls gpiozero's edge handling synchronously, so a press happens
  when the test says; the LED pin keeps every level it was set to, with times (`pin.states`).
  With two `wav:` devices the output file is the play timeline (tests/test_turn_wav.py).
- Earcon on the wire: `omnid run` through the ALSA FIFO rig, its speaker fed back into its
  microphone like a loudspeaker next to a mic, the echo guard off, so only the earcon mask stands
  between the earcon and the wire.
- Unavailable pin and volume: `omnid run` as a process, `omnid ctl`, the state directory.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin

from omnid import events as ev
from omnid.config import load_config
from omnid.config_schema import ButtonSection
from omnid.control import ctl
from omnid.daemon import Daemon
from omnid.earcons import Earcons, correlates
from omnid.led import PATTERNS, Pattern
from omnid.supervisor import Journal
from omnid.volume import to_gain
from tests.alsa_rig import AlsaFifoRig
from tests.harness import ROOT, Simulator, make_key, wav_devices, write_config, write_wav
from tests.harness import Daemon as DaemonProcess
from tests.test_turn_wav import (
    BLOCK_S,
    IN_RATE,
    OUT_RATE,
    SPK_BLOCK,
    best_correlation,
    read_wav,
    speech,
    timeline_samples,
    vowel,
)

BUTTON_PIN, LED_PIN = "GPIO17", "GPIO27"
LEAD_S = 1.5  # silence at the head of the microphone file: the press comes before the speech
PRESS_EARLY_S = 0.25  # the press comes this long before the speech: its earcon mask ends first
LOUD = 64  # |sample| above this is sound
EARCONS = Earcons.generate()


# -- helpers -------------------------------------------------------------------------------


def write_mic(path: Path, utterance: np.ndarray, lead_s: float = LEAD_S) -> None:
    silence = np.zeros(int(lead_s * IN_RATE), np.int16)
    write_wav(path, np.concatenate([silence, utterance, np.zeros(IN_RATE, np.int16)]))


def sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def wait_to_press(wall0: float, lead_s: float = LEAD_S) -> None:
    """Until the press moment, just before the speech in the microphone file; connecting must
    be over by then."""
    press_at = wall0 + lead_s - PRESS_EARLY_S
    assert time.time() < press_at, "connecting took too long to press in time"
    sleep_until(press_at)


def received(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.wire("recv") if r.get("event")]


def kinds(records: list[dict[str, Any]]) -> list[str]:
    return [r["event"]["type"] for r in records]


def sent_audio(sim: Simulator) -> list[np.ndarray]:
    """The microphone audio the service received for each committed turn (int16 @ 16 kHz),
    decoded from the `input_audio_buffer.append` events in the simulator's record."""
    turns: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for r in received(sim):
        event = r["event"]
        if event["type"] == "input_audio_buffer.append":
            current.append(np.frombuffer(base64.b64decode(event["audio"]), dtype="<i2"))
        elif event["type"] == "input_audio_buffer.commit":
            turns.append(np.concatenate(current) if current else np.zeros(0, np.int16))
            current = []
    return turns


def omnid_ctl(socket: Path, *words: str) -> tuple[int, str]:
    """The real `omnid ctl` command line, as an operator types it."""
    done = subprocess.run(
        [sys.executable, "-m", "omnid.cli", "ctl", *words, "--socket", str(socket)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.returncode, done.stdout + done.stderr


def block_rms(out: np.ndarray) -> np.ndarray:
    """RMS of each 20 ms output block (the speaker renders, and applies volume, per block)."""
    n = int(OUT_RATE * BLOCK_S)
    k = len(out) // n
    return np.sqrt(np.mean(out[: k * n].astype(np.float64).reshape(k, n) ** 2, axis=1))


# -- an in-process daemon with its button and LED on gpiozero's mock pins --------------------


@dataclass
class Box:
    daemon: Daemon
    sim: Simulator
    factory: MockFactory
    socket: Path
    wall0: float  # wall time of the output timeline's sample 0
    records: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def button(self) -> MockPin:
        pin: MockPin = self.factory.pin(BUTTON_PIN)
        return pin

    def press(self) -> float:
        """Close the contact (pull-up wiring: pressed = low); the wall time just before."""
        t = time.time()
        self.button.drive_low()
        return t

    def release(self) -> float:
        t = time.time()
        self.button.drive_high()
        return t

    def chatter(self, final_low: bool, edges: int = 5, gap_s: float = 0.001) -> float:
        """`edges` alternating edges ending at the final level; returns their span (s)."""
        first = time.monotonic()
        for i in range(edges):
            low = final_low if (edges - 1 - i) % 2 == 0 else not final_low
            self.button.drive_low() if low else self.button.drive_high()
            if i < edges - 1:
                time.sleep(gap_s)
        return time.monotonic() - first

    def ctl(self, command: str) -> dict[str, Any]:
        return ctl(self.socket, command)

    def listen(self, event: str, fields: dict[str, Any]) -> None:
        with self.cond:
            self.records.append((time.monotonic(), event, dict(fields)))
            self.cond.notify_all()

    def turns(self) -> list[dict[str, Any]]:
        with self.cond:
            return [f for _, e, f in self.records if e == "turn"]

    def wait_record(self, event: str, count: int = 1, timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [f for _, e, f in self.records if e == event]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                assert left > 0, f"{count} {event!r} record(s) not seen: {self.records}"
                self.cond.wait(min(left, 0.1))

    def wait_state(self, state: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while (now := self.ctl("status")["state"]) != state:
            if not seen or seen[-1] != now:
                seen.append(now)
            assert time.monotonic() < deadline, f"{state!r} not reached: {seen}, {self.records}"
            time.sleep(0.01)


@contextlib.contextmanager
def box(
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    utterance: np.ndarray,
    *,
    extra: str = "",
    sim_flags: tuple[str, ...] = (),
    pin_class: type[MockPin] = MockPin,
) -> Iterator[Box]:
    for name in list(os.environ):
        if name.startswith(("OMNID_", "DASHSCOPE_", "NOTIFY_SOCKET", "WATCHDOG_")) or name in (
            "JOURNAL_STREAM",
            "CREDENTIALS_DIRECTORY",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp / "state"))
    caplog.set_level(logging.INFO, logger="omnid")
    key = make_key()
    write_mic(tmp / "mic.wav", utterance)
    sim = Simulator(tmp, key, *sim_flags)
    config = write_config(
        tmp,
        sim.url,
        key,
        wav_devices(tmp) + f'[button]\nenabled = true\npin = "{BUTTON_PIN}"\n' + extra,
    )
    factory = MockFactory(pin_class=pin_class)
    journal = Journal()
    daemon = Daemon(load_config(config, require_api_key=True), journal, pin_factory=factory)
    loop = threading.Thread(target=daemon.run, name="conversation", daemon=True)
    try:
        daemon.open()
        line = next(r.getMessage() for r in caplog.records if "started at wall" in r.getMessage())
        wall0 = float(line.rsplit("started at wall", 1)[1].split()[0])
        b = Box(daemon, sim, factory, tmp / "control.sock", wall0)
        journal.listen(b.listen)
        loop.start()
        b.wait_record("session_open", timeout=10)
        yield b
    finally:
        if loop.ident is not None:
            daemon.post(ev.Stop("test over"))
            loop.join(5)
        daemon.close()
        factory.close()
        sim.stop()


# -- 1. the button drives manual turns -----------------------------------------------------


def assert_one_answered_turn(b: Box, released: float) -> list[dict[str, Any]]:
    turns = b.turns()
    assert len(turns) == 1, turns
    assert turns[0]["OMNID_OUTCOME"] == "answered"
    assert turns[0]["OMNID_MODE"] == "manual" and turns[0]["OMNID_TURN"] == 1
    wire = received(b.sim)
    k = kinds(wire)
    assert k.count("input_audio_buffer.commit") == 1, k
    assert k.count("response.create") == 1, k
    commit = k.index("input_audio_buffer.commit")
    assert k[commit + 1] == "response.create"
    appends = [r["t"] for r in wire[:commit] if r["event"]["type"] == "input_audio_buffer.append"]
    assert len(appends) >= 10, "audio was not streamed while the button was held"
    assert wire[commit]["t"] >= released
    return wire


def test_button_press_hold_release_drives_a_full_manual_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    utterance = speech(1.5)
    with box(tmp_path, monkeypatch, caplog, utterance) as b:
        wait_to_press(b.wall0)
        b.press()
        assert b.ctl("status")["state"] == "listening"
        sleep_until(b.wall0 + LEAD_S + 1.5 + 0.3)
        released = b.release()
        b.wait_record("turn")
        time.sleep(0.3)
        status = b.ctl("status")
    assert_one_answered_turn(b, released)
    assert status["state"] == "idle" and status["turns"] == 1
    reply = read_wav(tmp_path / "spk.wav")
    expected = soxr.resample(utterance.astype(np.float64), IN_RATE, OUT_RATE)
    score = best_correlation(reply, expected)
    print(f"\nbutton turn: reply vs utterance correlation {score:.3f}")
    assert score >= 0.8


def test_five_edges_within_10_ms_make_one_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with box(tmp_path, monkeypatch, caplog, speech(1.0)) as b:
        wait_to_press(b.wall0)
        press_span = b.chatter(final_low=True)
        time.sleep(0.05)
        assert b.ctl("status")["state"] == "listening"
        sleep_until(b.wall0 + LEAD_S + 1.0 + 0.3)
        released = time.time()
        release_span = b.chatter(final_low=False)
        b.wait_record("turn")
        time.sleep(0.5)  # room for a second turn, should chatter have made one
        status = b.ctl("status")
    print(f"\nchatter: 5 edges in {press_span * 1000:.1f} ms, then in {release_span * 1000:.1f} ms")
    # The stimulus: chatter inside the debounce window (bounce_ms, the default here), the case
    # the filter promises one turn for. Its 1 ms gaps are sleeps, which a busy machine stretches
    # (about 5 ms when idle); what matters is that the edges stayed within the window.
    window = ButtonSection().bounce_ms / 1000
    assert press_span < window and release_span < window, "the chatter outlasted the window"
    assert_one_answered_turn(b, released)
    assert status["state"] == "idle" and status["turns"] == 1, status


def _cut_earcons(out: np.ndarray, start: int) -> tuple[np.ndarray, list[int]]:
    """`out` with every exact copy of the listening earcon from `start` on replaced by silence,
    and where they were (the speaker plays it at volume 100: a bit-exact copy)."""
    out = out.copy()
    earcon = EARCONS.listening.astype(np.float64)
    n = len(earcon)
    found: list[int] = []
    while True:
        segment = out[start:]
        if len(segment) < n or correlates(segment, earcon) < 0.99:
            return out, found
        corr = np.correlate(segment, earcon, mode="valid")
        at = start + int(np.argmax(corr))
        assert np.array_equal(out[at : at + n], earcon), "earcon not played unmixed"
        out[at : at + n] = 0
        found.append(at)


def test_a_50_ms_tap_during_playback_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seconds = 3.0
    with box(tmp_path, monkeypatch, caplog, vowel(seconds), sim_flags=("--pace", "1.0")) as b:
        wait_to_press(b.wall0)
        b.press()
        sleep_until(b.wall0 + LEAD_S + seconds + 0.3)
        b.release()
        b.wait_state("speaking")
        time.sleep(1.0)  # a second into the answer
        tapped = b.press()
        # A control request queues behind the press on the conversation thread, so its reply
        # comes once the press was acted on (the speaker flushed): the output timeline's length
        # then marks that moment on the daemon's own clock (tests/test_turn_wav.py).
        b.ctl("status")
        at_ack = timeline_samples(tmp_path / "spk.wav")
        time.sleep(max(0.0, tapped + 0.050 - time.time()))
        b.release()
        time.sleep(1.0)  # the timeline runs on: it must stay silent
        status = b.ctl("status")
        turns = b.turns()
    assert [t["OMNID_OUTCOME"] for t in turns] == ["cancelled"], turns
    assert status["state"] == "idle" and status["turns"] == 1, status  # the tap is no turn
    k = kinds(received(b.sim))
    assert k.count("input_audio_buffer.commit") == 1, "the tap became a turn"
    assert k.count("response.create") == 1
    cancels = [r for r in received(b.sim) if r["event"]["type"] == "response.cancel"]
    assert len(cancels) == 1 and cancels[0]["t"] >= tapped

    out = read_wav(tmp_path / "spk.wav")
    tap_i = int((tapped - b.wall0) * OUT_RATE)
    assert np.abs(out[tap_i - OUT_RATE // 5 : tap_i]).max() > LOUD, "nothing played at the tap"
    # The press of the tap plays the listening earcon (the box cannot know yet that it is a
    # tap); what must stop is the answer.
    answer, earcons = _cut_earcons(out, tap_i - OUT_RATE // 2)
    loud = np.nonzero(np.abs(answer) > LOUD)[0]
    # On the wav timeline a block spans the 20 ms before the tick that renders it, so the end
    # of the last answer block is when it was rendered.
    last_sound = b.wall0 + (loud[-1] + 1) / OUT_RATE
    lag_ms = (last_sound - tapped) * 1000
    earcon_ms = [round((i / OUT_RATE + b.wall0 - tapped) * 1000, 1) for i in earcons]
    print(
        f"\ntap: the last answer block was rendered {lag_ms:+.1f} ms from the tap's press edge; "
        f"listening earcon from {earcon_ms} ms"
    )
    assert loud[-1] < at_ack + SPK_BLOCK, "answer audio more than one block after the tap"
    assert not np.abs(answer[tap_i + OUT_RATE // 5 :]).max() > LOUD


# -- 2. the LED follows the conversation states --------------------------------------------


def level_at(history: list[tuple[float, float]], grid: np.ndarray) -> np.ndarray:
    times = np.array([t for t, _ in history])
    levels = np.array([v for _, v in history])
    return levels[np.searchsorted(times, grid, side="right") - 1]


def expected_level(pattern: Pattern, since: np.ndarray, pwm: bool) -> np.ndarray:
    """What `pattern` shows `since` seconds after it started (omnid.led's reading of it)."""
    steps = pattern.steps
    if pattern.steady:
        return np.full(len(since), steps[0][0])
    if pattern.pulse and not pwm:
        return np.ones(len(since))
    phase = np.mod(since, pattern.period_s)
    if pattern.pulse:
        up, down = steps[0][1], steps[1][1]
        return np.where(phase < up, phase / up, 1.0 - (phase - up) / down) * steps[0][0]
    ends = np.cumsum([s for _, s in steps])
    index = np.minimum(np.searchsorted(ends, phase, side="right"), len(steps) - 1)
    return np.array([level for level, _ in steps])[index]


def pattern_error(
    history: list[tuple[float, float]], pattern: Pattern, start: float, end: float, pwm: bool
) -> float:
    """Mean |LED level − pattern| over [start + 0.1, end − 0.1], the pattern's phase fitted
    within the state poller's resolution (it starts when show() runs, at the state change)."""
    grid = np.arange(start + 0.1, end - 0.1, 0.005)
    seen = level_at(history, grid)
    return min(
        float(np.mean(np.abs(seen - expected_level(pattern, grid - (start + lag), pwm))))
        for lag in np.arange(-0.15, 0.05, 0.005)
    )


def state_spans(samples: list[tuple[float, str]]) -> dict[str, list[tuple[float, float]]]:
    spans: dict[str, list[tuple[float, float]]] = {}
    for (t, state), (t_next, _) in pairwise(samples):
        runs = spans.setdefault(state, [])
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], t_next)
        else:
            runs.append((t, t_next))
    return spans


def test_the_led_follows_the_conversation_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seconds = 2.5
    led_section = f'[led]\nenabled = true\npin = "{LED_PIN}"\n'
    with box(
        tmp_path,
        monkeypatch,
        caplog,
        vowel(seconds),
        extra=led_section,
        sim_flags=("--pace", "1.0", "--first-audio-ms", "2600"),  # thinking long enough to see
        pin_class=MockPWMPin,
    ) as b:
        led = b.daemon.led
        assert led is not None and led.pwm
        pin = b.factory.pin(LED_PIN)
        samples: list[tuple[float, str]] = []
        stop = threading.Event()

        def poll() -> None:  # the conversation's state as `omnid ctl status` reports it
            while not stop.is_set():
                samples.append((time.monotonic(), b.ctl("status")["state"]))
                time.sleep(0.02)

        before = time.monotonic()
        pin.clear_states()
        t_ref = (before + time.monotonic()) / 2
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        wait_to_press(b.wall0)
        b.press()
        sleep_until(b.wall0 + LEAD_S + seconds + 0.3)
        b.release()
        b.wait_record("turn", timeout=20)
        time.sleep(2.5)  # idle longer than the heartbeat's 2 s period: off is not a heartbeat
        stop.set()
        poller.join()
        states = list(pin.states)
    assert b.turns()[0]["OMNID_OUTCOME"] == "answered"

    # pin.states: (seconds since the previous change, new level) → (monotonic time, level)
    history, t = [], t_ref
    for s in states:
        t += s.timestamp
        history.append((t, float(s.state)))
    spans = state_spans(samples)
    distinct = {p: name for name, p in reversed(list(PATTERNS.items()))}  # offline == connecting
    report = []
    for state in ("idle", "listening", "thinking", "speaking"):
        start, end = max(spans[state], key=lambda span: span[1] - span[0])
        assert end - start >= 0.9, (state, spans)
        errors = {
            name: pattern_error(history, p, start, end, led.pwm) for p, name in distinct.items()
        }
        others = {n: e for n, e in errors.items() if PATTERNS[n] != PATTERNS[state]}
        best_other = min(others, key=lambda name: others[name])
        report.append(
            f"{state:9} {end - start:4.1f} s: error {errors[state]:.3f}; next best "
            f"{best_other} {others[best_other]:.3f} ({PATTERNS[state].meaning})"
        )
        assert errors[state] <= 0.1, (state, errors)
        assert errors[state] < others[best_other], (state, errors)
    print("\nLED per state:\n  " + "\n  ".join(report))


# -- 3. the listening earcon is heard, never sent ------------------------------------------


def test_no_earcon_on_the_wire_while_the_speaker_plays_it(tmp_path: Path) -> None:
    key = make_key()
    rig = AlsaFifoRig(tmp_path, feedback_gain=0.5).start()
    sim = Simulator(tmp_path, key)
    config = write_config(
        tmp_path,
        sim.url,
        key,
        f'[audio]\ninput_device = "{rig.mic_device}"\noutput_device = "{rig.spk_device}"\n'
        'echo_guard = "off"\n',
    )
    daemon = DaemonProcess(tmp_path, config, key, **rig.env, STATE_DIRECTORY=str(tmp_path / "s"))
    listening = EARCONS.listening
    earcon_16k = np.rint(soxr.resample(listening.astype(np.float64), OUT_RATE, IN_RATE))
    pause = np.zeros(int(0.5 * IN_RATE), np.int16)
    try:
        daemon.wait_ready()
        assert rig.wait_mic_reader(10), "the daemon's microphone stream is not reading"
        # Turn 1: the earcon plays at the press and reaches the microphone through the "room".
        pressed = time.time()
        assert daemon.ctl("press")["state"] == "listening"
        utterance = np.concatenate([pause, speech(1.5)])
        end = rig.say(utterance) + len(utterance) / IN_RATE
        sleep_until(end + 0.3)
        daemon.ctl("release")
        daemon.wait_record("turn", timeout=20)
        time.sleep(0.5)
        heard_before_control = len(rig.speaker_output())
        # Turn 2, the control: the test itself plays the earcon into the microphone while the
        # button is held (after the mask), as a leak would put it there.
        assert daemon.ctl("press")["state"] == "listening"
        control = np.concatenate([pause, earcon_16k.astype(np.int16), pause, speech(1.0)])
        end = rig.say(control) + len(control) / IN_RATE
        sleep_until(end + 0.3)
        daemon.ctl("release")
        turns = daemon.wait_record("turn", count=2, timeout=20)
    finally:
        code = daemon.stop()  # the streams close before the rig stops (alsa_rig docstring)
        rig.stop()
        sim.stop()
    assert code == 0
    assert [t["OMNID_OUTCOME"] for t in turns] == ["answered", "answered"]
    wire = sent_audio(sim)
    assert len(wire) == 2
    spk = rig.speaker_output()[:heard_before_control]
    in_speaker = correlates(spk, listening)
    on_wire = correlates(wire[0], listening, rate=IN_RATE)
    control_on_wire = correlates(wire[1], listening, rate=IN_RATE)
    at = int(np.argmax(np.correlate(spk.astype(np.float64), listening.astype(np.float64))))
    sounded = rig.speaker_time(at) - pressed
    head = wire[0][: int(0.45 * IN_RATE)]  # before the speech: only the earcon's echo can be here
    print(
        f"\nlistening earcon: speaker {in_speaker:.3f}, wire {on_wire:.3f}, control run on "
        f"the wire {control_on_wire:.3f}; it sounded {sounded * 1000:.0f}–"
        f"{(sounded + len(listening) / OUT_RATE) * 1000:.0f} ms after the press request; "
        f"wire head max |x| {np.abs(head).max()}"
    )
    assert in_speaker >= 0.9
    assert control_on_wire >= 0.8  # the detector finds an earcon that does get onto the wire
    assert on_wire < 0.5
    # Stricter than the correlation, which a leaked tail of the earcon stays under: before the
    # speech the room held nothing but the earcon's echo, so the wire must be silent there.
    assert np.abs(head).max() <= LOUD, "the earcon's echo outlived its mask"


# -- 4. no GPIO: one error, and the control socket still drives turns ------------------------


def test_an_unavailable_button_pin_leaves_the_daemon_running(tmp_path: Path) -> None:
    if os.environ.get("GPIOZERO_PIN_FACTORY") or Path("/dev/gpiochip0").exists():
        pytest.skip("this machine may have GPIO: the pin could open")
    key = make_key()
    lead = 2.5  # `omnid ctl` from a shell takes a moment to start
    write_mic(tmp_path / "mic.wav", speech(1.0), lead_s=lead)
    sim = Simulator(tmp_path, key)
    config = write_config(
        tmp_path,
        sim.url,
        key,
        wav_devices(tmp_path) + f'[button]\nenabled = true\npin = "{BUTTON_PIN}"\n',
    )
    daemon = DaemonProcess(tmp_path, config, key, STATE_DIRECTORY=str(tmp_path / "state"))
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        code, pressed = omnid_ctl(daemon.socket, "press")
        assert code == 0 and '"state": "listening"' in pressed, pressed
        sleep_until(wall0 + lead + 1.0 + 0.3)
        code, released = omnid_ctl(daemon.socket, "release")
        assert code == 0, released
        turn = daemon.wait_record("turn", timeout=20)[0]
        alive = daemon.proc.poll() is None
        status = daemon.ctl("status")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    assert alive and status["connected"] and status["state"] == "idle"
    assert turn["OMNID_OUTCOME"] == "answered"
    errors = [line for line in daemon.output().splitlines() if line.startswith("ERROR")]
    print("\n" + "\n".join(errors))
    assert len(errors) == 1, errors
    assert BUTTON_PIN in errors[0] and "button" in errors[0]
    assert "Traceback" not in daemon.output()


# -- 5. volume: the next block, and after a restart ----------------------------------------


def test_volume_applies_to_the_next_block_and_survives_a_restart(tmp_path: Path) -> None:
    key = make_key()
    state = tmp_path / "state"
    seconds, lead = 3.0, 2.5  # `omnid run` takes a moment to start and connect
    write_mic(tmp_path / "mic.wav", vowel(seconds), lead_s=lead)
    write_mic(tmp_path / "mic2.wav", vowel(1.5), lead_s=lead)
    sim = Simulator(tmp_path, key)
    config = write_config(tmp_path, sim.url, key, wav_devices(tmp_path))
    daemon = DaemonProcess(tmp_path, config, key, STATE_DIRECTORY=str(state))
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        assert daemon.ctl("volume") == {"ok": True, "state": "idle", "volume": 100}
        wait_to_press(wall0, lead)
        daemon.ctl("press")
        sleep_until(wall0 + lead + seconds + 0.3)
        daemon.ctl("release")
        deadline = time.time() + 10
        while daemon.ctl("status")["state"] != "speaking":
            assert time.time() < deadline
            time.sleep(0.01)
        time.sleep(1.0)  # well into the continuous answer
        asked = time.time()
        # The output timeline's length just before the request and just after its reply, on the
        # daemon's own clock (tests/test_turn_wav.py), in blocks.
        asked_block = timeline_samples(tmp_path / "spk.wav") // SPK_BLOCK
        reply = daemon.ctl("volume 50")
        answered = time.time()
        answered_block = timeline_samples(tmp_path / "spk.wav") // SPK_BLOCK
        daemon.wait_record("turn", timeout=20)
    finally:
        assert daemon.stop() == 0
    assert reply == {"ok": True, "state": "speaking", "volume": 50}, reply

    rms = block_rms(read_wav(tmp_path / "spk.wav"))
    first = int((asked - wall0) / BLOCK_S) - 25  # half a second before the request
    full = float(np.median(rms[first : first + 20]))
    assert full > 1000, "the answer was not playing before the request"
    step = first + int(np.argmax(rms[first:] < 0.65 * full))
    assert step > first + 20, "the volume changed before it was asked for"
    after = float(np.median(rms[step + 1 : step + 21]))
    # The first quieter block: on the wav timeline it spans the 20 ms before the tick that
    # rendered it, so it was rendered at `rendered`.
    rendered = wall0 + (step + 1) * BLOCK_S
    print(
        f"\nvolume 50: the first quieter block was rendered {(rendered - asked) * 1000:+.1f} ms "
        f"from the request, {(rendered - answered) * 1000:+.1f} ms from the reply "
        f"(`ctl volume 50` took {(answered - asked) * 1000:.1f} ms); "
        f"gain {after / full:.4f} (to_gain(50) = {to_gain(50):.4f})"
    )
    # Every block already in the file when the request went out played at full volume; the one
    # a tick may have been rendering when the reply came is the last that may still be loud.
    assert asked_block <= step <= answered_block + 1, "not the next block"
    assert rms[step - 1] == pytest.approx(full, rel=0.02), "the step is not one clean block edge"
    assert rms[step] == pytest.approx(after, rel=0.02), "the step is not one clean block edge"
    assert after / full == pytest.approx(to_gain(50), rel=0.02)

    # Restart: the volume is remembered and applied to the next answer.
    config = write_config(
        tmp_path, sim.url, key, wav_devices(tmp_path, mic="mic2.wav", spk="spk2.wav")
    )
    daemon = DaemonProcess(tmp_path, config, key, STATE_DIRECTORY=str(state))
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        remembered = daemon.ctl("volume")
        wait_to_press(wall0, lead)
        daemon.ctl("press")
        sleep_until(wall0 + lead + 1.5 + 0.3)
        daemon.ctl("release")
        turn = daemon.wait_record("turn", timeout=20)[0]
        up, down = daemon.ctl("volume up"), daemon.ctl("volume down")
        bad = [daemon.ctl(f"volume {words}") for words in ("loud", "101", "-5", "up up")]
        unchanged = daemon.ctl("volume")
        cli_code, cli_out = omnid_ctl(daemon.socket, "volume")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    assert remembered == {"ok": True, "state": "idle", "volume": 50}
    assert turn["OMNID_OUTCOME"] == "answered"
    rms = block_rms(read_wav(tmp_path / "spk2.wav"))
    voiced = rms[rms > 0.5 * rms.max()]
    print(f"after the restart: answer level {np.median(voiced) / full:.4f} of full volume")
    assert float(np.median(voiced)) / full == pytest.approx(to_gain(50), rel=0.03)
    assert (up["volume"], down["volume"]) == (60, 50)
    for answer in bad:
        assert answer["ok"] is False and "volume" in answer["error"], answer
    assert unchanged["volume"] == 50
    assert '"percent": 50' in (state / "volume.json").read_text()
    # What an operator types: `omnid ctl volume` (README, "Volume").
    assert cli_code == 0 and '"volume": 50' in cli_out, cli_out
