"""Where configuration values come from besides the TOML file: the environment and the API key.

Split from `omnid.config` so each file stays readable. Both halves share one concern: they read
values the user cannot see in the config file, so their problems must say which variable or file a
value came from, and nothing read here may ever be echoed if it could be the API key (`redact`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from omnid.config_schema import SECTIONS, table_model

CREDENTIAL_NAME = "dashscope-api-key"
ENV_PREFIX = "OMNID_"
KEY_HOME = "put it in a file named by api.api_key_file, a systemd credential, or $DASHSCOPE_API_KEY"
# DashScope keys look like sk-<32 hex>; anything shaped like one is hidden even if we never saw it.
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_-]{16,}")
_REDACTED = "<redacted>"
_ONE_LINE = "it must hold the key alone, on one line"


def user_name() -> str:
    """Who we run as: "cannot be read" is only actionable with the user the unit runs as."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def unknown_key(dotted: str, table: str, model: type[BaseModel], note: str = "") -> str:
    """The line for a misspelt key: the closest valid one, and all of them, fix it in one go."""
    name = dotted.rsplit(".", 1)[-1]
    keys = sorted(model.model_fields)
    close = difflib.get_close_matches(name, keys, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{dotted}{note}: unknown key in [{table}]{hint}; valid keys: {', '.join(keys)}"


# --- environment overrides ---------------------------------------------------------------------


def env_overrides(
    environ: Mapping[str, str], secrets: set[str]
) -> tuple[dict[str, Any], dict[str, str], list[str], list[str]]:
    """OMNID_<SECTION>__<KEY>[__<KEY>] → (nested data, dotted key → variable, problems, warnings).

    Unknown names are errors, like unknown TOML keys: a misspelt override in a unit file would
    otherwise be ignored in silence. Variables without `__` (OMNID_CONFIG) are not overrides.
    """
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    warnings: list[str] = []
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        raw = environ[var]
        if "KEY" in var.upper():
            secrets.add(raw.strip())
        rest = var[len(ENV_PREFIX) :].lower()
        if "__" not in rest:
            section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
            if rest == "api_key":
                warnings.append(
                    f"${var} is ignored: the API key is never read from OMNID_*; {KEY_HOME}"
                )
            elif section:
                better = f"{ENV_PREFIX}{section.upper()}__{rest[len(section) + 1 :].upper()}"
                warnings.append(f"${var} is ignored: overrides use two underscores, e.g. ${better}")
            continue
        parts = rest.split("__")
        dotted = ".".join(parts)
        note = f" (from ${var})"
        if parts[-1] == "api_key":
            problems.append(f"{dotted}{note}: the key is never read from OMNID_*; {KEY_HOME}")
            continue
        if parts[0] not in SECTIONS:
            close = difflib.get_close_matches(parts[0], SECTIONS, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0].upper()}__…?)" if close else ""
            problems.append(f"${var}: no section [{parts[0]}]{hint}; valid: {', '.join(SECTIONS)}")
            continue
        model: type[BaseModel] | None = SECTIONS[parts[0]]
        annotation: Any = None
        for i, name in enumerate(parts[1:], start=1):
            table = ".".join(parts[:i])
            if model is None:
                problems.append(f"{dotted}{note}: {table} is a single value, not a table")
                break
            if name not in model.model_fields:
                problems.append(unknown_key(".".join(parts[: i + 1]), table, model, note))
                break
            annotation = model.model_fields[name].annotation
            model = table_model(model.model_fields[name])
        else:
            if model is not None:
                first = next(iter(model.model_fields)).upper()
                problems.append(
                    f"${var}: [{dotted}] is a table; set its keys, e.g. ${var}__{first}"
                )
                continue
            try:
                raw.encode("utf-8")
            except UnicodeEncodeError:
                problems.append(f"{dotted}{note}: the value is not valid UTF-8 text")
                continue
            node = data
            for name in parts[:-1]:
                node = node.setdefault(name, {})
            node[parts[-1]] = _coerce(annotation, raw)
            sources[dotted] = var
    return data, sources, problems, warnings


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(annotation: Any, raw: str) -> Any:
    """Turn an environment string into the key's type; leave it as is if it does not fit, so that
    validation reports it with the same words as a bad TOML value."""
    args = get_args(annotation)
    if type(None) in args:
        if not raw.strip():
            return None
        annotation = next(a for a in args if a is not type(None))
    text = raw.strip()
    kind = annotation
    if get_origin(annotation) is Literal:
        if not all(isinstance(a, int) for a in get_args(annotation)):
            return text
        kind = int
    try:
        if kind is bool:
            return True if text.lower() in _TRUE else False if text.lower() in _FALSE else raw
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if get_origin(kind) is list:
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
    except ValueError:  # json.JSONDecodeError is a ValueError
        return raw
    return raw


# --- the API key -------------------------------------------------------------------------------


def resolve_key(
    key_file: Path | None, environ: Mapping[str, str], secrets: set[str]
) -> tuple[str | None, str, list[str]]:
    """(key, where it came from — or where it was looked for, problems).

    A source that exists but is unusable is an error rather than a fall-through: quietly using a
    different key than the one the user set up is worse than refusing to start.
    """
    cred_dir = environ.get("CREDENTIALS_DIRECTORY", "")
    if cred_dir:
        cred = Path(cred_dir) / CREDENTIAL_NAME
        if cred.exists() or cred.is_symlink():
            return _key_from(cred, f"$CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}", secrets)
    if key_file is not None:
        return _key_from(key_file, "api.api_key_file", secrets)
    key = environ.get("DASHSCOPE_API_KEY", "").strip()
    if key:
        return _checked(key, "$DASHSCOPE_API_KEY", "$DASHSCOPE_API_KEY", secrets)
    cred_state = "not in $CREDENTIALS_DIRECTORY" if cred_dir else "$CREDENTIALS_DIRECTORY unset"
    env_state = "empty" if "DASHSCOPE_API_KEY" in environ else "unset"
    looked = (
        f"not set; looked for $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} ({cred_state}), "
        f"api.api_key_file (not configured), $DASHSCOPE_API_KEY ({env_state})"
    )
    return None, looked, []


def _key_from(path: Path, what: str, secrets: set[str]) -> tuple[str | None, str, list[str]]:
    shown = f"{what} = {str(path)!r}" if what == "api.api_key_file" else f"{what} ({path})"
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None, what, [f"{shown}: no such file; it must name a file that holds only the key"]
    except IsADirectoryError:
        return None, what, [f"{shown}: is a directory; it must be a file that holds only the key"]
    except PermissionError:
        return None, what, [f"{shown}: cannot be read by user {user_name()}"]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        return None, what, [f"{shown}: cannot be read ({reason})"]
    if not key:
        return None, what, [f"{shown}: the file is empty; it must hold the key"]
    return _checked(key, f"{what} ({path})" if what == "api.api_key_file" else what, shown, secrets)


def _checked(
    key: str, source: str, shown: str, secrets: set[str]
) -> tuple[str | None, str, list[str]]:
    """A key with a space, line break or non-ASCII character inside would corrupt (or smuggle
    extra lines into) the Authorization header, and is never a real key."""
    secrets.add(key)
    if any(ch.isspace() or not (ch.isascii() and ch.isprintable()) for ch in key):
        return (
            None,
            source,
            [f"{shown}: the key has spaces, line breaks or non-ASCII characters; {_ONE_LINE}"],
        )
    return key, source, []


def redact(text: str, secrets: Iterable[str]) -> str:
    """Hide every known key candidate, and anything shaped like a DashScope key, in `text`.

    Candidates shorter than 6 characters are skipped: replacing them would mangle ordinary words,
    and nothing that short is a working key.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 6:
            text = text.replace(secret, _REDACTED)
    return _KEY_LIKE.sub(_REDACTED, text)
