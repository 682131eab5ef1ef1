"""Backoff, rollover scheduling and context carry-over, driven by a fake clock."""

from __future__ import annotations

import random

import pytest

from omnid.backoff import Backoff
from omnid.config import load_config
from omnid.session import CARRY_OVER_HEADING, Session, carry_over_instructions
from omnid.settings import Settings
from omnid.supervisor import Journal
from omnid.turn import Turn


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_with_full_jitter_up_to_the_cap() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0 <= d <= 30.0 for d in delays)
    assert max(delays[:3]) <= 2.0  # 0.5, 1, 2 s ceilings at first
    assert max(delays[10:]) > 20.0  # the cap is reached, and jitter spreads below it
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, never lock-step


def test_backoff_refusals_wait_a_minute_and_stability_resets() -> None:
    backoff = Backoff(rng=random.Random(1))
    assert backoff.next_delay(permanent=True) == 60.0
    for _ in range(8):
        backoff.next_delay()
    backoff.connected_for(59.0)  # not stable yet
    assert backoff.next_delay() <= 30.0 and backoff.attempt == 10
    backoff.connected_for(60.0)
    assert backoff.attempt == 0 and backoff.next_delay() <= 0.5
    backoff.next_delay()
    backoff.proved()  # an answered turn proves the link works
    assert backoff.next_delay() <= 0.5


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> tuple[Session, FakeClock]:
    for name in ("OMNID_CONFIG", "CREDENTIALS_DIRECTORY", "DASHSCOPE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMNID_SESSION__ROLLOVER_AFTER_MIN", "0.25")
    cfg = load_config(None)
    clock = FakeClock()
    return Session(Settings(cfg), lambda event: None, Journal(), clock), clock


def test_rollover_is_due_only_for_an_old_ready_session(session: tuple[Session, FakeClock]) -> None:
    s, clock = session
    assert not s.rollover_due(clock())  # offline
    s.state, s.ready_at = "ready", clock()
    clock.now += 14.9
    assert not s.rollover_due(clock())
    clock.now += 0.1
    assert s.rollover_due(clock())  # 0.25 min = 15 s
    s.rollover_retry_at = clock() + 30  # a failed attempt backs off before the next
    assert not s.rollover_due(clock())
    clock.now += 30
    assert s.rollover_due(clock())


def _turn(user: str, assistant: str) -> Turn:
    turn = Turn(1, "manual", 0.0)
    turn.user_text, turn.assistant_text = user, assistant
    return turn


def test_carry_over_lists_the_last_turns_oldest_dropped_first() -> None:
    turns = [_turn(f"question {i} " + "x" * 300, f"answer {i}") for i in range(10)]
    text = carry_over_instructions("Be brief.", turns)
    assert text.startswith("Be brief.\n\n" + CARRY_OVER_HEADING)
    assert "User: question 9" in text and "Assistant: answer 9" in text
    assert "question 0 " not in text  # the oldest went first
    assert len(text) <= len("Be brief.\n\n" + CARRY_OVER_HEADING) + 2000 + 2
    assert carry_over_instructions("Be brief.", []) == "Be brief."
