"""The typed parameters of a command tool: the schema the model reads, and every refusal.

A refusal is an `ArgumentError` whose message the model reads back to the user, so besides
refusing the right things each one must be a single short sentence without internals.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from omnid.config_schema import ToolParamConfig
from omnid.tools.params import ArgumentError, json_schema, parse_arguments, render_argv

P = ToolParamConfig

PARAMS: dict[str, ToolParamConfig] = {
    "action": P(type="string", description="open or close", enum=["open", "close"]),
    "level": P(type="integer", minimum=0, maximum=10),
    "speed": P(type="number", minimum=-1.5, maximum=2.5),
    "loud": P(type="boolean"),
    "room": P(type="string", pattern="[a-z]+"),
    "note": P(type="string"),
}
GOOD: dict[str, Any] = {
    "action": "open",
    "level": 3,
    "speed": 0.5,
    "loud": True,
    "room": "kitchen",
    "note": "hello there",
}


def args(**changes: Any) -> str:
    values = {**GOOD, **changes}
    return json.dumps({k: v for k, v in values.items() if v is not ...})


def refused(text: str, params: dict[str, ToolParamConfig] = PARAMS) -> str:
    with pytest.raises(ArgumentError) as caught:
        parse_arguments(text, params)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 200, message
    assert message.endswith("."), message
    return message


def test_schema_is_an_object_with_every_parameter_required() -> None:
    schema = json_schema(PARAMS)

    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == list(PARAMS)
    props = schema["properties"]
    assert props["action"] == {
        "type": "string",
        "description": "open or close",
        "enum": ["open", "close"],
    }
    assert props["level"] == {"type": "integer", "minimum": 0, "maximum": 10}
    assert props["speed"] == {"type": "number", "minimum": -1.5, "maximum": 2.5}
    assert props["loud"] == {"type": "boolean"}
    assert props["room"]["pattern"] == "^(?:[a-z]+)$"  # anchored: the check is a full match
    assert props["note"]["maxLength"] == 256
    json.dumps(schema)  # what is sent must be plain JSON


def test_schema_of_no_parameters_and_the_implicit_minimum() -> None:
    assert json_schema({}) == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
    # A number without a declared minimum takes no negative values, and says so.
    assert json_schema({"n": P(type="integer")})["properties"]["n"]["minimum"] == 0


def test_good_arguments_come_back_typed() -> None:
    values = parse_arguments(args(), PARAMS)
    assert values == GOOD
    assert type(values["level"]) is int and type(values["speed"]) is float


def test_an_integer_valued_float_is_an_integer() -> None:
    values = parse_arguments(args(level=3.0, speed=2), PARAMS)
    assert values["level"] == 3 and type(values["level"]) is int
    assert values["speed"] == 2.0 and type(values["speed"]) is float
    assert parse_arguments('{"n": 30.0}', {"n": P(type="integer")}) == {"n": 30}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"open"', "JSON object"),
        (args(colour="red"), "no argument named 'colour'"),
        (args(level=...), "level is missing"),
        (args(level=..., room=...), "level, room are missing"),
        (args(level="3"), "level must be a whole number"),
        (args(level=True), "level must be a whole number"),  # bool is not an integer
        (args(level=2.5), "level must be a whole number"),
        (args(level=11), "level must be between 0 and 10"),
        (args(level=-1), "level must be between 0 and 10"),
        (args(speed="fast"), "speed must be a number"),
        (args(speed=False), "speed must be a number"),
        (args(speed=3), "speed must be between -1.5 and 2.5"),
        (args(loud="yes"), "loud must be true or false"),
        (args(loud=1), "loud must be true or false"),
        (args(action="ajar"), "action must be one of open, close"),
        (args(action=None), "action must be a text string"),
        (args(room="Kitchen"), "room does not have the form"),
        (args(room="kitchen sink"), "room does not have the form"),  # fullmatch, not search
        (args(note="x" * 257), "note is too long"),
        (args(note="a\x00b"), "note must be one line"),
        (args(note="line one\nline two"), "note must be one line"),
        (args(note="-rf"), "note must not start with '-'"),
        (args(note="--help"), "note must not start with '-'"),
        (args(note=["a"]), "note must be a text string"),
        (args().replace("3", "NaN", 1), "not valid JSON"),
        (args().replace("3", "Infinity", 1), "not valid JSON"),
        (args().replace('"level": 3', '"level": 1e999'), "level must be a finite number"),
        ('{"level": 1, "level": 2}', "level' is given twice"),
        ('{"x": 1}' + " " * 20_000, "too long"),
    ],
)
def test_each_bad_argument_is_refused_in_one_sentence(text: str, words: str) -> None:
    assert words in refused(text)


def test_a_made_up_argument_name_is_repeated_short_and_on_one_line() -> None:
    message = refused(json.dumps({"x" * 500 + "\n": 1}))
    assert len(message) < 200


def test_leading_dash_is_allowed_only_when_the_owner_allows_it() -> None:
    free = {"v": P(type="string")}
    signed = {"v": P(type="string", pattern="-?[0-9]+")}
    listed = {"v": P(type="string", enum=["-x", "y"])}

    assert "must not start with '-'" in refused('{"v": "-5"}', free)
    assert parse_arguments('{"v": "-5"}', signed) == {"v": "-5"}
    assert parse_arguments('{"v": "5"}', signed) == {"v": "5"}
    assert "does not have the form" in refused('{"v": "--5"}', signed)
    assert parse_arguments('{"v": "-x"}', listed) == {"v": "-x"}
    assert parse_arguments('{"v": "a-b"}', free) == {"v": "a-b"}  # only a leading dash


def test_negative_numbers_need_a_declared_minimum() -> None:
    assert "at least 0" in refused('{"n": -5}', {"n": P(type="integer")})
    assert parse_arguments('{"n": -5}', {"n": P(type="integer", minimum=-10)}) == {"n": -5}


def test_numbers_in_an_enum() -> None:
    params = {"n": P(type="integer", enum=[1, 2, 4])}
    assert parse_arguments('{"n": 4.0}', params) == {"n": 4}
    assert "must be one of 1, 2, 4" in refused('{"n": 3}', params)


def test_no_parameters() -> None:
    assert parse_arguments("{}", {}) == {}
    assert parse_arguments("", {}) == {}
    assert "the arguments are: none" in refused('{"x": 1}', {})


def test_string_limits_are_inclusive() -> None:
    params = {"v": P(type="string")}
    assert parse_arguments(json.dumps({"v": "é" * 256}), params) == {"v": "é" * 256}
    assert parse_arguments('{"v": ""}', params) == {"v": ""}


def test_render_argv_replaces_whole_elements_only() -> None:
    argv = ["/usr/local/bin/relay", "{action}", "--level", "{level}", "{speed}", "{loud}"]
    argv += ["--x={level}", "{}", "{not a placeholder}", "literal"]
    values = parse_arguments(args(level=30.0 / 3, speed=2), PARAMS)

    assert render_argv(argv, values) == [
        "/usr/local/bin/relay",
        "open",
        "--level",
        "10",
        "2",
        "true",
        "--x={level}",  # config checking refuses this; rendering never touches it
        "{}",
        "{not a placeholder}",
        "literal",
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (30, "30"),
        (-7, "-7"),
        (30.0, "30"),
        (0.1, "0.1"),
        (2.5, "2.5"),
        (1e-05, "0.00001"),
        (1e20, "100000000000000000000"),
        ("a b", "a b"),
    ],
)
def test_render_argv_value_text(value: Any, text: str) -> None:
    assert render_argv(["/bin/x", "{v}"], {"v": value}) == ["/bin/x", text]


def test_render_argv_without_a_value_refuses() -> None:
    with pytest.raises(ArgumentError, match="missing"):
        render_argv(["/bin/x", "{v}"], {})
