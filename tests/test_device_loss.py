"""Audio devices that are missing, or go away, are reopened without a restart (real PortAudio on
the ALSA FIFO rig; the daemon and the simulator as processes; sd_notify on a test socket)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.alsa_rig import AlsaFifoRig
from tests.harness import Daemon, Simulator, make_key, write_config
from tests.test_notify import NotifySocket
from tests.test_turn_wav import speech


def turn(daemon: Daemon, rig: AlsaFifoRig, count: int) -> dict:
    assert rig.wait_mic_reader(10), "the microphone stream is not reading"
    daemon.ctl("press")
    said = rig.say(speech(1.0))
    time.sleep(max(0.0, said + 1.2 - time.time()))
    daemon.ctl("release")
    return daemon.wait_record("turn", count=count, timeout=20)[-1]


def test_missing_at_start_then_plugged_in_then_lost_and_back(tmp_path: Path) -> None:
    key = make_key()
    rig = AlsaFifoRig(tmp_path)  # not started: its devices do not exist yet
    rig.dir.mkdir(parents=True, exist_ok=True)
    rig.asound_conf.write_text("")
    sim = Simulator(tmp_path, key)
    config = write_config(
        tmp_path,
        sim.url,
        key,
        (f'[audio]\ninput_device = "{rig.mic_device}"\noutput_device = "{rig.spk_device}"\n'),
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = Daemon(
        tmp_path,
        config,
        key,
        NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC="2000000",
        OMNID_TEST_HOOKS="1",
        **rig.env,
    )
    try:
        notify.wait("READY=1")  # up, and saying what is wrong, rather than restart-looping
        notify.wait("STATUS=audio device missing")
        missing_since = time.time()
        time.sleep(2.5)
        pings_while_missing = [t for t in notify.times("WATCHDOG=1") if t > missing_since]
        rig.start()  # the USB microphone is plugged in
        daemon.wait_ready()
        first = turn(daemon, rig, 1)

        lost_at = time.time()
        daemon.ctl("_lose-mic")  # PortAudio stops the stream, as for a device pulled out
        notify.wait("STATUS=audio device lost", after=lost_at)
        second = turn(daemon, rig, 2)
        pid_alive = daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        rig.stop()
        sim.stop()
        notify.close()
    print(f"\n{len(pings_while_missing)} watchdog pings while the device was missing")
    assert code == 0 and pid_alive
    assert len(pings_while_missing) >= 2, "a known-missing device must not starve the watchdog"
    assert first["OMNID_OUTCOME"] == "answered" and second["OMNID_OUTCOME"] == "answered"
    output = daemon.output()
    assert output.count("audio devices back") >= 2
    assert "Traceback" not in output
