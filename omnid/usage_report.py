"""`omnid usage`: what the service counted, read back from the journal, per local day and model.

The daemon writes one `usage` record per `response.done` with the service's own numbers
(`omnid.usage.record_usage`), a `turn` record per turn and a `session_open` record per session.
This module reads them back — from `journalctl -o json` of the omnid unit, or from a saved export
of the same (one JSON object per line; journald's binary "export" format is not read) — and sums
them per local calendar day (from `__REALTIME_TIMESTAMP`, in the process's time zone, which is what
the daily token limit counts in too) and per model, by modality. With prices configured
(`[usage]`, per million tokens) it estimates the cost.

An export is evidence, not input we control: lines that are not JSON objects, records with
missing or non-numeric fields, and unreadable timestamps are skipped and counted, never fatal.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

UNIT = "omnid.service"
EVENTS = ("usage", "turn", "session_open", "tool", "wake")
# (key in reports, journal field, [usage] price key): the five billed modalities.
MODALITIES = (
    ("input_text_tokens", "OMNID_INPUT_TEXT_TOKENS", "price_input_text"),
    ("input_audio_tokens", "OMNID_INPUT_AUDIO_TOKENS", "price_input_audio"),
    ("input_image_tokens", "OMNID_INPUT_IMAGE_TOKENS", "price_input_image"),
    ("output_text_tokens", "OMNID_OUTPUT_TEXT_TOKENS", "price_output_text"),
    ("output_audio_tokens", "OMNID_OUTPUT_AUDIO_TOKENS", "price_output_audio"),
)
SUMS = (
    ("input_tokens", "OMNID_INPUT_TOKENS"),
    ("output_tokens", "OMNID_OUTPUT_TOKENS"),
    ("total_tokens", "OMNID_TOTAL_TOKENS"),
)


EX_FAILED, EX_USAGE, EX_NOINPUT, EX_UNAVAILABLE, EX_CONFIG = 1, 64, 66, 69, 78


class UsageError(Exception):
    """Why the report cannot be made, and the exit status that says so."""

    def __init__(self, message: str, status: int = EX_USAGE) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------ reading


def journalctl_command(since: str | None, until: str | None) -> list[str]:
    """The journalctl call: the unit's records of the four events (one field's values OR,
    different fields AND), as JSON lines. --since/--until go through in journalctl's own syntax."""
    cmd = ["journalctl", "-o", "json", "--no-pager", "-q", f"_SYSTEMD_UNIT={UNIT}"]
    cmd += [f"OMNID_EVENT={event}" for event in EVENTS]
    if since:
        cmd += ["--since", since]
    if until:
        cmd += ["--until", until]
    return cmd


def journal_lines(since: str | None, until: str | None) -> Iterator[str]:
    """Stream `journalctl -o json` output line by line (months of records need not fit in RAM).
    Its stderr goes to a file, so a chatty journalctl cannot block on a full pipe."""
    with tempfile.TemporaryFile(mode="w+", errors="replace") as errors:
        try:
            proc = subprocess.Popen(
                journalctl_command(since, until),
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                errors="replace",
            )
        except FileNotFoundError as exc:
            raise UsageError(
                "journalctl not found: is this a systemd machine? (try --file)", EX_UNAVAILABLE
            ) from exc
        assert proc.stdout is not None
        with proc.stdout:
            yield from proc.stdout
        if proc.wait() != 0:
            errors.seek(0)
            why = errors.read().strip() or "no message"
            raise UsageError(f"journalctl failed (exit {proc.returncode}): {why}", EX_FAILED)


def _value(raw: Any) -> str | None:
    """A journal field as text. journalctl -o json gives a string, an array of byte values for
    binary data, null for a value too large to show, and an array for a field sent twice."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int | float):
        return str(raw)
    if isinstance(raw, list) and raw:
        if all(isinstance(b, int) and 0 <= b < 256 for b in raw):
            return bytes(raw).decode("utf-8", "replace")
        return _value(raw[0])
    return None


def _count(entry: dict[str, Any], name: str) -> int:
    """A token count: a non-negative integer, or ValueError (the record is then skipped)."""
    text = _value(entry.get(name))
    if text is None or not text.strip().isdigit():
        raise ValueError(name)
    return int(text)


def _timestamp(entry: dict[str, Any]) -> dt.datetime:
    """Local time of the entry: journald's receive time (__REALTIME_TIMESTAMP, microseconds)."""
    for name in ("__REALTIME_TIMESTAMP", "_SOURCE_REALTIME_TIMESTAMP"):
        text = _value(entry.get(name))
        if text is not None and text.isdigit():
            return dt.datetime.fromtimestamp(int(text) / 1e6).astimezone()
    raise ValueError("__REALTIME_TIMESTAMP")


_WHEN = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """--since/--until for --file: the part of journalctl's syntax that names a moment
    (`today`, `yesterday`, `tomorrow`, `now`, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]`), local time."""
    now = now or dt.datetime.now().astimezone()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    words = {
        "now": now,
        "today": midnight,
        "yesterday": midnight - dt.timedelta(days=1),
        "tomorrow": midnight + dt.timedelta(days=1),
    }
    if text.strip() in words:
        return words[text.strip()]
    m = _WHEN.fullmatch(text.strip())
    if not m:
        raise UsageError(
            f"cannot read the time {text!r} with --file: use YYYY-MM-DD, 'YYYY-MM-DD HH:MM[:SS]', "
            "today, yesterday, tomorrow or now"
        )
    try:
        day = dt.date.fromisoformat(m.group(1))
        clock = dt.time(int(m.group(2) or 0), int(m.group(3) or 0), int(m.group(4) or 0))
    except ValueError as exc:
        raise UsageError(f"cannot read the time {text!r}: {exc}") from exc
    return dt.datetime.combine(day, clock).astimezone()


# ------------------------------------------------------------------------------------ summing


@dataclass
class Tokens:
    """One model's usage in one period: response count and the service's token counts."""

    responses: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, other: dict[str, int]) -> None:
        self.responses += 1
        self.counts.update(other)

    def merge(self, other: Tokens) -> None:
        self.responses += other.responses
        self.counts.update(other.counts)

    def cost(self, prices: dict[str, float]) -> tuple[float, bool]:
        """(estimated cost, complete): complete unless some modality used has no price."""
        total, complete = 0.0, True
        for key, _field, price_key in MODALITIES:
            tokens = self.counts[key]
            price = prices.get(price_key, 0.0)
            total += tokens * price / 1_000_000
            complete = complete and (tokens == 0 or price > 0)
        return total, complete


@dataclass
class Period:
    """A day (or the whole report): tokens per model, turns by outcome, sessions opened,
    function calls per tool (by outcome), wake words heard and those no turn followed (what an
    owner tunes `wake.probability_cutoff` by)."""

    models: dict[str, Tokens] = field(default_factory=dict)
    turns: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    tools: dict[str, Counter[str]] = field(default_factory=dict)
    wakes: int = 0
    wakes_without_turn: int = 0

    def merge(self, other: Period) -> None:
        for model, tokens in other.models.items():
            self.models.setdefault(model, Tokens()).merge(tokens)
        self.turns.update(other.turns)
        self.sessions += other.sessions
        for tool, outcomes in other.tools.items():
            self.tools.setdefault(tool, Counter()).update(outcomes)
        self.wakes += other.wakes
        self.wakes_without_turn += other.wakes_without_turn


@dataclass
class Report:
    days: dict[dt.date, Period] = field(default_factory=dict)
    lines: int = 0
    skipped: int = 0  # not JSON objects, or omnid records with missing / unreadable fields
    duplicates: int = 0  # the same journal entry (cursor) seen again

    def total(self) -> Period:
        whole = Period()
        for day in self.days.values():
            whole.merge(day)
        return whole


def summarise(
    lines: Iterable[str], since: dt.datetime | None = None, until: dt.datetime | None = None
) -> Report:
    """Sum the usage, turn, session_open, tool and wake records of `lines` (journalctl -o
    json)."""
    report = Report()
    cursors: set[str] = set()
    for line in lines:
        if not line.strip():
            continue
        report.lines += 1
        try:
            entry = json.loads(line)
        except ValueError:
            report.skipped += 1
            continue
        if not isinstance(entry, dict):
            report.skipped += 1
            continue
        event = _value(entry.get("OMNID_EVENT"))
        if event not in EVENTS:
            continue  # the daemon's other lines, or another program's
        cursor = _value(entry.get("__CURSOR"))
        if cursor is not None:
            if cursor in cursors:
                report.duplicates += 1
                continue
            cursors.add(cursor)
        try:
            when = _timestamp(entry)
            one = _one(event, entry)
        except ValueError:
            report.skipped += 1
            continue
        if (since and when < since) or (until and when > until):
            continue
        report.days.setdefault(when.date(), Period()).merge(one)
    report.days = dict(sorted(report.days.items()))
    return report


def _one(event: str, entry: dict[str, Any]) -> Period:
    """One record as a period of its own; ValueError when a field it needs is unusable."""
    period = Period()
    if event == "usage":
        counts = {key: _count(entry, name) for key, name, _price in MODALITIES}
        counts.update({key: _count(entry, name) for key, name in SUMS})
        search = _value(entry.get("OMNID_SEARCH_COUNT"))
        counts["search_count"] = int(search) if search and search.isdigit() else 0
        model = _value(entry.get("OMNID_MODEL")) or "unknown"
        period.models.setdefault(model, Tokens()).add(counts)
    elif event == "turn":
        outcome = _value(entry.get("OMNID_OUTCOME"))
        if not outcome:
            raise ValueError("OMNID_OUTCOME")
        period.turns[outcome] += 1
    elif event == "tool":
        tool, outcome = _value(entry.get("OMNID_TOOL")), _value(entry.get("OMNID_OUTCOME"))
        if not tool or not outcome:
            raise ValueError("OMNID_TOOL")
        period.tools.setdefault(tool, Counter())[outcome] += 1
    elif event == "wake":
        followed = _value(entry.get("OMNID_TURN"))
        if followed not in ("true", "false"):
            raise ValueError("OMNID_TURN")
        period.wakes = 1
        period.wakes_without_turn = int(followed == "false")
    else:
        period.sessions += 1
    return period


# ---------------------------------------------------------------------------- for the rendering


TOKEN_KEYS = [key for key, _f, _p in MODALITIES] + [key for key, _f in SUMS] + ["search_count"]
