"""The wake word, heard on the box: microWakeWord through `pymicro-wakeword` (the `wake` extra).

`Detector` is the streaming detector itself — 16 kHz int16 in, `Detection`s out — usable on its
own by `omnid wake-test` and the benchmark. It adds what the library leaves out (docs/wake-word.md):

- the library yields a probability for every 10 ms feature frame, but the model only runs on
  every third, and the frames in between (and the first ~150 ms) read 0.0: only real inferences
  are reported (`on_probability`), so a journal's probability is never a placeholder;
- it does not debounce (one utterance stays above the cutoff for up to ~0.7 s): a detection
  starts a refractory period (`wake.refractory_s`);
- it does not say where the wake phrase began: `Detector` keeps the last seconds' loudness and
  looks back from the detection for the quiet that preceded the phrase, so the uplink can open
  from just before the phrase's onset and no earlier.

Nothing is sent on the wake word alone. The phrase is speech, and the service's VAD would answer
it as a turn of its own ("okay nabu" — "Hello, how can I help?") and stream the room after a
false wake. So after a detection the listener waits (up to `wake.no_speech_s`) for speech after
the phrase, and only then says where the uplink opens: from just before the phrase when the
question ran straight on from it (the phrase and the question's first word, which begins before
the detection fires, go out together), or from just before the question after a pause (the
phrase alone would be committed as a turn when the pause is longer than the service's
`silence_duration_ms`).

`WakeListener` runs two detectors on a thread of its own, never in the audio callback nor on
the conversation thread: one on the raw microphone (before mute, masks or the echo guard, so
the wake word is heard over an answer), one on what the box plays. A microphone detection that
coincides with the output detector's probability rising is the box hearing itself — its reply
may contain the wake phrase — and is ignored.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omnid.events import Event, Wake, WakeSpeech
from omnid.micfeed import MicFeed, MicQueue
from omnid.models import WIRE_INPUT_RATE, WIRE_OUTPUT_RATE

if TYPE_CHECKING:
    from omnid.config_schema import Config, WakeSection

log = logging.getLogger("omnid.wake")

RATE = 16_000  # what microWakeWord's features are computed from (the microphone's wire rate)
FRAME_S = 0.01
INSTALL_HINT = (
    "scripts/setup (or scripts/install) installs it; by hand, into omnid's venv: pip install "
    "--only-binary pymicro-wakeword,pymicro-features 'pymicro-wakeword>=2.5,<3'"
)
LOUDNESS_HISTORY_S = 5.0
ONSET_LOOKBACK_S = 1.6  # the longest wake phrase plus the detector's lag, at a slow speaker's pace
ONSET_QUIET_S = 0.2  # a pause this long before the phrase marks where it began
ONSET_MARGIN_S = 0.15  # opened this much before the estimated onset (a soft first sound)
LOUD_OVER_FLOOR_DB = 12.0  # speech, against the quietest tenth of the last seconds …
DIGITAL_QUIET_DB = 20.0  # … and never below ~-70 dBFS (a digitally silent input)
SPEECH_AFTER_S = 0.1  # speech after the wake word: begun no earlier than this before it fired …
SPEECH_MIN_S = 0.08  # … and loud this long without a break
QUESTION_MARGIN_S = 0.3  # after a pause, the uplink opens this long before the question
ECHO_PROBABILITY = 0.5  # the output detector this sure means the box is saying the phrase …
ECHO_BEFORE_S = 1.5  # … if that was played up to this long before the microphone's detection
ECHO_AFTER_S = 0.3  # (the way out through the device and back) or just after it
OUTPUT_GAP_S = 2.0  # output resuming after this long is a new answer


def available() -> bool:
    """Whether the `wake` extra is installed (checked without importing it)."""
    return importlib.util.find_spec("pymicro_wakeword") is not None


def manifest_problem(model: str) -> str:
    """Why `wake.model` cannot be loaded, or '' (a built-in name, or a readable manifest)."""
    from omnid.config_schema import WAKE_MODELS

    if model in WAKE_MODELS:
        return ""
    path = Path(model)
    if path.suffix != ".json":
        return f"must be one of {', '.join(WAKE_MODELS)}, or the path of a model manifest (.json)"
    if not path.is_absolute():
        return f"{model}: a model manifest's path must be absolute (the service runs in /)"
    if not path.is_file():
        return f"{model}: no such model manifest"
    return ""


@dataclass(frozen=True, slots=True)
class Detection:
    t: float  # when it fired: the capture time of the last sample it had heard
    onset_t: float  # where the wake phrase is estimated to have begun
    probability: float  # the model's (window-averaged) probability when it fired


class Detector:
    """One model over one stream of 16 kHz audio; not thread-safe (one thread feeds it)."""

    def __init__(self, model: str, cutoff: float | None, refractory_s: float) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

        if Path(model).suffix == ".json":
            self._model = MicroWakeWord.from_config(Path(model))
        else:
            self._model = MicroWakeWord.from_builtin(Model(model))
        self._features = MicroWakeWordFeatures()
        self.name = model if model in {m.value for m in Model} else Path(model).stem
        self.cutoff = float(cutoff if cutoff is not None else self._model.probability_cutoff)
        self._refractory_s = refractory_s
        self._stride = int(self._model.stride)
        self._frames = 0  # feature frames given to the model
        self._quiet_until = float("-inf")
        self._loudness: deque[tuple[float, float]] = deque(maxlen=int(LOUDNESS_HISTORY_S / FRAME_S))
        self.probability = 0.0  # the last real inference's

    def feed(
        self,
        pcm: np.ndarray,
        t_end: float,
        on_probability: Callable[[float, float], None] | None = None,
    ) -> list[Detection]:
        """Hear `pcm` (int16, 16 kHz), whose last sample was captured at `t_end`. Returns what
        fired in it; `on_probability(t, p)` hears every real inference."""
        pcm = np.asarray(pcm, dtype=np.int16)
        self._remember_loudness(pcm, t_end)
        found: list[Detection] = []
        for features in self._features.process_streaming(pcm.tobytes()):
            self._frames += 1
            prob = self._model.process_streaming_prob(features)
            if self._frames % self._stride or prob is None:
                continue  # the model did not run on this frame: its 0.0 means nothing
            self.probability = prob
            if on_probability is not None:
                on_probability(t_end, prob)
            if prob > self.cutoff and t_end >= self._quiet_until:
                self._quiet_until = t_end + self._refractory_s
                found.append(Detection(t_end, self.onset(t_end), prob))
        return found

    def _remember_loudness(self, pcm: np.ndarray, t_end: float) -> None:
        n = int(RATE * FRAME_S)
        whole = len(pcm) // n * n
        if not whole:
            return
        frames = pcm[len(pcm) - whole :].astype(np.float32).reshape(-1, n)
        db = 10 * np.log10(np.mean(frames * frames, axis=1) + 1.0)
        start = t_end - len(db) * FRAME_S
        for i, level in enumerate(db):
            self._loudness.append((start + (i + 1) * FRAME_S, float(level)))

    def _loud(self) -> float:
        """The level that counts as speech here and now."""
        if not self._loudness:
            return DIGITAL_QUIET_DB
        floor = float(np.percentile([db for _, db in self._loudness], 10))
        return max(floor + LOUD_OVER_FLOOR_DB, DIGITAL_QUIET_DB)

    def speech_since(self, t0: float, min_s: float = SPEECH_MIN_S) -> float | None:
        """Where the first stretch of speech (`min_s` loud without a break) begun at or after
        `t0` began, or None when none has been heard yet."""
        loud, need = self._loud(), round(min_s / FRAME_S)
        run, start = 0, 0.0
        for ft, db in self._loudness:
            if ft - FRAME_S < t0 - 1e-6:
                continue
            if db < loud:
                run = 0
                continue
            if run == 0:
                start = ft - FRAME_S
            run += 1
            if run >= need:
                return start
        return None

    def paused_between(self, a: float, b: float) -> bool:
        """Whether a pause of `ONSET_QUIET_S` or more lies between `a` and `b`."""
        loud, need = self._loud(), round(ONSET_QUIET_S / FRAME_S)
        run = 0
        for ft, db in self._loudness:
            if not a < ft <= b:
                continue
            run = run + 1 if db < loud else 0
            if run >= need:
                return True
        return False

    def onset(self, t: float) -> float:
        """Where the phrase heard by `t` began: after the last pause of `ONSET_QUIET_S`, looking
        back at most `ONSET_LOOKBACK_S` (speech without a pause before the wake word)."""
        history = [(ft, db) for ft, db in self._loudness if t - ONSET_LOOKBACK_S <= ft <= t]
        if not history:
            return t - ONSET_LOOKBACK_S
        loud = self._loud()
        need = round(ONSET_QUIET_S / FRAME_S)
        i = len(history) - 1
        while i >= 0 and history[i][1] < loud:
            i -= 1  # the pause between the phrase's end and the detection firing
        quiet = 0
        while i >= 0:
            if history[i][1] < loud:
                quiet += 1
                if quiet >= need:
                    return history[i + quiet][0] - FRAME_S  # the first loud frame's start
            else:
                quiet = 0
            i -= 1
        return history[0][0] - FRAME_S

    def reset(self) -> None:
        """Forget what was heard (the stream has a gap): the next words start afresh."""
        self._features.reset()
        self._model.reset()
        self._frames = 0
        self._loudness.clear()


class WakeListener:
    """The wake-word thread: hears the microphone and the box's own output, posts `Wake`."""

    def __init__(
        self,
        cfg: WakeSection,
        mic: MicQueue,
        ready: threading.Event,
        post: Callable[[Event], None],
    ) -> None:
        self._mic = mic
        self._ready = ready
        self._post = post
        self._detector = Detector(cfg.model, cfg.probability_cutoff, cfg.refractory_s)
        self._echo = Detector(cfg.model, cfg.probability_cutoff, cfg.refractory_s)
        self.model = self._detector.name
        self.cutoff = self._detector.cutoff
        self._output: deque[tuple[np.ndarray, float]] = deque()  # (24 kHz pcm, when it plays)
        self._resampler: Any = None
        self._output_end = float("-inf")
        self._echo_times: deque[float] = deque(maxlen=400)
        self._no_speech_s = cfg.no_speech_s
        self._awaiting: Detection | None = None  # woken: is speech following the phrase?
        self.paused = False  # muted: nothing is heard at all (set by the conversation thread)
        self.ignored_echo = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="wake", daemon=True)

    @staticmethod
    def wakeup_for(ready: threading.Event) -> Callable[[int], None]:
        """The microphone queue's wake-up: the thread takes what is in when it runs."""
        return lambda _upto: ready.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._ready.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._resampler = None  # freed now, not by the interpreter's teardown

    def played(self, pcm: np.ndarray, t_start: float) -> None:
        """Conversation thread: `pcm` (an answer's 24 kHz audio) will sound from `t_start`."""
        self._output.append((pcm, t_start))

    def _run(self) -> None:
        while not self._stopping:
            self._ready.wait(timeout=1.0)
            self._ready.clear()
            try:
                self._hear_output()
                blocks = self._mic.take()
                if self.paused:
                    self._awaiting = None
                    continue
                if not blocks:
                    continue
                # In one piece: the detector's cost per call is a good part of its cost (~20 %
                # less CPU than block by block), and the blocks came together anyway.
                pcm = np.concatenate([block.pcm for block in blocks])
                for found in self._detector.feed(pcm, blocks[-1].t):
                    self._detected(found)
                if self._awaiting is not None:
                    self._look_for_speech(self._awaiting, blocks[-1].t)
            except Exception:  # a detector failure must not take the thread with it
                log.exception("wake word detector failed on a block")

    def _hear_output(self) -> None:
        import soxr

        while self._output:
            pcm, t_start = self._output.popleft()
            if self._resampler is None or t_start > self._output_end + OUTPUT_GAP_S:
                # A new answer: the resampler and the detector start afresh. (A shorter gap is
                # the network's jitter inside one answer: the phrase may straddle it.)
                self._resampler = soxr.ResampleStream(WIRE_OUTPUT_RATE, RATE, 1, dtype="int16")
                self._echo.reset()
            self._output_end = max(t_start, self._output_end) + len(pcm) / WIRE_OUTPUT_RATE
            pcm16 = self._resampler.resample_chunk(np.asarray(pcm, dtype=np.int16))
            self._echo.feed(pcm16, self._output_end, self._echo_heard)

    def _echo_heard(self, t: float, probability: float) -> None:
        if probability > ECHO_PROBABILITY:
            self._echo_times.append(t)

    def _detected(self, found: Detection) -> None:
        echo = any(found.t - ECHO_BEFORE_S <= t <= found.t + ECHO_AFTER_S for t in self._echo_times)
        if echo:
            self.ignored_echo += 1
            log.info("wake word heard in the box's own voice (p=%.2f): ignored", found.probability)
            return
        # "heard at wall": part of the test interface (omnid/testhooks.py), which times the
        # speaker's silence from the detection.
        log.info(
            "wake word %s (p=%.2f, phrase from %.2f s before; heard at wall %.6f)",
            self.model,
            found.probability,
            found.t - found.onset_t,
            time.time() - (time.monotonic() - found.t),
        )
        self._post(Wake(self.model, found.probability, found.t))
        self._awaiting = found

    def _look_for_speech(self, found: Detection, now: float) -> None:
        """Woken: once speech follows the phrase, say where the uplink opens."""
        start = self._detector.speech_since(found.t - SPEECH_AFTER_S)
        if start is None:
            if now > found.t + self._no_speech_s:
                self._awaiting = None  # the conversation's window shuts on its own clock
            return
        self._awaiting = None
        if self._detector.paused_between(found.onset_t, start):
            since = start - QUESTION_MARGIN_S  # a pause after the phrase: the question alone
        else:
            since = found.onset_t - ONSET_MARGIN_S  # ran straight on: the phrase and the question
        self._post(WakeSpeech(since, now))


def open_listener(cfg: Config, feed: MicFeed, post: Callable[[Event], None]) -> WakeListener | None:
    """Wake mode's listener, started (before the microphone: the feed's consumers are fixed
    once it runs); None in the other modes, which never import the detector."""
    if cfg.session.mode != "wake":
        return None
    ready = threading.Event()
    mic = feed.consumer("wake", WakeListener.wakeup_for(ready))
    listener = WakeListener(cfg.wake, mic, ready, post)
    log.info("wake word: %s, cutoff %.2f", listener.model, listener.cutoff)
    listener.start()
    return listener


assert WIRE_INPUT_RATE == RATE, "the detector hears the microphone at its wire rate"
