"""`omnid wake-test`: the live probability an owner sets `wake.probability_cutoff` by.

The command runs as an owner would run it, in a subprocess, with the microphone a `wav:` file
(played in real time, then silence) of speech synthesised by espeak-ng, which `okay_nabu` hears
reliably with these voice settings (docs/wake-word.md): the wake phrase gives exactly one WAKE,
ordinary speech none, and the status lines come four to a second of audio. Nothing is written.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from tests.harness import ROOT, clean_env

RATE = 16_000
LEAD_S = 1.0  # silence before the speech, as a room is quiet before someone speaks
TAIL_S = 1.5  # after it: the detector fires up to ~0.25 s after the phrase ends
STATUS = re.compile(r"^p=(\d\.\d\d) peak=(\d\.\d\d) ▕.{20}▏ cutoff (\d\.\d\d)$")


def synthesise(text: str) -> np.ndarray:
    """`text` as espeak-ng says it (en-us, 175 words a minute), 16 kHz mono int16."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (scripts/setup installs it)")
    raw = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "175", "--stdout", text],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    # A streamed WAV: its sizes are placeholders, so the samples are whatever follows "data".
    assert raw[:4] == b"RIFF" and raw[20:24] == b"\x01\x00\x01\x00", "16-bit mono PCM"
    rate = int.from_bytes(raw[24:28], "little")
    start = raw.index(b"data") + 8
    samples = np.frombuffer(raw[start : start + (len(raw) - start) // 2 * 2], dtype="<i2")
    resampled = soxr.resample(samples.astype(np.float32), rate, RATE)
    return np.clip(np.rint(resampled), -32768, 32767).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def wake_test(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omnid.cli", "wake-test", "--config", str(config), *args],
        env=clean_env(),
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listen_to(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`omnid wake-test` hearing `text` said after a second of quiet; the run and its length."""
    pytest.importorskip("pymicro_wakeword")
    speech = synthesise(text)
    write_wav(tmp_path / "room.wav", np.concatenate([np.zeros(int(LEAD_S * RATE)), speech]))
    config = tmp_path / "omnid.toml"
    config.write_text(f'[audio]\ninput_device = "wav:{tmp_path / "room.wav"}"\n')
    seconds = round(LEAD_S + len(speech) / RATE + TAIL_S, 1)  # whole 20 ms blocks
    before = sorted(tmp_path.iterdir())
    done = wake_test(config, "--seconds", str(seconds))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(tmp_path.iterdir()) == before, "wake-test wrote a file"
    return done, seconds


def test_the_wake_phrase_is_one_wake_and_the_probability_shows_it(tmp_path: Path) -> None:
    done, seconds = listen_to(tmp_path, "okay nabu, what time is it")

    lines = done.stdout.splitlines()
    wakes = [line for line in lines if line.startswith("WAKE ")]
    assert len(wakes) == 1, done.stdout
    wake = re.fullmatch(r"WAKE p=(\d\.\d\d) at (\d+\.\d\d) s", wakes[0])
    assert wake is not None, wakes
    p = float(wake[1])
    assert LEAD_S < float(wake[2]) < seconds  # when it fired: in the speech, after the quiet
    assert p > 0.85  # okay_nabu's own cutoff: no probability_cutoff is configured
    status = [m for m in map(STATUS.match, lines) if m]
    assert len(status) == int(seconds / 0.25), done.stdout  # four lines a second of audio
    assert all(m[3] == "0.85" for m in status)
    assert max(float(m[2]) for m in status) >= p  # the peak column showed the wake
    assert float(status[0][2]) < 0.5  # the quiet before it did not
    assert lines[-1].startswith(f"heard {seconds:.1f} s: 1 wake, highest p=")
    assert done.stderr == ""


def test_speech_without_the_wake_word_is_no_wake(tmp_path: Path) -> None:
    done, _ = listen_to(tmp_path, "the weather was nice today and the garden looks green")

    assert not [line for line in done.stdout.splitlines() if line.startswith("WAKE")], done.stdout
    assert ": 0 wakes, highest p=" in done.stdout.splitlines()[-1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_without_seconds_it_runs_until_interrupted_and_exits_0(
    tmp_path: Path, sig: signal.Signals
) -> None:
    pytest.importorskip("pymicro_wakeword")
    write_wav(tmp_path / "quiet.wav", np.zeros(RATE // 2))
    config = tmp_path / "omnid.toml"
    config.write_text(f'[audio]\ninput_device = "wav:{tmp_path / "quiet.wav"}"\n')
    # As from a terminal, where Python turns SIGINT into KeyboardInterrupt: a test runner may
    # have left SIGINT ignored, and a child inherits that.
    as_from_a_terminal = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from omnid.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", as_from_a_terminal, "wake-test", "--config", str(config)],
        env=clean_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(9)]  # the header, then 2 s of audio
        assert all(STATUS.match(line.rstrip("\n")) for line in lines[1:]), lines
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert re.fullmatch(
        r"heard \d+\.\d s: 0 wakes, highest p=0\.\d\d \(cutoff 0\.85\)", out.splitlines()[-1]
    )
    assert "Traceback" not in err


def test_the_configured_cutoff_is_the_one_shown(tmp_path: Path) -> None:
    pytest.importorskip("pymicro_wakeword")
    write_wav(tmp_path / "quiet.wav", np.zeros(RATE // 2))
    config = tmp_path / "omnid.toml"
    config.write_text(
        f'[audio]\ninput_device = "wav:{tmp_path / "quiet.wav"}"\n'
        '[wake]\nmodel = "alexa"\nprobability_cutoff = 0.7\n'
    )

    done = wake_test(config, "--seconds", "0.5")

    assert done.returncode == 0, done.stderr
    assert "alexa" in done.stdout.splitlines()[0]
    assert "cutoff 0.70 (wake.probability_cutoff)" in done.stdout.splitlines()[0]
    assert [m[3] for m in map(STATUS.match, done.stdout.splitlines()) if m] == ["0.70", "0.70"]


def test_a_microphone_that_cannot_be_opened_is_one_line_and_exit_69(tmp_path: Path) -> None:
    pytest.importorskip("pymicro_wakeword")
    config = tmp_path / "omnid.toml"
    config.write_text(f'[audio]\ninput_device = "wav:{tmp_path / "missing.wav"}"\n')

    done = wake_test(config, "--seconds", "1")

    assert done.returncode == 69, done.stdout + done.stderr
    assert done.stderr.startswith("omnid wake-test: input device 'wav:"), done.stderr
    assert "Traceback" not in done.stderr


def test_without_the_wake_extra_it_says_how_to_install_it_and_exits_78(tmp_path: Path) -> None:
    """As where pymicro-wakeword is not installed (the import system finds nothing), whatever
    session.mode is: the test is for choosing a cutoff before switching wake mode on."""
    config = tmp_path / "omnid.toml"
    config.write_text('[audio]\ninput_device = "wav:/nonexistent.wav"\n')
    hidden = (
        "import sys; sys.modules['pymicro_wakeword'] = None; "
        "from omnid.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )

    done = subprocess.run(
        [sys.executable, "-c", hidden, "wake-test", "--config", str(config), "--seconds", "1"],
        env=clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("omnid wake-test: the wake-word detector (pymicro-wakeword)")
    assert "not installed" in done.stderr and "scripts/setup" in done.stderr


def test_a_bad_config_is_exit_78(tmp_path: Path) -> None:
    config = tmp_path / "omnid.toml"
    config.write_text('[wake]\nmodel = "hey_bob"\n')

    done = wake_test(config, "--seconds", "1")

    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stderr.startswith("omnid: config: wake.model = 'hey_bob': must be one of")


def test_seconds_must_be_positive(tmp_path: Path) -> None:
    done = wake_test(tmp_path / "omnid.toml", "--seconds", "0")
    assert done.returncode == 2 and "must be a number of seconds above 0" in done.stderr
