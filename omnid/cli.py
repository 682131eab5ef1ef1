"""The `omnid` command: one entry point, one sub-command per job.

Sub-command modules are imported lazily so that `omnid ctl status` or `omnid check-config` do not
pay for PortAudio, numpy or the WebSocket stack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omnid.config import Config

EX_OK = 0
EX_USAGE = 64
EX_CONFIG = 78


def _config_or_status(path: Path | None) -> Config | int:
    """The config at `path` (no key needed), or EX_CONFIG once each problem is printed."""
    from omnid.config import ConfigError, load_config

    try:
        return load_config(path, require_api_key=False)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"omnid: config: {problem}", file=sys.stderr)
        return EX_CONFIG


def _check_config(args: argparse.Namespace) -> int:
    from omnid.config_render import render_effective

    cfg = _config_or_status(args.config)
    if isinstance(cfg, int):
        return cfg
    sys.stdout.write(render_effective(cfg))
    return EX_OK


def _run(args: argparse.Namespace) -> int:
    import signal

    # Block the signals before anything starts a thread (importing sounddevice initialises
    # PortAudio, which starts one): only the daemon's sigwait thread may receive them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    from omnid.footprint import tune_process

    tune_process()  # before numpy and the first thread
    from omnid.config import ConfigError, load_config
    from omnid.supervisor import setup_logging

    setup_logging("info")
    try:
        cfg = load_config(args.config, require_api_key=True)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"omnid: config: {problem}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(cfg.log.level)
    from omnid.daemon import run

    return run(cfg)


def _ctl(args: argparse.Namespace) -> int:
    import json

    from omnid.control import ctl

    path = args.socket or _default_socket()
    try:
        reply = ctl(path, " ".join([args.action, *args.words]))
    except OSError as exc:
        print(
            f"omnid ctl: cannot reach the daemon at {path}: {exc.strerror or exc}", file=sys.stderr
        )
        return 69
    print(json.dumps(reply))
    return EX_OK if reply.get("ok") else 1


def _default_socket() -> Path:
    """The running daemon's socket: from the config when it loads, else the documented default."""
    try:
        from omnid.config import load_config

        return Path(load_config(None).control.socket)
    except Exception:
        return Path("/run/omnid/control.sock")


def _demo(args: argparse.Namespace) -> int:
    from omnid.demo import run_demo
    from omnid.supervisor import setup_logging

    setup_logging("warning")
    return run_demo(args.mode, args.input, args.output)


def _devices(args: argparse.Namespace) -> int:
    from omnid.audio import list_devices

    devices = list_devices()
    if not devices:
        print("audio: no devices found (PortAudio sees no ALSA device)")
    for d in devices:
        print(
            f"audio {d['index']:>2}: {d['name']!r} "
            f"in {d['max_input_channels']} ch {d.get('input_rates', [])} / "
            f"out {d['max_output_channels']} ch {d.get('output_rates', [])}"
        )
    from omnid.camera import list_sources

    cameras = list_sources()
    for line in cameras:
        print(f"camera: {line}")
    if not cameras:
        print("camera: none found (no picamera2 camera, no /dev/video*)")
    return EX_OK


def _tools(args: argparse.Namespace) -> int:
    from omnid.tools.catalog import report

    cfg = _config_or_status(args.config)
    return cfg if isinstance(cfg, int) else report(cfg, sys.stdout)


def _usage(args: argparse.Namespace) -> int:
    from omnid.usage_command import run

    return run(args.config, args.file, args.since, args.until, args.json)


def _wake_test(args: argparse.Namespace) -> int:
    cfg = _config_or_status(args.config)
    if isinstance(cfg, int):
        return cfg
    from omnid.waketest import run

    return run(cfg, args.seconds)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnid", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check-config", help="validate and print the effective config")
    p.add_argument("--config", type=Path, help="config file (default: $OMNID_CONFIG, /etc/omnid)")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("run", help="run the daemon (what the systemd unit runs)")
    p.add_argument("--config", type=Path, help="config file (default: $OMNID_CONFIG, /etc/omnid)")
    p.set_defaults(func=_run)

    p = sub.add_parser("ctl", help="talk to a running daemon over its control socket")
    p.add_argument("action", choices=["press", "release", "tap", "status", "volume"])
    p.add_argument("words", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--socket", type=Path, help="control socket (default: from the config)")
    p.set_defaults(func=_ctl)

    p = sub.add_parser("demo", help="a real turn against the built-in simulator, WAV in and out")
    p.add_argument("--mode", choices=["manual", "vad"], default="manual")
    p.add_argument("--input", type=Path, help="16-bit WAV to speak (default: bundled sample)")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("omnid-demo-reply.wav"),
        help="where the speaker output is written (default: %(default)s)",
    )
    p.set_defaults(func=_demo)

    p = sub.add_parser("devices", help="audio devices and the rates they accept")
    p.set_defaults(func=_devices)

    p = sub.add_parser("usage", help="token usage per day and model, read back from the journal")
    p.add_argument("--since", help="from this time (journalctl syntax; with --file: YYYY-MM-DD…)")
    p.add_argument("--until", help="up to this time (as --since)")
    p.add_argument(
        "--file", type=Path, help="a saved `journalctl -o json` export instead ('-': stdin)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.add_argument("--config", type=Path, help="config with the [usage] prices (default: as run)")
    p.set_defaults(func=_usage)

    p = sub.add_parser("tools", help="every tool the model will see, and whether it can run")
    p.add_argument("--config", type=Path, help="config file (default: $OMNID_CONFIG, /etc/omnid)")
    p.set_defaults(func=_tools)

    p = sub.add_parser(
        "wake-test",
        help="the wake-word detector's live probability, to set wake.probability_cutoff",
        description=(
            "Listen on audio.input_device with the [wake] settings and print, four times a "
            "second, the detector's latest and highest probability against the cutoff, and "
            "WAKE on each detection. Say the wake word where people will say it, and let the "
            "room sound as it usually does: a cutoff between the two peaks suits the room. "
            "Nothing is sent or recorded. Stop the daemon first if it holds the microphone. "
            "Exit status 0; 78 when the config is bad or the wake extra is not installed; "
            "69 when the microphone cannot be opened or delivers nothing."
        ),
    )
    p.add_argument("--config", type=Path, help="config file (default: $OMNID_CONFIG, /etc/omnid)")
    p.add_argument(
        "--seconds",
        type=_positive_seconds,
        help="stop after this much audio (default: run until Ctrl-C)",
    )
    p.set_defaults(func=_wake_test)

    sub.add_parser("simulate", help="the local simulator of the service (see --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "simulate":
        # The simulator owns its flags (it grows fault options with every capability).
        from omnid.simulator import main as simulate_main

        return simulate_main(argv[1:])
    args = _build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
