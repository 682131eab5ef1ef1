"""Real MCP servers for the MCP client's tests, written with the official `mcp` SDK (FastMCP).

    python -m tests.mcp_servers stdio [--calls F] [--pid-file F] [--env-dump F] [--hold-file F]
                                      [--stubborn]
    python -m tests.mcp_servers http --port N --token-file F [--calls F] [--pid-file F]

The tools are shaped like Home Assistant's (`HassTurnOn`, `GetLiveContext`) plus a few for the
client's edge cases. Every call that reaches a tool appends one JSON line `{"tool", "arguments"}`
to `--calls`, so a test can tell what the server really received and how many times.

Test hooks that do not depend on the environment (the stdio server gets a minimal one):
`--pid-file` receives the server's pid once it runs; `--env-dump` receives its environment as
JSON; when `--hold-file` exists at start the server exits at once, as a broken server would;
`--stubborn` makes it ignore SIGTERM and the end of its stdin.
The HTTP server answers 401 to any request without `Authorization: Bearer <token>`.

Also runnable by path (`python tests/mcp_servers.py stdio ...`): it imports nothing from tests/.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mcp.server.fastmcp import Context, FastMCP, Image
from mcp.types import ToolAnnotations

IMAGE_BYTES = 12 * 1024  # `snapshot` returns a PNG-typed blob of this size


# An enum parameter makes pydantic put `$defs` + `$ref` in the tool's schema, as HA's has.
class DeviceClass(enum.StrEnum):
    """Device class of a switch-like entity."""

    OUTLET = "outlet"
    SWITCH = "switch"
    TV = "tv"


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_server(calls_file: str | None, **settings: Any) -> FastMCP:
    server = FastMCP("omnid-test", **settings)

    def record(tool: str, arguments: dict[str, Any]) -> None:
        if calls_file:
            line = json.dumps({"tool": tool, "arguments": arguments}, sort_keys=True)
            with open(calls_file, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    @server.tool(name="HassTurnOn", description="Turns on/opens a device or entity")
    def hass_turn_on(
        name: str,
        area: str | None = None,
        domain: list[str] | None = None,
        device_class: list[DeviceClass] | None = None,
    ) -> str:
        args: dict[str, Any] = {"name": name, "area": area, "domain": domain}
        if device_class is not None:
            args["device_class"] = [str(d) for d in device_class]
        record("HassTurnOn", args)
        return f"Turned on {name}" + (f" in {area}" if area else "")

    @server.tool(
        name="GetLiveContext",
        description="Provides real-time information about the CURRENT state of devices",
        annotations=ToolAnnotations(readOnlyHint=True),
    )
    def get_live_context() -> str:
        record("GetLiveContext", {})
        return "Live Context: kitchen light is off; living room temperature 21.5 °C"

    @server.tool(description="Returns its text unchanged")
    def echo(text: str) -> str:
        record("echo", {"text": text})
        return text

    @server.tool(description="Sleeps, then answers")
    async def slow(seconds: float) -> str:
        record("slow", {"seconds": seconds})
        import anyio

        await anyio.sleep(seconds)
        return f"slept {seconds:g} s"

    @server.tool(name="light.turn_on", description="A service-style name with a dot in it")
    def light_turn_on(entity_id: str, brightness_pct: int | None = None) -> str:
        record("light.turn_on", {"entity_id": entity_id, "brightness_pct": brightness_pct})
        return f"{entity_id} on"

    @server.tool(description="Returns an image")
    def snapshot() -> Image:
        record("snapshot", {})
        return Image(data=b"\x89PNG" + bytes(IMAGE_BYTES - 4), format="png")

    @server.tool(description="Always fails")
    def fail(reason: str = "boom") -> str:
        record("fail", {"reason": reason})
        raise ValueError(reason)

    @server.tool(description="Adds a tool named `name`, then says the tool list changed")
    async def add_tool(name: str, ctx: Context) -> str:
        record("add_tool", {"name": name})

        def added() -> str:
            return f"I am {name}"

        server.add_tool(added, name=name, description="Added at run time")
        await ctx.session.send_tool_list_changed()
        return f"added {name}"

    return server


class BearerGate:
    """ASGI middleware: the Streamable HTTP endpoint only for `Authorization: Bearer <token>`."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = dict(scope.get("headers") or []).get(b"authorization")
            if auth != self.expected:
                body = b'{"error": "invalid_token"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer error="invalid_token"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-file")
    parser.add_argument("--calls")
    parser.add_argument("--pid-file")
    parser.add_argument("--env-dump")
    parser.add_argument("--hold-file")
    parser.add_argument("--stubborn", action="store_true", help="ignore SIGTERM and stdin EOF")
    args = parser.parse_args(argv)

    if args.hold_file and os.path.exists(args.hold_file):
        print("held: exiting at once", file=sys.stderr)
        return 3
    if args.env_dump:
        _write_atomic(args.env_dump, json.dumps(dict(os.environ), sort_keys=True))
    if args.pid_file:
        _write_atomic(args.pid_file, str(os.getpid()))

    if args.stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.transport == "stdio":
        build_server(args.calls, log_level="WARNING").run("stdio")
        while args.stubborn:  # a server that does not stop when its client goes
            time.sleep(1)
        return 0

    if not args.port or not args.token_file:
        parser.error("http needs --port and --token-file")
    token = Path(args.token_file).read_text(encoding="utf-8").strip()
    server = build_server(args.calls, log_level="WARNING", host="127.0.0.1", port=args.port)
    app = BearerGate(server.streamable_http_app(), token)

    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
