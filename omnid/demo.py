"""`omnid demo`: the whole daemon against the built-in simulator, audio from and to WAV files.

A newcomer sees a real turn with no key and no hardware: the simulator runs on a free loopback
port, the daemon's microphone is the bundled spoken sample (`wav:` device, paced in real time),
its speaker is a WAV file, and the demo presses and releases around the speech like a person
holding the button would. Nothing here is a shortcut: it is `omnid run` with different devices.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from omnid import events as ev
from omnid.config import ConfigError, load_config
from omnid.daemon import Daemon
from omnid.models import WIRE_INPUT_RATE, WIRE_OUTPUT_RATE
from omnid.supervisor import Journal

log = logging.getLogger("omnid.demo")

LEAD_S = 0.5  # silence before the speech, so the press visibly precedes it
TAIL_S = 0.4  # held a little after the speech ends, as people do
TURN_TIMEOUT_S = 30.0


def bundled_sample() -> Path:
    return Path(__file__).resolve().parent / "data" / "sample.wav"


def _read_wav(path: Path) -> np.ndarray:
    """Mono int16 at 16 kHz; other rates and channel counts are converted."""
    import soxr

    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"omnid demo: {path}: only 16-bit PCM WAV files are supported")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, channels)[:, 0]
    if rate != WIRE_INPUT_RATE:
        pcm = soxr.resample(pcm, rate, WIRE_INPUT_RATE).astype(np.int16)
    return pcm


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def _speech_end_s(pcm: np.ndarray) -> float:
    """Where the speech stops: the last 20 ms frame above 5 % of the peak level."""
    frame = WIRE_INPUT_RATE // 50
    n = len(pcm) // frame
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(pcm[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))
    loud = np.nonzero(rms > 0.05 * rms.max())[0]
    return float((loud[-1] + 1) * frame / WIRE_INPUT_RATE) if len(loud) else 0.0


def run_demo(mode: str, input_wav: Path | None, output_wav: Path) -> int:
    from omnid.simulator import start_in_thread

    speech = _read_wav(input_wav or bundled_sample())
    work = Path(tempfile.mkdtemp(prefix="omnid-demo-"))
    lead = np.zeros(int(LEAD_S * WIRE_INPUT_RATE), dtype=np.int16)
    mic_wav = work / "mic.wav"
    _write_wav(mic_wav, np.concatenate([lead, speech]), WIRE_INPUT_RATE)
    release_at = LEAD_S + _speech_end_s(speech) + TAIL_S

    key = "sk-test-demo-" + secrets.token_hex(12)  # a fresh throwaway key for the simulator
    sim = start_in_thread(api_key=key)
    key_file = work / "key"
    key_file.write_text(key)
    key_file.chmod(0o600)
    config = work / "omnid.toml"
    config.write_text(
        f'[api]\nurl = "{sim.url}"\napi_key_file = "{key_file}"\n'
        f'[session]\nmode = "{mode}"\n'
        f'[audio]\ninput_device = "wav:{mic_wav}"\noutput_device = "wav:{output_wav}"\n'
        f'[control]\nsocket = "{work / "control.sock"}"\n'
        "[log]\ntranscripts = true\n"  # so the turn record carries the assistant's words
    )
    os.environ.pop("CREDENTIALS_DIRECTORY", None)  # the demo's own key file must be the one used
    try:
        cfg = load_config(config, require_api_key=True)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"omnid demo: config: {problem}")
        return 78

    records: dict[str, dict[str, Any]] = {}
    turn_done = threading.Event()

    def listen(event: str, fields: dict[str, Any]) -> None:
        records[event] = fields
        if event == "turn":
            turn_done.set()

    journal = Journal()
    journal.listen(listen)
    daemon = Daemon(cfg, journal)
    print(f"omnid demo: simulator on {sim.url} ({mode} mode)")
    daemon.open()
    started = time.monotonic()
    loop = threading.Thread(target=daemon.run, name="conversation", daemon=True)
    loop.start()
    try:
        if mode == "manual":
            daemon.post(ev.Press("demo"))
            time.sleep(max(0.0, started + release_at - time.monotonic()))
            daemon.post(ev.Release("demo"))
        answered = turn_done.wait(TURN_TIMEOUT_S)
        time.sleep(0.3)  # let the last reply block reach the WAV
    finally:
        daemon.post(ev.Stop("demo finished"))
        loop.join(5)
        daemon.close()
        sim.stop()
    return _report(records, answered, speech, output_wav)


def _report(
    records: dict[str, dict[str, Any]], answered: bool, speech: np.ndarray, output_wav: Path
) -> int:
    turn = records.get("turn", {})
    if not answered or turn.get("OMNID_OUTCOME") not in ("answered", "retried"):
        print(f"omnid demo: no answer (turn: {turn or 'none'}); see the log above")
        return 1
    usage = records.get("usage", {})
    with wave.open(str(output_wav), "rb") as w:
        reply = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    voiced = np.count_nonzero(np.abs(reply) > 64) / WIRE_OUTPUT_RATE
    print(f"you said:    {len(speech) / WIRE_INPUT_RATE:.1f} s of speech")
    print(f"assistant:   {turn.get('OMNID_ASSISTANT_TEXT', '')}".rstrip())
    print(
        f"usage:       {usage.get('OMNID_TOTAL_TOKENS')} tokens "
        f"(input {usage.get('OMNID_INPUT_TOKENS')}: audio {usage.get('OMNID_INPUT_AUDIO_TOKENS')}, "
        f"text {usage.get('OMNID_INPUT_TEXT_TOKENS')}; output {usage.get('OMNID_OUTPUT_TOKENS')}: "
        f"audio {usage.get('OMNID_OUTPUT_AUDIO_TOKENS')}, "
        f"text {usage.get('OMNID_OUTPUT_TEXT_TOKENS')})"
    )
    start = (
        f"release→commit {turn.get('OMNID_COMMIT_MS')} ms, commit"
        if turn.get("OMNID_MODE") == "manual"
        else "speech_stopped"
    )
    print(
        f"latency:     {start}→first audio {turn.get('OMNID_FIRST_AUDIO_MS')} ms, "
        f"first audio→speaker {turn.get('OMNID_PLAY_MS')} ms"
    )
    print(f"reply WAV:   {output_wav.resolve()} ({voiced:.1f} s of sound)")
    return 0
