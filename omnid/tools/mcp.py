"""The tools of the owner's MCP servers, as the toolbox sees them.

Each configured server's allowed tools are offered as `<name>__<tool>` (mapped to the names the
service accepts, `tools/mcp_schema.py`), with their input schemas made into what the service
takes. Arguments are checked against that schema before a call leaves the box; the call itself
runs on a worker thread and waits for the hub's event loop (`tools/mcp_client.py`). A tool the
server does not annotate read-only waits for the owner's press when the entry says
`confirm = "press"` (the default). What a server answers is untrusted text from another system:
it goes to the model as the tool's output, never into the instructions.

This module imports neither the SDK nor the hub at import time: without `[[tools.mcp]]` nothing
of MCP is loaded.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnid.config import Config
from omnid.config_schema import McpServerConfig
from omnid.tools import Outcome, Tool
from omnid.tools.mcp_names import NameMap
from omnid.tools.mcp_schema import declaration

if TYPE_CHECKING:
    from omnid.tools.mcp_client import McpHub, McpTool

log = logging.getLogger("omnid.mcp")

MAX_ARGUMENTS = 16_384  # characters of JSON: more is not a voice request


class McpServerTool:
    inline = False

    def __init__(
        self, name: str, spec: McpServerConfig, tool: McpTool, hub: McpHub, timeout_s: float
    ) -> None:
        self.name = name
        self.source = f"mcp:{spec.name}"
        self.server, self.tool = spec.name, tool.name
        self.confirm = spec.confirm == "press" and not tool.read_only
        self._declaration = declaration(name, tool.description, tool.input_schema)
        self._hub = hub
        self._timeout_s = timeout_s

    def declaration(self) -> dict[str, Any]:
        return self._declaration

    def bind(self, arguments: str) -> Callable[[], Outcome]:
        values = _arguments(arguments, self._declaration["function"]["parameters"])
        return lambda: self._call(values)

    def _call(self, values: dict[str, Any]) -> Outcome:
        outcome, text = self._hub.call(self.server, self.tool, values, self._timeout_s)
        if outcome == "ok":
            return Outcome("ok", text)
        return Outcome(outcome, json.dumps({"error": f"{self.name}: {text}"}))


def _arguments(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The model's arguments, checked against the declared schema (ValueError: a sentence the
    model can read)."""
    import jsonschema  # with the mcp extra, which requires it

    if len(text) > MAX_ARGUMENTS:
        raise ValueError("the arguments are too long")
    try:
        values = json.loads(text or "{}")
    except ValueError:
        raise ValueError("the arguments are not valid JSON; send one JSON object") from None
    if not isinstance(values, dict):
        raise ValueError("the arguments must be one JSON object")
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(values)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the arguments"
        raise ValueError(f"{where}: {error.message}")
    return values


def mcp_tools(cfg: Config, hub: McpHub, taken: set[str]) -> dict[str, Tool]:
    """Every allowed tool of every connected server, under the name the model sees."""
    names = NameMap()
    allowed: list[tuple[McpServerConfig, McpTool]] = []
    for spec in cfg.tools.mcp:
        allow = set(spec.allow)
        for tool in hub.tools(spec.name):
            if "*" in allow or tool.name in allow:
                names.add(spec.name, tool.name)  # all first: a clash renames both sides
                allowed.append((spec, tool))
    for line in names.collisions():
        log.info("MCP tool names: %s", line)
    tools: dict[str, Tool] = {}
    for spec, tool in allowed:
        name = names.name_of(spec.name, tool.name)
        if name is None or name in taken:
            continue  # a built-in or command of that name wins
        tools[name] = McpServerTool(name, spec, tool, hub, cfg.tools.timeout_s)
    return tools


def read_token(token_file: str) -> str:
    """A bearer token: a file's content, or a systemd credential by name (LoadCredential=).
    OSError when it cannot be read; the message names the file, never the token."""
    path = Path(token_file)
    if not path.is_absolute():
        credentials = os.environ.get("CREDENTIALS_DIRECTORY", "")
        if not credentials:
            raise OSError(f"{token_file!r} is not a path and there is no $CREDENTIALS_DIRECTORY")
        path = Path(credentials) / token_file
    token = path.read_text().strip()
    if not token:
        raise OSError(f"{path} is empty")
    return token


def open_mcp(cfg: Config, on_change: Callable[[], None] | None = None) -> McpHub | None:
    """The MCP servers' connections, started (they connect in the background), or None when
    none is configured — then nothing of the SDK is imported. `on_change` is called (on the
    hub's thread) whenever a server's state or tools change."""
    if not (cfg.tools.enabled and cfg.tools.mcp):
        return None
    from omnid.tools.mcp_client import McpHub, McpServerSpec

    specs = []
    for server in cfg.tools.mcp:
        token = None
        if server.token_file is not None:
            try:
                token = read_token(server.token_file)
            except OSError as exc:
                log.error("MCP server %s: cannot read its token (%s); left out", server.name, exc)
                continue
        command = tuple(server.command) if server.command else None
        specs.append(McpServerSpec(server.name, server.url, token, command, server.plain_http))
    hub = McpHub(specs, connect_timeout_s=cfg.api.connect_timeout_s, on_change=on_change)
    hub.start()
    return hub


def why_missing(cfg: Config, hub: McpHub) -> Callable[[str], str]:
    """For a name the model calls that is not on offer: "" unless it is a tool of a server that
    is not connected now, and then what state the server is in."""

    def missing(name: str) -> str:
        for spec in cfg.tools.mcp:
            if name.startswith(f"{spec.name}__") and spec.name in hub.servers:
                state = hub.state(spec.name)
                if state != "connected":
                    return f"the MCP server {spec.name} is not connected ({state})"
        return ""

    return missing


def server_trouble(hub: McpHub) -> Callable[[], list[str]]:
    """For STATUS: each MCP server that is not connected now, and why."""

    def trouble() -> list[str]:
        states = ((name, hub.state(name)) for name in hub.servers)
        return [f"MCP {name} {state}" for name, state in states if state != "connected"]

    return trouble
