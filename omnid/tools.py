"""The functions the model may call: the seam the conversation calls them through.

The conversation hands each `function_call` of a finished response to `Tools.call` with its
`post`, and carries on; the function runs wherever its implementation decides (never on the
conversation thread when it can block) and posts one `FunctionResult` back. When every call of
the response has its result, the conversation sends them and asks for the turn's next response.
`NoTools` is what runs while no tool is declared: every call is answered with an error the model
can read, and nothing runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Protocol

from omnid import events as ev
from omnid.protocol import FunctionCall

log = logging.getLogger("omnid.tools")


class Tools(Protocol):
    def call(self, call: FunctionCall, post: Callable[[ev.Event], None]) -> None: ...


class NoTools:
    def call(self, call: FunctionCall, post: Callable[[ev.Event], None]) -> None:
        log.warning("the model called %r, which is not declared: answered with an error", call.name)
        output = json.dumps({"error": f"no function named {call.name!r} is available"})
        post(ev.FunctionResult(call.call_id, output))
