"""The [tools] section through the real `omnid check-config`: what an owner sees.

As in tests/test_config.py, every mistake must be one line that names the key — down to
`tools.command[0].parameters.level.maximum` inside the `[[tools.command]]` entries — echoes the
value and says what is allowed, with exit status 78 and no traceback; warnings print and exit 0.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from omnid.config import Config, ToolsSection, keep_restart_only, load_config
from omnid.config_render import render_effective
from omnid.config_schema import RESTART_ONLY, CommandToolConfig
from tests.secret_guard import assert_no_secret, make_key
from tests.test_config import EX_CONFIG, PREFIX, check_config, clean_env, problem_lines

GOOD = """
[tools]
enabled = true
builtin = ["get_time"]
confirm_s = 15.0
timeout_s = 5.0
max_calls_per_turn = 3

[[tools.command]]
name = "garage"
description = "Open or close the garage door"
argv = ["/usr/local/bin/relay", "--door", "{action}", "{level}"]
confirm = "press"
timeout_s = 20.0
modes = ["manual", "vad"]

[tools.command.parameters.action]
type = "string"
description = "open or close"
enum = ["open", "close"]

[tools.command.parameters.level]
type = "integer"
minimum = 0
maximum = 10

[[tools.command]]
name = "lights_off"
description = "Switch every light off"
argv = ["/usr/bin/true"]
confirm = "none"
"""

COMMAND = """
[[tools.command]]
name = "{name}"
description = "Dim the lights"
argv = {argv}
confirm = "press"
"""


def command(argv: str = '["/usr/bin/dim", "{level}"]', name: str = "dim", **params: str) -> str:
    """One [[tools.command]] entry; each keyword is a parameter's TOML body."""
    text = COMMAND.replace("{name}", name).replace("{argv}", argv)
    for pname, body in (params or {"level": 'type = "integer"\nmaximum = 10'}).items():
        text += f"[tools.command.parameters.{pname}]\n{body}\n"
    return text


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "omnid.toml"
    path.write_text(text)
    return path


# --- a good config -----------------------------------------------------------------------------


def test_a_good_tools_config_passes_and_prints_loadable_toml(tmp_path: Path) -> None:
    result = check_config(write(tmp_path, GOOD), clean_env())

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "\n[tools]\n" in result.stdout
    assert result.stdout.count("\n[[tools.command]]\n") == 2
    assert "\n[tools.command.parameters.level]\n" in result.stdout
    printed = tomllib.loads(result.stdout)["tools"]
    assert printed["enabled"] is True and printed["builtin"] == ["get_time"]
    garage, lights = printed["command"]
    assert garage["argv"] == ["/usr/local/bin/relay", "--door", "{action}", "{level}"]
    assert garage["parameters"]["level"] == {
        "type": "integer",
        "description": "",
        "minimum": 0,
        "maximum": 10,
    }
    assert lights == {
        "name": "lights_off",
        "description": "Switch every light off",
        "argv": ["/usr/bin/true"],
        "confirm": "none",
        "modes": ["manual", "vad", "wake"],
        "parameters": {},
    }

    # What it printed checks clean again, to the same effective config.
    again = check_config(write(tmp_path, result.stdout), clean_env())
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("\n", 2)[2] == result.stdout.split("\n", 2)[2]


def test_the_shipped_config_has_tools_off_and_no_command(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[1] / "config" / "omnid.toml"
    result = check_config(shipped, clean_env())

    assert result.returncode == 0, result.stderr
    tools = tomllib.loads(result.stdout)["tools"]
    assert tools["enabled"] is False and tools["command"] == []
    assert tools["builtin"] == [
        "get_time", "set_volume", "set_timer", "cancel_timer", "list_timers",
    ]  # fmt: skip


def test_a_good_config_loads_and_round_trips_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMNID_CONFIG", raising=False)
    cfg = load_config(write(tmp_path, GOOD))

    garage = cfg.tools.command[0]
    assert isinstance(garage, CommandToolConfig)
    assert garage.confirm == "press" and garage.timeout_s == 20.0
    assert cfg.tools.command[1].timeout_s is None and cfg.tools.command[1].modes == [
        "manual",
        "vad",
        "wake",
    ]
    rendered = write(tmp_path, render_effective(cfg))
    assert load_config(rendered).tools == cfg.tools


# --- one line per mistake ----------------------------------------------------------------------

# (id, TOML, extra environment, substrings that one problem line must all contain)
BROKEN: list[tuple[str, str, dict[str, str], list[str]]] = [
    (
        "placeholder-inside-an-element",
        command('["/usr/bin/dim", "--level={level}"]'),
        {},
        ["tools.command[0].argv[1] = '--level={level}'", "whole argv element", '"--level"'],
    ),
    (
        "undeclared-placeholder",
        command('["/usr/bin/dim", "{level}", "{lvl}"]'),
        {},
        ["tools.command[0].argv[2] = '{lvl}'", "no parameter named 'lvl'", "declared: level"],
    ),
    (
        "enum-of-the-wrong-type",
        command(level='type = "integer"\nenum = [1, "two"]'),
        {},
        ["tools.command[0].parameters.level.enum = [1, 'two']", "must all be whole numbers"],
    ),
    (
        "enum-on-a-boolean",
        command('["/usr/bin/dim", "{on}"]', on='type = "boolean"\nenum = [true]'),
        {},
        ["tools.command[0].parameters.on.enum", "not for a boolean"],
    ),
    (
        "minimum-above-maximum",
        command(level='type = "number"\nminimum = 10\nmaximum = 5.5'),
        {},
        ["tools.command[0].parameters.level.minimum = 10", "greater than maximum = 5.5"],
    ),
    (
        "maximum-not-a-number",
        command(level='type = "integer"\nmaximum = "high"'),
        {},
        ["tools.command[0].parameters.level.maximum = 'high'", "must be a number"],
    ),
    (
        "minimum-on-a-string",
        command('["/usr/bin/dim", "{room}"]', room='type = "string"\nminimum = 1'),
        {},
        ["tools.command[0].parameters.room.minimum = 1", "only for integer and number"],
    ),
    (
        "pattern-on-a-boolean",
        command('["/usr/bin/dim", "{on}"]', on='type = "boolean"\npattern = "[01]"'),
        {},
        ["tools.command[0].parameters.on.pattern = '[01]'", "only for string parameters"],
    ),
    (
        "pattern-that-does-not-compile",
        command('["/usr/bin/dim", "{room}"]', room='type = "string"\npattern = "([a-z]+"'),
        {},
        ["tools.command[0].parameters.room.pattern = '([a-z]+'", "not a valid Python regular"],
    ),
    (
        "parameter-type-unknown",
        command(level='type = "int"'),
        {},
        ["tools.command[0].parameters.level.type = 'int'", "'string', 'integer', 'number'"],
    ),
    (
        "parameter-key-misspelt",
        command(level='type = "integer"\nmaximun = 3'),
        {},
        ["tools.command[0].parameters.level.maximun", "did you mean maximum", "valid keys"],
    ),
    (
        "parameter-name-not-an-identifier",
        command('["/usr/bin/dim"]', **{'"light level"': 'type = "integer"'}),
        {},
        ["tools.command[0].parameters.'light level'", "start with a letter"],
    ),
    (
        "parameters-not-a-table",
        COMMAND.replace("{name}", "dim").replace("{argv}", '["/usr/bin/dim"]') + "parameters = 5\n",
        {},
        ["tools.command[0].parameters = 5", "[tools.command.parameters.NAME]"],
    ),
    (
        "duplicate-command-names",
        command() + command(),
        {},
        ["tools.command[1].name = 'dim'", "tools.command[0] has the same name"],
    ),
    (
        "command-named-like-a-builtin",
        command(name="get_time"),
        {},
        ["tools.command[0].name = 'get_time'", "built-in tool"],
    ),
    (
        "command-name-with-a-space",
        command(name="dim lights"),
        {},
        ["tools.command[0].name = 'dim lights'", "1 to 64 letters, digits"],
    ),
    (
        "confirm-missing",
        command().replace('confirm = "press"\n', ""),
        {},
        ["tools.command[0].confirm", "required", "'press'", "'none'", "no default"],
    ),
    (
        "confirm-not-listed",
        command().replace('confirm = "press"', 'confirm = "yes"'),
        {},
        ["tools.command[0].confirm = 'yes'", "'press'", "'none'"],
    ),
    (
        "argv-relative",
        command('["dim", "{level}"]'),
        {},
        ["tools.command[0].argv = ['dim', '{level}']", "absolute path"],
    ),
    (
        "argv-empty",
        command("[]"),
        {},
        ["tools.command[0].argv = []", "absolute path"],
    ),
    (
        "description-blank",
        command().replace('"Dim the lights"', '"  "'),
        {},
        ["tools.command[0].description = '  '", "non-empty"],
    ),
    (
        "command-key-misspelt",
        command().replace("confirm =", "confirm = 'none'\nconfrim ="),
        {},
        ["tools.command[0].confrim", "did you mean confirm", "valid keys: argv"],
    ),
    (
        "command-timeout-zero",
        command().replace('confirm = "press"', 'confirm = "press"\ntimeout_s = 0'),
        {},
        ["tools.command[0].timeout_s = 0", "greater than 0 and at most 600"],
    ),
    (
        "command-modes-unknown",
        command().replace('confirm = "press"', 'confirm = "press"\nmodes = ["sleep"]'),
        {},
        ["tools.command[0].modes = ['sleep']", "'manual', 'vad', 'wake'"],
    ),
    (
        "command-modes-empty",
        command().replace('confirm = "press"', 'confirm = "press"\nmodes = []'),
        {},
        ["tools.command[0].modes = []", "non-empty"],
    ),
    (
        "command-not-a-list-of-tables",
        '[tools]\ncommand = "garage"\n',
        {},
        ["tools.command = 'garage'", "[[tools.command]]"],
    ),
    (
        "command-entry-not-a-table",
        "[tools]\ncommand = [1]\n",
        {},
        ["tools.command[0] = 1", "must be a table", "[[tools.command]]"],
    ),
    (
        "builtin-twice",
        '[tools]\nbuiltin = ["get_time", "get_time"]\n',
        {},
        ["tools.builtin = ['get_time', 'get_time']", "more than once"],
    ),
    (
        "builtin-unknown",
        '[tools]\nbuiltin = ["get_weather"]\n',
        {},
        ["tools.builtin = ['get_weather']", "'get_time', 'set_volume'"],
    ),
    (
        "confirm-s-zero",
        "[tools]\nconfirm_s = 0.0\n",
        {},
        ["tools.confirm_s = 0.0", "greater than 0 and at most 120"],
    ),
    (
        "timeout-s-too-long",
        "[tools]\ntimeout_s = 601.0\n",
        {},
        ["tools.timeout_s = 601.0", "greater than 0 and at most 600"],
    ),
    (
        "max-calls-too-many",
        "[tools]\nmax_calls_per_turn = 33\n",
        {},
        ["tools.max_calls_per_turn = 33", "between 1 and 32"],
    ),
    (
        "enabled-not-a-bool",
        '[tools]\nenabled = "yes"\n',
        {},
        ["tools.enabled = 'yes'", "true or false"],
    ),
    (
        "unknown-tools-key",
        "[tools]\nenable = true\n",
        {},
        ["tools.enable", "did you mean enabled"],
    ),
    (
        "tools-not-a-table",
        "tools = true\n",
        {},
        ["tools = true", "must be a table"],
    ),
    (
        "tools-on-a-model-that-never-calls-them",
        '[api]\nmodel = "qwen3-omni-flash-realtime"\n[tools]\nenabled = true\n',
        {},
        ["tools.enabled = true", "qwen3-omni-flash-realtime", "accepts tools and never calls"],
    ),
    (
        "tools-and-search",
        "[session]\nenable_search = true\n[tools]\nenabled = true\n",
        {},
        ["tools.enabled = true", "session.enable_search = true", "turn one of them off"],
    ),
    (
        "bad-env-override",
        "",
        {"OMNID_TOOLS__ENABLED": "maybe"},
        ["tools.enabled = 'maybe'", "$OMNID_TOOLS__ENABLED", "true or false"],
    ),
    (
        "env-enables-tools-on-flash",
        '[api]\nmodel = "qwen3-omni-flash-realtime"\n',
        {"OMNID_TOOLS__ENABLED": "true"},
        ["tools.enabled = true", "accepts tools and never calls"],
    ),
]


@pytest.mark.parametrize(
    ("toml", "env_extra", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_each_tools_mistake_is_one_line_and_exit_78(
    tmp_path: Path, toml: str, env_extra: dict[str, str], expected: list[str]
) -> None:
    key = make_key()
    result = check_config(write(tmp_path, toml), clean_env(DASHSCOPE_API_KEY=key, **env_extra))

    assert result.returncode == EX_CONFIG, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = problem_lines(result.stderr)
    assert any(all(s in line for s in expected) for line in lines), (expected, result.stderr)
    assert "errors.pydantic.dev" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(PREFIX)]
    assert len(errors) == len(set(errors)), result.stderr  # nothing said twice
    assert_no_secret(result.stdout + result.stderr, key)


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    """Problems of several commands, of their parameters and of another section, together; a
    broken command's index still names it after an earlier one failed."""
    text = "[audio]\nblock_ms = 30\n" + GOOD
    text += command().replace('confirm = "press"\n', "")  # [2]: no confirm
    text += command('["/usr/bin/dim", "--to={level}"]', name="dim2")  # [3]: placeholder inside
    text += command(name="dim3", level='type = "integer"\nminimum = 9\nmaximum = 1')  # [4]

    result = check_config(write(tmp_path, text), clean_env())

    assert result.returncode == EX_CONFIG
    lines = problem_lines(result.stderr)
    starts = sorted(line.split(" ")[0].rstrip(":") for line in lines)
    assert starts == [
        "audio.block_ms",
        "tools.command[2].confirm",
        "tools.command[3].argv[1]",
        "tools.command[4].parameters.level.minimum",
    ], result.stderr


# --- warnings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            command('["/usr/bin/dim"]'),
            ["tools.command[0].parameters.level", "declared but not used in argv"],
        ),
        (
            '[api]\nmodel = "qwen9-omni-realtime"\n[tools]\nenabled = true\n',
            ["tools.enabled = true", "api.model = 'qwen9-omni-realtime'", "not a model omnid"],
        ),
        (
            "[tools]\nenabled = true\n"
            + command().replace('confirm = "press"', 'confirm = "press"\nmodes = ["vad"]'),
            ["tools.command[0].modes = ['vad']", "session.mode = 'manual'"],
        ),
        (
            "[tools]\nenabled = true\nbuiltin = []\n",
            ["tools.enabled = true", "no tool is configured"],
        ),
    ],
    ids=["unused-parameter", "unknown-model", "mode-never-offered", "nothing-to-offer"],
)
def test_warnings_print_but_the_config_is_used(
    tmp_path: Path, toml: str, expected: list[str]
) -> None:
    result = check_config(write(tmp_path, toml), clean_env())

    assert result.returncode == 0, result.stderr
    assert "\n[tools]\n" in result.stdout
    assert any(all(s in line for s in expected) for line in result.stderr.splitlines()), (
        expected,
        result.stderr,
    )
    assert not problem_lines(result.stderr)


# --- environment overrides ---------------------------------------------------------------------


def test_env_overrides_reach_tools_scalars(tmp_path: Path) -> None:
    env = clean_env(
        OMNID_TOOLS__ENABLED="true",
        OMNID_TOOLS__TIMEOUT_S="30",
        OMNID_TOOLS__BUILTIN="set_volume",
    )
    result = check_config(write(tmp_path, command()), env)

    assert result.returncode == 0, result.stderr
    assert "enabled = true  # from $OMNID_TOOLS__ENABLED" in result.stdout
    tools = tomllib.loads(result.stdout)["tools"]
    assert tools["enabled"] is True
    assert tools["timeout_s"] == 30.0
    assert tools["builtin"] == ["set_volume"]
    assert tools["command"][0]["name"] == "dim"  # the file's commands stay


def test_an_env_override_into_a_command_is_refused_by_name(tmp_path: Path) -> None:
    result = check_config(write(tmp_path, ""), clean_env(OMNID_TOOLS__COMMAND__NAME="x"))

    assert result.returncode == EX_CONFIG
    assert any("tools.command" in line for line in problem_lines(result.stderr)), result.stderr


# --- the Python API the daemon uses ------------------------------------------------------------


def test_tools_are_reloadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[tools] is read live: a reload keeps the new tools (the session's list is sent again);
    only the MCP servers, connected once at start, wait for a restart."""
    monkeypatch.delenv("OMNID_CONFIG", raising=False)
    assert [name for name in RESTART_ONLY if name.split(".")[0] == "tools"] == ["tools.mcp"]
    running = load_config(write(tmp_path, ""))
    new = load_config(write(tmp_path, GOOD))

    kept, changed = keep_restart_only(new, running)

    assert kept.tools == new.tools and kept.tools.enabled
    assert changed == []


def test_config_built_directly_checks_tools_too() -> None:
    bad = CommandToolConfig(
        name="dim", description="Dim", argv=["/usr/bin/dim", "{lvl}"], confirm="none"
    )
    with pytest.raises(ValidationError, match=r"tools\.command\[0\]\.argv\[1\]"):
        Config(tools=ToolsSection(command=[bad]))
    with pytest.raises(ValidationError, match="confirm"):
        CommandToolConfig(name="dim", description="Dim", argv=["/usr/bin/dim"])
