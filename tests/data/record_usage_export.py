"""Record `usage-export.json`: real turns, a real journald, a real `journalctl -o json`.

    .venv/bin/python tests/data/record_usage_export.py        # as root, or with user namespaces

Outside: runs this script again (`--inner`) under tests/journal_capture.py in journald mode, i.e.
in a private mount namespace with the real systemd-journald listening on
/run/systemd/journal/socket, and keeps what `journalctl -o json SYSLOG_IDENTIFIER=omnid` exports.

Inside: starts `omnid simulate --pace 1 --record …` and runs `omnid run` twice (two sessions) with
`wav:` devices, a `files` camera (one 640×480 picture, sent while the button is held) and its
stdout/stderr on the journal stream ($JOURNAL_STREAM matches), so the daemon logs through
JournalHandler over the native protocol, exactly as under systemd. The turns, driven over the
control socket like `omnid ctl` does:

    run 1: a 2.0 s utterance, answered; a 3.0 s utterance, answered
    run 2: a 2.5 s utterance, answered; a 3.0 s utterance, tapped 0.8 s into the answer: cancelled

Kept: the export (`usage-export.json`) and, from the simulator's wire record, the `response.done`
events it sent (`usage-sim-response-done.jsonl`, lines unchanged), which tests/test_usage.py uses
as the independent truth for the token totals. Audio appends are left out: they are large and
carry no usage.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from omnid.control import ctl  # noqa: E402
from tests.harness import Simulator, clean_env, make_key, write_config  # noqa: E402
from tests.test_turn_wav import IN_RATE, speech  # noqa: E402

LEAD_S = 1.0
RUNS = [[(2.0, "answer"), (3.0, "answer")], [(2.5, "answer"), (3.0, "tap")]]
JOURNAL_DIR = "/run/log/journal"


def _journal(*match: str) -> list[dict[str, str]]:
    """What the private journald holds so far (inside the namespace)."""
    done = subprocess.run(
        ["journalctl", "-o", "json", "--no-pager", "-D", JOURNAL_DIR, *match],
        capture_output=True,
        text=True,
        check=False,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise SystemExit(f"record_usage_export: timed out waiting for {what}")


def _mic(path: Path, turns: list[tuple[float, str]]) -> list[tuple[float, float]]:
    """The microphone file: lead silence, each utterance, then room for its answer (the simulator
    answers with the utterance itself, paced in real time). Returns (start, end) per utterance."""
    pcm, spans, t = [np.zeros(int(LEAD_S * IN_RATE), np.int16)], [], LEAD_S
    for seconds, _action in turns:
        pcm.append(speech(seconds))
        spans.append((t, t + seconds))
        gap = seconds + 3.0
        pcm.append(np.zeros(int(gap * IN_RATE), np.int16))
        t += seconds + gap
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(IN_RATE)
        w.writeframes(np.concatenate(pcm).tobytes())
    return spans


def _camera(tmp: Path) -> Path:
    """A `files` camera with one 640×480 picture: sent (at most once a second) while the button is
    held, so the recording has image tokens too."""
    from PIL import Image

    path = tmp / "camera"
    if not path.exists():
        path.mkdir()
        ramp = np.linspace(0, 255, 640, dtype=np.uint8)
        Image.fromarray(np.stack([np.tile(ramp, (480, 1))] * 3, axis=-1)).save(path / "scene.jpg")
    return path


def _run_daemon(tmp: Path, sim_url: str, key: str, n: int, turns: list[tuple[float, str]]) -> None:
    mic, spk = tmp / f"mic{n}.wav", tmp / f"spk{n}.wav"
    spans = _mic(mic, turns)
    config = write_config(
        tmp,
        sim_url,
        key,
        f'[audio]\ninput_device = "wav:{mic}"\noutput_device = "wav:{spk}"\n'
        f'[camera]\nenabled = true\nsource = "files"\npath = "{_camera(tmp)}"\n',
    )
    sock = tmp / "control.sock"
    env = clean_env(JOURNAL_STREAM=os.environ["JOURNAL_STREAM"])
    # stdout/stderr inherited: they are the journal stream, so the daemon picks JournalHandler.
    daemon = subprocess.Popen([sys.executable, "-m", "omnid.cli", "run", "--config", str(config)],
                              env=env, cwd=ROOT)  # fmt: skip
    try:
        pid = str(daemon.pid)

        def started() -> float | None:
            for e in _journal(f"_PID={pid}"):
                if "started at wall" in e.get("MESSAGE", ""):
                    return float(e["MESSAGE"].rsplit("started at wall", 1)[1].split()[0])
            return None

        wall0 = _wait(started, "the audio streams")
        _wait(lambda: sock.exists() and ctl(sock, "status").get("connected"), "the session")
        for i, ((start, end), (_seconds, action)) in enumerate(zip(spans, turns, strict=True)):
            time.sleep(max(0.0, wall0 + start - 0.2 - time.time()))
            assert ctl(sock, "press")["ok"]
            time.sleep(max(0.0, wall0 + end + 0.3 - time.time()))
            assert ctl(sock, "release")["ok"]
            if action == "tap":
                _wait(lambda: ctl(sock, "status")["state"] == "speaking", "the answer")
                time.sleep(0.8)
                assert ctl(sock, "tap")["ok"]
            turns_seen = functools.partial(_journal, f"_PID={pid}", "OMNID_EVENT=turn")
            _wait(lambda: len(turns_seen()) > i, f"turn {i + 1} of run {n}")  # noqa: B023
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0, "the daemon did not stop cleanly"


def inner(tmp: Path) -> None:
    key = make_key()
    (tmp / "key.txt").write_text(key)  # for the outer check that the key is nowhere in the export
    sim = Simulator(tmp, key, "--pace", "1.0")
    try:
        for n, turns in enumerate(RUNS, 1):
            _run_daemon(tmp, sim.url, key, n, turns)
    finally:
        sim.stop()


def outer(out_dir: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="omnid-usage-export-"))
    export = tmp / "export.json"
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "journal_capture.py"), "--journald", str(export),
         "--match", "SYSLOG_IDENTIFIER=omnid", "--stdio", str(tmp / "stdio.log"), "--",
         sys.executable, str(Path(__file__).resolve()), "--inner", str(tmp)],
        check=True, cwd=ROOT,
    )  # fmt: skip
    key = (tmp / "key.txt").read_text()
    text = export.read_text()
    assert key not in text and key not in (tmp / "stdio.log").read_text(), "the key leaked"
    done = [
        line
        for line in (tmp / "sim-record.jsonl").read_text().splitlines()
        if '"response.done"' in line
        and json.loads(line).get("event", {}).get("type") == "response.done"
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "usage-export.json").write_text(text)
    (out_dir / "usage-sim-response-done.jsonl").write_text("\n".join(done) + "\n")
    events = [json.loads(line).get("OMNID_EVENT") for line in text.splitlines()]
    print(
        f"record_usage_export: {len(text.splitlines())} journal entries "
        f"({events.count('usage')} usage, {events.count('turn')} turn, "
        f"{events.count('session_open')} session_open), {len(done)} response.done → {out_dir}"
    )
    shutil.rmtree(tmp)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out-dir", type=Path, default=HERE)
    p.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        inner(args.inner)
    else:
        outer(args.out_dir)


if __name__ == "__main__":
    main()
