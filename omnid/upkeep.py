"""Keeping the daemon honest with systemd: the watchdog, SIGHUP reloads, and test-only fault hooks.

A mixin of `Conversation`, run on its thread. The watchdog is pinged from the loop's own tick, and
only while the microphone delivers blocks (or is known missing and being reopened): a stalled loop
or a dead capture stream stops the pings and systemd restarts the daemon — never a silently deaf
device. A reload applies at the next idle moment, so no turn is cut; session settings reach the
service through a make-before-break rollover.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from omnid import events as ev

if TYPE_CHECKING:
    from omnid.config import Config
    from omnid.quota import DailyBudget
    from omnid.session import Session
    from omnid.supervisor import Notifier, Watchdog
    from omnid.turn import Turn

log = logging.getLogger("omnid.upkeep")

TEST_HOOKS = os.environ.get("OMNID_TEST_HOOKS") == "1"


class Upkeep:
    cfg: Config
    session: Session
    notifier: Notifier
    watchdog: Watchdog | None
    turn: Turn | None
    vad: bool
    last_mic_t: float
    mic_missing: bool
    mic: Any
    speaker: Any
    devices: Any
    audio_trouble: str
    volume_pct: int
    state: str
    _pending_cfg: Config | None
    budget: DailyBudget

    def _finish(self, turn: Turn, outcome: str, why: str = "") -> None:
        raise NotImplementedError

    def _on_audio_lost(self, reason: str) -> None:
        """Known missing and being reopened: the watchdog keeps being fed, STATUS says why."""
        from omnid.devices import SilentSpeaker

        self.mic_missing = True
        self.audio_trouble = f"audio device lost ({reason}); reopening"
        self.speaker.flush()
        self.speaker = SilentSpeaker()
        if self.turn is not None and self.state == "speaking":
            self._finish(self.turn, "lost", "the speaker went away during the answer")
        if self.devices is not None:
            self.devices.reopen(reason)

    def _on_audio_retry(self, event: ev.AudioRetry) -> None:
        self.audio_trouble = (
            f"audio device missing ({event.reason}); retrying in {event.delay_s:.0f} s"
        )

    def _on_audio_ready(self, event: ev.AudioReady) -> None:
        from omnid.volume import to_gain

        self.mic, self.speaker = event.mic, event.speaker
        self.speaker.volume = to_gain(self.volume_pct)
        self.mic_missing = False
        self.audio_trouble = ""
        log.info("audio resumed")

    def _watchdog_tick(self, now: float) -> None:
        if self.watchdog is None or not self.watchdog.due(now):
            return
        stale_after = max(0.5, min(2.0, self.watchdog.interval_s))
        if self.mic_missing or now - self.last_mic_t < stale_after:
            self.notifier.watchdog()
        else:
            log.debug(
                "watchdog: no microphone block for %.1f s: not pinging", now - self.last_mic_t
            )

    def _on_reload(self) -> None:
        from omnid.config import ConfigError, keep_restart_only, load_config

        try:
            new = load_config(self.cfg.source_path, require_api_key=True)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload: %s", problem)
            log.error("reload: the new configuration is invalid; keeping the running one")
            self.notifier.ready()
            return
        new, changed = keep_restart_only(new, self.cfg)
        if changed:
            log.warning(
                "reload: %s changed; that needs a restart (systemctl restart omnid)",
                ", ".join(changed),
            )
        self._pending_cfg = new
        log.info("reload: new configuration read; applying at the next idle moment")

    def _apply_reload(self) -> None:
        """Swap the configuration in, at an idle moment: the next turn runs under it. A new
        endpoint, model, key or voice needs a new connection (the service refuses a voice change
        once it has spoken); other session settings go to the current session in a
        `session.update`, and nothing streams until the service has confirmed them."""
        new, self._pending_cfg = self._pending_cfg, None
        if new is None:
            return
        old = self.cfg
        self.cfg = self.session.cfg = new
        self.budget.limit = new.usage.daily_token_limit
        logging.getLogger().setLevel(new.log.level.upper())
        how = ""
        connection = (old.api, old.api_key, old.effective_voice)
        if (new.api, new.api_key, new.effective_voice) != connection:
            self.session.reconnect("configuration reloaded")
            how = " (new connection for the new endpoint, model, key or voice)"
        elif new.session != old.session:
            self.session.reconfigure()
            how = " (session.update sent)"
        log.info("reload: applied%s", how)
        self.notifier.ready()

    def _test_hook(self, req: ev.ControlRequest) -> bool:
        """`_stall S` blocks the loop, `_kill-mic` stops capture behind the daemon's back (what
        the watchdog must notice), `_lose-mic` stops the PortAudio stream as a failing device
        does (what the reopen must handle). Only with OMNID_TEST_HOOKS=1 in the environment."""
        if not (TEST_HOOKS and req.command.startswith("_")):
            return False
        req.reply({"ok": True, "state": "hook"})
        if req.command == "_stall":
            time.sleep(float(req.args[0]) if req.args else 5.0)
        elif req.command == "_kill-mic" and self.mic is not None:
            self.mic.close()  # behind the daemon's back: no loss is reported
        elif req.command == "_lose-mic" and hasattr(self.mic, "lose"):
            self.mic.lose()  # PortAudio stops the stream as for a failing device
        return True
