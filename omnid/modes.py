"""How turns begin and end, one record per `session.mode`.

A mode is data: the conversation asks it questions ("does the microphone stream between turns?",
"what does the button do?") instead of testing the mode's name. A new mode is one more record
here, plus whatever opens its turns posting an event (as the wake-word detector does).

- `manual` (push-to-talk): the button's press opens the turn and its release commits it; the
  microphone reaches the service only inside a turn.
- `vad` (hands-free): the microphone streams all the time; the service's own voice activity
  detection opens the turn (`speech_started`), ends it (`speech_stopped`), commits the audio and
  asks for the answer itself. The button interrupts an answer or, when idle, mutes.
- `wake` (hands-free behind a wake word): `vad`, but the microphone reaches the service only
  while wake mode's window is open (`wakewindow.WakeWindow`): once speech follows the wake word
  heard on the box (with what was said from just before the phrase, or before the question
  after a pause), or from a press; through the turn; and after an answer, for the follow-up.
  A press wakes it (or interrupts an answer); a long press mutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Mode:
    name: str
    # The microphone streams to the service between turns too (the service listens for speech).
    streams_always: bool
    # The service decides where speech ends, commits and creates the first response itself.
    service_detects_turns: bool
    # What a press of the button does when no answer is playing.
    press: Literal["talk", "mute", "wake"]
    # A turn still open after `audio.max_turn_s`: sent as it is, or given up as lost.
    overlong: Literal["send", "lose"]
    # Seconds of audio from just before the turn opened that the turn takes with it.
    pre_roll_s: float = 0.0
    # The streaming waits for the wake window to open (nothing leaves the box before the wake
    # word).
    gated: bool = False
    # Nothing hears the microphone between turns, so its stream may stop while idle
    # (`micsleep.MicSleep`): a press starts it again.
    mic_sleeps: bool = False
    # The audio block unless `audio.block_ms` says otherwise. Push-to-talk keeps 20 ms: a
    # release commits what was captured by then, so the block in progress bounds what of the
    # last word can be missed or wait. Streaming modes take 100 ms: the service gets ~100 ms
    # appends anyway, a barge-in cuts the speaker at once whatever the block, and a device
    # woken five times less often is most of what streaming costs on a small board.
    block_ms: int = 20


MODES: dict[str, Mode] = {
    "manual": Mode("manual", False, False, press="talk", overlong="send", mic_sleeps=True),
    "vad": Mode("vad", True, True, press="mute", overlong="lose", block_ms=100),
    "wake": Mode("wake", True, True, press="wake", overlong="lose", gated=True, block_ms=100),
}
