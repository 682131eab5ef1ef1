"""One realtime session: configuration, input buffers, and the commit → response state machine.

The session never touches the socket: it reads parsed client events (`handle`) and emits server
events through the `send` coroutine it was given, which makes it drivable without a network (the
VAD-hook test does exactly that). Every client mistake becomes one `error` event via
`ProtocolError` and leaves the session usable, as on the service.

State, in docs/protocol.md's terms:
- the *input buffer*: audio appended since the last commit/clear, plus the images appended
  after that audio (an image needs audio before it in the same buffer);
- *pending* input: committed user items (and tool results) that no response has answered yet —
  `response.create` consumes all of it, so two commits then one response answer both;
- at most one *active response*, streamed by a background task so that `response.cancel` and
  further appends are read while it plays;
- the *function calls* (functions.py): a response to user input may call tools, as the
  planner of calls.py says; the session then takes one `function_call_output` per issued call,
  and a `response.create` only once every call has its output.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from omnid.models import WIRE_OUTPUT_RATE, ModelInfo
from omnid.simulator.buffers import InputBuffer, PendingInput
from omnid.simulator.calls import CallPlanner
from omnid.simulator.events import Event, ProtocolError, new_id
from omnid.simulator.functions import FunctionCalls
from omnid.simulator.response import ResponseInput, ResponseStream
from omnid.simulator.vad import InputTimeline, TurnDetector, VadEdge, make_detector
from omnid.simulator.validate import apply_session_update, check_modalities, default_session

log = logging.getLogger(__name__)

Send = Callable[[Event], Awaitable[None]]
Note = Callable[[str, dict[str, Any]], None]
DetectorFactory = Callable[[dict[str, Any]], TurnDetector]

NO_ACTIVE_RESPONSE = "Conversation has none active response"
ALREADY_ACTIVE = "Conversation already has an active response"
USER_SPEAKING = "Cannot create response while user is speaking"
IDLE_BUFFER_MAX_MS = 30_000  # VAD mode, between turns: trim the buffer beyond this…
IDLE_BUFFER_KEEP_MS = 2_000  # …to this (covers prefix padding plus a starting loud run)


class Session:
    def __init__(
        self,
        model: ModelInfo,
        send: Send,
        *,
        first_audio_s: float = 0.15,
        pace: float = 2.0,
        note: Note | None = None,
        planner: CallPlanner | None = None,
        detector_factory: DetectorFactory = make_detector,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.id = new_id("sess")
        self.conversation_id = new_id("conv")
        self.config = default_session(self.id, model)
        self._send = send
        self._note = note or (lambda what, fields: None)
        self._first_audio_s = first_audio_s
        self._pace = pace
        self._detector_factory = detector_factory
        self._calls = FunctionCalls(planner, model.tools)  # planner None: never call a tool
        self._clock = clock
        self._buffer = InputBuffer(clock)
        self._pending: list[PendingInput] = []
        self._last_item_id: str | None = None
        self._speech_item_id: str | None = None
        self._speech_start_ms: int | None = None
        self._timeline = InputTimeline()
        self._vad = self._make_vad()
        self.response: ResponseStream | None = None
        self._response_task: asyncio.Task[None] | None = None
        self.audio_produced = False
        self._last_response_activity = clock()
        self._handlers: dict[str, Callable[[Event], Awaitable[None]]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append_audio,
            "input_audio_buffer.commit": self._commit_request,
            "input_audio_buffer.clear": self._clear,
            "input_image_buffer.append": self._append_image,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "conversation.item.create": self._item_create,
        }

    @property
    def manual(self) -> bool:
        return self.config["turn_detection"] is None

    def idle_for(self) -> float | None:
        """Seconds since a response last ran (None while one runs): the idle-close clock."""
        if self.response is not None:
            return None
        return self._clock() - self._last_response_activity

    async def start(self) -> None:
        await self._send({"type": "session.created", "session": copy.deepcopy(self.config)})

    async def handle(self, event: Any) -> None:
        """Apply one parsed client event; a refused one is answered with an `error` event."""
        try:
            if not isinstance(event, dict):
                raise ProtocolError("An event must be a JSON object.", code="invalid_event")
            kind = event.get("type")
            handler = self._handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                # session.finish lands here too: not an Omni event (docs/protocol.md).
                raise ProtocolError(
                    f"Invalid event type: {kind}", param="type", code="invalid_event_type"
                )
            await handler(event)
        except ProtocolError as exc:
            log.info("session %s: refused %s: %s", self.id, _kind(event), exc.message)
            await self._send(exc.to_event())

    async def close(self) -> None:
        """Stop a running response (the socket is gone; nothing more is sent)."""
        task = self._response_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- configuration -------------------------------------------------------------------------

    async def _session_update(self, event: Event) -> None:
        new, ignored = apply_session_update(
            self.config, event.get("session"), self.model, audio_produced=self.audio_produced
        )
        if ignored:
            self._note("ignored_fields", {"fields": ignored})
        vad_changed = new["turn_detection"] != self.config["turn_detection"]
        self.config = new
        if vad_changed:
            self._vad = self._make_vad()
            self._speech_item_id = None
        await self._send({"type": "session.updated", "session": copy.deepcopy(new)})

    def _make_vad(self) -> TurnDetector | None:
        td = self.config["turn_detection"]
        self._timeline.detector_restarted()
        return None if td is None else self._detector_factory(td)

    # -- input buffers -------------------------------------------------------------------------

    async def _append_audio(self, event: Event) -> None:
        pcm = self._buffer.append_audio(event.get("audio"))
        self._timeline.appended(len(pcm))
        if self._vad is not None and pcm:
            for edge in self._vad.feed(np.frombuffer(pcm, dtype="<i2")):
                await self._on_vad_edge(edge)
            if self._speech_item_id is None:
                self._timeline.trim(self._buffer, IDLE_BUFFER_MAX_MS, IDLE_BUFFER_KEEP_MS)

    async def _append_image(self, event: Event) -> None:
        self._buffer.append_image(event.get("image"))

    async def _clear(self, event: Event) -> None:
        self._reset_buffer()
        await self._send({"type": "input_audio_buffer.cleared"})

    def _reset_buffer(self) -> None:
        self._buffer.clear()
        self._timeline.buffer_emptied()
        self._speech_item_id = None  # the audio that was being spoken is gone
        if self._vad is not None:
            self._vad.reset()
            self._timeline.detector_restarted()

    async def _commit_request(self, event: Event) -> None:
        if not self.manual:
            raise ProtocolError(
                "input_audio_buffer.commit is not allowed in server VAD mode "
                "(the server commits when speech stops).",
                code="invalid_state",
            )
        await self._commit(new_id("item"))

    async def _commit(self, item_id: str, segment: tuple[int, int] | None = None) -> None:
        """Commit the whole buffer (manual) or a VAD segment [start_ms, end_ms) of it."""
        if segment is None:
            turn = self._buffer.take(item_id)
            self._timeline.buffer_emptied()
        else:
            turn = self._timeline.cut(self._buffer, item_id, *segment)
        previous = self._add_item(item_id)
        self._pending.append(turn)
        await self._send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._send(
            {"type": "conversation.item.created", "previous_item_id": previous, "item": item}
        )
        if self.config.get("input_audio_transcription"):
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": f"({turn.seconds:.1f} s of speech)",
                }
            )

    def _add_item(self, item_id: str) -> str | None:
        previous, self._last_item_id = self._last_item_id, item_id
        return previous

    async def _item_create(self, event: Event) -> None:
        item = event.get("item")
        call_id, output = self._calls.accept_output(item)
        assert isinstance(item, dict)  # accept_output checked it
        given_id = item.get("id")
        item_id = given_id if isinstance(given_id, str) and given_id else new_id("item")
        previous = self._add_item(item_id)
        self._pending.append(PendingInput(item_id, tool_output=output, call_id=call_id))
        created = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call_output",
            "status": "completed",
            "call_id": call_id,
            "output": output,
        }
        await self._send(
            {"type": "conversation.item.created", "previous_item_id": previous, "item": created}
        )

    # -- responses -----------------------------------------------------------------------------

    async def _response_create(self, event: Event) -> None:
        params = event.get("response")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ProtocolError("response must be an object", param="response")
        await self._start_response(params)

    async def _start_response(self, params: dict[str, Any], *, auto: bool = False) -> None:
        """`auto`: created by the server VAD, which never refuses for lack of tool outputs —
        the user spoke again, so the unanswered calls are abandoned (outputs still welcome)."""
        if self.response is not None:
            raise ProtocolError(ALREADY_ACTIVE, code="conversation_already_has_active_response")
        if self._speech_item_id is not None:
            raise ProtocolError(USER_SPEAKING, code="invalid_state")
        self._calls.check_create(auto=auto)
        modalities = self.config["modalities"]
        if params.get("modalities") is not None:
            modalities = check_modalities(params["modalities"], "response.modalities")
        instructions = params.get("instructions")
        if instructions is None:
            instructions = self.config["instructions"]
        elif not isinstance(instructions, str):
            raise ProtocolError("instructions must be a string", param="response.instructions")
        if not self._pending:
            raise ProtocolError(
                "No new input to respond to: commit the input audio buffer "
                "(or add a function_call_output item) first.",
                code="invalid_state",
            )
        turns, self._pending = self._pending, []
        audio = np.frombuffer(b"".join(t.audio for t in turns), dtype="<i2").astype(np.int16)
        outputs = [t.tool_output for t in turns if t.tool_output is not None]
        inp = ResponseInput(
            response_id=new_id("resp"),
            item_id=new_id("item"),
            conversation_id=self.conversation_id,
            modalities=modalities,
            voice=self.config["voice"],
            instructions=instructions,
            audio=audio,
            image_tokens=[img.tokens for t in turns for img in t.images],
            tool_outputs=outputs,
        )
        self._calls.prepare(inp, turns, self.config["tools"])
        stream = ResponseStream(
            inp,
            self._send,
            first_audio_s=self._first_audio_s,
            pace=self._pace,
            link=self._add_item,
            on_done=self._response_done,
        )
        self.response = stream
        self._last_response_activity = self._clock()
        self._response_task = asyncio.create_task(self._run_response(stream))

    async def _run_response(self, stream: ResponseStream) -> None:
        try:
            await stream.run()
            log.info(
                "session %s: response %s %s (%.1f s audio out)",
                self.id,
                stream.inp.response_id,
                stream.status,
                stream.samples_sent / WIRE_OUTPUT_RATE,
            )
        except Exception:
            log.exception("session %s: response %s failed", self.id, stream.inp.response_id)
        finally:
            self._response_done(stream)

    def _response_done(self, stream: ResponseStream) -> None:
        if self.response is stream:
            self.audio_produced = self.audio_produced or stream.samples_sent > 0
            self.response = None
            self._last_response_activity = self._clock()
            self._calls.response_ended(stream)

    async def _response_cancel(self, event: Event) -> None:
        if self.response is None:
            raise ProtocolError(NO_ACTIVE_RESPONSE, code="response_cancel_not_active")
        await self._cancel_active()

    async def _cancel_active(self) -> None:
        """Cancel and wait until the `*.done` events and `response.done` have gone out."""
        if self.response is not None:
            self.response.cancel()
        task = self._response_task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # -- server VAD (edges from vad.py's detector) ----------------------------------------------

    async def _on_vad_edge(self, edge: VadEdge) -> None:
        td = self.config["turn_detection"] or {}
        at_ms = self._timeline.edge_ms(edge)
        if edge.kind == "speech_started":
            self._speech_item_id, self._speech_start_ms = new_id("item"), at_ms
            await self._send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": at_ms,
                    "item_id": self._speech_item_id,
                }
            )
            if self.response is not None and td.get("interrupt_response", True):
                await self._cancel_active()  # barge-in: the *.done events and response.done
            return
        if edge.kind == "speech_continues":
            await self._transcription_delta(at_ms)
            return
        item_id, self._speech_item_id = self._speech_item_id or new_id("item"), None
        await self._send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": at_ms, "item_id": item_id}
        )
        start, self._speech_start_ms = self._speech_start_ms, None
        await self._commit(item_id, None if start is None else (start, at_ms))
        if td.get("create_response", True) and self.response is None:
            await self._start_response({}, auto=True)

    async def _transcription_delta(self, at_ms: int) -> None:
        """A deterministic preview while the user speaks: text (settled) + stash (tentative)."""
        if not self.config.get("input_audio_transcription") or self._speech_start_ms is None:
            return
        seconds = (at_ms - self._speech_start_ms) / 1000
        await self._send(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": self._speech_item_id,
                "content_index": 0,
                "text": f"({seconds:.1f} s",
                "stash": " of speech…)",
            }
        )


def _kind(event: Any) -> str:
    return str(event.get("type")) if isinstance(event, dict) else type(event).__name__
