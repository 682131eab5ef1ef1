"""The names the model calls MCP servers' tools by.

The service takes a function's name only when it matches `^[a-zA-Z0-9_-]{1,64}$`, while an MCP
server may name a tool anything (dots, spaces, slashes, any script) and at any length. The model
sees `<prefix>__<tool>`, made to fit by `NameMap`: the same servers and tools always give the same
names, whatever order they are listed in, so a restart or a reconnect does not rename anything,
and the map routes a name the model calls back to its server and tool. No I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["MAX_NAME", "NAME_RULE", "NameMap"]

MAX_NAME = 64  # characters in a function name, the service's rule
NAME_RULE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # every name NameMap gives matches it

_DISALLOWED = re.compile(r"[^a-zA-Z0-9_-]+")  # ASCII only: any other script is disallowed
_SEPARATOR = "__"
_HASH_WIDTHS = (6, 12, 40)  # hex digits of the suffix; the longer ones only for residual clashes


def _clean_tool(tool: str) -> str:
    """Runs of disallowed characters → `_`, no `_` at either end, `tool` when nothing is left."""
    return _DISALLOWED.sub("_", tool).strip("_") or "tool"


def _clean_prefix(server: str) -> str:
    """The configured short name, already valid by the configuration's rule; made so anyway."""
    return _DISALLOWED.sub("_", server) or "mcp"


def _digest(server: str, tool: str) -> str:
    data = f"{server}\0{tool}".encode("utf-8", "surrogatepass")
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _suffixed(full: str, server: str, tool: str, width: int) -> str:
    """`full` + `_` + `width` hex digits of the pair's hash, `full` cut so the whole fits."""
    suffix = "_" + _digest(server, tool)[:width]
    head = full if len(full) + len(suffix) <= MAX_NAME else full[: MAX_NAME - len(suffix)]
    return head.rstrip("_") + suffix


def _full_name(server: str, tool: str) -> str:
    """`<server>__<tool>` with both parts cleaned, of any length."""
    return _clean_prefix(server) + _SEPARATOR + _clean_tool(tool)


def _plain_name(server: str, tool: str) -> str:
    """The name before any clash is considered (already hashed when it had to be cut)."""
    full = _full_name(server, tool)
    return full if len(full) <= MAX_NAME else _suffixed(full, server, tool, _HASH_WIDTHS[0])


def _assign(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Every pair's name, a function of the set of pairs only (never of their order).

    Pairs whose plain names clash all take the hash suffix, none keeps the plain name; should a
    suffixed name still clash (another tool literally named like it, or equal hash digits), the
    pairs involved take a longer suffix, up to the whole digest.
    """
    ordered = sorted(set(pairs))
    plain = {pair: _plain_name(*pair) for pair in ordered}
    names = dict(plain)
    level = dict.fromkeys(ordered, -1)  # -1: the plain name; i: suffix of _HASH_WIDTHS[i]
    while True:
        holders: dict[str, list[tuple[str, str]]] = {}
        for pair in ordered:
            holders.setdefault(names[pair], []).append(pair)
        clashing = [pair for group in holders.values() if len(group) > 1 for pair in group]
        movable = [pair for pair in clashing if level[pair] < len(_HASH_WIDTHS) - 1]
        if not movable:
            return names  # distinct (only a SHA-1 collision could leave a clash)
        for pair in movable:
            level[pair] += 1
            server, tool = pair
            full = _full_name(server, tool)
            names[pair] = _suffixed(full, server, tool, _HASH_WIDTHS[level[pair]])


class NameMap:
    """The names the model sees for MCP servers' tools, and the way back.

    `add(server, tool)` → `<server>__<tool>` made to fit the service's rule: each run of other
    characters becomes `_`, the tool part loses `_` at its ends (`tool` when nothing is left), and
    a name longer than 64 is cut and given `_` + 6 hex digits of sha1(server + "\\0" + tool), so
    long names that start alike stay apart. `server` is the server's configured short name.

    When two different pairs come out with the same name, both take that hash suffix (so the
    result does not depend on which was added first) and `collisions()` says so. A later `add`
    may therefore rename a pair added earlier: read `name_of`/`names()` once all are added.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs: set[tuple[str, str]] = set()
        self._names: dict[tuple[str, str], str] = {}
        self._routes: dict[str, tuple[str, str]] = {}
        for server, tool in pairs:
            self._pairs.add((server, tool))
        self._update()

    def add(self, server: str, tool: str) -> str:
        """The model-facing name of `tool` of `server`, given every pair added so far."""
        pair = (server, tool)
        if pair not in self._pairs:
            self._pairs.add(pair)
            self._update()
        return self._names[pair]

    def name_of(self, server: str, tool: str) -> str | None:
        """The current name of a pair that was added, or None."""
        return self._names.get((server, tool))

    def route(self, name: str) -> tuple[str, str] | None:
        """(server, tool) that a name the model called stands for, or None."""
        return self._routes.get(name)

    def names(self) -> dict[str, tuple[str, str]]:
        """Every name → (server, tool), sorted by name."""
        return dict(sorted(self._routes.items()))

    def collisions(self) -> list[str]:
        """One readable line per name that more than one (server, tool) came out as."""
        groups: dict[str, list[tuple[str, str]]] = {}
        for pair in sorted(self._pairs):
            groups.setdefault(_plain_name(*pair), []).append(pair)
        lines = []
        for plain, group in sorted(groups.items()):
            if len(group) > 1:
                who = " and ".join(f"{s!r} tool {t!r}" for s, t in group)
                got = ", ".join(self._names[pair] for pair in group)
                lines.append(f"{plain}: wanted by {who}; named {got}")
            elif self._names[group[0]] != plain:  # its plain name is another's suffixed one
                server, tool = group[0]
                lines.append(
                    f"{plain}: {server!r} tool {tool!r} clashed with a name given to another "
                    f"tool; named {self._names[group[0]]}"
                )
        return lines

    def __len__(self) -> int:
        return len(self._pairs)

    def _update(self) -> None:
        self._names = _assign(self._pairs)
        self._routes = {name: pair for pair, name in self._names.items()}
