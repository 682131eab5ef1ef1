"""Earcons: short, click-free, quiet, distinct from each other and from speech; and the
`correlates()` detector the "no earcon on the wire" test relies on."""

from __future__ import annotations

import wave
from importlib import resources

import numpy as np
import pytest
import soxr

from omnid.earcons import RATE, Earcons, correlates, error_tone, tone

EARCONS = Earcons.generate()
NAMES = Earcons.names()

DURATION_S = {  # (min, max) seconds
    "listening": (0.12, 0.15),  # overlaps the start of capture: keep it short
    "sent": (0.05, 0.15),
    "error": (0.2, 0.4),
    "offline": (0.2, 0.5),
    "online": (0.2, 0.5),
    "confirm": (0.25, 0.5),  # a question, asked while nobody speaks
    "woken": (0.04, 0.08),  # not masked from the words after the wake word: short and soft
}


def speech_16k() -> np.ndarray:
    """The bundled sample utterance (real speech, 16 kHz)."""
    sample = resources.files("omnid") / "data" / "sample.wav"
    with resources.as_file(sample) as path, wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def in_silence(pcm: np.ndarray, pad_s: float = 0.5) -> np.ndarray:
    pad = np.zeros(int(RATE * pad_s), dtype=np.int16)
    return np.concatenate([pad, pcm, pad])


def test_the_set_is_complete() -> None:
    assert set(NAMES) == {"listening", "sent", "error", "offline", "online", "confirm", "woken"}
    assert set(DURATION_S) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_duration_format_and_level(name: str) -> None:
    pcm = EARCONS.get(name)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    low, high = DURATION_S[name]
    assert low <= EARCONS.duration_s(name) <= high
    assert EARCONS.duration_s(name) == len(pcm) / 24000
    assert np.abs(pcm.astype(np.int32)).max() < 0.5 * 32768  # well below full scale
    assert np.abs(pcm.astype(np.int32)).max() > 0.1 * 32768  # and still audible


@pytest.mark.parametrize("name", NAMES)
def test_starts_and_ends_at_zero_without_a_click(name: str) -> None:
    pcm = EARCONS.get(name).astype(np.float64) / 32768
    ms = RATE // 1000
    assert abs(pcm[0]) < 0.005 and abs(pcm[-1]) < 0.005
    # the first and last millisecond are the start of a fade: far below the peak
    peak = np.abs(pcm).max()
    assert np.sqrt(np.mean(pcm[:ms] ** 2)) < 0.1 * peak
    assert np.sqrt(np.mean(pcm[-ms:] ** 2)) < 0.1 * peak
    # no jump between neighbouring samples bigger than the highest note allows (no step)
    assert np.abs(np.diff(pcm)).max() < 0.2


@pytest.mark.parametrize("name", NAMES)
def test_earcons_are_read_only(name: str) -> None:
    with pytest.raises(ValueError):
        EARCONS.get(name)[0] = 1


@pytest.mark.parametrize("a", NAMES)
@pytest.mark.parametrize("b", NAMES)
def test_each_earcon_is_distinct(a: str, b: str) -> None:
    score = correlates(in_silence(EARCONS.get(b)), EARCONS.get(a))
    if a == b:
        assert score > 0.99
    else:
        assert score < 0.25, f"{a} looks like {b}: {score:.2f}"


@pytest.mark.parametrize("name", NAMES)
def test_found_inside_a_longer_noisy_signal(name: str) -> None:
    earcon = EARCONS.get(name).astype(np.float64)
    rng = np.random.default_rng(7)
    rms = np.sqrt(np.mean(earcon**2))
    signal = rng.normal(0, 0.1 * rms, 3 * RATE)  # noise 20 dB below the earcon
    at = int(1.3 * RATE)
    signal[at : at + len(earcon)] += 0.4 * earcon  # also quieter: the score is scale-free
    assert correlates(signal, EARCONS.get(name)) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_found_next_to_speech_at_the_wire_rate(name: str) -> None:
    """The lead's check: 16 kHz audio, the earcon resampled to it by `correlates`."""
    speech = speech_16k()
    earcon_16k = soxr.resample(EARCONS.get(name), RATE, 16000)
    signal = np.concatenate([speech[:16000], np.zeros(1600, np.int16), earcon_16k, speech[16000:]])
    assert correlates(signal, EARCONS.get(name), rate=16000) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_not_found_in_speech_or_noise(name: str) -> None:
    speech = speech_16k()
    assert correlates(speech, EARCONS.get(name), rate=16000) < 0.3
    speech_24k = soxr.resample(speech, 16000, RATE)
    assert correlates(speech_24k, EARCONS.get(name)) < 0.3
    noise = np.random.default_rng(3).normal(0, 3000, 2 * RATE)
    assert correlates(noise, EARCONS.get(name)) < 0.3


def test_correlates_edge_cases() -> None:
    earcon = EARCONS.listening
    assert correlates(np.zeros(RATE, np.int16), earcon) == 0.0  # digital silence
    assert correlates(earcon[:100], earcon) == 0.0  # signal shorter than the earcon
    assert correlates(earcon, np.zeros(0, np.int16)) == 0.0
    assert correlates(-earcon.astype(np.int32), earcon) > 0.99  # polarity does not matter


def test_duration_of_an_unknown_name_says_which_exist() -> None:
    with pytest.raises(KeyError, match="listening"):
        EARCONS.duration_s("beep")


def test_the_original_tone_helpers_still_work() -> None:
    pcm = error_tone()
    assert pcm.dtype == np.int16 and len(pcm) == 2 * 24000 * 140 // 1000
    assert np.array_equal(pcm, EARCONS.error)
    assert len(tone([440.0], each_ms=100)) == 2400
