"""Streaming one response: every event of the documented order, the echo audio, honest usage.

The "model" answers with the user's own committed audio resampled 16 → 24 kHz (soxr, default
quality), so an end-to-end test can correlate what it spoke with what it plays; and with a
deterministic sentence about it, so transcripts can be asserted exactly. The answer to tool
results says each output verbatim ("The tool said: …") and echoes the user audio that the
calling response answered, so the final spoken answer still correlates with what the user said.

A response holds a spoken message item, function call items (planned by the session, see
calls.py), or both (`speak_first`: the message, then the calls). Pacing is part of what is
simulated: the first audio delta, or the first event of the first call, comes `first_audio_s`
after `response.create`, then one step (a 100 ms audio delta, a text delta, an arguments delta)
every `0.1 / pace` s (pace 0 = no waiting at all).

Usage counts only what was really sent (see `ResponseStream.usage`), so a cancelled response
bills the audio that went out before the cancel, as the service does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import soxr

from omnid.models import AUDIO_TOKENS_PER_S, WIRE_INPUT_RATE, WIRE_OUTPUT_RATE
from omnid.simulator.events import Event

Send = Callable[[Event], Awaitable[None]]
Link = Callable[[str], str | None]  # item id → the previous item's id (the conversation chain)

DELTA_S = 0.1
DELTA_SAMPLES = int(WIRE_OUTPUT_RATE * DELTA_S)
SILENT_ANSWER_S = 0.5  # audio of an answer with no user audio to echo
WORDS_PER_TRANSCRIPT_DELTA = 2
ARGUMENT_DELTAS = 3  # an arguments string goes out in (at most) this many deltas
MAX_SPOKEN_OUTPUT = 300  # a longer tool output is cut (with "…") in the spoken answer


@dataclass
class PlannedCall:
    call_id: str
    item_id: str
    name: str
    arguments: str


@dataclass
class ResponseInput:
    """Everything a response answers and is billed for (built by the session)."""

    response_id: str
    item_id: str  # of the spoken message item
    conversation_id: str
    modalities: list[str]
    voice: str
    instructions: str
    audio: np.ndarray  # int16, 16 kHz mono: the unanswered committed user audio (billed)
    image_tokens: list[int] = field(default_factory=list)
    tool_outputs: list[str] = field(default_factory=list)
    echo: np.ndarray | None = None  # what to echo instead of `audio` (not billed again)
    calls: list[PlannedCall] = field(default_factory=list)
    speak: bool = True  # stream the message item (a calling response speaks only if asked)


def answer_text(inp: ResponseInput) -> str:
    """The deterministic answer: it names what was received, so tests can assert on it."""
    sentences = []
    seconds = len(inp.audio) / WIRE_INPUT_RATE
    if len(inp.audio) or inp.image_tokens or not inp.tool_outputs:
        text = f"You said something {seconds:.1f} seconds long" if len(inp.audio) else "Noted"
        if inp.image_tokens:
            n = len(inp.image_tokens)
            text += f" and showed me {n} image{'s' if n > 1 else ''}"
        sentences.append(text + ".")
    for output in inp.tool_outputs:
        if len(output) > MAX_SPOKEN_OUTPUT:
            output = output[: MAX_SPOKEN_OUTPUT - 1] + "…"
        sentences.append(f"The tool said: {output}.")
    return " ".join(sentences)


def split_deltas(text: str) -> list[str]:
    """A few words per delta, whitespace kept, so `"".join(deltas) == text`."""
    words = re.findall(r"\S+\s*", text)
    step = WORDS_PER_TRANSCRIPT_DELTA
    return ["".join(words[i : i + step]) for i in range(0, len(words), step)]


def split_arguments(arguments: str) -> list[str]:
    """A few chunks, `"".join(chunks) == arguments`; one empty chunk for an empty string."""
    size = max(1, math.ceil(len(arguments) / ARGUMENT_DELTAS))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


class ResponseStream:
    """One response from `response.created` to `response.done`; `cancel()` ends it early."""

    def __init__(
        self,
        inp: ResponseInput,
        send: Send,
        *,
        first_audio_s: float,
        pace: float,
        link: Link = lambda item_id: None,
        on_done: Callable[[ResponseStream], None] | None = None,
    ) -> None:
        self.inp = inp
        self._send = send
        self._link = link
        self._on_done = on_done
        self._first_audio_s = max(0.0, first_audio_s)
        self._pace = pace
        self._cancel = asyncio.Event()
        self.text = answer_text(inp)
        self._deltas = split_deltas(self.text)
        speaks_audio = self.with_audio and inp.speak
        self.audio_out = self._echo_audio() if speaks_audio else np.zeros(0, np.int16)
        self.text_sent = ""
        self.samples_sent = 0
        self.arguments_sent: dict[str, str] = {}  # call id → arguments sent so far
        self.calls_completed: set[str] = set()  # call ids whose arguments.done went out
        self.output: list[Event] = []  # finished output items, for response.done
        self.status = "in_progress"

    @property
    def with_audio(self) -> bool:
        return "audio" in self.inp.modalities

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def _echo_audio(self) -> np.ndarray:
        source = self.inp.echo if self.inp.echo is not None else self.inp.audio
        if len(source) == 0:
            return np.zeros(int(WIRE_OUTPUT_RATE * SILENT_ANSWER_S), np.int16)
        out = soxr.resample(source, WIRE_INPUT_RATE, WIRE_OUTPUT_RATE)
        return np.asarray(out, dtype=np.int16)

    async def run(self) -> None:
        start = asyncio.get_running_loop().time()
        await self._send(self._response_event("response.created"))
        first_due = start + self._first_audio_s
        step = 0  # paced steps so far: the calls follow the spoken part
        if self.inp.speak:
            step = await self._speak(first_due)
        for call in self.inp.calls:
            if self.cancelled:
                break
            step = await self._call(call, first_due, step)
        self.status = "cancelled" if self.cancelled else "completed"
        await self._finish()

    def _due(self, first_due: float, k: int) -> float:
        return first_due + (k * DELTA_S / self._pace if self._pace > 0 else 0.0)

    # -- the spoken message item ---------------------------------------------------------------

    async def _speak(self, first_due: float) -> int:
        """The message item from output_item.added to output_item.done; returns steps used."""
        item = self._message_item("in_progress", [])
        await self._send({"type": "response.output_item.added", **self._out_ids(), "item": item})
        await self._send(
            {
                "type": "conversation.item.created",
                "previous_item_id": self._link(self.inp.item_id),
                "item": item,
            }
        )
        await self._send(
            {"type": "response.content_part.added", **self._ids(), "part": self._part("")}
        )
        if self.with_audio:
            steps = await self._stream_audio(first_due)
        else:
            steps = await self._stream_text(first_due)
        ids = self._ids()
        if self.with_audio:
            await self._send(
                {"type": "response.audio_transcript.done", **ids, "transcript": self.text_sent}
            )
            await self._send({"type": "response.audio.done", **ids})
        else:
            await self._send({"type": "response.text.done", **ids, "text": self.text_sent})
        part = self._part(self.text_sent)
        await self._send({"type": "response.content_part.done", **ids, "part": part})
        item = self._message_item("incomplete" if self.cancelled else "completed", [part])
        await self._send({"type": "response.output_item.done", **self._out_ids(), "item": item})
        self.output.append(item)
        return steps

    async def _stream_audio(self, first_due: float) -> int:
        chunks = range(0, len(self.audio_out), DELTA_SAMPLES)
        for k, offset in enumerate(chunks):
            if not await self._sleep_until(self._due(first_due, k)):
                return k
            if k < len(self._deltas):
                await self._send_text_delta("response.audio_transcript.delta", self._deltas[k])
            pcm = self.audio_out[offset : offset + DELTA_SAMPLES]
            b64 = base64.b64encode(pcm.astype("<i2").tobytes()).decode("ascii")
            await self._send({"type": "response.audio.delta", **self._ids(), "delta": b64})
            self.samples_sent += len(pcm)
        for delta in self._deltas[len(chunks) :]:
            if self.cancelled:
                break
            await self._send_text_delta("response.audio_transcript.delta", delta)
        return len(chunks)

    async def _stream_text(self, first_due: float) -> int:
        for k, delta in enumerate(self._deltas):
            if not await self._sleep_until(self._due(first_due, k)):
                return k
            await self._send_text_delta("response.text.delta", delta)
        return len(self._deltas)

    async def _send_text_delta(self, kind: str, delta: str) -> None:
        await self._send({"type": kind, **self._ids(), "delta": delta})
        self.text_sent += delta

    # -- function call items -------------------------------------------------------------------

    async def _call(self, call: PlannedCall, first_due: float, step: int) -> int:
        """One function_call item, its arguments in a few paced deltas; returns steps used.

        Cancelled before it starts, the call is not emitted at all; cancelled midway, it ends
        with `output_item.done` (status incomplete) and no `function_call_arguments.done`, so
        that no client runs a call with truncated arguments."""
        chunks = split_arguments(call.arguments)
        if not await self._sleep_until(self._due(first_due, step)):
            return step
        index = len(self.output)
        out_ids = {"response_id": self.inp.response_id, "output_index": index}
        ids = {**out_ids, "item_id": call.item_id, "call_id": call.call_id}
        item = self._call_item(call, "in_progress", "")
        await self._send({"type": "response.output_item.added", **out_ids, "item": item})
        await self._send(
            {
                "type": "conversation.item.created",
                "previous_item_id": self._link(call.item_id),
                "item": item,
            }
        )
        sent = ""
        for k, chunk in enumerate(chunks):
            if k and not await self._sleep_until(self._due(first_due, step + k)):
                break
            await self._send(
                {"type": "response.function_call_arguments.delta", **ids, "delta": chunk}
            )
            sent += chunk
            self.arguments_sent[call.call_id] = sent
        else:
            await self._send(
                {
                    "type": "response.function_call_arguments.done",
                    **ids,
                    "name": call.name,
                    "arguments": call.arguments,
                }
            )
            self.calls_completed.add(call.call_id)
        status = "completed" if call.call_id in self.calls_completed else "incomplete"
        item = self._call_item(call, status, sent)
        await self._send({"type": "response.output_item.done", **out_ids, "item": item})
        self.output.append(item)
        return step + len(chunks)

    # -- the end -------------------------------------------------------------------------------

    async def _sleep_until(self, deadline: float) -> bool:
        """Wait for `deadline` unless cancelled first; False once the response is cancelled."""
        delay = deadline - asyncio.get_running_loop().time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cancel.wait(), delay)
        else:
            await asyncio.sleep(0)  # let a pending response.cancel be read even at pace 0
        return not self.cancelled

    async def _finish(self) -> None:
        done = self._response_event("response.done", output=self.output)
        done["response"]["usage"] = self.usage()
        if self.status == "cancelled":
            done["response"]["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
        if self._on_done is not None:
            # Before sending: a client that answers response.done with response.create (or with
            # tool outputs) at once must find no active response, even if this send yields.
            self._on_done(self)
        await self._send(done)

    def usage(self) -> dict[str, object]:
        """Tokens for what was really sent; rules (the service's where documented):

        - input audio: round(user audio seconds × 12.5) — new user audio only; the audio a
          follow-up answer echoes was billed with the calling response;
        - input text: ceil(len(instructions) / 4) + ceil(len(tool outputs) / 4) — an estimate,
          the service's tokenizer is not available;
        - input images: `omnid.models.image_tokens` of each image's real JPEG size; the
          undocumented `image_tokens` detail is present only when images were sent;
        - output audio: round(seconds of audio actually sent × 12.5);
        - output text: the words of the transcript/text actually sent, plus
          ceil(len(arguments sent) / 4) for each function call.
        """
        in_audio = round(len(self.inp.audio) / WIRE_INPUT_RATE * AUDIO_TOKENS_PER_S)
        in_text = math.ceil(len(self.inp.instructions) / 4) + math.ceil(
            sum(len(o) for o in self.inp.tool_outputs) / 4
        )
        in_image = sum(self.inp.image_tokens)
        out_audio = round(self.samples_sent / WIRE_OUTPUT_RATE * AUDIO_TOKENS_PER_S)
        out_text = len(self.text_sent.split()) + sum(
            math.ceil(len(a) / 4) for a in self.arguments_sent.values()
        )
        in_details: dict[str, int] = {"text_tokens": in_text, "audio_tokens": in_audio}
        if self.inp.image_tokens:
            in_details["image_tokens"] = in_image
        total_in = in_text + in_audio + in_image
        total_out = out_text + out_audio
        return {
            "total_tokens": total_in + total_out,
            "input_tokens": total_in,
            "output_tokens": total_out,
            "input_tokens_details": in_details,
            "output_tokens_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }

    # -- event parts ---------------------------------------------------------------------------

    def _response_event(self, kind: str, output: list[Event] | None = None) -> Event:
        response: Event = {
            "id": self.inp.response_id,
            "object": "realtime.response",
            "conversation_id": self.inp.conversation_id,
            "status": self.status,
            "status_details": None,
            "modalities": self.inp.modalities,
            "voice": self.inp.voice,
            "output": list(output or []),
        }
        return {"type": kind, "response": response}

    def _message_item(self, status: str, content: list[Event]) -> Event:
        return {
            "id": self.inp.item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _call_item(self, call: PlannedCall, status: str, arguments: str) -> Event:
        return {
            "id": call.item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": status,
            "name": call.name,
            "call_id": call.call_id,
            "arguments": arguments,
        }

    def _part(self, text: str) -> Event:
        return {"type": "audio" if self.with_audio else "text", "text": text}

    def _out_ids(self) -> Event:
        return {"response_id": self.inp.response_id, "output_index": 0}

    def _ids(self) -> Event:
        return {**self._out_ids(), "item_id": self.inp.item_id, "content_index": 0}
