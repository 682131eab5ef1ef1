"""omnid.audio against real PortAudio/ALSA (through `alsa_rig`) and the `wav:` backend.

Timing assertions are loose (a shared, noisy machine); sample assertions are exact where the path
is bit-exact (no resampling), correlations where it is not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from omnid.audio import (
    WIRE_IN,
    WIRE_OUT,
    AudioDeviceError,
    Microphone,
    PlaybackQueue,
    Speaker,
    list_devices,
    open_audio,
)
from omnid.audio.portaudio import PortAudioMicrophone, PortAudioSpeaker, negotiate
from omnid.audio.wav import WavMicrophone, WavSpeaker
from omnid.audio.wav_clock import WavClock
from tests.alsa_rig import AlsaFifoRig
from tests.harness import write_wav

Samples = npt.NDArray[np.int16]
BLOCK_MS = 20
MIC_BLOCK = WIRE_IN * BLOCK_MS // 1000  # 320
SPK_BLOCK = WIRE_OUT * BLOCK_MS // 1000  # 480


def tone(freq: float, seconds: float, rate: int, amp: float = 10_000) -> Samples:
    """A cosine (first sample at full amplitude, so its onset is the first non-zero sample)."""
    n = int(seconds * rate)
    return np.rint(amp * np.cos(2 * np.pi * freq * np.arange(n) / rate)).astype(np.int16)


def correlation(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b) + 1e-9))


def best_match(signal: Samples, ref: Samples, search: int = 30) -> tuple[float, int]:
    """Best correlation of `ref` against `signal` near the signal's onset, and where."""
    loud = np.nonzero(np.abs(signal.astype(np.int32)) > 0.3 * np.abs(ref).max())[0]
    assert len(loud), "reference never appears in the signal"
    best = (-1.0, -1)
    for start in range(max(0, int(loud[0]) - search), int(loud[0]) + search):
        segment = signal[start : start + len(ref)]
        if len(segment) == len(ref):
            best = max(best, (correlation(segment, ref), start))
    return best


class Recorder:
    """The callbacks the conversation thread would pass: append only, with arrival times."""

    def __init__(self) -> None:
        self.blocks: list[tuple[float, float, Samples]] = []  # (t given, arrival, block)
        self.events: list[tuple[str, float]] = []

    def on_mic_block(self, block: Samples, t: float) -> None:
        self.blocks.append((t, time.monotonic(), block))

    def on_speaker_event(self, kind: str, t: float) -> None:
        self.events.append((kind, t))

    def mic_samples(self) -> Samples:
        return np.concatenate([b for _, _, b in self.blocks])

    def wait_event(self, kind: str, count: int = 1, timeout: float = 5.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            times = [t for k, t in self.events if k == kind]
            if len(times) >= count:
                return times[count - 1]
            time.sleep(0.005)
        raise AssertionError(f"no {kind!r} event #{count} within {timeout} s: {self.events}")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[AlsaFifoRig]:
    with AlsaFifoRig(tmp_path, clock=time.monotonic) as r, r.in_process():
        yield r


def open_rig(rig: AlsaFifoRig, rec: Recorder, volume: float = 1.0) -> tuple[Microphone, Speaker]:
    return open_audio(
        rig.mic_device,
        rig.spk_device,
        block_ms=BLOCK_MS,
        on_mic_block=rec.on_mic_block,
        on_speaker_event=rec.on_speaker_event,
        volume=volume,
    )


# -- shared pieces, no device ---------------------------------------------------------------------


def test_playback_queue_bounds_splits_and_clears() -> None:
    queue = PlaybackQueue(10)
    out = np.zeros(10, dtype=np.int16)
    source = np.arange(7, dtype=np.int16)
    assert queue.write(source) == 7
    source[:] = -1  # the queue keeps its own copy
    assert queue.read_into(out[:5]) == 5 and list(out[:5]) == [0, 1, 2, 3, 4]
    assert queue.write(np.arange(10, 20, dtype=np.int16)) == 8  # bounded: 2 queued + 8 = 10
    assert queue.available == 10
    assert queue.read_into(out) == 10  # across the chunk boundary
    assert list(out) == [5, 6, 10, 11, 12, 13, 14, 15, 16, 17]
    assert queue.read_into(out) == 0 and queue.available == 0
    for _ in range(3):
        queue.write(np.ones(3, dtype=np.int16))
    assert queue.read_into(out[:4]) == 4  # one chunk and part of the next
    assert queue.clear() == 5 and queue.available == 0 and queue.read_into(out) == 0
    assert queue.write(np.full(4, 9, dtype=np.int16)) == 4  # nothing of the cleared part remains
    assert queue.read_into(out) == 4 and list(out[:4]) == [9, 9, 9, 9]


class _FakeMic(Microphone):
    def start(self) -> None:
        pass

    def suspend(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_resampled_capture_is_recut_to_exact_blocks(rate: int) -> None:
    rec = Recorder()
    mic = _FakeMic("fake", rate, block_ms=BLOCK_MS, on_mic_block=rec.on_mic_block)
    source = tone(440, 2.0, rate)
    device_block = rate * BLOCK_MS // 1000
    for i in range(0, len(source) - device_block + 1, device_block):
        mic._deliver(source[i : i + device_block], float(i))
    assert {len(b) for _, _, b in rec.blocks} == {MIC_BLOCK}
    assert abs(len(rec.blocks) - 100) <= 3  # resampler delay holds back at most a few blocks
    corr, _ = best_match(rec.mic_samples(), tone(440, 1.0, WIRE_IN))
    assert corr >= 0.99


def test_raising_mic_callback_does_not_stop_delivery() -> None:
    calls: list[int] = []

    def bad(block: Samples, t: float) -> None:
        calls.append(len(block))
        raise RuntimeError("consumer bug")

    mic = _FakeMic("fake", WIRE_IN, block_ms=BLOCK_MS, on_mic_block=bad)
    for i in range(3):
        mic._deliver(np.zeros(MIC_BLOCK, dtype=np.int16), float(i))
    assert calls == [MIC_BLOCK] * 3 and mic.last_block_t == 2.0


def test_negotiation_prefers_wire_rate_then_falls_back() -> None:
    def only(accepted: set[tuple[int, int]]) -> Callable[..., None]:
        def check(*, device: int, samplerate: int, channels: int, dtype: str) -> None:
            if (samplerate, channels) not in accepted:
                raise ValueError("Invalid sample rate")

        return check

    rates = (16_000, 48_000, 44_100, 24_000)
    assert negotiate(only({(16_000, 1), (48_000, 1)}), 0, rates, 2) == (16_000, 1)
    assert negotiate(only({(48_000, 1), (44_100, 1)}), 0, rates, 2) == (48_000, 1)
    assert negotiate(only({(16_000, 2), (48_000, 1)}), 0, rates, 2) == (16_000, 2)
    with pytest.raises(AudioDeviceError, match="no usable rate"):
        negotiate(only({(16_000, 2)}), 0, rates, 1)  # stereo-only, but a mono device?


# -- real PortAudio through the rig ---------------------------------------------------------------


def test_rig_negotiates_wire_rates_and_lists_devices(rig: AlsaFifoRig) -> None:
    rec = Recorder()
    mic, spk = open_rig(rig, rec)
    with mic, spk:
        assert (mic.device_rate, spk.device_rate) == (WIRE_IN, WIRE_OUT)
        assert (mic.name, spk.name) == (rig.mic_device, rig.spk_device)
        assert isinstance(mic, PortAudioMicrophone) and mic.channels == 1
        assert isinstance(spk, PortAudioSpeaker) and spk.channels == 1
    listed = {d["name"]: d for d in list_devices()}
    assert set(listed) >= {rig.mic_device, rig.spk_device}
    mic_info = listed[rig.mic_device]
    assert mic_info["hostapi"] == "ALSA" and mic_info["max_input_channels"] >= 1
    assert mic_info["input_rates"] == [16_000, 24_000, 44_100, 48_000]
    assert listed[rig.spk_device]["output_rates"] == [16_000, 24_000, 44_100, 48_000]


def test_list_devices_without_rig_matches_portaudio() -> None:
    import sounddevice as sd

    assert len(list_devices()) == len(sd.query_devices())  # [] on a machine with no card


def test_bad_device_names_say_what_exists(rig: AlsaFifoRig) -> None:
    rec = Recorder()
    with pytest.raises(AudioDeviceError) as info:
        open_rig_names("no_such_mic_zz", rig.spk_device, rec)
    assert "no_such_mic_zz" in str(info.value) and rig.mic_device in str(info.value)
    with pytest.raises(AudioDeviceError) as info:
        open_rig_names(rig.mic_device, "no_such_speaker_zz", rec)
    assert "no_such_speaker_zz" in str(info.value) and rig.spk_device in str(info.value)
    with pytest.raises(AudioDeviceError, match="Multiple input devices"):
        open_rig_names(f"omnitest {rig.id}", rig.spk_device, rec)  # matches both PCMs


def open_rig_names(mic: str, spk: str, rec: Recorder) -> tuple[Microphone, Speaker]:
    return open_audio(mic, spk, block_ms=BLOCK_MS, on_mic_block=rec.on_mic_block)


CHILD = """
import queue, sys, time, soxr
import numpy as np
from omnid.audio import open_audio
blocks = queue.Queue()
put = blocks.put
mic, spk = open_audio(sys.argv[1], sys.argv[2], block_ms=20, on_mic_block=lambda b, t: put(b))
up = soxr.ResampleStream(16000, 24000, 1, dtype="int16")
with mic, spk:
    mic.start()
    spk.start()
    end = time.monotonic() + float(sys.argv[3])
    # A 200 ms cushion: playback callbacks come 4 blocks at a time (see alsa_rig).
    spk.play(up.resample_chunk(np.concatenate([blocks.get() for _ in range(10)])))
    while time.monotonic() < end:
        try:
            spk.play(up.resample_chunk(blocks.get(timeout=0.1)))
        except queue.Empty:
            pass
"""


def test_rig_serves_a_subprocess_loopback(tmp_path: Path) -> None:
    """The integration-test shape: the daemon is another process that gets `rig.env`; here a
    loopback (mic → 24 kHz → speaker) that shows both pipes and the rig's clock mapping work."""
    with AlsaFifoRig(tmp_path) as rig:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, rig.mic_device, rig.spk_device, "1.5"],
            env={**os.environ, **rig.env},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert rig.wait_mic_reader(timeout=10)
            said = tone(440, 0.4, WIRE_IN)
            said_t = rig.say(said)
            _, err = child.communicate(timeout=20)
        finally:
            child.kill()
        assert child.returncode == 0, err
    out = rig.speaker_output()
    corr, start = best_match(out, tone(440, 0.35, WIRE_OUT))
    assert corr >= 0.9
    loopback = rig.speaker_time(start) - said_t
    assert 0.2 < loopback < 0.6, loopback  # the cushion + the pipeline


def test_mic_blocks_arrive_in_real_time_carrying_what_was_said(rig: AlsaFifoRig) -> None:
    rec = Recorder()
    mic, spk = open_rig(rig, rec)
    with mic, spk:
        mic.start()
        time.sleep(0.2)
        said = tone(440, 1.0, WIRE_IN)
        said_t = rig.say(said)
        window_start = time.monotonic()
        time.sleep(2.0)
        window_end = time.monotonic()
        time.sleep(0.1)
    in_window = [t for t, _, _ in rec.blocks if window_start <= t < window_end]
    rate = len(in_window) / (window_end - window_start)
    assert 45 <= rate <= 55, f"{rate:.1f} blocks/s"
    assert {len(b) for _, _, b in rec.blocks} == {MIC_BLOCK}
    corr, start = best_match(rec.mic_samples(), said)
    assert corr >= 0.9
    onset_block_t = rec.blocks[start // MIC_BLOCK][0]
    assert 0 <= onset_block_t - said_t < 0.1  # captured when the rig wrote it
    assert abs(mic.last_block_t - rec.blocks[-1][0]) < 1e-9


def test_speaker_plays_intact_with_events_and_silent_underrun(rig: AlsaFifoRig) -> None:
    rec = Recorder()
    mic, spk = open_rig(rig, rec)
    first, second = tone(1000, 0.3, WIRE_OUT), tone(700, 0.3, WIRE_OUT, amp=-8000)
    with mic, spk:
        spk.start()
        time.sleep(0.1)
        spk.play(first)
        rec.wait_event("drained")
        time.sleep(0.3)  # underrun: the callback must pad with silence
        spk.play(second)
        rec.wait_event("drained", 2)
        played = len(rig.speaker_output())
        assert rig.wait_speaker_samples(played + 8 * SPK_BLOCK, timeout=2)
    out = rig.speaker_output()
    assert [k for k, _ in rec.events] == ["started", "drained"] * 2
    started = [t for k, t in rec.events if k == "started"]
    drained = [t for k, t in rec.events if k == "drained"]
    assert 0.2 <= drained[0] - started[0] <= 0.45  # 0.3 s handed over, ±callback bursts
    loud = np.nonzero(out)[0]
    a = int(loud[0])
    b = a + len(first) + int(np.nonzero(out[a + len(first) :])[0][0])
    assert np.array_equal(out[a : a + len(first)], first)  # bit-exact at 24 kHz
    assert np.array_equal(out[b : b + len(second)], second)
    assert b - (a + len(first)) >= 0.25 * WIRE_OUT  # the gap is there ...
    rest = np.concatenate([out[:a], out[a + len(first) : b], out[b + len(second) :]])
    assert not rest.any()  # ... and it, like everything else, is exact silence


def test_flush_silences_from_the_next_callback(rig: AlsaFifoRig) -> None:
    rec = Recorder()
    mic, spk = open_rig(rig, rec)
    long_tone = tone(1000, 3.0, WIRE_OUT)
    with mic, spk:
        spk.start()
        spk.play(long_tone)
        rec.wait_event("started")
        time.sleep(0.5)
        queued = round(spk.queued_s * WIRE_OUT)
        spk.flush()
        flushed_t = time.monotonic()
        drained_t = rec.wait_event("drained")
        assert spk.queued_s == 0
        time.sleep(0.4)
    out = rig.speaker_output()
    loud = np.nonzero(out)[0]
    a, z = int(loud[0]), int(loud[-1])
    handed_before_flush = len(long_tone) - queued
    overshoot = (z + 1 - a) - handed_before_flush  # samples out after the flush, ≥ 0
    print(f"flush overshoot: {overshoot} samples; drained {1e3 * (drained_t - flushed_t):.0f} ms")
    assert 0 <= overshoot <= SPK_BLOCK
    assert np.array_equal(out[a : z + 1], long_tone[: z + 1 - a])  # what did play was intact
    assert 0 <= drained_t - flushed_t < 0.3


def test_volume_scales_in_float_and_never_wraps(rig: AlsaFifoRig) -> None:
    rec = Recorder()
    mic, spk = open_rig(rig, rec, volume=0.5)
    square = np.tile(np.r_[np.full(12, 32767), np.full(12, -32768)].astype(np.int16), 300)
    with mic, spk:
        spk.start()
        spk.play(square)
        rec.wait_event("drained")
        spk.volume = 1.5  # clamped to 1.0, applied from the next block
        assert spk.volume == 1.0
        time.sleep(0.1)
        spk.play(square)
        rec.wait_event("drained", 2)
        assert rig.wait_speaker_samples(len(rig.speaker_output()) + 8 * SPK_BLOCK, timeout=2)
    out = rig.speaker_output()
    a = int(np.nonzero(out)[0][0])
    half = out[a : a + len(square)]
    assert np.array_equal(half, np.rint(square * 0.5).astype(np.int16))  # 16384 / -16384
    b = a + len(square) + int(np.nonzero(out[a + len(square) :])[0][0])
    assert np.array_equal(out[b : b + len(square)], square)  # -32768 did not wrap


def test_48k_device_resamples_both_ways(tmp_path: Path) -> None:
    """Forced to 48 kHz (the rig accepts any rate, see alsa_rig): capture resampled to exact
    16 kHz blocks, playback resampled from 24 kHz, and resampler overshoot clipped, not wrapped."""
    rec = Recorder()
    rig = AlsaFifoRig(tmp_path, mic_rate=48_000, spk_rate=48_000, clock=time.monotonic)
    with rig, rig.in_process():
        mic = PortAudioMicrophone(
            rig.mic_device, block_ms=BLOCK_MS, on_mic_block=rec.on_mic_block, rates=(48_000,)
        )
        spk = PortAudioSpeaker(rig.spk_device, block_ms=BLOCK_MS, rates=(48_000,))
        square = np.tile(np.r_[np.full(20, 32767), np.full(20, -32768)].astype(np.int16), 300)
        with mic, spk:
            assert (mic.device_rate, spk.device_rate) == (48_000, 48_000)
            mic.start()
            spk.start()
            rig.say(tone(440, 1.0, 48_000))
            spk.play(tone(1000, 0.5, WIRE_OUT))
            spk.play(np.zeros(WIRE_OUT // 10, dtype=np.int16))
            spk.play(square, last=True)
            t0 = time.monotonic()
            time.sleep(1.5)
            t1 = time.monotonic()
    assert {len(b) for _, _, b in rec.blocks} == {MIC_BLOCK}
    rate = sum(t0 <= t < t1 for t, _, _ in rec.blocks) / (t1 - t0)
    assert 45 <= rate <= 55, f"{rate:.1f} blocks/s"
    corr, _ = best_match(rec.mic_samples(), tone(440, 0.9, WIRE_IN))
    assert corr >= 0.9
    out = rig.speaker_output()
    corr, start = best_match(out, tone(1000, 0.45, 48_000))
    assert corr >= 0.9
    sq = out[start + 48_000 // 2 + 2_400 :]  # from the middle of the silence between
    sq = sq[int(np.nonzero(np.abs(sq.astype(np.int32)) > 10_000)[0][0]) :][: 2 * len(square)]
    assert len(sq) == 2 * len(square)
    assert np.count_nonzero(np.abs(sq.astype(np.int32)) >= 32767) > 0.2 * len(sq)  # clipped
    steps = np.abs(np.diff(sq.astype(np.int32)))
    assert steps.max() < 50_000, f"wrapped: a step of {steps.max()}"  # a wrap steps ~65535


# -- the wav: backend ------------------------------------------------------------------------------


def read_wav(path: Path) -> tuple[Samples, int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy(), w.getframerate()


def test_wav_input_delivers_the_file_paced_then_silence(tmp_path: Path) -> None:
    rec = Recorder()
    data = np.random.default_rng(7).integers(-20_000, 20_000, 8_000).astype(np.int16)  # 0.5 s
    write_wav(tmp_path / "in.wav", data)
    mic, spk = open_audio(
        f"wav:{tmp_path / 'in.wav'}",
        f"wav:{tmp_path / 'out.wav'}",
        block_ms=BLOCK_MS,
        on_mic_block=rec.on_mic_block,
    )
    with mic, spk:
        started = time.monotonic()
        mic.start()
        spk.start()
        time.sleep(1.0)
        assert isinstance(mic, WavMicrophone) and mic.ended
    closed = time.monotonic()
    count = len(rec.blocks)
    # 1.0 s of 20 ms blocks: never more than were due by the time the devices closed (exact: a
    # tick never comes early), at most a few fewer (a late clock catches up).
    assert 45 <= count <= (closed - started) / (BLOCK_MS / 1000), count
    assert {len(b) for _, _, b in rec.blocks} == {MIC_BLOCK}
    got = rec.mic_samples()
    assert np.array_equal(got[: len(data)], data) and not got[len(data) :].any()
    stamps = np.array([t for t, _, _ in rec.blocks])
    assert np.allclose(np.diff(stamps), BLOCK_MS / 1000, atol=1e-6)  # absolute schedule
    # The first block ends one block after the clock started, which is after `started` (exact)
    # and soon after, by however long a busy machine takes to start the clock's thread.
    assert started + BLOCK_MS / 1000 <= stamps[0] < started + BLOCK_MS / 1000 + 0.1
    lateness = np.array([arrival - t for t, arrival, _ in rec.blocks])
    # Never early; typically late by a thread wake-up (well under 1 ms), and by less than a
    # block even on a busy machine (median): a clock one block behind would fail this.
    assert lateness.min() >= 0 and np.median(lateness) < BLOCK_MS / 1000


def test_wav_input_converts_rate_and_channels(tmp_path: Path) -> None:
    left = tone(440, 0.5, 44_100)
    write_wav(tmp_path / "st.wav", np.column_stack([left, left]).ravel(), 44_100, channels=2)
    mic = WavMicrophone(
        f"wav:{tmp_path / 'st.wav'}",
        block_ms=BLOCK_MS,
        on_mic_block=lambda b, t: None,
        clock=WavClock(BLOCK_MS),  # never started
    )
    assert mic.samples is not None  # not 16 kHz mono: converted at open, not read as it plays
    assert abs(len(mic.samples) - 8_000) <= 1
    assert correlation(mic.samples[100:7_900], tone(440, 0.5, WIRE_IN)[100:7_900]) >= 0.99
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8_000)
        w.writeframes(bytes(800))
    for bad in ("8bit.wav", "missing.wav"):
        with pytest.raises(AudioDeviceError, match=bad):
            open_audio(f"wav:{tmp_path / bad}", "wav:x", block_ms=20, on_mic_block=print)


def test_wav_shared_clock_puts_a_click_where_it_was_played(tmp_path: Path) -> None:
    """Both `wav:`: input block k is delivered at the end of its time, then the output pulled in
    the same tick. A reaction to block k sounds from the moment it was made, to the sample:
    after the block it reacts to, never before, whatever the block size."""
    write_wav(tmp_path / "in.wav", np.zeros(WIRE_IN, dtype=np.int16))
    click = np.full(24, 20_000, dtype=np.int16)
    events: list[tuple[str, float]] = []
    blocks: list[float] = []
    played: list[float] = []
    spk_box: list[Speaker] = []

    def on_block(block: Samples, t: float) -> None:
        blocks.append(t)
        if len(blocks) == 26:  # input block 25: react within the tick
            played.append(time.monotonic())
            spk_box[0].play(click)

    mic, spk = open_audio(
        f"wav:{tmp_path / 'in.wav'}",
        f"wav:{tmp_path / 'out.wav'}",
        block_ms=BLOCK_MS,
        on_mic_block=on_block,
        on_speaker_event=lambda k, t: events.append((k, t)),
    )
    spk_box.append(spk)
    with mic, spk:
        mic.start()
        spk.start()
        time.sleep(0.8)
        mic.close()
    out, rate = read_wav(tmp_path / "out.wav")
    assert rate == WIRE_OUT
    onset = int(np.nonzero(out)[0][0])
    t0 = blocks[0] - BLOCK_MS / 1000  # the file's sample 0
    assert abs(onset - (played[0] - t0) * WIRE_OUT) <= 2  # when play() was called, to the sample
    assert onset >= 26 * SPK_BLOCK  # not before the input it reacts to had been heard
    assert np.array_equal(out[onset : onset + 24], click)
    assert not out[onset + 24 :].any()
    assert len(out) % SPK_BLOCK == 0 and abs(len(out) // SPK_BLOCK - len(blocks)) <= 1
    assert [k for k, _ in events] == ["started", "drained"]
    assert events[0][1] == pytest.approx(t0 + onset / WIRE_OUT, abs=1e-4)
    assert events[1][1] == pytest.approx(t0 + (onset + 24) / WIRE_OUT, abs=0.021)


def test_wav_output_header_is_valid_while_running(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", np.zeros(160, dtype=np.int16))
    path = tmp_path / "out.wav"
    mic, spk = open_audio(
        f"wav:{tmp_path / 'in.wav'}", f"wav:{path}", block_ms=BLOCK_MS, on_mic_block=print
    )
    with mic, spk:
        with wave.open(str(path), "rb") as w:  # valid from open, before any audio
            assert (w.getframerate(), w.getnframes()) == (WIRE_OUT, 0)
        spk.start()
        assert isinstance(spk, WavSpeaker)
        spk.play(tone(500, 2.0, WIRE_OUT))
        time.sleep(1.3)
        running, _ = read_wav(path)
        on_disk = (os.path.getsize(path) - 44) // 2
    assert WIRE_OUT <= len(running) <= on_disk  # header updated within the last second
    final, _ = read_wav(path)
    assert len(final) == (os.path.getsize(path) - 44) // 2 >= len(running)


def test_wav_with_a_sound_card_runs_each_on_its_own_clock(rig: AlsaFifoRig) -> None:
    rec = Recorder()
    path = rig.dir / "out.wav"
    mic, spk = open_audio(
        rig.mic_device, f"wav:{path}", block_ms=BLOCK_MS, on_mic_block=rec.on_mic_block
    )
    assert isinstance(mic, PortAudioMicrophone) and isinstance(spk, WavSpeaker)
    with mic, spk:
        started = time.monotonic()
        spk.start()  # the file's clock runs without the microphone ...
        time.sleep(0.5)
        mic.start()  # ... and the microphone runs on the rig's pace
        time.sleep(0.5)
        frames = (os.path.getsize(path) - 44) // 2
        elapsed = time.monotonic() - started
    # The file never runs ahead of real time (exact); it lags by the thread's start and a late
    # tick at most, a few blocks on a busy machine. Driven by the microphone instead, it would
    # be the first half second (25 blocks) short.
    assert elapsed * WIRE_OUT - 10 * SPK_BLOCK <= frames <= elapsed * WIRE_OUT
    assert 20 <= len(rec.blocks) <= 30


def test_wav_speaker_started_late_pads_to_the_shared_clock(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", np.zeros(160, dtype=np.int16))
    path = tmp_path / "out.wav"
    ticks: list[float] = []
    mic, spk = open_audio(
        f"wav:{tmp_path / 'in.wav'}",
        f"wav:{path}",
        block_ms=BLOCK_MS,
        on_mic_block=lambda b, t: ticks.append(t),
    )
    with mic, spk:
        mic.start()
        time.sleep(0.3)
        joined = (len(ticks), 0)  # microphone ticks so far: the clock's count, give or take one
        spk.start()
        spk.play(np.full(10, 1000, dtype=np.int16))
        joined = (joined[0], len(ticks))
        time.sleep(0.2)
    out, _ = read_wav(path)
    onset = int(np.nonzero(out)[0][0])
    # The silence written at start() is the ticks the clock had made; the sound then goes into
    # the block in progress, from the moment it was played (one more, should a tick come between
    # start() and play()). On the clock's own count, however long the 0.3 s sleep really took.
    assert joined[0] - 1 <= onset // SPK_BLOCK <= joined[1] + 1
    print(f"late speaker: sound at {onset / WIRE_OUT:.3f} s of the file (started after 0.3 s)")
    assert abs(len(out) // SPK_BLOCK - len(ticks)) <= 1
