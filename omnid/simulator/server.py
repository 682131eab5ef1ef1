"""The listening side: the HTTP upgrade checks the service makes, then one `Connection` per socket.

Refusals happen at the HTTP upgrade, as on the service: a bad or missing key is an HTTP 401 with a
JSON body (reported), not a WebSocket event, so a client must handle it in its connect path.
Bodies follow DashScope's REST errors (`{"request_id", "code", "message"}`); their exact text is
one of the things docs/protocol.md says nobody outside the service can settle, so clients should
look at the status, not the body.
"""

from __future__ import annotations

import hmac
import http
import json
import logging
import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from omnid.models import MODELS
from omnid.simulator.calls import CallPlanner
from omnid.simulator.connection import Connection, peer_of
from omnid.simulator.events import new_id
from omnid.simulator.options import PATH, SimOptions
from omnid.simulator.record import Recorder

log = logging.getLogger(__name__)

# Big enough never to be the limit a client meets first (a 256 KB image, long appends).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

REFUSAL_BODIES: dict[int, dict[str, str]] = {
    401: {"code": "InvalidApiKey", "message": "Invalid API-key provided."},
    429: {
        "code": "Throttling.RateQuota",
        "message": "Requests rate limit exceeded, please try again later.",
    },
}


class Simulator:
    """The asyncio server; `start()` binds (port 0 = any free one), `stop()` closes everything.

    Constructing one creates no asyncio object (it may happen on another thread than the loop's)
    and validates `--call`/`--script` first: `calls.ScriptError` before any file is opened.
    """

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        # One planner for every connection: the script counts the simulator's answered turns.
        self.planner = CallPlanner(options.call, options.script)
        self._key = options.resolved_api_key()
        self.recorder = Recorder(options.record)
        self._rng = random.Random(options.seed)
        self._server: Server | None = None
        self.port = options.port
        self._accepted = 0  # connections so far, for --faulty-connections

    @property
    def url(self) -> str:
        host = self.options.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.port}{PATH}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.options.host,
            self.options.port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
            # The service documents no server pings; client pings are answered automatically.
            ping_interval=None,
            # Stopping must not hang on a client that never answers our close frame.
            close_timeout=1.0,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        log.info("listening on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()  # open sessions get 1001 "going away"
            await self._server.wait_closed()
            self._server = None
        self.recorder.close()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Path, key and model checks of the upgrade request, in the service's order."""
        target = urlsplit(request.path)
        if self.options.refuse_status is not None:
            status = self.options.refuse_status
            return self._refuse(connection, request, status, REFUSAL_BODIES[status], "injected")
        if target.path != PATH:
            body = {"code": "NotFound", "message": f"Unknown path {target.path}; use {PATH}."}
            return self._refuse(connection, request, 404, body, "bad path")
        if not self._authorized(request):
            return self._refuse(connection, request, 401, REFUSAL_BODIES[401], "bad or missing key")
        models = parse_qs(target.query).get("model", [])
        if not models or not models[0]:
            body = {"code": "InvalidParameter", "message": "Missing required parameter: model."}
            return self._refuse(connection, request, 400, body, "no model")
        if models[0] not in MODELS:
            body = {"code": "ModelNotFound", "message": f"Model not found: {models[0]}."}
            return self._refuse(connection, request, 404, body, "unknown model")
        log.debug("upgrade accepted from %s", peer_of(connection))
        return None

    def _authorized(self, request: Request) -> bool:
        values = request.headers.get_all("Authorization")
        if len(values) != 1:
            return False
        expected = f"Bearer {self._key}".encode()
        return hmac.compare_digest(values[0].encode("utf-8", "replace"), expected)

    def _refuse(
        self,
        connection: ServerConnection,
        request: Request,
        status: int,
        body: dict[str, Any],
        why: str,
    ) -> Response:
        body = {"request_id": new_id("req").removeprefix("req_"), **body}
        text = json.dumps(body)
        response = connection.respond(http.HTTPStatus(status), text)
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        # The request path carries only the model; the key is in a header and never recorded.
        log.info(
            "refused upgrade from %s: %d %s (%s)", peer_of(connection), status, body["code"], why
        )
        self.recorder.conn(None, "refused", status=status, body=body, path=request.path, why=why)
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # the handler only runs after a successful upgrade
        model = MODELS[parse_qs(urlsplit(ws.request.path).query)["model"][0]]
        self._accepted += 1
        limit = self.options.faulty_connections
        faulty = limit is None or self._accepted <= limit
        await Connection(
            ws, model, self.options, self.recorder, self._rng, faulty, planner=self.planner
        ).run()
