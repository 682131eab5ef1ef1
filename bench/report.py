"""The figures from the scenarios' raw results, and the human table: issue 8's (latency, losses,
CPU and memory against the SDK), then issue 17's wake word (the detector, the daemon waiting in
each mode, and wake mode's session kept warm or opened on the wake word). Each section's keys are
reported when that section ran (`--only`)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.common import numbers, pct
from bench.waiting import MODES
from bench.wake import NOISES, SNRS
from bench.wake_session import NAMES as SESSION_SETTINGS

ISSUE8_KEYS = (
    "commit_ms_p50",
    "commit_ms_p95",
    "commit_ms_p95_15s",
    "first_audio_ms_p50",
    "first_audio_ms_p95",
    "barge_in_ms_p95",
    "tap_ms_p95",
    "rollover_lost_samples",
    "cpu_pct",
    "rss_mb",
    "peak_rss_mb",
    "sdk_cpu_pct",
    "sdk_rss_mb",
    "sdk_peak_rss_mb",
    "cpu_ratio_vs_sdk",
    "ready_s",
    "rss_growth_mb",
)

WAKE_KEYS = (
    "wake_utterances",
    "wake_detected_clean",
    *(f"wake_detected_{noise}_{snr}db" for noise in NOISES for snr in SNRS),
    "wake_false_hours",
    "wake_false_activations",
    "wake_false_per_hour",
    "wake_false_max_probability",
    "wake_cpu_pct",
)
WAITING_KEYS = tuple(
    f"waiting_{what}_{mode}" for what in ("cpu_pct", "vcsw_per_s", "ivcsw_per_s") for mode in MODES
)
WAKE_SESSION_KEYS = (
    *(
        f"wake_session_{what}_ms_{s}"
        for what in ("first_audio", "after_question")
        for s in SESSION_SETTINGS
    ),
    *(
        f"wake_session_reconnects_per_{per}_{s}"
        for per in ("min", "hour")
        for s in ("warm", "cold")
    ),
    *(f"wake_session_connects_per_wake_{s}" for s in ("warm", "cold")),
)
ALSA_KEYS = (
    *(f"alsa_{key}" for key in WAITING_KEYS),
    "alsa_device_buffer_ms",
    "alsa_device_buffer_ms_p95",
    "alsa_barge_in_ms_p50",
    "alsa_barge_in_ms_p95",
    "alsa_tap_ms_p50",
    "alsa_tap_ms_p95",
)
SECTIONS = {
    "issue8": ISSUE8_KEYS,
    "wake": WAKE_KEYS,
    "waiting": WAITING_KEYS,
    "wake-session": WAKE_SESSION_KEYS,
    "alsa": ALSA_KEYS,
}
KEYS = ISSUE8_KEYS + WAKE_KEYS + WAITING_KEYS + WAKE_SESSION_KEYS + ALSA_KEYS
HEADINGS = {ALSA_KEYS[0]: "through real PortAudio on the ALSA FIFO rig (issue 18):"}
"""Lines of the table shown above a key: where a section measures something else."""
ALSA_TARGET_MS = 25.0  # barge-in and tap: silent this long after the event, plus the device buffer


def keys(sections: list[str]) -> list[str]:
    """The keys of `sections`, in the report's order."""
    wanted = {k for name in sections for k in SECTIONS[name]}
    return [k for k in KEYS if k in wanted]


UNITS = {k: "ms" for k in KEYS if "_ms_" in k} | {
    "rollover_lost_samples": "samples",
    "cpu_pct": "% core",
    "sdk_cpu_pct": "% core",
    "rss_mb": "MB",
    "peak_rss_mb": "MB",
    "sdk_rss_mb": "MB",
    "sdk_peak_rss_mb": "MB",
    "rss_growth_mb": "MB",
    "cpu_ratio_vs_sdk": "×",
    "ready_s": "s",
    "wake_utterances": "phrases",
    "wake_false_hours": "h",
    "wake_false_activations": "",
    "wake_false_per_hour": "/ h",
    "wake_false_max_probability": "",
    "wake_cpu_pct": "% core",
}
UNITS |= {k: "detected" for k in WAKE_KEYS if k.startswith("wake_detected_")}
UNITS |= {k: "% core" if "cpu" in k else "/ s" for k in WAITING_KEYS}
UNITS |= {k: "/ min" for k in WAKE_SESSION_KEYS if "_per_min_" in k}
UNITS |= {k: "/ h" for k in WAKE_SESSION_KEYS if "_per_hour_" in k}
UNITS |= {k: "/ wake" for k in WAKE_SESSION_KEYS if "_per_wake_" in k}
UNITS |= {k: "% core" if "cpu" in k else "/ s" for k in ALSA_KEYS if k.startswith("alsa_waiting_")}
UNITS |= {"alsa_device_buffer_ms": "ms"}

# (key, target as text, check); the benchmark reports them, it does not fail on them.
TARGETS: list[tuple[str, str, Callable[[float], bool]]] = [
    ("commit_ms_p95", "≤ 10", lambda v: v <= 10),
    ("commit_ms_p95_15s", "≤ 10, not growing", lambda v: v <= 10),
    ("first_audio_ms_p95", "≤ 20", lambda v: v <= 20),
    ("barge_in_ms_p95", "≤ 25 (the wav: timeline)", lambda v: v <= 25),
    ("tap_ms_p95", "≤ 25 (the wav: timeline)", lambda v: v <= 25),
    ("rollover_lost_samples", "0", lambda v: v == 0),
    ("cpu_pct", "≤ 2", lambda v: v <= 2),
    ("rss_mb", "≤ 60", lambda v: v <= 60),
    ("peak_rss_mb", "≤ 60", lambda v: v <= 60),
    ("cpu_ratio_vs_sdk", "≤ 1.0, then 0.5", lambda v: v <= 1.0),
    ("ready_s", "≤ 1.0", lambda v: v <= 1.0),
    ("rss_growth_mb", "≤ 1", lambda v: v <= 1),
]


def summarise(raw: dict[str, Any], longest: float) -> tuple[dict[str, float], dict[str, Any]]:
    """The figures of the sections that ran (`longest`: the utterance length of
    `commit_ms_p95_15s`), and the details."""
    figures: dict[str, float] = {}
    details: dict[str, Any] = {}
    if "load" in raw:
        others = ("wake", "waiting", "wake-session", "alsa")
        mine = {k: v for k, v in raw.items() if k not in others}
        figures, details = _issue8(mine, longest)
    if "wake" in raw:
        figures |= _wake(raw["wake"])
        details["wake"] = raw["wake"]
    if "waiting" in raw:
        w = raw["waiting"]
        figures |= {
            f"waiting_{what}_{mode}": round(float(w[mode][what]), 3)
            for what in ("cpu_pct", "vcsw_per_s", "ivcsw_per_s")
            for mode in MODES
            if mode in w
        }
        details["waiting"] = w
    if "wake-session" in raw:
        figures |= _wake_session(raw["wake-session"]["settings"])
        details["wake-session"] = raw["wake-session"]
    if "alsa" in raw:
        figures |= _alsa(raw["alsa"])
        details["alsa"] = raw["alsa"]
    return figures, details


def _alsa(a: dict[str, Any]) -> dict[str, float]:
    w = a["waiting"]
    figures = {
        f"alsa_waiting_{what}_{mode}": w[mode][what]
        for what in ("cpu_pct", "vcsw_per_s", "ivcsw_per_s")
        for mode in MODES
        if mode in w
    }
    figures |= {
        "alsa_device_buffer_ms": a["buffer"]["vad"]["ms_p50"],  # the barge-in's
        # What a flush leaves saws with the refills: the p95s of a barge-in and of the buffer
        # are the pair to set side by side.
        "alsa_device_buffer_ms_p95": a["buffer"]["vad"]["ms_p95"],
        "alsa_barge_in_ms_p50": pct(a["barge_ms"], 50),
        "alsa_barge_in_ms_p95": pct(a["barge_ms"], 95),
        "alsa_tap_ms_p50": pct(a["tap_ms"], 50),
        "alsa_tap_ms_p95": pct(a["tap_ms"], 95),
    }
    return {k: round(float(v), 3) for k, v in figures.items()}


def _wake_session(settings: dict[str, Any]) -> dict[str, float]:
    figures = {
        f"wake_session_{what}_ms_{name}": settings[name][f"{what}_ms"]
        for what in ("first_audio", "after_question")
        for name in SESSION_SETTINGS
    }
    figures |= {
        f"wake_session_reconnects_per_{per}_{name}": settings[name][f"reconnects_per_{per}"]
        for per in ("min", "hour")
        for name in ("warm", "cold")
    }
    figures |= {
        f"wake_session_connects_per_wake_{name}": settings[name]["connects_per_wake"]
        for name in ("warm", "cold")
    }
    return {k: round(float(v), 3) for k, v in figures.items()}


def _wake(w: dict[str, Any]) -> dict[str, float]:
    det, fa = w["detected"], w["false"]
    figures: dict[str, float] = {
        "wake_utterances": w["utterances"],
        "wake_detected_clean": det["clean"],
    }
    figures |= {f"wake_detected_{n}_{snr}db": det[n][snr] for n in NOISES for snr in SNRS}
    figures |= {
        "wake_false_hours": round(fa["hours"], 3),
        "wake_false_activations": fa["activations"],
        "wake_false_per_hour": round(fa["per_hour"], 3),
        "wake_false_max_probability": round(fa["max_probability"], 3),
        "wake_cpu_pct": round(w["cpu_pct"], 3),
    }
    return figures


def _issue8(raw: dict[str, Any], longest: float) -> tuple[dict[str, float], dict[str, Any]]:
    commits = [c for k, r in raw.items() if k.startswith("commit") for c in r["commits"]]
    barge = [b for k, r in raw.items() if k.startswith("barge") for b in r["barge_ms"]]
    taps = [b for k, r in raw.items() if k.startswith("tap") for b in r["tap_ms"]]
    turns = [t for r in raw.values() for t in _turns(r)]
    play = numbers(turns, "OMNID_PLAY_MS")
    ready = [r["ready_s"] for r in raw.values() if "ready_s" in r]
    ld, ss = raw["load"], raw["sessions"]
    ready += [run["ready_s"] for run in ld["omnid"]]
    cpu = statistics.median(run["cpu_pct"] for run in ld["omnid"])
    sdk_cpu = statistics.median(run["cpu_pct"] for run in ld["sdk"])
    figures = {
        "commit_ms_p50": pct([ms for _, ms in commits], 50),
        "commit_ms_p95": pct([ms for _, ms in commits], 95),
        "commit_ms_p95_15s": pct([ms for n, ms in commits if n == longest], 95),
        "first_audio_ms_p50": pct(play, 50),
        "first_audio_ms_p95": pct(play, 95),
        "barge_in_ms_p95": pct(barge, 95),
        "tap_ms_p95": pct(taps, 95),
        "rollover_lost_samples": ss["lost"],
        "cpu_pct": cpu,
        "rss_mb": statistics.median(run["rss_mb"] for run in ld["omnid"]),
        "peak_rss_mb": max(run["hwm_mb"] for run in ld["omnid"]),
        "sdk_cpu_pct": sdk_cpu,
        "sdk_rss_mb": statistics.median(run["rss_mb"] for run in ld["sdk"]),
        "sdk_peak_rss_mb": max(run["hwm_mb"] for run in ld["sdk"]),
        "cpu_ratio_vs_sdk": cpu / max(sdk_cpu, 1e-9),
        "ready_s": statistics.median(ready),
        "rss_growth_mb": ss["rss_end_mb"] - ss["rss_after_warmup_mb"],
    }
    figures = {k: round(float(v), 3) for k, v in figures.items()}
    figures["rollover_lost_samples"] = int(ss["lost"])  # a count
    outcomes: dict[str, int] = {}
    for t in turns:
        outcomes[t.get("OMNID_OUTCOME", "?")] = outcomes.get(t.get("OMNID_OUTCOME", "?"), 0) + 1
    by_length = {n: [ms for m, ms in commits if m == n] for n in sorted({m for m, _ in commits})}
    details = {
        "commit_by_length": {
            f"{n:g} s": (len(v), pct(v, 50), pct(v, 95)) for n, v in by_length.items()
        },
        "play_samples": len(play),
        "barge_samples": len(barge),
        "tap_samples": len(taps),
        "turns": outcomes,
        "ready_samples": len(ready),
        "load": {
            "omnid_hwm_mb": max(run["hwm_mb"] for run in ld["omnid"]),
            "sdk_hwm_mb": max(run["hwm_mb"] for run in ld["sdk"]),
            "omnid_cpu": [run["cpu_pct"] for run in ld["omnid"]],
            "omnid_rss": [run["rss_range_mb"] for run in ld["omnid"]],
            "sdk_cpu": [run["cpu_pct"] for run in ld["sdk"]],
            "images_sent": ld["images_sent"],
            "simulator_errors": ld["errors"],
            "sdk": ld["sdk"][-1]["summary"],
        },
        "sessions": {
            k: ss[k]
            for k in ("sessions", "rollovers", "capped", "captured", "duplicated", "foreign")
        },
        "rss_after_warmup_mb": ss["rss_after_warmup_mb"],
        "rss_end_mb": ss["rss_end_mb"],
        "mcp": raw["mcp"],
    }
    return figures, details


def _runs(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _turns(result: dict[str, Any]) -> list[dict[str, str]]:
    if "turns" in result:
        return list(result["turns"])
    return [t for run in result.get("omnid", []) for t in run["turns"]]


def table(figures: dict[str, float], details: dict[str, Any], info: dict[str, str]) -> str:
    targets = {key: (text, check) for key, text, check in TARGETS}
    shown = [k for k in KEYS if k in figures]
    width = max([28, *(len(k) for k in shown)])  # the wake session's keys are longer
    lines = [f"{'figure':<{width}} {'value':>10}  {'unit':<8} {'target':<22}", "-" * (width + 48)]
    for key in shown:
        if key in HEADINGS:
            lines.append(HEADINGS[key])
        value = figures[key]
        text, check = targets.get(key, ("", None))
        verdict = "" if check is None else ("ok" if check(value) else "MISSED")
        unit = UNITS[key]
        if unit == "detected":
            unit = f"of {figures['wake_utterances']:g}"
        lines.append(f"{key:<{width}} {value:>10.3f}  {unit:<8} {text:<22} {verdict}".rstrip())
    if "sessions" in details:
        lines += _issue8_lines(details)
    if "wake" in details:
        lines += _wake_lines(details["wake"])
    if "waiting" in details:
        lines += _waiting_lines(details["waiting"])
    if "wake-session" in details:
        lines += _wake_session_lines(details["wake-session"])
    if "alsa" in details:
        lines += _alsa_lines(details["alsa"], details.get("waiting"))
    lines += [
        "",
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM, "
        f"{info['arch']}, Linux {info['kernel']}, Python {info['python']}; load average "
        f"{info.get('load', '?')}",
    ]
    return "\n".join(lines)


def _issue8_lines(d: dict[str, Any]) -> list[str]:
    lines = ["", "release → commit by utterance length (samples, p50, p95 ms):"]
    for length, (n, p50, p95) in d["commit_by_length"].items():
        lines.append(f"  {length:>5}: {n:>3} turns, {p50:.2f}, {p95:.2f}")
    s = d["sessions"]
    lines += [
        f"first audio → device: {d['play_samples']} turns; barge-ins: {d['barge_samples']}; "
        f"taps: {d['tap_samples']}; "
        f"daemon starts: {d['ready_samples']}",
        f"turn outcomes: {d['turns']}",
        f"sessions run: {s['sessions']} sessions, {s['rollovers']} rollovers, "
        f"{s['capped']} cut at the cap; {s['captured']} mic samples up to the last sent, "
        f"{s['duplicated']} sent twice, {s['foreign']} not from the mic",
        f"  RSS {d['rss_after_warmup_mb']:.1f} MB after warm-up → {d['rss_end_mb']:.1f} MB "
        "at the end",
        f"load: CPU per run omnid {_runs(d['load']['omnid_cpu'])}, SDK "
        f"{_runs(d['load']['sdk_cpu'])} %; omnid RSS over each window "
        f"{', '.join(f'{lo:.1f}–{hi:.1f}' for lo, hi in d['load']['omnid_rss'])} MB; "
        f"{d['load']['images_sent']} images sent, "
        f"{d['load']['simulator_errors']} simulator errors; peak RSS omnid "
        f"{d['load']['omnid_hwm_mb']:.1f} MB, SDK {d['load']['sdk_hwm_mb']:.1f} MB; "
        f"SDK client: {d['load']['sdk']}",
        f"idle RSS without an MCP server {d['mcp']['without']['rss_mb']:.1f} MB (peak "
        f"{d['mcp']['without']['hwm_mb']:.1f}), with one stdio server "
        f"{d['mcp']['with']['rss_mb']:.1f} MB (peak {d['mcp']['with']['hwm_mb']:.1f})",
    ]
    return lines


def _wake_lines(w: dict[str, Any]) -> list[str]:
    n, det, fa, near = w["utterances"], w["detected"], w["false"], w["near_miss"]
    lines = [
        "",
        f"wake word {w['model']} (cutoff {w['cutoff']:g}, refractory 1.0 s, 20 ms blocks): "
        f"'okay nabu, <question>' detected of {n}; clean {det['clean']}/{n}",
        f"  {'SNR':<8}" + "".join(f"{snr:>5} dB" for snr in SNRS),
    ]
    for noise in NOISES:
        lines.append(f"  {noise:<8}" + "".join(f"{det[noise][snr]:>5}/{n}" for snr in SNRS))
    peaks = "; ".join(f"{p:.3f} ({what})" for p, what in fa["top"])
    lines += [
        f"  missed: {', '.join(w['detection']['misses'][:8]) or 'none'}"
        + (" …" if len(w["detection"]["misses"]) > 8 else ""),
        f"  fired in the noise before a phrase: {w['detection']['early']}",
        f"false activations: {fa['activations']} in {fa['hours']:.2f} h of speech without the "
        f"wake word ({fa['per_hour']:.2f} / h); highest probabilities: {peaks}",
        f"near misses (kept apart): {near['activated']} of {near['phrases']} phrases fired "
        f"{near['by_phrase'] or ''}".rstrip(),
        f"detector CPU: {fa['cpu_s']:.2f} s for {fa['audio_s']:.0f} s of audio = "
        f"{w['cpu_pct']:.3f} % of one core; the wake section took {w['seconds']:.0f} s",
    ]
    return lines


def _waiting_lines(w: dict[str, Any]) -> list[str]:
    lines = ["", "waiting, a quiet room (per mode, median of the runs; CPU per run):"]
    for mode, m in w.items():
        runs = m["runs"]
        lines.append(
            f"  {mode:<7} {m['cpu_pct']:.2f} % core ({_runs([r['cpu_pct'] for r in runs])}), "
            f"{m['vcsw_per_s']:.0f} voluntary + {m['ivcsw_per_s']:.0f} involuntary "
            f"switches / s, {runs[-1]['threads']} threads, "
            f"{statistics.median(r['appends_per_s'] for r in runs):.1f} audio appends / s sent, "
            f"{'connected' if runs[-1]['connected'] else 'no session'}, "
            + (f"{runs[-1]['wakes']} wakes, " if runs[-1].get("wakes") is not None else "")
            + f"READY after {statistics.median(r['ready_s'] for r in runs):.2f} s"
        )
    return lines


def _wake_session_lines(w: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"wake mode's session: one wake per run, 'okay nabu, what time is it' "
        f"{w['onset_s']:g} s after the start, in {', '.join(dict.fromkeys(w['voices']))}; the "
        f"simulator closing sessions idle for {w['idle_s']:g} s; medians (range) of the wakes "
        "that met their case:",
    ]
    for name, s in w["settings"].items():
        spread = s["first_audio_range_ms"]
        rtt = w["rtts"].get(name)
        lines.append(
            f"  {name:<13} first audio {s['first_audio_ms']:.0f} ms after the wake"
            + (f" ({spread[0]:.0f}–{spread[1]:.0f})" if spread else "")
            + f", {s['after_question_ms']:.0f} ms after the question; audio at the service "
            f"{s['uplink_ms']:.0f} ms after the wake"
            + (
                f"; handshake {s['handshake_ms']:.0f} ms (round trips of {1000 * rtt:.0f} ms)"
                if rtt is not None
                else ""
            )
            + f"; {s['as_intended']}/{s['wakes']} wakes as intended ({s['heard']} heard, "
            f"{s['answered']} answered), {s['connects_per_wake']:.2f} connects per wake"
        )
    warm, cold = w["settings"]["warm"], w["settings"]["cold"]
    lines.append(
        f"  reconnects while waiting: warm {warm['reconnects_per_min']:.2f} / min at a "
        f"{w['idle_s']:g} s idle close = {warm['reconnects_per_hour']:.1f} / h at the service's "
        f"{w['service_idle_s']:g} s; cold {cold['reconnects_per_min']:.2f} / min = "
        f"{cold['reconnects_per_hour']:.1f} / h, plus {cold['connects_per_wake']:.0f} per wake; "
        f"the section took {w['seconds']:.0f} s"
    )
    return lines


def _alsa_lines(a: dict[str, Any], wav: dict[str, Any] | None) -> list[str]:
    """The ALSA rig's details; `wav`: the waiting section's, when it ran too, for comparison."""
    lines = [
        "",
        "through PortAudio on the ALSA FIFO rig, waiting in a quiet room (per mode, median of the "
        "runs; CPU per run"
        + ("; the `wav:` devices' figures of this run in brackets" if wav else "")
        + "):",
    ]
    for mode, m in a["waiting"].items():
        runs = m["runs"]
        w = (wav or {}).get(mode)
        streams = {
            name: statistics.median(r["switches_by_stream"][name] for r in runs)
            for name in ("capture", "playback", "other")
        }
        lines.append(
            f"  {mode:<7} {m['cpu_pct']:.2f} % core ({_runs([r['cpu_pct'] for r in runs])})"
            + (f" [{w['cpu_pct']:.2f}]" if w else "")
            + f", {m['vcsw_per_s']:.0f} voluntary"
            + (f" [{w['vcsw_per_s']:.0f}]" if w else "")
            + f" + {m['ivcsw_per_s']:.0f} involuntary"
            + (f" [{w['ivcsw_per_s']:.0f}]" if w else "")
            + f" switches / s: PortAudio's capture thread {streams['capture']:.0f}, its "
            f"playback thread {streams['playback']:.0f}, the others {streams['other']:.0f} "
            f"({runs[-1]['threads']} threads at the end); "
            f"{statistics.median(r['appends_per_s'] for r in runs):.1f} audio appends / s sent, "
            f"speaker read at {statistics.median(r['speaker_s_per_s'] for r in runs):.2f}× real "
            f"time, the microphone unread "
            f"{100 * statistics.median(r['mic_unread_s'] for r in runs):.0f} % of the window, "
            f"READY after {statistics.median(r['ready_s'] for r in runs):.2f} s"
        )
    shown: set[int] = set()
    for mode in ("vad", "manual"):
        b = a["buffer"][mode]
        if b["block_ms"] in shown:
            continue
        shown.add(b["block_ms"])
        lines.append(
            f"device buffer at {b['block_ms']} ms speaker blocks ({mode} mode's; PortAudio's ALSA "
            f"buffer and the speaker pipe: what a flush at a random moment leaves to play): p50 "
            f"{b['ms_p50']:.1f} ms, p5–p95 {b['ms_p5']:.1f}–{b['ms_p95']:.1f}, max "
            f"{b['ms_max']:.1f}; {b['callbacks_per_s']:.1f} playback callbacks / s, "
            f"{b['back_to_back_pct']:.0f} % of them back to back; {b['start_offset_ms']:.0f} ms "
            f"of silence written at the stream's start; PortAudio reports "
            f"{b['portaudio_latency_ms']:.1f} ms of output latency; the speaker's own flush "
            f"(in-process, {len(b['flush_ms'])} times) silent after p50 "
            f"{pct(b['flush_ms'], 50):.1f} ms, max {max(b['flush_ms']):.1f}"
        )
    for name, mode, values in (
        ("barge-in", "vad", a["barge_ms"]),
        ("tap", "manual", a["tap_ms"]),
    ):
        p95, ceiling = pct(values, 95), ALSA_TARGET_MS + a["buffer"][mode]["ms_p95"]
        lines.append(
            f"{name} ({mode} mode): {len(values)} through the rig, silent after p50 "
            f"{pct(values, 50):.1f} ms, p95 {p95:.1f}, max {max(values):.1f}; target ≤ "
            f"{ALSA_TARGET_MS:g} ms + the device buffer (its p95) = {ceiling:.1f} ms — "
            + ("met" if p95 <= ceiling else "MISSED")
        )
    return lines
