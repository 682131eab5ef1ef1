"""Generated server events, in any order and any shape, through the parser and the conversation
state machine: nothing breaks, the state stays one of the valid ones, and the key never shows.

The real `Conversation` runs on the test's thread with a fake clock (its documented seam), its
speaker the real `wav:` `Speaker` from `omnid.audio` (ticked by the test, so its started/drained
events come back as the daemon would post them). Only the link is faked, and only as far as the
conversation and its `Session` touch it (`send`, `close`, `ping`, `session_id`, `last_send_t`;
`Session._open` hands out fake links, so reconnects and rollovers happen): a socket's bytes are
the business of test_protocol.py and the simulator tests; here every server message is a JSON
text that goes through `protocol.parse` first, as the link's reader thread does, and every
client event the machine sends is encoded as `Link.send` encodes it.

Between server events hypothesis interleaves what else reaches the queue — microphone blocks,
press/release/tap, time passing (timers, rollover), connects, failures and drops — so events
land in every state. `handle()` catches what a handler raises and logs it with its traceback;
such a record fails the test, as do an invalid state, a turn without a state (or the reverse),
an unencodable client event, or the key in any output. OMNID_FUZZ_EXAMPLES scales the run.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnid import events as ev
from omnid import protocol
from omnid.audio import open_audio
from omnid.audio.wav import wav_header
from omnid.config import load_config
from omnid.conversation import Conversation
from omnid.link import LinkError
from omnid.quota import DailyBudget
from omnid.supervisor import Journal, Notifier
from tests.secret_guard import make_key

EXAMPLES = int(os.environ.get("OMNID_FUZZ_EXAMPLES", "30"))
STATES = {"idle", "listening", "thinking", "speaking"}
PUBLIC = STATES | {"offline", "connecting"}
CLIENT_TYPES = {"session.update", "input_image_buffer.append", "conversation.item.create"}
CLIENT_TYPES |= {f"input_audio_buffer.{x}" for x in ("append", "commit", "clear")}
CLIENT_TYPES |= {"response.create", "response.cancel"}
COUNTS: Counter[str] = Counter()


class FakeLink:
    """What `Conversation` and `Session` use of `omnid.link.Link`; see the module docstring."""

    def __init__(self) -> None:
        self.session_id = ""
        self.last_send_t = 0.0
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.up = False

    def send(self, event: dict[str, Any]) -> bool:
        if self.closed is not None:
            return False
        self.sent.append(protocol.encode(event))
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def ping(self) -> None:
        pass


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Rig:
    """One conversation with a fake clock, a `wav:` speaker and fake links."""

    def __init__(self, tmp: Path, mode: str, guard: str, key: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        key_file = tmp / "key"
        key_file.write_text(key)
        config = tmp / "omnid.toml"
        config.write_text(
            f'[api]\nurl = "ws://127.0.0.1:9/api-ws/v1/realtime"\napi_key_file = "{key_file}"\n'
            f'[session]\nmode = "{mode}"\n[audio]\necho_guard = "{guard}"\n'
            f'[control]\nsocket = "{tmp / "control.sock"}"\n[log]\ntranscripts = true\n'
        )
        cfg = load_config(config, require_api_key=True)
        self.now = 1000.0
        self.key = key
        self.links: list[FakeLink] = []
        self.speaker_events: list[ev.SpeakerEvent] = []
        silence = np.zeros(320, "<i2").tobytes()
        (tmp / "mic.wav").write_bytes(wav_header(len(silence), 16_000) + silence)
        _, self.speaker = open_audio(
            f"wav:{tmp / 'mic.wav'}",
            f"wav:{tmp / 'spk.wav'}",
            block_ms=20,
            on_mic_block=lambda pcm, t: None,
            on_speaker_event=lambda kind, t: self.speaker_events.append(ev.SpeakerEvent(kind, t)),
        )
        self.journal_out: list[dict[str, Any]] = []
        journal = Journal()
        journal.listen(lambda event, fields: self.journal_out.append(fields))
        self.conv = Conversation(cfg, self.speaker, journal, Notifier(), clock=lambda: self.now)
        self.conv.budget = DailyBudget(0, tmp)  # never the developer's own state file
        self.conv.session._open = self._open  # type: ignore[method-assign, assignment]
        self.conv.session.connect_now()

    def _open(self) -> FakeLink:
        link = FakeLink()
        self.links.append(link)
        return link

    def close(self) -> None:
        self.speaker.close()

    # ------------------------------------------------------------------ actions

    def handle(self, event: ev.Event) -> None:
        COUNTS["events"] += 1
        self.conv.handle(event)

    def link(self, target: str) -> FakeLink | None:
        session = self.conv.session
        if target == "next":
            return session.next  # type: ignore[return-value]
        if target == "stale":
            old = [x for x in self.links if x is not session.link and x is not session.next]
            return old[-1] if old else None
        return session.link  # type: ignore[return-value]

    def server(self, target: str, message: str) -> None:
        link = self.link(target)
        try:
            event = protocol.parse(message)
        except protocol.ProtocolError:
            COUNTS["rejected_by_parser"] += 1  # the link's reader logs and skips these
            return
        COUNTS["server_events"] += 1
        if link is not None:
            self.handle(ev.LinkMessage(link, event, self.now))  # type: ignore[arg-type]

    def advance(self, seconds: float) -> None:
        """Time passes: the speaker plays (at most 1 s of it, block by block) and the loop's
        timers run every 100 ms of it, as `Conversation.run` runs them; then the rest at once."""
        end = self.now + seconds
        for n in range(1, min(round(seconds / 0.02), 50) + 1):
            self.now += 0.02
            self.speaker._tick(self.now)  # type: ignore[attr-defined]
            self._speaker_events()
            if n % 5 == 0:
                self.conv.tick(self.now)
        self.now = max(self.now, end)
        self.conv.tick(self.now)
        self._speaker_events()

    def _speaker_events(self) -> None:
        pending, self.speaker_events = self.speaker_events, []
        for event in pending:
            self.handle(event)

    def connected(self, target: str) -> None:
        link = self.link(target)
        if link is not None and not link.up:
            link.up = True
            self.handle(ev.LinkUp(link))  # type: ignore[arg-type]

    def failed(self, target: str, kind: str) -> None:
        link = self.link(target)
        if link is not None and not link.up:
            self.handle(ev.LinkFailed(LinkError(kind, f"{kind} trouble"), link))  # type: ignore[arg-type]

    def dropped(self, target: str, code: int | None) -> None:
        link = self.link(target)
        if link is not None and link.up:
            link.close()
            self.handle(ev.LinkClosed(link, code, "gone"))  # type: ignore[arg-type]

    def check(self, captured: Captured) -> None:
        conv = self.conv
        broken = [r for r in captured.records if r.exc_info]
        assert not broken, logging.Formatter().format(broken[0])
        assert conv.state in STATES, conv.state
        assert conv.public_state in PUBLIC, conv.public_state
        assert (conv.turn is None) == (conv.state == "idle"), (conv.state, conv.turn)
        assert conv.session.state in ("offline", "connecting", "configuring", "ready")
        COUNTS[f"in_{conv.state}"] += 1
        assert not conv.session.ready or conv.session.link is not None

    def check_output(self, captured: Captured) -> None:
        texts = [json.dumps(r, default=str) for r in self.journal_out]
        texts += [captured.format(r) for r in captured.records]
        for link in self.links:
            for text in link.sent:
                assert json.loads(text)["type"] in CLIENT_TYPES, text[:200]
            texts += link.sent
        COUNTS["outputs_scanned"] += len(texts)
        for text in texts:
            assert self.key not in text, "the API key appeared in an output"


# ---------------------------------------------------------------------- generated server events

ids = st.sampled_from(["resp_1", "resp_2", "resp_3", ""])
items = st.sampled_from(["item_1", "item_2", ""])
pcm_b64 = st.binary(max_size=1200).map(lambda b: base64.b64encode(b).decode()) | st.text(
    max_size=12
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
messages = st.sampled_from(
    [
        "Conversation has none active response",
        "Your session was closed because no response was generated for 300 seconds.",
        "Invalid value: voice",
        "",
    ]
)
usage = st.fixed_dictionaries(
    {"total_tokens": st.integers(0, 500), "input_tokens": st.integers(0, 400)},
    optional={"output_tokens_details": st.fixed_dictionaries({"audio_tokens": st.integers(0, 9)})},
)


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": "event_x", "type": kind, **fields}


def _shaped(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"event_id": st.just("event_x"), "type": st.just(kind), **fields})


text = st.text(max_size=8)
session = st.fixed_dictionaries({"id": st.sampled_from(["s1", "s2"])})
realistic = st.one_of(
    _shaped("session.created", session=session),
    _shaped("session.updated", session=session),
    _shaped("input_audio_buffer.speech_started", item_id=items),
    _shaped("input_audio_buffer.speech_stopped", item_id=items),
    _shaped("input_audio_buffer.committed", item_id=items),
    _shaped("response.created", response=st.fixed_dictionaries({"id": ids})),
    _shaped("response.audio.delta", response_id=ids, delta=pcm_b64),
    _shaped("response.audio.done", response_id=ids),
    _shaped("response.audio_transcript.delta", response_id=ids, delta=text),
    _shaped("response.audio_transcript.done", response_id=ids, transcript=text),
    _shaped(
        "conversation.item.input_audio_transcription.completed", item_id=items, transcript=text
    ),
    _shaped(
        "response.done",
        response=st.fixed_dictionaries(
            {"id": ids, "status": st.sampled_from(["completed", "cancelled", "failed", ""])},
            optional={"usage": usage},
        ),
    ),
    _shaped("error", error=st.fixed_dictionaries({"message": messages, "code": st.just("x")})),
    _shaped("response.output_item.added", item=st.just({})),
)
garbage = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from([*sorted(protocol._PARSERS), "zzz.unknown"]),
    st.dictionaries(
        st.sampled_from(["response", "session", "error", "delta", "item_id", "response_id"]),
        json_values,
        max_size=4,
    ),
)
server_text = st.one_of(
    realistic.map(json.dumps), garbage.map(json.dumps), st.sampled_from(["", "not json", "[1]"])
)
targets = st.sampled_from(["current"] * 8 + ["next", "stale"])
actions = st.one_of(
    st.tuples(st.just("server"), targets, server_text),
    st.tuples(st.just("server"), targets, server_text),
    st.tuples(st.just("server"), targets, server_text),
    st.tuples(st.just("mic"), st.integers(1, 10)),
    st.tuples(st.just("say"), st.integers(5, 40), items),
    st.tuples(st.just("answer"), ids, st.integers(0, 6), targets),
    st.tuples(st.sampled_from(["press", "release", "tap"])),
    st.tuples(st.just("time"), st.sampled_from([0.02, 0.1, 0.5, 3.0, 31.0, 7000.0])),
    st.tuples(st.just("connected"), targets),
    st.tuples(st.just("failed"), targets, st.sampled_from(["auth", "quota", "network"])),
    st.tuples(st.just("dropped"), targets, st.sampled_from([None, 1000, 1006, 1007, 1011])),
)


def _apply(rig: Rig, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "server":
        rig.server(action[1], action[2])
    elif kind == "mic":
        noise = np.random.default_rng(action[1]).integers(-9000, 9000, 320).astype(np.int16)
        for _ in range(action[1]):
            rig.now += 0.02
            rig.handle(ev.MicBlock(noise, rig.now))
    elif kind == "say":  # a whole utterance: the button (manual) or the service's VAD edges
        edge = "input_audio_buffer.speech_%s"
        if rig.conv.vad:
            rig.server("current", json.dumps(_event(edge % "started", item_id=action[2])))
        else:
            rig.handle(ev.Press("fuzz", rig.now))
        _apply(rig, ("mic", action[1]))
        if rig.conv.vad:
            rig.server("current", json.dumps(_event(edge % "stopped", item_id=action[2])))
        else:
            rig.handle(ev.Release("fuzz", rig.now))
    elif kind == "answer":  # a whole response in the documented order
        rid, deltas, target = action[1], action[2], action[3]
        pcm = base64.b64encode(np.full(2400, 3000, "<i2").tobytes()).decode()
        answer = [_event("response.created", response={"id": rid})]
        answer += [_event("response.audio.delta", response_id=rid, delta=pcm)] * deltas
        answer += [
            _event("response.audio_transcript.done", response_id=rid, transcript="Hi."),
            _event("response.audio.done", response_id=rid),
            _event("response.done", response={"id": rid, "status": "completed"}),
        ]
        for event in answer:
            rig.server(target, json.dumps(event))
    elif kind == "press":
        rig.handle(ev.Press("fuzz", rig.now))
    elif kind == "release":
        rig.handle(ev.Release("fuzz", rig.now))
    elif kind == "tap":
        rig.handle(ev.Tap("fuzz", rig.now))
    elif kind == "time":
        rig.advance(action[1])
    elif kind == "connected":
        rig.connected(action[1])
    elif kind == "failed":
        rig.failed(action[1], action[2])
    elif kind == "dropped":
        rig.dropped(action[1], action[2])


def test_generated_server_events_never_break_the_state_machine(tmp_path: Path) -> None:
    examples = itertools.count()
    captured = Captured()
    root = logging.getLogger("omnid")
    old_level = root.level

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        mode=st.sampled_from(["manual", "vad"]),
        guard=st.sampled_from(["half_duplex", "off"]),
        steps=st.lists(actions, min_size=30, max_size=70),
    )
    def one(mode: str, guard: str, steps: list[tuple[Any, ...]]) -> None:
        COUNTS["examples"] += 1
        captured.records.clear()
        rig = Rig(tmp_path / str(next(examples)), mode, guard, make_key())
        try:
            # A session comes up first, so that most events meet a configured one.
            rig.connected("current")
            rig.server("current", json.dumps(_event("session.created", session={"id": "s0"})))
            rig.server("current", json.dumps(_event("session.updated", session={"id": "s0"})))
            for step in steps:
                _apply(rig, step)
                rig.check(captured)
            rig.check_output(captured)
        finally:
            rig.close()

    root.addHandler(captured)
    root.setLevel(logging.DEBUG)
    try:
        one()
    finally:
        root.removeHandler(captured)
        root.setLevel(old_level)
    print(
        f"\nstate fuzz: {COUNTS['examples']} conversations, {COUNTS['server_events']} generated "
        f"server events parsed and handled ({COUNTS['rejected_by_parser']} more rejected by the "
        f"parser), {COUNTS['events']} events in all, {COUNTS['outputs_scanned']} outputs "
        "scanned for the key: 0 crashes"
    )
    assert COUNTS["server_events"] >= EXAMPLES * 10
