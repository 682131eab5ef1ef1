"""Function calling: which user turns call a tool, and which call ids still owe an output.

A real model decides by itself whether to call a tool; a test peer must decide in a way the test
controls. Two options say so (`SimOptions.call`, `SimOptions.script`; the shapes are in
`omnid simulate --help` and below), and `CallPlanner` turns them into a `TurnPlan` per user turn.

The script is indexed by *answered* user turns of the whole simulator, shared by every
connection: a turn counts once a response that calls nothing ends `completed` (the plain answer,
or the spoken answer that follows the tool results). A turn whose connection dropped before that
is asked again on the next connection and meets the same entry again — as the real model, asked
the same question again, calls the same tool again (with a new call id). Past the end of the
script, `--call` applies (a plain answer when there is none).

Script shape — a JSON list, one entry per answered turn:
    null | {}                                      a plain answer
    {"calls": [CALL, …], "speak_first": false}     call these tools (speak first when true)
    CALL = {"name": "set_volume", "arguments": {"level": 30}}
         | {"name": "x", "arguments_raw": "{not json"}   the arguments string, sent verbatim
         + optional "force": true                  call it even if the session did not declare it

Faithful limits: a model calls only tools the session declared (unless `force`, a misbehaving
model), and a model without function calling (`ModelInfo.tools` false) never calls, forced or not.

What a session then does with the calls (ids, outputs, the follow-up answer) is functions.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ScriptError(ValueError):
    """A `--call` or `--script` that cannot be used; the message is one readable line."""


@dataclass(frozen=True)
class CallSpec:
    name: str
    arguments: str  # exactly the string the call carries on the wire
    force: bool = False


@dataclass(frozen=True)
class TurnPlan:
    calls: tuple[CallSpec, ...] = ()
    speak_first: bool = False


PLAIN = TurnPlan()


def parse_call(text: str) -> CallSpec:
    """`NAME` or `NAME=JSON-OBJECT` (the `--call` flag) → a call with those arguments."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not name:
        raise ScriptError(f"--call {text!r}: the tool name is empty (expected NAME[=JSON])")
    if not sep:
        return CallSpec(name, "{}")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ScriptError(f"--call {text!r}: the arguments are not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ScriptError(f"--call {text!r}: the arguments must be a JSON object")
    return CallSpec(name, json.dumps(value, ensure_ascii=False))


def load_script(script: str | Path | list[Any] | None) -> list[TurnPlan]:
    """A script file's path (or its already parsed list) → one plan per answered turn."""
    if script is None:
        return []
    if isinstance(script, list):
        return parse_script(script, "script")
    if not isinstance(script, str | Path):
        raise ScriptError(f"script must be a path or a list, got {_kind(script)}")
    where = f"--script {script}"
    try:
        text = Path(script).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{where}: cannot read it ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ScriptError(f"{where}: not valid JSON ({exc})") from None
    return parse_script(data, where)


def parse_script(data: Any, where: str) -> list[TurnPlan]:
    if not isinstance(data, list):
        raise ScriptError(f"{where}: expected a JSON list of turn entries, got {_kind(data)}")
    return [_entry(entry, f"{where}: entry {i}") for i, entry in enumerate(data)]


def _entry(entry: Any, where: str) -> TurnPlan:
    if entry is None:
        return PLAIN
    if not isinstance(entry, dict):
        raise ScriptError(f"{where}: expected null or an object, got {_kind(entry)}")
    _no_unknown_keys(entry, {"calls", "speak_first"}, where)
    calls = entry.get("calls", [])
    if not isinstance(calls, list):
        raise ScriptError(f"{where}: 'calls' must be a list, got {_kind(calls)}")
    speak_first = entry.get("speak_first", False)
    if not isinstance(speak_first, bool):
        raise ScriptError(f"{where}: 'speak_first' must be true or false")
    specs = tuple(_call(call, f"{where}: calls[{j}]") for j, call in enumerate(calls))
    return TurnPlan(specs, speak_first)


def _call(call: Any, where: str) -> CallSpec:
    if not isinstance(call, dict):
        raise ScriptError(f"{where}: expected an object, got {_kind(call)}")
    _no_unknown_keys(call, {"name", "arguments", "arguments_raw", "force"}, where)
    name = call.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ScriptError(f"{where}: 'name' must be a non-empty string")
    force = call.get("force", False)
    if not isinstance(force, bool):
        raise ScriptError(f"{where}: 'force' must be true or false")
    if "arguments" in call and "arguments_raw" in call:
        raise ScriptError(f"{where}: give 'arguments' or 'arguments_raw', not both")
    if "arguments_raw" in call:
        raw = call["arguments_raw"]
        if not isinstance(raw, str):
            raise ScriptError(f"{where}: 'arguments_raw' must be a string")
        return CallSpec(name.strip(), raw, force)
    arguments = call.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ScriptError(
            f"{where}: 'arguments' must be a JSON object (use 'arguments_raw' for a string)"
        )
    return CallSpec(name.strip(), json.dumps(arguments, ensure_ascii=False), force)


def _no_unknown_keys(obj: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ScriptError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


class CallPlanner:
    """The plan for each user turn, from `--call` and `--script`; one per simulator process."""

    def __init__(self, calls: list[str], script: str | Path | list[Any] | None) -> None:
        if isinstance(calls, str) or not all(isinstance(c, str) for c in calls):
            raise ScriptError(f"call must be a list of NAME[=JSON] strings, got {calls!r}")
        self._default = TurnPlan(tuple(parse_call(c) for c in calls))
        self._script = load_script(script)
        self.answered = 0  # user turns answered so far, across all connections

    def plan(self, model_calls_tools: bool, declared: set[str]) -> TurnPlan:
        """What the next user turn's response does: only declared (or forced) tools, and
        nothing at all for a model without function calling."""
        if not model_calls_tools:
            return PLAIN
        index = self.answered
        plan = self._script[index] if index < len(self._script) else self._default
        calls = tuple(c for c in plan.calls if c.force or c.name in declared)
        return TurnPlan(calls, plan.speak_first) if calls else PLAIN

    def turn_answered(self) -> None:
        self.answered += 1
