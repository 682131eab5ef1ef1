"""The journal records through the real native protocol (issue 6, acceptance 3).

`omnid run` talks to the simulator and is driven over its control socket as in the other turn
tests, but here it runs as under systemd: its stdout/stderr are a stream whose device:inode is in
$JOURNAL_STREAM, so it picks `JournalHandler`, and libsystemd sends every record as a datagram to
/run/systemd/journal/socket. That path belongs to the host, so tests/journal_capture.py binds it
inside a private mount namespace (`unshare --mount`, a tmpfs over /run) and parses the datagrams
in journald's native format. What we check is what journald would store: the `usage` record's
OMNID_* fields against the simulator's own `response.done` numbers on the wire.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from omnid.control import ctl
from tests.harness import ROOT, Simulator, clean_env, make_key, wav_devices, write_config
from tests.secret_guard import assert_no_secret
from tests.test_turn_wav import LEAD_S, speech, write_input

CAPTURE = ROOT / "tests" / "journal_capture.py"
# journald keeps a field only if its name is this (journal_field_valid(): upper case, digits and
# underscores, not starting with a digit or underscore, at most 64 characters).
FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def _namespace_problem() -> str | None:
    """Why a private mount namespace cannot be made here, or None."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare(1) is not installed (util-linux)"
    cmd = [unshare, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        cmd.append("--map-root-user")
    probe = subprocess.run(
        [*cmd, "mount", "-t", "tmpfs", "tmpfs", "/run"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"{' '.join(cmd)} mount -t tmpfs tmpfs /run failed: {probe.stderr.strip()}"
    return None


pytestmark = pytest.mark.skipif(
    (why := _namespace_problem()) is not None, reason=f"no private mount namespace: {why}"
)


def datagrams(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def records(path: Path, event: str) -> list[dict[str, Any]]:
    return [d["fields"] for d in datagrams(path) if d.get("fields", {}).get("OMNID_EVENT") == event]


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def capture(out: Path, stdio: Path, *cmd: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CAPTURE), "--out", str(out), "--stdio", str(stdio), "--", *cmd],
        cwd=ROOT,
        env=clean_env(),
    )


def test_usage_record_reaches_the_journal_socket_with_the_services_numbers(
    tmp_path: Path,
) -> None:
    key = make_key()
    seconds = 2.0
    write_input(tmp_path / "mic.wav", speech(seconds))
    sim = Simulator(tmp_path, key)
    config = write_config(
        tmp_path,
        sim.url,
        key,
        wav_devices(tmp_path),
    )
    out, stdio, sock = tmp_path / "journal.jsonl", tmp_path / "stdio", tmp_path / "control.sock"
    proc = capture(out, stdio, sys.executable, "-m", "omnid.cli", "run", "--config", str(config))
    try:

        def started() -> float | None:
            for d in datagrams(out):
                message = d.get("fields", {}).get("MESSAGE", "")
                if "started at wall" in message:
                    return float(message.rsplit("started at wall", 1)[1].split()[0])
            return None

        wall0 = wait_for(started, "the audio-open log line in the journal")
        wait_for(lambda: sock.exists() and ctl(sock, "status").get("connected"), "the session")
        assert ctl(sock, "press")["ok"]
        time.sleep(max(0.0, wall0 + LEAD_S + seconds + 0.3 - time.time()))
        assert ctl(sock, "release")["ok"]
        wait_for(lambda: records(out, "turn"), "the turn record")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        sim.stop()
    assert code == 0

    got = datagrams(out)
    assert got and all("error" not in d for d in got), [d.get("error") for d in got]
    assert {d["via"] for d in got} == {"datagram"}  # small records: no memfd needed
    for d in got:
        f = d["fields"]
        assert f.get("MESSAGE"), f
        assert f.get("PRIORITY") in {str(p) for p in range(8)}, f
        assert f.get("SYSLOG_IDENTIFIER") == "omnid"
        assert all(FIELD_NAME.fullmatch(k) for k in f if k.startswith("OMNID_")), f
        # The key in no datagram, not even a 12-character piece of it.
        assert_no_secret(base64.b64decode(d["raw"]).decode("utf-8", "replace"), key)
    # Under the journal nothing goes to the stream: the records are not duplicated as text.
    stream = stdio.read_text()
    assert "OMNID_EVENT" not in stream
    assert_no_secret(stream, key)

    sent = [r for r in sim.wire("send") if r["event"]["type"] == "response.done"]
    assert len(sent) == 1
    response = sent[0]["event"]["response"]
    u = response["usage"]
    inp, outp = u.get("input_tokens_details", {}), u.get("output_tokens_details", {})
    expected = {
        "OMNID_MODEL": "qwen3.5-omni-plus-realtime",
        "OMNID_SESSION": sent[0]["session"],
        "OMNID_RESPONSE": response["id"],
        "OMNID_INPUT_TOKENS": u["input_tokens"],
        "OMNID_OUTPUT_TOKENS": u["output_tokens"],
        "OMNID_TOTAL_TOKENS": u["total_tokens"],
        "OMNID_INPUT_TEXT_TOKENS": inp.get("text_tokens", 0),
        "OMNID_INPUT_AUDIO_TOKENS": inp.get("audio_tokens", 0),
        "OMNID_INPUT_IMAGE_TOKENS": inp.get("image_tokens", 0),
        "OMNID_OUTPUT_TEXT_TOKENS": outp.get("text_tokens", 0),
        "OMNID_OUTPUT_AUDIO_TOKENS": outp.get("audio_tokens", 0),
        "OMNID_SEARCH_COUNT": u.get("plugins", {}).get("search", {}).get("count", 0),
    }
    (record,) = records(out, "usage")
    assert {k: record.get(k) for k in expected} == {k: str(v) for k, v in expected.items()}
    assert float(record["OMNID_FIRST_AUDIO_MS"]) > 0
    assert u["input_tokens_details"]["audio_tokens"] > 0  # the turn's audio really was billed
    assert record["PRIORITY"] == "6"  # info

    (turn,) = records(out, "turn")
    assert turn["OMNID_OUTCOME"] == "answered" and turn["OMNID_MODE"] == "manual"
    assert turn["OMNID_RESPONSE"] == response["id"]
    (opened,) = records(out, "session_open")
    assert opened["OMNID_SESSION"] == sent[0]["session"]


def test_the_capture_reads_binary_fields_and_memfd_datagrams(tmp_path: Path) -> None:
    """The parser against libsystemd's other two encodings: a value with a newline goes as
    `KEY\\n` + length + bytes, and a datagram too big for the socket goes as a memfd."""
    out, stdio = tmp_path / "journal.jsonl", tmp_path / "stdio"
    big = "x" * 12_000_000  # past libsystemd's 8 MiB datagram: a memfd
    send = (
        "from systemd import journal\n"
        "journal.send('two\\nlines', OMNID_EVENT='probe', SMALL='1')\n"
        f"journal.send('big', OMNID_EVENT='probe', BIG='x' * {len(big)})\n"
    )
    proc = capture(out, stdio, sys.executable, "-c", send)
    assert proc.wait(20) == 0
    first, second = records(out, "probe")
    assert first["MESSAGE"] == "two\nlines" and first["SMALL"] == "1"
    assert second["BIG"] == big and second["MESSAGE"] == "big"
    assert [d["via"] for d in datagrams(out)] == ["datagram", "memfd"]
