"""A turn's function calls: which run, when, at most once, and what the model is told.

The conversation hands over each response that has ended asking for calls; this decides, on the
conversation thread and without blocking, what becomes of each call:

- an ask already answered in this turn (a turn asked again after a dropped connection brings the
  same call under a new id) gets the stored output, and nothing runs again; an ask still running
  from before the drop is answered by that run's result;
- past `tools.max_calls_per_turn`, or refused by the toolbox (undeclared, malformed or invalid
  arguments), it gets an error output the model can read, and nothing runs;
- a tool that needs the owner's press waits for it (a cue: the tone and the LED), at most
  `tools.confirm_s`; without it the output says it was not confirmed;
- the rest start at once, on their own threads, and post their results back.

Each call ends in one `tool` record through the feedback seam. A barge-in or tap while calls are
outstanding supersedes them: the model gets "superseded" for what has no result, so its history
holds no dangling call, and nothing is asked of it. A command already running is not killed by
that: it runs to its end or its timeout, because a half-run command (a relay switched on but not
off) leaves the house in a state nobody asked for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from omnid import events as ev
from omnid.config import Config
from omnid.feedback import Feedback
from omnid.protocol import FunctionCall
from omnid.settings import Settings
from omnid.tools import Invocation, Outcome, Toolbox, call_key, error_output
from omnid.turn import Turn

log = logging.getLogger("omnid.calls")

SUPERSEDED = json.dumps({"status": "superseded: the user interrupted; nothing more to say"})
MARKUP = "<tool_call>"  # what a model that speaks its call instead of making it says


@dataclass
class _Running:
    call: FunctionCall
    turn: int
    started_t: float


class Calls:
    def __init__(
        self,
        settings: Settings,
        tools: Toolbox,
        feedback: Feedback,
        post: Callable[[ev.Event], None],
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self.tools = tools
        self._feedback = feedback
        self._post = post
        self._clock = clock
        self._running: dict[str, _Running] = {}  # call id → the run whose result is awaited

    @property
    def cfg(self) -> Config:
        return self._settings.current

    def patience_s(self) -> float:
        """How long a turn may wait for its calls' results before it is given up: the longest
        a tool may run plus a confirmation, with room to spare."""
        tools = self.cfg.tools
        longest = max([tools.timeout_s, *(c.timeout_s or 0 for c in tools.command)])
        return longest + tools.confirm_s + 10.0

    # ------------------------------------------------------------------ the calls of a response

    def dispatch(self, turn: Turn) -> None:
        """Every call of the response that has just ended, each once (a repeated
        `response.done` runs nothing twice)."""
        for call in turn.calls:
            if call.call_id not in turn.ledger.keys:
                self._dispatch(turn, call)

    def _dispatch(self, turn: Turn, call: FunctionCall) -> None:
        ledger, key = turn.ledger, call_key(call)
        ledger.keys[call.call_id] = key
        if key in ledger.outcomes:
            log.info("turn %d: %s asked again; its first run answers", turn.number, call.name)
            turn.results[call.call_id] = ledger.outcomes[key][1]
            return
        if ledger.running(key):
            log.info("turn %d: %s asked again while it runs", turn.number, call.name)
            return
        limit = self.cfg.tools.max_calls_per_turn
        if ledger.counted >= limit:
            why = f"{call.name} was not run: at most {limit} calls are allowed in one turn"
            self._finished(turn, call, Outcome("refused", error_output(why)))
            return
        ledger.counted += 1
        prepared = self.tools.prepare(call)
        if isinstance(prepared, Outcome):
            self._finished(turn, call, prepared)
        elif prepared.confirm:
            turn.confirming.append(prepared)
            if len(turn.confirming) == 1:
                self._ask(turn)
        else:
            self._start(turn, prepared)

    def _start(self, turn: Turn, invocation: Invocation) -> None:
        turn.ledger.started.add(invocation.key)
        run = _Running(invocation.call, turn.number, self._clock())
        self._running[invocation.call.call_id] = run
        self.tools.start(invocation, self._post)

    # ------------------------------------------------------------------ the owner's press

    def _ask(self, turn: Turn) -> None:
        waiting = turn.confirming[0].call
        turn.confirm_deadline = self._clock() + self.cfg.tools.confirm_s
        log.info(
            "turn %d: %s waits for a press to confirm it (%g s)",
            turn.number,
            waiting.name,
            self.cfg.tools.confirm_s,
        )
        self._feedback.cue("confirm")

    def confirm(self, turn: Turn | None) -> bool:
        """A press while a call waits for one confirms it (and starts no turn)."""
        if turn is None or not turn.confirming:
            return False
        invocation = turn.confirming.pop(0)
        log.info("turn %d: %s confirmed", turn.number, invocation.call.name)
        self._feedback.cue("confirm_over")
        self._start(turn, invocation)
        if turn.confirming:
            self._ask(turn)
        return True

    def tick(self, turn: Turn, now: float) -> bool:
        """A confirmation not given in time: True when that answered a call."""
        if not turn.confirming or now < turn.confirm_deadline:
            return False
        if turn.confirming:
            invocation = turn.confirming.pop(0)
            self._feedback.cue("confirm_over")
            name, wait = invocation.call.name, self.cfg.tools.confirm_s
            why = (
                f"{name} was not run: it needs the owner to confirm with a press of the button, "
                f"and nobody pressed it within {wait:g} seconds"
            )
            self._finished(turn, invocation.call, Outcome("unconfirmed", error_output(why)))
            if turn.confirming:
                self._ask(turn)
        return True

    # ------------------------------------------------------------------ results

    def result(self, turn: Turn | None, result: ev.FunctionResult) -> bool:
        """A run has finished. True when it answered calls of `turn` (the conversation then
        sends the results once all are in)."""
        run = self._running.pop(result.call_id, None)
        if run is None:
            log.info("result of call %s arrived after the call was superseded", result.call_id)
            return False
        outcome = Outcome(result.outcome, result.output, result.duration_ms)
        self._record(run.call, run.turn, outcome)
        if turn is None or turn.number != run.turn:
            log.info("result of %s arrived after its turn ended", run.call.name)
            return False
        return self._store(turn, run.call, outcome)

    def _finished(self, turn: Turn, call: FunctionCall, outcome: Outcome) -> None:
        """A call decided without running anything (refused, unconfirmed)."""
        self._record(call, turn.number, outcome)
        self._store(turn, call, outcome)

    def _store(self, turn: Turn, call: FunctionCall, outcome: Outcome) -> bool:
        key = turn.ledger.keys.get(call.call_id, call_key(call))
        turn.ledger.outcomes[key] = (outcome.outcome, outcome.output)
        answered = False
        for waiting in turn.calls:  # this call, and the same ask under a replay's new id
            if turn.ledger.keys.get(waiting.call_id) == key:
                turn.results[waiting.call_id] = outcome.output
                answered = True
        return answered

    # ------------------------------------------------------------------ endings

    def supersede(self, turn: Turn) -> list[tuple[str, str]]:
        """The user interrupted while calls were outstanding: the outputs to send now (the
        real ones where they are in, "superseded" for the rest), with no response asked for."""
        if not turn.calls or turn.response_requested:
            return []  # none, or the calling response still runs (it is cancelled instead)
        if turn.confirming:
            self._feedback.cue("confirm_over")
        for invocation in turn.confirming:
            self._record(invocation.call, turn.number, Outcome("superseded", SUPERSEDED))
        turn.confirming.clear()
        outputs = []
        for call in turn.calls:
            if call.call_id in turn.results:
                outputs.append((call.call_id, turn.results[call.call_id]))
                continue
            run = self._running.pop(call.call_id, None)
            if run is not None:
                ran = round((self._clock() - run.started_t) * 1000, 1)
                log.info("%s superseded while it runs; it is left to finish", call.name)
                self._record(call, turn.number, Outcome("superseded", SUPERSEDED, ran))
            outputs.append((call.call_id, SUPERSEDED))
        return outputs

    def forget_confirmations(self, turn: Turn) -> None:
        """The session that asked is gone: a waiting call never ran, and the replayed turn
        will ask again."""
        if turn.confirming:
            self._feedback.cue("confirm_over")
            turn.confirming.clear()

    def _record(self, call: FunctionCall, turn: int, outcome: Outcome) -> None:
        fields: dict[str, object] = {
            "TOOL": call.name,
            "CALL_ID": call.call_id,
            "OUTCOME": outcome.outcome,
            "DURATION_MS": outcome.duration_ms,
            "TURN": turn,
        }
        if self.cfg.log.transcripts:  # the owner's words and the house's state: opt-in
            fields["ARGUMENTS"] = call.arguments
            fields["OUTPUT"] = outcome.output
        level = logging.INFO if outcome.outcome == "ok" else logging.WARNING
        self._feedback.tool(fields, level)


def spoke_markup(transcript: str) -> bool:
    """A model that writes its call into the spoken answer instead of making it."""
    return MARKUP in transcript
