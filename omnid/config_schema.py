"""The shape of omnid's configuration: every section, key, default and allowed range.

The models are the single source of truth for `config/omnid.toml`, for the error messages of
`omnid check-config` (the "what is allowed" half of each message is derived from the constraints
declared here, so the two cannot drift apart) and for the attribute names the rest of the daemon
reads. Loading, environment overrides, the API key and rendering live in `omnid.config`.

Sections are strict (a TOML string is not silently turned into a number or a boolean: that is
usually a typo worth reporting), forbid unknown keys, and are frozen, because the daemon swaps whole
configs on SIGHUP instead of mutating one that other threads are reading.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from omnid.models import MODELS, ModelInfo
from omnid.modes import MODES

DEFAULT_URL = "wss://dashscope-intl.aliyuncs.com/api-ws/v1/realtime"
DEFAULT_MODEL = "qwen3.5-omni-plus-realtime"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant inside a small box with a microphone and a speaker. "
    "Everything you say is spoken aloud, so answer in one to three short sentences of plain, "
    "conversational language, without lists, markdown, emoji or links. Reply in the language "
    "the user speaks. If you did not catch what was said, ask briefly. When an image comes "
    "with a question, it is what the box's camera sees right now."
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# sun_path in struct sockaddr_un holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


def _key(default: Any = None, allowed: str | None = None, **constraints: Any) -> Any:
    """A field whose error text can be overridden when the derived one would not help a user."""
    extra: JsonDict | None = {"allowed": allowed} if allowed else None
    if isinstance(default, list):
        return Field(default_factory=lambda: list(default), json_schema_extra=extra, **constraints)
    return Field(default, json_schema_extra=extra, **constraints)


def _required(allowed: str, **constraints: Any) -> Any:
    """A key with no default: the owner must write it (its error text says what it accepts)."""
    return Field(json_schema_extra={"allowed": allowed}, **constraints)


def _blank_is_none(value: Any) -> Any:
    """TOML has no null: an empty string is how a file (or an env override) un-sets a path."""
    return None if value == "" else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ApiSection(_Section):
    url: str = _key(
        DEFAULT_URL,
        "must be a wss:// URL such as 'wss://dashscope-intl.aliyuncs.com/api-ws/v1/realtime' "
        "(ws:// only to 127.0.0.1, localhost or ::1)",
    )
    model: str = _key(DEFAULT_MODEL, "must be a model name such as 'qwen3.5-omni-plus-realtime'")
    api_key_file: Path | None = _key(
        None, "must be the path of a file that holds only the key", strict=False
    )
    connect_timeout_s: float = _key(10.0, gt=0, le=120)

    _blank = field_validator("api_key_file", mode="before")(_blank_is_none)

    @field_validator("url")
    @classmethod
    def _tls_for_remote_hosts(cls, url: str) -> str:
        """The key travels in a header: plain ws:// is only acceptable to this machine itself."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(
                "must be a wss:// URL with a host, such as "
                "'wss://dashscope-intl.aliyuncs.com/api-ws/v1/realtime'"
            )
        if scheme == "ws" and parts.hostname not in LOCAL_HOSTS:
            raise ValueError(
                f"ws:// (no TLS) is only allowed to 127.0.0.1, localhost or ::1; "
                f"use wss:// for {parts.hostname} — the API key would travel in clear text"
            )
        return url

    @field_validator("model")
    @classmethod
    def _not_blank(cls, model: str) -> str:
        if not model.strip():
            raise ValueError("must be a model name such as 'qwen3.5-omni-plus-realtime'")
        return model


class VadSection(_Section):
    type: Literal["server_vad", "semantic_vad"] = "semantic_vad"
    threshold: float = _key(0.5, ge=-1, le=1)
    silence_duration_ms: int = _key(800, ge=200, le=6000)
    prefix_padding_ms: int = _key(300, ge=0, le=5000)


class SessionSection(_Section):
    mode: Literal["manual", "vad", "wake"] = "manual"
    voice: str = _key("", "must be a voice name such as 'Tina', or '' for the model's own default")
    instructions: str = DEFAULT_INSTRUCTIONS
    modalities: list[str] = _key(["text", "audio"], """must be ["text"] or ["text", "audio"]""")
    transcribe_input: bool = True
    transcription_model: str = _key("qwen3-asr-flash-realtime", min_length=1)
    enable_search: bool = False
    rollover_after_min: float = _key(110.0, gt=0, lt=120)
    carry_over_turns: int = _key(6, ge=0, le=50)
    keep_warm: bool = True
    retry_turn_on_drop: bool = True
    vad: VadSection = Field(default_factory=VadSection)

    @field_validator("modalities")
    @classmethod
    def _documented_combinations(cls, modalities: list[str]) -> list[str]:
        """The service accepts exactly these two; normalise order so comparisons are simple."""
        if sorted(modalities) == ["text"]:
            return ["text"]
        if sorted(modalities) == ["audio", "text"]:
            return ["text", "audio"]
        raise ValueError(
            """must be ["text"] or ["text", "audio"] (spoken answers always come with their """
            """text; ["audio"] alone is refused by the service)"""
        )


_DEVICE = "must be an ALSA device name or part of one, 'default', or 'wav:PATH'"


def _check_device(name: str) -> str:
    if not name.strip():
        raise ValueError(_DEVICE)
    if name.startswith("wav:") and not name[4:].strip():
        raise ValueError("'wav:' needs a file path after it, e.g. 'wav:/tmp/mic.wav'")
    return name


class AudioSection(_Section):
    input_device: str = _key("default", _DEVICE)
    output_device: str = _key("default", _DEVICE)
    block_ms: Literal[10, 20, 40, 50, 100] | None = None  # None: the mode's (`Config.block_ms`)
    output_volume: int = _key(100, ge=0, le=100)
    echo_guard: Literal["half_duplex", "off"] = "half_duplex"
    echo_tail_ms: int = _key(300, ge=0, le=3000)
    earcons: bool = True
    max_turn_s: float = _key(60.0, ge=1, le=600)

    _devices = field_validator("input_device", "output_device")(_check_device)
    _blank = field_validator("block_ms", mode="before")(_blank_is_none)


class CameraSection(_Section):
    enabled: bool = False
    source: Literal["picamera2", "v4l2", "files"] = "picamera2"
    device: str = _key("/dev/video0", min_length=1)
    path: Path | None = _key(None, "must be a directory of JPEG/PNG images", strict=False)
    width: int = _key(640, ge=32, le=1920)
    height: int = _key(480, ge=32, le=1080)
    fps: float = _key(1.0, gt=0, le=1)
    jpeg_quality: int = _key(80, ge=10, le=95)
    when: Literal["turn", "always"] = "turn"

    _blank = field_validator("path", mode="before")(_blank_is_none)


_PIN = "must be a gpiozero pin name such as 'GPIO17' (a string, in quotes)"


class ButtonSection(_Section):
    enabled: bool = False
    pin: str = _key("GPIO17", _PIN, min_length=1)
    pull_up: bool = True
    bounce_ms: int = _key(20, ge=0, le=500)


class LedSection(_Section):
    enabled: bool = False
    pin: str = _key("GPIO27", _PIN, min_length=1)


WAKE_MODELS = ("okay_nabu", "hey_jarvis", "hey_mycroft", "alexa")
"""The microWakeWord models that ship inside pymicro-wakeword's wheel."""


class WakeSection(_Section):
    """Wake-word mode's detector and its windows (only read with `session.mode = "wake"`)."""

    model: str = _key(
        "okay_nabu",
        f"must be one of {', '.join(WAKE_MODELS)}, or the path of a model manifest (.json)",
        min_length=1,
    )
    # None: the model's own cutoff, from its manifest (okay_nabu 0.85).
    probability_cutoff: float | None = _key(None, "must be a number between 0 and 1", gt=0, lt=1)
    # The detector stays above its cutoff for up to ~0.7 s per utterance: one wake, not several.
    refractory_s: float = _key(1.0, ge=0.2, le=10)
    follow_up_s: float = _key(5.0, ge=0, le=60)
    no_speech_s: float = _key(4.0, ge=1, le=30)
    # A short tone on the wake word. It is not masked from the uplink (a mask would cut the
    # words said straight after the wake word), so it is off unless the owner wants it.
    earcon: bool = False

    _blank = field_validator("probability_cutoff", mode="before")(_blank_is_none)


class UsageSection(_Section):
    daily_token_limit: int = _key(0, ge=0)
    price_input_text: float = _key(0.0, ge=0)
    price_input_audio: float = _key(0.0, ge=0)
    price_input_image: float = _key(0.0, ge=0)
    price_output_text: float = _key(0.0, ge=0)
    price_output_audio: float = _key(0.0, ge=0)
    currency: str = ""


class ControlSection(_Section):
    socket: Path = _key(
        Path("/run/omnid/control.sock"),
        f"must be an absolute path of at most {MAX_SOCKET_PATH_BYTES} bytes",
        strict=False,
    )

    @field_validator("socket")
    @classmethod
    def _bindable(cls, socket: Path) -> Path:
        """Relative paths depend on the daemon's cwd; longer ones fail only at bind() time."""
        if not socket.is_absolute() or len(bytes(socket)) > MAX_SOCKET_PATH_BYTES:
            raise ValueError(f"must be an absolute path of at most {MAX_SOCKET_PATH_BYTES} bytes")
        return socket


class LogSection(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    transcripts: bool = False


# --- tools: functions the model may call ------------------------------------------------------

BUILTIN_TOOLS = ("get_time", "set_volume", "set_timer", "cancel_timer", "list_timers", "set_alarm")
DEFAULT_BUILTIN = ("get_time", "set_volume", "set_timer", "cancel_timer", "list_timers")
TOOL_MODES = ("manual", "vad", "wake")
TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
# A parameter name is also what goes between the braces of an argv placeholder.
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# `{name}` as a whole argv element is replaced by the argument's value; nothing else is.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOOL_NAME_TEXT = "must be 1 to 64 letters, digits, '_' or '-' (the name the model calls)"
_PARAM_TYPES = ("string", "integer", "number", "boolean")


class ToolParamConfig(_Section):
    """One argument of a command tool: its type and the bounds the model's value must keep."""

    type: Literal["string", "integer", "number", "boolean"] = _required(
        "must be one of 'string', 'integer', 'number', 'boolean'"
    )
    description: str = ""
    enum: list[str | int | float | bool] | None = _key(
        None,
        "must be a non-empty list of the values allowed, each of the parameter's type",
        min_length=1,
    )
    minimum: int | float | None = _key(None, "must be a number (integer and number parameters)")
    maximum: int | float | None = _key(None, "must be a number (integer and number parameters)")
    pattern: str | None = _key(
        None, "must be a Python regular expression, as a string, that the whole value must match"
    )


def _check_argv(argv: list[str]) -> list[str]:
    if not argv or not argv[0].startswith("/"):
        raise ValueError(
            "the first element must be the absolute path of the program, "
            'e.g. ["/usr/local/bin/relay", "{action}"] (no shell, no $PATH lookup)'
        )
    if any("\0" in arg for arg in argv):
        raise ValueError("an element holds a NUL character, which no command line can carry")
    return argv


class CommandToolConfig(_Section):
    """An owner's program the model may run, with the arguments it may fill in."""

    name: str = _required(_TOOL_NAME_TEXT, pattern=TOOL_NAME)
    description: str = _required(
        "must be a non-empty text telling the model what the tool does", min_length=1
    )
    argv: list[str] = _required(
        "must be a list of strings, the first the absolute path of the program, "
        'e.g. ["/usr/local/bin/relay", "{action}"]'
    )
    confirm: Literal["press", "none"] = _required(
        "must be 'press' (each call waits for a button press) or 'none' (runs without asking); "
        "there is no default: decide"
    )
    timeout_s: float | None = _key(
        None, "must be a number greater than 0 and at most 600 (seconds)", gt=0, le=600
    )
    modes: list[Literal["manual", "vad", "wake"]] = _key(
        list(TOOL_MODES), "must be a non-empty list of 'manual', 'vad', 'wake'", min_length=1
    )
    parameters: dict[str, ToolParamConfig] = _key(
        {},
        "must be a table per parameter: write [tools.command.parameters.NAME] under the "
        "command's [[tools.command]] and put the parameter's keys under it",
    )

    _argv = field_validator("argv")(_check_argv)

    @field_validator("description")
    @classmethod
    def _said(cls, description: str) -> str:
        if not description.strip():
            raise ValueError("must be a non-empty text telling the model what the tool does")
        return description


MCP_PREFIX = r"^[a-zA-Z0-9_-]{1,24}$"
MCP_REQUIREMENT = "mcp>=1.30,<2"  # the same pin as pyproject.toml's mcp extra


class McpServerConfig(_Section):
    """An MCP server whose tools the model may call, as `<name>__<tool>`."""

    name: str = _required(
        "must be 1 to 24 letters, digits, '_' or '-' (the prefix of its tools' names)",
        pattern=MCP_PREFIX,
    )
    url: str | None = _key(
        None, "must be the server's Streamable HTTP URL, e.g. 'https://ha.example:8123/api/mcp'"
    )
    token_file: str | None = _key(
        None,
        "must be the path of a file holding only the bearer token, or the name of a systemd "
        "credential (LoadCredential=)",
    )
    command: list[str] | None = _key(
        None, 'must be the argv of a stdio MCP server, e.g. ["/usr/local/bin/my-mcp-server"]'
    )
    allow: list[str] = _required(
        'must be a list of the server\'s tool names to offer, or ["*"] for all of them',
        min_length=1,
    )
    confirm: Literal["press", "none"] = _key(
        "press",
        "must be 'press' (a tool the server does not mark read-only waits for a button press) "
        "or 'none'",
    )
    plain_http: bool = False

    _blank = field_validator("url", "token_file", mode="before")(_blank_is_none)


class ToolsSection(_Section):
    enabled: bool = False
    builtin: list[
        Literal["get_time", "set_volume", "set_timer", "cancel_timer", "list_timers", "set_alarm"]
    ] = _key(
        list(DEFAULT_BUILTIN),
        "must be a list of built-in tools: "
        "'get_time', 'set_volume', 'set_timer', 'cancel_timer', 'list_timers', 'set_alarm'",
    )
    confirm_s: float = _key(10.0, gt=0, le=120)
    timeout_s: float = _key(10.0, gt=0, le=600)
    max_calls_per_turn: int = _key(4, ge=1, le=32)
    max_timers: int = _key(10, ge=1, le=100)
    alarm_max_s: float = _key(60.0, ge=5, le=600)
    command: list[CommandToolConfig] = _key(
        [],
        "must be a list of tables: write [[tools.command]] on a line of its own above each "
        "command's keys",
    )
    mcp: list[McpServerConfig] = _key(
        [],
        "must be a list of tables: write [[tools.mcp]] on a line of its own above each "
        "server's keys",
    )
    max_declared: int = _key(40, ge=1, le=128)
    max_declared_bytes: int = _key(16000, ge=1000, le=100000)

    # Where each command stood in the file, when load_config had to drop broken ones to run the
    # checks across keys (None: `command` is the file's list as written).
    _positions: tuple[int, ...] | None = PrivateAttr(default=None)

    @field_validator("builtin")
    @classmethod
    def _once_each(cls, builtin: list[str]) -> list[str]:
        twice = sorted({name for name in builtin if builtin.count(name) > 1})
        if twice:
            raise ValueError(
                f"lists {', '.join(repr(n) for n in twice)} more than once; "
                "name each built-in tool at most once"
            )
        return builtin

    def numbered(self) -> list[tuple[int, CommandToolConfig]]:
        """Each command with its index in the file's [[tools.command]] list."""
        positions: Sequence[int] = self._positions or range(len(self.command))
        return list(zip(positions, self.command, strict=True))


def cross_check(
    api: ApiSection | None,
    session: SessionSection | None,
    camera: CameraSection | None,
    tools: ToolsSection | None,
) -> tuple[list[str], list[str]]:
    """Problems that involve two keys, as (errors, warnings), one readable line each.

    Takes sections rather than a Config so that `load_config` can run it on the sections that did
    validate and report these problems together with per-key ones.
    """
    errors: list[str] = []
    warnings: list[str] = []
    info = MODELS.get(api.model) if api else None
    if api and info is None:
        warnings.append(
            f"api.model = {api.model!r}: not a model omnid knows ({', '.join(MODELS)}); "
            "it is used as given, without checking voice, VAD type or search against it"
        )
    if session and info:
        voice = session.voice
        if voice and voice not in info.voices:
            owners = [m.name for m in MODELS.values() if voice in m.voices]
            choices = ", ".join(sorted(info.voices))
            if owners:
                errors.append(
                    f"session.voice = {voice!r}: a voice of {', '.join(owners)}, not of "
                    f"{info.name}; use one of {choices}, or '' for its default "
                    f"{info.default_voice!r}"
                )
            else:
                same = [v for v in info.voices if v.lower() == voice.lower()]
                hint = f"did you mean {same[0]!r}? " if same else ""
                warnings.append(
                    f"session.voice = {voice!r}: not in omnid's list for {info.name}; {hint}"
                    f"it is sent as given (known voices: {choices})"
                )
        vad = session.mode in ("vad", "wake")  # the service's VAD ends the turn
        if vad and session.vad.type == "semantic_vad" and not info.semantic_vad:
            errors.append(
                f"session.vad.type = 'semantic_vad': model {info.name} has no semantic_vad; "
                "use session.vad.type = 'server_vad' with it"
            )
        if session.enable_search and not info.search:
            able = ", ".join(m.name for m in MODELS.values() if m.search)
            errors.append(
                f"session.enable_search = true: model {info.name} has no web search; "
                f"only {able} offers it — set enable_search = false or change api.model"
            )
    if camera and camera.enabled and camera.source == "files":
        if camera.path is None:
            errors.append(
                "camera.path: required when camera.enabled = true and camera.source = 'files'; "
                "must be a directory of JPEG/PNG images"
            )
        elif not camera.path.is_dir():
            what = "not a directory" if camera.path.exists() else "no such directory"
            errors.append(
                f"camera.path = {str(camera.path)!r}: {what}; "
                "must be a directory of JPEG/PNG images"
            )
    if tools:
        _check_tools(tools, api, info, session, errors, warnings)
    return errors, warnings


def _check_tools(
    tools: ToolsSection,
    api: ApiSection | None,
    info: ModelInfo | None,
    session: SessionSection | None,
    errors: list[str],
    warnings: list[str],
) -> None:
    if tools.enabled:
        if info and not info.tools:
            able = " or ".join(m.name for m in MODELS.values() if m.tools)
            errors.append(
                f"tools.enabled = true: model {info.name} accepts tools and never calls them; "
                f"use {able} (api.model), or set tools.enabled = false"
            )
        elif api and info is None:
            warnings.append(
                f"tools.enabled = true: api.model = {api.model!r} is not a model omnid knows; "
                "whether it calls tools is not checked"
            )
        if session and session.enable_search:
            errors.append(
                "tools.enabled = true: the service refuses tools and web search in one session "
                "(session.enable_search = true); turn one of them off"
            )
        if not tools.builtin and not tools.command:
            warnings.append(
                "tools.enabled = true: no tool is configured (tools.builtin = [] and no "
                "[[tools.command]]), so the model is offered none"
            )
    _check_mcp(tools, errors, warnings)
    seen: dict[str, int] = {}
    for index, command in tools.numbered():
        base = f"tools.command[{index}]"
        if command.name in BUILTIN_TOOLS:
            errors.append(
                f"{base}.name = {command.name!r}: the name of a built-in tool; choose another name"
            )
        elif command.name in seen:
            errors.append(
                f"{base}.name = {command.name!r}: tools.command[{seen[command.name]}] has the "
                "same name; each command needs its own"
            )
        else:
            seen[command.name] = index
        _check_argv_placeholders(base, command, errors, warnings)
        for name, param in command.parameters.items():
            _check_param(f"{base}.parameters.{toml_key(name)}", name, param, errors)
        if tools.enabled and session and session.mode not in command.modes:
            warnings.append(
                f"{base}.modes = {_shown(command.modes)}: does not include session.mode = "
                f"{session.mode!r}, so the model is not offered {command.name!r}"
            )


def toml_key(name: str) -> str:
    """A table key as TOML would need it written: bare when it can be, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else repr(name)


def _check_argv_placeholders(
    base: str, command: CommandToolConfig, errors: list[str], warnings: list[str]
) -> None:
    used: set[str] = set()
    declared = ", ".join(command.parameters) or "none"
    for i, arg in enumerate(command.argv):
        whole = PLACEHOLDER.fullmatch(arg)
        if whole:
            name = whole[1]
            used.add(name)
            if name not in command.parameters:
                errors.append(
                    f"{base}.argv[{i}] = {arg!r}: no parameter named {name!r} is declared "
                    f"(declared: {declared}); add [tools.command.parameters.{name}] or fix "
                    "the name"
                )
        elif inside := PLACEHOLDER.search(arg):
            used.add(inside[1])  # misplaced rather than unused: one line about it is enough
            before = arg[: inside.start()].rstrip("=")
            example = f'["{before}", "{inside[0]}"]' if before else f'["{inside[0]}"]'
            errors.append(
                f"{base}.argv[{i}] = {arg!r}: a placeholder must be a whole argv element; "
                f'write "{inside[0]}" as an element of its own, e.g. {example} — text around '
                "a placeholder is never substituted"
            )
    for name in command.parameters:
        if name not in used:
            warnings.append(
                f"{base}.parameters.{toml_key(name)}: declared but not used in argv; the model "
                f'must still give it, and the command never sees it (use "{{{name}}}")'
            )


def _check_param(path: str, name: str, param: ToolParamConfig, errors: list[str]) -> None:
    if not PARAM_NAME.fullmatch(name):
        errors.append(
            f"{path}: a parameter name must start with a letter or '_' and hold only letters, "
            "digits and '_' (at most 64)"
        )
    kind = param.type
    numeric = kind in ("integer", "number")
    if param.enum is not None:
        if kind == "boolean":
            errors.append(f"{path}.enum: not for a boolean parameter (it is true or false)")
        elif not all(_of_type(v, kind) for v in param.enum):
            what = {"string": "strings", "integer": "whole numbers", "number": "numbers"}[kind]
            errors.append(
                f"{path}.enum = {_shown(param.enum)}: the values of {_a(kind)} parameter "
                f"must all be {what}"
            )
    for bound in ("minimum", "maximum"):
        value = getattr(param, bound)
        if value is not None and not numeric:
            errors.append(
                f"{path}.{bound} = {_num(value)}: only for integer and number parameters, "
                f"not {kind}"
            )
    low, high = param.minimum, param.maximum
    if numeric and low is not None and high is not None and low > high:
        errors.append(
            f"{path}.minimum = {_num(param.minimum)}: greater than maximum = "
            f"{_num(param.maximum)}; minimum must be at most maximum"
        )
    if param.pattern is not None:
        if kind != "string":
            errors.append(f"{path}.pattern = {_shown(param.pattern)}: only for string parameters")
        else:
            try:
                re.compile(param.pattern)
            except re.error as exc:
                errors.append(
                    f"{path}.pattern = {_shown(param.pattern)}: not a valid Python regular "
                    f"expression ({exc.msg})"
                )


def _shown(value: Any) -> str:
    """A value as TOML would write it (true, not True), as config.py's messages show values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value)


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _of_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int)
    return isinstance(value, int | float)


class Config(BaseSettings):
    """The whole effective configuration, as the daemon reads it.

    `Config()` alone is the built-in defaults: its only settings source is its own arguments. The
    TOML file, the `OMNID_<SECTION>__<KEY>` environment and the API key are layered on by
    `omnid.config.load_config`, which alone knows which line or variable a bad value came from
    and so can say so in the error.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    api: ApiSection = Field(default_factory=ApiSection)
    session: SessionSection = Field(default_factory=SessionSection)
    audio: AudioSection = Field(default_factory=AudioSection)
    camera: CameraSection = Field(default_factory=CameraSection)
    button: ButtonSection = Field(default_factory=ButtonSection)
    led: LedSection = Field(default_factory=LedSection)
    wake: WakeSection = Field(default_factory=WakeSection)
    usage: UsageSection = Field(default_factory=UsageSection)
    control: ControlSection = Field(default_factory=ControlSection)
    log: LogSection = Field(default_factory=LogSection)
    tools: ToolsSection = Field(default_factory=ToolsSection)
    api_key: SecretStr | None = None
    source_path: Path | None = None

    # Set by load_config; read by render_effective. Private, so they never reach a dump.
    _api_key_note: str = PrivateAttr(default="")
    _env_sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit arguments: no stray `OMNID_API_KEY` or .env file can sneak a key in."""
        return (init_settings,)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        errors, _ = cross_check(self.api, self.session, self.camera, self.tools)
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def block_ms(self) -> int:
        """The audio block: as configured, else the mode's own (`modes.Mode.block_ms`)."""
        return self.audio.block_ms or MODES[self.session.mode].block_ms

    @property
    def effective_voice(self) -> str:
        """The voice to send: the configured one, else the model's default.

        Empty only for a model omnid does not know with no voice configured: then send no voice
        and let the service use its own default.
        """
        info = MODELS.get(self.api.model)
        return self.session.voice or (info.default_voice if info else "")


# What a reload (SIGHUP) cannot change in a running daemon: the devices, sockets and pins are
# opened once, the mode decides how the microphone and camera are wired, and the wake-word
# detector is loaded once. Everything else — the endpoint, model, key, voice, instructions, VAD,
# carry-over, rollover, token limit, log level, [tools] (the session's tool list is sent again)
# — applies at the next idle moment, before the next turn starts. The MCP servers are connected
# once, at start.
RESTART_ONLY = (
    "session.mode",
    "tools.mcp",
    "audio",
    "camera",
    "button",
    "led",
    "control",
    "wake",
)

SECTIONS: dict[str, type[BaseModel]] = {
    name: info.annotation
    for name, info in Config.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, _Section)
}


def table_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a key that is itself a table (`session.vad`), else None."""
    ann = info.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def allowed_text(info: FieldInfo, path: str) -> str:
    """What a key accepts, in words a user can act on, derived from the field's declaration."""
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("allowed"), str):
        return str(extra["allowed"])
    ann = info.annotation
    optional = [a for a in get_args(ann) if a is not type(None)]
    if type(None) in get_args(ann) and len(optional) == 1:
        ann = optional[0]  # `float | None`: what matters is what a written value must be
    if get_origin(ann) is Literal:
        return "must be one of " + ", ".join(repr(a) for a in get_args(ann))
    if ann is bool:
        return "must be true or false"
    if table_model(info):
        return f"must be a table: write [{path}] on a line of its own and put its keys under it"
    bounds = {
        attr: getattr(m, attr)
        for m in info.metadata
        for attr in ("ge", "gt", "le", "lt", "min_length")
        if getattr(m, attr, None) is not None
    }
    if ann in (int, float):
        kind = "a whole number" if ann is int else "a number"
        if "ge" in bounds and "le" in bounds:
            return f"must be {kind} between {_num(bounds['ge'])} and {_num(bounds['le'])}"
        words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
        if set(bounds) & set(words) == {"ge"}:
            return f"must be {kind}, {_num(bounds['ge'])} or more"
        parts = [f"{w} {_num(bounds[k])}" for k, w in words.items() if k in bounds]
        return f"must be {kind}" + (" " + " and ".join(parts) if parts else "")
    if ann is str:
        return "must be a non-empty string" if "min_length" in bounds else "must be a string"
    return "must be a path (a string)"


def _check_mcp(tools: ToolsSection, errors: list[str], warnings: list[str]) -> None:
    """Each MCP server: one transport, TLS unless said otherwise, its own prefix, and the SDK."""
    prefixes: dict[str, int] = {}
    for index, server in enumerate(tools.mcp):
        base = f"tools.mcp[{index}]"
        if (server.url is None) == (server.command is None):
            errors.append(
                f"{base}: give exactly one of url (a Streamable HTTP server) or command (a "
                "stdio server)"
            )
        if server.url is not None:
            scheme = urlsplit(server.url).scheme.lower()
            if scheme == "http" and not server.plain_http:
                errors.append(
                    f"{base}.url = {server.url!r}: http:// sends the token and every call in "
                    "clear text; use https://, or set plain_http = true for a server on your LAN"
                )
            elif scheme not in ("http", "https") or not urlsplit(server.url).hostname:
                errors.append(f"{base}.url = {server.url!r}: must be an https:// URL with a host")
            elif scheme == "http":
                warnings.append(
                    f"{base}.url = {server.url!r}: plain_http = true: the token and every call "
                    "cross the network unencrypted"
                )
        elif server.token_file is not None:
            errors.append(f"{base}.token_file: only a url server takes a token")
        if server.command is not None and (
            not server.command or not server.command[0].startswith("/")
        ):
            errors.append(
                f"{base}.command = {server.command!r}: the first element must be the absolute "
                "path of the server program"
            )
        if server.name in prefixes:
            errors.append(
                f"{base}.name = {server.name!r}: tools.mcp[{prefixes[server.name]}] has the "
                "same name; each server needs its own prefix"
            )
        prefixes.setdefault(server.name, index)
    if tools.mcp and importlib.util.find_spec("mcp") is None:
        errors.append(
            "tools.mcp: MCP servers need the official MCP SDK (omnid's mcp extra); install it "
            f"with: sudo /opt/omnid/venv/bin/pip install '{MCP_REQUIREMENT}'"
        )
