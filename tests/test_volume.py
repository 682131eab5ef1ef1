"""Volume: the `volume …` command words, the perceptual gain curve, and the state file."""

from __future__ import annotations

import json
import logging
import math
import os
import stat
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from omnid.audio.base import Speaker
from omnid.volume import FILENAME, VolumeStore, apply, default_state_dir, to_gain

# -- apply ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "current", "expected"),
    [
        (["up"], 50, 60),
        (["down"], 50, 40),
        (["UP"], 50, 60),
        (["up"], 95, 100),  # clamped
        (["up"], 100, 100),
        (["down"], 5, 0),
        (["down"], 0, 0),
        (["0"], 50, 0),
        (["100"], 50, 100),
        (["35"], 50, 35),
        (["35%"], 50, 35),
        ([" 7 "], 50, 7),
    ],
)
def test_apply(words: list[str], current: int, expected: int) -> None:
    assert apply(words, current) == expected


@pytest.mark.parametrize(
    ("words", "match"),
    [
        ([], "not 'nothing'"),
        (["loud"], "'up', 'down' or a whole number from 0 to 100"),
        (["101"], "out of range"),
        (["-5"], "not '-5'"),
        (["50.5"], "not '50.5'"),
        (["up", "up"], "not 'up up'"),
        (["٥٠"], "not"),  # digits, but not ones anyone types at a shell
        ([""], "not ''"),
    ],
)
def test_apply_refuses_with_a_clear_message(words: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apply(words, 50)


# -- to_gain -------------------------------------------------------------------------------


def test_to_gain_end_points_and_monotonic() -> None:
    assert to_gain(0) == 0.0
    assert to_gain(100) == 1.0
    gains = [to_gain(p) for p in range(101)]
    assert all(a < b for a, b in pairwise(gains))
    assert all(0.0 <= g <= 1.0 for g in gains)


def test_to_gain_is_perceptual() -> None:
    """Half the percent is half as loud: 10 dB down (the sone scale)."""
    assert 20 * math.log10(to_gain(50)) == pytest.approx(-10.0, abs=0.05)
    assert 20 * math.log10(to_gain(25)) == pytest.approx(-20.0, abs=0.05)
    assert to_gain(50) < 0.5  # not linear in amplitude


def test_to_gain_clamps_and_refuses_nan() -> None:
    assert to_gain(-5) == 0.0 and to_gain(250) == 1.0
    with pytest.raises(ValueError):
        to_gain(float("nan"))


class _Probe(Speaker):
    """The real Speaker (ring buffer, volume, render); only the device is absent."""

    def start(self) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("percent", [0, 10, 50, 90, 100])
def test_gain_applied_by_the_speaker_never_clips(percent: int) -> None:
    speaker = _Probe("probe", 24000, volume=to_gain(percent))
    loud = np.full(480, 32767, dtype=np.int16)
    loud[::2] = -32768
    speaker.play(loud)
    out = np.zeros((480, 1), dtype=np.int16)
    speaker._render(out, 0.0)
    expected = np.rint(loud.astype(np.float64) * to_gain(percent))
    assert np.array_equal(out[:, 0], expected.astype(np.int16))  # scaled, no wrap-around


# -- VolumeStore ---------------------------------------------------------------------------


def test_missing_file_is_the_default_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert VolumeStore(tmp_path / "nowhere", default=80).load() == 80
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_persists_across_instances(tmp_path: Path) -> None:
    state = tmp_path / "state"  # created on first save
    first = VolumeStore(state, default=80)
    assert first.save(35) is True
    assert VolumeStore(state, default=80).load() == 35
    first.save(0)
    assert VolumeStore(state, default=80).load() == 0
    assert json.loads((state / FILENAME).read_text()) == {"percent": 0, "configured": 80}
    assert sorted(p.name for p in state.iterdir()) == [FILENAME]  # no temporary left over


@pytest.mark.parametrize(
    "content",
    ["", "{", "loud", "[70]", '{"percent": 101}', '{"percent": "70"}', '{"percent": 7.5}', "\0"],
)
def test_corrupt_file_is_the_default_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    (tmp_path / FILENAME).write_text(content)
    store = VolumeStore(tmp_path, default=60)
    with caplog.at_level(logging.WARNING, logger="omnid.volume"):
        assert store.load() == 60
        assert store.load() == 60  # asked again: no second warning
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(tmp_path / FILENAME) in warnings[0].getMessage()
    assert store.save(40) and store.load() == 40  # and a save repairs it


def test_a_hand_written_number_is_accepted(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_text("45\n")
    assert VolumeStore(tmp_path, default=100).load() == 45


def test_an_edited_config_default_wins_over_the_saved_volume(tmp_path: Path) -> None:
    VolumeStore(tmp_path, default=100).save(30)
    assert VolumeStore(tmp_path, default=100).load() == 30  # config unchanged: saved value
    assert VolumeStore(tmp_path, default=70).load() == 70  # operator edited output_volume


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_state_dir_warns_once_and_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        store = VolumeStore(tmp_path, default=100)
        with caplog.at_level(logging.WARNING, logger="omnid.volume"):
            assert store.save(50) is False
            assert store.save(60) is False
    finally:
        tmp_path.chmod(stat.S_IRWXU)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_unwritable_path_warns_once_and_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Works as root too: the state directory's place is taken by a file."""
    (tmp_path / "state").write_text("not a directory")
    store = VolumeStore(tmp_path / "state", default=100)
    with caplog.at_level(logging.WARNING, logger="omnid.volume"):
        assert store.save(50) is False
        assert store.save(60) is False
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert store.load() == 100  # unreadable: the default


def test_save_refuses_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        VolumeStore(tmp_path).save(101)
    with pytest.raises(ValueError):
        VolumeStore(tmp_path, default=-1)


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/omnid:/var/lib/other")
    assert default_state_dir() == Path("/var/lib/omnid")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_state_dir() == tmp_path / "xdg" / "omnid"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_state_dir() == tmp_path / ".local" / "state" / "omnid"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_state_dir() == Path("/var/lib/omnid")
