"""Microphone and speaker by name: sound cards through PortAudio, or `wav:PATH` files.

As gpiozero does with its pins, one small base (`base.py`) and one file per backend
(`portaudio.py`, `wav.py`); the factory picks the backend from the name. The PortAudio backend is
imported only when a sound card is named, so the `wav:` backend (demo, tests) works on a machine
without libportaudio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omnid.audio.base import (
    WIRE_IN,
    WIRE_OUT,
    AudioDeviceError,
    MicCallback,
    Microphone,
    PlaybackQueue,
    Speaker,
    SpeakerEventCallback,
    output_block,
)
from omnid.audio.wav import PREFIX as WAV_PREFIX
from omnid.audio.wav import WavMicrophone, WavSpeaker
from omnid.audio.wav_clock import WavClock

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "WIRE_IN",
    "WIRE_OUT",
    "AudioDeviceError",
    "MicCallback",
    "Microphone",
    "PlaybackQueue",
    "Speaker",
    "SpeakerEventCallback",
    "list_devices",
    "open_audio",
    "open_microphone",
]


def _portaudio() -> ModuleType:
    try:
        from omnid.audio import portaudio
    except OSError as exc:  # sounddevice raises OSError when libportaudio2 is missing
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}); install libportaudio2"
        ) from None
    return portaudio


def open_audio(
    input_device: str,
    output_device: str,
    *,
    block_ms: int,
    on_mic_block: MicCallback,
    on_speaker_event: SpeakerEventCallback | None = None,
    volume: float = 1.0,
) -> tuple[Microphone, Speaker]:
    """Open (not start) both devices; raise AudioDeviceError naming the device and what exists.

    Two `wav:` devices share one clock, so the output file's timeline is the input's; a `wav:`
    device paired with a sound card gets its own clock. A sound card's speaker block is
    `block_ms` up to 20 ms, and 20 (or 10) ms beyond (`base.output_block`).
    """
    if block_ms <= 0:
        raise ValueError(f"block_ms must be positive, not {block_ms}")
    in_wav = input_device.startswith(WAV_PREFIX)
    out_wav = output_device.startswith(WAV_PREFIX)
    # A sound card's speaker takes a block of at most 20 ms (`output_block`); a `wav:` speaker on
    # the microphone's clock keeps the microphone's cadence: where its sound starts and where a
    # flush cuts it are exact to the sample whatever the block, and nothing is ever handed over
    # that could not be dropped, so a smaller block would only wake the clock more often.
    shared = WavClock(block_ms, block_ms) if in_wav and out_wav else None
    spk_block_ms = block_ms if shared else output_block(block_ms)

    mic = open_microphone(input_device, block_ms=block_ms, on_mic_block=on_mic_block, clock=shared)
    try:
        spk: Speaker
        if out_wav:
            spk = WavSpeaker(
                output_device,
                block_ms=spk_block_ms,
                clock=shared or WavClock(spk_block_ms),
                on_speaker_event=on_speaker_event,
                volume=volume,
            )
        else:
            spk = _portaudio().PortAudioSpeaker(
                output_device,
                block_ms=spk_block_ms,
                on_speaker_event=on_speaker_event,
                volume=volume,
            )
    except BaseException:
        mic.close()
        raise
    return mic, spk


def open_microphone(
    input_device: str,
    *,
    block_ms: int,
    on_mic_block: MicCallback,
    clock: WavClock | None = None,
) -> Microphone:
    """Open (not start) the microphone alone, as `open_audio` does (`omnid wake-test` needs no
    speaker). A `wav:` input runs on `clock`, or on a clock of its own."""
    if block_ms <= 0:
        raise ValueError(f"block_ms must be positive, not {block_ms}")
    if input_device.startswith(WAV_PREFIX):
        return WavMicrophone(
            input_device,
            block_ms=block_ms,
            on_mic_block=on_mic_block,
            clock=clock or WavClock(block_ms),
        )
    mic: Microphone = _portaudio().PortAudioMicrophone(
        input_device, block_ms=block_ms, on_mic_block=on_mic_block
    )
    return mic


def list_devices() -> list[dict[str, Any]]:
    """PortAudio devices for `omnid devices`: index, name, hostapi, max input/output channels,
    default_samplerate, and which of 16000/24000/44100/48000 each direction accepts
    (input_rates, output_rates). An empty list when there are none."""
    devices: list[dict[str, Any]] = _portaudio().list_devices()
    return devices
