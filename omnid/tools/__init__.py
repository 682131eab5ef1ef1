"""The functions the model may call, and the one door every call goes through.

The conversation hands each `function_call` of a finished response to `Toolbox.prepare`, on its
own thread: an unknown name, malformed JSON or arguments outside the tool's table come back at
once as a `refused` outcome, and nothing runs. A valid call becomes an `Invocation` that the
conversation starts (at once, or after the owner's press when the tool asks for one) with
`Toolbox.start`; its work runs on a thread of its own — a command may take seconds — and posts
one `FunctionResult` back. Tools that only touch what the conversation thread owns and never
block (the volume) run inline, on that thread, and post their result the same way.

A call is identified for "at most once" by what it asks, not by its id: the service gives a
turn asked again after a dropped connection new call ids, so `Invocation.key` is the tool's
name and its arguments in canonical form.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from omnid import events as ev
from omnid.config import Config
from omnid.protocol import FunctionCall
from omnid.settings import Settings

log = logging.getLogger("omnid.tools")

OUTCOMES = ("ok", "error", "timeout", "refused", "unconfirmed", "superseded")


@dataclass(frozen=True)
class Outcome:
    """What a call came to: one of `OUTCOMES`, and the output the model reads."""

    outcome: str
    output: str
    duration_ms: float = 0.0


def error_output(message: str) -> str:
    """An output the model reads as a failure it can explain to the user."""
    return json.dumps({"error": message}, ensure_ascii=False)


class Tool(Protocol):
    """One function the model may call. `bind` validates the arguments (ArgumentError, a
    ValueError, with a sentence the model can read) and returns the work, not yet run."""

    name: str
    source: str  # where it comes from, for `omnid tools`: "builtin" or "command"
    confirm: bool  # runs only after the owner's press
    inline: bool  # non-blocking work on what the conversation thread owns: run there

    def declaration(self) -> dict[str, Any]: ...

    def bind(self, arguments: str) -> Callable[[], Outcome]: ...


@dataclass(frozen=True)
class Invocation:
    call: FunctionCall
    key: str  # the tool and its arguments: the same ask under any call id
    confirm: bool
    inline: bool
    work: Callable[[], Outcome]


def call_key(call: FunctionCall) -> str:
    """Name + arguments in canonical JSON (key order and spacing do not make a new ask)."""
    try:
        arguments = json.dumps(json.loads(call.arguments), sort_keys=True, separators=(",", ":"))
    except ValueError:
        arguments = call.arguments
    return f"{call.name}\n{arguments}"


Catalog = Callable[[Config, str], Mapping[str, Tool]]  # (config, mode) → tools by name


class Toolbox:
    """The declared tools of the current configuration (read live: a reload may change them),
    as the model sees them and as calls reach them."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        mode: str,
        version: Callable[[], int] = lambda: 0,
        missing: Callable[[str], str] = lambda name: "",
        trouble: Callable[[], list[str]] = lambda: [],
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._mode = mode
        self._missing = missing  # why a tool the model names is not there now ("" : unknown)
        self.trouble = trouble  # what is wrong with the tools' sources now, for STATUS
        self._version = version  # moves when an MCP server's tools come or go
        self._built: tuple[Config, int, Mapping[str, Tool]] | None = None

    def tools(self, cfg: Config | None = None) -> Mapping[str, Tool]:
        """The tools the model may call under `cfg` (default: the current config) in our mode."""
        cfg = cfg or self._settings.current
        version = self._version()
        if self._built is None or self._built[0] is not cfg or self._built[1] != version:
            tools = self._catalog(cfg, self._mode) if cfg.tools.enabled else {}
            self._built = (cfg, version, tools)
        return self._built[2]

    def declared(self, cfg: Config) -> list[dict[str, Any]]:
        """`session.update.tools` in the nested form the service documents."""
        return [tool.declaration() for tool in self.tools(cfg).values()]

    def prepare(self, call: FunctionCall) -> Invocation | Outcome:
        tool = self.tools().get(call.name)
        if tool is None:
            gone = self._missing(call.name)
            if gone:
                log.warning("the model called %r: %s", call.name, gone)
                return Outcome("error", error_output(f"{call.name} was not run: {gone}"))
            log.warning("the model called %r, which is not declared: refused", call.name)
            return Outcome("refused", error_output(f"no function named {call.name!r} is available"))
        try:
            work = tool.bind(call.arguments)
        except ValueError as exc:
            log.warning("call of %s refused: %s", call.name, exc)
            return Outcome("refused", error_output(f"{call.name} was not run: {exc}"))
        return Invocation(call, call_key(call), tool.confirm, tool.inline, work)

    def start(self, invocation: Invocation, post: Callable[[ev.Event], None]) -> None:
        """Run the work (a thread of its own, unless inline) and post its `FunctionResult`."""

        def run() -> None:
            started = time.monotonic()
            try:
                outcome = invocation.work()
            except Exception as exc:  # a tool's bug must not take the daemon down
                log.exception("tool %s failed", invocation.call.name)
                outcome = Outcome("error", error_output(f"the tool failed: {type(exc).__name__}"))
            duration = outcome.duration_ms or round((time.monotonic() - started) * 1000, 1)
            call = invocation.call
            post(ev.FunctionResult(call.call_id, outcome.output, outcome.outcome, duration))

        if invocation.inline:
            run()
        else:
            name = f"tool-{invocation.call.name}"
            threading.Thread(target=run, name=name, daemon=True).start()
