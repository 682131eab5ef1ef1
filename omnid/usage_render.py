"""How `omnid usage` shows a report: a table for people, one JSON object for scripts.

Split from `omnid.usage_report` (which reads and sums the journal) so each reads on its own.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, TextIO

from omnid.usage_report import TOKEN_KEYS, Period, Report, Tokens


def _tokens_json(tokens: Tokens, prices: dict[str, float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"responses": tokens.responses}
    out.update({key: tokens.counts[key] for key in TOKEN_KEYS})
    if prices is not None:
        cost, complete = tokens.cost(prices)
        out["cost"] = round(cost, 6)
        out["cost_complete"] = complete
    return out


def _period_json(period: Period, prices: dict[str, float] | None) -> dict[str, Any]:
    models = {m: _tokens_json(t, prices) for m, t in sorted(period.models.items())}
    out: dict[str, Any] = {
        "sessions": period.sessions,
        "turns": dict(sorted(period.turns.items())),
        "turn_count": sum(period.turns.values()),
        "responses": sum(t.responses for t in period.models.values()),
        "total_tokens": sum(t.counts["total_tokens"] for t in period.models.values()),
        "models": models,
        "tools": {
            tool: {"calls": sum(outcomes.values()), **dict(sorted(outcomes.items()))}
            for tool, outcomes in sorted(period.tools.items())
        },
        "wakes": period.wakes,
        "wakes_without_turn": period.wakes_without_turn,
    }
    if prices is not None:
        out["cost"] = round(sum(m["cost"] for m in models.values()), 6)
        out["cost_complete"] = all(m["cost_complete"] for m in models.values())
    return out


def to_json(report: Report, prices: dict[str, float] | None, currency: str, source: str) -> str:
    """One JSON object for scripts; `cost` fields only when prices are configured."""
    doc: dict[str, Any] = {
        "source": source,
        "timezone": dt.datetime.now().astimezone().tzname(),
        "currency": currency if prices is not None else None,
        "days": [
            {"date": day.isoformat(), **_period_json(period, prices)}
            for day, period in report.days.items()
        ],
        "total": _period_json(report.total(), prices),
        "lines": report.lines,
        "skipped": report.skipped,
        "duplicates": report.duplicates,
    }
    return json.dumps(doc, indent=2)


_COLUMNS = (
    ("responses", "responses"),
    ("in text", "input_text_tokens"),
    ("in audio", "input_audio_tokens"),
    ("in image", "input_image_tokens"),
    ("out text", "output_text_tokens"),
    ("out audio", "output_audio_tokens"),
    ("total", "total_tokens"),
)


def _money(cost: float, complete: bool, currency: str) -> str:
    text = f"{cost:.4f}" + (f" {currency}" if currency else "")
    return text if complete else f"≥{text}"


def _heading(label: str, period: Period) -> str:
    turns = sum(period.turns.values())
    outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(period.turns.items()))
    return (
        f"{label}  {period.sessions} session{'s' * (period.sessions != 1)} · "
        f"{turns} turn{'s' * (turns != 1)}" + (f": {outcomes}" if outcomes else "")
    )


def render_text(
    report: Report, prices: dict[str, float] | None, currency: str, out: TextIO, source: str
) -> None:
    """A table per day, then the totals; cost only with prices, marked ≥ when one is missing."""
    tz = dt.datetime.now().astimezone().tzname()
    out.write(f"omnid usage from {source}; days in local time ({tz})\n")
    if not report.days:
        out.write("no usage, turn or session records found\n")
    periods = [(day.isoformat(), period) for day, period in report.days.items()]
    if len(periods) > 1:
        periods.append(("total", report.total()))
    elif periods:
        periods[0] = (periods[0][0] + " (total)", periods[0][1])
    header = ["model", *(title for title, _key in _COLUMNS)] + (["cost"] if prices else [])
    for label, period in periods:
        out.write("\n" + _heading(label, period) + "\n")
        if period.wakes:
            n, idle = period.wakes, period.wakes_without_turn
            out.write(f"  wake word: {n} time{'s' * (n != 1)}, {idle} without a turn\n")
        for tool, outcomes in sorted(period.tools.items()):
            how = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
            calls = sum(outcomes.values())
            out.write(f"  tool {tool}: {calls} call{'s' * (calls != 1)} ({how})\n")
        if not period.models:
            continue
        rows = [header]
        for model, tokens in sorted(period.models.items()):
            values = {"responses": tokens.responses, **tokens.counts}
            row = [model, *(str(values.get(key, 0)) for _title, key in _COLUMNS)]
            if prices:
                row.append(_money(*tokens.cost(prices), currency))
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
            ]
            out.write("  " + "  ".join(cells).rstrip() + "\n")
    if report.skipped:
        n = report.skipped
        out.write(f"\nskipped {n} unreadable or incomplete line{'s' * (n != 1)}\n")
    if report.duplicates:
        n = report.duplicates
        out.write(f"ignored {n} duplicate journal entr{'y' if n == 1 else 'ies'}\n")
