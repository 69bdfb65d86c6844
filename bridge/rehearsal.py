"""Rehearse without a camera or a microphone: a simulated visitor, and replay of recorded sessions.

Both drive the real :class:`~bridge.output.hub.OutputHub` (OSC, WebSocket, recorder, health messages) and the real
command handler (:meth:`bridge.pipeline.Bridge.handle_command`: reset, mute, rate, record_start/stop, status),
so a TouchDesigner patch cannot tell them from a live run — except for the ``simulation``/``replay`` entry in
the health messages.

**Simulated visitor** (``emotion-bridge run --source simulate [--script timeline.yaml] [--seed N]``). A plan of
segments — from a YAML timeline, or a random walk through the labels with 3-10 s dwell times — sets a target
label, intensity and whether a face / a voice is there. The numbers then behave like the real model's:

* probabilities are the softmax of logits that follow the target through a critically damped filter (about
  0.5 s from one label to the next) plus a little smooth (Ornstein-Uhlenbeck) noise; with no face and no voice
  they sink back to a weak neutral with low confidence, as live;
* valence/arousal follow :func:`bridge.labels.va_target` of the target label, scaled by intensity, smoothly;
* confidence follows the top probability; the label goes through the real :class:`~bridge.engine.Hysteresis`,
  so ``/emotion/changed`` fires when and as often as it would live;
* the voice comes and goes like speech (utterances of 0.6-2.5 s with pauses), with plausible loudness and
  pitch; the head sways a little. ``t_capture`` is the tick time.

Everything random comes from ``--seed`` through separate streams for the plan, the speech pattern and the noise,
so the same seed gives the same visitor (the same labels, dwell times and utterances) whatever the tick timing.

**Replay** (``emotion-bridge replay FILE.jsonl``): the ``state`` lines of a recording (``emotion-bridge record``,
the ``record_start`` command, or a saved WebSocket stream) go out again at the recorded pace (``t_capture``
differences), faster, or as fast as possible, with the recorded values and fresh timestamps.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge import clock
from bridge.config import Config
from bridge.engine import Hysteresis
from bridge.frames import AffectState
from bridge.labels import LABELS, va_target
from bridge.pipeline import Bridge, Worker

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ the script


class ScriptError(ValueError):
    """A timeline file that cannot be used; the message names the file and the bad entry."""


class Segment(BaseModel):
    """One stretch of the timeline: who is in front of the installation, feeling what, for how long."""

    model_config = ConfigDict(extra="forbid")
    label: str
    seconds: float = Field(gt=0, le=24 * 3600)
    intensity: float = Field(1.0, ge=0, le=1)
    face: bool = True
    voice: bool = True

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, v: Any) -> str:
        name = str(v).strip().lower() if isinstance(v, str) else v
        if name not in LABELS:
            raise ValueError(f"unknown label {v!r}; use one of: {', '.join(LABELS)}")
        return name


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loop: bool = False
    segments: list[Segment] = Field(min_length=1)

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.segments)


def _entry_text(entry: Any) -> str:
    if isinstance(entry, dict):
        inner = ", ".join(f"{k}: {v}" for k, v in entry.items())
        text = "{" + inner + "}"
    else:
        text = repr(entry)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_script(data: Any, source: str = "script") -> Script:
    """A parsed YAML document -> :class:`Script`. Accepts ``{loop:, segments: [...]}`` or a bare list."""
    if isinstance(data, list):
        data = {"segments": data}
    if not isinstance(data, dict):
        raise ScriptError(f"{source}: expected `segments:` with a list of entries like "
                          f"{{label: happy, seconds: 4, intensity: 0.8, face: true, voice: true}}")
    try:
        return Script.model_validate(data)
    except ValidationError as e:
        lines = []
        segs = data.get("segments")
        for err in e.errors():
            loc = err["loc"]
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = Segment.model_fields if len(loc) > 2 else Script.model_fields
                msg = f"unknown key; allowed: {', '.join(allowed)}"
            if len(loc) >= 2 and loc[0] == "segments" and isinstance(loc[1], int):
                entry = segs[loc[1]] if isinstance(segs, list) and loc[1] < len(segs) else None
                field = ".".join(str(p) for p in loc[2:]) or "entry"
                lines.append(f"segment {loc[1] + 1} {_entry_text(entry)}: {field}: {msg}")
            else:
                got = f" (got {err.get('input')!r})" if err["type"] != "missing" else ""
                lines.append(f"{'.'.join(str(p) for p in loc) or 'top level'}: {msg}{got}")
        raise ScriptError(f"invalid timeline {source}:\n  " + "\n  ".join(dict.fromkeys(lines))
                          + "\nEach segment looks like {label: happy, seconds: 4, intensity: 0.8, face: true, "
                            "voice: true}; see configs/scripts/demo_timeline.yaml.") from None


def load_script(path: str | Path) -> Script:
    p = Path(path)
    if not p.is_file():
        raise ScriptError(f"timeline file not found: {p} (see configs/scripts/demo_timeline.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ScriptError(f"{p}: not valid YAML: {e}") from None
    return parse_script(data, str(p))


# ------------------------------------------------------------------------------------------------ plans


class ScriptPlan:
    """Segments from a timeline, optionally looping."""

    mode = "script"

    def __init__(self, script: Script, source: str = ""):
        self.script, self.source = script, source
        self._ends = np.cumsum([s.seconds for s in script.segments])

    def at(self, t: float) -> tuple[int, Segment]:
        total = float(self._ends[-1])
        if self.script.loop:
            t = t % total
        i = int(np.searchsorted(self._ends, t, side="right"))
        i = min(i, len(self.script.segments) - 1)
        return i, self.script.segments[i]

    def ended(self, t: float) -> bool:
        return not self.script.loop and t >= float(self._ends[-1])

    def describe(self) -> str:
        n = len(self.script.segments)
        return (f"timeline {self.source or '(inline)'}: {n} segment{'s' * (n != 1)}, {self._ends[-1]:.1f} s"
                + (", looping" if self.script.loop else ", once"))


class RandomPlan:
    """A random walk through the labels: dwell 3-10 s, intensity 0.5-1, now and then nobody there."""

    mode = "random"

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self._ends: list[float] = []
        self._segs: list[Segment] = []

    def _extend(self, t: float) -> None:
        while not self._ends or self._ends[-1] <= t:
            prev = self._segs[-1] if self._segs else None
            r = self.rng
            dwell = float(r.uniform(3.0, 10.0))
            if prev is not None and (prev.face or prev.voice) and r.random() < 0.1:
                seg = Segment(label="neutral", seconds=dwell, intensity=0.0, face=False, voice=False)
            else:
                choices = [n for n in LABELS if prev is None or n != prev.label or not (prev.face or prev.voice)]
                seg = Segment(label=str(r.choice(choices)), seconds=dwell, intensity=float(r.uniform(0.5, 1.0)),
                              face=bool(r.random() < 0.9), voice=bool(r.random() < 0.8))
                if not (seg.face or seg.voice):
                    seg.face = True
            self._segs.append(seg)
            self._ends.append((self._ends[-1] if self._ends else 0.0) + dwell)

    def at(self, t: float) -> tuple[int, Segment]:
        self._extend(t)
        i = int(np.searchsorted(self._ends, t, side="right"))
        return i, self._segs[i]

    def ended(self, t: float) -> bool:
        return False

    def describe(self) -> str:
        return "random walk through the labels (3-10 s each)"


class SpeechPattern:
    """When someone who is talking is actually making sound: utterances 0.6-2.5 s, pauses 0.25-1.2 s."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self._bounds: list[float] = [0.0]  # alternating on/off intervals starting with "on" at t=0

    def on(self, t: float) -> bool:
        while self._bounds[-1] <= t:
            on_next = len(self._bounds) % 2 == 1  # interval k (from bounds[k-1]) is "on" when k is odd
            self._bounds.append(self._bounds[-1] + float(self.rng.uniform(0.6, 2.5) if on_next
                                                          else self.rng.uniform(0.25, 1.2)))
        k = int(np.searchsorted(self._bounds, t, side="right"))
        return k % 2 == 1


# ------------------------------------------------------------------------------------------------ the visitor

GAIN = 3.2  # logit lead of the target label at intensity 1 with face and voice (top prob ~0.75)
NEIGHBOUR = {"neutral": "calm", "calm": "neutral", "happy": "surprised", "sad": "calm", "angry": "disgust",
             "fearful": "surprised", "disgust": "angry", "surprised": "happy"}
BASE = np.array([0.5 if n == "neutral" else 0.0 for n in LABELS])  # no evidence: a weak neutral
TAU_P = 0.12  # two cascaded lags of 0.12 s: ~90 % of a label change after ~0.5 s
TAU_VA = 0.15
NOISE_P, NOISE_VA, NOISE_THETA = 0.12, 0.03, 0.4


@dataclass
class Sample:
    probs: np.ndarray
    valence: float
    arousal: float
    confidence: float
    face_present: bool
    voice_active: bool
    face_age_ms: float | None
    voice_age_ms: float | None
    loudness_db: float
    pitch_hz: float
    pose: tuple[float, float, float]
    face_size: float
    target: str
    segment: int
    evidence: bool  # face or voice seen this tick (what resets the model after a while without)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


class SimulatedVisitor:
    """Pure and clock-free: ``step(t)`` with increasing times gives the next sample."""

    def __init__(self, plan: ScriptPlan | RandomPlan | None = None, seed: int | None = None):
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        ss = np.random.SeedSequence(self.seed).spawn(4)
        self.plan = plan if plan is not None else RandomPlan(np.random.default_rng(ss[0]))
        self.speech = SpeechPattern(np.random.default_rng(ss[1]))
        self.rng = np.random.default_rng(ss[2])
        persona = np.random.default_rng(ss[3])
        self.base_pitch = float(persona.uniform(110.0, 220.0))
        self.phase = persona.uniform(0, 2 * np.pi, 4)
        self.t0: float | None = None
        self.t = 0.0  # timeline position of the newest step
        self.segment: tuple[int, Segment] | None = None
        self._last: float | None = None
        self._t_face: float | None = None
        self.ended = False
        self.reset()

    def reset(self) -> None:
        """A new visitor: the smoothed state starts again from 'nobody there' (the timeline goes on)."""
        self._z1 = BASE.copy()
        self._z2 = BASE.copy()
        self._va1 = np.zeros(2)
        self._va2 = np.zeros(2)
        self._nz = np.zeros(len(LABELS))
        self._nva = np.zeros(2)

    def _ou(self, x: np.ndarray, sigma: float, dt: float) -> np.ndarray:
        return x - x * dt / NOISE_THETA + sigma * math.sqrt(2 * dt / NOISE_THETA) * self.rng.standard_normal(x.shape)

    def step(self, now: float, face_muted: bool = False, voice_muted: bool = False) -> Sample:
        if self.t0 is None:
            self.t0 = self._last = now
        dt = min(max(now - self._last, 0.0), 0.5)
        self._last = now
        t = now - self.t0
        self.ended = self.plan.ended(t)
        idx, seg = self.plan.at(t)
        self.segment, self.t = (idx, seg), t

        face_there = seg.face
        talking = seg.voice and self.speech.on(t)
        face_on = face_there and not face_muted
        voice_on = seg.voice and not voice_muted  # the voice model keeps its evidence through short pauses
        e = max(0.75 * face_on, 0.6 * voice_on) + (0.25 if face_on and voice_on else 0.0)

        g = GAIN * seg.intensity * e
        target = BASE.copy()
        target[LABELS.index(seg.label)] += g
        target[LABELS.index(NEIGHBOUR[seg.label])] += 0.3 * g
        a = 1.0 - math.exp(-dt / TAU_P) if dt > 0 else 0.0
        self._z1 += a * (target - self._z1)
        self._z2 += a * (self._z1 - self._z2)
        self._nz = self._ou(self._nz, NOISE_P, dt) if dt > 0 else self._nz
        probs = _softmax(self._z2 + self._nz)

        v, ar = va_target(seg.label)
        va_t = np.array([v, ar]) * seg.intensity * min(1.0, e / 0.75)  # one modality is enough for V/A
        b = 1.0 - math.exp(-dt / TAU_VA) if dt > 0 else 0.0
        self._va1 += b * (va_t - self._va1)
        self._va2 += b * (self._va1 - self._va2)
        self._nva = self._ou(self._nva, NOISE_VA, dt) if dt > 0 else self._nva
        valence, arousal = np.clip(self._va2 + self._nva, -1.0, 1.0)

        confidence = float(np.clip(probs.max() + 0.01 * self.rng.standard_normal(), 0.0, 1.0))

        ph = self.phase
        if face_there:
            self._t_face = now
            pose = (8.0 * math.sin(2 * math.pi * t / 7.3 + ph[0]) + 1.5 * float(self._nz[0]),
                    5.0 * math.sin(2 * math.pi * t / 5.1 + ph[1]),
                    3.0 * math.sin(2 * math.pi * t / 9.7 + ph[2]))
            size = 0.38 + 0.03 * math.sin(2 * math.pi * t / 11.0 + ph[3])
            face_age = float(self.rng.uniform(8.0, 40.0))
        else:
            pose, size = (0.0, 0.0, 0.0), 0.0
            face_age = None if self._t_face is None else (now - self._t_face) * 1000.0
        if not face_on:
            pose, size = (0.0, 0.0, 0.0), 0.0

        voice_active = talking and not voice_muted
        if voice_muted:
            loud, pitch, voice_age = -100.0, 0.0, None
        else:
            voice_age = float(self.rng.uniform(5.0, 25.0))
            if talking:
                loud = -26.0 + 6.0 * float(arousal) + 2.5 * float(self.rng.standard_normal())
                pitch = (self.base_pitch * (1.0 + 0.25 * max(float(arousal), 0.0))
                         * (1.0 + 0.08 * math.sin(2 * math.pi * t / 1.3)) + 4.0 * float(self.rng.standard_normal()))
            else:
                loud, pitch = -58.0 + 1.5 * float(self.rng.standard_normal()), 0.0
            loud = float(np.clip(loud, -100.0, 0.0))

        return Sample(probs=probs, valence=float(valence), arousal=float(arousal), confidence=confidence,
                      face_present=face_on, voice_active=voice_active, face_age_ms=face_age, voice_age_ms=voice_age,
                      loudness_db=loud, pitch_hz=max(0.0, float(pitch)), pose=tuple(float(x) for x in pose),
                      face_size=float(size), target=seg.label, segment=idx,
                      evidence=bool(face_on or voice_active))


# ------------------------------------------------------------------------------------------------ bridges


class _NoModel:
    """Stands in for the affect model: the simulated bridges have none (and never import its weights)."""

    meta: dict = {}

    def reset(self) -> None:
        pass


def _wire_outputs(bridge: Bridge, cfg: Config) -> Bridge:
    """The same outputs, monitor page and OSC control as :func:`bridge.live.build_bridge`."""
    from bridge.live import attach_outputs

    return attach_outputs(bridge, cfg)


class SimulatedBridge(Bridge):
    """A :class:`Bridge` whose ticks come from a :class:`SimulatedVisitor` instead of the model."""

    def __init__(self, cfg: Config, visitor: SimulatedVisitor, hub=None, group: int | None = None):
        super().__init__(cfg, _NoModel(), None, None, None, hub)
        self.visitor = visitor
        from bridge.people import GroupView

        # --people N: N-1 more visitors, each on its own random timeline (seeds after the first's)
        n = min(group or cfg.people.num_faces, cfg.people.num_faces)
        self.group = [SimulatedVisitor(None, visitor.seed + k) for k in range(1, n)]
        self.group_hyst = [Hysteresis(cfg.events) for _ in self.group]
        self.group_view = GroupView(cfg)
        self._t_evidence: float | None = None
        self._said_ended = False

    def tick(self, now: float) -> AffectState:
        t0 = clock.now()
        s = self.visitor.step(now, face_muted=self.engine.face_muted, voice_muted=self.engine.audio_muted)
        if s.evidence:
            self._t_evidence = now
        elif self._t_evidence is not None and now - self._t_evidence > self.cfg.model.reset_after_s:
            self.runtime.reset()  # as live: nobody there for a while, the next visitor starts fresh
            self._t_evidence = None
        prev = self.runtime.hyst.update(s.probs, s.confidence, now)
        self.runtime.seq += 1
        state = AffectState(
            seq=self.runtime.seq, t_capture=now, t_capture_wall=clock.to_wall(now), valence=s.valence,
            arousal=s.arousal, probs={n: float(p) for n, p in zip(LABELS, s.probs)}, label=self.runtime.hyst.label,
            confidence=s.confidence, face_present=s.face_present, voice_active=s.voice_active,
            face_age_ms=s.face_age_ms, voice_age_ms=s.voice_age_ms, loudness_db=s.loudness_db, pitch_hz=s.pitch_hz,
            head_pose=s.pose, face_size=s.face_size, raw_label=LABELS[int(np.argmax(s.probs))],
        )
        self.apply_sensors(state, now)
        self._attach_group(state, s, prev, now)
        self.stage_s["tick"] += clock.now() - t0
        if self.hub:
            self.hub.publish(state, changed=state.label if prev else None, previous=prev)
        self.last_state = state
        if self.on_state:
            self.on_state(state)
        return state

    def _attach_group(self, state: AffectState, s: Sample, prev: str | None, now: float) -> None:
        """The simulated group: person 0 is the first visitor (the /emotion/* state), the others their own."""
        from bridge.people import PersonEvent

        members, events = [], []
        if s.face_present:
            members.append((1, 0, state, s.voice_active))
            if prev:
                events.append(PersonEvent("label_changed", 1, 0, state.label, prev))
        speaking = s.face_present and s.voice_active  # one microphone: one voice at a time
        for k, (v, h) in enumerate(zip(self.group, self.group_hyst), start=1):
            g = v.step(now, face_muted=self.engine.face_muted, voice_muted=self.engine.audio_muted)
            if not g.face_present:
                continue
            gprev = h.update(g.probs, g.confidence, now)
            talk = g.voice_active and not speaking
            speaking = speaking or talk
            st = AffectState(seq=state.seq, t_capture=now, t_capture_wall=state.t_capture_wall, valence=g.valence,
                             arousal=g.arousal, probs={n: float(p) for n, p in zip(LABELS, g.probs)}, label=h.label,
                             confidence=g.confidence, face_present=True, voice_active=talk, face_size=g.face_size,
                             head_pose=g.pose, raw_label=LABELS[int(np.argmax(g.probs))])
            members.append((k + 1, k, st, talk))
            if gprev:
                events.append(PersonEvent("label_changed", k + 1, k, h.label, gprev))
        self.group_view.attach(state, now, members, events)

    def handle_command(self, msg: dict) -> dict:
        reply = super().handle_command(msg)
        if msg.get("cmd") == "reset" and reply.get("ok"):
            self.visitor.reset()
            for v, h in zip(self.group, self.group_hyst):
                v.reset()
                h.reset()
        return reply

    def sources_ended(self) -> bool:
        if self.visitor.ended and not self._said_ended:
            self._said_ended = True
            log.info("the timeline has ended (add `loop: true` to it to repeat)")
        return self.visitor.ended

    def health(self) -> dict:
        h = super().health()
        v = self.visitor
        idx, seg = v.segment or v.plan.at(0.0)
        muted = {"video": self.engine.face_muted, "audio": self.engine.audio_muted}
        h["sources"] = {name: {"status": "ok", "detail": "simulated visitor" + (" (muted)" if muted[name] else "")}
                        for name in ("audio", "video")}
        h["simulation"] = {"mode": v.plan.mode, "seed": v.seed, "segment": idx + 1, "target": seg.label,
                           "intensity": round(seg.intensity, 3), "face": seg.face, "voice": seg.voice,
                           "t": round(v.t, 3)}
        if isinstance(v.plan, ScriptPlan):
            h["simulation"].update(script=v.plan.source, segments=len(v.plan.script.segments),
                                   loop=v.plan.script.loop)
        return h


def build_simulated_bridge(cfg: Config, script: str | Path | None = None, seed: int | None = None,
                           group: int | None = None) -> SimulatedBridge:
    """A simulated visitor wired to the same outputs as a live bridge (``group``: that many visitors in all,
    default ``people.num_faces``). Raises :class:`ScriptError`."""
    plan = ScriptPlan(load_script(script), str(script)) if script else None
    visitor = SimulatedVisitor(plan, seed)
    log.info("simulated visitor (no camera, no microphone): %s; seed %d (pass --seed %d to repeat it)",
             visitor.plan.describe(), visitor.seed, visitor.seed)
    return _wire_outputs(SimulatedBridge(cfg, visitor, group=group), cfg)


# ------------------------------------------------------------------------------------------------ replay

MAX_GAP_S = 2.0  # longer pauses in a recording (recording stopped and restarted into the same file) are cut
MAX_SPEED_GAP_S = 0.001  # --speed max: ~1000 states/s, so a UDP receiver on the same machine keeps up


@dataclass
class Recorded:
    t: float  # recorded capture time (wall clock), for the pace
    valence: float
    arousal: float
    confidence: float
    label: str
    probs: dict[str, float]
    face_present: bool
    face_age_ms: float | None
    pose: tuple[float, float, float]
    face_size: float
    voice_active: bool
    voice_age_ms: float | None
    loudness_db: float
    pitch_hz: float
    features: list | None = None
    people: list | None = None  # recorded state.people (several visitors), as JSON
    slots: int = 0  # recorded crowd.slots
    primary: int = -1  # recorded crowd.primary


class RecordingError(ValueError):
    pass


def _num(x: Any, name: str, default: float | None = None, lo: float = -math.inf, hi: float = math.inf) -> float:
    if x is None and default is not None:
        return default
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{name} is not a number ({x!r})")
    return float(min(max(x, lo), hi))


def _opt_num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def parse_state_line(msg: Any) -> Recorded:
    """One recorded ``state`` message -> :class:`Recorded`; ValueError says what is wrong."""
    if not isinstance(msg, dict):
        raise ValueError("not a JSON object")
    t = _opt_num(msg.get("t_capture"))
    if t is None:
        t = _opt_num(msg.get("t_emit"))
    if t is None:
        raise ValueError("no t_capture or t_emit time")
    label = msg.get("label")
    if label not in LABELS:
        raise ValueError(f"label {label!r} is not one of {', '.join(LABELS)}")
    probs = msg.get("probs")
    if not isinstance(probs, dict) or not probs:
        raise ValueError("probs missing")
    p = {n: _num(probs.get(n, 0.0), f"probs.{n}", 0.0, 0.0, 1.0) for n in LABELS}
    face = msg.get("face") if isinstance(msg.get("face"), dict) else {}
    voice = msg.get("voice") if isinstance(msg.get("voice"), dict) else {}
    feats = msg.get("features")
    return Recorded(
        t=t, valence=_num(msg.get("valence"), "valence", None, -1, 1),
        arousal=_num(msg.get("arousal"), "arousal", None, -1, 1),
        confidence=_num(msg.get("confidence"), "confidence", None, 0, 1), label=label, probs=p,
        face_present=bool(face.get("present", False)), face_age_ms=_opt_num(face.get("age_ms")),
        pose=(_opt_num(face.get("yaw")) or 0.0, _opt_num(face.get("pitch")) or 0.0, _opt_num(face.get("roll")) or 0.0),
        face_size=_opt_num(face.get("size")) or 0.0, voice_active=bool(voice.get("active", False)),
        voice_age_ms=_opt_num(voice.get("age_ms")),
        loudness_db=_num(voice.get("loudness_db"), "voice.loudness_db", -100.0, -100.0, 0.0),
        pitch_hz=_num(voice.get("pitch_hz"), "voice.pitch_hz", 0.0, 0.0, 10000.0),
        features=feats if isinstance(feats, list) else None,
        people=msg["people"] if isinstance(msg.get("people"), list) else None,
        slots=int(msg["crowd"].get("slots", 0)) if isinstance(msg.get("crowd"), dict)
        and isinstance(msg["crowd"].get("slots", 0), int) else 0,
        primary=int(msg["crowd"].get("primary", -1)) if isinstance(msg.get("crowd"), dict)
        and isinstance(msg["crowd"].get("primary", -1), int) else -1,
    )


@dataclass
class Recording:
    states: list[Recorded]
    gaps: list[float]  # gaps[i]: seconds from state i-1 to state i (gaps[0] = 0), long pauses cut
    malformed: int
    other: int  # valid JSON of another type (hello, event, health, ack): ignored
    first_problem: str
    cut_pauses: int


def load_recording(path: str | Path) -> Recording:
    """Read a JSONL recording. Malformed lines are counted and skipped; no state at all raises RecordingError."""
    p = Path(path)
    states: list[Recorded] = []
    malformed = other = 0
    first = ""
    try:
        fh = open(p, encoding="utf-8", errors="replace")
    except OSError as e:
        raise RecordingError(f"cannot read {p}: {e}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                if isinstance(msg, dict) and msg.get("type", "state") != "state":
                    other += 1
                    continue
                states.append(parse_state_line(msg))
            except (ValueError, TypeError, RecursionError) as e:
                malformed += 1
                if not first:
                    first = f"line {n}: {e}"
    if not states:
        raise RecordingError(f"{p}: no usable state lines" + (f" ({malformed} malformed; first at {first})"
                                                               if malformed else "")
                             + ". Record one with `emotion-bridge record FILE.jsonl`.")
    gaps, cut = [0.0], 0
    for a, b in zip(states, states[1:]):
        g = b.t - a.t
        if g > MAX_GAP_S:
            g, cut = MAX_GAP_S, cut + 1
        gaps.append(max(0.0, g))
    return Recording(states, gaps, malformed, other, first, cut)


def parse_speed(v: str | float) -> float:
    """``realtime`` -> 1, ``max`` -> inf, ``2``/``2x``/``0.5`` -> that factor. ValueError otherwise."""
    s = str(v).strip().lower()
    if s == "realtime":
        return 1.0
    if s == "max":
        return math.inf
    f = float(s.removesuffix("x"))
    if not (math.isfinite(f) and f > 0):
        raise ValueError("speed must be realtime, max or a positive number")
    return f


class ReplayBridge(Bridge):
    """A :class:`Bridge` whose states come from a recording (values kept, timestamps new)."""

    def __init__(self, cfg: Config, recording: Recording, speed: float = 1.0, loop: bool = False, source: str = ""):
        super().__init__(cfg, _NoModel(), None, None, None, None)
        self.rec, self.speed, self.loop, self.source = recording, speed, loop, source
        self.workers = [w for w in self.workers if w.name != "ticker"]
        self.workers.insert(0, Worker("replay", self._replay_body, self._stop))
        self._i = 0
        self._next_due: float | None = None
        self._rewind = threading.Event()
        self.loops = 0
        self.ended = False
        self._prev_label: str | None = None
        med = float(np.median(recording.gaps[1:])) if len(recording.gaps) > 1 else 0.0
        self._wrap_gap = med if med > 0 else 1.0 / cfg.model.tick_hz

    def _replay_body(self) -> None:
        if self._rewind.is_set():
            self._rewind.clear()
            self._i, self._next_due, self.ended = 0, None, False
        if self.ended:
            self._stop.wait(0.1)
            return
        now = clock.now()
        if self._next_due is None:
            self._next_due = now
        wait = self._next_due - now
        if wait > 0:
            self._stop.wait(min(wait, 0.1))
            return
        self.emit(self.rec.states[self._i], now)
        self._i += 1
        if self._i >= len(self.rec.states):
            if not self.loop:
                self.ended = True
                return
            self._i, self.loops = 0, self.loops + 1
            gap = self._wrap_gap
        else:
            gap = self.rec.gaps[self._i]
        if math.isinf(self.speed):
            self._next_due = now + MAX_SPEED_GAP_S
        else:
            self._next_due += gap / self.speed
            if self._next_due < now - 0.25:  # fell behind (machine busy): carry on from now, no burst
                self._next_due = now

    def emit(self, r: Recorded, now: float) -> AffectState:
        face_on = r.face_present and not self.engine.face_muted
        voice_muted = self.engine.audio_muted
        self.runtime.seq += 1
        state = AffectState(
            seq=self.runtime.seq, t_capture=now, t_capture_wall=clock.to_wall(now), valence=r.valence,
            arousal=r.arousal, probs=dict(r.probs), label=r.label, confidence=r.confidence, face_present=face_on,
            voice_active=r.voice_active and not voice_muted, face_age_ms=r.face_age_ms,
            voice_age_ms=None if voice_muted else r.voice_age_ms,
            loudness_db=-100.0 if voice_muted else r.loudness_db, pitch_hz=0.0 if voice_muted else r.pitch_hz,
            head_pose=r.pose if face_on else (0.0, 0.0, 0.0), face_size=r.face_size if face_on else 0.0,
            raw_label=max(r.probs, key=r.probs.get),
            features=np.asarray(r.features, np.float32) if r.features is not None else None,
        )
        prev = self._prev_label if self._prev_label is not None and self._prev_label != r.label else None
        self._prev_label = r.label
        if r.people is not None and r.slots:  # a recording of several visitors: the people come back too
            from bridge.people import GroupView, person_state_from_json

            if getattr(self, "_group_view", None) is None or self._group_view.slots != r.slots:
                self._group_view = GroupView(self.cfg, r.slots)
            members = [m for m in (person_state_from_json(d, state) for d in r.people if isinstance(d, dict))
                       if m is not None]
            self._group_view.attach(state, now, members, primary_slot=r.primary)
        if self.hub:
            self.hub.publish(state, changed=r.label if prev else None, previous=prev)
        self.last_state = state
        if self.on_state:
            self.on_state(state)
        return state

    def handle_command(self, msg: dict) -> dict:
        cmd = msg.get("cmd")
        if cmd == "reset":
            self._rewind.set()
            return {"type": "ack", "cmd": cmd, "ok": True, "detail": "replay rewound to the first state"}
        if cmd == "rate":
            return {"type": "ack", "cmd": cmd, "ok": False,
                    "detail": "a replay keeps the recorded pace; restart it with --speed"}
        return super().handle_command(msg)

    def sources_ended(self) -> bool:
        return self.ended

    def health(self) -> dict:
        h = super().health()
        detail = f"replay of {self.source}"
        h["sources"] = {n: {"status": "ok", "detail": detail} for n in ("audio", "video")}
        h["replay"] = {"file": self.source, "position": self._i, "states": len(self.rec.states),
                       "loops": self.loops, "speed": "max" if math.isinf(self.speed) else self.speed,
                       "skipped_lines": self.rec.malformed}
        return h


def build_replay_bridge(cfg: Config, path: str | Path, speed: float = 1.0, loop: bool = False) -> ReplayBridge:
    """Raises :class:`RecordingError` when the file has no usable state."""
    rec = load_recording(path)
    if rec.malformed:
        log.warning("%s: skipped %d malformed line%s (first at %s)", path, rec.malformed,
                    "s" * (rec.malformed != 1), rec.first_problem)
    if rec.other:
        log.info("%s: ignored %d non-state messages (hello/event/health/ack)", path, rec.other)
    if rec.cut_pauses:
        log.info("%s: %d pauses longer than %.0f s shortened to %.0f s", path, rec.cut_pauses, MAX_GAP_S, MAX_GAP_S)
    dur = sum(rec.gaps)
    log.info("replaying %d states (%.1f s recorded) from %s at %s%s", len(rec.states), dur, path,
             "max speed" if math.isinf(speed) else ("the recorded pace" if speed == 1 else f"{speed:g}x"),
             ", looping" if loop else "")
    return _wire_outputs(ReplayBridge(cfg, rec, speed, loop, str(path)), cfg)
