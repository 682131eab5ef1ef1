"""Which tools a configuration declares: the built-in ones it lists, and the owner's commands.

A command tool is the owner's program, described to the model by its name, description and
typed parameter table. The model's arguments are validated against that table before anything
runs, and each replaces one whole element of the command's argv, so no argument can become a
second command, an option or a shell construct. It runs off the conversation thread, without a
shell, in its own process group, with a minimal environment (never the API key or a token).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TextIO

from omnid.config import Config
from omnid.config_schema import CommandToolConfig
from omnid.timers import Timers
from omnid.tools import Outcome, Tool, error_output
from omnid.tools.builtin import (
    CancelTimer,
    GetTime,
    ListTimers,
    SetAlarm,
    SetTimer,
    SetVolume,
)
from omnid.tools.command import minimal_env, run_command
from omnid.tools.params import json_schema, parse_arguments, render_argv


class CommandTool:
    source = "command"
    inline = False

    def __init__(self, spec: CommandToolConfig, default_timeout_s: float) -> None:
        self.spec = spec
        self.name = spec.name
        self.confirm = spec.confirm == "press"
        self.timeout_s = spec.timeout_s or default_timeout_s

    def declaration(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.spec.description,
                "parameters": json_schema(self.spec.parameters),
            },
        }

    def bind(self, arguments: str) -> Callable[[], Outcome]:
        values = parse_arguments(arguments, self.spec.parameters)
        argv = render_argv(self.spec.argv, values)
        return lambda: self._run(argv)

    def _run(self, argv: list[str]) -> Outcome:
        result = run_command(argv, timeout_s=self.timeout_s, env=minimal_env(self.name))
        if result.outcome == "ok":
            return Outcome("ok", result.output, result.duration_ms)
        return Outcome(
            result.outcome, error_output(f"{self.name}: {result.output}"), result.duration_ms
        )


def build_catalog(
    volume: Callable[[list[str]], str], timers: Timers
) -> Callable[[Config, str], dict[str, Tool]]:
    """The catalog the toolbox reads: `volume` is playback's `omnid ctl volume` path; `timers`
    the conversation's timers."""

    def catalog(cfg: Config, mode: str) -> dict[str, Tool]:
        builtin: dict[str, Tool] = {"get_time": GetTime(), "set_volume": SetVolume(volume)}
        for tool in (SetTimer, CancelTimer, ListTimers, SetAlarm):
            builtin[tool.name] = tool(timers)
        tools: dict[str, Tool] = {name: builtin[name] for name in cfg.tools.builtin}
        for spec in cfg.tools.command:
            if spec.modes is None or mode in spec.modes:
                tools[spec.name] = CommandTool(spec, cfg.tools.timeout_s)
        return tools

    return catalog


def describe(tool: Tool) -> str:
    """One line for `omnid tools`: what the model sees of it."""
    fn = tool.declaration()["function"]
    params = ", ".join(fn["parameters"].get("properties", {})) or "no arguments"
    confirm = "; needs a press to confirm" if tool.confirm else ""
    return f"{tool.name} ({tool.source}; {params}{confirm}): {fn['description']}"


def reachable(tool: Tool) -> str:
    """Why the tool cannot run here ("" when it can): a command's program must exist and be
    executable by this user."""
    if isinstance(tool, CommandTool):
        program = tool.spec.argv[0]
        if not os.path.exists(program):
            return f"{program} does not exist"
        if not os.access(program, os.X_OK):
            return f"{program} is not executable by this user"
    return ""


def report(cfg: Config, out: TextIO) -> int:
    """`omnid tools`: every tool the model will see in the configured mode, where it comes from
    and whether it can run; 1 when a configured one cannot."""
    if not cfg.tools.enabled:
        out.write("tools are off (tools.enabled = false): the model sees none\n")
        return 0
    from omnid.diskwriter import DiskWriter
    from omnid.feedback import Feedback

    listing = Timers(lambda: 0, time.monotonic, time.time, DiskWriter(), Feedback())  # unsaved
    tools = build_catalog(lambda args: "", listing)(cfg, cfg.session.mode)
    if not tools:
        out.write("no tools declared\n")
    failed = 0
    for tool in tools.values():
        problem = reachable(tool)
        failed += bool(problem)
        out.write(describe(tool) + "\n")
        out.write(f"  {'NOT reachable: ' + problem if problem else 'reachable'}\n")
    hidden = [c.name for c in cfg.tools.command if c.name not in tools]
    if hidden:
        out.write(f"not in mode {cfg.session.mode!r}: {', '.join(hidden)}\n")
    return 1 if failed else 0
