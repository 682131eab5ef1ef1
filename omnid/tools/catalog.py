"""Which tools a configuration declares: the built-in ones it lists, and the owner's commands.

A command tool is the owner's program, described to the model by its name, description and
typed parameter table. The model's arguments are validated against that table before anything
runs, and each replaces one whole element of the command's argv, so no argument can become a
second command, an option or a shell construct. It runs off the conversation thread, without a
shell, in its own process group, with a minimal environment (never the API key or a token).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

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
from omnid.tools.mcp import mcp_tools, open_mcp
from omnid.tools.mcp_schema import select
from omnid.tools.params import json_schema, parse_arguments, render_argv

if TYPE_CHECKING:
    from omnid.tools.mcp_client import McpHub

log = logging.getLogger("omnid.tools")


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
    volume: Callable[[list[str]], str], timers: Timers, hub: McpHub | None = None
) -> Callable[[Config, str], dict[str, Tool]]:
    """The catalog the toolbox reads: `volume` is playback's `omnid ctl volume` path; `timers`
    the conversation's timers; `hub` the MCP servers' connections, when any is configured."""

    def catalog(cfg: Config, mode: str) -> dict[str, Tool]:
        builtin: dict[str, Tool] = {"get_time": GetTime(), "set_volume": SetVolume(volume)}
        for tool in (SetTimer, CancelTimer, ListTimers, SetAlarm):
            builtin[tool.name] = tool(timers)
        tools: dict[str, Tool] = {name: builtin[name] for name in cfg.tools.builtin}
        for spec in cfg.tools.command:
            if spec.modes is None or mode in spec.modes:
                tools[spec.name] = CommandTool(spec, cfg.tools.timeout_s)
        if hub is not None:
            tools.update(within_budget(cfg, tools, mcp_tools(cfg, hub, set(tools)))[0])
        return tools

    return catalog


def within_budget(
    cfg: Config, own: Mapping[str, Tool], served: Mapping[str, Tool]
) -> tuple[dict[str, Tool], list[str]]:
    """The servers' tools that fit `tools.max_declared` and `tools.max_declared_bytes` next to
    the built-in and command tools (every declared tool costs tokens on every turn), and why
    each of the others was left out."""
    declared = [t.declaration() for t in own.values()] + [t.declaration() for t in served.values()]
    kept, reasons = select(
        declared, max_tools=cfg.tools.max_declared, max_bytes=cfg.tools.max_declared_bytes
    )
    names = {d["function"]["name"] for d in kept}
    for reason in reasons:
        log.warning("tools: %s", reason)
    return {n: t for n, t in served.items() if n in names}, reasons


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
    and whether it can run — for MCP servers, each server's state and which of its tools are
    offered, not allowed or left out for size; 1 when a configured one cannot run."""
    if not cfg.tools.enabled:
        out.write("tools are off (tools.enabled = false): the model sees none\n")
        return 0
    from omnid.diskwriter import DiskWriter
    from omnid.feedback import Feedback

    listing = Timers(lambda: 0, time.monotonic, time.time, DiskWriter(), Feedback())  # unsaved
    hub = open_mcp(cfg)
    try:
        if hub is not None:
            hub.wait_ready(cfg.api.connect_timeout_s + 5.0)
        tools = build_catalog(lambda args: "", listing, hub)(cfg, cfg.session.mode)
        failed = _report_tools(cfg, tools, out)
        if hub is not None:
            failed += _report_servers(cfg, hub, tools, out)
    finally:
        if hub is not None:
            hub.close()
    return 1 if failed else 0


def _report_tools(cfg: Config, tools: Mapping[str, Tool], out: TextIO) -> int:
    failed = 0
    own = {n: t for n, t in tools.items() if not t.source.startswith("mcp:")}
    if not tools and not cfg.tools.mcp:
        out.write("no tools declared\n")
    for tool in own.values():
        problem = reachable(tool)
        failed += bool(problem)
        out.write(describe(tool) + "\n")
        out.write(f"  {'NOT reachable: ' + problem if problem else 'reachable'}\n")
    hidden = [c.name for c in cfg.tools.command if c.name not in tools]
    if hidden:
        out.write(f"not in mode {cfg.session.mode!r}: {', '.join(hidden)}\n")
    return failed


def _report_servers(cfg: Config, hub: McpHub, tools: Mapping[str, Tool], out: TextIO) -> int:
    failed = 0
    offered = {
        (t.source.removeprefix("mcp:"), getattr(t, "tool", "")): n
        for n, t in tools.items()
        if t.source.startswith("mcp:")
    }
    _, reasons = within_budget(
        cfg,
        {n: t for n, t in tools.items() if not t.source.startswith("mcp:")},
        mcp_tools(cfg, hub, set()),
    )
    for spec in cfg.tools.mcp:
        state = hub.state(spec.name) if spec.name in hub.servers else "left out: no token"
        where = spec.url or (spec.command[0] if spec.command else "")
        out.write(f"MCP server {spec.name} ({where}): {state}\n")
        if state != "connected":
            failed += 1
            continue
        allow = set(spec.allow)
        for tool in hub.tools(spec.name):
            name = offered.get((spec.name, tool.name))
            if "*" not in allow and tool.name not in allow:
                out.write(f"  {tool.name}: not allowed (tools.mcp allow)\n")
            elif name is None:
                why = next((r for r in reasons if tool.name in r), "left out")
                out.write(f"  {tool.name}: {why}\n")
            else:
                out.write("  " + describe(tools[name]) + "\n")
    return failed
