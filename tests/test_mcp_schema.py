"""MCP servers' tools as declarations the service accepts: their names
(`omnid.tools.mcp_names`) and schemas (`omnid.tools.mcp_schema`).

The Home Assistant fixtures have the shape HA's `mcp_server` lists its Assist tools in: each
intent's slot schema through voluptuous-openapi, only `type` and `properties` kept (no
`required`), slots as plain strings, `domain`/`device_class` as arrays of enum strings,
`brightness` an integer 0–100, `nullable` where a validator allows None, and `GetLiveContext`
without arguments. The pydantic ones are made by pydantic itself, as FastMCP servers make theirs.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from omnid.tools.mcp_names import NAME_RULE, NameMap
from omnid.tools.mcp_schema import (
    MAX_DESCRIPTION,
    declaration,
    declared_bytes,
    select,
    service_schema,
)

RULE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # the service's rule, as the brief states it
EMPTY = {"type": "object", "properties": {}, "required": []}


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "name"),
    [
        ("HassTurnOn", "ha__HassTurnOn"),
        ("light.turn_on", "ha__light_turn_on"),
        ("get weather now", "ha__get_weather_now"),
        ("files/read..all", "ha__files_read_all"),
        ("météo", "ha__m_t_o"),
        ("_private_", "ha__private"),
        ("--dash-ok--", "ha__--dash-ok--"),
        ("天气", "ha__tool"),
        ("", "ha__tool"),
        ("...", "ha__tool"),
    ],
)
def test_a_name_is_made_to_fit_the_service_rule(tool: str, name: str) -> None:
    names = NameMap()
    assert names.add("ha", tool) == name
    assert RULE.match(name)
    assert names.route(name) == ("ha", tool)


def test_a_long_name_is_cut_and_keeps_a_hash_so_long_names_stay_apart() -> None:
    names = NameMap()
    first = names.add("files", "x" * 80 + "a")
    second = names.add("files", "x" * 80 + "b")
    assert len(first) == len(second) == 64
    assert RULE.match(first) and RULE.match(second)
    assert first != second
    assert first.startswith("files__xxxx") and first[-7] == "_"
    assert names.route(first) == ("files", "x" * 80 + "a")
    assert names.collisions() == []  # cut names that differ by their hash did not clash


def test_the_module_states_the_service_rule() -> None:
    assert NAME_RULE.pattern == RULE.pattern


def test_a_name_that_just_fits_is_not_cut() -> None:
    tool = "t" * (64 - len("ha__"))
    assert NameMap().add("ha", tool) == "ha__" + tool


def test_the_same_pair_twice_is_one_tool() -> None:
    names = NameMap()
    assert names.add("ha", "a.b") == names.add("ha", "a.b") == "ha__a_b"
    assert len(names) == 1
    assert names.collisions() == []


@pytest.mark.parametrize(
    "pairs",
    [
        [("ha", "turn.on"), ("ha", "turn on"), ("ha", "other")],
        [("ha", "other"), ("ha", "turn on"), ("ha", "turn.on")],
        [("ha", "turn on"), ("ha", "other"), ("ha", "turn.on")],
    ],
)
def test_a_collision_gives_the_same_names_whatever_the_order(
    pairs: list[tuple[str, str]],
) -> None:
    names = NameMap()
    for server, tool in pairs:
        names.add(server, tool)
    mapping = names.names()
    assert mapping == NameMap(reversed(pairs)).names()
    dotted, spaced = names.name_of("ha", "turn.on"), names.name_of("ha", "turn on")
    assert dotted is not None and spaced is not None
    assert dotted != spaced  # neither keeps the plain name: who came first does not matter
    assert re.fullmatch(r"ha__turn_on_[0-9a-f]{6}", dotted)
    assert re.fullmatch(r"ha__turn_on_[0-9a-f]{6}", spaced)
    assert names.name_of("ha", "other") == "ha__other"
    assert names.route(dotted) == ("ha", "turn.on")
    assert names.route(spaced) == ("ha", "turn on")
    assert names.route("ha__turn_on") is None
    [line] = names.collisions()
    assert line.startswith("ha__turn_on: wanted by 'ha' tool 'turn on' and 'ha' tool 'turn.on'")
    assert dotted in line and spaced in line


def test_a_later_add_renames_the_tool_it_collides_with() -> None:
    """The documented cost of order independence: read the names once all are added."""
    names = NameMap()
    assert names.add("ha", "turn.on") == "ha__turn_on"
    renamed = names.add("ha", "turn on")
    assert names.name_of("ha", "turn.on") not in ("ha__turn_on", renamed)


def test_servers_whose_names_split_alike_do_not_clash() -> None:
    names = NameMap([("a", "b__c"), ("a__b", "c")])
    assert len(names.names()) == 2
    assert names.route("a__b__c") is None
    assert len(names.collisions()) == 1


def test_a_tool_named_like_a_hashed_name_still_gets_its_own_name() -> None:
    taken = NameMap([("ha", "turn.on"), ("ha", "turn on")]).name_of("ha", "turn.on")
    assert taken is not None
    literal = taken.removeprefix("ha__")  # a tool that is literally called so
    names = NameMap([("ha", "turn.on"), ("ha", "turn on"), ("ha", literal)])
    assert len(set(names.names())) == 3
    assert all(RULE.match(n) for n in names.names())
    assert {names.route(n) for n in names.names()} == {
        ("ha", "turn.on"),
        ("ha", "turn on"),
        ("ha", literal),
    }
    assert len(names.collisions()) == 2


def test_names_lists_every_name_and_unknown_names_route_nowhere() -> None:
    names = NameMap([("ha", "HassTurnOn"), ("ha", "GetLiveContext"), ("files", "read")])
    assert names.names() == {
        "files__read": ("files", "read"),
        "ha__GetLiveContext": ("ha", "GetLiveContext"),
        "ha__HassTurnOn": ("ha", "HassTurnOn"),
    }
    assert names.route("HassTurnOn") is None
    assert names.name_of("ha", "nope") is None


@given(st.lists(st.tuples(st.sampled_from(["ha", "files", "a_b"]), st.text(max_size=90))))
def test_names_always_fit_differ_and_do_not_depend_on_order(
    pairs: list[tuple[str, str]],
) -> None:
    forward, backward = NameMap(pairs), NameMap(reversed(pairs))
    assert forward.names() == backward.names()
    assert len(forward.names()) == len(set(pairs))
    assert all(RULE.match(name) for name in forward.names())


# --- schemas: Home Assistant -----------------------------------------------------------------

HA_DOMAINS = ["light", "switch", "fan", "cover"]
HA_DEVICE_CLASSES = ["outlet", "switch", "tv", "speaker", "awning", "blind"]

HA_TURN_ON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "area": {"type": "string"},
        "floor": {"type": "string"},
        "domain": {"type": "array", "items": {"type": "string", "enum": HA_DOMAINS}},
        "device_class": {"type": "array", "items": {"type": "string", "enum": HA_DEVICE_CLASSES}},
    },
}

HA_LIGHT_SET = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "area": {"type": "string"},
        "floor": {"type": "string"},
        "domain": {"type": "array", "items": {"enum": ["light"]}},  # vol.In: no type of its own
        "color": {"type": "string"},
        "temperature": {"type": "integer", "minimum": 0},
        "brightness": {"type": "integer", "minimum": 0, "maximum": 100},
        "preferred_area_id": {"type": "string", "nullable": True},
    },
}

HA_GET_LIVE_CONTEXT = {"type": "object", "properties": {}}


def test_ha_turn_on_passes_unchanged_but_for_an_empty_required() -> None:
    assert service_schema(HA_TURN_ON) == {**HA_TURN_ON, "required": []}


def test_ha_light_set() -> None:
    assert service_schema(HA_LIGHT_SET) == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "area": {"type": "string"},
            "floor": {"type": "string"},
            "domain": {"type": "array", "items": {"type": "string", "enum": ["light"]}},
            "color": {"type": "string"},
            "temperature": {"type": "integer", "minimum": 0},
            "brightness": {"type": "integer", "minimum": 0, "maximum": 100},
            "preferred_area_id": {"type": "string"},
        },
        "required": [],
    }


def test_ha_get_live_context_has_no_arguments() -> None:
    assert service_schema(HA_GET_LIVE_CONTEXT) == EMPTY


def test_voluptuous_openapi_shapes() -> None:
    """vol.Any of scalars stays anyOf; vol.All that clashed comes as allOf and is merged;
    vol.Any(None, …) is `nullable`; draft-4 exclusive flags become numbers."""
    schema = {
        "type": "object",
        "properties": {
            "volume_level": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "position": {"allOf": [{"type": "integer"}, {"minimum": 0, "maximum": 100}]},
            "media_type": {"enum": ["music", "podcast", None], "nullable": True},
            "duration": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        },
        "required": ["position"],
        "additionalProperties": True,
    }
    assert service_schema(schema) == {
        "type": "object",
        "properties": {
            "volume_level": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "position": {"type": "integer", "minimum": 0, "maximum": 100},
            "media_type": {"type": "string", "enum": ["music", "podcast"]},
            "duration": {"type": "number", "exclusiveMinimum": 0},
        },
        "required": ["position"],
        "additionalProperties": True,
    }


# --- schemas: pydantic (FastMCP) -------------------------------------------------------------


class Unit(StrEnum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Place(BaseModel):
    """Where to look."""

    city: str = Field(description="City name")
    country: str | None = None


class Forecast(BaseModel):
    place: Place
    unit: Unit = Unit.CELSIUS
    days: int = Field(3, ge=1, le=7, description="How many days")
    mode: Literal["brief"] = "brief"
    tags: list[str] | None = None
    extra: dict[str, Any] | None = Field(None, description="Anything else")


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


class Garden(BaseModel):
    tree: Tree
    backup: Tree | None = None


def test_pydantic_defs_are_inlined_and_optional_becomes_the_plain_type() -> None:
    raw = Forecast.model_json_schema()
    assert "$defs" in raw and raw["properties"]["place"] == {"$ref": "#/$defs/Place"}
    assert service_schema(raw) == {
        "type": "object",
        "properties": {
            "place": {
                "description": "Where to look.",
                "properties": {
                    "city": {"description": "City name", "type": "string"},
                    "country": {"type": "string"},
                },
                "required": ["city"],
                "type": "object",
            },
            "unit": {"enum": ["celsius", "fahrenheit"], "type": "string", "default": "celsius"},
            "days": {
                "default": 3,
                "description": "How many days",
                "maximum": 7,
                "minimum": 1,
                "type": "integer",
            },
            "mode": {"enum": ["brief"], "default": "brief", "type": "string"},
            "tags": {"items": {"type": "string"}, "type": "array"},
            "extra": {
                "additionalProperties": True,
                "type": "object",
                "description": "Anything else",
            },
        },
        "required": ["place"],
    }


def test_a_recursive_model_is_cut_at_the_first_repeat() -> None:
    nested = {"type": "object", "description": "A nested Tree, not expanded further."}
    tree = {
        "properties": {
            "label": {"type": "string"},
            "children": {"items": nested, "type": "array"},
        },
        "required": ["label"],
        "type": "object",
    }
    assert service_schema(Garden.model_json_schema()) == {
        "type": "object",
        "properties": {"tree": tree, "backup": tree},
        "required": ["tree"],
    }


def test_a_root_that_is_a_ref_is_followed() -> None:
    assert service_schema(Tree.model_json_schema()) == {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "children": {
                "items": {"type": "object", "description": "A nested Tree, not expanded further."},
                "type": "array",
            },
        },
        "required": ["label"],
    }


# --- schemas: the rules one by one -----------------------------------------------------------


def props(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def converted(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = service_schema(props(x=schema))["properties"]["x"]
    return out


def test_definitions_of_older_drafts_and_refs_with_a_description() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "urn:example",
        "definitions": {"Mode": {"type": "string", "enum": ["a", "b"], "title": "Mode"}},
        "type": "object",
        "properties": {"mode": {"$ref": "#/definitions/Mode", "description": "which"}},
    }
    assert service_schema(schema) == {
        "type": "object",
        "properties": {"mode": {"type": "string", "enum": ["a", "b"], "description": "which"}},
        "required": [],
    }


def test_mutually_recursive_refs_end() -> None:
    schema = {
        "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}},
        },
        **props(a={"$ref": "#/$defs/A"}),
    }
    assert service_schema(schema)["properties"] == {
        "a": {
            "type": "object",
            "properties": {
                "b": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "object", "description": "A nested A, not expanded further."}
                    },
                }
            },
        }
    }


def test_a_ref_to_the_whole_schema_and_refs_that_point_nowhere() -> None:
    schema = props(
        again={"$ref": "#"},
        lost={"$ref": "#/$defs/Missing", "description": "kept"},
        remote={"$ref": "https://example.com/schema.json#/X"},
    )
    assert service_schema(schema)["properties"] == {
        "again": {
            "type": "object",
            "description": "A nested copy of all the arguments, not expanded further.",
        },
        "lost": {"description": "kept"},
        "remote": {},
    }


def test_nullable_forms_all_become_the_plain_type() -> None:
    for schema in (
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {"oneOf": [{"type": "null"}, {"type": "string"}]},
        {"anyOf": [{"type": "string"}, {"enum": [None]}]},
        {"anyOf": [{"type": "string"}, {"const": None}]},
        {"type": ["string", "null"]},
        {"type": "string", "nullable": True},
    ):
        assert converted(schema) == {"type": "string"}, schema


def test_any_of_simple_branches_is_kept_and_otherwise_the_first_is_taken_with_a_note() -> None:
    one_or_many = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    assert converted(one_or_many) == one_or_many
    assert converted({"type": ["string", "integer", "null"]}) == {"type": ["string", "integer"]}
    mixed = {
        "anyOf": [
            {"type": "object", "properties": {"id": {"type": "integer"}}},
            {"type": "string"},
            {"type": "null"},
        ],
        "description": "The target",
    }
    assert converted(mixed) == {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "description": "The target (other forms are accepted too)",
    }
    assert converted({"anyOf": [{"type": "null"}]}) == {}


def test_dropped_and_kept_keys() -> None:
    schema = {
        "type": "string",
        "title": "Name",
        "description": "Who",
        "examples": ["Ann"],
        "default": "Ann",
        "format": "email",
        "pattern": "^[a-z]+$",
        "maxLength": 10,
        "deprecated": False,
        "readOnly": False,
        "x-order": 3,
        "not": {"const": "root"},
        "foo": {"bar": [1, 2]},
    }
    assert converted(schema) == {
        "type": "string",
        "description": "Who",
        "default": "Ann",
        "format": "email",
        "pattern": "^[a-z]+$",
        "maxLength": 10,
        "foo": {"bar": [1, 2]},  # unknown keys pass through
    }


def test_values_that_are_not_kept() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string", "title": "Title"}},  # a property named so
        "required": ["title", "title", 3, "missing"],
        "additionalProperties": {"type": "string"},  # a schema: not kept
        "default": {"title": "x"},  # not a scalar: not kept
        "pattern": "(",  # not a pattern
        "minimum": float("nan"),
        "maximum": "10",
        "type_hint": float("inf"),
    }
    assert converted(schema) == {
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
    }


def test_const_becomes_an_enum_of_one_and_missing_types_are_implied() -> None:
    assert converted({"const": "on"}) == {"type": "string", "enum": ["on"]}
    assert converted({"const": 3, "type": "integer"}) == {"enum": [3], "type": "integer"}
    assert converted({"properties": {"a": {}}}) == {"type": "object", "properties": {"a": {}}}
    assert converted({"items": {"enum": [1, 2]}}) == {
        "type": "array",
        "items": {"type": "integer", "enum": [1, 2]},
    }
    assert converted({"enum": ["a", 1]}) == {"enum": ["a", 1]}


def test_the_top_level_is_always_an_object_schema() -> None:
    odd: dict[str, Any]
    for odd in (
        {},
        {"type": "string"},
        {"type": "object"},
        {"properties": []},
        {"$ref": "#"},
        {"type": "object", "properties": {}, "required": "a"},
        {"anyOf": [props(a={"type": "string"}), {"type": "null"}]},
    ):
        out = service_schema(odd)
        assert out["type"] == "object" and isinstance(out["properties"], dict), odd
        assert isinstance(out["required"], list)
    assert service_schema([1, 2]) == EMPTY  # type: ignore[arg-type]
    assert service_schema(None) == EMPTY  # type: ignore[arg-type]
    assert service_schema({"anyOf": [props(a={"type": "string"}), {"type": "null"}]}) == {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": [],
    }


def test_a_self_containing_dict_and_a_deep_one_do_not_raise() -> None:
    loop: dict[str, Any] = {"type": "object", "properties": {}}
    loop["properties"]["self"] = loop
    assert service_schema(loop)["type"] == "object"
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(3000):
        node["properties"] = {"a": {}}
        node = node["properties"]["a"]
    json.dumps(service_schema(deep))


def test_refs_that_fan_out_are_bounded() -> None:
    defs = {
        f"D{i}": props(a={"$ref": f"#/$defs/D{i + 1}"}, b={"$ref": f"#/$defs/D{i + 1}"})
        for i in range(40)
    }
    out = service_schema({"$defs": defs, **props(x={"$ref": "#/$defs/D0"})})
    assert len(json.dumps(out)) < 1_000_000  # 2**40 copies, were they all expanded


def test_the_input_is_not_changed() -> None:
    raw = Forecast.model_json_schema()
    before = json.dumps(raw, sort_keys=True)
    service_schema(raw)
    assert json.dumps(raw, sort_keys=True) == before


JSONISH_KEYS = [
    "$ref",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "type",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "const",
    "enum",
    "default",
    "description",
    "title",
    "format",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "nullable",
    "not",
    "x-extra",
]
REFS_AND_TYPES = ["#", "#/$defs/a", "#/definitions/b", "#/properties/a", "#/0", "#/$defs/a/b"]
REFS_AND_TYPES += ["object", "string", "integer", "array", "null", "a", "b"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(REFS_AND_TYPES)
)
jsonish = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from([*JSONISH_KEYS, "a", "b"]) | st.text(max_size=4), inner)
    ),
    max_leaves=40,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*JSONISH_KEYS, "a", "b"]), jsonish, max_size=6))
def test_any_json_ish_input_gives_a_top_level_object_schema(schema: dict[str, Any]) -> None:
    out = service_schema(schema)
    assert out["type"] == "object"
    assert isinstance(out["properties"], dict)
    assert isinstance(out["required"], list)
    assert set(out["required"]) <= set(out["properties"])
    json.dumps(out, allow_nan=False)  # strict JSON
    assert service_schema(out) == out  # converting again changes nothing


# --- declarations and the budget -------------------------------------------------------------


def test_declaration_is_the_nested_form() -> None:
    assert declaration("ha__HassTurnOn", "  Turns on a device.  ", HA_TURN_ON) == {
        "type": "function",
        "function": {
            "name": "ha__HassTurnOn",
            "description": "Turns on a device.",
            "parameters": {**HA_TURN_ON, "required": []},
        },
    }


def test_a_long_description_is_cut_to_1024_characters() -> None:
    decl = declaration("x__y", "word " * 1000, {})
    text = decl["function"]["description"]
    assert len(text) <= MAX_DESCRIPTION and text.endswith("…")
    assert declaration("x__y", "a" * 1024, {})["function"]["description"] == "a" * 1024
    assert decl["function"]["parameters"] == EMPTY


def decls(*sizes: int) -> list[dict[str, Any]]:
    """Declarations named t0, t1, … each with a description of that many characters."""
    return [declaration(f"t{i}", "d" * n, {}) for i, n in enumerate(sizes)]


def test_declared_bytes_counts_the_compact_utf8_array() -> None:
    tools = [declaration("x__y", "Schalte das Licht ein — für die Küche", HA_TURN_ON)]
    text = json.dumps(tools, separators=(",", ":"), ensure_ascii=False)
    assert declared_bytes(tools) == len(text.encode()) > len(text)
    assert declared_bytes([]) == 2


def test_select_keeps_everything_that_fits() -> None:
    tools = decls(10, 10, 10)
    assert select(tools, max_tools=40, max_bytes=16000) == (tools, [])


def test_select_leaves_out_tools_over_the_count() -> None:
    tools = decls(1, 1, 1, 1)
    kept, reasons = select(tools, max_tools=2, max_bytes=16000)
    assert kept == tools[:2]
    assert reasons == [
        "t2: left out: more than 2 tools declared",
        "t3: left out: more than 2 tools declared",
    ]


def test_select_leaves_out_tools_over_the_bytes_and_still_tries_the_next() -> None:
    tools = decls(100, 2000, 100)
    limit = declared_bytes([tools[0], tools[2]])
    kept, reasons = select(tools, max_tools=40, max_bytes=limit)
    assert kept == [tools[0], tools[2]]
    assert declared_bytes(kept) == limit
    assert reasons == [f"t1: left out: the declared tools would exceed {limit} bytes"]
    kept, reasons = select(tools, max_tools=40, max_bytes=limit - 1)
    assert kept == [tools[0]]
    assert len(reasons) == 2


def test_select_with_both_limits_gives_one_reason_per_tool() -> None:
    tools = decls(5000, 10, 10, 10, 10)
    kept, reasons = select(tools, max_tools=2, max_bytes=1000)
    assert kept == tools[1:3]
    assert reasons == [
        "t0: left out: the declared tools would exceed 1000 bytes",
        "t3: left out: more than 2 tools declared",
        "t4: left out: more than 2 tools declared",
    ]


@given(st.lists(st.integers(0, 3000), max_size=12), st.integers(1, 10), st.integers(2, 20000))
def test_select_never_exceeds_either_limit(sizes: list[int], count: int, size: int) -> None:
    tools = decls(*sizes)
    kept, reasons = select(tools, max_tools=count, max_bytes=size)
    assert len(kept) <= count and declared_bytes(kept) <= size
    assert len(kept) + len(reasons) == len(tools)
    assert [t for t in tools if t in kept] == kept  # in order
