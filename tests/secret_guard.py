"""Checks that an API key never reaches what a user, a log or a bug report could see.

Named `secret_guard`, not `secrets`: a module called `secrets` in tests/ would shadow the standard
library's `secrets` for any script run from that directory (tests/harness.py imports it).
"""

from __future__ import annotations

import secrets

import pytest

PIECE = 12  # "not even a prefix": any 12 consecutive characters of the key count as a leak


def make_key() -> str:
    """A fresh fake DashScope key: shaped like a real one, unique per test run."""
    return "sk-test-" + secrets.token_hex(12)


def assert_no_secret(text: str, key: str, *, piece: int = PIECE) -> None:
    """Fail if `key`, or any `piece`-character slice of it, appears anywhere in `text`.

    The failure message says where, never what, so a real key could not leak through a test log.
    """
    assert len(key) >= piece, "test keys must be at least one piece long"
    for start in range(len(key) - piece + 1):
        found = text.find(key[start : start + piece])
        if found >= 0:
            pytest.fail(
                f"characters {start}..{start + piece} of the API key appear in the output "
                f"at offset {found} (output is {len(text)} characters long)",
                pytrace=False,
            )
