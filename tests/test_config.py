"""What a user sees from `omnid check-config`, and what the daemon gets from `load_config`.

Most tests run the real command in a subprocess with a controlled environment, because the
contract is what reaches the terminal: exit status 78, one line per problem naming the key and
what is allowed, no traceback, and never the API key. A few check the Python API directly where
the daemon relies on it (round-trips, require_api_key, warnings).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from omnid import config as config_module
from omnid import wake as wake_module
from omnid.config import (
    Config,
    ConfigError,
    SessionSection,
    load_config,
    resolve_config_path,
)
from omnid.config_render import render_effective
from omnid.config_schema import SECTIONS as SCHEMA
from omnid.config_schema import table_model
from tests.secret_guard import assert_no_secret, make_key

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "omnid.toml"
EX_CONFIG = 78
PREFIX = "omnid: config: "
CREDENTIAL = "dashscope-api-key"
SECTIONS = ["api", "session", "session.vad", "audio", "camera", "button", "led", "usage"]
SECTIONS += ["control", "log", "wake"]


def _is_ours(name: str) -> bool:
    return name.upper().startswith("OMNID_") or name in (
        "DASHSCOPE_API_KEY",
        "CREDENTIALS_DIRECTORY",
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that could configure omnid, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not _is_ours(k)}
    env.update(extra)
    return env


def check_config(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omnid.cli", "check-config", "--config", str(config)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def problem_lines(stderr: str) -> list[str]:
    return [line[len(PREFIX) :] for line in stderr.splitlines() if line.startswith(PREFIX)]


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """For in-process tests: the same controlled environment as the subprocess ones."""
    for name in list(os.environ):
        if _is_ours(name):
            monkeypatch.delenv(name)


# --- broken configs ----------------------------------------------------------------------------

# (id, TOML text — {tmp} and {key} are filled in —, extra environment, substrings that one
# problem line must all contain: the key path, the value where there is one, what is allowed)
BROKEN: list[tuple[str, str, dict[str, str], list[str]]] = [
    ("wrong-type", "[audio]\nearcons = 'yes'\n", {}, ["audio.earcons = 'yes'", "true or false"]),
    (
        "wrong-type-pin",
        "[button]\npin = 17\n",
        {},
        ["button.pin = 17", "gpiozero pin name such as 'GPIO17'"],
    ),
    (
        "threshold-out-of-range",
        "[session.vad]\nthreshold = 1.5\n",
        {},
        ["session.vad.threshold = 1.5", "between -1 and 1"],
    ),
    (
        "silence-too-short",
        "[session.vad]\nsilence_duration_ms = 100\n",
        {},
        ["session.vad.silence_duration_ms = 100", "between 200 and 6000"],
    ),
    (
        "rollover-at-cap",
        "[session]\nrollover_after_min = 120\n",
        {},
        ["session.rollover_after_min = 120", "greater than 0 and less than 120"],
    ),
    (
        "bad-enum",
        '[session]\nmode = "vadd"\n',
        {},
        ["session.mode = 'vadd'", "must be one of 'manual', 'vad'"],
    ),
    (
        "block-ms-not-listed",
        "[audio]\nblock_ms = 30\n",
        {},
        ["audio.block_ms = 30", "one of 10, 20, 40, 50, 100"],
    ),
    (
        "unknown-key",
        "[audio]\nblok_ms = 20\n",
        {},
        [
            "audio.blok_ms",
            "unknown key in [audio]",
            "did you mean block_ms",
            "valid keys: block_ms",
        ],
    ),
    (
        "unknown-section",
        '[sesion]\nmode = "vad"\n',
        {},
        ["[sesion]", "unknown section", "did you mean [session]", "valid sections: api, session"],
    ),
    (
        "key-outside-section",
        'mode = "vad"\n',
        {},
        ["mode", "outside any section", "under [session]"],
    ),
    (
        "section-not-a-table",
        'session = "vad"\n',
        {},
        ["session = 'vad'", "must be a table"],
    ),
    (
        "toml-syntax",
        "[session]\nmode = vad\n",
        {},
        ["{tmp}/omnid.toml", "TOML syntax error at line 2, column 8", "need quotes"],
    ),
    (
        "missing-key-file",
        '[api]\napi_key_file = "{tmp}/no-such-key"\n',
        {},
        ["api.api_key_file = '{tmp}/no-such-key'", "no such file"],
    ),
    (
        "empty-key-file",
        '[api]\napi_key_file = "{tmp}/empty-key"\n',
        {},
        ["api.api_key_file = '{tmp}/empty-key'", "empty"],
    ),
    (
        "api-key-in-toml",
        '[api]\napi_key = "{key}"\n',
        {},
        ["api.api_key", "never lives in the TOML", "api.api_key_file", "$DASHSCOPE_API_KEY"],
    ),
    (
        "audio-only-modalities",
        '[session]\nmodalities = ["audio"]\n',
        {},
        ["session.modalities = ['audio']", '["text"] or ["text", "audio"]'],
    ),
    (
        "semantic-vad-on-flash",
        '[api]\nmodel = "qwen3-omni-flash-realtime"\n[session]\nmode = "vad"\n',
        {},
        ["session.vad.type = 'semantic_vad'", "qwen3-omni-flash-realtime", "server_vad"],
    ),
    (
        "ws-to-remote-host",
        '[api]\nurl = "ws://dashscope-intl.aliyuncs.com/api-ws/v1/realtime"\n',
        {},
        ["api.url = 'ws://dashscope-intl.aliyuncs.com", "use wss://", "127.0.0.1"],
    ),
    (
        "bad-env-override",
        "",
        {"OMNID_SESSION__MODE": "bogus"},
        ["session.mode = 'bogus'", "$OMNID_SESSION__MODE", "one of 'manual', 'vad'"],
    ),
    (
        "unknown-env-override",
        "",
        {"OMNID_AUDIO__BLOK_MS": "20"},
        ["audio.blok_ms", "$OMNID_AUDIO__BLOK_MS", "valid keys: block_ms"],
    ),
    (
        "nonexistent-config",
        "",  # no file is written: --config points at {tmp}/missing.toml
        {},
        ["{tmp}/missing.toml", "no such config file"],
    ),
    (
        "search-without-search-model",
        '[api]\nmodel = "qwen3.5-omni-flash-realtime"\n[session]\nenable_search = true\n',
        {},
        ["session.enable_search = true", "qwen3.5-omni-flash-realtime", "only qwen3.5-omni-plus"],
    ),
    (
        "voice-of-another-model",
        '[session]\nvoice = "Jada"\n',
        {},
        ["session.voice = 'Jada'", "qwen3-omni-flash-realtime", "one of Aiden", "'Tina'"],
    ),
    (
        "camera-files-without-path",
        '[camera]\nenabled = true\nsource = "files"\n',
        {},
        ["camera.path", "required", "directory of JPEG/PNG images"],
    ),
    (
        "wake-model-unknown",
        '[session]\nmode = "wake"\n[wake]\nmodel = "hey_bob"\n',
        {},
        ["wake.model = 'hey_bob'", "must be one of okay_nabu, hey_jarvis", "manifest (.json)"],
    ),
    (
        "wake-manifest-missing",
        '[session]\nmode = "wake"\n[wake]\nmodel = "{tmp}/no-such.json"\n',
        {},
        ["wake.model = '", "{tmp}/no-such.json", "no such model manifest"],
    ),
    (
        "wake-model-from-env",
        "",
        {"OMNID_SESSION__MODE": "wake", "OMNID_WAKE__MODEL": "hey_bob"},
        ["wake.model = 'hey_bob'", "$OMNID_WAKE__MODEL", "must be one of okay_nabu"],
    ),
    (
        "camera-path-not-a-directory",
        '[camera]\nenabled = true\nsource = "files"\npath = "{tmp}/empty-key"\n',
        {},
        ["camera.path = '{tmp}/empty-key'", "not a directory"],
    ),
]


@pytest.mark.parametrize(
    ("toml", "env_extra", "expected"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_broken_config_is_one_readable_line_and_exit_78(
    tmp_path: Path, toml: str, env_extra: dict[str, str], expected: list[str]
) -> None:
    key = make_key()
    (tmp_path / "empty-key").write_text("\n")
    config = tmp_path / ("missing.toml" if "missing.toml" in expected[0] else "omnid.toml")
    if config.name == "omnid.toml":
        config.write_text(toml.format(tmp=tmp_path, key=key))
    # Every broken case also has a key configured: no error path may echo it.
    result = check_config(config, clean_env(DASHSCOPE_API_KEY=key, **env_extra))

    assert result.returncode == EX_CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    wanted = [s.format(tmp=tmp_path) for s in expected]
    lines = problem_lines(result.stderr)
    assert any(all(s in line for s in wanted) for line in lines), (wanted, result.stderr)
    # Nothing but our one-line problems: no pydantic dump, continuation lines or URLs.
    assert all(line.startswith(PREFIX) for line in result.stderr.splitlines()), result.stderr
    assert "errors.pydantic.dev" not in result.stderr
    assert_no_secret(result.stdout + result.stderr, key)


def test_two_problems_give_two_lines(tmp_path: Path) -> None:
    config = tmp_path / "omnid.toml"
    config.write_text('[session]\nmode = "vadd"\n\n[session.vad]\nthreshold = 1.5\n')

    result = check_config(config, clean_env())

    assert result.returncode == EX_CONFIG
    lines = problem_lines(result.stderr)
    assert len(lines) == 2, result.stderr
    assert any(line.startswith("session.mode = 'vadd': must be one of") for line in lines)
    assert any(line.startswith("session.vad.threshold = 1.5: must be") for line in lines)


def test_a_key_pasted_in_the_wrong_place_is_not_echoed(tmp_path: Path) -> None:
    """The classic slip: the key itself where a path was wanted. The error must not show it."""
    key = make_key()
    config = tmp_path / "omnid.toml"
    config.write_text(f'[api]\napi_key_file = "{key}"\nmodel = "{key}"\n')

    result = check_config(config, clean_env())

    assert result.returncode == EX_CONFIG
    assert any(line.startswith("api.api_key_file = ") for line in problem_lines(result.stderr))
    assert_no_secret(result.stdout + result.stderr, key)


# --- the shipped file and the rendering --------------------------------------------------------


def test_shipped_config_checks_clean_and_prints_every_section_and_key() -> None:
    result = check_config(SHIPPED, clean_env())

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for section in SECTIONS:
        assert f"\n[{section}]\n" in result.stdout
    printed = tomllib.loads(result.stdout)  # the output is itself valid TOML
    defaults = Config()
    for name, section in printed.items():
        model = getattr(defaults, name)
        assert set(section) == set(type(model).model_fields), name
    assert printed["session"]["vad"]["type"] == "semantic_vad"
    assert "# api key: not set" in result.stdout


def test_shipped_config_lists_every_key() -> None:
    """The file promises every key with its default; a key added to the schema alone would be
    one an owner cannot find. Lists of tables ([[tools.command]], [[tools.mcp]]) have none by
    default: they are documented as a commented example."""
    text = SHIPPED.read_text()
    shipped = tomllib.loads(text)

    def missing(path: str, model: type[BaseModel], table: dict[str, Any]) -> list[str]:
        out = []
        for key, info in model.model_fields.items():
            nested = table_model(info)
            if nested is not None:
                out += missing(f"{path}.{key}", nested, table.get(key, {}))
            elif key not in table and f"# [[{path}.{key}]]" not in text:
                out.append(f"{path}.{key}")
        return out

    assert [
        m for name, model in SCHEMA.items() for m in missing(name, model, shipped.get(name, {}))
    ] == []


def test_shipped_config_documents_exactly_the_built_in_defaults(clean_environ: None) -> None:
    shipped = load_config(SHIPPED)
    assert shipped.model_dump(exclude={"source_path"}) == Config().model_dump(
        exclude={"source_path"}
    )
    assert shipped.source_path == SHIPPED


def _same(a: Config, b: Config) -> bool:
    return a.model_dump(exclude={"source_path"}) == b.model_dump(exclude={"source_path"})


def test_render_effective_loads_back_to_the_same_config(
    tmp_path: Path, clean_environ: None
) -> None:
    (tmp_path / "frames").mkdir()
    key_file = tmp_path / "key"
    key_file.write_text(make_key())
    config = tmp_path / "omnid.toml"
    config.write_text(
        f"""
[api]
url = "ws://127.0.0.1:8765/api-ws/v1/realtime"
model = "qwen3-omni-flash-realtime"
api_key_file = "{key_file}"
[session]
mode = "vad"
voice = "Dylan"
instructions = '''Line one with "quotes", a back\\slash and ünïcödé.
Line two,\ttabbed.'''
modalities = ["text"]
[session.vad]
type = "server_vad"
threshold = -0.25
[audio]
input_device = "wav:/tmp/in put.wav"
[camera]
enabled = true
source = "files"
path = "{tmp_path / "frames"}"
fps = 0.5
[usage]
price_input_audio = 1e-05
currency = "€"
"""
    )
    original = load_config(config)
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(render_effective(original))

    again = load_config(rendered)

    assert _same(original, again)
    assert again.session.instructions.startswith('Line one with "quotes", a back\\slash')
    for cfg in (SHIPPED, None):
        plain = load_config(cfg) if cfg else Config()
        rendered.write_text(render_effective(plain))
        assert _same(plain, load_config(rendered))


# --- environment and API key -------------------------------------------------------------------


def test_env_overrides_win_over_the_file_and_are_attributed(tmp_path: Path) -> None:
    config = tmp_path / "omnid.toml"
    config.write_text('[session]\nmode = "manual"\n[session.vad]\nthreshold = 0.1\n')
    env = clean_env(
        OMNID_SESSION__MODE="vad",
        OMNID_SESSION__VAD__THRESHOLD="0.7",
        OMNID_SESSION__MODALITIES="text",
        OMNID_AUDIO__EARCONS="false",
    )

    result = check_config(config, env)

    assert result.returncode == 0, result.stderr
    assert 'mode = "vad"  # from $OMNID_SESSION__MODE' in result.stdout
    printed = tomllib.loads(result.stdout)
    assert printed["session"]["mode"] == "vad"
    assert printed["session"]["vad"]["threshold"] == 0.7
    assert printed["session"]["modalities"] == ["text"]
    assert printed["audio"]["earcons"] is False


@pytest.mark.parametrize(
    ("sources", "named"),
    [
        (("credential", "file", "env"), "(from $CREDENTIALS_DIRECTORY/dashscope-api-key)"),
        (("file", "env"), "(from api.api_key_file"),
        (("env",), "(from $DASHSCOPE_API_KEY)"),
        ((), "not set"),
    ],
    ids=["credential-wins", "file-beats-env", "env-last", "none"],
)
def test_api_key_source_order_is_visible_but_the_key_is_not(
    tmp_path: Path, sources: tuple[str, ...], named: str
) -> None:
    keys = {source: make_key() for source in ("credential", "file", "env")}
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / CREDENTIAL).write_text(keys["credential"] + "\n")
    (tmp_path / "key").write_text(f"  {keys['file']}\n")
    config = tmp_path / "omnid.toml"
    config.write_text(f'[api]\napi_key_file = "{tmp_path / "key"}"\n' if "file" in sources else "")
    env = clean_env()
    if "credential" in sources:
        env["CREDENTIALS_DIRECTORY"] = str(tmp_path / "creds")
    if "env" in sources:
        env["DASHSCOPE_API_KEY"] = keys["env"]

    result = check_config(config, env)

    assert result.returncode == 0, result.stderr
    key_lines = [line for line in result.stdout.splitlines() if line.startswith("# api key: ")]
    assert len(key_lines) == 1 and named in key_lines[0], key_lines
    if not sources:
        for where in ("$CREDENTIALS_DIRECTORY", "api.api_key_file", "$DASHSCOPE_API_KEY"):
            assert where in key_lines[0]
    for key in keys.values():
        assert_no_secret(result.stdout + result.stderr, key)


@pytest.mark.parametrize("shape", ["sk-test", "other"])
def test_key_from_credential_never_shows_in_errors(tmp_path: Path, shape: str) -> None:
    """Even echoed back as a bad value, cut short to fit a line, the key stays hidden — also one
    that does not look like a DashScope key (so only knowing the key can hide it)."""
    key = make_key() if shape == "sk-test" else "dk" + make_key()[8:] + "Z"
    (tmp_path / CREDENTIAL).write_text(key)
    long_value = "x" * 60 + " " + key + " and more words after it"
    config = tmp_path / "omnid.toml"
    config.write_text(
        f'[session]\nmode = "{long_value}"\ninstructions = "{key}"\n[api]\nurl = "{key}"\n'
    )

    result = check_config(config, clean_env(CREDENTIALS_DIRECTORY=str(tmp_path)))

    assert result.returncode == EX_CONFIG
    assert any(line.startswith("session.mode = 'xxx") for line in problem_lines(result.stderr))
    assert any(line.startswith("api.url = ") for line in problem_lines(result.stderr))
    assert_no_secret(result.stdout + result.stderr, key)


def test_require_api_key_without_any_key_says_where_it_looked(
    tmp_path: Path, clean_environ: None
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(SHIPPED, require_api_key=True)

    assert len(caught.value.problems) == 1
    message = str(caught.value)
    for where in (
        "$CREDENTIALS_DIRECTORY/dashscope-api-key",
        "api.api_key_file",
        "DASHSCOPE_API_KEY",
    ):
        assert where in message


def test_require_api_key_with_a_key_keeps_it_secret(
    monkeypatch: pytest.MonkeyPatch, clean_environ: None
) -> None:
    key = make_key()
    monkeypatch.setenv("DASHSCOPE_API_KEY", f"  {key}\n")

    cfg = load_config(SHIPPED, require_api_key=True)

    assert cfg.api_key is not None and cfg.api_key.get_secret_value() == key
    assert_no_secret(repr(cfg) + str(cfg) + render_effective(cfg), key)


def test_blank_dashscope_api_key_means_no_key(
    monkeypatch: pytest.MonkeyPatch, clean_environ: None
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "  ")
    assert load_config(SHIPPED).api_key is None


# --- the Python API the daemon uses ------------------------------------------------------------


def test_config_error_lists_all_problems_in_str(tmp_path: Path, clean_environ: None) -> None:
    config = tmp_path / "omnid.toml"
    config.write_text("[audio]\nblock_ms = 30\noutput_volume = 101\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert len(caught.value.problems) == 2
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_unknown_model_and_voice_are_warnings_not_errors(
    tmp_path: Path, clean_environ: None, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "omnid.toml"
    config.write_text('[api]\nmodel = "qwen9-omni-realtime"\n')
    with caplog.at_level(logging.WARNING, logger="omnid.config"):
        cfg = load_config(config)
    assert cfg.effective_voice == ""  # unknown model: leave the voice to the service
    assert "api.model = 'qwen9-omni-realtime'" in caplog.text

    caplog.clear()
    config.write_text('[session]\nvoice = "tina"\n')
    with caplog.at_level(logging.WARNING, logger="omnid.config"):
        cfg = load_config(config)
    assert cfg.effective_voice == "tina"
    assert "session.voice = 'tina'" in caplog.text and "did you mean 'Tina'" in caplog.text


@pytest.mark.parametrize(
    ("model", "voice"),
    [("qwen3.5-omni-plus-realtime", "Tina"), ("qwen3-omni-flash-realtime", "Cherry")],
)
def test_effective_voice_defaults_per_model(
    monkeypatch: pytest.MonkeyPatch, clean_environ: None, model: str, voice: str
) -> None:
    monkeypatch.setenv("OMNID_API__MODEL", model)
    assert load_config(SHIPPED).effective_voice == voice


def test_transcription_names_the_newest_model_and_older_configs_still_load(
    tmp_path: Path, clean_environ: None
) -> None:
    """The service's newest docs call the input transcription model `qwen3-asr-flash-realtime`
    (formerly `gummy-realtime-v1`); a config written for the old name keeps working."""
    from omnid.session import session_config

    sent = session_config(load_config(SHIPPED), "", [])["input_audio_transcription"]
    assert sent == {"model": "qwen3-asr-flash-realtime"}
    old = tmp_path / "old.toml"
    old.write_text('[session]\ntranscription_model = "gummy-realtime-v1"\n')
    sent = session_config(load_config(old), "", [])["input_audio_transcription"]
    assert sent == {"model": "gummy-realtime-v1"}


def test_config_is_frozen_and_checks_across_keys_when_built_directly() -> None:
    cfg = Config()
    with pytest.raises(ValidationError):
        cfg.session.mode = "vad"
    with pytest.raises(ValidationError, match="qwen3-omni-flash-realtime"):
        Config(session=SessionSection(voice="Jada"))


def test_resolve_config_path_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environ: None
) -> None:
    named = tmp_path / "named.toml"
    from_env = tmp_path / "env.toml"
    named.write_text("")
    from_env.write_text("")
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "etc.toml")

    assert resolve_config_path(None) is None  # nothing anywhere: built-in defaults
    (tmp_path / "etc.toml").write_text("")
    assert resolve_config_path(None) == tmp_path / "etc.toml"
    monkeypatch.setenv("OMNID_CONFIG", str(from_env))
    assert resolve_config_path(None) == from_env
    assert resolve_config_path(named) == named
    monkeypatch.setenv("OMNID_CONFIG", str(tmp_path / "typo.toml"))
    with pytest.raises(ConfigError, match=r"typo\.toml: no such config file.*\$OMNID_CONFIG"):
        resolve_config_path(None)


# --- wake mode: what it needs beyond the schema -------------------------------------------------

WAKE_MODE = '[session]\nmode = "wake"\n'
# `omnid` as it runs where the wake extra is not installed: the import system finds no
# pymicro_wakeword (a None in sys.modules is how Python marks a module that cannot be imported).
WITHOUT_DETECTOR = (
    "import sys; sys.modules['pymicro_wakeword'] = None; "
    "from omnid.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def check_config_without_detector(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_DETECTOR, "check-config", "--config", str(config)],
        env=clean_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_wake_mode_without_the_detector_says_how_to_install_it_and_exits_78(
    tmp_path: Path,
) -> None:
    config = tmp_path / "omnid.toml"
    config.write_text(WAKE_MODE)

    result = check_config_without_detector(config)

    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    assert all(line.startswith(PREFIX) for line in result.stderr.splitlines()), result.stderr
    (line,) = problem_lines(result.stderr)
    assert line.startswith("session.mode = 'wake': the wake-word detector (pymicro-wakeword) is")
    assert "not installed" in line and "scripts/setup" in line and "--only-binary" in line
    if importlib.util.find_spec("pymicro_wakeword") is not None:
        # The same file where the extra is installed: the line above was the detector's absence.
        assert check_config(config, clean_env()).returncode == 0


def test_other_modes_need_no_detector_and_do_not_check_the_wake_model(tmp_path: Path) -> None:
    config = tmp_path / "omnid.toml"
    config.write_text('[session]\nmode = "vad"\n[wake]\nmodel = "hey_bob"\n')

    result = check_config_without_detector(config)

    assert result.returncode == 0, result.stderr
    assert '\n[wake]\nmodel = "hey_bob"\n' in result.stdout


def test_wake_mode_on_a_32_bit_system_says_it_needs_a_64_bit_os(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environ: None
) -> None:
    """Raspberry Pi OS 32-bit, where pymicro-features has no build (docs/wake-word.md)."""
    monkeypatch.setattr(wake_module, "available", lambda: False)
    monkeypatch.setattr(config_module, "_userland_bits", lambda: 32)
    config = tmp_path / "omnid.toml"
    config.write_text(WAKE_MODE + '[wake]\nmodel = "alexa"\n')

    with pytest.raises(ConfigError) as caught:
        load_config(config)

    (line,) = caught.value.problems
    assert line.startswith("session.mode = 'wake': wake mode needs a 64-bit OS"), line


def test_a_wake_model_manifest_that_exists_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environ: None
) -> None:
    monkeypatch.setattr(wake_module, "available", lambda: True)
    manifest = tmp_path / "hey_box.json"
    manifest.write_text("{}")
    config = tmp_path / "omnid.toml"
    config.write_text(WAKE_MODE + f'[wake]\nmodel = "{manifest}"\n')

    assert load_config(config).wake.model == str(manifest)
