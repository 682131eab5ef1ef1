"""README claims about the box protecting its user and its owner, end to end: the daily token
limit, `audio.max_turn_s` in both modes, transcripts kept out of the journal, mute in hands-free
mode, the offline/online earcons, and the speaker vanishing mid-answer.

Everything runs for real: `omnid run` and `omnid simulate` as processes over a WebSocket on
127.0.0.1, sd_notify on a test-owned socket, the state directory in the test's tmp dir. What is
asserted is what a user or an operator would notice: the speaker output (with two `wav:` devices
a sample's position is its play time, so an earcon's position is when it sounded), the journal
records on stderr, STATUS, the simulator's record of the wire, and the exit status. The last test
makes a PortAudio speaker fail for real through the ALSA FIFO rig (tests/alsa_rig.py).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from omnid.earcons import Earcons
from tests.alsa_rig import SPEAKER_PIPE_BYTES, AlsaFifoRig
from tests.harness import (
    Daemon,
    NotifySocket,
    Simulator,
    make_key,
    wav_devices,
    write_config,
)
from tests.test_handsfree import VAD, timeline
from tests.test_turn_wav import IN_RATE, OUT_RATE, read_wav, speech, vowel

EARCONS = Earcons.generate()
EARCON_SCORE = 0.9  # normalised correlation that counts as "this earcon sounded here"


# -- helpers -------------------------------------------------------------------------------


def sleep_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def match_scores(haystack: npt.ArrayLike, needle: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Normalised cross-correlation of `needle` at every position of `haystack` (0 … 1), as in
    `omnid.earcons.correlates` but kept per position, so a test can say *when* a sound played.
    FFT for the dot products and a cumulative sum for the window energies: a minute of audio
    takes well under a second (a direct convolution takes minutes on a loaded machine)."""
    x = np.asarray(haystack, dtype=np.float64).ravel()
    e = np.asarray(needle, dtype=np.float64).ravel()
    m = len(e)
    if m == 0 or len(x) < m:
        return np.zeros(0)
    size = 1 << int(np.ceil(np.log2(len(x) + m - 1)))
    full = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(e[::-1], size), size)
    dots = full[m - 1 : len(x)]
    energy = np.cumsum(np.concatenate(([0.0], x * x)))
    window = np.sqrt(np.maximum(energy[m:] - energy[:-m], 0.0))
    score = np.zeros_like(dots)
    valid = window > np.sqrt(m)  # above 1 LSB RMS: digital silence scores 0
    score[valid] = np.abs(dots[valid]) / (window[valid] * np.linalg.norm(e))
    return score


def reply_score(out: npt.ArrayLike, utterance: npt.NDArray[np.int16]) -> float:
    """How well the speaker output contains `utterance` (16 kHz), which the simulator echoes
    back resampled to 24 kHz: 1.0 = the user's own words came back intact."""
    expected = soxr.resample(utterance.astype(np.float64), IN_RATE, OUT_RATE)
    scores = match_scores(out, expected)
    return float(np.max(scores)) if len(scores) else 0.0


def earcon_times(out: npt.ArrayLike, name: str) -> list[float]:
    """Where (seconds on the speaker timeline) earcon `name` starts, once per occurrence."""
    m = len(EARCONS.get(name))
    score = match_scores(out, EARCONS.get(name))
    starts: list[int] = []
    for i in np.flatnonzero(score >= EARCON_SCORE).tolist():
        if starts and i - starts[-1] < m:
            if score[i] > score[starts[-1]]:
                starts[-1] = i  # the same occurrence: keep its best alignment
        else:
            starts.append(i)
    return [i / OUT_RATE for i in starts]


def received(sim: Simulator, kind: str | None = None) -> list[dict[str, Any]]:
    """Client events the service received (optionally of one type), with their arrival time."""
    return [
        r
        for r in sim.wire("recv")
        if r.get("event") and (kind is None or r["event"]["type"] == kind)
    ]


def sent_times(sim: Simulator, kind: str) -> list[float]:
    return [r["t"] for r in sim.wire("send") if r["event"]["type"] == kind]


def append_pcm(record: dict[str, Any]) -> npt.NDArray[np.int16]:
    """The audio of one `input_audio_buffer.append` the service received."""
    return np.frombuffer(base64.b64decode(record["event"]["audio"]), dtype="<i2")


def statuses(notify: NotifySocket) -> list[str]:
    return [m.split("=", 1)[1] for _, m in notify.messages if m.startswith("STATUS=")]


@dataclass
class Run:
    """One `omnid run` with `wav:` devices against one `omnid simulate`."""

    tmp: Path
    sim: Simulator
    daemon: Daemon
    notify: NotifySocket
    wall0: float = 0.0  # wall time of sample 0 of both wav: timelines
    exit_code: int | None = None

    def at(self, offset_s: float, late_ok: bool = False) -> None:
        """Sleep until `offset_s` on the microphone's timeline. Unless `late_ok`, being past it
        already fails: the action had to come before (or between) the utterances."""
        assert late_ok or time.time() < self.wall0 + offset_s, f"too late for {offset_s} s"
        sleep_until(self.wall0 + offset_s)

    def ctl(self, command: str) -> tuple[float, dict[str, Any]]:
        """A control command and the wall time it was sent."""
        t = time.time()
        return t, self.daemon.ctl(command)

    def speaker(self) -> npt.NDArray[np.float64]:
        """What the user heard: the speaker's timeline."""
        return read_wav(self.tmp / "spk.wav")


@contextlib.contextmanager
def running(
    tmp: Path,
    mic: list[tuple[float, np.ndarray | None]],
    *,
    audio: tuple[str, ...] = (),
    extra: str = "",
) -> Iterator[Run]:
    """Simulator, daemon (state directory and NOTIFY_SOCKET in `tmp`), the microphone file made of
    `mic` (utterances at offsets, see `timeline`); connected on entry. The
    daemon is stopped with SIGTERM on exit and its exit status kept in `run.exit_code`."""
    key = make_key()
    timeline(tmp / "mic.wav", mic)
    sim = Simulator(tmp, key)
    config = write_config(tmp, sim.url, key, wav_devices(tmp, *audio) + extra)
    notify = NotifySocket(tmp / "notify.sock")
    daemon = Daemon(
        tmp, config, key, NOTIFY_SOCKET=str(notify.path), STATE_DIRECTORY=str(tmp / "state")
    )
    run = Run(tmp, sim, daemon, notify)
    try:
        daemon.wait_ready()
        run.wall0 = daemon.audio_started_wall()
        yield run
    finally:
        run.exit_code = daemon.stop()
        sim.stop()
        notify.close()
    assert "Traceback" not in daemon.output()


# -- 1. usage.daily_token_limit ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_daily_token_limit_refuses_the_next_press(tmp_path: Path) -> None:
    """README, "Status, logs and usage": once the day's tokens reach `daily_token_limit`, a
    press is refused — error tone, a `refused` turn record, STATUS — and nothing reaches the
    service. The first turn is real, so the count is the service's own usage, kept in the state
    directory (STATE_DIRECTORY, never the real one)."""
    limit = 50  # one 1 s turn costs well over 100 tokens
    first, second = speech(1.0), speech(1.5)[::-1].copy()
    with running(
        tmp_path,
        [(2.0, first), (5.5, second), (8.0, None)],
        extra=f"[usage]\ndaily_token_limit = {limit}\n",
    ) as run:
        run.at(1.75)
        run.ctl("press")
        run.at(3.3, late_ok=True)
        run.ctl("release")
        answered = run.daemon.wait_record("turn", timeout=15)[0]
        reached = run.notify.wait("STATUS=daily token limit reached", timeout=5)
        run.at(5.25, late_ok=True)  # the user tries again, and speaks
        refused_at, reply = run.ctl("press")
        run.at(7.3, late_ok=True)
        run.ctl("release")
        refused = run.daemon.wait_record("turn", count=2, timeout=10)[1]
        time.sleep(0.5)  # room for anything that should not happen
        usage = run.daemon.wait_record("usage")
    assert run.exit_code == 0
    assert answered["OMNID_OUTCOME"] == "answered"
    assert reached < refused_at
    assert reply["ok"] and reply["state"] == "idle", reply  # not listening
    assert refused["OMNID_OUTCOME"] == "refused"
    assert f"daily token limit of {limit}" in refused["OMNID_REASON"]
    status = [s for s in statuses(run.notify) if s.startswith("daily token limit reached")]
    print(f"\nturn 1 cost {usage[0]['OMNID_TOTAL_TOKENS']} tokens; STATUS {status[0]!r}")
    assert status[0].endswith("resumes at midnight")
    # The day's count is in the state directory, as the service billed it.
    saved = json.loads((tmp_path / "state" / "usage-today.json").read_text())
    assert saved["tokens"] == int(usage[0]["OMNID_TOTAL_TOKENS"]) >= limit
    # Nothing at all reached the service after the refused press, though the user spoke.
    assert len(received(run.sim, "input_audio_buffer.commit")) == 1
    late = [r["event"]["type"] for r in received(run.sim) if r["t"] >= refused_at]
    assert late == [], late
    # The user heard the error tone at the press, and only there.
    errors = [t + run.wall0 - refused_at for t in earcon_times(run.speaker(), "error")]
    print(f"error earcon {[round(e * 1000) for e in errors]} ms after the refused press")
    assert len(errors) == 1 and -0.1 <= errors[0] <= 0.5  # early by a block: see test 5


# -- 2. audio.max_turn_s ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_press_held_past_max_turn_s_is_sent_with_a_warning(tmp_path: Path) -> None:
    """README, "The box's own interface": a press held past `audio.max_turn_s` is sent with a
    warning (and answered): a stuck button or a forgotten `ctl press` does not stream forever."""
    max_turn_s = 2.0
    with running(
        tmp_path, [(2.0, speech(4.0)), (7.0, None)], audio=(f"max_turn_s = {max_turn_s}",)
    ) as run:
        run.at(1.75)
        pressed, _ = run.ctl("press")
        turn = run.daemon.wait_record("turn", timeout=15)[0]  # no release yet
        run.ctl("release")  # the user lets go at last: that is no second turn
        time.sleep(0.5)
    assert run.exit_code == 0
    commits = [r["t"] for r in received(run.sim, "input_audio_buffer.commit")]
    assert len(commits) == 1
    after_s = commits[0] - pressed
    print(f"\ncommit {after_s:.3f} s after the press (max_turn_s {max_turn_s}); turn {turn}")
    assert max_turn_s - 0.05 <= after_s <= max_turn_s + 0.8
    assert turn["OMNID_OUTCOME"] == "answered"
    assert -100 <= int(turn["OMNID_SPEECH_MS"]) - max_turn_s * 1000 <= 800  # as the commit
    warnings = [s for s in run.daemon.output().splitlines() if "held past max_turn_s" in s]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING"), warnings


def noise(seconds: float, rms: float = 3000.0) -> npt.NDArray[np.int16]:
    """Steady noise about 20 dB over the VAD's line: sound that never pauses."""
    rng = np.random.default_rng(5)
    return np.clip(rng.normal(0, rms, int(seconds * IN_RATE)), -32768, 32767).astype(np.int16)


@pytest.mark.timeout(60)
def test_hands_free_sound_that_never_stops_ends_the_turn_as_lost(tmp_path: Path) -> None:
    """Hands-free, the service's VAD ends a turn; sound that never pauses (a fan, a TV) would keep
    it listening forever. Past `max_turn_s` the turn ends as `lost` and the user hears the error
    tone (conversation.py `tick()`)."""
    max_turn_s = 2.0
    with running(
        tmp_path,
        [(2.0, noise(3.5)), (11.0, None)],
        audio=(f"max_turn_s = {max_turn_s}",),
        extra=VAD,
    ) as run:
        run.at(1.9)  # hands-free: nobody presses; the session must just be up by now
        turn = run.daemon.wait_record("turn", timeout=15)[0]
        # The noise ends at 5.5 s; the service then answers what it heard. That answer belongs
        # to the lost turn: it must not play after the error tone as a new turn.
        run.at(10.0, late_ok=True)
    assert run.exit_code == 0
    started = sent_times(run.sim, "input_audio_buffer.speech_started")
    assert started, "the simulator's VAD did not hear the noise"
    errors = [t + run.wall0 - started[0] for t in earcon_times(run.speaker(), "error")]
    turns = run.daemon.records("turn")
    print(
        f"\nerror earcon {[round(e, 3) for e in errors]} s after speech_started "
        f"(max_turn_s {max_turn_s}); turns "
        f"{[(t['OMNID_OUTCOME'], t.get('OMNID_REASON')) for t in turns]}"
    )
    assert turn["OMNID_OUTCOME"] == "lost" and turn["OMNID_MODE"] == "vad"
    assert "end of speech" in turn["OMNID_REASON"]
    assert len(errors) >= 1 and max_turn_s - 0.1 <= errors[0] <= max_turn_s + 0.8
    assert [t["OMNID_OUTCOME"] for t in turns] == ["lost"], turns
    created = sent_times(run.sim, "response.created")
    cancels = [r for r in run.sim.wire("recv") if r["event"]["type"] == "response.cancel"]
    assert len(cancels) >= len(created), "an answer to the lost turn was left running"


# -- 3. transcripts stay out of the journal unless asked for --------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transcripts", [False, True])
def test_transcripts_reach_the_journal_only_when_asked(tmp_path: Path, transcripts: bool) -> None:
    """README: "Transcripts are written only with `log.transcripts = true`." With input
    transcription on and the service returning both transcripts, the default journal holds
    neither (nor does any other output line); with the switch on, the same run shows both —
    which proves the default-off half is looking in the right place."""
    extra = "[session]\ntranscribe_input = true\n" + (
        "[log]\ntranscripts = true\n" if transcripts else ""
    )
    with running(tmp_path, [(2.0, speech(1.2)), (6.0, None)], extra=extra) as run:
        run.at(1.75)
        run.ctl("press")
        run.at(3.5, late_ok=True)
        run.ctl("release")
        turn = run.daemon.wait_record("turn", timeout=15)[0]
    assert run.exit_code == 0
    assert turn["OMNID_OUTCOME"] == "answered"
    said = [
        r["event"]["transcript"]
        for r in run.sim.wire("send")
        if r["event"]["type"] == "conversation.item.input_audio_transcription.completed"
    ]
    answer = [
        r["event"]["transcript"]
        for r in run.sim.wire("send")
        if r["event"]["type"] == "response.audio_transcript.done"
    ]
    assert len(said) == 1 and len(answer) == 1 and answer[0].startswith("You said something")
    output = run.daemon.output()
    print(f"\ntranscripts {transcripts}: user {said[0]!r}, assistant {answer[0]!r}")
    if transcripts:
        assert turn["OMNID_USER_TEXT"] == said[0]
        assert turn["OMNID_ASSISTANT_TEXT"] == answer[0]
    else:
        assert "OMNID_USER_TEXT" not in turn and "OMNID_ASSISTANT_TEXT" not in turn
        assert answer[0] not in output and said[0] not in output
        assert "TEXT=" not in output


# -- 4. hands-free mute ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_hands_free_press_mutes_then_unmutes(tmp_path: Path) -> None:
    """README: hands-free, "a press while idle mutes the microphone (it then streams silence;
    press again to unmute)". Muted, the service gets only zeros — streaming goes on, so its VAD
    keeps working — and speech makes no turn; unmuted, the next utterance is a turn again."""
    muted_words, heard_words = speech(1.5), speech(2.0)[::-1].copy()
    with running(
        tmp_path, [(2.5, muted_words), (5.5, heard_words), (11.0, None)], extra=VAD
    ) as run:
        run.at(2.0)
        muted_at, muted_reply = run.ctl("press")
        run.at(5.0)  # a second after the first utterance (2.5–4.0 s), before the second
        unmuted_at, unmuted_reply = run.ctl("press")
        turn = run.daemon.wait_record("turn", timeout=15)[0]
        time.sleep(0.5)
        turns = run.daemon.records("turn")
    assert run.exit_code == 0
    assert muted_reply["ok"] and unmuted_reply["ok"]
    # While muted: appends kept coming (covering the utterance), and every sample was zero.
    appends = received(run.sim, "input_audio_buffer.append")
    muted = [append_pcm(r) for r in appends if muted_at + 0.3 < r["t"] < unmuted_at]
    muted_s = sum(len(p) for p in muted) / IN_RATE
    loudest = max(int(np.abs(p.astype(np.int32)).max()) for p in muted)
    print(f"\nmuted: {len(muted)} appends, {muted_s:.2f} s of audio, loudest sample {loudest}")
    assert muted_s >= 2.0, "the microphone stopped streaming while muted"
    assert loudest == 0, "microphone audio reached the service while muted"
    starts = sent_times(run.sim, "input_audio_buffer.speech_started")
    assert starts and all(t > unmuted_at for t in starts), "speech was heard while muted"
    output = run.daemon.output()
    assert "microphone muted" in output and "microphone unmuted" in output
    # Unmuted: the second utterance is one answered turn, and it is what the reply echoes.
    assert [t["OMNID_OUTCOME"] for t in turns] == ["answered"] and turn["OMNID_MODE"] == "vad"
    reply = run.speaker()
    for words, want in ((heard_words, True), (muted_words, False)):
        score = reply_score(reply, words)
        print(f"reply vs {'unmuted' if want else 'muted'} utterance: {score:.3f}")
        assert (score >= 0.8) is want


# -- 5. the offline and back-online earcons --------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll `predicate` until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def free_port() -> int:
    """A loopback port free now, so a second simulator can take over the first one's address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.timeout(120)
def test_offline_earcon_only_after_3_s_and_online_earcon_on_return(tmp_path: Path) -> None:
    """README: the offline earcon sounds "only after 3 s without a session, so brief drops stay
    silent", and the back-online earcon when the session returns. A brief drop (the simulator
    aborts the first connection right after it is configured; the reconnect is quick) gives
    neither; a real outage (the simulator stopped, a new one on the same port ~6 s later) gives
    the offline earcon ~3 s after the loss and the online earcon once the session is ready."""
    key = make_key()
    port = free_port()
    timeline(tmp_path / "mic.wav", [(60.0, None)])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    flaky = ("--port", str(port), "--drop-after-events", "2", "--faulty-connections", "1")
    sim = Simulator(tmp_path / "a", key, *flaky)
    config = write_config(tmp_path, sim.url, key, wav_devices(tmp_path))
    daemon = Daemon(tmp_path, config, key, STATE_DIRECTORY=str(tmp_path / "state"))
    second: Simulator | None = None
    try:
        wait_until(lambda: len(sent_times(sim, "session.updated")) >= 2, 15)
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        drop_t = next(r["t"] for r in sim.record() if r.get("what") == "drop")
        back_t = sent_times(sim, "session.updated")[1]
        time.sleep(max(0.0, back_t + 3.5 - time.time()))  # past 3 s after the drop
        lost_at = time.time()
        assert sim.stop() == 0  # the service goes away
        time.sleep(6.0)
        second = Simulator(tmp_path / "b", key, "--port", str(port))
        daemon.wait_record("session_open", count=3, timeout=60)  # backoff: up to 30 s a try
        ready_t = sent_times(second, "session.updated")[0]
        time.sleep(1.5)  # the online earcon plays out
        status = daemon.ctl("status")
    finally:
        code = daemon.stop()
        sim.stop()
        if second is not None:
            second.stop()
    assert code == 0 and status["connected"]
    assert len(daemon.records("session_close")) == 2  # the drop, then the outage
    out = read_wav(tmp_path / "spk.wav")
    offline = [t + wall0 for t in earcon_times(out, "offline")]
    online = [t + wall0 for t in earcon_times(out, "online")]
    print(
        f"\nbrief drop: reconnected {back_t - drop_t:.2f} s after the drop; "
        f"outage: offline earcon {[round(t - lost_at, 2) for t in offline]} s after the loss, "
        f"session ready again {ready_t - lost_at:.2f} s after it, online earcon "
        f"{[round(t - ready_t, 3) for t in online]} s after that"
    )
    assert back_t - drop_t < 2.0, "the brief drop was not brief"
    assert len(offline) == 1 and len(online) == 1, (offline, online)
    # A block on the wav: timeline spans the 20 ms before the tick that rendered it, and a late
    # clock thread catches up: a tone can show up a few blocks before it was queued.
    assert 3.0 - 0.1 <= offline[0] - lost_at <= 3.0 + 0.8
    assert -0.1 <= online[0] - ready_t <= 0.8


# -- 6. the speaker vanishing mid-answer -----------------------------------------------------


class UnpluggableRig(AlsaFifoRig):
    """The ALSA FIFO rig whose speaker can be unplugged and plugged back.

    Unplugging does what pulling a USB speaker does to its driver: the device disappears from
    ALSA's configuration (so reopening it fails) and the running stream's writes fail (its FIFO
    loses its only reader: alsa-lib's file plugin gets EPIPE, returns an error to PortAudio,
    whose callback thread ends and reports the stream finished). The rig's reader thread is first
    pointed at an empty pipe, so it never touches the closed descriptor."""

    unplugged_at = 0.0  # wall time the running stream lost its speaker

    def _conf(self, speaker: bool) -> None:
        """ALSA's view: the configuration with, or without, the speaker PCM."""
        text = self.asound_conf.read_text()
        if not hasattr(self, "_full_conf"):
            self._full_conf = text
        head = self._full_conf.split(f"pcm.{self.spk_device}", 1)[0]
        self.asound_conf.write_text(self._full_conf if speaker else head)

    def unplug_speaker(self) -> None:
        """Gone from ALSA's list, and the running stream's next write fails."""
        self._conf(speaker=False)
        self._dummy_r, self._dummy_w = os.pipe()
        old, self._spk_fd = self._spk_fd, self._dummy_r
        time.sleep(0.2)  # the reader's select() (50 ms) has moved on to the dummy
        self.unplugged_at = time.time()
        os.close(old)
        self.spk_fifo.unlink()

    def plug_speaker(self) -> None:
        """Back: a fresh FIFO read at real-time pace, and the PCM in ALSA's list again."""
        os.mkfifo(self.spk_fifo)
        fd = os.open(self.spk_fifo, os.O_RDWR)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, SPEAKER_PIPE_BYTES)
        dummy, self._spk_fd = self._spk_fd, fd
        time.sleep(0.2)
        os.close(dummy)
        os.close(self._dummy_w)
        self._conf(speaker=True)


def wait_state(daemon: Daemon, state: str, timeout: float) -> None:
    """Poll `omnid ctl status` until the conversation is in `state`."""
    deadline = time.monotonic() + timeout
    while daemon.ctl("status")["state"] != state:
        assert time.monotonic() < deadline, f"state {state!r} not reached"
        time.sleep(0.02)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("earcons", [True, False], ids=["earcons", "no-earcons"])
def test_the_speaker_vanishing_mid_answer_is_survived(tmp_path: Path, earcons: bool) -> None:
    """README: "A microphone or speaker that is missing at boot or goes away is reopened with
    backoff (STATUS says so)". The speaker fails through PortAudio while an answer plays: the
    turn is recorded `lost` naming the speaker, the daemon stays up, STATUS says the device is
    being reopened, and once the speaker is back the next turn is answered — and heard. The
    answer cut off mid-play must not leave the half-duplex echo guard holding the microphone
    silent (without earcons, nothing else would ever release it)."""
    key = make_key()
    rig = UnpluggableRig(tmp_path).start()
    sim = Simulator(tmp_path, key)
    devices = (
        f'[audio]\ninput_device = "{rig.mic_device}"\noutput_device = "{rig.spk_device}"\n'
        f"earcons = {str(earcons).lower()}\n"
    )
    config = write_config(tmp_path, sim.url, key, devices)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = Daemon(
        tmp_path,
        config,
        key,
        NOTIFY_SOCKET=str(notify.path),
        STATE_DIRECTORY=str(tmp_path / "state"),
        ALSA_CONFIG_PATH=rig.env["ALSA_CONFIG_PATH"],
        HOME=rig.env["HOME"],
    )
    answer_words, next_words = vowel(3.0), speech(1.5)
    plugged_back = False
    try:
        daemon.wait_ready()
        assert rig.wait_mic_reader(10), "the microphone stream is not reading"
        daemon.ctl("press")
        said = rig.say(answer_words)
        sleep_until(said + 3.0 + 0.3)
        daemon.ctl("release")
        wait_state(daemon, "speaking", 10)
        time.sleep(0.8)  # well into the 3 s answer
        rig.unplug_speaker()
        unplugged_at = rig.unplugged_at
        lost = daemon.wait_record("turn", timeout=10)[0]
        reopening = notify.wait("STATUS=audio device lost", after=unplugged_at, timeout=5)
        alive_while_gone = daemon.proc.poll() is None
        missing = notify.wait("STATUS=audio device missing", after=unplugged_at, timeout=5)
        heard_before = len(rig.speaker_output())
        rig.plug_speaker()
        plugged_back = True
        plugged_at = time.time()
        daemon.wait_for(lambda s: "audio resumed" in s, timeout=20)  # speaker taken
        back_at = time.time()
        assert rig.wait_mic_reader(10), "the microphone stream did not come back"
        daemon.ctl("press")
        if earcons:  # people speak once they hear the listening earcon (a reopened stream's
            deadline = time.monotonic() + 10  # first sound may take a while on a busy machine)
            while not earcon_times(rig.speaker_output()[heard_before:], "listening"):
                assert time.monotonic() < deadline, "no listening earcon from the speaker"
                time.sleep(0.05)
        said = rig.say(np.concatenate([np.zeros(IN_RATE // 2, np.int16), next_words]))
        sleep_until(said + 0.5 + 1.5 + 0.3)
        daemon.ctl("release")
        answered = daemon.wait_record("turn", count=2, timeout=20)[1]
        time.sleep(0.3)
        status = daemon.ctl("status")
    finally:
        code = daemon.stop()  # the streams close before the rig stops (alsa_rig docstring)
        if not plugged_back:
            with contextlib.suppress(OSError):
                rig.plug_speaker()
        rig.stop()
        sim.stop()
        notify.close()
    print(
        f"\nturn lost {lost['OMNID_REASON']!r}; STATUS "
        f"{[s for s in statuses(notify) if s.startswith('audio')]}; "
        f"'audio device lost' {reopening - unplugged_at:.2f} s after the unplug; "
        f"devices back {back_at - plugged_at:.2f} s after the plug"
    )
    assert code == 0 and alive_while_gone
    assert lost["OMNID_OUTCOME"] == "lost" and "speaker" in lost["OMNID_REASON"]
    assert reopening - unplugged_at < 2.0 and missing > reopening
    assert "reopening" in next(s for s in statuses(notify) if s.startswith("audio device lost"))
    assert answered["OMNID_OUTCOME"] == "answered"
    assert status["state"] == "idle" and status["connected"]
    score = reply_score(rig.speaker_output()[heard_before:], next_words)
    print(f"the next answer through the speaker that came back: correlation {score:.3f}")
    assert score >= 0.8
    assert "Traceback" not in daemon.output()
