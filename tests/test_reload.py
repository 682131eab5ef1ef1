"""SIGHUP, end to end: the first turn after a reload runs under the new settings, key by key.

A reload used to swap the configuration object while the session, the carry-over and the token
budget kept reading the one captured at start: the log said "reload: applied" and the next turn
was answered under the old instructions. Here the daemon runs a turn, its config file is
rewritten (instructions, carry-over, rollover age, token limit, voice), SIGHUP is sent, and the
wire shows what the service was told before the next turn, and what happened after it.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omnid.session import CARRY_OVER_HEADING
from tests.harness import Daemon, Simulator, make_key, wav_devices, write_config, write_wav
from tests.test_turn_wav import speech


def session_updates(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.wire("recv") if r["event"]["type"] == "session.update"]


def commits(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.wire("recv") if r["event"]["type"] == "input_audio_buffer.commit"]


def told_before(sim: Simulator, commit: dict[str, Any]) -> dict[str, Any]:
    """The session settings in force for a commit: the last update its session was sent."""
    updates = [
        u
        for u in session_updates(sim)
        if u["session"] == commit["session"] and u["t"] < commit["t"]
    ]
    assert updates, "a commit in a session that was never configured"
    return updates[-1]["event"]["session"]


def turn(daemon: Daemon, count: int) -> dict[str, str]:
    assert daemon.ctl("press")["ok"]
    time.sleep(1.2)  # the microphone plays speech throughout
    daemon.ctl("release")
    return daemon.wait_record("turn", count=count, timeout=20)[-1]


@pytest.mark.timeout(90)
def test_the_first_turn_after_a_reload_runs_under_the_new_settings(tmp_path: Path) -> None:
    key = make_key()
    write_wav(tmp_path / "mic.wav", np.tile(speech(4.0), 15))
    sim = Simulator(tmp_path, key)
    devices = wav_devices(tmp_path, "earcons = false")
    config = write_config(
        tmp_path,
        sim.url,
        key,
        '[session]\ninstructions = "Answer as Alice."\ncarry_over_turns = 6\n' + devices,
    )
    daemon = Daemon(tmp_path, config, key, STATE_DIRECTORY=str(tmp_path / "state"))
    try:
        daemon.wait_ready()
        first = turn(daemon, 1)
        assert first["OMNID_OUTCOME"] == "answered"
        opened_before = len(daemon.records("session_open"))
        used = sum(int(r["OMNID_TOTAL_TOKENS"]) for r in daemon.records("usage"))

        config.write_text(
            config.read_text().replace(
                '[session]\ninstructions = "Answer as Alice."\ncarry_over_turns = 6\n',
                '[session]\ninstructions = "Answer as Bob."\ncarry_over_turns = 0\n'
                "rollover_after_min = 0.2\n"
                "[session.vad]\nthreshold = 0.7\n"
                f"[usage]\ndaily_token_limit = {used + 1}\n",
            )
        )
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda s: "reload: applied" in s, timeout=10)
        second = turn(daemon, 2)
        assert second["OMNID_OUTCOME"] == "answered"
        third = turn(daemon, 3)  # the new token limit is in force: the second turn went past it
        assert third["OMNID_OUTCOME"] == "refused", third
        # The new rollover age (12 s) is in force too: the session rolls over without a restart.
        daemon.wait_record("rollover", timeout=30)
        reopened = len(daemon.records("session_open"))
    finally:
        assert daemon.stop() == 0
        sim.stop()

    done = commits(sim)
    assert len(done) == 2, "the refused turn must send nothing"
    before, after = told_before(sim, done[0]), told_before(sim, done[1])
    print(f"\nbefore the reload: {before['instructions']!r}\nafter: {after['instructions']!r}")
    assert before["instructions"].startswith("Answer as Alice.")
    assert after["instructions"] == "Answer as Bob."  # the new text, no carry-over (0 turns)
    assert CARRY_OVER_HEADING not in after["instructions"]
    # Applied to the running session, not by waiting for a new one.
    assert done[0]["session"] == done[1]["session"]
    assert reopened >= opened_before + 1  # the rollover's session
    assert daemon.wait_for(lambda s: "reload: applied (session.update sent)" in s)


@pytest.mark.timeout(60)
def test_a_new_voice_takes_a_new_connection_before_the_next_turn(tmp_path: Path) -> None:
    """The service refuses a voice change once it has spoken: a reload that changes the voice
    opens a new session, configured with it, before the next turn."""
    key = make_key()
    write_wav(tmp_path / "mic.wav", np.tile(speech(4.0), 10))
    sim = Simulator(tmp_path, key)
    config = write_config(
        tmp_path,
        sim.url,
        key,
        '[session]\nvoice = "Tina"\n' + wav_devices(tmp_path, "earcons = false"),
    )
    daemon = Daemon(tmp_path, config, key)
    try:
        daemon.wait_ready()
        assert turn(daemon, 1)["OMNID_OUTCOME"] == "answered"
        config.write_text(config.read_text().replace('voice = "Tina"', 'voice = "Ethan"'))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda s: "reload: applied" in s, timeout=10)
        second = turn(daemon, 2)
        errors = [r for r in sim.wire("send") if r["event"]["type"] == "error"]
    finally:
        assert daemon.stop() == 0
        sim.stop()
    assert second["OMNID_OUTCOME"] == "answered", second
    done = commits(sim)
    assert told_before(sim, done[0])["voice"] == "Tina"
    assert told_before(sim, done[1])["voice"] == "Ethan"
    assert done[0]["session"] != done[1]["session"]
    assert not errors, errors
