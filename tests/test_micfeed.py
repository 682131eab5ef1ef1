"""The microphone's blocks reach every consumer, in order, and one that stops taking them holds up
no other (the wake-word detector next to the uplink); the pre-roll gives back the last seconds."""

from __future__ import annotations

import numpy as np

from omnid.events import MicBlock
from omnid.micfeed import MicFeed, PreRoll


def _block(n: int) -> np.ndarray:
    return np.full(320, n, np.int16)


def test_every_consumer_gets_every_block_in_order_and_a_stuck_one_holds_up_nobody() -> None:
    feed = MicFeed(20)
    wakes: list[int] = []
    fast = feed.consumer("uplink", wakes.append)  # woken every 100 ms: every 5th block
    stuck = feed.consumer("detector", lambda upto: None)
    for n in range(feed_blocks := 4000):  # 80 s: past the stuck consumer's 60 s bound
        feed(_block(n % 30000), n * 0.02)
        if wakes and wakes[-1] == n + 1:
            taken = fast.take(wakes[-1])
            assert [int(b.pcm[0]) for b in taken] == list(range(n - 4, n + 1))
    assert wakes == list(range(5, feed_blocks + 1, 5))
    assert stuck.dropped == feed_blocks - 3000  # bounded: the excess is counted, not kept
    kept = stuck.take()
    assert len(kept) == 3000 and int(kept[0].pcm[0]) == 0  # the oldest kept, in order


def test_a_wake_up_takes_only_the_blocks_queued_before_it() -> None:
    """A release queued behind a wake-up must not be overtaken by blocks captured after it."""
    feed = MicFeed(20)
    wakes: list[int] = []
    q = feed.consumer("conversation", wakes.append)
    for n in range(8):
        feed(_block(n), n * 0.02)
    assert wakes == [5]
    assert [int(b.pcm[0]) for b in q.take(wakes[0])] == [0, 1, 2, 3, 4]
    assert [int(b.pcm[0]) for b in q.take()] == [5, 6, 7]  # a release takes the rest at once
    assert q.take(wakes[0]) == []


def test_the_pre_roll_gives_the_last_seconds_before_a_moment() -> None:
    roll = PreRoll(3.0)
    for n in range(500):  # 10 s
        roll.add(MicBlock(_block(n), (n + 1) * 0.02))  # block n ends at (n + 1) × 20 ms
    taken = roll.take(1.0, before=9.0)
    assert [int(b.pcm[0]) for b in taken] == list(range(400, 450))  # 8.0 s … 9.0 s
    assert len(roll.take(5.0, before=10.0)) == 150  # never more than it keeps
