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

SCHEMA_VERSION = 2  # 2: several visitors (/person/<slot>/..., /crowd/..., state.people, state.crowd, person events)


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
        **people_fields(state),
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
    lines += _people_tables()
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ people (v2)
# Several visitors (bridge.people, `people.num_faces`). Every slot 0..num_faces-1 is sent every tick (present 0 while
# empty), so an OSC In CHOP keeps the same channels whoever stands in front of the camera.

JSON_STATE_FIELDS = JSON_STATE_FIELDS + (
    ("people", "array", 'Every person in view: {"id" (stable while tracked, kept for `people.forget_s` after '
                        'leaving), "slot" (0..num_faces-1), "present", "valence", "arousal", "confidence", "label", '
                        '"probs", "speaking": bool, "voice_score" (mouth-voice correlation), "box" [x0,y0,x1,y1] '
                        '(0-1), "face_size", "since"}; empty with nobody in view.'),
    ("crowd", "object or null", '{"count", "valence", "arousal", "confidence" (confidence-weighted mean of the people), '
                        '"label", "probs", "speaking" (slot or -1), "speaking_id", "primary" (slot whose state the '
                        'top-level fields carry, or -1), "primary_id", "slots"}; null where no people are tracked '
                        '(simulate, replay of old recordings).'),
)

PERSON_OSC_FIELDS: tuple[OscField, ...] = (
    OscField("/person/<slot>/present", "i", "1 while a person holds this slot (0..`people.num_faces`-1), else 0."),
    OscField("/person/<slot>/id", "i", "The person's id (stable while tracked and for `people.forget_s` after "
                                       "leaving); -1 when the slot is empty."),
    OscField("/person/<slot>/valence", "f", "This person's valence in [-1, 1] (0 when empty)."),
    OscField("/person/<slot>/arousal", "f", "This person's arousal in [-1, 1] (0 when empty)."),
    OscField("/person/<slot>/confidence", "f", "This person's confidence in [0, 1] (0 when empty)."),
    OscField("/person/<slot>/label", "i", "Index of this person's label (hysteresis-filtered), order as in `labels`."),
    OscField("/person/<slot>/label_name", "s", "Name of this person's label."),
    OscField("/person/<slot>/speaking", "i", "1 while the voice is credited to this person (their mouth moves in step "
                                             "with it), else 0."),
    *(OscField(f"/person/<slot>/prob/{name}", "f", f"This person's probability of `{name}`.") for name in LABELS),
)

CROWD_OSC_FIELDS: tuple[OscField, ...] = (
    OscField("/crowd/count", "i", "People in view now."),
    OscField("/crowd/valence", "f", "Confidence-weighted mean valence of the people in view (0 with nobody)."),
    OscField("/crowd/arousal", "f", "Confidence-weighted mean arousal of the people in view (0 with nobody)."),
    OscField("/crowd/confidence", "f", "Mean confidence of the people in view."),
    OscField("/crowd/label", "i", "Index of the crowd's label (its own hysteresis over the mean probabilities)."),
    OscField("/crowd/label_name", "s", "Name of the crowd's label."),
    *(OscField(f"/crowd/prob/{name}", "f", f"Confidence-weighted mean probability of `{name}`.") for name in LABELS),
    OscField("/crowd/speaking", "i", "Slot of the person speaking, -1 when nobody is (or the voice follows no mouth)."),
    OscField("/crowd/primary", "i", "Slot of the primary person (whose state `/emotion/*` carries), -1 with nobody."),
)

PERSON_EVENT_OSC: tuple[OscField, ...] = (
    OscField("/person/<slot>/entered", "i", "Sent once when a person takes the slot (argument: the id; also when "
                                            "the same person returns). Person events only with `people.num_faces` "
                                            "above 1."),
    OscField("/person/<slot>/left", "i", "Sent once when the person leaves the view (argument: the id)."),
    OscField("/person/<slot>/changed", "s", "Sent once when this person's label changes (argument: the new label)."),
)


def people_osc_values(state: AffectState) -> list[tuple[str, object]]:
    """Per-slot and crowd values of one state, in table order. Empty when the state carries no people, and with one
    face tracked (person 0 is then the classic stream: the bundle stays exactly the single-visitor one)."""
    crowd = state.crowd
    if crowd is None or state.people is None or crowd.slots <= 1:
        return []
    out: list[tuple[str, object]] = []
    by_slot = {p.slot: p for p in state.people}
    for slot in range(crowd.slots):
        p = by_slot.get(slot)
        if p is None:
            vals: list[object] = [0, -1, 0.0, 0.0, 0.0, 0, "neutral", 0, *(0.0 for _ in LABELS)]
        else:
            s = p.state
            vals = [1, int(p.id), _finite(s.valence), _finite(s.arousal), _finite(s.confidence),
                    int(LABELS.index(s.label)), s.label, int(bool(p.speaking)),
                    *(_finite(s.probs.get(n, 0.0)) for n in LABELS)]
        out += [(f.address.replace("<slot>", str(slot)), v) for f, v in zip(PERSON_OSC_FIELDS, vals)]
    vals = [int(crowd.count), _finite(crowd.valence), _finite(crowd.arousal), _finite(crowd.confidence),
            int(LABELS.index(crowd.label)), crowd.label, *(_finite(crowd.probs.get(n, 0.0)) for n in LABELS),
            int(crowd.speaking_slot), int(crowd.primary_slot)]
    out += [(f.address, v) for f, v in zip(CROWD_OSC_FIELDS, vals)]
    return out


def _person_events(state: AffectState) -> list:
    """This tick's person events; none with one face tracked (person 0 is then the classic stream, whose
    /emotion/changed and label_changed already say it: existing patches see no new messages)."""
    if state.crowd is None or getattr(state.crowd, "slots", 1) <= 1:
        return []
    return list(state.person_events or [])


def person_event_osc_values(state: AffectState) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for e in _person_events(state):
        kind = {"entered": 0, "left": 1, "label_changed": 2}.get(e.kind)
        if kind is None:
            continue
        f = PERSON_EVENT_OSC[kind]
        out.append((f.address.replace("<slot>", str(e.slot)), e.label if kind == 2 else int(e.id)))
    return out


def people_fields(state: AffectState) -> dict:
    """``people`` and ``crowd`` of the JSON state."""
    if state.people is None or state.crowd is None:
        return {"people": [], "crowd": None}
    return {"people": [p.as_dict() for p in state.people], "crowd": state.crowd.as_dict()}


def person_event_messages(state: AffectState, t_emit: float) -> list[dict]:
    """``event`` messages of this tick's person events: person_entered, person_left, label_changed (with the
    person's id and slot)."""
    return [{"type": "event", "v": SCHEMA_VERSION, **e.as_dict(), "seq": state.seq, "t_emit": t_emit}
            for e in _person_events(state)]


def _people_tables() -> list[str]:
    lines = ["", "Several visitors (`people.num_faces` above 1; default 1): one set per slot, every tick, and the crowd "
                 "(with one face the bundle is the single-visitor one above; `state.people` has person 0):", "",
             "| OSC address | type | meaning |", "|---|---|---|"]
    for f in (*PERSON_OSC_FIELDS, *CROWD_OSC_FIELDS, *PERSON_EVENT_OSC):
        lines.append(f"| `{f.address}` | {f.type} | {f.doc} |")
    lines += ["", "Person events (WebSocket `event` messages): "
              '`{"type":"event","v","event":"person_entered","person","slot","returning","seq","t_emit"}`, '
              '`person_left` (`person`, `slot`), and `label_changed` with `person` and `slot` for a person\'s own '
              "label (the top-level `label_changed` without `person` is the primary state's). Only with "
              "`people.num_faces` above 1."]
    return lines
