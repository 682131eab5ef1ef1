"""Conversation is one state machine split over mixins by responsibility (user actions, service
events, upkeep, device interface, vision). A placeholder in one mixin must never shadow the real
method of another: that silently disabled the camera once."""

from __future__ import annotations

import ast
import inspect
import textwrap

from omnid.conversation import Conversation


def _is_placeholder(func: object) -> bool:
    try:
        source = textwrap.dedent(inspect.getsource(func))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    body = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    return not body or (len(body) == 1 and isinstance(body[0], ast.Raise))


def test_every_method_the_conversation_uses_is_a_real_one() -> None:
    placeholders = [
        name
        for name in dir(Conversation)
        if not name.startswith("__")
        and inspect.isfunction(getattr(Conversation, name))
        and _is_placeholder(getattr(Conversation, name))
    ]
    assert placeholders == []
