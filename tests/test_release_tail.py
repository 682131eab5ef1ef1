"""The end of an utterance reaches the commit even when its wake-up is still queued at the release.

The microphone reaches the conversation in batches. A batch posted just before the release, but
still waiting in the queue behind it, used to be dropped (the turn had stopped listening when it
was handled): up to 100 ms of the last words never reached the service. The production
`MicFeed` and `Conversation` run here on the test's thread; only the link is a stand-in.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from omnid import events as ev
from tests.test_rollover_swap import Bench


def test_a_batch_still_queued_at_the_release_is_part_of_the_turn(tmp_path: Path) -> None:
    bench = Bench(tmp_path)
    conv = bench.conv
    conv.session.connect_now()
    link = bench.links[0]
    bench.configure(link, "sess_1")

    conv.press(bench.now)
    blocks = [np.full(320, n + 1, np.int16) for n in range(30)]
    for block in blocks[:25]:
        bench.now += 0.02
        bench.feed(block, bench.now)
    bench.pump()  # five wake-ups handled
    for block in blocks[25:29]:
        bench.now += 0.02
        bench.feed(block, bench.now)
    conv.inbox.post(ev.Release(t=bench.now))  # released after block 29 …
    bench.now += 0.02
    bench.feed(blocks[29], bench.now)  # … whose wake-up is posted behind the release
    bench.pump()

    sent = [e for e in link.sent if e["type"] == "input_audio_buffer.append"]
    audio = np.concatenate([np.frombuffer(base64.b64decode(e["audio"]), "<i2") for e in sent])
    values = sorted({int(v) for v in audio})
    assert values == list(range(1, 30)), values  # blocks 1–29, in order; 30 began after
    assert np.array_equal(audio, np.concatenate(blocks[:29]))
    assert link.types()[-2:] == ["input_audio_buffer.commit", "response.create"]
