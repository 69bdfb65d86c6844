"""The single source of truth for what the bridge puts on the wire.

Every OSC address and every JSON field is declared here once; the OSC and WebSocket senders, the
TouchDesigner callbacks' documentation and the README tables are all generated from these tables
(``emotion-bridge schema --markdown``), and a test checks the docs still agree.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from bridge.frames import AffectState
from bridge.labels import LABELS

SCHEMA_VERSION = 3  # 2: state.sensors; MQTT topics; room messages. 3: several visitors (/person/<slot>/..., /crowd/...,
# state.people, state.crowd, person events)


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
        "sensors": dict(state.sensors or {}),
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
    lines += _more_tables()
    lines += _people_tables()
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ sensors (v2)

JSON_STATE_FIELDS = JSON_STATE_FIELDS + (
    ("sensors", "object", 'name -> {"value", "unit", "z" (null while the baseline is collected), "age_ms", '
                          '"fresh": bool, "baseline": "collecting" or "ready"}; empty without sensors.'),
)
SENSOR_IN = OscField("/sensor/<name>", "f", "IN, on the control port (osc.control_port): one reading of a body "
                                             "sensor declared in `sensors.channels` (e.g. heart_rate in bpm).")
SENSOR_OSC_FIELDS: tuple[OscField, ...] = (
    OscField("/sensor/<name>/z", "f", "OUT, in the state bundle once the sensor has sent a reading: z-score "
                                      "against this visitor's own first seconds; 0 while that baseline is being "
                                      "collected or the sensor is stale (see `/fresh` and `state.sensors`)."),
    OscField("/sensor/<name>/fresh", "i", "OUT, in the state bundle: 1 while readings arrive (younger than "
                                          "`stale_s`), else 0."),
)


def sensor_osc_values(sensors: dict | None) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for name, s in (sensors or {}).items():  # the same channels every tick: an OSC In CHOP keeps them stable
        z = s.get("z") if s.get("fresh") else None
        out.append((f"/sensor/{name}/z", _finite(z) if z is not None else 0.0))
        out.append((f"/sensor/{name}/fresh", int(bool(s.get("fresh")))))
    return out


# ------------------------------------------------------------------------------------------------ MQTT

MQTT_TOPICS: tuple[tuple[str, str, str], ...] = (  # (suffix of emotion-bridge/<site>/<bridge_id>/, qos/retain, doc)
    ("state", "0", "The WebSocket `state` JSON, every tick."),
    ("event", "1", "The WebSocket `event` JSON (label changed)."),
    ("health", "0", "The `health` JSON, once a second."),
    ("hello", "1, retained", "The `hello` JSON plus `bridge_id` and `site`; published again on every reconnect."),
    ("status", "1, retained", '{"type":"status","v","status":"online" or "offline","bridge_id","site","t"}; '
                              "`offline` is the last will (the broker sends it when the bridge dies)."),
    ("sensor/<name>", "IN", "A body sensor reading: `72.5` or `{\"value\": 72.5}`."),
    ("osc/<address>", "0", "Optional (`mqtt.flat: true`): every OSC value of the state as a plain number/text, "
                           "e.g. `osc/emotion/valence`."),
)
# emotion-bridge/<site>/room, published by `emotion-bridge room` (one level: `+/state` subscriptions never see it)
ROOM_TOPIC = "room"


def status_message(status: str, bridge_id: str, site: str) -> dict:
    return {"type": "status", "v": SCHEMA_VERSION, "status": status, "bridge_id": bridge_id, "site": site,
            "t": time.time()}


# ------------------------------------------------------------------------------------------------ room

ROOM_OSC_FIELDS: tuple[OscField, ...] = (
    OscField("/room/count", "i", "Visitors in the room now (fresh bridges with a face or a voice)."),
    OscField("/room/bridges", "i", "Bridges sending fresh states (visitor or not)."),
    OscField("/room/stale", "i", "Bridges that stopped sending (no state for `room.stale_s`): out of the aggregate."),
    OscField("/room/valence", "f", "Confidence-weighted mean valence of the visitors, [-1, 1] (0 with nobody)."),
    OscField("/room/arousal", "f", "Confidence-weighted mean arousal of the visitors, [-1, 1] (0 with nobody)."),
    OscField("/room/confidence", "f", "Mean confidence of the visitors, [0, 1]."),
    OscField("/room/label", "i", "Index of the leading label of the room's label distribution."),
    OscField("/room/label_name", "s", "Name of that label."),
    *(OscField(f"/room/prob/{name}", "f", f"Share of `{name}` in the room (confidence-weighted mean of the "
                                          f"visitors' probabilities).") for name in LABELS),
)

ROOM_ROW_OSC_FIELDS: tuple[OscField, ...] = (  # optional (room.osc_rows), one set per bridge; person 0 only
    OscField("/room/bridge/<bridge>/visitor", "i", "1 while this bridge sees a visitor (and is fresh)."),
    OscField("/room/bridge/<bridge>/stale", "i", "1 once this bridge sent nothing for `room.stale_s`."),
    OscField("/room/bridge/<bridge>/valence", "f", "This bridge's valence."),
    OscField("/room/bridge/<bridge>/arousal", "f", "This bridge's arousal."),
    OscField("/room/bridge/<bridge>/confidence", "f", "This bridge's confidence."),
    OscField("/room/bridge/<bridge>/label_name", "s", "This bridge's label."),
)


def room_row_osc_values(agg: dict) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for row in agg["rows"]:
        if row.get("person", 0) != 0:
            continue  # per-person rows (multi-person tracking) go to JSON only for now
        vals = (int(bool(row["visitor"]) and not row["stale"]), int(bool(row["stale"])), _finite(row["valence"]),
                _finite(row["arousal"]), _finite(row["confidence"]), row["label"])
        name = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "_" for c in str(row["bridge"]))
        for f, v in zip(ROOM_ROW_OSC_FIELDS, vals):
            out.append((f.address.replace("<bridge>", name), v))
    return out


ROOM_JSON_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("type", "string", '"room"'),
    ("v", "int", "Schema version."),
    ("site", "string", "The site aggregated."),
    ("seq", "int", "+1 per room state."),
    ("t_emit", "float", "Seconds since the epoch."),
    ("count", "int", "Visitors now."),
    ("bridges", "int", "Fresh bridges."),
    ("valence", "float", "Confidence-weighted mean of the visitors."),
    ("arousal", "float", "Confidence-weighted mean of the visitors."),
    ("confidence", "float", "Mean confidence of the visitors."),
    ("label", "string", "Leading label of `probs`."),
    ("probs", "object", "label -> share in the room, sums to 1 (neutral = 1 with nobody)."),
    ("rows", "array", 'One per bridge and person: {"bridge", "person" (0 until multi-person tracking lands), '
                      '"age_ms" (since its newest state), "latency_ms" (capture to room), "visitor": bool, '
                      '"stale": bool, "valence", "arousal", "confidence", "label"}.'),
    ("stale", "array", "Bridge ids without a state for `room.stale_s` (or that said `offline`)."),
    ("refused", "int", "Messages refused so far (malformed, oversized, wrong schema)."),
)


def room_osc_values(agg: dict) -> list[tuple[str, object]]:
    vals: list[object] = [int(agg["count"]), int(agg["bridges"]), int(len(agg["stale"])),
                          _finite(agg["valence"]), _finite(agg["arousal"]), _finite(agg["confidence"]),
                          int(LABELS.index(agg["label"])), agg["label"],
                          *(_finite(agg["probs"].get(n, 0.0)) for n in LABELS)]
    return [(f.address, v) for f, v in zip(ROOM_OSC_FIELDS, vals)]


def room_message(agg: dict, site: str, seq: int, t_emit: float, refused: int) -> dict:
    return {"type": "room", "v": SCHEMA_VERSION, "site": site, "seq": seq, "t_emit": t_emit,
            "count": int(agg["count"]), "bridges": int(agg["bridges"]), "valence": _r(agg["valence"]),
            "arousal": _r(agg["arousal"]), "confidence": _r(agg["confidence"]), "label": agg["label"],
            "probs": {n: _r(agg["probs"].get(n, 0.0)) for n in LABELS},
            "rows": [{k: (_r(v, 2) if isinstance(v, float) else v) for k, v in row.items()} for row in agg["rows"]],
            "stale": list(agg["stale"]), "refused": int(refused)}


ANALYZE_RESPONSE_FIELDS: tuple[tuple[str, str, str], ...] = (  # POST /analyze (bridge/analyze.py)
    ("states", "array", "`state` messages (fields above); `t_capture` = seconds into the file; `t_emit`, `fps`, "
                        "`latency_ms` null."),
    ("summary", "object", "The fields below."),
    ("file", "object", '{"type": "wav" or "flac" or "mp3" or "mp4", "bytes", "audio": bool, "video": bool}'),
    ("warnings", "array", "Text, e.g. a truncated wav analysed as far as it goes, an mp4 without audio."),
)
ANALYZE_SUMMARY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("n_states", "int", "States (one per video frame, or per tick at `model.tick_hz` for audio)."),
    ("duration_s", "float", "Position of the last state."),
    ("tick_hz", "float", "The configured tick rate."),
    ("valence_mean", "float", "Mean valence."),
    ("arousal_mean", "float", "Mean arousal."),
    ("confidence_mean", "float", "Mean confidence."),
    ("label_shares", "object", "label -> share of the states with that (hysteresis) label."),
    ("top_label", "string", "The most frequent label."),
    ("face_present_share", "float", "Share of states with a face."),
    ("voice_active_share", "float", "Share of states with voice activity."),
    ("timeline", "array", 'Per second: {"t", "valence", "arousal", "confidence", "label" (most frequent)}.'),
)


def _more_tables() -> list[str]:
    lines = ["", "Body sensors (`sensors:` in the config):", "",
             "| OSC address | type | meaning |", "|---|---|---|"]
    for f in (SENSOR_IN, *SENSOR_OSC_FIELDS):
        lines.append(f"| `{f.address}` | {f.type} | {f.doc} |")
    lines += ["", "MQTT topics under `emotion-bridge/<site>/<bridge_id>/` (`--mqtt HOST[:PORT]`):", "",
              "| topic | QoS | content |", "|---|---|---|"]
    for name, qos, doc in MQTT_TOPICS:
        lines.append(f"| `{name}` | {qos} | {doc} |")
    lines += ["", f"Room aggregate (`emotion-bridge room`; also JSON on MQTT `emotion-bridge/<site>/{ROOM_TOPIC}` "
                  "and WebSocket messages of type `room`):", "",
              "| OSC address | type | meaning |", "|---|---|---|"]
    for f in ROOM_OSC_FIELDS:
        lines.append(f"| `{f.address}` | {f.type} | {f.doc} |")
    for f in ROOM_ROW_OSC_FIELDS:
        lines.append(f"| `{f.address}` | {f.type} | Per bridge (`room.osc_rows: true`, the default): {f.doc} |")
    lines += ["", "| `room` field | type | meaning |", "|---|---|---|"]
    for name, typ, doc in ROOM_JSON_FIELDS:
        lines.append(f"| `{name}` | {typ} | {doc} |")
    lines += ["", "`POST /analyze` on the monitor's HTTP server (see docs/SCALING.md) answers:", "",
              "| field | type | meaning |", "|---|---|---|"]
    for name, typ, doc in ANALYZE_RESPONSE_FIELDS:
        lines.append(f"| `{name}` | {typ} | {doc} |")
    lines += ["", "| `summary` field | type | meaning |", "|---|---|---|"]
    for name, typ, doc in ANALYZE_SUMMARY_FIELDS:
        lines.append(f"| `{name}` | {typ} | {doc} |")
    return lines


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
    lines = ["", "Several visitors (`people.num_faces` above 1; default 4): one set per slot, every tick, and the crowd "
                 "(with `num_faces: 1` the bundle is the single-visitor one above; `state.people` has person 0). "
                 "The `/emotion/*` addresses above are sent either way and carry the primary person, so a one-face "
                 "patch keeps working; with one visitor and `num_faces` N the bundle also carries N slots (slot 0 "
                 "that visitor, the others `present` 0) and the crowd of one:", "",
             "| OSC address | type | meaning |", "|---|---|---|"]
    for f in (*PERSON_OSC_FIELDS, *CROWD_OSC_FIELDS, *PERSON_EVENT_OSC):
        lines.append(f"| `{f.address}` | {f.type} | {f.doc} |")
    lines += ["", "Person events (WebSocket `event` messages): "
              '`{"type":"event","v","event":"person_entered","person","slot","returning","seq","t_emit"}`, '
              '`person_left` (`person`, `slot`), and `label_changed` with `person` and `slot` for a person\'s own '
              "label (the top-level `label_changed` without `person` is the primary state's). Only with "
              "`people.num_faces` above 1."]
    return lines
