"""What the README promises when the network or the service gets in the way, end to end.

`omnid run` talks to `omnid simulate` over a real WebSocket on 127.0.0.1, both as processes, with
`wav:` audio devices (the speaker file is the play timeline). Faults come from the simulator's
flags — refusals (`--refuse-status 429`, `--close-1007-on-response`), abrupt drops
(`--drop-after-events`), a stall that keeps the socket open (`--stall-after-events`), idle closes
— or from no service at all (a free port nobody listens on). Every assertion is on something a
user or an operator would notice: the simulator's record of the wire, the daemon's log lines and
journal records, its STATUS, its exit status, what came out of the speaker.

Timing figures are printed (`pytest -s`); the bounds asserted on them are deliberately loose, as
these tests share two cores with whatever else runs.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import soxr

from omnid.earcons import Earcons, correlates
from tests.harness import (
    Daemon,
    NotifySocket,
    Simulator,
    make_key,
    wav_devices,
    write_config,
    write_wav,
)
from tests.test_handsfree import VAD, timeline
from tests.test_lifecycle import conn
from tests.test_turn_wav import (
    BLOCK_S,
    IN_RATE,
    OUT_RATE,
    best_correlation,
    locate,
    read_wav,
    speech,
)

EARCONS = Earcons.generate()
MINUTE_S = 59.0  # "once a minute", less a second for scheduling on a loaded machine
SLACK_S = 0.005  # how far a press or release may be off its block boundary, as in test_turn_wav


class StampedDaemon(Daemon):
    """`omnid run` whose output lines are stamped with the wall time they arrived: stderr lines
    carry no time of their own, and "at most once a minute" is about when lines appear."""

    def __init__(self, tmp: Path, config: Path, key: str, **env: str) -> None:
        self.stamps: list[float] = []
        super().__init__(tmp, config, key, **env)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self.stamps.append(time.time())
                self._cond.notify_all()

    def stamped(self, predicate: Callable[[str], bool]) -> list[tuple[float, str]]:
        with self._cond:
            return [(t, s) for t, s in zip(self.stamps, self.lines, strict=True) if predicate(s)]


def free_port() -> int:
    """A loopback port nobody listens on (the kernel's pick; free again once closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def url_of(port: int) -> str:
    return f"ws://127.0.0.1:{port}/api-ws/v1/realtime"


def sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def noise(seconds: float, seed: int) -> np.ndarray:
    """Unique noise: any stretch of it can be found again on the microphone timeline."""
    rng = np.random.default_rng(seed)
    return rng.integers(-3000, 3001, int(seconds * IN_RATE)).astype(np.int16)


class Held(NamedTuple):
    pressed: float  # wall time, the middle of the press request's round trip
    released: float  # likewise for the release
    slack_s: float  # half the longer round trip: how far either may be off, on a busy machine


def ctl_at(daemon: Daemon, command: str) -> tuple[float, float]:
    """Send a control command; (the middle of its round trip, half the round trip)."""
    before = time.time()
    assert daemon.ctl(command)["ok"]
    after = time.time()
    return (before + after) / 2, (after - before) / 2


def hold(daemon: Daemon, seconds: float) -> Held:
    """Press, hold, release through the control socket, as `omnid ctl` does."""
    pressed, press_slack = ctl_at(daemon, "press")
    sleep_until(pressed + seconds)
    released, release_slack = ctl_at(daemon, "release")
    return Held(pressed, released, max(press_slack, release_slack))


def sessions(sim: Simulator) -> list[str]:
    """The simulator's session ids, in the order their connections opened."""
    return [c["session"] for c in conn(sim, "open")]


def wire_of(sim: Simulator, session: str, direction: str) -> list[dict[str, Any]]:
    return [r for r in sim.wire(direction) if r["session"] == session]


def kinds(records: list[dict[str, Any]]) -> list[str]:
    return [r["event"]["type"] for r in records]


def appended(records: list[dict[str, Any]]) -> np.ndarray:
    """The audio of every `input_audio_buffer.append` among `records`, in order."""
    chunks = [
        np.frombuffer(base64.b64decode(r["event"]["audio"]), dtype="<i2")
        for r in records
        if r["event"]["type"] == "input_audio_buffer.append"
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def assert_held_stretch(
    mic: np.ndarray, sent: np.ndarray, held: Held, wall0: float
) -> tuple[float, float]:
    """`sent` is one unbroken stretch of `mic` from the press to the release, to within the
    20 ms block in progress at each (tests/test_turn_wav.py's bound, plus the control round
    trip's uncertainty). Returns its bounds on the microphone timeline, s."""
    assert len(sent) >= 64, "no audio was sent"
    start = locate(mic, sent[:64])
    end = locate(mic, sent[-64:]) + 64
    assert np.array_equal(mic[start:end], sent), "the sent audio is not one stretch of the mic"
    pressed_s, released_s = held.pressed - wall0, held.released - wall0
    block, slack = int(BLOCK_S * IN_RATE), int((SLACK_S + held.slack_s) * IN_RATE)
    assert pressed_s * IN_RATE - block - slack <= start <= pressed_s * IN_RATE + slack, (
        f"sent from {start / IN_RATE:.3f} s, pressed at {pressed_s:.3f} s"
    )
    assert released_s * IN_RATE - block - slack <= end <= released_s * IN_RATE + slack, (
        f"sent until {end / IN_RATE:.3f} s, released at {released_s:.3f} s"
    )
    return start / IN_RATE, end / IN_RATE


# ---------------------------------------------------------------------------------------------
# Refusals (HTTP 429, close 1007) and a service that is not there at all: three daemons at once
# ---------------------------------------------------------------------------------------------


@dataclass
class Refusals:
    """What three concurrently run daemons did over a minute and more of trouble."""

    quota_sim: Simulator
    quota: StampedDaemon
    quota_notify: list[str]
    quota_press: float
    quota_alive: bool
    quota_exit: int
    tier_sim: Simulator
    tier: StampedDaemon
    tier_notify: list[str]
    tier_presses: list[float]
    tier_alive: bool
    tier_exit: int
    dead: StampedDaemon
    dead_notify: list[str]
    dead_started: float
    dead_alive: bool
    dead_exit: int
    observed_s: float


def _notified_daemon(
    tmp: Path, url: str, key: str, started: list[Any]
) -> tuple[NotifySocket, StampedDaemon]:
    """A daemon on `tmp`'s `wav:` devices, telling its own notify socket; both join `started`
    (stopped in order at the end, whatever happens)."""
    notify = NotifySocket(tmp / "notify.sock")
    started.append(notify)
    daemon = StampedDaemon(
        tmp,
        write_config(tmp, url, key, wav_devices(tmp)),
        key,
        NOTIFY_SOCKET=str(tmp / "notify.sock"),
    )
    started.append(daemon)
    return notify, daemon


def _status_lines(notify: NotifySocket) -> list[str]:
    return [m.removeprefix("STATUS=") for _, m in notify.messages if m.startswith("STATUS=")]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refusals]:
    """Three daemons side by side, so that one minute of waiting serves three claims:

    - `quota`: the service refuses every upgrade with HTTP 429; a press comes 8 s after;
    - `tier`: the service accepts, then closes with 1007 at the first `response.create` (the
      exhausted free tier); a turn triggers it, and a second press comes 10 s after the close;
    - `dead`: nothing listens on the configured port at all.

    It runs until each refusal has had 66 s to show its second attempt and the dead-port daemon
    has had a failure a minute after its first (the summary is due then; with the 30 s backoff
    cap one comes within 90 s).
    """
    key = make_key()
    started: list[Any] = []
    try:
        # -- the service refusing with 429 at the handshake
        qtmp = tmp_path_factory.mktemp("quota")
        quota_sim = Simulator(qtmp, key, "--refuse-status", "429")
        started.append(quota_sim)
        timeline(qtmp / "mic.wav", [(0.0, speech(2.0)), (120.0, None)])
        quota_notify, quota = _notified_daemon(qtmp, quota_sim.url, key, started)

        # -- the service closing with 1007 at the first response
        ftmp = tmp_path_factory.mktemp("tier")
        tier_sim = Simulator(ftmp, key, "--close-1007-on-response")
        started.append(tier_sim)
        write_wav(ftmp / "mic.wav", speech(120.0))
        tier_notify, tier = _notified_daemon(ftmp, tier_sim.url, key, started)

        # -- no service at all
        dtmp = tmp_path_factory.mktemp("dead")
        write_wav(dtmp / "mic.wav", np.zeros(IN_RATE, np.int16))
        dead_started = time.time()
        dead_notify, dead = _notified_daemon(dtmp, url_of(free_port()), key, started)

        tier.wait_ready()
        tier_presses = [hold(tier, 1.5).pressed]  # commit + response.create → 1007
        deadline = time.time() + 15
        while not [c for c in conn(tier_sim, "close") if c.get("by") == "close-1007"]:
            assert time.time() < deadline, "no 1007 close:\n" + tier.output()
            time.sleep(0.1)
        closed_t = next(c for c in conn(tier_sim, "close") if c.get("by") == "close-1007")["t"]

        deadline = time.time() + 20
        while not conn(quota_sim, "refused"):
            assert time.time() < deadline, "no attempt at all:\n" + quota.output()
            time.sleep(0.1)
        refused_t = conn(quota_sim, "refused")[0]["t"]
        sleep_until(refused_t + 8.0)
        quota_press = hold(quota, 1.5).pressed  # must not hurry the retry
        sleep_until(closed_t + 10.0)
        tier_presses.append(hold(tier, 1.5).pressed)  # nor here

        first_warning = dead.wait_for(lambda s: "offline:" in s, timeout=10)
        assert first_warning
        dead_first_t = dead.stamped(lambda s: "offline:" in s)[0][0]
        end = max(refused_t + 66.0, closed_t + 66.0)
        summary_due = dead_first_t + 95.0
        while time.time() < max(end, summary_due):
            if time.time() >= end and dead.stamped(lambda s: "still offline after" in s):
                break
            time.sleep(0.25)
        time.sleep(1.0)
        alive = [d.proc.poll() is None for d in (quota, tier, dead)]
        observed_s = time.time() - refused_t
        exits = [d.stop() for d in (quota, tier, dead)]
        result = Refusals(
            quota_sim=quota_sim,
            quota=quota,
            quota_notify=_status_lines(quota_notify),
            quota_press=quota_press,
            quota_alive=alive[0],
            quota_exit=exits[0],
            tier_sim=tier_sim,
            tier=tier,
            tier_notify=_status_lines(tier_notify),
            tier_presses=tier_presses,
            tier_alive=alive[1],
            tier_exit=exits[1],
            dead=dead,
            dead_notify=_status_lines(dead_notify),
            dead_started=dead_started,
            dead_alive=alive[2],
            dead_exit=exits[2],
            observed_s=observed_s,
        )
    finally:
        for part in reversed(started):
            if isinstance(part, NotifySocket):
                part.close()
            else:
                part.stop()
    yield result


def _retry_countdown(statuses: list[str], needle: str) -> list[int]:
    """The "retrying in N s" figures of the STATUS lines that name `needle`."""
    found = []
    for line in statuses:
        if line.startswith("offline, retrying in ") and needle in line:
            found.append(int(line.removeprefix("offline, retrying in ").split(" ", 1)[0]))
    return found


@pytest.mark.timeout(240)
def test_a_429_refusal_keeps_the_daemon_up_and_is_retried_once_a_minute(
    refusals: Refusals,
) -> None:
    """HTTP 429 at the handshake: the daemon stays up, retries no faster than once a minute — a
    press does not hurry it — and says so in the log and in STATUS (README, "Refused key or
    quota")."""
    r = refusals
    tried = [c["t"] for c in conn(r.quota_sim, "refused")]  # every attempt, as the service saw
    gaps = [b - a for a, b in pairwise(tried)]
    print(
        f"\nobserved {r.observed_s:.1f} s from the first attempt; 429: {len(tried)} attempts, gaps "
        f"{', '.join(f'{g:.2f}' for g in gaps)} s; press {r.quota_press - tried[0]:.1f} s "
        "after the first"
    )
    assert r.quota_alive and r.quota_exit == 0
    assert len(tried) >= 2, "no second attempt within 66 s of the first"
    assert all(g >= MINUTE_S for g in gaps), f"429 retried faster than once a minute: {gaps}"
    assert all(g <= 75.0 for g in gaps), f"429 retried much later than a minute: {gaps}"
    assert tried[0] < r.quota_press < tried[1], "the press did not come during the refusal"
    warned = r.quota.stamped(lambda s: "offline:" in s and "HTTP 429" in s)
    assert len(warned) == len(tried), r.quota.output()
    assert all("WARNING" in s and "retrying in 60" in s for _, s in warned), warned
    assert "quota or rate limit refused" in warned[0][1]
    countdown = _retry_countdown(r.quota_notify, "HTTP 429")
    print(f"429 STATUS: {next(s for s in r.quota_notify if 'HTTP 429' in s)!r}")
    assert countdown and max(countdown) >= 55 and min(countdown) <= 5, r.quota_notify[-10:]


def _after_1007(r: Refusals) -> tuple[float, list[float]]:
    """When the service first closed with 1007, and how long after it each later connection
    was opened."""
    closes = [c for c in conn(r.tier_sim, "close") if c.get("by") == "close-1007"]
    first = closes[0]["t"]
    waits = [c["t"] - first for c in conn(r.tier_sim, "open") if c["t"] > first]
    turns = [t["OMNID_OUTCOME"] for t in r.tier.records("turn")]
    print(
        f"\n1007: {len(conn(r.tier_sim, 'open'))} connections, {len(closes)} closed with 1007; "
        f"later connections {', '.join(f'{w:.2f}' for w in waits)} s after the first close; "
        f"second press {r.tier_presses[1] - first:.1f} s after it; turns {turns}"
    )
    return first, waits


@pytest.mark.timeout(240)
def test_a_1007_close_keeps_the_daemon_up_and_says_so(refusals: Refusals) -> None:
    """Close 1007 at the first response (an exhausted free tier): the daemon stays up, and the
    log and STATUS say it is offline and retrying in a minute, and why."""
    r = refusals
    _after_1007(r)
    assert r.tier_alive and r.tier_exit == 0
    warned = r.tier.stamped(lambda s: "offline:" in s and "1007" in s)
    assert warned and all("WARNING" in s and "retrying in 60" in s for _, s in warned), warned
    assert "free tier" in warned[0][1]
    status = next(s for s in r.tier_notify if "1007" in s)
    print(f"1007 STATUS: {status!r}")
    # (While a turn waits for its answer STATUS shows that turn's state, so the countdown may
    # first appear part-way through the minute.)
    countdown = _retry_countdown(r.tier_notify, "1007")
    assert countdown and max(countdown) <= 60, r.tier_notify[-10:]


@pytest.mark.timeout(240)
def test_a_1007_close_is_retried_no_sooner_than_a_minute(refusals: Refusals) -> None:
    """After a 1007 close, neither the turn that was waiting for its answer nor a press 10 s
    later may reconnect: the next connection comes a minute after the close (README: "retries
    once a minute — a press does not hurry it"), and STATUS counts the minute down."""
    r = refusals
    closed, waits = _after_1007(r)
    assert waits, "no new connection within 66 s of the 1007 close"
    assert waits[0] >= MINUTE_S, f"reconnected {waits[0]:.2f} s after a 1007 close"
    assert waits[0] <= 75.0
    assert closed < r.tier_presses[1] < closed + waits[0]
    countdown = _retry_countdown(r.tier_notify, "1007")
    assert min(countdown) <= 5, r.tier_notify[-10:]


@pytest.mark.timeout(240)
def test_offline_warns_once_then_summarises_at_most_once_a_minute(refusals: Refusals) -> None:
    """A daemon pointed at a port nobody listens on: the first failure is one WARNING, after
    that a `still offline after N attempts` summary at most once a minute (README, "Reconnect"):
    an outage of hours must not fill an SD card's journal with a line per attempt."""
    r = refusals
    first = r.dead.stamped(lambda s: "offline:" in s)
    summaries = r.dead.stamped(lambda s: "still offline after" in s)
    t0 = first[0][0] if first else r.dead_started
    counts = [int(s.split("still offline after ", 1)[1].split(" ", 1)[0]) for _, s in summaries]
    print(
        f"\ndead port, {r.observed_s:.1f} s: {len(first)} 'offline:' warning(s) "
        f"{first[0][0] - r.dead_started:.2f} s after start; summaries at "
        f"{', '.join(f'{t - t0:.1f}' for t, _ in summaries)} s after it, attempts {counts}"
    )
    if summaries:
        print(summaries[0][1])
    assert r.dead_alive and r.dead_exit == 0
    assert len(first) == 1, [s for _, s in first]
    assert "WARNING" in first[0][1] and "cannot connect to 127.0.0.1:" in first[0][1]
    assert first[0][0] - r.dead_started < 10.0  # the first failure is reported at once
    assert summaries, "no summary within 95 s of the first warning"
    times = [t0] + [t for t, _ in summaries]
    gaps = [b - a for a, b in pairwise(times)]
    assert all(g >= MINUTE_S for g in gaps), f"summaries closer than a minute: {gaps}"
    assert all("WARNING" in s for _, s in summaries)
    assert counts == sorted(set(counts)) and counts[0] >= 2
    # Nothing else about the outage reaches the log above debug: no line per attempt.
    noisy = [
        s
        for s in r.dead.output().splitlines()
        if ("WARNING" in s or "ERROR" in s) and "offline" not in s
    ]
    assert not noisy, noisy
    countdown = _retry_countdown(r.dead_notify, "cannot connect")
    assert countdown, r.dead_notify[-5:]


# ---------------------------------------------------------------------------------------------
# A connection that stalls: no error, no close, just nothing
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_a_stalled_connection_is_declared_dead_after_30_s_and_replaced(tmp_path: Path) -> None:
    """The service stops reading and sending after `session.updated` but keeps the socket open
    (pings go unanswered). The daemon, idle in push-to-talk mode, must declare the link dead
    about 30 s after the last frame it received, say why, reconnect, and answer the next turn
    (README, "Reconnect": "30 s without any frame counts as a dead connection")."""
    key = make_key()
    mic = speech(150.0)
    write_wav(tmp_path / "mic.wav", mic)
    sim = Simulator(tmp_path, key, "--stall-after-events", "2", "--faulty-connections", "1")
    config = write_config(tmp_path, sim.url, key, wav_devices(tmp_path))
    daemon = StampedDaemon(tmp_path, config, key)
    try:
        daemon.wait_ready()
        deadline = time.time() + 75
        while len(conn(sim, "open")) < 2 and time.time() < deadline:
            time.sleep(0.2)
        daemon.wait_ready()
        stall = conn(sim, "stall")
        reopened = conn(sim, "open")
        held = hold(daemon, 1.5)
        turn = daemon.wait_record("turn", timeout=20)[0]
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        sim.stop()
    assert len(stall) == 1 and len(reopened) == 2, (stall, reopened)
    first = reopened[0]["session"]
    last_frame = max(r["t"] for r in wire_of(sim, first, "send"))
    assert stall[0]["t"] >= last_frame
    closed = daemon.stamped(lambda s: "OMNID_EVENT=session_close" in s)
    warned = daemon.stamped(lambda s: "offline:" in s)
    dead_after = closed[0][0] - last_frame
    reconnect_after = reopened[1]["t"] - closed[0][0]
    print(
        f"\nlast frame from the service → link declared dead: {dead_after:.2f} s; "
        f"→ new connection {reconnect_after:.2f} s later; turn {turn['OMNID_OUTCOME']}, "
        f"first audio {turn['OMNID_FIRST_AUDIO_MS']} ms"
    )
    print(warned[0][1] if warned else "(no warning)")
    assert alive and code == 0
    assert 28.0 <= dead_after <= 45.0, f"declared dead {dead_after:.1f} s after the last frame"
    assert "dead connection" in closed[0][1] and "no data for 30 s" in closed[0][1], closed
    assert warned and "dead connection" in warned[0][1] and "WARNING" in warned[0][1]
    assert reconnect_after < 5.0
    # The stalled session heard nothing after the stall (it was not reading): the pings the
    # daemon sent meanwhile went unanswered, as on a dead path.
    assert not [r for r in wire_of(sim, first, "recv") if r["t"] > stall[0]["t"]]
    # The next turn goes to the new session and is answered.
    second = reopened[1]["session"]
    assert turn["OMNID_OUTCOME"] == "answered" and turn["OMNID_SESSION"] == second
    received = kinds(wire_of(sim, second, "recv"))
    assert "input_audio_buffer.commit" in received and "response.create" in received
    assert "response.done" in kinds(wire_of(sim, second, "send"))
    assert held.pressed > reopened[1]["t"]


# ---------------------------------------------------------------------------------------------
# keep_warm = false: an idle-closed session is reopened at the next press, not before
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_without_keep_warm_an_idle_close_waits_for_the_next_press(tmp_path: Path) -> None:
    """`session.keep_warm = false`: after the service's idle close the daemon stays off the
    network; the next press reconnects, the audio held while connecting is sent once the session
    is ready, and the turn is answered (README, "Idle close" and "Nothing said is lost")."""
    key = make_key()
    mic = noise(60.0, seed=3)
    write_wav(tmp_path / "mic.wav", mic)
    sim = Simulator(tmp_path, key, "--idle-timeout-s", "3")
    config = write_config(
        tmp_path,
        sim.url,
        key,
        "[session]\nkeep_warm = false\n" + wav_devices(tmp_path, "earcons = false"),
    )
    daemon = StampedDaemon(tmp_path, config, key)
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        deadline = time.time() + 15
        while not [c for c in conn(sim, "close") if c["by"] == "idle-timeout"]:
            assert time.time() < deadline, "the simulator did not idle-close the session"
            time.sleep(0.1)
        idle_closed = conn(sim, "close")[0]["t"]
        sleep_until(idle_closed + 10.0)  # long enough for a keep-warm re-open to show
        opens_while_idle = len(conn(sim, "open"))
        status = daemon.ctl("status")
        held = hold(daemon, 2.0)
        turn = daemon.wait_record("turn", timeout=20)[0]
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        sim.stop()
    opens = conn(sim, "open")
    print(
        f"\nidle close at {idle_closed - opens[0]['t']:.2f} s; {opens_while_idle} connection(s) "
        f"in the 10 s after; press → new connection {opens[-1]['t'] - held.pressed:.3f} s; "
        f"turn {turn['OMNID_OUTCOME']}, release→commit {turn['OMNID_COMMIT_MS']} ms"
    )
    assert alive and code == 0
    assert opens_while_idle == 1, "the daemon reconnected by itself with keep_warm = false"
    assert not status["connected"] and status["state"] == "offline", status
    assert len(opens) == 2 and opens[1]["t"] >= held.pressed - held.slack_s
    assert "reconnecting at the next press" in daemon.output()
    second = opens[1]["session"]
    ready = next(r["t"] for r in wire_of(sim, second, "send") if kinds([r]) == ["session.updated"])
    recv = wire_of(sim, second, "recv")
    first_append = next(r["t"] for r in recv if kinds([r]) == ["input_audio_buffer.append"])
    assert first_append >= ready  # nothing before the session was configured
    commit_at = kinds(recv).index("input_audio_buffer.commit")
    sent = assert_held_stretch(mic, appended(recv[:commit_at]), held, wall0)
    print(
        f"held {held.pressed - wall0:.3f}–{held.released - wall0:.3f} s "
        f"(±{held.slack_s * 1000:.1f} ms), sent {sent[0]:.3f}–{sent[1]:.3f} s"
    )
    assert kinds(recv)[commit_at + 1] == "response.create"
    assert turn["OMNID_OUTCOME"] == "answered" and turn["OMNID_SESSION"] == second


# ---------------------------------------------------------------------------------------------
# retry_turn_on_drop = false: a drop after the commit costs the turn, audibly
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_without_retry_a_drop_after_the_commit_is_lost_with_the_error_tone(
    tmp_path: Path,
) -> None:
    """`session.retry_turn_on_drop = false`: the connection drops between the commit and the
    answer; the turn is not replayed, the user hears the error earcon and the journal records
    the turn as `lost` (README, "Nothing said is lost": "Otherwise …")."""
    key = make_key()
    write_wav(tmp_path / "mic.wav", speech(30.0))
    # session.created, session.updated, input_audio_buffer.committed: drop after the third.
    sim = Simulator(tmp_path, key, "--drop-after-events", "3", "--faulty-connections", "1")
    config = write_config(
        tmp_path,
        sim.url,
        key,
        "[session]\nretry_turn_on_drop = false\n" + wav_devices(tmp_path),
    )
    daemon = StampedDaemon(tmp_path, config, key)
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        sleep_until(wall0 + 1.0)
        released = hold(daemon, 1.5).released
        turn = daemon.wait_record("turn", timeout=20)[0]
        daemon.wait_ready()
        time.sleep(2.0)  # a replay, were there one, would reach the new session by now
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        sim.stop()
    drops = conn(sim, "drop")
    assert len(drops) == 1
    dropped = drops[0]["session"]
    sent_before_drop = kinds(wire_of(sim, dropped, "send"))
    recv_before_drop = kinds(wire_of(sim, dropped, "recv"))
    print(f"\nthe dropped session sent {sent_before_drop} and received {recv_before_drop[-3:]}")
    assert "input_audio_buffer.commit" in recv_before_drop  # the drop came after the commit…
    assert sent_before_drop[-1] == "input_audio_buffer.committed"
    assert "response.audio.delta" not in sent_before_drop  # …and before any of the answer
    assert alive and code == 0
    assert turn["OMNID_OUTCOME"] == "lost", turn
    assert "connection lost" in turn.get("OMNID_REASON", ""), turn
    later = [s for s in sessions(sim) if s != dropped]
    assert later, "the daemon did not reconnect"
    for session in later:  # no replay: nothing of the turn went to any later session
        got = kinds(wire_of(sim, session, "recv"))
        assert "input_audio_buffer.append" not in got and "input_audio_buffer.commit" not in got
    # The speaker file is the play timeline from wall0, its blocks written a block or so ahead
    # of the wall clock (measured: the tone began 11 ms "before" the drop that caused it); the
    # cut is 100 ms before the release, long after the listening earcon at the press.
    out = read_wav(tmp_path / "spk.wav")
    cut = int((released - wall0 - 0.1) * OUT_RATE)
    after, before = correlates(out[cut:], EARCONS.error), correlates(out[:cut], EARCONS.error)
    print(f"error earcon in the speaker after the release: {after:.3f} (before: {before:.3f})")
    assert after >= 0.99, "the user did not hear the error tone"
    assert before < 0.5


# ---------------------------------------------------------------------------------------------
# Hands-free: a dropped turn's audio is replayed, the service's VAD ends it, it is answered
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_hands_free_replays_a_dropped_turn_into_the_next_session(tmp_path: Path) -> None:
    """Hands-free: the connection drops right after `speech_stopped`, before the answer. The
    turn's audio goes into the next session followed by silence, the service's VAD ends it,
    the answer plays and the turn record says `retried` (README, "Nothing said is lost")."""
    key = make_key()
    utterance = speech(2.5)
    timeline(tmp_path / "mic.wav", [(1.0, utterance), (30.0, None)])
    # Transcription off, so the events are exactly: session.created, session.updated,
    # speech_started, speech_stopped — and the drop comes after the fourth.
    sim = Simulator(tmp_path, key, "--drop-after-events", "4", "--faulty-connections", "1")
    config = write_config(
        tmp_path,
        sim.url,
        key,
        VAD.replace("[session]\n", "[session]\ntranscribe_input = false\n") + wav_devices(tmp_path),
    )
    daemon = StampedDaemon(tmp_path, config, key)
    try:
        daemon.wait_ready()
        turn = daemon.wait_record("turn", timeout=30)[0]
        time.sleep(1.0)
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        sim.stop()
    drops = conn(sim, "drop")
    assert len(drops) == 1
    first, second = sessions(sim)[:2]
    assert first == drops[0]["session"]
    sent_first = kinds(wire_of(sim, first, "send"))
    print(f"\nthe dropped session sent {sent_first}")
    assert sent_first[-1] == "input_audio_buffer.speech_stopped"
    assert "response.audio.delta" not in sent_first

    recv_second = wire_of(sim, second, "recv")
    sent_second = wire_of(sim, second, "send")
    replayed = appended(recv_second).astype(np.float64)
    # The daemon keeps the turn from the moment the service said speech started (a little after
    # it did): the utterance's last 1.7 s must be in what the new session was sent.
    tail = utterance[int(0.8 * IN_RATE) :].astype(np.float64)
    score = best_correlation(replayed, tail)
    stopped = [r for r in sent_second if kinds([r]) == ["input_audio_buffer.speech_stopped"]]
    started = [r for r in sent_second if kinds([r]) == ["input_audio_buffer.speech_started"]]
    print(
        f"second session: utterance correlation {score:.3f}, {len(started)} speech_started, "
        f"speech_stopped at {stopped[0]['event']['audio_end_ms'] if stopped else '-'} ms; "
        f"turn {turn['OMNID_OUTCOME']}"
    )
    assert alive and code == 0
    assert score >= 0.95, "the new session did not get the dropped turn's audio"
    assert len(started) == 1 and len(stopped) == 1, "the replay was not one VAD turn"
    assert "response.done" in kinds(sent_second)
    assert turn["OMNID_OUTCOME"] == "retried" and turn["OMNID_SESSION"] == second, turn
    assert len(daemon.records("turn")) == 1
    out = read_wav(tmp_path / "spk.wav")
    answer = soxr.resample(tail, IN_RATE, OUT_RATE)
    heard = best_correlation(out, answer)
    print(f"answer in the speaker vs the utterance: {heard:.3f}")
    assert heard >= 0.8


# ---------------------------------------------------------------------------------------------
# A press while offline: captured, and sent once a session is ready
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_press_while_offline_is_kept_and_sent_once_ready(tmp_path: Path) -> None:
    """The daemon starts with nothing listening on its port; the user presses and speaks; the
    service appears while the button is still held. The whole held utterance arrives in the
    first session, is committed and answered (README, "A press while offline still captures")."""
    key = make_key()
    mic = noise(60.0, seed=5)
    write_wav(tmp_path / "mic.wav", mic)
    port = free_port()
    config = write_config(tmp_path, url_of(port), key, wav_devices(tmp_path, "earcons = false"))
    daemon = StampedDaemon(tmp_path, config, key)
    sim: Simulator | None = None
    try:
        wall0 = daemon.audio_started_wall()
        daemon.wait_for(lambda s: "offline:" in s, timeout=15)
        assert not daemon.ctl("status")["connected"]
        pressed, press_slack = ctl_at(daemon, "press")
        sleep_until(pressed + 1.0)
        sim = Simulator(tmp_path, key, "--port", str(port))
        sim_up = time.time()
        sleep_until(pressed + 3.0)
        released, release_slack = ctl_at(daemon, "release")
        held = Held(pressed, released, max(press_slack, release_slack))
        turn = daemon.wait_record("turn", timeout=45)[0]
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        if sim is not None:
            sim.stop()
    assert sim is not None
    opens = conn(sim, "open")
    attempts = daemon.stamped(lambda s: "offline:" in s or "still offline" in s)
    print(
        f"\nsimulator up {sim_up - pressed:.2f} s after the press; first connection "
        f"{opens[0]['t'] - pressed:.2f} s after it (released at {released - pressed:.2f} s); "
        f"turn {turn['OMNID_OUTCOME']}, first audio {turn['OMNID_FIRST_AUDIO_MS']} ms"
    )
    assert alive and code == 0
    assert attempts, "the daemon never reported being offline"
    assert opens and opens[0]["t"] > pressed
    first = opens[0]["session"]
    recv = wire_of(sim, first, "recv")
    got = kinds(recv)
    assert "input_audio_buffer.commit" in got, got
    commit_at = got.index("input_audio_buffer.commit")
    sent = assert_held_stretch(mic, appended(recv[:commit_at]), held, wall0)
    print(
        f"held {held.pressed - wall0:.3f}–{held.released - wall0:.3f} s "
        f"(±{held.slack_s * 1000:.1f} ms), sent {sent[0]:.3f}–{sent[1]:.3f} s"
    )
    assert got[commit_at + 1] == "response.create"
    assert "response.done" in kinds(wire_of(sim, first, "send"))
    assert turn["OMNID_OUTCOME"] == "answered" and turn["OMNID_SESSION"] == first, turn
