"""Run a command as systemd would for the journal, in a private mount namespace, and capture what
it sends through the real native protocol.

    python tests/journal_capture.py --out CAPTURE.jsonl [--stdio FILE] -- CMD ...
    python tests/journal_capture.py --journald EXPORT.json [--stdio FILE] -- CMD ...

The script re-executes itself under `unshare --mount` (adding `--map-root-user` when not root),
mounts a tmpfs over /run there — so nothing on the host changes and a host journald, if any, is
never reached — and then either

- binds its own SOCK_DGRAM socket at /run/systemd/journal/socket and parses every datagram in
  journald's native format (`KEY=value\\n`, or `KEY\\n` + 64-bit little-endian length + bytes +
  `\\n` for values with newlines or binary data; a datagram too large for the socket arrives as a
  memfd passed with SCM_RIGHTS and is read from there), writing one JSON line per datagram to
  CAPTURE (fields, the raw datagram in base64, and how it came); or
- starts the real systemd-journald on a volatile store and, when CMD has exited, writes
  `journalctl -o json` of what it received to EXPORT.

CMD runs with stdout and stderr on a file (--stdio, else a temporary one) whose device:inode is in
$JOURNAL_STREAM, exactly what systemd documents for a service whose output goes to the journal, so
omnid picks JournalHandler. SIGTERM and SIGINT are forwarded to CMD; the exit status is CMD's.
"""

from __future__ import annotations

import argparse
import array
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

_INSIDE = "JOURNAL_CAPTURE_INSIDE_NAMESPACE"
SOCKET = Path("/run/systemd/journal/socket")
JOURNALD = ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")


def parse_native(data: bytes) -> dict[str, Any]:
    """Fields of one native-protocol datagram, as journald reads them.

    A field sent twice keeps every value (a list), as the journal does. Values are decoded as
    UTF-8 with replacement: tests compare text, and the raw bytes travel separately.
    """
    fields: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise ValueError(f"truncated entry at offset {pos}")
        eq = data.find(b"=", pos, nl)
        if eq >= 0:
            name, value = data[pos:eq], data[eq + 1 : nl]
            pos = nl + 1
        else:
            name = data[pos:nl]
            if nl + 9 > len(data):
                raise ValueError(f"truncated binary length for {name!r}")
            (size,) = struct.unpack_from("<Q", data, nl + 1)
            start = nl + 9
            value = data[start : start + size]
            if len(value) != size or data[start + size : start + size + 1] != b"\n":
                raise ValueError(f"bad binary value for {name!r}")
            pos = start + size + 1
        key, text = name.decode("utf-8", "replace"), value.decode("utf-8", "replace")
        if key in fields:
            old = fields[key]
            fields[key] = [*old, text] if isinstance(old, list) else [old, text]
        else:
            fields[key] = text
    return fields


def _read_fd(fd: int) -> bytes:
    """The whole content of a memfd (or sealed temp file) that the client passed instead."""
    chunks: list[bytes] = []
    offset = 0
    try:
        while True:
            chunk = os.pread(fd, 1 << 16, offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)
    finally:
        os.close(fd)


def _receive(sock: socket.socket, out: Path, stop: threading.Event) -> None:
    """Every datagram, in arrival order, as one JSON line in `out` (flushed per line)."""
    fd_size = array.array("i").itemsize
    with out.open("a", encoding="utf-8") as sink:
        while not stop.is_set():
            if not select.select([sock], [], [], 0.2)[0]:
                continue
            # The next datagram's size (FIONREAD on a datagram socket), so none is cut short:
            # libsystemd sends up to its 8 MiB send buffer in one datagram before using a memfd.
            size = array.array("i", [0])
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, size, True)
            data, ancdata, flags, _addr = sock.recvmsg(
                max(size[0], 1), socket.CMSG_SPACE(4 * fd_size)
            )
            via = "datagram"
            fds: list[int] = []
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % fd_size
                    fds.extend(array.array("i", payload[:usable]))
            if fds:
                via = "memfd"
                data = _read_fd(fds[0])
                for extra in fds[1:]:
                    os.close(extra)
            line: dict[str, Any] = {
                "t": time.time(),
                "via": via,
                "raw": base64.b64encode(data).decode(),
            }
            try:
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    raise ValueError("datagram or its file descriptors truncated")
                line["fields"] = parse_native(data)
            except ValueError as exc:
                line["error"] = str(exc)
            sink.write(json.dumps(line) + "\n")
            sink.flush()


def _start_journald() -> subprocess.Popen[bytes]:
    """The real journald on a volatile store under our private /run."""
    binary = next((p for p in JOURNALD if os.access(p, os.X_OK)), None)
    if binary is None:
        raise SystemExit("journal_capture: systemd-journald not found")
    conf = Path("/run/systemd/journald.conf.d")
    conf.mkdir(parents=True)
    (conf / "capture.conf").write_text(
        "[Journal]\nStorage=volatile\nReadKMsg=no\nAudit=no\nForwardToSyslog=no\n"
        "ForwardToWall=no\nForwardToConsole=no\nRateLimitBurst=0\n"
    )
    Path("/run/log/journal").mkdir(parents=True)
    proc = subprocess.Popen([binary], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not SOCKET.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("journal_capture: systemd-journald did not come up")
        time.sleep(0.02)
    return proc


def _inside(args: argparse.Namespace) -> int:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
    SOCKET.parent.mkdir(parents=True)
    stop = threading.Event()
    journald = None
    receiver = None
    if args.journald:
        journald = _start_journald()
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(SOCKET))
        os.chmod(SOCKET, 0o666)
        receiver = threading.Thread(target=_receive, args=(sock, args.out, stop), daemon=True)
        receiver.start()

    stdio_path = args.stdio or Path(tempfile.mkstemp(prefix="journal-capture-stdio-")[1])
    env = {k: v for k, v in os.environ.items() if k != _INSIDE}
    with open(stdio_path, "ab") as stdio:
        st = os.fstat(stdio.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        child = subprocess.Popen(
            args.cmd, stdin=subprocess.DEVNULL, stdout=stdio, stderr=stdio, env=env
        )

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    time.sleep(0.3)  # the last datagrams are already queued; let the receiver take them
    if receiver is not None:
        stop.set()
        receiver.join(2)
    if journald is not None:
        assert args.journald is not None
        export = subprocess.run(
            ["journalctl", "-o", "json", "--no-pager", "-D", "/run/log/journal", *args.match],
            capture_output=True,
            check=False,
        )
        args.journald.write_bytes(export.stdout)
        journald.terminate()
        journald.wait(5)
    if args.stdio is None:
        os.unlink(stdio_path)
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, help="one JSON line per datagram (own socket)")
    p.add_argument("--journald", type=Path, help="run the real journald; write its JSON export")
    p.add_argument("--match", action="append", default=[], help="journalctl match for the export")
    p.add_argument("--stdio", type=Path, help="where CMD's stdout/stderr go (the stream)")
    p.add_argument("cmd", nargs="+", help="the command (after --)")
    args = p.parse_args(argv)
    if (args.out is None) == (args.journald is None):
        p.error("give exactly one of --out and --journald")
    if os.environ.get(_INSIDE) == "1":
        return _inside(args)
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("journal_capture: unshare(1) not found")
    ns = [unshare, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        ns.append("--map-root-user")
    env = dict(os.environ, **{_INSIDE: "1"})
    argv = list(sys.argv[1:] if argv is None else argv)
    os.execve(unshare, [*ns, sys.executable, os.path.abspath(__file__), *argv], env)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
