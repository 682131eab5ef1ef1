"""MCP servers' tools as function declarations the service accepts: schemas and a budget.
(Their names: `tools/mcp_names.py`.)

An MCP tool's `inputSchema` is JSON Schema of any draft and any generator (pydantic's `$defs` and
`anyOf`-with-null, voluptuous-openapi's `nullable` and `allOf`, …). `service_schema` turns each
into the same plain shape — a top-level object, references inlined, null alternatives gone,
annotations the model has no use for dropped — and never raises on odd input.

Every declared tool is sent with the session and costs tokens on every turn, so `select` keeps
the declarations within a count and a byte budget and says why each other one was left out.

Pure functions: no I/O, and nothing here needs the `mcp` package.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

__all__ = [
    "MAX_DESCRIPTION",
    "declaration",
    "declared_bytes",
    "select",
    "service_schema",
]

MAX_DESCRIPTION = 1024  # characters of a tool's description sent to the service


# --- schemas ---------------------------------------------------------------------------------

_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_SCALARS = frozenset({"string", "number", "integer", "boolean"})
_NUMERIC = frozenset(
    [
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    ]
)
# Keys the service has no use for, and keywords whose subschemas are not carried over (what they
# say cannot be kept once their `$ref`s and `$defs` are gone, or the model does not read it).
_DROPPED = frozenset(
    [
        "$schema",
        "$id",
        "$anchor",
        "$dynamicAnchor",
        "$dynamicRef",
        "$recursiveAnchor",
        "$recursiveRef",
        "$comment",
        "$vocabulary",
        "$defs",
        "definitions",
        "title",
        "examples",
        "example",
        "nullable",
        "readOnly",
        "writeOnly",
        "deprecated",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependencies",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "additionalItems",
        "prefixItems",
        "contains",
        "minContains",
        "maxContains",
        "discriminator",
        "xml",
        "externalDocs",
    ]
)
_MAX_DEPTH = 40  # levels of nesting followed; deeper is left unconstrained
_MAX_NODES = 4000  # subschemas converted per tool: bounds what repeated `$ref`s can expand to
_DROP: Any = object()  # _plain's "nothing to keep"


class _Context:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.expanding: set[int] = {id(root)}  # targets of the `$ref`s being inlined
        self.nodes = 0


def service_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An MCP tool's `inputSchema` → the `parameters` of a function declaration.

    Always `{"type": "object", "properties": {…}, "required": […]}` (+ `additionalProperties`
    when the tool gives it as a boolean), `required` naming only declared properties.

    - Local `$ref`s (`#`, `#/$defs/X`, `#/definitions/X`, any `#/…` pointer) are inlined, the
      keys beside a `$ref` laid over its target; a reference back into one being inlined becomes
      its target's type with "A nested X, not expanded further."; other `$ref`s are dropped.
    - Null alternatives go (`anyOf`/`oneOf` branches `{"type": "null"}`, `{"const": null}`;
      `"null"` in a `type` list; `null` in an `enum`; `nullable`): whether an argument may be
      left out is `required`'s business. One branch left → that branch. Several, all simple
      (scalars or arrays of scalars, as in "a name or a list of names") → kept as `anyOf`.
      Otherwise → the first branch, its description ending "(other forms are accepted too)".
    - `allOf` is merged into one schema (properties and required united, else first wins).
    - `const` → a one-value `enum`; a missing `type` is implied from `properties` (object),
      `items` (array) or an enum all of strings, booleans or integers.
    - Kept: `type`, `description`, `properties`, `required`, `items`, `enum`, `format`, a
      `pattern` that compiles, numeric bounds, scalar `default`s, boolean
      `additionalProperties`, and unknown keys with plain JSON values. Dropped: `title`,
      `examples`, `$schema`/`$id`/`$comment` and the like, `x-…` extensions, `null`/compound
      defaults, subschema keywords not followed (`not`, `if`/`then`/`else`, `prefixItems`,
      `patternProperties`, …), NaN and infinities.
    - Never raises; nesting deeper than 40 levels or more than 4000 subschemas is left
      unconstrained (`{}`).
    """
    body = _convert(schema, _Context(schema), 0) if isinstance(schema, Mapping) else {}
    properties = body.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    required = body.get("required")
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": [name for name in required or [] if name in properties],
    }
    if isinstance(body.get("additionalProperties"), bool):
        out["additionalProperties"] = body["additionalProperties"]
    return out


def _convert(node: Any, ctx: _Context, depth: int) -> dict[str, Any]:
    if not isinstance(node, Mapping) or depth > _MAX_DEPTH or ctx.nodes >= _MAX_NODES:
        return {}  # a boolean schema, something odd, or too much: no constraint
    ctx.nodes += 1
    ref = node.get("$ref")
    if isinstance(ref, str):
        return _inline(ref, node, ctx, depth)
    if isinstance(node.get("allOf"), list):
        return _all_of(node, ctx, depth)
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            return _any_of(key, node, ctx, depth)
    return _plain_schema(node, ctx, depth)


def _rest(node: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in keys}


def _inline(ref: str, node: Mapping[str, Any], ctx: _Context, depth: int) -> dict[str, Any]:
    """A `$ref` replaced by what it points at, the keys beside it laid over that."""
    siblings = _convert(_rest(node, "$ref"), ctx, depth)
    target = _pointer(ctx.root, ref)
    if target is None:
        return siblings  # not local, or points nowhere: only what is written beside it
    if id(target) in ctx.expanding:
        stub: dict[str, Any] = {}
        kind = _type(target.get("type")) if isinstance(target, Mapping) else None
        if kind is None and isinstance(target, Mapping) and "properties" in target:
            kind = "object"
        if isinstance(kind, str):
            stub["type"] = kind
        name = unquote(ref.rsplit("/", 1)[-1]) if ref != "#" else "copy of all the arguments"
        return _noted({**stub, **siblings}, f"a nested {name}, not expanded further")
    ctx.expanding.add(id(target))
    try:
        inlined = _convert(target, ctx, depth + 1)
    finally:
        ctx.expanding.discard(id(target))
    return {**inlined, **siblings}


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    """What a local JSON pointer (`#`, `#/$defs/X`, `#/definitions/X`, …) points at, or None."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for raw in ref[2:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _all_of(node: Mapping[str, Any], ctx: _Context, depth: int) -> dict[str, Any]:
    """`allOf` merged into one schema: properties and required united, otherwise the first
    branch to say something wins; the keys beside `allOf` win over all branches."""
    merged: dict[str, Any] = {}
    for branch in node["allOf"]:
        part = _convert(branch, ctx, depth + 1)
        for key, value in part.items():
            if key == "properties" and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key]}
                for name, sub in value.items():
                    merged[key].setdefault(name, sub)
            elif key == "required" and isinstance(merged.get(key), list):
                merged[key] = merged[key] + [n for n in value if n not in merged[key]]
            else:
                merged.setdefault(key, value)
    return {**merged, **_convert(_rest(node, "allOf"), ctx, depth)}


def _any_of(key: str, node: Mapping[str, Any], ctx: _Context, depth: int) -> dict[str, Any]:
    """`anyOf`/`oneOf`: null alternatives dropped; one left → that one; several simple ones
    (scalars, arrays of scalars) → kept as `anyOf`; otherwise → the first, with a note."""
    branches = [_convert(branch, ctx, depth + 1) for branch in node[key]]
    kept = [branch for branch in branches if not _is_null(branch)]
    note = None
    if not kept:
        base: dict[str, Any] = {}
    elif len(kept) == 1:
        base = kept[0]
    elif all(_is_simple(branch) for branch in kept):
        base = {"anyOf": kept}
    else:
        base = kept[0]
        note = "other forms are accepted too"
    merged = {**base, **_convert(_rest(node, "anyOf", "oneOf"), ctx, depth)}
    return _noted(merged, note) if note else merged


def _plain_schema(node: Mapping[str, Any], ctx: _Context, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if not isinstance(key, str) or key in _DROPPED or key.startswith("x-"):
            continue
        if key in ("$ref", "allOf", "anyOf", "oneOf"):
            continue  # not in a form this function follows (not a string, not a list)
        if key == "type":
            kind = _type(value)
            if kind is not None:
                out[key] = kind
        elif key == "properties":
            if isinstance(value, Mapping):
                out[key] = {str(n): _convert(s, ctx, depth + 1) for n, s in value.items()}
        elif key == "required":
            if isinstance(value, list):
                out[key] = list(dict.fromkeys(n for n in value if isinstance(n, str)))
        elif key == "items":
            if isinstance(value, list):  # the old tuple form: one item schema is still clear
                if len(value) == 1:
                    out[key] = _convert(value[0], ctx, depth + 1)
            else:
                out[key] = _convert(value, ctx, depth + 1)
        elif key == "additionalProperties":
            if isinstance(value, bool):
                out[key] = value
        elif key == "const":
            if "enum" not in node and (plain := _plain(value, 0)) is not _DROP:
                out["enum"] = [plain]
        elif key == "enum":
            if isinstance(value, list):
                values = [v for v in (_plain(v, 0) for v in value) if v is not _DROP]
                not_null = [v for v in values if v is not None]
                out[key] = not_null or values  # null among others only means "optional"
        elif key == "default":
            if _is_scalar_value(value):
                out[key] = value
        elif key in ("description", "format"):
            if isinstance(value, str):
                out[key] = value
        elif key == "pattern":
            if isinstance(value, str) and _compiles(value):
                out[key] = value
        elif key in _NUMERIC:
            if _is_number(value):
                out[key] = value
            elif value is True and key.startswith("exclusive"):  # draft 4: flag on min/max
                bound = node.get(key.replace("exclusiveM", "m"))
                if _is_number(bound):
                    out[key] = bound
        elif (plain := _plain(value, 0)) is not _DROP:
            out[key] = plain
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(flag) is True and flag in out:
            out.pop(bound, None)
    if isinstance(out.get("required"), list) and isinstance(out.get("properties"), dict):
        out["required"] = [n for n in out["required"] if n in out["properties"]]
    if "type" not in out:
        kind = _implied_type(out)
        if kind is not None:
            out = {"type": kind, **out}
    return out


def _type(value: Any) -> str | list[str] | None:
    """`type` with `null` dropped from a list (`["string", "null"]` → `"string"`), unknown
    names dropped, and None when nothing is left."""
    if isinstance(value, str):
        return value if value in _TYPES else None
    if not isinstance(value, list):
        return None
    names = list(dict.fromkeys(t for t in value if isinstance(t, str) and t in _TYPES))
    not_null = [t for t in names if t != "null"]
    if len(not_null) == 1:
        return not_null[0]
    return not_null or ("null" if names else None)


def _implied_type(schema: Mapping[str, Any]) -> str | None:
    """The type a schema without one evidently has (HA's enum items, pydantic-less objects)."""
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    values = schema.get("enum")
    if isinstance(values, list) and values:
        if all(isinstance(v, str) for v in values):
            return "string"
        if all(isinstance(v, bool) for v in values):
            return "boolean"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "integer"
    return None


def _is_null(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "null" or schema.get("enum") == [None]


def _is_scalar_schema(schema: Mapping[str, Any]) -> bool:
    if any(k in schema for k in ("properties", "items", "anyOf", "oneOf", "allOf")):
        return False
    kind = schema.get("type")
    if kind is None:
        return "enum" in schema
    if isinstance(kind, list):
        return all(k in _SCALARS for k in kind)
    return kind in _SCALARS


def _is_simple(schema: Mapping[str, Any]) -> bool:
    """A scalar, or an array of scalars ("a name or a list of names")."""
    if schema.get("type") == "array" and not any(
        k in schema for k in ("properties", "anyOf", "oneOf", "allOf")
    ):
        items = schema.get("items")
        return items is None or (isinstance(items, dict) and _is_scalar_schema(items))
    return _is_scalar_schema(schema)


def _noted(schema: dict[str, Any], note: str) -> dict[str, Any]:
    description = schema.get("description")
    if isinstance(description, str) and description.strip():
        text = f"{description.rstrip()} ({note})"
    else:
        text = note[:1].upper() + note[1:] + "."
    return {**schema, "description": text}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _is_scalar_value(value: Any) -> bool:
    return isinstance(value, (str, bool)) or _is_number(value)


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError):
        return False
    return True


def _plain(value: Any, depth: int) -> Any:
    """A JSON-able copy of a value that is carried over as it is, or _DROP."""
    if value is None or isinstance(value, (str, bool)) or _is_number(value):
        return value
    if depth > _MAX_DEPTH:
        return _DROP
    if isinstance(value, (list, tuple)):
        return [v for v in (_plain(v, depth + 1) for v in value) if v is not _DROP]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and (plain := _plain(v, depth + 1)) is not _DROP:
                out[k] = plain
        return out
    return _DROP  # NaN, infinities, objects that are not JSON


# --- declarations and the budget -------------------------------------------------------------


def declaration(name: str, description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The nested function declaration of a tool: its schema through `service_schema`, its
    description cut to 1024 characters (ending in `…` when cut)."""
    text = description.strip() if isinstance(description, str) else ""
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1].rstrip() + "…"
    return {
        "type": "function",
        "function": {"name": name, "description": text, "parameters": service_schema(schema)},
    }


def _size(value: Any) -> int:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def declared_bytes(declarations: Iterable[Mapping[str, Any]]) -> int:
    """UTF-8 bytes of the declarations as sent: a compact JSON array, unicode unescaped."""
    return _size(list(declarations))


def _name(decl: Mapping[str, Any]) -> str:
    fn = decl.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else decl.get("name")
    return name if isinstance(name, str) else "?"


def select(
    declarations: list[dict[str, Any]], *, max_tools: int, max_bytes: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The declarations that fit, in their order, and one reason per declaration left out.

    Each is kept when it is within `max_tools` and the array of those kept so far plus it stays
    within `max_bytes` (`declared_bytes`); one that does not fit is passed over and the next
    ones are still tried, so a small tool after a large one can still be declared.
    """
    kept: list[dict[str, Any]] = []
    reasons: list[str] = []
    total = 2  # "[]"
    for decl in declarations:
        if len(kept) >= max_tools:
            reasons.append(f"{_name(decl)}: left out: more than {max_tools} tools declared")
            continue
        grown = total + _size(decl) + (1 if kept else 0)  # "," between elements
        if grown > max_bytes:
            reasons.append(
                f"{_name(decl)}: left out: the declared tools would exceed {max_bytes} bytes"
            )
            continue
        kept.append(decl)
        total = grown
    return kept, reasons
