"""`omnid usage`: the command that ties the configuration, the journal's report and its rendering.

Apart from `omnid.usage_report` (reading and summing) and `omnid.usage_render` (showing) so that
neither needs the other's way round: this module alone knows about exit statuses and streams.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TextIO

from omnid.config import ConfigError, load_config
from omnid.usage_render import render_text, to_json
from omnid.usage_report import (
    EX_CONFIG,
    EX_NOINPUT,
    MODALITIES,
    UNIT,
    Report,
    UsageError,
    journal_lines,
    parse_when,
    summarise,
)


def prices_of(usage_section: Any) -> dict[str, float] | None:
    """The configured prices per million tokens, or None when none is set (no cost shown)."""
    prices = {price: float(getattr(usage_section, price)) for _k, _f, price in MODALITIES}
    return prices if any(p > 0 for p in prices.values()) else None


def _report(file: Path | None, since: str | None, until: str | None) -> tuple[Report, str]:
    """(report, where it came from). --since/--until go to journalctl, or are applied here."""
    if file is None:
        return summarise(journal_lines(since, until)), f"the journal ({UNIT})"
    lo = parse_when(since) if since else None
    hi = parse_when(until) if until else None
    if str(file) == "-":
        return summarise(sys.stdin, lo, hi), "standard input"
    try:
        with file.open(encoding="utf-8", errors="replace") as lines:
            return summarise(lines, lo, hi), str(file)
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}", EX_NOINPUT) from exc


def run(
    config: Path | None,
    file: Path | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`omnid usage`; the exit status. A bad config is 78, as for every command."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        cfg = load_config(config, require_api_key=False)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"omnid: config: {problem}", file=err)
        return EX_CONFIG
    prices = prices_of(cfg.usage)
    try:
        report, source = _report(file, since, until)
    except UsageError as exc:
        print(f"omnid usage: {exc}", file=err)
        return exc.status
    if as_json:
        out.write(to_json(report, prices, cfg.usage.currency, source) + "\n")
        return 0
    render_text(report, prices, cfg.usage.currency, out, source)
    if file is None and not report.days and os.geteuid() != 0:
        print(
            "omnid usage: nothing found; reading the system journal needs root or membership "
            "of the systemd-journal (or adm) group",
            file=err,
        )
    return 0
