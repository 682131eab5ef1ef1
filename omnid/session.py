"""The link's lifecycle: connect in the background, configure, report ready, back off, reconnect.

Owned by the conversation thread: every method here runs on it. Blocking work (the TCP/TLS/HTTP
handshake) happens on a short-lived connector thread that only posts `LinkUp` / `LinkFailed`.
A session is *ready* once the service has answered our `session.update` with `session.updated`;
only then may audio stream (protocol.md).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from omnid import protocol
from omnid.config import Config
from omnid.events import Event, LinkFailed, LinkUp
from omnid.link import PING_INTERVAL_S, Link, LinkError
from omnid.models import MODELS
from omnid.supervisor import Journal

log = logging.getLogger("omnid.session")


class Backoff:
    """Capped exponential backoff with full jitter, reset once a connection has been stable.

    Full jitter spreads a fleet's reconnects after a shared outage (AWS architecture blog's
    analysis); the floor for permanent refusals keeps a bad key from hammering the service.
    """

    def __init__(
        self,
        base_s: float = 0.5,
        cap_s: float = 30.0,
        permanent_s: float = 60.0,
        stable_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base_s, self.cap_s, self.permanent_s, self.stable_s = (
            base_s,
            cap_s,
            permanent_s,
            stable_s,
        )
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self, permanent: bool = False) -> float:
        self.attempt += 1
        if permanent:
            return self.permanent_s
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt - 1, 30))
        return self._rng.uniform(0, ceiling)

    def connected_for(self, seconds: float) -> None:
        if seconds >= self.stable_s:
            self.attempt = 0


def session_config(cfg: Config, instructions: str) -> dict[str, Any]:
    """The `session` object of our `session.update`, from the config (protocol.md's table)."""
    s = cfg.session
    turn_detection: dict[str, Any] | None = None
    if s.mode == "vad":
        turn_detection = {
            "type": s.vad.type,
            "threshold": s.vad.threshold,
            "silence_duration_ms": s.vad.silence_duration_ms,
            "prefix_padding_ms": s.vad.prefix_padding_ms,
        }
    session: dict[str, Any] = {
        "modalities": list(s.modalities),
        "instructions": instructions,
        # The official SDK sends pcm16 for both directions; the service accepts it.
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "turn_detection": turn_detection,
        "input_audio_transcription": (
            {"model": s.transcription_model} if s.transcribe_input else None
        ),
    }
    if cfg.effective_voice:  # unknown model and no voice set: let the service choose
        session["voice"] = cfg.effective_voice
    info = MODELS.get(cfg.api.model)
    if s.enable_search and (info is None or info.search):
        session["enable_search"] = True
    return session


class Session:
    """One service session at a time, re-established on its own when lost."""

    def __init__(
        self,
        cfg: Config,
        post: Callable[[Event], None],
        journal: Journal,
        clock: Callable[[], float],
        backoff: Backoff | None = None,
    ) -> None:
        self.cfg = cfg
        self._post = post
        self._journal = journal
        self._clock = clock
        self.backoff = backoff or Backoff()
        self.link: Link | None = None
        self.state = "offline"  # offline | connecting | configuring | ready
        self.session_id = ""
        self.ready_at = 0.0
        self.retry_at: float | None = None
        self.last_error = ""
        self.instructions = cfg.session.instructions
        self._connecting: Link | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def age_s(self) -> float:
        return self._clock() - self.ready_at if self.ready else 0.0

    # ------------------------------------------------------------------ connecting

    def connect_now(self) -> None:
        """Start a connection attempt unless one is under way or a session is up."""
        if self.state != "offline":
            return
        api_key = self.cfg.api_key.get_secret_value() if self.cfg.api_key else ""
        link = Link(
            self.cfg.api.url,
            self.cfg.api.model,
            api_key,
            self._post,
            connect_timeout_s=self.cfg.api.connect_timeout_s,
        )
        self._connecting = link
        self.state = "connecting"
        self.retry_at = None
        threading.Thread(target=self._connect, args=(link,), name="connect", daemon=True).start()

    def _connect(self, link: Link) -> None:
        try:
            link.connect()
        except LinkError as exc:
            self._post(LinkFailed(exc))
            return
        self._post(LinkUp(link))
        link.start_reader()

    def on_link_up(self, link: Link) -> None:
        if link is not self._connecting:
            link.close()
            return
        self._connecting = None
        self.link = link
        self.state = "configuring"
        log.debug("connected to %s, waiting for session.created", link.url.split("?")[0])

    def on_link_failed(self, error: LinkError) -> None:
        self._connecting = None
        self.state = "offline"
        self._schedule_retry(str(error), permanent=error.permanent)

    def _schedule_retry(self, why: str, permanent: bool = False) -> None:
        delay = self.backoff.next_delay(permanent)
        self.retry_at = self._clock() + delay
        self.last_error = why
        level = logging.WARNING if self.backoff.attempt == 1 or permanent else logging.DEBUG
        log.log(level, "offline: %s; retrying in %.1f s", why, delay)
        self._journal.record(
            "reconnect",
            f"reconnect attempt {self.backoff.attempt} in {delay:.1f} s",
            ATTEMPT=self.backoff.attempt,
            DELAY_S=round(delay, 3),
        )

    # ------------------------------------------------------------------ events from the link

    def on_message(self, link: Link, event: protocol.ServerEvent) -> bool:
        """Handle session-level events; True when this event made the session ready."""
        if isinstance(event, protocol.SessionCreated):
            link.session_id = event.session_id
            link.send(protocol.session_update(session_config(self.cfg, self.instructions)))
            return False
        if isinstance(event, protocol.SessionUpdated) and self.state == "configuring":
            self.state = "ready"
            self.session_id = link.session_id or event.session_id
            self.ready_at = self._clock()
            self.last_error = ""
            log.info("session %s ready (%s)", self.session_id, self.cfg.api.model)
            self._journal.record(
                "session_open",
                f"session {self.session_id} open",
                SESSION=self.session_id,
                MODEL=self.cfg.api.model,
            )
            return True
        if isinstance(event, protocol.Error) and self.state == "configuring":
            # The service refused our configuration: retrying fast would only repeat it.
            log.error(
                "the service refused the session configuration: %s (param %s)",
                event.message,
                event.param or "-",
            )
            self.drop(f"session.update refused: {event.message}", permanent=True)
        return False

    def on_closed(self, link: Link, code: int | None, reason: str) -> bool:
        """The socket is gone. True when it was our current session (the caller recovers)."""
        if link is not self.link:
            return False
        age = self.age_s()
        self.backoff.connected_for(age)
        self._journal.record(
            "session_close",
            f"session {self.session_id or '-'} closed ({code}: {reason or '-'})",
            SESSION=self.session_id,
            CLOSE_CODE=code if code is not None else "",
            REASON=reason,
            SESSION_AGE_S=round(age, 1),
        )
        self.link = None
        self.session_id = ""
        self.state = "offline"
        permanent = code == 1007  # quota exhausted (protocol.md, reported)
        self._schedule_retry(f"closed ({code}: {reason or 'no reason'})", permanent=permanent)
        return True

    def drop(self, why: str, permanent: bool = False) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.close(1000)
        self.state = "offline"
        self.session_id = ""
        self._schedule_retry(why, permanent)

    # ------------------------------------------------------------------ from the loop

    def send(self, event: protocol.Event) -> bool:
        link = self.link
        return link is not None and self.ready and link.send(event)

    def tick(self, now: float) -> None:
        if self.state == "offline" and self.retry_at is not None and now >= self.retry_at:
            self.connect_now()
        link = self.link
        if link is not None and now - link.last_send_t >= PING_INTERVAL_S:
            link.ping()
            link.last_send_t = now

    def close(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.close(1000, "client shutdown")
        if self._connecting is not None:
            self._connecting = None
        self.state = "offline"
        self.retry_at = None
