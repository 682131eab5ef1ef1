"""omnid's configuration: find the file, layer environment overrides, find the API key, validate.

A device in a box is configured once, by someone who may never see a traceback. So every mistake
becomes one line that names the key, echoes the value as given and says what is allowed, all
mistakes are reported at once (one `omnid check-config` run, not one per typo), and the whole set
is raised as a single `ConfigError` that the CLI turns into exit status 78 (EX_CONFIG; the unit has
`RestartPreventExitStatus=78`, so a typo does not restart-loop). The API key never appears in any
message or rendering: values that could be the key are redacted before they are shown.

The schema (sections, keys, defaults, ranges) lives in `omnid.config_schema`.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
import re
import struct
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from omnid.config_schema import (
    RESTART_ONLY,
    SECTIONS,
    ApiSection,
    AudioSection,
    ButtonSection,
    CameraSection,
    CommandToolConfig,
    Config,
    ControlSection,
    LedSection,
    LogSection,
    SessionSection,
    ToolParamConfig,
    ToolsSection,
    UsageSection,
    VadSection,
    WakeSection,
    allowed_text,
    cross_check,
    table_model,
    toml_key,
)
from omnid.config_sources import (
    KEY_HOME,
    env_overrides,
    redact,
    resolve_key,
    unknown_key,
    user_name,
)

__all__ = [
    "ApiSection",
    "AudioSection",
    "ButtonSection",
    "CameraSection",
    "CommandToolConfig",
    "Config",
    "ConfigError",
    "ControlSection",
    "LedSection",
    "LogSection",
    "SessionSection",
    "ToolParamConfig",
    "ToolsSection",
    "UsageSection",
    "VadSection",
    "WakeSection",
    "load_config",
    "resolve_config_path",
]

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/omnid/omnid.toml")
_M = TypeVar("_M", bound=BaseModel)


class ConfigError(Exception):
    """Everything wrong with a config, one readable line per problem, in `problems`."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def resolve_config_path(cli_path: Path | None) -> Path | None:
    """--config, else $OMNID_CONFIG, else /etc/omnid/omnid.toml if present, else None (defaults).

    A file the user named explicitly must exist: silently running on defaults because of a typo in
    a path is exactly the surprise this function exists to prevent.
    """
    if cli_path is not None:
        path, named_by = Path(cli_path), "--config"
    elif os.environ.get("OMNID_CONFIG"):
        path, named_by = Path(os.environ["OMNID_CONFIG"]), "$OMNID_CONFIG"
    else:
        return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None
    if not path.exists():
        raise ConfigError([f"{path}: no such config file (named by {named_by})"])
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory, not a config file (named by {named_by})"])
    return path


def load_config(path: Path | str | None = None, *, require_api_key: bool = False) -> Config:
    """Built-in defaults, then the TOML file, then OMNID_<SECTION>__<KEY> overrides, then the key.

    Raises one ConfigError listing every problem found; warnings (an unknown model or voice, which
    may simply be newer than omnid) are logged and do not stop the daemon.
    """
    environ = os.environ
    source = resolve_config_path(Path(path) if path is not None else None)
    secrets = {environ.get("DASHSCOPE_API_KEY", "").strip()}
    problems: list[str] = []
    warnings: list[str] = []

    data, found = _check_tables(_read_toml(source) if source else {}, secrets)
    problems += found
    env_data, env_sources, found, warned = env_overrides(environ, secrets)
    problems += found
    warnings += warned
    merged = _merge(data, env_data)

    # The key is looked up before values are echoed in messages, so that they can be redacted.
    raw_file = merged.get("api", {}).get("api_key_file")
    key_file = Path(raw_file) if isinstance(raw_file, str) and raw_file else None
    key, key_note, key_problems = resolve_key(key_file, environ, secrets)

    # Each section as validated, or a stand-in with its bad keys defaulted (see _salvage).
    sections: dict[str, BaseModel | None] = {}
    failed: set[str] = set()  # dotted keys already reported
    for name, model in SECTIONS.items():
        raw = merged.get(name, {})
        try:
            sections[name] = model.model_validate(raw)
        except ValidationError as exc:
            lines = _translate(name, raw, exc, env_sources, secrets)
            problems += lines.values()
            failed |= lines.keys()
            sections[name] = _salvage_tools(raw) if model is ToolsSection else _salvage(model, raw)

    problems += key_problems
    if require_api_key and key is None and not key_problems:
        problems.append(f"API key: {key_note}")

    # Checks across keys run on the stand-ins too, so that one run reports everything; a check
    # about a key that is itself broken would only repeat (or contradict) that key's own line.
    errors, warned = cross_check(
        None if "api.model" in failed else _section(sections, "api", ApiSection),
        _section(sections, "session", SessionSection),
        _section(sections, "camera", CameraSection),
        _section(sections, "tools", ToolsSection),
    )
    problems += [e for e in errors if re.split(r"[ :]", e, maxsplit=1)[0] not in failed]
    warnings += warned
    session = _section(sections, "session", SessionSection)
    if session is not None and session.mode == "wake" and "session.mode" not in failed:
        note = _note("session.mode", env_sources)
        missing = wake_detector_missing()
        if missing:
            problems.append(f"session.mode = {_show('wake', secrets)}{note}: {missing}")
        wake = _section(sections, "wake", WakeSection)
        if wake is not None and "wake.model" not in failed:
            problems += wake_model_problems(wake.model, env_sources, secrets)
    for warning in warnings:
        log.warning("%s", redact(warning, secrets))
    if problems:
        raise ConfigError(redact(p, secrets) for p in problems)

    cfg = Config(
        **cast(dict[str, Any], sections),
        api_key=SecretStr(key) if key else None,
        source_path=source,
    )
    cfg._api_key_note = f"set (from {key_note})" if key else key_note
    cfg._env_sources = env_sources
    return cfg


# --- wake mode: what the schema cannot see ------------------------------------------------------


def wake_detector_missing() -> str:
    """Why wake mode's detector (the `wake` extra) cannot run here, or '' when it is installed.

    A config that asks for wake mode on a box without it would start a daemon that cannot hear its
    wake word; it is refused with the way to install it (or, on a 32-bit system, where it has no
    build, the reason it cannot be)."""
    from omnid import wake

    if wake.available():
        return ""
    if _userland_bits() == 32:
        return (
            "wake mode needs a 64-bit OS: its wake-word detector (pymicro-wakeword) has no build "
            "for this 32-bit system (use mode 'manual' or 'vad' here)"
        )
    return f"the wake-word detector (pymicro-wakeword) is not installed; {wake.INSTALL_HINT}"


def wake_model_problems(
    model: str, sources: Mapping[str, str] | None = None, secrets: set[str] | None = None
) -> list[str]:
    """`wake.model`'s problem as one line (a name that is no built-in model, a manifest that is
    not there), or no line."""
    from omnid import wake

    problem = wake.manifest_problem(model)
    if not problem:
        return []
    shown = _show(model, secrets or set())
    if shown == repr(model):  # shown whole before the colon: once is enough
        problem = problem.removeprefix(f"{model}: ")
    return [f"wake.model = {shown}{_note('wake.model', sources or {})}: {problem}"]


def _userland_bits() -> int:
    """32 on a 32-bit system (also on a 64-bit kernel, as Raspberry Pi OS 32-bit runs), else 64."""
    return 8 * struct.calcsize("P")


def _note(dotted: str, sources: Mapping[str, str]) -> str:
    source = _source_of(dotted, sources)
    return f" (from ${source})" if source else ""


# --- reading the file --------------------------------------------------------------------------


def keep_restart_only(new: Config, running: Config) -> tuple[Config, list[str]]:
    """`new` with the running values of what only a restart can change (`RESTART_ONLY`), and
    the names of those that differ, for the reload's log line."""
    changed: list[str] = []
    update: dict[str, Any] = {}
    session = new.session
    for name in RESTART_ONLY:
        if name == "session.mode":
            if new.session.mode != running.session.mode:
                changed.append(name)
                session = session.model_copy(update={"mode": running.session.mode})
        elif name == "tools.mcp":
            if new.tools.mcp != running.tools.mcp:
                changed.append(name)
                tools = update.get("tools", new.tools).model_copy(update={"mcp": running.tools.mcp})
                update["tools"] = tools
        elif getattr(new, name) != getattr(running, name):
            changed.append(f"[{name}]")
            update[name] = getattr(running, name)
    update["session"] = session
    return new.model_copy(update=update), changed


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except PermissionError:
        raise ConfigError([f"{path}: cannot read the config file as user {user_name()}"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (bad byte at offset {exc.start})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
        where = "at the end of the file"
        if match:
            message, where = match[1], f"at line {match[2]}, column {match[3]}"
        if message == "Invalid value":
            message += ' (text values need quotes, e.g. mode = "vad")'
        raise ConfigError([f"{path}: TOML syntax error {where}: {message}"]) from None


def _all_tables() -> dict[str, type[BaseModel]]:
    tables: dict[str, type[BaseModel]] = {}

    def walk(path: str, model: type[BaseModel]) -> None:
        tables[path] = model
        for key, info in model.model_fields.items():
            nested = table_model(info)
            if nested:
                walk(f"{path}.{key}", nested)

    for name, model in SECTIONS.items():
        walk(name, model)
    return tables


_TABLES = _all_tables()


def _check_tables(data: dict[str, Any], secrets: set[str]) -> tuple[dict[str, Any], list[str]]:
    """Top-level shape: known sections, each a table, and no `api_key` anywhere."""
    problems: list[str] = []
    _pull_api_keys(data, "", problems, secrets)
    valid = ", ".join(_TABLES)
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            clean[key] = value
        elif key in SECTIONS:
            problems.append(
                f"{key} = {_show(value, secrets)}: must be a table: "
                f"write [{key}] on a line of its own and put its keys under it"
            )
        elif isinstance(value, dict):
            close = difflib.get_close_matches(key, _TABLES, n=1)
            close += [t for t in _TABLES if t.endswith("." + key)]
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            problems.append(f"[{key}]: unknown section{hint}; valid sections: {valid}")
        else:
            owners = [f"[{t}]" for t, m in _TABLES.items() if key in m.model_fields]
            where = f"it belongs under {' or '.join(owners)}" if owners else f"sections: {valid}"
            problems.append(f"{key}: a key outside any section; {where}")
    return clean, problems


def _pull_api_keys(
    table: dict[str, Any], prefix: str, problems: list[str], secrets: set[str]
) -> None:
    for key in list(table):
        value = table[key]
        if key == "api_key":
            problems.append(f"{prefix}api_key: the key never lives in the TOML; {KEY_HOME}")
            secrets.add(str(value).strip())
            del table[key]
        elif isinstance(value, dict):
            _pull_api_keys(value, f"{prefix}{key}.", problems, secrets)
        elif isinstance(value, list):  # [[tools.command]] entries are tables in a list
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _pull_api_keys(item, f"{prefix}{key}[{i}].", problems, secrets)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# --- turning pydantic's errors into one line each ----------------------------------------------


@dataclass
class _Where:
    """Where one pydantic error points, as the user would name it."""

    path: str  # "tools.command[0].parameters.level.maximum"
    loc: tuple[int | str, ...]  # the part of the error's location that `path` covers
    info: FieldInfo | None = None  # the key's declaration; None for an entry of a list or table
    table: str = ""  # for an unknown key: the table it was written in, and that table's model
    table_model: type[BaseModel] | None = None


def _items(info: FieldInfo) -> tuple[str, type[BaseModel]] | None:
    """("list", M) for a list of tables (`[[tools.command]]`), ("dict", M) for a table of
    tables (`parameters`), else None."""
    origin, args = get_origin(info.annotation), get_args(info.annotation)
    item = args[-1] if args else None
    if not (isinstance(item, type) and issubclass(item, BaseModel)):
        return None
    if origin is list:
        return "list", item
    if origin is dict:
        return "dict", item
    return None


def _locate(section: str, loc: tuple[int | str, ...]) -> _Where:
    """Walk an error's location through the models; a list of plain values (argv, modes) is
    reported as a whole key, an entry of a list of tables by its index."""
    model: type[BaseModel] | None = SECTIONS[section]
    where = _Where(section, ())
    items: tuple[str, type[BaseModel]] | None = None
    for depth, part in enumerate(loc):
        if items is not None:
            kind, item = items
            if kind == "list" and isinstance(part, int):
                where.path += f"[{part}]"
            elif kind == "dict" and isinstance(part, str):
                where.path += f".{toml_key(part)}"
            else:
                break
            where.loc, where.info, model, items = loc[: depth + 1], None, item, None
            continue
        if model is None or not isinstance(part, str):
            break
        if part not in model.model_fields:
            where.table, where.table_model = where.path, model
            where.path += f".{part}"
            break
        where.info = model.model_fields[part]
        where.path += f".{part}"
        where.loc = loc[: depth + 1]
        model = table_model(where.info)
        items = _items(where.info)
    return where


def _translate(
    section: str, raw: Any, exc: ValidationError, sources: Mapping[str, str], secrets: set[str]
) -> dict[str, str]:
    """pydantic's errors for one section → {dotted key: one line}, at most one line per key."""
    lines: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        where = _locate(section, err["loc"])
        dotted = where.path
        if dotted in lines:
            continue
        source = _source_of(dotted, sources)
        note = f" (from ${source})" if source else ""
        if where.table_model is not None or err["type"] == "extra_forbidden":
            table, model = where.table, where.table_model
            if model is None:  # extra_forbidden always names a key the walk did not know
                table, model = dotted.rsplit(".", 1)[0], SECTIONS[section]
            lines[dotted] = unknown_key(dotted, table, model, note)
            continue
        value = _lookup(raw, where.loc, err.get("input"))
        if err["type"] == "value_error":
            text = str(err.get("ctx", {}).get("error", err["msg"]))
        elif where.info:
            text = allowed_text(where.info, dotted)
        elif where.loc:  # an entry of [[tools.command]] or of a table of tables
            header = re.sub(r"\[\d+\]", "", dotted)
            brackets = f"[[{header}]]" if dotted.endswith("]") else f"[{header}]"
            text = (
                f"must be a table: write {brackets} on a line of its own and put its keys under it"
            )
        else:
            text = err["msg"]
        if err["type"] == "missing":
            lines[dotted] = f"{dotted}{note}: required; it {text}"
        else:
            lines[dotted] = f"{dotted} = {_show(value, secrets)}{note}: {text}"
    return lines


def _source_of(dotted: str, sources: Mapping[str, str]) -> str:
    """The variable that set this key or a list or table it is in ("" if none did): one
    OMNID_TOOLS__COMMAND, as JSON, sets every key of every command."""
    while dotted not in sources:
        shorter = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", dotted)
        if shorter == dotted:
            return ""
        dotted = shorter
    return sources[dotted]


def _salvage(model: type[_M], raw: Any) -> _M | None:
    """The section with every bad key removed (so defaulted), for the checks across keys.

    None when a required key is missing or wrong: there is no default to fall back on.
    """
    data = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for _ in range(3):  # removing a key can only reveal problems in what remains once or twice
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                if err["type"] == "missing":
                    return None
                _drop(data, err["loc"])
    return None


def _drop(data: dict[str, Any], loc: tuple[int | str, ...]) -> None:
    """Remove the deepest table key on `loc` (a bad element of a plain list takes the list)."""
    node: Any = data
    owner: tuple[dict[str, Any], str] | None = None
    for part in loc:
        child = _step(node, part)
        if child is _MISSING:
            break
        if isinstance(node, dict) and isinstance(part, str):
            owner = (node, part)
        node = child
    if owner:
        owner[0].pop(owner[1], None)


def _salvage_tools(raw: Any) -> ToolsSection | None:
    """[tools] with its bad keys defaulted and each broken command left out, remembering where
    the others stood, so the checks across keys still name them by their index in the file."""
    data = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    commands = data.pop("command", [])
    section = _salvage(ToolsSection, data)
    if section is None:
        return None
    kept: list[CommandToolConfig] = []
    positions: list[int] = []
    for index, entry in enumerate(commands if isinstance(commands, list) else []):
        params = entry.get("parameters") if isinstance(entry, dict) else None
        if isinstance(params, dict):
            # A parameter without a usable type stands in as a bare string: its placeholder
            # still counts as declared, and nothing is said twice about its other keys.
            for name, param in params.items():
                if _salvage(ToolParamConfig, param) is None:
                    params[name] = {"type": "string"}
        command = _salvage(CommandToolConfig, entry)
        if command is not None:
            kept.append(command)
            positions.append(index)
    section = section.model_copy(update={"command": kept})
    section._positions = tuple(positions)
    return section


_MISSING = object()


def _step(node: Any, part: int | str) -> Any:
    """node[part] for a table key or a list index, else _MISSING."""
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part, _MISSING)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def _lookup(raw: Any, loc: tuple[int | str, ...], default: Any) -> Any:
    for part in loc:
        raw = _step(raw, part)
        if raw is _MISSING:
            return default
    return raw


def _show(value: Any, secrets: set[str]) -> str:
    """A value roughly as the user wrote it, shortened so one problem stays one line.

    Redacted before shortening: a key cut in half would no longer match, and half a key is a leak.
    Shortening also never stops inside a word, so no fragment of any unknown key survives.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v, secrets) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{…}"
    else:
        text = repr(value) if isinstance(value, int | float) else str(value)
    text = redact(text, secrets)
    if len(text) <= 80:
        return text
    head = text[:76]
    if re.match(r"[\w-]", text[76]):
        head = re.sub(r"[\w-]+$", "", head)
    return head + "…" + text[-1]


def _section(sections: Mapping[str, BaseModel | None], name: str, kind: type[_M]) -> _M | None:
    found = sections.get(name)
    return found if isinstance(found, kind) else None
