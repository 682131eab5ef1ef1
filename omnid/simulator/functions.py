"""One session's function calling: the calls it issues, the outputs it accepts, the follow-up.

The docs say what a client sends after a call, not what the service does when it gets it wrong.
Where they are silent the simulator is strict on purpose: a client bug here (an output for a
call that never existed, sent twice, sent before the calling response ended, or a
`response.create` that forgets a call) would otherwise only show as a confused answer in the
field; so each such mistake is one `error` event, and the session stays usable.

The life of a call id, as this module tracks it:
- *active* while its response streams — an output for it is refused (send it after
  `response.done`);
- then *awaiting* its output (the response completed): `response.create` is refused until every
  awaiting call has one; a new server-VAD turn instead abandons them (the user moved on) and
  they become *optional* — an output is still accepted, but no longer required;
- *optional* too when its response was cancelled after the call's arguments were complete;
- *incomplete* when cancelled midway (no `function_call_arguments.done` went out): it takes no
  output;
- *answered* once its output arrived: a second output is refused.

The response that answers outputs never calls a tool again (no loops); it echoes the user audio
that the calling response answered, so the final spoken answer correlates with the question.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnid.simulator.buffers import PendingInput
from omnid.simulator.calls import CallPlanner
from omnid.simulator.events import ProtocolError, new_id
from omnid.simulator.response import PlannedCall, ResponseInput, ResponseStream

ACTIVE = "active"
AWAITING = "awaiting"
ANSWERED = "answered"
OPTIONAL = "optional"
INCOMPLETE = "incomplete"


class FunctionCalls:
    def __init__(self, planner: CallPlanner | None, model_calls_tools: bool) -> None:
        self._planner = planner  # None: never call
        self._model_calls_tools = model_calls_tools
        self._state: dict[str, str] = {}  # call id → one of the states above, in issue order
        self._response_of: dict[str, str] = {}  # call id → the response that issued it
        self._audio: dict[str, np.ndarray] = {}  # response id → the user audio it answered

    # -- conversation.item.create ---------------------------------------------------------------

    def accept_output(self, item: Any) -> tuple[str, str]:
        """Check one `function_call_output` item; returns (call_id, output), the call answered."""
        if not isinstance(item, dict) or item.get("type") != "function_call_output":
            raise ProtocolError(
                "Only items of type function_call_output can be created.", param="item.type"
            )
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not call_id:
            raise ProtocolError("item.call_id must be a non-empty string", param="item.call_id")
        if not isinstance(output, str):
            raise ProtocolError("item.output must be a string", param="item.output")
        state = self._state.get(call_id)
        if state is None:
            raise ProtocolError(
                f"Unknown call_id {call_id!r}: no function call with this id was issued in "
                "this session.",
                param="item.call_id",
            )
        if state == ANSWERED:
            raise ProtocolError(
                f"Function call {call_id!r} already has a function_call_output.",
                param="item.call_id",
            )
        if state == ACTIVE:
            raise ProtocolError(
                f"Function call {call_id!r} belongs to a response that is still active: send "
                "its output after response.done.",
                param="item.call_id",
                code="invalid_state",
            )
        if state == INCOMPLETE:
            raise ProtocolError(
                f"Function call {call_id!r} was cancelled before its arguments were complete; "
                "it takes no output.",
                param="item.call_id",
            )
        self._state[call_id] = ANSWERED
        return call_id, output

    # -- response.create ------------------------------------------------------------------------

    def check_create(self, *, auto: bool) -> None:
        """Refuse a client's `response.create` while a call has no output; a VAD-created
        response abandons those calls instead (see the module docstring)."""
        missing = [cid for cid, state in self._state.items() if state == AWAITING]
        if missing and auto:
            for call_id in missing:
                self._state[call_id] = OPTIONAL
        elif missing:
            raise ProtocolError(
                f"Cannot create a response: function call(s) {', '.join(missing)} have no "
                "function_call_output yet.",
                code="invalid_state",
            )

    def prepare(self, inp: ResponseInput, turns: list[PendingInput], tools: list[Any]) -> None:
        """Fill in what the response does about tools: echo for a follow-up, else maybe call."""
        if inp.tool_outputs:
            answered = [t.call_id for t in turns if t.call_id is not None]
            inp.echo = np.concatenate([self._audio_for(answered), inp.audio])
            return
        if self._planner is None:
            return
        declared = {tool["function"]["name"] for tool in tools}  # shape checked by validate.py
        plan = self._planner.plan(self._model_calls_tools, declared)
        inp.calls = [
            PlannedCall(new_id("call"), new_id("item"), spec.name, spec.arguments)
            for spec in plan.calls
        ]
        inp.speak = not inp.calls or plan.speak_first
        if inp.calls:
            self._audio[inp.response_id] = inp.audio
        for call in inp.calls:
            self._state[call.call_id] = ACTIVE
            self._response_of[call.call_id] = inp.response_id

    def response_ended(self, stream: ResponseStream) -> None:
        """The calls of a finished response now await outputs; a plain completed answer moves
        the planner's script on (calls.py: a turn counts once answered)."""
        for call in stream.inp.calls:
            if call.call_id not in stream.calls_completed:
                self._state[call.call_id] = INCOMPLETE
            else:
                self._state[call.call_id] = AWAITING if stream.status == "completed" else OPTIONAL
        if not stream.inp.calls and stream.status == "completed" and self._planner is not None:
            self._planner.turn_answered()

    def _audio_for(self, call_ids: list[str]) -> np.ndarray:
        """The user audio the calling response(s) of these calls answered, each once."""
        responses = dict.fromkeys(self._response_of[c] for c in call_ids if c in self._response_of)
        parts = [self._audio[r] for r in responses]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)
