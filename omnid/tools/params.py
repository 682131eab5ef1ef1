"""The typed parameters of a command tool: what the model is told, and what it may send.

The model fills in arguments from what it heard, so every value is checked against the owner's
declaration before anything runs, and every refusal is one short sentence the model can read and
repeat to the user. Values end up as whole elements of an argv (never inside a shell line), so the
remaining risk is a value that the program reads as an option: a free string starting with `-` is
refused, and so is a negative number where the owner declared no minimum.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from omnid.config_schema import PLACEHOLDER, ToolParamConfig

MAX_STRING = 256  # characters in one string argument
MAX_ARGUMENTS = 16_384  # characters in the whole arguments text
MAX_INTEGER = 2**63 - 1  # what a C program's strtoll can still read
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # NUL, line breaks, tabs, escapes: one plain line only


class ArgumentError(ValueError):
    """Arguments the model sent that do not fit the declaration; the message is for the model."""


def json_schema(params: Mapping[str, ToolParamConfig]) -> dict[str, Any]:
    """The `parameters` object of a function declaration: every parameter required, no others.

    Patterns are sent anchored (`^(?:…)$`), because JSON Schema's `pattern` matches anywhere in
    the value and the check here is a full match. A number without a declared minimum is sent
    with minimum 0, which is what `parse_arguments` enforces.
    """
    properties: dict[str, Any] = {}
    for name, param in params.items():
        prop: dict[str, Any] = {"type": param.type}  # the config's names are JSON Schema's
        if param.description:
            prop["description"] = param.description
        if param.enum is not None:
            prop["enum"] = list(param.enum)
        if param.type in ("integer", "number"):
            prop["minimum"] = _lowest(param)
            if param.maximum is not None:
                prop["maximum"] = param.maximum
        if param.type == "string":
            if param.pattern is not None:
                prop["pattern"] = f"^(?:{param.pattern})$"
            if param.enum is None:
                prop["maxLength"] = MAX_STRING
        properties[name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": list(params),
        "additionalProperties": False,
    }


def parse_arguments(text: str, params: Mapping[str, ToolParamConfig]) -> dict[str, Any]:
    """The model's `arguments` JSON text → {name: checked value}, or ArgumentError.

    Integers come back as int (30.0 is accepted as 30), numbers as float, booleans as bool,
    strings as str.
    """
    if len(text) > MAX_ARGUMENTS:
        raise ArgumentError("The arguments are too long.")
    if not text.strip() and not params:
        return {}  # some clients send "" for a function without parameters
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_repeats)
    except _Repeated as exc:
        raise ArgumentError(f"The argument {_name(str(exc))} is given twice.") from None
    except (ValueError, RecursionError):
        raise ArgumentError("The arguments are not valid JSON; send one JSON object.") from None
    if not isinstance(data, dict):
        raise ArgumentError("The arguments must be a JSON object.")
    unknown = [key for key in data if key not in params]
    if unknown:
        known = ", ".join(params) if params else "none"
        raise ArgumentError(
            f"There is no argument named {_name(unknown[0])}; the arguments are: {known}."
        )
    missing = [name for name in params if name not in data]
    if len(missing) == 1:
        raise ArgumentError(f"The argument {missing[0]} is missing; give every argument.")
    if missing:
        raise ArgumentError(f"The arguments {', '.join(missing)} are missing; give every argument.")
    return {name: _check(name, data[name], param) for name, param in params.items()}


def render_argv(argv: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """argv with each element that is exactly `{name}` replaced by that value as text."""
    out: list[str] = []
    for arg in argv:
        whole = PLACEHOLDER.fullmatch(arg)
        if whole is None:
            out.append(arg)
        elif whole[1] in values:
            out.append(_text(values[whole[1]]))
        else:
            raise ArgumentError(f"The argument {whole[1]} is missing; give every argument.")
    return out


# --- checking one value ------------------------------------------------------------------------


def _check(name: str, value: Any, param: ToolParamConfig) -> Any:
    if param.type == "boolean":
        if not isinstance(value, bool):
            raise ArgumentError(f"The argument {name} must be true or false.")
        return value
    if param.type == "string":
        return _string(name, value, param)
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a whole number" if param.type == "integer" else "a number"
        raise ArgumentError(f"The argument {name} must be {kind}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ArgumentError(f"The argument {name} must be a finite number.")
    if abs(value) > MAX_INTEGER:
        raise ArgumentError(f"The argument {name} is too large.")
    number: int | float
    if param.type == "integer":
        if isinstance(value, float) and not value.is_integer():
            raise ArgumentError(f"The argument {name} must be a whole number.")
        number = int(value)
    else:
        number = float(value)
    low, high = _lowest(param), param.maximum
    if number < low or (high is not None and number > high):
        if high is None:
            raise ArgumentError(f"The argument {name} must be at least {_text(low)}.")
        raise ArgumentError(f"The argument {name} must be between {_text(low)} and {_text(high)}.")
    if param.enum is not None and number not in param.enum:
        raise ArgumentError(f"The argument {name} must be one of {_choices(param.enum)}.")
    return number


def _string(name: str, value: Any, param: ToolParamConfig) -> str:
    if not isinstance(value, str):
        raise ArgumentError(f"The argument {name} must be a text string.")
    if len(value) > MAX_STRING:
        raise ArgumentError(f"The argument {name} is too long (at most {MAX_STRING} characters).")
    if _CONTROL.search(value):
        raise ArgumentError(f"The argument {name} must be one line of plain text.")
    if param.enum is not None:
        if value not in param.enum:
            raise ArgumentError(f"The argument {name} must be one of {_choices(param.enum)}.")
        return value
    if param.pattern is not None:
        if re.fullmatch(param.pattern, value) is None:
            raise ArgumentError(f"The argument {name} does not have the form this tool expects.")
        return value
    if value.startswith("-"):
        raise ArgumentError(f"The argument {name} must not start with '-'.")
    return value


def _lowest(param: ToolParamConfig) -> int | float:
    """A number's declared minimum; without one, 0: "-5" as an argv element reads as an option."""
    return param.minimum if param.minimum is not None else 0


def _text(value: Any) -> str:
    """A value as one argv element: true/false, 30 rather than 30.0, 0.00001 rather than 1e-05."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")  # shortest round-trip digits, no exponent
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _choices(values: Sequence[Any]) -> str:
    return ", ".join(_text(v) for v in values)


def _name(key: str) -> str:
    """A name the model made up, safe to repeat: short, one line."""
    clean = _CONTROL.sub("", key)
    return repr(clean if len(clean) <= 40 else clean[:40] + "…")


class _Repeated(ValueError):
    pass


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not a number")


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Repeated(key)
        out[key] = value
    return out
