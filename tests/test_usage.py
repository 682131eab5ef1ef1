"""`omnid usage`: token totals read back from a real journal export (issue 6, acceptance 5).

The export in tests/data was made by real turns through a real journald (see its README). What
the totals must be is computed here from a different witness: the simulator's own `response.done`
events, as it sent them on the wire. Two-day splits, prices and damaged lines are crafted from the
recorded export, so every test starts from what the journal really holds.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnid.usage_command import run
from tests.harness import ROOT, clean_env

DATA = ROOT / "tests" / "data"
EXPORT = DATA / "usage-export.json"
MODEL = "qwen3.5-omni-plus-realtime"
MODALITIES = [
    "input_text_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "output_text_tokens",
    "output_audio_tokens",
]
# The recording's script (tests/data/README.md): two sessions, three answered turns, one cancelled.
RECORDED_TURNS = {"answered": 3, "cancelled": 1}
PRICES = {
    "price_input_text": 0.8,
    "price_input_audio": 25.0,
    "price_input_image": 3.2,
    "price_output_text": 6.4,
    "price_output_audio": 50.0,
}


# ------------------------------------------------------------------------------ the witness


def service_responses() -> list[tuple[str, dict[str, int]]]:
    """(session, usage) of every response.done the simulator sent, in wire order."""
    found = []
    for line in (DATA / "usage-sim-response-done.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        u = rec["event"]["response"]["usage"]
        inp, out = u.get("input_tokens_details", {}), u.get("output_tokens_details", {})
        found.append(
            (
                rec["session"],
                {
                    "input_text_tokens": inp.get("text_tokens", 0),
                    "input_audio_tokens": inp.get("audio_tokens", 0),
                    "input_image_tokens": inp.get("image_tokens", 0),
                    "output_text_tokens": out.get("text_tokens", 0),
                    "output_audio_tokens": out.get("audio_tokens", 0),
                    "input_tokens": u["input_tokens"],
                    "output_tokens": u["output_tokens"],
                    "total_tokens": u["total_tokens"],
                },
            )
        )
    return found


def summed(usages: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for u in usages:
        total.update(u)
    return {k: total[k] for k in [*MODALITIES, "input_tokens", "output_tokens", "total_tokens"]}


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set the process time zone (local dates are the point); restored afterwards."""

    def set_tz(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_tz
    monkeypatch.undo()
    time.tzset()


def config(tmp: Path, text: str = "") -> Path:
    """An explicit config, so that an installed /etc/omnid/omnid.toml cannot change the prices."""
    path = tmp / "omnid.toml"
    path.write_text(text)
    return path


def usage(
    tmp: Path, file: Path, *args: str, cfg: str = "", since: str | None = None, **kw: Any
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(config(tmp, cfg), file, since, kw.get("until"), "--json" in args, out, err)
    return code, out.getvalue(), err.getvalue()


def usage_json(tmp: Path, file: Path, **kw: Any) -> dict[str, Any]:
    code, out, err = usage(tmp, file, "--json", **kw)
    assert code == 0, err
    return json.loads(out)


def export_entries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EXPORT.read_text().splitlines() if line.strip()]


def write_entries(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def at(local: str, tzname: str) -> str:
    """`__REALTIME_TIMESTAMP` (µs) of a local wall-clock time in `tzname`."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = tzname
    time.tzset()
    try:
        stamp = dt.datetime.fromisoformat(local).astimezone().timestamp()
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
    return str(round(stamp * 1_000_000))


def two_days(tmp: Path) -> tuple[Path, list[dict[str, int]], list[dict[str, int]]]:
    """The recording moved to straddle local midnight in Shanghai (UTC+8, no DST): the first
    session at 23:59 on 1 March, the second at 00:00 on 2 March. In UTC both are the afternoon of
    1 March, so only a report in local time splits them. Returns the file and each day's usages."""
    entries, second_session = export_entries(), False
    for i, e in enumerate(entries):
        if e.get("OMNID_EVENT") == "session_open" and any(
            x.get("OMNID_EVENT") == "session_open" for x in entries[:i]
        ):
            second_session = True
        local = "2025-03-02 00:00:10" if second_session else "2025-03-01 23:59:10"
        stamp = int(at(local, "Asia/Shanghai")) + i * 1_000_000  # one second apart, in order
        e["__REALTIME_TIMESTAMP"] = str(stamp)
    responses = service_responses()
    first = responses[0][0]
    day1 = [u for s, u in responses if s == first]
    day2 = [u for s, u in responses if s != first]
    return write_entries(tmp / "two-days.json", entries), day1, day2


# ------------------------------------------------------------------------------ tests


def test_recorded_export_totals_match_what_the_service_sent(tmp_path: Path, tz: Any) -> None:
    tz("UTC")
    responses = service_responses()
    assert len(responses) == 4, "the recording has four responses (tests/data/README.md)"
    truth = summed([u for _s, u in responses])
    assert all(truth[m] > 0 for m in MODALITIES), f"a modality is not exercised: {truth}"
    report = usage_json(tmp_path, EXPORT)

    assert report["skipped"] == 0 and report["duplicates"] == 0
    assert len(report["days"]) == 1
    total = report["total"]
    assert total["sessions"] == 2
    assert total["turns"] == RECORDED_TURNS and total["turn_count"] == 4
    assert total["responses"] == 4
    assert list(total["models"]) == [MODEL]
    got = total["models"][MODEL]
    assert {k: got[k] for k in truth} == truth
    assert got["responses"] == 4 and got["search_count"] == 0
    assert total["total_tokens"] == sum(u["total_tokens"] for _s, u in responses)
    assert report["days"][0]["models"] == total["models"]


def test_the_command_prints_the_totals_row(tmp_path: Path) -> None:
    """The real `omnid usage --file` as an operator types it: the model row carries the totals."""
    done = subprocess.run(
        [sys.executable, "-m", "omnid.cli", "usage", "--file", str(EXPORT), "--config",
         str(config(tmp_path))],
        capture_output=True, text=True, cwd=ROOT, env=clean_env(TZ="UTC"), timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = summed([u for _s, u in service_responses()])
    row = next(line.split() for line in done.stdout.splitlines() if line.strip().startswith(MODEL))
    assert [int(x) for x in row[1:]] == [
        4,
        *(expected[k] for k in MODALITIES),
        expected["total_tokens"],
    ]
    assert "2 sessions · 4 turns: 3 answered, 1 cancelled" in done.stdout
    assert "cost" not in done.stdout  # no prices configured


def test_days_are_local_calendar_days(tmp_path: Path, tz: Any) -> None:
    path, day1, day2 = two_days(tmp_path)
    tz("Asia/Shanghai")
    report = usage_json(tmp_path, path)
    assert [d["date"] for d in report["days"]] == ["2025-03-01", "2025-03-02"]
    first, second = report["days"]
    assert (first["sessions"], first["turns"]) == (1, {"answered": 2})
    assert (second["sessions"], second["turns"]) == (1, {"answered": 1, "cancelled": 1})
    for day, usages in ((first, day1), (second, day2)):
        got = day["models"][MODEL]
        assert got["responses"] == len(usages)
        assert {k: got[k] for k in summed([])} == summed(usages)
    assert report["total"]["models"][MODEL]["total_tokens"] == sum(
        u["total_tokens"] for u in day1 + day2
    )

    tz("UTC")  # the same instants are one UTC afternoon: proof that the split is local
    assert [d["date"] for d in usage_json(tmp_path, path)["days"]] == ["2025-03-01"]


def test_since_and_until_select_days_from_a_file(tmp_path: Path, tz: Any) -> None:
    path, day1, day2 = two_days(tmp_path)
    tz("Asia/Shanghai")
    late = usage_json(tmp_path, path, since="2025-03-02")
    assert [d["date"] for d in late["days"]] == ["2025-03-02"]
    assert late["total"]["total_tokens"] == sum(u["total_tokens"] for u in day2)
    early = usage_json(tmp_path, path, until="2025-03-01 23:59:59")
    assert [d["date"] for d in early["days"]] == ["2025-03-01"]
    assert early["total"]["total_tokens"] == sum(u["total_tokens"] for u in day1)

    code, _out, err = usage(tmp_path, path, since="last tuesday")
    assert code == 64 and "cannot read the time" in err


def test_json_shape(tmp_path: Path) -> None:
    report = usage_json(tmp_path, EXPORT)
    assert set(report) == {
        "source", "timezone", "currency", "days", "total", "lines", "skipped", "duplicates",
    }  # fmt: skip
    period_keys = {
        "sessions", "turns", "turn_count", "responses", "total_tokens", "models", "tools",
        "wakes", "wakes_without_turn",
    }  # fmt: skip
    token_keys = {
        "responses", *MODALITIES, "input_tokens", "output_tokens", "total_tokens", "search_count",
    }  # fmt: skip
    for period in [*report["days"], report["total"]]:
        assert set(period) - {"date"} == period_keys
        for tokens in period["models"].values():
            assert set(tokens) == token_keys
            assert all(isinstance(v, int) for v in tokens.values())
    dt.date.fromisoformat(report["days"][0]["date"])
    assert report["source"] == str(EXPORT) and report["currency"] is None
    assert report["lines"] == len(export_entries())


def test_cost_with_prices(tmp_path: Path) -> None:
    cfg = "[usage]\n" + "".join(f"{k} = {v}\n" for k, v in PRICES.items()) + 'currency = "CNY"\n'
    report = usage_json(tmp_path, EXPORT, cfg=cfg)
    tokens = summed([u for _s, u in service_responses()])
    expected = sum(tokens[m] * PRICES["price_" + m.removesuffix("_tokens")] for m in MODALITIES)
    expected /= 1_000_000
    assert report["currency"] == "CNY"
    assert report["total"]["cost"] == pytest.approx(expected, abs=1e-6)
    assert report["total"]["cost_complete"] is True
    assert report["total"]["models"][MODEL]["cost"] == pytest.approx(expected, abs=1e-6)

    code, out, _err = usage(tmp_path, EXPORT, cfg=cfg)
    assert code == 0 and f"{expected:.4f} CNY" in out

    # Prices for audio only: text tokens were used, so the estimate is a lower bound, and says so.
    partial = "[usage]\nprice_input_audio = 25.0\nprice_output_audio = 50.0\n"
    report = usage_json(tmp_path, EXPORT, cfg=partial)
    assert report["total"]["cost_complete"] is False
    assert report["total"]["cost"] == pytest.approx(
        (tokens["input_audio_tokens"] * 25 + tokens["output_audio_tokens"] * 50) / 1e6, abs=1e-6
    )
    code, out, _err = usage(tmp_path, EXPORT, cfg=partial)
    assert "≥" in out


def test_a_bad_config_exits_78(tmp_path: Path) -> None:
    code, _out, err = usage(tmp_path, EXPORT, cfg="[usage]\nprice_input_text = -1\n")
    assert code == 78 and "usage.price_input_text" in err


def test_damaged_lines_are_skipped_and_counted(tmp_path: Path, tz: Any) -> None:
    tz("UTC")
    entries = export_entries()
    usage_entry = next(e for e in entries if e.get("OMNID_EVENT") == "usage")
    turn_entry = next(e for e in entries if e.get("OMNID_EVENT") == "turn")

    def broken(base: dict[str, Any], **changes: Any) -> str:
        e = copy.deepcopy(base)
        e.pop("__CURSOR", None)
        for k, v in changes.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        return json.dumps(e) + "\n"

    bad = [
        "this is not JSON\n",
        "[1, 2, 3]\n",
        '{"OMNID_EVENT": "usage", "OMNID_INPU\n',  # cut off mid-line
        broken(usage_entry, OMNID_TOTAL_TOKENS="lots"),
        broken(usage_entry, OMNID_INPUT_AUDIO_TOKENS=None),
        broken(usage_entry, OMNID_OUTPUT_TEXT_TOKENS="-5"),
        broken(usage_entry, __REALTIME_TIMESTAMP=None, _SOURCE_REALTIME_TIMESTAMP=None),
        broken(turn_entry, OMNID_OUTCOME=None),
    ]
    harmless = [
        "\n",  # blank
        '{"MESSAGE": "another program", "__REALTIME_TIMESTAMP": "1"}\n',  # not ours: ignored
        json.dumps(usage_entry) + "\n",  # the same journal entry again (same cursor)
    ]
    # A valid record in journalctl's other value forms: the model as a byte array (binary data)
    # and a count as a JSON number.
    extra = copy.deepcopy(usage_entry)
    extra.pop("__CURSOR")
    extra["OMNID_MODEL"] = list(b"other-model")
    extra["OMNID_INPUT_IMAGE_TOKENS"] = 300
    path = tmp_path / "damaged.json"
    path.write_text(EXPORT.read_text())
    with path.open("ab") as f:
        f.write(b"\xff\xfe not UTF-8 at all\n")
        f.write("".join(bad + harmless + [json.dumps(extra) + "\n"]).encode())

    report = usage_json(tmp_path, path)
    assert report["skipped"] == len(bad) + 1  # + the non-UTF-8 line
    assert report["duplicates"] == 1
    truth = summed([u for _s, u in service_responses()])
    got = report["total"]["models"][MODEL]
    assert {k: got[k] for k in truth} == truth
    assert report["total"]["turns"] == RECORDED_TURNS
    assert report["total"]["models"]["other-model"]["input_image_tokens"] == 300

    code, out, _err = usage(tmp_path, path)
    assert code == 0 and f"skipped {len(bad) + 1} unreadable or incomplete lines" in out


def test_a_missing_file_exits_66(tmp_path: Path) -> None:
    code, _out, err = usage(tmp_path, tmp_path / "nope.json")
    assert code == 66 and "cannot read" in err


# ------------------------------------------------------------------------------ journalctl


def _fake_journalctl(tmp: Path, body: str) -> dict[str, str]:
    """A `journalctl` first on PATH that logs its argv and answers with `body` (a shell snippet).
    It stands in for the system journal, which a test cannot fill with an omnid.service unit's
    records; what journalctl really prints is covered by the recorded export."""
    bindir = tmp / "bin"
    bindir.mkdir()
    script = bindir / "journalctl"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp}/argv"\n{body}\n')
    script.chmod(0o755)
    return clean_env(PATH=f"{bindir}:{os.environ['PATH']}", TZ="UTC")


def _cli(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omnid.cli", "usage", "--config", str(config(tmp)), *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=30,
    )  # fmt: skip


def test_journalctl_is_asked_for_the_units_records(tmp_path: Path) -> None:
    env = _fake_journalctl(tmp_path, f'cat "{EXPORT}"')
    done = _cli(tmp_path, env, "--since", "yesterday", "--until", "now", "--json")
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:2] == ["-o", "json"]
    assert "_SYSTEMD_UNIT=omnid.service" in argv
    assert {a for a in argv if a.startswith("OMNID_EVENT=")} == {
        "OMNID_EVENT=usage",
        "OMNID_EVENT=turn",
        "OMNID_EVENT=session_open",
        "OMNID_EVENT=tool",
        "OMNID_EVENT=wake",
    }
    assert argv[argv.index("--since") + 1] == "yesterday"
    assert argv[argv.index("--until") + 1] == "now"
    report = json.loads(done.stdout)
    assert report["total"]["turns"] == RECORDED_TURNS
    assert report["total"]["total_tokens"] == sum(
        u["total_tokens"] for _s, u in service_responses()
    )


def test_journalctl_failure_and_absence(tmp_path: Path) -> None:
    env = _fake_journalctl(tmp_path, 'echo "Failed to parse timestamp: soon" >&2; exit 1')
    done = _cli(tmp_path, env, "--since", "soon")
    assert done.returncode == 1 and "Failed to parse timestamp: soon" in done.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    done = _cli(tmp_path, clean_env(PATH=str(empty)), "--json")
    assert done.returncode == 69 and "journalctl not found" in done.stderr


def test_per_model_rows_are_separate(tmp_path: Path, tz: Any) -> None:
    """Two models in one day (a config change mid-day): each its own row, summed in the total."""
    tz("UTC")
    entries = export_entries()
    other = []
    for e in entries:
        if e.get("OMNID_EVENT") == "usage":
            e2 = copy.deepcopy(e)
            e2["OMNID_MODEL"] = "qwen3-omni-flash-realtime"
            e2["__CURSOR"] = e["__CURSOR"] + ";copy"
            other.append(e2)
    report = usage_json(tmp_path, write_entries(tmp_path / "two-models.json", entries + other))
    models = report["total"]["models"]
    assert set(models) == {MODEL, "qwen3-omni-flash-realtime"}
    truth = summed([u for _s, u in service_responses()])
    for tokens in models.values():
        assert {k: tokens[k] for k in truth} == truth
    assert report["total"]["total_tokens"] == 2 * truth["total_tokens"]


def test_an_export_piped_on_stdin(tmp_path: Path) -> None:
    """`journalctl -o json … | omnid usage --file -`: the same totals."""
    done = subprocess.run(
        [sys.executable, "-m", "omnid.cli", "usage", "--file", "-", "--json", "--config",
         str(config(tmp_path))],
        input=EXPORT.read_text(), capture_output=True, text=True, cwd=ROOT,
        env=clean_env(TZ="UTC"), timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"] == "standard input"
    assert report["total"]["total_tokens"] == sum(
        u["total_tokens"] for _s, u in service_responses()
    )


def test_wake_words_without_a_turn_are_counted(tmp_path: Path) -> None:
    """Wake mode's `wake` records, made from the recording's turn records: three wakes, two of
    which no turn followed (what an owner raises `wake.probability_cutoff` for)."""
    entries = export_entries()
    turn = next(e for e in entries if e.get("OMNID_EVENT") == "turn")
    for i, followed in enumerate(["false", "true", "false"]):
        wake = {k: v for k, v in turn.items() if not k.startswith("OMNID_") and k != "__CURSOR"}
        wake.update(OMNID_EVENT="wake", OMNID_WAKE_MODEL="okay_nabu", OMNID_PROBABILITY="0.912")
        wake.update(OMNID_TURN=followed, __CURSOR=f"wake-{i}")
        entries.append(wake)
    entries.append({**entries[-1], "OMNID_TURN": "maybe", "__CURSOR": "wake-bad"})
    path = write_entries(tmp_path / "wakes.json", entries)
    report = usage_json(tmp_path, path)
    assert (report["total"]["wakes"], report["total"]["wakes_without_turn"]) == (3, 2)
    assert report["skipped"] == 1  # the record whose TURN is neither true nor false
    assert report["total"]["turns"] == RECORDED_TURNS  # a wake is not a turn
    code, text, _ = usage(tmp_path, path)
    assert code == 0 and "wake word: 3 times, 2 without a turn" in text
