"""The link's lifecycle: connect, configure, back off, recover from idle closes, and roll over.

Owned by the conversation thread: every method runs on it. Blocking work (the TCP/TLS/HTTP
handshake) happens on a short-lived connector thread that only posts `LinkUp` / `LinkFailed`.
A session is *ready* once the service has answered our `session.update` with `session.updated`;
only then may audio stream (docs/protocol.md).

Rollover is make-before-break: before the service's 120-minute cap, a second link is opened and
configured while the first carries on; the conversation swaps at a turn boundary and the old link
is closed with 1000. Every new session — rollover, reconnect, idle re-open — gets the configured
instructions plus the last turns' transcripts, the documented way to carry context over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from omnid import protocol
from omnid.backoff import Backoff
from omnid.config import Config
from omnid.events import Event, LinkFailed, LinkUp
from omnid.link import PING_INTERVAL_S, Link, LinkError
from omnid.models import MODELS
from omnid.modes import MODES
from omnid.settings import Settings
from omnid.supervisor import Journal
from omnid.turn import Turn

log = logging.getLogger("omnid.session")

CARRY_OVER_HEADING = "Conversation so far (continue it naturally; do not repeat it):"
CARRY_OVER_CHARS = 2000
SUMMARY_EVERY_S = 60.0
ROLLOVER_RETRY_S = 30.0


def carry_over_instructions(base: str, turns: Iterable[Turn], limit: int = CARRY_OVER_CHARS) -> str:
    """The configured instructions, then the last turns as `User:`/`Assistant:` lines, oldest
    dropped first so the whole stays within about `limit` characters."""
    blocks = []
    for turn in turns:
        lines = [f"User: {turn.user_text}"] if turn.user_text else []
        if turn.assistant_text:
            lines.append(f"Assistant: {turn.assistant_text}")
        if lines:
            blocks.append("\n".join(lines))
    while blocks and sum(len(b) + 1 for b in blocks) > limit:
        blocks.pop(0)
    if not blocks:
        return base
    return f"{base}\n\n{CARRY_OVER_HEADING}\n" + "\n".join(blocks)


def session_config(
    cfg: Config, instructions: str, tools: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The `session` object of our `session.update`, from the config (docs/protocol.md's table).
    `tools` in the nested form; none sent when empty (never `tool_choice`)."""
    s = cfg.session
    turn_detection: dict[str, Any] | None = None
    if MODES[s.mode].service_detects_turns:
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
    if tools:
        session["tools"] = tools
    return session


class Session:
    """One service session at a time (two during a rollover), re-established on its own."""

    def __init__(
        self,
        settings: Settings,
        post: Callable[[Event], None],
        journal: Journal,
        clock: Callable[[], float],
        history: Sequence[Turn] = (),
        open_link: Callable[[], Link] | None = None,
        backoff: Backoff | None = None,
        declare: Callable[[Config], list[dict[str, Any]]] | None = None,
    ) -> None:
        self._settings = settings
        self._declare = declare or (lambda cfg: [])  # the tools the model may call
        self._history = history  # the conversation's past turns, for the carry-over
        self._open = open_link or self._open_link
        self._post = post
        self._journal = journal
        self._clock = clock
        self.backoff = backoff or Backoff()
        self.link: Link | None = None  # the current session's link
        self.next: Link | None = None  # a rollover successor, being opened
        self.next_ready = False
        self.state = "offline"  # offline | connecting | configuring | ready
        self.session_id = ""
        self.ready_at = 0.0
        self.retry_at: float | None = None
        self.rollover_retry_at = 0.0
        self.last_error = ""
        self.auth_failed = False
        self._idle_closed = False
        self._reconfiguring = False
        self._updates_due = 0  # session.update sent to the current link, not yet confirmed
        self._last_summary = -SUMMARY_EVERY_S
        self._opened_at: dict[int, float] = {}

    @property
    def cfg(self) -> Config:
        return self._settings.current

    def _session_config(self) -> dict[str, Any]:
        cfg = self.cfg
        return session_config(cfg, self.instructions(), self._declare(cfg))

    def instructions(self) -> str:
        """What a new session is told: the configured instructions, and the last turns."""
        keep = self.cfg.session.carry_over_turns
        recent = list(self._history)[-keep:] if keep else []
        return carry_over_instructions(self.cfg.session.instructions, recent)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def rollover_after_s(self) -> float:
        return self.cfg.session.rollover_after_min * 60  # read live: a reload may change it

    def age_s(self) -> float:
        return self._clock() - self.ready_at if self.ready else 0.0

    # ------------------------------------------------------------------ connecting

    def _open_link(self) -> Link:
        api_key = self.cfg.api_key.get_secret_value() if self.cfg.api_key else ""
        link = Link(
            self.cfg.api.url,
            self.cfg.api.model,
            api_key,
            self._post,
            connect_timeout_s=self.cfg.api.connect_timeout_s,
        )
        threading.Thread(target=self._connect, args=(link,), name="connect", daemon=True).start()
        return link

    def connect_now(self, user: bool = False) -> None:
        """Start an attempt unless one is under way or up. A user's press skips the wait —
        except after a refusal (bad key, quota): that waits its full minute regardless."""
        if self.state != "offline" or (user and self.auth_failed and self.retry_at is not None):
            return
        if self.next is not None and self.next_ready:
            return  # a configured successor is waiting: the conversation swaps to it
        self.link = self._open()
        self.state = "connecting"
        self.retry_at = None

    def _connect(self, link: Link) -> None:
        try:
            link.connect()
        except LinkError as exc:
            self._post(LinkFailed(exc, link))
            return
        self._post(LinkUp(link))
        link.start_reader()

    def on_link_up(self, link: Link) -> None:
        if link is self.link and self.state == "connecting":
            self.state = "configuring"
        elif link is not self.next:
            link.close()

    def on_link_failed(self, error: LinkError, link: Link | None) -> None:
        if link is not None and link is self.next:
            self._abandon_rollover(str(error))
            return
        if link is not self.link:
            return
        self.link = None
        self.state = "offline"
        self.auth_failed = error.permanent
        self._schedule_retry(str(error), permanent=error.permanent)

    def _schedule_retry(self, why: str, permanent: bool = False) -> None:
        delay = self.backoff.next_delay(permanent)
        now = self._clock()
        self.retry_at = now + delay
        self.last_error = why
        if self.backoff.attempt == 1 or permanent:
            log.warning("offline: %s; retrying in %.1f s", why, delay)
            self._last_summary = now
        elif now - self._last_summary >= SUMMARY_EVERY_S:
            log.warning("still offline after %d attempts (last: %s)", self.backoff.attempt, why)
            self._last_summary = now
        self._journal.record(
            "reconnect",
            f"reconnect attempt {self.backoff.attempt} in {delay:.1f} s",
            logging.DEBUG,
            ATTEMPT=self.backoff.attempt,
            DELAY_S=round(delay, 3),
            REASON=why,
        )

    # ------------------------------------------------------------------ events from a link

    def on_message(self, link: Link, event: protocol.ServerEvent) -> bool:
        """Session-level events of the current or the rollover link. True when the current
        session has just become ready (the caller resumes streaming)."""
        if isinstance(event, protocol.SessionCreated):
            link.session_id = event.session_id
            link.send(protocol.session_update(self._session_config()))
            if link is self.link:
                self._updates_due = 1
        elif isinstance(event, protocol.SessionUpdated):
            if link is self.next and not self.next_ready:
                self.next_ready = True
                log.debug("rollover session %s ready, waiting for a turn boundary", link.session_id)
            elif link is self.link and self.state == "configuring":
                self._updates_due -= 1
                if self._updates_due <= 0:  # the last update sent (a reload's) is in force
                    self._become_ready(link)
                    return True
        elif isinstance(event, protocol.Error) and event.idle_close:
            self._idle_closed = link is self.link
        elif (
            isinstance(event, protocol.Error)
            and not event.no_active_response  # a late answer to a cancel, not to our update
            and (link is self.next or (link is self.link and self.state == "configuring"))
        ):
            # The service refused our configuration: retrying fast would only repeat it.
            log.error(
                "the service refused the session configuration: %s (param %s)",
                event.message,
                event.param or "-",
            )
            if link is self.next:
                self._abandon_rollover(event.message)
            else:
                self.drop(f"session.update refused: {event.message}", permanent=True)
        return False

    def _become_ready(self, link: Link) -> None:
        self.state = "ready"
        self.retry_at = None
        self.last_error = ""
        self.auth_failed = False
        if self._reconfiguring and link.session_id == self.session_id:
            self._reconfiguring = False
            log.info("session %s reconfigured", self.session_id)
            return
        self._reconfiguring = False
        self.session_id = link.session_id
        self.ready_at = self._clock()
        log.info("session %s ready (%s)", self.session_id, self.cfg.api.model)
        self._journal.record(
            "session_open",
            f"session {self.session_id} open",
            SESSION=self.session_id,
            MODEL=self.cfg.api.model,
        )

    def on_closed(self, link: Link, code: int | None, reason: str) -> bool:
        """A socket is gone. True when it was the current session (the caller recovers)."""
        if link is self.next:
            self._abandon_rollover(f"closed ({code}: {reason or 'no reason'})")
            return False
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
        self.link, self.session_id, self.state = None, "", "offline"
        self._reconfiguring = False
        if self.next is not None and self.next_ready:
            # The conversation swaps to it (its one swap path), after recovering the turn.
            log.info("session closed during a rollover: switching to the new one now")
            return True
        idle, self._idle_closed = self._idle_closed, False
        if idle:
            # The service closes sessions that generated nothing for ~300 s: not a fault.
            mode = MODES[self.cfg.session.mode]
            if self.cfg.session.keep_warm or (mode.streams_always and not mode.gated):
                log.info("session idle-closed by the service; reopening")
                self.connect_now()
            else:
                log.info("session idle-closed by the service; reconnecting at the next press")
            return True
        # 1007: the service refused us (an exhausted quota): a press must not hurry the minute.
        self.auth_failed = code == 1007
        self._schedule_retry(f"closed ({code}: {reason or 'no reason'})", permanent=code == 1007)
        return True

    def reconfigure(self) -> None:
        """Send the (reloaded) configuration to the current session and wait for
        `session.updated` before anything streams again: the next turn runs under it."""
        if self.next is not None:
            self._abandon_rollover("configuration reloaded")  # it was told the old settings
        link = self.link
        if link is None or self.state not in ("ready", "configuring") or not link.session_id:
            return  # a session still to come is configured from the new settings anyway
        self._reconfiguring = self.ready
        self.state = "configuring"
        self._updates_due += 1
        link.send(protocol.session_update(self._session_config()))

    def adopt(self, old: Config, new: Config) -> str:
        """The settings were swapped (at an idle moment). A new endpoint, model, key or voice
        needs a new connection (the service refuses a voice change once it has spoken); other
        session settings go to the current session in a `session.update`, and nothing streams
        until the service has confirmed them. Returns how, for the log."""
        if (new.api, new.api_key, new.effective_voice) != (
            old.api,
            old.api_key,
            old.effective_voice,
        ):
            self.reconnect("configuration reloaded")
            return " (new connection for the new endpoint, model, key or voice)"
        if new.session != old.session or new.tools != old.tools:
            self.reconfigure()
            return " (session.update sent)"
        return ""

    def reconnect(self, why: str) -> None:
        """A new connection now (a new endpoint, model, key or voice): close the current
        session and open another at once, without the backoff a failure would cost."""
        link, self.link = self.link, None
        if link is not None:
            link.close(1000, why)
        if self.next is not None:
            self._abandon_rollover(why)
        self.state, self.session_id, self.retry_at = "offline", "", None
        self.connect_now()

    def drop(self, why: str, permanent: bool = False) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.close(1000)
        self.state, self.session_id = "offline", ""
        self._schedule_retry(why, permanent)

    # ------------------------------------------------------------------ rollover

    def rollover_due(self, now: float) -> bool:
        return (
            self.ready
            and self.next is None
            and now - self.ready_at >= self.rollover_after_s
            and now >= self.rollover_retry_at
        )

    def start_rollover(self) -> None:
        log.info(
            "session %s is %.1f min old: opening its successor", self.session_id, self.age_s() / 60
        )
        self.next, self.next_ready = self._open(), False

    def swap(self) -> None:
        """Make the ready successor current and close the old session with 1000."""
        new, old = self.next, self.link
        assert new is not None
        old_id, old_age = self.session_id, self.age_s()
        self.next, self.next_ready = None, False
        self.link = new
        self._become_ready(new)
        if old is not None:
            old.close(1000, "rollover")
        log.info(
            "rolled over from %s (%.1f min) to %s", old_id or "-", old_age / 60, new.session_id
        )
        self._journal.record(
            "rollover",
            f"rolled over from {old_id or '-'} to {new.session_id}",
            OLD_SESSION=old_id,
            NEW_SESSION=new.session_id,
            OLD_SESSION_AGE_S=round(old_age, 1),
            NEW_SESSION_AGE_S=0,
        )

    def _abandon_rollover(self, why: str) -> None:
        link, self.next, self.next_ready = self.next, None, False
        if link is not None:
            link.close(1000)
        self.rollover_retry_at = self._clock() + ROLLOVER_RETRY_S
        log.warning("rollover failed (%s); the current session carries on", why)

    # ------------------------------------------------------------------ from the loop

    def send(self, event: protocol.Event) -> bool:
        link = self.link
        return link is not None and self.ready and link.send(event)

    def tick(self, now: float) -> None:
        if self.state == "offline" and self.retry_at is not None and now >= self.retry_at:
            self.connect_now()
        for link in (self.link, self.next):
            if link is None:
                continue
            link.check_writer()
            heard = max(link.last_recv_t, link.last_ping_t)  # a ping's pong is heard, unseen
            if now - link.last_send_t >= PING_INTERVAL_S or now - heard >= PING_INTERVAL_S:
                link.ping()
                link.last_send_t = link.last_ping_t = now

    def close(self) -> None:
        links = [link for link in (self.link, self.next) if link is not None]
        for link in links:
            link.close(1000, "client shutdown")
        for link in links:
            link.finish()  # the close frames go out before the process ends
        self.link = self.next = None
        self.state, self.retry_at = "offline", None
