"""Real PortAudio/ALSA audio without a sound card: FIFO-backed ALSA `file` PCMs, paced by the test.

A temporary asound.conf defines two uniquely named PCMs,

    pcm.omnitest_mic_<id> { type file slave.pcm null file "/dev/null"
                            infile "<tmp>/mic-<id>.fifo" format raw }
    pcm.omnitest_spk_<id> { type file slave.pcm null file "<tmp>/spk-<id>.fifo" format raw }

(<id> is random per rig, so names are unique substrings and rigs can share a directory.)

With plain files they are bit-exact but unpaced; with named pipes the stream runs at the pace the
test writes (mic) and reads (speaker). `AlsaFifoRig` owns both pipes: a writer thread puts 16-bit
mono blocks into the mic pipe on an absolute real-time schedule (silence unless `say()` queued an
utterance), and a reader thread drains the speaker pipe at real-time pace and keeps everything,
with read times. Use it in-process (`with rig, rig.in_process(): ...`) or pass `rig.env` to a
subprocess (`env={**os.environ, **rig.env}`) whose config names `rig.mic_device`/`rig.spk_device`.
Start the rig before the process under test initialises PortAudio, and end that process (or close
its streams) before stopping the rig.

Quirks found on this machine (alsa-lib 1.2.8, PortAudio 19.6.0, sounddevice 0.5.6):

- Device enumeration (Pa_Initialize, i.e. `import sounddevice`) opens the capture PCM, and the file
  plugin opens its `infile` then: open(2) of a FIFO for reading blocks until a writer exists, so
  PortAudio initialisation hangs forever unless the mic FIFO is already open. The output `file` is
  not opened at enumeration (alsa-lib opens it lazily), so the speaker FIFO does not block there.
  The rig opens both O_RDWR before anything initialises PortAudio, so no open ever blocks.
- PortAudio lists only these PCMs (and hardware cards, none here). Both report 128 input and 128
  output channels and a default rate of 44100 Hz, and accept every rate and channel count asked
  (16000, 24000, 48000, even 12345): the null slave has no constraints, the file plugin passes any
  through, and it takes no `slave.rate` restriction. So rate negotiation always lands on the first
  preference (16 kHz in, 24 kHz out); to exercise resampling, force the backend's `rates=` and
  build the rig with the same `mic_rate`/`spk_rate`. Both PCMs also count as input *and* output
  devices: "omnitest" alone is ambiguous, "default" means the first one (the mic PCM) for both
  directions, and the speaker PCM opened for capture yields junk (stale buffer memory) at the
  null plugin's own pace (~80 blocks/s): never use it as a microphone.
- Capture is one read(2) of a period's bytes from the pipe. Less in the pipe than a period gives a
  short read, which the plugin pads with silence and returns at once. So the writer writes whole
  periods: `block_ms` here must equal the stream's block size at `mic_rate` (or be a multiple).
- Nobody reading the mic pipe (stream not started yet, daemon still importing) lets blocks pile up
  in the 64 KiB pipe (2 s at 16 kHz): the stream would read that backlog in a burst and then run
  2 s late. The writer checks FIONREAD and drops a block while `mic_backlog_blocks` are already
  waiting, as a real microphone loses what nobody records (`mic_dropped_blocks` counts them).
  `wait_mic_reader()` tells when a stream is reading, i.e. when `say()` will be heard whole.
- Capture pacing is exact: one callback per block written (50.0/s at 20 ms, p99 jitter < 0.5 ms),
  and the callback runs within ~1 ms of the write, so `say()`'s time is the capture time.
- The speaker pipe is shrunk with F_SETPIPE_SZ to 4096 bytes (85 ms at 24 kHz) so PortAudio cannot
  run far ahead of the reader. Playback callbacks still come in bursts: 4 back to back every 80 ms
  (50/s on average), as PortAudio refills its 4-period ALSA buffer; a sample handed over reaches
  the reader ~60 ms later in steady state (see `speaker_time()`). At stream start PortAudio runs
  5–7 blocks ahead at once (~100–140 ms), then keeps real time: audio fed block by block in real
  time right after start() underruns unless it has a cushion. Everything still queued at a flush
  never appears, but up to 4 blocks already handed over still play out.
- `import sounddevice` initialises PortAudio with the environment of that moment; `in_process()`
  applies `env`, re-initialises it (`sd._terminate(); sd._initialize()`) and restores both after.
  `HOME=<tmp>` keeps the user's ~/.asoundrc out (alsa.conf also reads
  $XDG_CONFIG_HOME/alsa/asoundrc, unset here).
- Stop order: abort/close the streams, then stop the rig. With the writer stopped but the pipe
  still open, PortAudio's capture thread sits in read(2) and abort()/close() hang (measured: still
  hung after 5 s). Once the rig has closed the pipes the capture reads EOF and runs unpaced
  (~170 000 silent blocks/s), playback gets EPIPE (ALSA prints "write failed"), and close() works.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import fcntl
import os
import select
import termios
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

SPEAKER_PIPE_BYTES = 4096


@contextlib.contextmanager
def portaudio_env(env: Mapping[str, str]) -> Iterator[None]:
    """Apply `env` to this process and re-initialise PortAudio under it; undo both on exit.

    sounddevice initialises PortAudio (and alsa-lib reads its config) at import, so changing
    ALSA_CONFIG_PATH later has no effect until PortAudio is terminated and initialised again.
    Streams still open on exit are closed by the re-initialisation.
    """
    import sounddevice as sd

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    sd._terminate()
    sd._initialize()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sd._terminate()
        sd._initialize()


class AlsaFifoRig:
    """A microphone and a speaker made of ALSA file PCMs over named pipes (module docstring)."""

    def __init__(
        self,
        tmp_path: Path | str,
        *,
        mic_rate: int = 16_000,
        spk_rate: int = 24_000,
        block_ms: int = 20,
        spk_block_ms: int | None = None,
        clock: Callable[[], float] = time.time,
        mic_backlog_blocks: int = 3,
        feedback_gain: float = 0.0,
    ) -> None:
        if mic_backlog_blocks < 1:
            raise ValueError("mic_backlog_blocks must be at least 1")
        self.id = uuid.uuid4().hex[:8]
        self.dir = Path(tmp_path)
        self.mic_rate = mic_rate
        self.spk_rate = spk_rate
        self.block_ms = block_ms
        self.spk_block_ms = spk_block_ms or block_ms
        """The speaker's read (the DAC's) granularity: the stream's period need not be it."""
        self.mic_device = f"omnitest_mic_{self.id}"
        self.spk_device = f"omnitest_spk_{self.id}"
        self.mic_fifo = self.dir / f"mic-{self.id}.fifo"
        self.spk_fifo = self.dir / f"spk-{self.id}.fifo"
        self.asound_conf = self.dir / f"asound-{self.id}.conf"
        self.env: dict[str, str] = {
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.asound_conf}",
            "HOME": str(self.dir),
        }
        self.said: list[tuple[float, int]] = []
        """(start time, samples) of every say(), in `clock` time."""
        self.mic_dropped_blocks = 0
        self.feedback_gain = feedback_gain
        """> 0: what the speaker plays is summed into the microphone at this gain, as a one-mic
        box hears its own loudspeaker (acoustic echo), delayed by the rig's real pipeline."""
        self._fed = 0  # speaker samples already fed back
        self._echo = np.zeros(0, dtype=np.float64)
        self._clock = clock
        self._offset = 0.0  # clock() - time.monotonic()
        self._block_n = mic_rate * block_ms // 1000
        self._block_s = block_ms / 1000
        self._backlog_bytes = mic_backlog_blocks * 2 * self._block_n
        self._lock = threading.Lock()
        self._queue: deque[bytes] = deque()
        self._next_block = 0
        self._t0 = 0.0
        self._spk = bytearray()
        self._marks_t: list[float] = []  # monotonic time of each speaker read
        self._marks_n: list[int] = []  # whole samples read by then
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._mic_fd = -1
        self._spk_fd = -1

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Write the config, make and open the pipes, start writing and reading."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.asound_conf.write_text(
            f"pcm.{self.mic_device} {{\n"
            f'    type file\n    slave.pcm null\n    file "/dev/null"\n'
            f'    infile "{self.mic_fifo}"\n    format raw\n}}\n'
            f"pcm.{self.spk_device} {{\n"
            f'    type file\n    slave.pcm null\n    file "{self.spk_fifo}"\n    format raw\n}}\n'
        )
        os.mkfifo(self.mic_fifo)
        os.mkfifo(self.spk_fifo)
        # O_RDWR: never blocks, and keeps both ends of each pipe alive for as long as the rig runs.
        self._mic_fd = os.open(self.mic_fifo, os.O_RDWR)
        self._spk_fd = os.open(self.spk_fifo, os.O_RDWR)
        fcntl.fcntl(self._spk_fd, fcntl.F_SETPIPE_SZ, SPEAKER_PIPE_BYTES)
        self._offset = self._clock() - time.monotonic()
        self._t0 = time.monotonic()
        for target, name in ((self._write_loop, "rig-mic"), (self._read_loop, "rig-spk")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop both threads and close the pipes (close the streams first: module docstring)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        for fd in (self._mic_fd, self._spk_fd):
            if fd >= 0:
                os.close(fd)
        self._mic_fd = self._spk_fd = -1

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def in_process(self) -> contextlib.AbstractContextManager[None]:
        """Make this process's PortAudio see the rig's devices (see `portaudio_env`)."""
        return portaudio_env(self.env)

    # -- microphone --------------------------------------------------------------------------

    def say(self, samples: npt.NDArray[np.int16]) -> float:
        """Queue an utterance (int16 mono at `mic_rate`) behind any other; return the time, in
        `clock` time, at which its first sample is written. It starts on a block boundary and is
        padded with silence to whole blocks."""
        samples = np.asarray(samples, dtype=np.int16)
        blocks = -(-len(samples) // self._block_n)
        padded = np.zeros(blocks * self._block_n, dtype=np.int16)
        padded[: len(samples)] = samples
        with self._lock:
            start_block = self._next_block + len(self._queue)
            for i in range(blocks):
                self._queue.append(padded[i * self._block_n : (i + 1) * self._block_n].tobytes())
            start = self._t0 + start_block * self._block_s + self._offset
            self.said.append((start, len(samples)))
        return start

    def wait_mic_reader(self, timeout: float) -> bool:
        """Block until something (the stream under test) is reading the mic pipe, so a `say()`
        from now on is heard whole rather than dropped (False on timeout). Nobody reading shows
        as a backlog of `mic_backlog_blocks` in the pipe; a reader keeps it under two blocks."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                written = self._next_block
            if written > self._backlog_bytes // (2 * self._block_n) + 2 and (
                self._pending_mic_bytes() < 2 * 2 * self._block_n
            ):
                return True
            time.sleep(self._block_s / 2)
        return False

    def _pending_mic_bytes(self) -> int:
        buf = array.array("i", [0])
        fcntl.ioctl(self._mic_fd, termios.FIONREAD, buf)
        return buf[0]

    def _write_loop(self) -> None:
        silence = bytes(2 * self._block_n)
        k = 0
        while True:
            with self._lock:
                payload = self._queue.popleft() if self._queue else silence
                self._next_block = k + 1
            if self.feedback_gain > 0:
                payload = self._add_echo(payload)
            if self._pending_mic_bytes() >= self._backlog_bytes:
                self.mic_dropped_blocks += 1
            else:
                os.write(self._mic_fd, payload)
            k += 1
            if self._stop.wait(max(0.0, self._t0 + k * self._block_s - time.monotonic())):
                return

    def _add_echo(self, payload: bytes) -> bytes:
        """Sum the speaker's newest output (24 → 16 kHz) into this microphone block."""
        import soxr

        if not hasattr(self, "_echo_resampler"):
            self._echo_resampler = soxr.ResampleStream(self.spk_rate, self.mic_rate, 1, "float64")
        with self._lock:
            end = len(self._spk) // 2
            new = np.frombuffer(bytes(self._spk[2 * self._fed : 2 * end]), dtype=np.int16)
            self._fed = end
        if len(new):
            converted = self._echo_resampler.resample_chunk(new.astype(np.float64))
            self._echo = np.concatenate([self._echo, converted])
        # Whole blocks only: a microphone block longer than the speaker's reads would otherwise
        # take a part, and the rest of the echo would come a block late, with a gap before it.
        take = self._echo[: self._block_n] if len(self._echo) >= self._block_n else self._echo[:0]
        self._echo = self._echo[len(take) :]
        mic = np.frombuffer(payload, dtype=np.int16).astype(np.float64)
        mic[: len(take)] += self.feedback_gain * take
        return np.clip(np.rint(mic), -32768, 32767).astype(np.int16).tobytes()

    # -- speaker -----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        chunk = 2 * (self.spk_rate * self.spk_block_ms // 1000)
        block_s = self.spk_block_ms / 1000
        target = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._spk_fd], [], [], 0.05)
            if not ready:
                target = time.monotonic()
                continue
            data = os.read(self._spk_fd, chunk)
            now = time.monotonic()
            with self._lock:
                self._spk += data
                self._marks_t.append(now)
                self._marks_n.append(len(self._spk) // 2)
            target += len(data) / (2 * self.spk_rate)
            if now - target > 2 * block_s:  # after a pause: pace from now, don't burst
                target = now
            delay = target - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def speaker_output(self) -> npt.NDArray[np.int16]:
        """Everything read from the speaker so far, int16 mono at `spk_rate`."""
        with self._lock:
            raw = bytes(self._spk[: len(self._spk) // 2 * 2])
        return np.frombuffer(raw, dtype=np.int16).copy()

    def speaker_time(self, index: int) -> float:
        """When (in `clock` time) output sample `index` "sounded": the reader takes one block
        from the pipe every `spk_block_ms` and, like a DAC, plays it over the following block, so a
        sample's time is its block's read time plus its offset in the block. That is after
        PortAudio handed it over by the pipeline delay (PortAudio's ALSA buffer, filled in bursts
        of 4 blocks here, plus up to 4 KiB in the pipe: ~60 ms steady, less just after a
        stream starts), never before."""
        with self._lock:
            k = bisect.bisect_right(self._marks_n, index)
            if k == len(self._marks_n):
                raise IndexError(f"speaker sample {index} not read yet")
            chunk_start = self._marks_n[k - 1] if k else 0
            t = self._marks_t[k] + (index - chunk_start) / self.spk_rate
        return t + self._offset

    def wait_speaker_samples(self, n: int, timeout: float) -> bool:
        """Block until at least `n` speaker samples have been read (False on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._spk) // 2 >= n:
                    return True
            time.sleep(0.01)
        return False
