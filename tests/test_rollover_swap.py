"""A session that closes while its rollover successor is ready: the waiting turn is answered.

The production `Conversation` and `Session` run on the test's thread with a fake clock; only the
link is a stand-in (what they call of it), so the moments that are hard to hit end to end —
the old session closing after its successor is configured but before the swap, while a turn
waits for its answer — are set up exactly. The swap used to happen inside `Session.on_closed`,
skipping the conversation's own swap work: the turn's commit was never re-sent and it hung until
a misleading "offline" timeout.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from omnid import events as ev
from omnid import protocol
from omnid.assembly import assemble
from omnid.config import load_config
from omnid.devices import SilentSpeaker
from omnid.micfeed import MicFeed
from omnid.supervisor import Journal


class StandInLink:
    """What `Session` and `Conversation` use of a `Link`; records what they send."""

    def __init__(self) -> None:
        self.session_id = ""
        self.last_send_t = self.last_recv_t = self.last_ping_t = 0.0
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def send(self, event: dict[str, Any]) -> bool:
        if self.closed:
            return False
        self.sent.append(json.loads(protocol.encode(event)))
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True

    def ping(self) -> None:
        pass

    def check_writer(self) -> None:
        pass

    def finish(self, timeout: float = 1.0) -> None:
        pass

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]


class Bench:
    def __init__(self, tmp: Path) -> None:
        (tmp / "key").write_text("sk-test-" + uuid.uuid4().hex)
        (tmp / "omnid.toml").write_text(
            f'[api]\nurl = "ws://127.0.0.1:9/api-ws/v1/realtime"\napi_key_file = "{tmp / "key"}"\n'
            "[session]\nrollover_after_min = 1.0\n[audio]\nearcons = false\n"
            f'[control]\nsocket = "{tmp / "control.sock"}"\n'
        )
        cfg = load_config(tmp / "omnid.toml", require_api_key=True)
        self.now = 1000.0
        self.links: list[StandInLink] = []
        self.records: list[dict[str, Any]] = []
        journal = Journal()
        journal.listen(lambda event, fields: self.records.append(dict(fields)))
        self.feed = MicFeed(20)  # the microphone callback's target
        self.conv = assemble(
            cfg,
            journal,
            speaker=SilentSpeaker(),
            state_dir=tmp,
            feed=self.feed,
            clock=lambda: self.now,
            open_link=self._open,  # type: ignore[arg-type]
        )

    def _open(self) -> StandInLink:
        link = StandInLink()
        self.links.append(link)
        return link

    def server(self, link: StandInLink, kind: str, **fields: Any) -> None:
        message = json.dumps({"type": kind, "event_id": "ev_" + uuid.uuid4().hex, **fields})
        self.conv.handle(ev.LinkMessage(link, protocol.parse(message), self.now))  # type: ignore[arg-type]

    def configure(self, link: StandInLink, session_id: str) -> None:
        self.conv.handle(ev.LinkUp(link))  # type: ignore[arg-type]
        self.server(link, "session.created", session={"id": session_id})
        assert link.types()[-1] == "session.update"
        self.server(link, "session.updated", session={"id": session_id})

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 0.1)
            self.conv.tick(self.now)

    def pump(self) -> None:
        """Handle what other threads (here: the microphone's feed) posted."""
        while (event := self.conv.inbox.get_nowait()) is not None:
            self.conv.handle(event)

    def speak(self, seconds: float, level: int = 1000) -> None:
        """The microphone captures `seconds` of a steady signal, block by block."""
        for _ in range(round(seconds / 0.02)):
            self.now += 0.02
            self.feed(np.full(320, level, np.int16), self.now)
            self.pump()

    def answer(self, link: StandInLink, response_id: str) -> None:
        self.server(link, "response.created", response={"id": response_id})
        pcm = np.zeros(2400, "<i2").tobytes()
        delta = base64.b64encode(pcm).decode()
        self.server(link, "response.audio.delta", response_id=response_id, delta=delta)
        self.server(link, "response.audio.done", response_id=response_id)
        self.server(link, "response.done", response={"id": response_id, "status": "completed"})


def test_old_session_closing_mid_rollover_hands_the_waiting_turn_to_the_successor(
    tmp_path: Path,
) -> None:
    bench = Bench(tmp_path)
    conv = bench.conv
    conv.session.connect_now()
    old = bench.links[0]
    bench.configure(old, "sess_old")
    assert conv.session.ready

    bench.advance(61)  # past rollover_after_min: the successor is opened while idle
    assert len(bench.links) == 2
    new = bench.links[1]
    conv.handle(ev.LinkUp(new))  # type: ignore[arg-type]
    bench.server(new, "session.created", session={"id": "sess_new"})

    conv.press(bench.now)  # a turn begins before the successor is ready
    bench.speak(1.0)
    conv.release(bench.now)
    assert old.types()[-2:] == ["input_audio_buffer.commit", "response.create"]
    bench.server(new, "session.updated", session={"id": "sess_new"})  # ready, mid-turn: waits
    assert conv.state == "thinking" and conv.session.link is old

    old.closed = True  # the old session goes before its answer came
    conv.handle(ev.LinkClosed(old, None, "connection lost"))  # type: ignore[arg-type]
    assert conv.session.link is new and conv.session.ready
    sent = new.types()
    assert "input_audio_buffer.commit" in sent, sent
    commit = sent.index("input_audio_buffer.commit")
    assert "input_audio_buffer.append" in sent[:commit]  # the turn's audio, sent again
    assert sent[commit + 1] == "response.create"
    assert len(bench.links) == 2, "no new connection: the ready successor took over"

    bench.answer(new, "resp_1")
    bench.advance(0.5)
    turns = [r for r in bench.records if r["OMNID_EVENT"] == "turn"]
    assert [t["OMNID_OUTCOME"] for t in turns] == ["retried"], turns
    assert conv.state == "idle"
    assert any(r["OMNID_EVENT"] == "rollover" for r in bench.records)
