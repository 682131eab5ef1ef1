"""`omnid check-config`'s output: the effective config as TOML that loads back to the same
config, with the key only as a note (never its value)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from omnid.config_schema import RESTART_ONLY, SECTIONS, toml_key
from omnid.config_sources import redact

if TYPE_CHECKING:
    from omnid.config import Config


def render_effective(cfg: Config) -> str:
    """The effective config as TOML that loads back to the same config; the key only as a note."""
    note = cfg._api_key_note or ("set (source not recorded)" if cfg.api_key else "not set")
    info = "the model's default" if not cfg.session.voice else "configured"
    lines = [
        "# omnid effective configuration: built-in defaults, then the file, then OMNID_* overrides",
        f"# file: {cfg.source_path}" if cfg.source_path else "# file: none (built-in defaults)",
        f"# api key: {note}",
        f"# voice: {cfg.effective_voice or '(the service default)'} ({info})",
        "# a reload (SIGHUP) applies everything at the next idle moment except what needs a"
        f" restart: {', '.join(RESTART_ONLY)}",
    ]
    for name in SECTIONS:
        _render_table(lines, name, getattr(cfg, name), cfg._env_sources)
    secret = {cfg.api_key.get_secret_value()} if cfg.api_key else set()
    return redact("\n".join(lines) + "\n", secret)


def _render_table(
    lines: list[str],
    path: str,
    model: BaseModel,
    sources: Mapping[str, str],
    header: str = "",
) -> None:
    """One table and the tables under it. Entries of a list of tables (`[[tools.command]]`)
    and of a table of tables (`parameters`) leave unset keys out: TOML has no null, and their
    optional keys take no "" for "not set"."""
    entry = bool(header)
    lines += ["", header or f"[{path}]"]
    nested: list[tuple[str, BaseModel, str]] = []
    for key in type(model).model_fields:
        value = getattr(model, key)
        dotted = f"{path}.{key}"
        if isinstance(value, BaseModel):
            nested.append((dotted, value, ""))
            continue
        if value and isinstance(value, list) and all(isinstance(v, BaseModel) for v in value):
            nested += [(dotted, v, f"[[{dotted}]]") for v in value]
            continue
        if (
            value
            and isinstance(value, dict)
            and all(isinstance(v, BaseModel) for v in value.values())
        ):
            nested += [
                (f"{dotted}.{toml_key(k)}", v, f"[{dotted}.{toml_key(k)}]")
                for k, v in value.items()
            ]
            continue
        if value is None and entry:
            continue
        notes = ["not set"] if value is None else []
        notes += [f"from ${sources[dotted]}"] if dotted in sources else []
        comment = f"  # {', '.join(notes)}" if notes else ""
        lines.append(f"{key} = {_toml('' if value is None else value)}{comment}")
    for dotted, table, table_header in nested:
        _render_table(lines, dotted, table, sources, table_header)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # validation keeps floats finite, and repr() is valid TOML
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict) and not value:
        return "{}"
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = [
        escapes.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
        for ch in str(value)
    ]
    return '"' + "".join(out) + '"'
