"""The tools every box has: the time, the volume, and timers.

`get_time` answers from the box's own clock and says whether that clock is synchronised: a Pi
has no battery-backed clock, so after a power cut without network it may be days off, and the
model should say so rather than state a wrong time with confidence. `set_volume` is the same
path as `omnid ctl volume` (the conversation's playback applies it; the state file is written
off the conversation thread) — inline, because the speaker belongs to the conversation thread
and changing its gain never blocks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from omnid.config_schema import ToolParamConfig
from omnid.timers import TimerError, Timers
from omnid.tools import Outcome, error_output
from omnid.tools.params import json_schema, parse_arguments

log = logging.getLogger("omnid.tools")

TIME_ERROR = 5  # adjtimex(2): "the clock is not synchronized"


def clock_synchronised() -> bool | None:
    """What the kernel says about NTP discipline (as `timedatectl`'s NTPSynchronized does):
    adjtimex with no modes only reads the state. None when it cannot be asked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0, read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


def _declaration(name: str, description: str, params: dict[str, ToolParamConfig]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": json_schema(params)},
    }


class GetTime:
    name = "get_time"
    source = "builtin"
    confirm = False
    inline = False
    description = (
        "The local date, time, weekday and time zone of the box, and whether its clock is "
        "synchronised (if not, the time may be wrong: say so)."
    )

    def __init__(self, now: Callable[[], dt.datetime] | None = None) -> None:
        self._now = now or (lambda: dt.datetime.now().astimezone())

    def declaration(self) -> dict[str, Any]:
        return _declaration(self.name, self.description, {})

    def bind(self, arguments: str) -> Callable[[], Outcome]:
        parse_arguments(arguments, {})
        return self._work

    def _work(self) -> Outcome:
        now = self._now()
        offset = now.strftime("%z")
        answer = {
            "date": now.date().isoformat(),
            "time": now.strftime("%H:%M"),
            "weekday": now.strftime("%A"),
            "time_zone": now.tzname() or "",
            "utc_offset": f"{offset[:3]}:{offset[3:]}" if offset else "",
            "clock_synchronised": clock_synchronised(),
        }
        return Outcome("ok", json.dumps(answer))


class SetVolume:
    name = "set_volume"
    source = "builtin"
    confirm = False
    inline = True
    description = "Set the loudness of the box's speaker, from 0 (silent) to 100 (loudest)."
    params: ClassVar[dict[str, ToolParamConfig]] = {
        "level": ToolParamConfig(
            type="integer", minimum=0, maximum=100, description="the new volume, 0 to 100"
        )
    }

    def __init__(self, volume: Callable[[list[str]], str]) -> None:
        self._volume = volume  # `omnid ctl volume`'s path: an error message, or "" when done

    def declaration(self) -> dict[str, Any]:
        return _declaration(self.name, self.description, self.params)

    def bind(self, arguments: str) -> Callable[[], Outcome]:
        level = int(parse_arguments(arguments, self.params)["level"])
        return lambda: self._set(level)

    def _set(self, level: int) -> Outcome:
        error = self._volume([str(level)])
        if error:
            return Outcome("error", error_output(error))
        return Outcome("ok", json.dumps({"volume": level}))


_LABEL = ToolParamConfig(
    type="string", description="a short name for the timer, e.g. pasta or tea", pattern=r"[^-].*"
)


class _TimerTool:
    """The timer tools change what the conversation thread owns (the timers) and never
    block: they run inline, like the volume."""

    source = "builtin"
    confirm = False
    inline = True
    name = ""
    description = ""
    params: ClassVar[dict[str, ToolParamConfig]] = {}

    def __init__(self, timers: Timers) -> None:
        self._timers = timers

    def declaration(self) -> dict[str, Any]:
        return _declaration(self.name, self.description, self.params)

    def bind(self, arguments: str) -> Callable[[], Outcome]:
        values = parse_arguments(arguments, self.params)
        return lambda: self._answer(values)

    def _answer(self, values: dict[str, Any]) -> Outcome:
        try:
            return Outcome("ok", json.dumps(self._do(values)))
        except TimerError as exc:
            return Outcome("error", error_output(str(exc)))

    def _do(self, values: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class SetTimer(_TimerTool):
    name = "set_timer"
    description = (
        "Start a timer that rings on this box after the given number of seconds. The same label "
        "again replaces that timer."
    )
    params: ClassVar[dict[str, ToolParamConfig]] = {
        "seconds": ToolParamConfig(
            type="integer", minimum=1, maximum=86400, description="how long, in seconds"
        ),
        "label": _LABEL,
    }

    def _do(self, values: dict[str, Any]) -> dict[str, Any]:
        timer = self._timers.set_timer(values["label"], int(values["seconds"]))
        return {"set": self._timers.describe(timer)}


class SetAlarm(_TimerTool):
    name = "set_alarm"
    description = (
        "Set an alarm that rings on this box the next time the local clock shows the given "
        "time. The same label again replaces it."
    )
    params: ClassVar[dict[str, ToolParamConfig]] = {
        "time": ToolParamConfig(
            type="string",
            pattern=r"([01][0-9]|2[0-3]):[0-5][0-9]",
            description="the time of day, 24-hour HH:MM",
        ),
        "label": _LABEL,
    }

    def _do(self, values: dict[str, Any]) -> dict[str, Any]:
        timer = self._timers.set_alarm(values["label"], values["time"])
        return {"set": self._timers.describe(timer)}


class CancelTimer(_TimerTool):
    name = "cancel_timer"
    description = "Cancel a timer or alarm of this box, by its label."
    params: ClassVar[dict[str, ToolParamConfig]] = {"label": _LABEL}

    def _do(self, values: dict[str, Any]) -> dict[str, Any]:
        return {"cancelled": self._timers.cancel(values["label"]).label}


class ListTimers(_TimerTool):
    name = "list_timers"
    description = "The timers and alarms set on this box, and when each rings."

    def _do(self, values: dict[str, Any]) -> dict[str, Any]:
        return {"timers": [self._timers.describe(t) for t in self._timers.running()]}
