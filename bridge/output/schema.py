"""The single source of truth for what the bridge puts on the wire.

Every OSC address and every JSON field is declared here once; the OSC and WebSocket senders, the
TouchDesigner callbacks' documentation and the README tables are all generated from these tables
(``emotion-bridge schema --markdown``), and a test checks the docs still agree.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from bridge.frames import AffectState
from bridge.labels import LABELS

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class OscField:
    address: str
    type: str  # "f" float, "i" int, "s" string
    doc: str


OSC_FIELDS: tuple[OscField, ...] = (
    OscField("/emotion/valence", "f", "Valence in [-1, 1]: unpleasant (-1) to pleasant (+1)."),
    OscField("/emotion/arousal", "f", "Arousal in [-1, 1]: calm/sleepy (-1) to excited/tense (+1)."),
    OscField("/emotion/confidence", "f", "Model confidence in [0, 1]; low when evidence is weak or missing."),
    OscField("/emotion/label", "i", "Index of the current (hysteresis-filtered) label, 0-7, order as in `labels`."),
    OscField("/emotion/label_name", "s", "Name of the current label (for the OSC In DAT)."),
    *(OscField(f"/emotion/prob/{name}", "f", f"Probability of `{name}` in [0, 1].") for name in LABELS),
    OscField("/face/present", "i", "1 while a face is tracked, 0 otherwise (also 0 while the camera reconnects)."),
    OscField("/voice/active", "i", "1 while voice activity is detected, 0 in silence or without a microphone."),
    OscField("/voice/loudness", "f", "Loudness of the newest audio hop in dBFS (-100 to 0)."),
    OscField("/voice/pitch", "f", "Pitch of the voice in Hz (0 when unvoiced)."),
    OscField("/bridge/fps", "f", "States sent per second (measured)."),
    OscField("/bridge/latency_ms", "f", "Capture-to-wire latency of this state in milliseconds."),
)

OSC_EVENT = OscField(
    "/emotion/changed", "s", "Sent once when the label changes (after the dwell time), argument: the new label name."
)
OSC_HEALTH = OscField(
    "/bridge/health", "s", "Once a second: JSON text with per-source status (ok/reconnecting/failed/off) and counters."
)
OSC_BLENDSHAPE_PREFIX = "/face/blendshape/"  # + name; optional, off by default

JSON_STATE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("type", "string", '"state"'),
    ("v", "int", "Schema version."),
    ("seq", "int", "Sequence number, +1 per state."),
    ("t_capture", "float", "Capture time of the newest input this state reflects (seconds since the epoch)."),
    ("t_emit", "float", "Time the state was put on the wire (seconds since the epoch)."),
    ("valence", "float", "[-1, 1]"),
    ("arousal", "float", "[-1, 1]"),
    ("confidence", "float", "[0, 1]"),
    ("label", "string", "Current label after hysteresis."),
    ("probs", "object", "label -> probability, sums to 1."),
    ("face", "object", '{"present": bool, "age_ms": float or null, "yaw", "pitch", "roll" (degrees), "size"}'),
    ("voice", "object", '{"active": bool, "age_ms": float or null, "loudness_db": float, "pitch_hz": float}'),
    ("fps", "float", "States per second (measured)."),
    ("latency_ms", "float", "Capture-to-wire latency in milliseconds."),
)

JSON_MESSAGES: tuple[tuple[str, str], ...] = (
    ("hello", 'On connect: {"type":"hello","v","labels":[...],"osc":[addresses],"state_fields":[...],"version"}'),
    ("state", "Per tick, fields below."),
    ("event", '{"type":"event","v","event":"label_changed","label","previous","t_emit","seq"}'),
    ("health", '{"type":"health","v","sources":{name:{"status","detail",...}},"counters":{...}}'),
    ("ack", 'Reply to a command: {"type":"ack","cmd","ok":bool,"detail"}'),
)


def _finite(x: float, default: float = 0.0) -> float:
    x = float(x)
    return x if math.isfinite(x) else default


def osc_values(state: AffectState, fps: float, latency_ms: float) -> list[tuple[str, object]]:
    """The (address, value) pairs of one state, in OSC_FIELDS order. Never NaN or Inf."""
    vals: list[object] = [
        _finite(state.valence),
        _finite(state.arousal),
        _finite(state.confidence),
        int(LABELS.index(state.label)),
        state.label,
        *(_finite(state.probs.get(n, 0.0)) for n in LABELS),
        int(bool(state.face_present)),
        int(bool(state.voice_active)),
        _finite(state.loudness_db, -100.0),
        _finite(state.pitch_hz),
        _finite(fps),
        _finite(latency_ms),
    ]
    return [(f.address, v) for f, v in zip(OSC_FIELDS, vals)]


def _r(x: float | None, nd: int = 4):
    if x is None:
        return None
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


def state_message(state: AffectState, t_emit: float, fps: float, latency_ms: float) -> dict:
    """The JSON ``state`` message (wall-clock times)."""
    return {
        "type": "state",
        "v": SCHEMA_VERSION,
        "seq": state.seq,
        "t_capture": state.t_capture_wall,
        "t_emit": t_emit,
        "valence": _r(state.valence),
        "arousal": _r(state.arousal),
        "confidence": _r(state.confidence),
        "label": state.label,
        "probs": {n: _r(state.probs.get(n, 0.0)) for n in LABELS},
        "face": {
            "present": bool(state.face_present),
            "age_ms": _r(state.face_age_ms, 1),
            "yaw": _r(state.head_pose[0], 2),
            "pitch": _r(state.head_pose[1], 2),
            "roll": _r(state.head_pose[2], 2),
            "size": _r(state.face_size),
        },
        "voice": {
            "active": bool(state.voice_active),
            "age_ms": _r(state.voice_age_ms, 1),
            "loudness_db": _r(state.loudness_db, 2),
            "pitch_hz": _r(state.pitch_hz, 1),
        },
        "fps": _r(fps, 2),
        "latency_ms": _r(latency_ms, 2),
    }


def hello_message(version: str) -> dict:
    return {
        "type": "hello",
        "v": SCHEMA_VERSION,
        "version": version,
        "labels": list(LABELS),
        "osc": [f.address for f in OSC_FIELDS] + [OSC_EVENT.address, OSC_HEALTH.address],
        "state_fields": [f[0] for f in JSON_STATE_FIELDS],
    }


def event_message(label: str, previous: str, seq: int, t_emit: float) -> dict:
    return {"type": "event", "v": SCHEMA_VERSION, "event": "label_changed", "label": label,
            "previous": previous, "seq": seq, "t_emit": t_emit}


def dumps(msg: dict) -> str:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def markdown_tables() -> str:
    """The OSC and JSON tables as Markdown (README and touchdesigner/README.md embed this verbatim)."""
    lines = ["| OSC address | type | meaning |", "|---|---|---|"]
    for f in (*OSC_FIELDS, OSC_EVENT, OSC_HEALTH):
        lines.append(f"| `{f.address}` | {f.type} | {f.doc} |")
    lines.append(f"| `{OSC_BLENDSHAPE_PREFIX}<name>` | f | Optional (`osc.blendshapes: true`): the 52 raw blendshape scores. |")
    lines += ["", "| JSON message `type` | content |", "|---|---|"]
    for name, doc in JSON_MESSAGES:
        lines.append(f"| `{name}` | {doc} |")
    lines += ["", "| `state` field | type | meaning |", "|---|---|---|"]
    for name, typ, doc in JSON_STATE_FIELDS:
        lines.append(f"| `{name}` | {typ} | {doc} |")
    return "\n".join(lines)
