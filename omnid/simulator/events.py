"""Identifiers and the error shape shared by every part of the simulator.

The service answers every client mistake with one `error` event of a fixed shape (docs/protocol.md,
"Server events") and keeps the connection open; raising `ProtocolError` anywhere below the
connection loop produces exactly that, so no handler builds error events by hand.

Error `code` values other than `invalid_value` are not documented by the service; the ones here
are descriptive and stable, but clients should key on the documented *messages* (which are copied
from the docs or from reports) rather than on codes.
"""

from __future__ import annotations

import uuid
from typing import Any

Event = dict[str, Any]

ERROR_TYPE = "invalid_request_error"


def new_id(prefix: str) -> str:
    """`prefix_` + 32 hex digits: the service's ids are opaque strings with a type prefix."""
    return f"{prefix}_{uuid.uuid4().hex}"


class ProtocolError(Exception):
    """A client event the service would refuse; becomes one `error` event, socket stays open."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str = "invalid_value",
        error_type: str = ERROR_TYPE,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type

    def to_event(self) -> Event:
        return error_event(
            self.message, param=self.param, code=self.code, error_type=self.error_type
        )


def error_event(
    message: str,
    *,
    param: str | None = None,
    code: str = "invalid_value",
    error_type: str = ERROR_TYPE,
) -> Event:
    """The documented `error` event (without `event_id`, which the connection stamps on send)."""
    return {
        "type": "error",
        "error": {"type": error_type, "code": code, "message": message, "param": param},
    }
