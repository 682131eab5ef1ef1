"""Output volume: an integer percent 0–100 that users set, a gain the speaker applies, and a
small state file so `omnid ctl volume …` survives a restart.

Why a percent and a separate gain: people (and `audio.output_volume`) think in even steps, but
equal steps of amplitude are not equal steps of loudness; the sone scale defines "half as loud"
as 10 dB down. `to_gain()` maps percent to amplitude so that loudness is proportional to the
percent: 50 → −10 dB (half as loud), 25 → −20 dB (a quarter), 0 → silence. The gain never
exceeds 1.0, so the speaker's float multiply cannot clip.

Why the file records the configured default too: the runtime setting should survive a restart,
but an operator who edits `audio.output_volume` in the TOML must see that take effect. The file
remembers which configured value it was based on; when the config has changed since, the config
wins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

STEP = 10
"""What `volume up` / `volume down` add or take away, in percent."""

FILENAME = "volume.json"

_USAGE = "volume takes 'up', 'down' or a whole number from 0 to 100"


def default_state_dir() -> Path:
    """Where state lives: systemd's `StateDirectory=` (`$STATE_DIRECTORY`, first entry if it
    lists several); else `/var/lib/omnid` for root; else `$XDG_STATE_HOME/omnid`, or
    `~/.local/state/omnid`, so a developer's run never needs root."""
    env = os.environ.get("STATE_DIRECTORY", "")
    if env:
        return Path(env.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/omnid")
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "omnid"


def to_gain(percent: float) -> float:
    """The linear gain for `percent`: (p/100) ** (1/log10(4)) ≈ (p/100) ** 1.66.

    Loudness doubles per +10 dB (the sone scale), i.e. loudness ∝ gain ** log10(4); inverting
    that makes loudness proportional to the percent. 100 → 1.0, 50 → 0.316 (−10 dB),
    10 → 0.022 (−33 dB), 0 → 0.0. Values outside 0–100 are clamped.
    """
    if math.isnan(percent):
        raise ValueError("volume must be a number from 0 to 100")
    x = min(100.0, max(0.0, float(percent))) / 100.0
    return 0.0 if x == 0.0 else x ** (1.0 / math.log10(4.0))


def apply(command_words: list[str], current: int) -> int:
    """The new volume after a `volume …` command: `up` / `down` (±10, clamped to 0–100) or a
    number `N` (0–100, a trailing % allowed). Raises ValueError with a message fit to send
    back to `omnid ctl` for anything else (including no words: asking for the volume is the
    caller's business)."""
    if len(command_words) != 1:
        got = " ".join(command_words) or "nothing"
        raise ValueError(f"{_USAGE}, not {got!r}")
    word = command_words[0].strip().lower()
    if word == "up":
        return min(100, current + STEP)
    if word == "down":
        return max(0, current - STEP)
    number = word.removesuffix("%")
    if not (number.isascii() and number.isdigit()):  # no signs, decimals, spaces, "½", "٣"
        raise ValueError(f"{_USAGE}, not {command_words[0]!r}")
    value = int(number)
    if value > 100:
        raise ValueError(f"volume {value} is out of range: use 0 to 100")
    return value


class VolumeStore:
    """The persisted volume: `state_dir/volume.json`, e.g. `{"percent": 70, "configured": 100}`.

    `load()` at start-up, `save()` after each change. Writes are atomic (a temporary file in
    the same directory, fsync, rename), so a power cut leaves the old or the new value, never
    half a file. A missing file means "never changed" (the configured default, silently); an
    unreadable or corrupt one means the default too, with one warning. A failed write is a
    warning, not an error: the new volume still applies until the next restart.
    """

    def __init__(self, state_dir: Path, default: int = 100) -> None:
        if not 0 <= default <= 100:
            raise ValueError(f"default volume must be 0 to 100, not {default}")
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / FILENAME
        self.default = default
        self._warned_write = False
        self._warned_read = False

    def load(self) -> int:
        """The volume to start with, in percent."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self.default
        except OSError as exc:
            return self._fall_back(f"cannot be read ({exc.strerror or exc})")
        try:
            percent, configured = self._parse(text)
        except ValueError as exc:
            return self._fall_back(f"is corrupt ({exc})")
        if configured is not None and configured != self.default:
            log.info(
                "audio.output_volume changed from %d to %d since the volume was last set; using %d",
                configured,
                self.default,
                self.default,
            )
            return self.default
        return percent

    def _fall_back(self, why: str) -> int:
        if not self._warned_read:
            self._warned_read = True
            log.warning(
                "saved volume %s %s; using audio.output_volume = %d",
                self.path,
                why,
                self.default,
            )
        return self.default

    @staticmethod
    def _parse(text: str) -> tuple[int, int | None]:
        """(percent, configured default or None). Also takes a bare number, as a person might
        write by hand."""
        text = text.strip()
        if text.isascii() and text.isdigit():
            data: object = {"percent": int(text)}
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        percent, configured = data.get("percent"), data.get("configured")
        if type(percent) is not int or not 0 <= percent <= 100:
            raise ValueError(f"percent {percent!r} is not a whole number from 0 to 100")
        if configured is not None and type(configured) is not int:
            raise ValueError(f"configured {configured!r} is not a whole number")
        return percent, configured

    def save(self, percent: int) -> bool:
        """Persist `percent` atomically; True if it is on disk. Call off the audio path: it
        fsyncs (a few ms on an SD card)."""
        if type(percent) is not int or not 0 <= percent <= 100:
            raise ValueError(f"volume must be a whole number from 0 to 100, not {percent!r}")
        payload = json.dumps({"percent": percent, "configured": self.default}) + "\n"
        tmp: str | None = None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".volume.", suffix=".tmp", dir=self.state_dir)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
            _fsync_dir(self.state_dir)
        except OSError as exc:
            if not self._warned_write:
                self._warned_write = True
                log.warning(
                    "cannot save the volume to %s (%s); it applies until the next restart",
                    self.path,
                    exc.strerror or exc,
                )
            return False
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._warned_write = False
        return True


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
