"""Running an owner's command for the model: no shell, little environment, a hard time limit.

The daemon holds the API key and runs as a service; a command the model triggers must see
neither. It gets a fresh, minimal environment, no stdin, "/" as its working directory and a
process group of its own, so that at the time limit everything it started is killed with it, not
just the program named in argv. Its output is read with a cap, because the text goes back to the
model (and into its token bill), and a chatty or hostile program must not fill the daemon's
memory.

Blocking: the caller runs `run_command` on a worker thread of its own.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Literal, cast

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GRACE_S = 0.5  # how long output pipes may stay open after the command itself has exited
STDERR_TAIL = 500  # bytes of stderr kept (the end, where the reason usually is)
_POLL_S = 0.05  # how often to look whether the command has exited while its pipes are open
_READ = 65536
_CUT = " [output cut]"


@dataclass(frozen=True)
class CommandResult:
    outcome: Literal["ok", "error", "timeout"]
    output: str  # what the model is told: the output, "done", or why it failed
    exit_status: int | None  # None when it never ran or was stopped at the time limit
    duration_ms: float


def minimal_env(tool_name: str) -> dict[str, str]:
    """The whole environment of a command: nothing of the daemon's (no key, no credentials
    directory, no notify socket, no HOME), only what a program needs to behave."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "OMNID_TOOL": tool_name}
    tz = os.environ.get("TZ")
    if tz is not None:
        env["TZ"] = tz
    return env


def run_command(
    argv: list[str], *, timeout_s: float, env: Mapping[str, str], max_output: int = 4096
) -> CommandResult:
    """Run argv (argv[0] an absolute path) and wait at most timeout_s for it and its output."""
    start = time.monotonic()
    if not argv:
        return _result("error", "no command to run", None, start)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            cwd="/",
            env=dict(env),
            start_new_session=True,  # its own process group: killed as a whole
            preexec_fn=_unblock_signals,
        )
    except FileNotFoundError:
        return _result("error", f"cannot run {argv[0]}: no such file", None, start)
    except PermissionError:
        return _result("error", f"cannot run {argv[0]}: permission denied", None, start)
    except (OSError, ValueError) as exc:  # ENOEXEC, E2BIG, a NUL byte in an argument, ...
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "invalid command"
        return _result("error", f"cannot run {argv[0]}: {reason.lower()}", None, start)

    run = _Run(proc, max_output, deadline=start + timeout_s)
    try:
        timed_out = run.collect()
    finally:
        run.finish()
    if timed_out:
        return _result("timeout", f"stopped after {timeout_s:g} s without finishing", None, start)
    status = proc.returncode
    if status == 0:
        text = run.stdout_text()
        return _result("ok", text or "done", 0, start)
    why = f"exit status {status}" if status > 0 else f"killed by {_signal_name(-status)}"
    detail = run.stderr_text() or " ".join(run.stdout_text().split())[-STDERR_TAIL:]
    return _result("error", f"failed ({why})" + (f": {detail}" if detail else ""), status, start)


class _Run:
    """One running command: reads its pipes, watches the clock, kills its group."""

    def __init__(self, proc: subprocess.Popen[bytes], max_output: int, deadline: float) -> None:
        self.proc = proc
        self.max_output = max_output
        self.deadline = deadline
        self.out = bytearray()
        self.err = bytearray()
        self.cut = False

    def collect(self) -> bool:
        """Read until both pipes close and the command has exited; True at the time limit.

        A background child that keeps a pipe open is not waited for longer than GRACE_S after
        the command itself exits: then the rest of its group is killed.
        """
        assert self.proc.stdout is not None and self.proc.stderr is not None
        exited_at: float | None = None
        with selectors.DefaultSelector() as sel:
            for pipe in (self.proc.stdout, self.proc.stderr):
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, selectors.EVENT_READ)
            while sel.get_map():
                now = time.monotonic()
                if exited_at is None and self._exited():
                    exited_at = now
                if now >= self.deadline:
                    self._kill_group()
                    return True
                if exited_at is not None and now - exited_at >= GRACE_S:
                    self._kill_group()  # whoever still holds the pipes
                    return False
                wait = min(self.deadline - now, _POLL_S if exited_at is None else GRACE_S)
                for key, _ in sel.select(max(wait, 0.0)):
                    self._read(sel, cast(IO[bytes], key.fileobj))
        while not self._exited():  # the pipes closed; the command may still be running
            if time.monotonic() >= self.deadline:
                self._kill_group()
                return True
            time.sleep(_POLL_S)
        return False

    def _read(self, sel: selectors.BaseSelector, pipe: IO[bytes]) -> None:
        try:
            chunk = os.read(pipe.fileno(), _READ)
        except BlockingIOError:
            return
        if not chunk:
            sel.unregister(pipe)
        elif pipe is self.proc.stdout:
            room = self.max_output - len(self.out)
            self.out += chunk[: max(room, 0)]
            self.cut = self.cut or len(chunk) > room  # the rest is read and dropped
        else:
            self.err += chunk
            del self.err[:-STDERR_TAIL]

    def _exited(self) -> bool:
        """Whether the command has exited, without reaping it: until it is reaped its pid stays
        reserved, so killing its process group can never hit an unrelated process."""
        if self.proc.returncode is not None:
            return True
        try:
            found = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            return found is not None
        except ChildProcessError:
            return True

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def finish(self) -> None:
        """Reap the command (killing its group first if we are leaving early) and close pipes."""
        if not self._exited():
            self._kill_group()
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def stdout_text(self) -> str:
        text = self.out.decode("utf-8", errors="replace").strip()
        return text + _CUT if self.cut else text

    def stderr_text(self) -> str:
        return " ".join(self.err.decode("utf-8", errors="replace").split())


def _unblock_signals() -> None:
    """In the child, before exec: the daemon's threads block SIGTERM, SIGINT and SIGHUP (only
    its signal thread takes them), and a blocked mask survives exec; a command must get its
    signals like any program (`timeout`, its own children, `systemctl stop`)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _result(
    outcome: Literal["ok", "error", "timeout"], output: str, status: int | None, start: float
) -> CommandResult:
    return CommandResult(outcome, output, status, (time.monotonic() - start) * 1000)
