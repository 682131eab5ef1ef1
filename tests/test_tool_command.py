"""Running an owner's command: real subprocesses, checked by their side effects and by pid.

Timing asserts are loose on purpose (a loaded 2-core machine may take seconds to start a shell):
what matters is that a hanging command ends near its time limit rather than never, and that no
process it started survives it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnid.config_schema import ToolParamConfig
from omnid.tools.command import SAFE_PATH, CommandResult, minimal_env, run_command
from omnid.tools.params import parse_arguments, render_argv

SH = "/bin/sh"
ENV = minimal_env("test")


def run(argv: list[str], timeout_s: float = 30.0, **kw: int) -> CommandResult:
    return run_command(argv, timeout_s=timeout_s, env=ENV, **kw)


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for whoever adopted it (in a container, PID 1
    may never reap it): either way nothing runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pids: list[int], within_s: float = 15.0) -> list[int]:
    """The pids still running after `within_s` (killing is asynchronous, if quick)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        alive = [p for p in pids if not gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if not gone(p)]


def read_pids(path: Path, count: int, within_s: float = 15.0) -> list[int]:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if path.exists():
            pids = [int(w) for w in path.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.05)
    pytest.fail(f"{path} never held {count} pids")


@pytest.fixture
def cleanup_pids() -> Iterator[list[int]]:
    """Pids a test started; anything still running at the end is killed, so no test leaks."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_it_runs_the_rendered_argv_in_root_with_no_stdin(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    script = tmp_path / "tool.sh"
    script.write_text(
        'out="$1"; shift\n'
        'for a in "$@"; do printf "<%s>\\n" "$a"; done > "$out"\n'
        'pwd >> "$out"\n'
        'cat >> "$out"\n'  # stdin is /dev/null: nothing, and no hang
        "echo opened\n"
    )
    params = {
        "action": ToolParamConfig(type="string", enum=["open", "close"]),
        "note": ToolParamConfig(type="string"),
        "level": ToolParamConfig(type="integer", maximum=10),
    }
    values = parse_arguments('{"action": "open", "note": "a b; $(rm -rf x)", "level": 7.0}', params)
    argv = render_argv([SH, str(script), str(marker), "{action}", "{note}", "{level}"], values)

    result = run(argv)

    assert result == CommandResult("ok", "opened", 0, result.duration_ms)
    assert marker.read_text().splitlines() == ["<open>", "<a b; $(rm -rf x)>", "<7>", "/"]
    assert result.duration_ms >= 0


def test_the_environment_holds_nothing_of_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-0123456789abcdef0123"
    monkeypatch.setenv("DASHSCOPE_API_KEY", secret)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/omnid.service")
    monkeypatch.setenv("GITHUB_TOKEN", secret + "tok")
    monkeypatch.setenv("OMNID_API__API_KEY_FILE", "/etc/omnid/key")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("HOME", "/var/lib/omnid")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    dump = tmp_path / "env"

    result = run_command(
        [SH, "-c", 'env > "$0"', str(dump)], timeout_s=30, env=minimal_env("garage")
    )

    assert result.outcome == "ok", result
    text = dump.read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert env["PATH"] == SAFE_PATH
    assert env["LANG"] == "C.UTF-8"
    assert env["TZ"] == "Europe/Berlin"
    assert env["OMNID_TOOL"] == "garage"
    assert set(env) <= {"PATH", "LANG", "TZ", "OMNID_TOOL", "PWD", "SHLVL", "_", "OLDPWD"}, env
    assert secret not in text
    for word in ("KEY", "TOKEN", "CREDENTIALS", "NOTIFY", "HOME", "OMNID_API"):
        assert not any(word in name for name in env), (word, env)


def test_minimal_env_copies_tz_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ", raising=False)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-whatever-long-enough")
    assert minimal_env("x") == {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "OMNID_TOOL": "x"}


def test_a_hanging_command_is_killed_with_its_children_at_the_timeout(
    tmp_path: Path, cleanup_pids: list[int]
) -> None:
    pids = tmp_path / "pids"
    script = 'sleep 300 & echo $! > "$0"; echo $$ >> "$0"; sleep 300'

    started = time.monotonic()
    result = run([SH, "-c", script, str(pids)], timeout_s=2.0)
    took = time.monotonic() - started

    cleanup_pids += read_pids(pids, 2)
    assert result.outcome == "timeout", result
    assert result.exit_status is None
    assert "2 s" in result.output
    assert 1.5 <= took < 60, took
    assert wait_gone(cleanup_pids) == [], "a process of the command survived its timeout"


def test_the_whole_group_goes_even_when_the_leader_closed_its_pipes(
    tmp_path: Path, cleanup_pids: list[int]
) -> None:
    pids = tmp_path / "pids"
    script = 'sleep 300 >/dev/null 2>&1 & echo $! > "$0"; exec >&- 2>&-; sleep 300'

    result = run([SH, "-c", script, str(pids)], timeout_s=2.0)

    cleanup_pids += read_pids(pids, 1)
    assert result.outcome == "timeout", result
    assert wait_gone(cleanup_pids) == []


def test_a_background_child_holding_the_pipe_is_not_waited_for(
    tmp_path: Path, cleanup_pids: list[int]
) -> None:
    pids = tmp_path / "pids"
    script = 'sleep 300 & echo $! > "$0"; echo started'

    started = time.monotonic()
    result = run([SH, "-c", script, str(pids)], timeout_s=120.0)
    took = time.monotonic() - started

    cleanup_pids += read_pids(pids, 1)
    assert (result.outcome, result.output, result.exit_status) == ("ok", "started", 0)
    assert took < 60, took  # the grace is half a second; nowhere near the 120 s limit
    assert wait_gone(cleanup_pids) == []


def test_output_is_capped_and_the_rest_read_and_dropped() -> None:
    # 1 MB: far more than a pipe buffer, so a reader that stopped reading would hang here.
    script = "head -c 1000000 /dev/zero | tr '\\0' a; echo; echo tail"
    result = run([SH, "-c", script], max_output=1000)

    assert result.outcome == "ok"
    assert result.output == "a" * 1000 + " [output cut]"


def test_output_is_stripped_and_an_empty_one_is_done() -> None:
    assert run([SH, "-c", "printf '\\n  42 \\n\\n'"]).output == "42"
    done = run(["/bin/true"])
    assert (done.outcome, done.output, done.exit_status) == ("ok", "done", 0)
    assert run([SH, "-c", "printf '\\377ok'"]).output == "\ufffdok"  # not UTF-8: replaced


def test_a_non_zero_exit_is_an_error_naming_status_and_stderr() -> None:
    result = run([SH, "-c", "echo partial; echo 'relay: no such device' >&2; exit 3"])

    assert result.outcome == "error"
    assert result.exit_status == 3
    assert "exit status 3" in result.output
    assert "relay: no such device" in result.output


def test_stderr_keeps_only_its_tail() -> None:
    script = "head -c 5000 /dev/zero | tr '\\0' x >&2; echo ' THE END' >&2; exit 1"
    result = run([SH, "-c", script])

    assert result.outcome == "error"
    assert result.output.endswith("THE END")
    assert len(result.output) < 700


def test_a_command_killed_by_a_signal_says_so() -> None:
    result = run([SH, "-c", "kill -TERM $$"])
    assert result.outcome == "error"
    assert result.exit_status == -signal.SIGTERM
    assert "SIGTERM" in result.output


def test_a_missing_or_unexecutable_program_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-program"
    result = run([str(missing), "arg"])
    assert result.outcome == "error"
    assert result.exit_status is None
    assert str(missing) in result.output and "no such file" in result.output
    assert "Traceback" not in result.output

    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\necho hi\n")
    plain.chmod(0o644)
    result = run([str(plain)])
    assert result.outcome == "error"
    assert str(plain) in result.output


def test_it_runs_in_its_own_process_group_and_session() -> None:
    result = run([SH, "-c", 'read -r stat < /proc/$$/stat; echo "$$ ${stat#*) }"'])

    pid, _state, _ppid, pgrp, session = result.output.split()[:5]
    assert pid == pgrp == session
    assert int(pgrp) != os.getpgrp()


def test_signals_the_daemon_blocks_reach_the_command() -> None:
    """The daemon's threads block SIGTERM, SIGINT and SIGHUP; its commands must not inherit
    that, or a command's own `timeout` or children could not be stopped."""
    seen: list[CommandResult] = []

    def worker() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        seen.append(run(["/bin/grep", "^SigBlk:", "/proc/self/status"]))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(60)

    assert seen and seen[0].outcome == "ok", seen
    assert int(seen[0].output.split()[1], 16) == 0, seen[0].output
