"""Two defects seen in the field, end to end.

1. A stalled network (every packet dropped, as when Wi-Fi stalls) used to block the conversation
   thread inside `socket.send` once the camera's frames had filled the socket buffer: no watchdog
   ping for 32 s, and systemd would have killed the daemon. Reproduced here as it was found: the
   daemon and the simulator run in a private network namespace, where an nftables rule drops
   every packet of their connection for 40 s.
2. An answer cut off by a dropped connection was neither finished nor reported: playback stopped
   mid-sentence, no tone, and the turn was recorded as `cancelled` only when the next turn began.
"""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnid.earcons import Earcons, correlates
from tests.harness import (
    Daemon,
    NotifySocket,
    Process,
    Simulator,
    clean_env,
    make_key,
    wav_devices,
    write_config,
    write_wav,
)
from tests.test_handsfree import VAD, timeline
from tests.test_turn_wav import IN_RATE, OUT_RATE, best_correlation, read_wav, speech

BLACKHOLE_S = 40.0


class Namespace:
    """A private network namespace (its own loopback), held open by a sleeping process, and an
    nftables table in it that can drop every packet to and from one TCP port."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        self.path = f"/proc/{self.holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while not os.path.exists(self.path) or os.readlink(self.path) == os.readlink(
            "/proc/self/ns/net"
        ):
            assert time.monotonic() < deadline, "the namespace did not appear"
            time.sleep(0.01)
        self.run("ip", "link", "set", "lo", "up")
        self.run("nft", "add table inet blackhole")
        self.run("nft", "add chain inet blackhole out { type filter hook output priority 0 ; }")

    @property
    def wrap(self) -> tuple[str, ...]:
        return ("nsenter", f"--net={self.path}", "--")

    def run(self, *argv: str) -> None:
        subprocess.run([*self.wrap, *argv], check=True, capture_output=True)

    def drop(self, port: int) -> None:
        self.run("nft", f"add rule inet blackhole out tcp dport {port} drop")
        self.run("nft", f"add rule inet blackhole out tcp sport {port} drop")

    def restore(self) -> None:
        self.run("nft", "flush chain inet blackhole out")

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


class NamespacedDaemon(Daemon):
    """`omnid run` inside the namespace (through `nsenter`)."""

    def __init__(
        self, tmp: Path, config: Path, key: str, wrap: tuple[str, ...], **env: str
    ) -> None:
        self.socket = tmp / "control.sock"
        Process.__init__(self, ["run", "--config", str(config)], clean_env(**env), key, wrap=wrap)


def namespace_or_skip() -> Namespace:
    if os.geteuid() != 0 or not (shutil.which("nft") and shutil.which("ip")):
        pytest.skip("needs root, nftables and iproute2 (scripts/setup installs them as root)")
    try:
        return Namespace()
    except (subprocess.CalledProcessError, AssertionError) as exc:
        pytest.skip(f"no private network namespace with nftables here: {exc}")


def noisy_pictures(directory: Path) -> None:
    """Frames near the service's size limit, so they fill a socket buffer fast."""
    directory.mkdir()
    rng = np.random.default_rng(3)
    for n in range(3):
        pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / f"{n}.png")


def watchdog_gaps(notify: NotifySocket, start: float, end: float) -> list[float]:
    pings = [t for t in notify.times("WATCHDOG=1") if start <= t <= end]
    return [b - a for a, b in itertools.pairwise(pings)]


@pytest.mark.timeout(240)
def test_a_40_s_blackhole_neither_starves_the_watchdog_nor_loses_speech(tmp_path: Path) -> None:
    ns = namespace_or_skip()
    key = make_key()
    speak_at = 14.0  # seconds after the microphone starts; the blackhole begins at about 8 s
    utterance = speech(2.0)
    timeline(tmp_path / "mic.wav", [(speak_at, utterance), (200.0, None)])
    noisy_pictures(tmp_path / "pictures")
    notify = NotifySocket(tmp_path / "notify.sock")
    sim = Simulator(tmp_path, key, wrap=ns.wrap)
    port = int(sim.url.split(":")[2].split("/")[0])
    config = write_config(
        tmp_path,
        sim.url,
        key,
        VAD
        + wav_devices(tmp_path, "max_turn_s = 120")
        + '[camera]\nenabled = true\nsource = "files"\nfps = 1.0\nwhen = "always"\n'
        + f'path = "{tmp_path / "pictures"}"\n',
    )
    daemon = NamespacedDaemon(
        tmp_path,
        config,
        key,
        ns.wrap,
        NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC="2000000",
    )
    try:
        daemon.wait_ready()
        wall0 = daemon.audio_started_wall()
        time.sleep(max(0.0, wall0 + 8.0 - time.time()))
        images_before = sum(
            1 for r in sim.wire("recv") if r["event"]["type"] == "input_image_buffer.append"
        )
        ns.drop(port)
        holed = time.time()
        try:
            dead_line = daemon.wait_for(lambda s: "declared dead" in s, timeout=BLACKHOLE_S)
        except AssertionError:
            dead_line = "never declared dead"
        dead = time.time()
        time.sleep(max(0.0, holed + BLACKHOLE_S - time.time()))
        ns.restore()
        restored = time.time()
        opened = daemon.wait_record("session_open", count=2, timeout=60)
        back = time.time()
        turns = daemon.wait_record("turn", timeout=30)
        alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        sim.stop()
        notify.close()
        ns.close()
    gaps = watchdog_gaps(notify, wall0 + 2.0, back)
    sessions = [
        r["event"]["session"]["id"]
        for r in sim.wire("send")
        if r["event"]["type"] == "session.created"
    ]
    heard = [
        np.frombuffer(base64.b64decode(r["event"]["audio"]), dtype="<i2")
        for r in sim.wire("recv")
        if r["event"]["type"] == "input_audio_buffer.append" and r["session"] == sessions[-1]
    ]
    print(
        f"\nblackhole {BLACKHOLE_S:.0f} s: link declared dead {dead - holed:.1f} s after it began "
        f"({dead_line.split('declared dead: ')[-1]}); watchdog gaps max {max(gaps):.2f} s over "
        f"{len(gaps)} pings; back {back - restored:.1f} s after the path returned; "
        f"{images_before} images before; turn {turns[0]['OMNID_OUTCOME']}"
    )
    assert code == 0 and alive
    assert images_before >= 3, "the camera was not streaming before the blackhole"
    assert max(gaps) < 2.0, f"the watchdog went {max(gaps):.1f} s without a ping"
    assert "nothing could be sent" in dead_line  # the writer's stall, not the 30 s read timeout
    assert dead - holed < 25.0
    assert len(opened) >= 2
    # The speech said into the dead connection reached the next session and was answered.
    assert turns[0]["OMNID_OUTCOME"] in ("answered", "retried"), turns
    assert (
        heard
        and best_correlation(np.concatenate(heard).astype(float), utterance[:IN_RATE].astype(float))
        > 0.9
    )


def dropped_answer_run(tmp: Path, retry: bool) -> tuple[Simulator, Daemon, float, dict[str, str]]:
    """A push-to-talk turn whose connection drops after a few of the answer's audio deltas (the
    first connection only), then the first turn record, and how long after the drop it came."""
    key = make_key()
    write_wav(tmp / "mic.wav", np.tile(speech(4.0), 5))
    # session.created, session.updated, committed, item.created, the user's transcript,
    # response.created, output_item.added, item.created, content_part.added: 9, then the deltas.
    sim = Simulator(
        tmp, key, "--drop-after-events", "16", "--faulty-connections", "1", "--pace", "1"
    )
    config = write_config(
        tmp,
        sim.url,
        key,
        f"[session]\nretry_turn_on_drop = {'true' if retry else 'false'}\n" + wav_devices(tmp),
    )
    daemon = Daemon(tmp, config, key)
    daemon.wait_ready()
    assert daemon.ctl("press")["ok"]
    time.sleep(3.0)
    daemon.ctl("release")
    daemon.wait_for(lambda s: "OMNID_EVENT=session_close" in s, timeout=20)
    dropped = time.monotonic()
    turn = daemon.wait_record("turn", timeout=20)[0]
    return sim, daemon, time.monotonic() - dropped, turn


@pytest.mark.timeout(90)
def test_an_answer_cut_off_by_a_drop_is_asked_again_and_played_whole(tmp_path: Path) -> None:
    sim, daemon, after_s, turn = dropped_answer_run(tmp_path, retry=True)
    try:
        status = daemon.ctl("status")
    finally:
        assert daemon.stop() == 0
        sim.stop()
    drops = [r for r in sim.record() if r.get("dir") == "conn" and r.get("what") == "drop"]
    first = drops[0]["session"]
    cut = [
        r
        for r in sim.wire("send")
        if r["session"] == first and r["event"]["type"] == "response.audio.delta"
    ]
    answers = [
        r
        for r in sim.wire("send")
        if r["session"] != first and r["event"]["type"] == "response.done"
    ]
    print(
        f"\n{len(cut)} audio deltas before the drop; "
        f"turn {turn['OMNID_OUTCOME']} {after_s:.1f} s after it"
    )
    assert cut, "the drop did not fall inside the answer"
    assert turn["OMNID_OUTCOME"] == "retried", turn  # never `cancelled`: the user did nothing
    assert after_s < 15.0  # finished with its answer, not at the next press
    assert answers and answers[0]["event"]["response"]["status"] == "completed"
    assert status["state"] == "idle"
    # The whole answer played after the fragment: the reply's last second is in the output.
    out = read_wav(tmp_path / "spk.wav")
    assert len(out) > OUT_RATE


@pytest.mark.timeout(90)
def test_an_answer_cut_off_without_retry_ends_at_once_with_the_error_tone(tmp_path: Path) -> None:
    sim, daemon, after_s, turn = dropped_answer_run(tmp_path, retry=False)
    try:
        time.sleep(1.5)  # the error tone plays out
    finally:
        assert daemon.stop() == 0
        sim.stop()
    print(f"\nturn {turn['OMNID_OUTCOME']} {after_s:.1f} s after the drop")
    assert turn["OMNID_OUTCOME"] == "lost", turn
    assert after_s < 5.0
    out = read_wav(tmp_path / "spk.wav")
    score = correlates(out, Earcons.generate().error)
    assert score > 0.9, f"no error tone in the speaker's output ({score:.2f})"
