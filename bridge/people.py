"""Several visitors at once: a person per tracked face, each with its own state, whose voice it is, the crowd.

Pure compute, no threads and no clock of its own (the pipeline calls it from its face worker and its ticker, under
its own lock):

- :class:`PersonTracker` gives every face of a frame a track with a stable id: association by predicted box overlap
  and centroid distance plus a cheap landmark-geometry cue (ratios of distances between stable landmarks, which
  differ between people and barely change with expression), Hungarian assignment. A track survives a short
  occlusion (it coasts on its velocity) and is taken up again when the same person returns within ``forget_s``
  (matched by geometry alone). A new person gets the lowest free **slot** (0..num_faces-1), so a patch's channels
  stay fixed; a slot stays reserved for a person who left until they are forgotten.
- :class:`Person` owns what one visitor needs: its face window, its streaming model state and label hysteresis
  (an :class:`~bridge.engine.AffectRuntime` over its own :class:`~bridge.model.affect.StreamingAffectModel` that
  shares the network's weights), its voice share. Born fresh, dropped when forgotten.
- :class:`VoiceAttribution`: one microphone, several faces. The voice goes to the person whose mouth opening
  (jaw/lip blendshapes) follows the loudness envelope over the last second (Pearson correlation); the others get
  face-only evidence. With one face the voice goes to it, as with one visitor.
- :func:`crowd_state`: the count and the confidence-weighted mean of everyone present, with its own hysteresis.
- :class:`PeopleEngine`: the set of persons and the crowd; turns the shared tick vector (audio part) and each
  person's face window into one model step per present person (all of them in one batched call), and picks the
  primary person whose state is the classic ``/emotion/*`` stream. With ``people.num_faces: 1`` it does not touch
  the classic path at all: the state is exactly the single-visitor state, and person 0 mirrors it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from bridge.config import Config
from bridge.engine import FACE_STALE_S, AffectRuntime, Hysteresis, TickInfo, step_runtimes
from bridge.features.audio import SILENCE_DB
from bridge.features.calibration import NeutralCalibration, neutral_reference
from bridge.features.face import BS_INDEX, FaceObservation, FaceWindow, window_expression
from bridge.frames import AffectState
from bridge.labels import LABELS
from bridge.model.affect import StreamingAffectModel
from bridge.model.tick import assemble

# ------------------------------------------------------------------------------------------------ face geometry
# Pairs of stable landmarks (MediaPipe 478-point mesh): outer eye corners, inner eye corners, eye widths, nose
# bridge to tip, nose wings, mouth corners, cheek width, forehead to chin, nose tip to chin. Their ratios to the
# outer eye distance describe the shape of a face; the lips' and jaw's own opening is left out (expression).
_GEOMETRY_PAIRS = ((33, 263), (133, 362), (33, 133), (362, 263), (168, 1), (98, 327), (61, 291), (234, 454),
                   (10, 152), (1, 152), (168, 152), (70, 300))


def face_box(landmarks: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) in normalised image coordinates from the (N, 3) landmarks."""
    lm = np.asarray(landmarks, np.float32)
    return np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()], np.float32)


def face_geometry(landmarks: np.ndarray) -> np.ndarray:
    """Scale-free shape descriptor of a face: distances between stable landmark pairs / outer eye distance."""
    lm = np.asarray(landmarks, np.float32)[:, :2]
    d = np.array([np.linalg.norm(lm[a] - lm[b]) for a, b in _GEOMETRY_PAIRS], np.float32)
    return d[1:] / max(float(d[0]), 1e-6)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def mouth_opening(blendshapes: np.ndarray) -> float:
    """How open the mouth is: jaw opening plus the lips parting (ARKit blendshapes), minus a closed mouth."""
    b = blendshapes
    lips = 0.5 * (b[BS_INDEX["mouthLowerDownLeft"]] + b[BS_INDEX["mouthLowerDownRight"]]
                  + b[BS_INDEX["mouthUpperUpLeft"]] + b[BS_INDEX["mouthUpperUpRight"]]) / 2
    return float(b[BS_INDEX["jawOpen"]] + lips - 0.5 * b[BS_INDEX["mouthClose"]])


def dedupe(faces: list[FaceObservation], max_iou: float = 0.4) -> list[FaceObservation]:
    """Drop duplicate faces of one frame: MediaPipe's VIDEO mode with several faces sometimes keeps a stale copy
    of a face it already tracks (seen on the crossing test video). Of two boxes overlapping more than
    ``max_iou`` the larger is kept."""
    if len(faces) < 2:
        return faces
    boxes = [face_box(f.landmarks) for f in faces]
    area = [float((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]
    keep: list[int] = []
    for i in sorted(range(len(faces)), key=lambda i: -area[i]):
        if all(iou(boxes[i], boxes[k]) <= max_iou for k in keep):
            keep.append(i)
    return [faces[i] for i in sorted(keep)]


# ------------------------------------------------------------------------------------------------ tracking
@dataclass
class Track:
    id: int
    slot: int
    box: np.ndarray
    geometry: np.ndarray
    t_first: float
    t_last: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # centroid, per second
    hits: int = 1
    present: bool = True  # seen within lost_s (False: left, slot kept until forget_s)

    def predicted(self, t: float, max_coast_s: float = 1.0) -> np.ndarray:
        dt = min(max(t - self.t_last, 0.0), max_coast_s)
        dx, dy = self.velocity * dt
        return self.box + np.array([dx, dy, dx, dy], np.float32)


@dataclass
class TrackEvent:
    kind: str  # "entered" | "left" | "forgotten"
    id: int
    slot: int
    t: float
    returning: bool = False


class PersonTracker:
    """Stable ids and slots for the faces of successive frames (see the module docstring)."""

    def __init__(self, num_faces: int, forget_s: float = 10.0, lost_s: float = FACE_STALE_S,
                 max_coast_s: float = 1.0, geometry_weight: float = 4.0, return_geometry: float = 0.12):
        self.num_faces, self.forget_s, self.lost_s = num_faces, forget_s, lost_s
        self.max_coast_s, self.geometry_weight, self.return_geometry = max_coast_s, geometry_weight, return_geometry
        self.tracks: dict[int, Track] = {}
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        self.tracks.clear()
        self._next_id = 1

    def _cost(self, tr: Track, box: np.ndarray, geo: np.ndarray, t: float) -> float:
        gd = float(np.mean(np.abs(geo - tr.geometry) / np.maximum(np.abs(tr.geometry), 1e-3)))
        if t - tr.t_last > self.max_coast_s:  # gone for a while: only who it is counts, not where
            return 2.0 + gd * self.geometry_weight if gd <= self.return_geometry else np.inf
        p = tr.predicted(t, self.max_coast_s)
        size = max(float(p[2] - p[0]), float(p[3] - p[1]), 1e-3)
        dist = float(np.hypot((box[0] + box[2] - p[0] - p[2]) / 2, (box[1] + box[3] - p[1] - p[3]) / 2)) / size
        ov = iou(p, box)
        if ov <= 0.0 and dist > 1.5:
            return np.inf  # too far for one frame or a short occlusion
        return (1.0 - ov) + 0.5 * dist + self.geometry_weight * gd

    def update(self, faces: list[FaceObservation], t: float) -> tuple[list[tuple[Track, FaceObservation]],
                                                                     list[TrackEvent]]:
        """Associate this frame's faces (present, with landmarks) to tracks. Returns the (track, face) pairs and the
        events (entered, left, forgotten) this frame caused."""
        from scipy.optimize import linear_sum_assignment

        faces = dedupe([f for f in faces if f.present and f.landmarks is not None])
        events: list[TrackEvent] = []
        boxes = [face_box(f.landmarks) for f in faces]
        geos = [face_geometry(f.landmarks) for f in faces]
        tracks = list(self.tracks.values())
        pairs: list[tuple[Track, FaceObservation]] = []
        unmatched = list(range(len(faces)))
        if tracks and faces:
            cost = np.array([[self._cost(tr, b, g, t) for tr in tracks] for b, g in zip(boxes, geos)])
            big = 1e6
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, big))
            unmatched = [i for i in range(len(faces)) if i not in set(rows)]
            for r, c in zip(rows, cols):
                if not np.isfinite(cost[r, c]):
                    unmatched.append(r)
                    continue
                tr = tracks[c]
                dt = t - tr.t_last
                c_old = (tr.box[:2] + tr.box[2:]) / 2
                c_new = (boxes[r][:2] + boxes[r][2:]) / 2
                if 0 < dt <= self.max_coast_s:
                    tr.velocity = 0.6 * tr.velocity + 0.4 * (c_new - c_old) / dt
                else:
                    tr.velocity = np.zeros(2, np.float32)
                tr.box, tr.t_last, tr.hits = boxes[r], t, tr.hits + 1
                tr.geometry = 0.9 * tr.geometry + 0.1 * geos[r]
                if not tr.present:
                    tr.present = True
                    events.append(TrackEvent("entered", tr.id, tr.slot, t, returning=True))
                pairs.append((tr, faces[r]))
        for i in sorted(set(unmatched), key=lambda i: (float(boxes[i][0]), float(boxes[i][1]))):  # left to right
            slot = self._free_slot(t)
            if slot is None:
                continue  # more faces than slots (cannot happen with the landmarker's num_faces)
            tr = Track(self._next_id, slot, boxes[i], geos[i], t, t)
            self._next_id += 1
            self.tracks[tr.id] = tr
            events.append(TrackEvent("entered", tr.id, tr.slot, t))
            pairs.append((tr, faces[i]))
        events += self.expire(t)
        return pairs, events

    def expire(self, t: float) -> list[TrackEvent]:
        """Tracks not seen for lost_s have left; those gone longer than forget_s are forgotten (slot freed)."""
        events = []
        for tr in list(self.tracks.values()):
            if tr.present and t - tr.t_last > self.lost_s:
                tr.present = False
                events.append(TrackEvent("left", tr.id, tr.slot, t))
            if not tr.present and t - tr.t_last > self.forget_s:
                del self.tracks[tr.id]
                events.append(TrackEvent("forgotten", tr.id, tr.slot, t))
        return events

    def _free_slot(self, t: float) -> int | None:
        used = {tr.slot for tr in self.tracks.values()}
        for s in range(self.num_faces):
            if s not in used:
                return s
        gone = [tr for tr in self.tracks.values() if not tr.present]
        if not gone:
            return None
        oldest = min(gone, key=lambda tr: tr.t_last)  # all slots held: the longest-gone person is forgotten
        del self.tracks[oldest.id]
        return oldest.slot


# ------------------------------------------------------------------------------------------------ voice
class VoiceAttribution:
    """Whose voice it is: the correlation of each face's mouth opening with the loudness envelope.

    ``push_voice`` once per tick (loudness in dBFS and the voice-activity flag), ``push_mouth`` once per face
    observation. ``decide`` resamples both onto a common grid over the last ``window_s`` and takes the person with
    the highest correlation (at lags up to ``max_lag_s``, for the camera-microphone offset), if it is at least
    ``min_corr`` and ``margin`` above the runner-up; the decision is held ``hold_s`` across pauses between words.
    """

    GRID_HZ = 30.0

    def __init__(self, window_s: float = 1.0, min_corr: float = 0.3, margin: float = 0.1, hold_s: float = 0.5,
                 max_lag_s: float = 0.07, floor_db: float = -60.0):
        self.window_s, self.min_corr, self.margin, self.hold_s = window_s, min_corr, margin, hold_s
        self.max_lag_s, self.floor_db = max_lag_s, floor_db
        n = int(window_s * 200) + 64
        self._voice: deque[tuple[float, float, bool]] = deque(maxlen=n)
        self._mouth: dict[int, deque[tuple[float, float]]] = {}
        self.speaker: int | None = None
        self.scores: dict[int, float] = {}
        self._t_speaker = -1e9
        self._t_voice = -1e9

    def reset(self) -> None:
        self._voice.clear()
        self._mouth.clear()
        self.speaker, self.scores, self._t_speaker, self._t_voice = None, {}, -1e9, -1e9

    def forget(self, pid: int) -> None:
        self._mouth.pop(pid, None)
        if self.speaker == pid:
            self.speaker = None

    def push_voice(self, t: float, loudness_db: float, active: bool) -> None:
        if self._voice and t <= self._voice[-1][0]:
            return
        self._voice.append((t, max(float(loudness_db), self.floor_db) if active else self.floor_db, bool(active)))
        if active:
            self._t_voice = t

    def push_mouth(self, pid: int, t: float, opening: float) -> None:
        d = self._mouth.setdefault(pid, deque(maxlen=int(self.window_s * 120) + 32))
        if d and t <= d[-1][0]:
            return
        d.append((t, float(opening)))

    def correlation(self, pid: int, now: float) -> float:
        d = self._mouth.get(pid)
        if not d or len(self._voice) < 4 or len(d) < 4:
            return 0.0
        t0 = now - self.window_s
        tv = np.array([v[0] for v in self._voice])
        ev = np.array([v[1] for v in self._voice])
        tm = np.array([m[0] for m in d])
        om = np.array([m[1] for m in d])
        if tm[-1] - max(tm[0], t0) < 0.6 * self.window_s or tv[-1] - max(tv[0], t0) < 0.6 * self.window_s:
            return 0.0  # not enough of the last second seen
        grid = np.arange(max(t0, tm[0], tv[0]), now, 1.0 / self.GRID_HZ)
        if len(grid) < 8:
            return 0.0
        e = np.interp(grid, tv, ev)
        if e.std() < 1.0:  # a flat envelope (steady noise or silence): nothing to follow
            return 0.0
        best = -1.0
        step = 1.0 / self.GRID_HZ
        for lag in np.arange(-self.max_lag_s, self.max_lag_s + 1e-9, step):
            m = np.interp(grid + lag, tm, om)
            if m.std() < 5e-3:  # a still mouth
                c = 0.0
            else:
                c = float(np.corrcoef(m, e)[0, 1])
            best = max(best, c if np.isfinite(c) else 0.0)
        return best

    def decide(self, now: float, present: list[int]) -> int | None:
        """The speaking person among ``present`` ids, or None (silence, or the voice follows no mouth)."""
        if now - self._t_voice > self.hold_s or not present:
            self.speaker, self.scores = None, {}
            return None
        if len(present) == 1:  # one face: the voice is its voice, as with one visitor
            self.scores = {present[0]: self.correlation(present[0], now)}
            self.speaker, self._t_speaker = present[0], now
            return self.speaker
        self.scores = {pid: self.correlation(pid, now) for pid in present}
        ranked = sorted(self.scores.items(), key=lambda kv: -kv[1])
        best, c1 = ranked[0]
        c2 = ranked[1][1]
        if c1 >= self.min_corr and c1 - c2 >= self.margin:
            self.speaker, self._t_speaker = best, now
        elif self.speaker not in present or now - self._t_speaker > self.hold_s:
            self.speaker = None
        return self.speaker


# ------------------------------------------------------------------------------------------------ persons
@dataclass
class PersonState:
    """One person's output for one tick."""

    id: int
    slot: int
    present: bool
    state: AffectState
    speaking: bool
    voice_score: float
    box: tuple[float, float, float, float]
    t_first: float

    def as_dict(self) -> dict:
        """JSON form (``state.people[*]``), rounded, never NaN."""
        s = self.state

        def r(x, nd=4):
            x = float(x)
            return round(x, nd) if np.isfinite(x) else 0.0

        return {"id": self.id, "slot": self.slot, "present": self.present, "valence": r(s.valence),
                "arousal": r(s.arousal), "confidence": r(s.confidence), "label": s.label,
                "probs": {n: r(s.probs.get(n, 0.0)) for n in LABELS}, "speaking": self.speaking,
                "voice_score": r(self.voice_score, 3), "box": [r(v) for v in self.box],
                "face_size": r(s.face_size), "since": r(self.t_first, 3)}


@dataclass
class CrowdState:
    count: int
    valence: float
    arousal: float
    confidence: float
    probs: dict[str, float]
    label: str
    speaking_slot: int  # -1: nobody
    speaking_id: int  # -1: nobody
    primary_slot: int = -1  # whose state /emotion/* carries; -1: nobody in view
    primary_id: int = -1
    slots: int = 1  # people.num_faces: the OSC slots sent every tick

    def as_dict(self) -> dict:
        return {"count": self.count, "valence": round(self.valence, 4), "arousal": round(self.arousal, 4),
                "confidence": round(self.confidence, 4), "label": self.label,
                "probs": {n: round(float(p), 4) for n, p in self.probs.items()},
                "speaking": self.speaking_slot, "speaking_id": self.speaking_id, "primary": self.primary_slot,
                "primary_id": self.primary_id, "slots": self.slots}


@dataclass
class PersonEvent:
    """A person event for the outputs: entered, left, or label_changed (with ``label`` and ``previous``)."""

    kind: str
    id: int
    slot: int
    label: str = ""
    previous: str = ""
    returning: bool = False

    def as_dict(self) -> dict:
        d = {"event": "person_" + self.kind if self.kind in ("entered", "left") else self.kind,
             "person": self.id, "slot": self.slot}
        if self.kind == "label_changed":
            d.update(label=self.label, previous=self.previous)
        if self.kind == "entered":
            d["returning"] = self.returning
        return d


def crowd_state(people: list[PersonState], hyst: Hysteresis, now: float,
                speaker: PersonState | None) -> CrowdState:
    """Confidence-weighted mean of everyone present (the crowd label has its own hysteresis)."""
    here = [p for p in people if p.present]
    if not here:
        hyst.reset()
        probs = {n: (1.0 if n == "neutral" else 0.0) for n in LABELS}
        return CrowdState(0, 0.0, 0.0, 0.0, probs, "neutral", -1, -1)
    w = np.array([max(p.state.confidence, 1e-3) for p in here])
    w = w / w.sum()
    pr = np.array([[p.state.probs[n] for n in LABELS] for p in here])
    mp = (w[:, None] * pr).sum(0)
    val = float(sum(wi * p.state.valence for wi, p in zip(w, here)))
    aro = float(sum(wi * p.state.arousal for wi, p in zip(w, here)))
    conf = float(np.mean([p.state.confidence for p in here]))
    hyst.update(mp, conf, now)
    return CrowdState(len(here), val, aro, conf, dict(zip(LABELS, mp.tolist())), hyst.label,
                      speaker.slot if speaker else -1, speaker.id if speaker else -1)


class Person:
    """One visitor: its face window, its streaming model state and hysteresis, its voice share."""

    def __init__(self, track: Track, model: StreamingAffectModel, cfg: Config):
        self.id, self.slot = track.id, track.slot
        self.track = track
        self.window = FaceWindow(cfg.video.window_s)
        # this visitor's own resting face (video.calibration): the evidence of each person is relative to it
        self.calibration = NeutralCalibration(cfg.video.calibration, cfg.video.calibration_s,
                                              cfg.video.calibration_forget_s, neutral_reference())
        self.runtime = AffectRuntime(StreamingAffectModel(model.net, model.meta), cfg.events, cfg.model.reset_after_s,
                                     cfg.model.face_fusion)
        self.t_face: float | None = None  # newest observation with this person's face
        self.last: FaceObservation | None = None
        self.state: AffectState | None = None
        self.speaking = False

    def push_face(self, obs: FaceObservation) -> None:
        obs = self.calibration.apply(obs)
        self.window.push(obs)
        self.t_face, self.last = obs.t_capture, obs

    def tick_input(self, audio_vec: np.ndarray | None, info: TickInfo, audio_dim: int, now: float, voice: bool,
                   face_muted: bool) -> tuple[np.ndarray, TickInfo]:
        """This person's tick vector and info: its own face window, the voice when it is theirs."""
        face_age = None if self.t_face is None else max(0.0, now - self.t_face)
        face_ok = not face_muted and face_age is not None and face_age <= FACE_STALE_S
        face_vec = self.window.vector() if face_ok else None
        a_vec = audio_vec if voice else None
        a_age = info.audio_age_s if (voice and audio_vec is not None) else None
        vec = assemble(a_vec, face_vec, audio_dim, a_age, face_age if face_ok else None)
        last = self.last if face_ok else None
        times = [t for t in (self.t_face if face_ok else None,
                             info.t_newest if a_vec is not None else None) if t is not None]
        pinfo = TickInfo(
            t_newest=max(times) if times else now,
            voice_active=bool(a_vec is not None and info.voice_active),
            loudness_db=info.loudness_db if a_vec is not None else SILENCE_DB,
            pitch_hz=info.pitch_hz if a_vec is not None else 0.0,
            audio_age_s=a_age, face_present=face_ok, face_age_s=face_age if face_ok else None,
            pose=last.pose if last is not None else (0.0, 0.0, 0.0),
            face_size=last.size if last is not None else 0.0,
            blendshapes=last.blendshapes if last is not None else None, expression=window_expression(face_vec))
        return vec, pinfo

    def step(self, audio_vec: np.ndarray | None, info: TickInfo, audio_dim: int, now: float, voice: bool,
             face_muted: bool) -> tuple[AffectState, str | None]:
        """This person alone (the engine steps everyone present in one batched call instead)."""
        vec, pinfo = self.tick_input(audio_vec, info, audio_dim, now, voice, face_muted)
        state, prev = self.runtime.step(vec, pinfo, now)
        self.state = state
        return state, prev


PRIMARY_CHOICES = ("largest", "speaking", "longest")


class PeopleEngine:
    """The set of persons plus the crowd (see the module docstring).

    ``push_faces(faces, t)`` with every face of a frame; ``step(vec, info, now)`` once per tick with the shared
    tick vector and info from :class:`~bridge.engine.FeatureEngine` (which, with more than one face, is fed audio
    only: its vector is the room's voice, used while nobody is in view). Returns the primary state, with
    ``people``, ``crowd`` and ``person_events`` attached, and the previous label when the primary label changed."""

    def __init__(self, cfg: Config, model: StreamingAffectModel, runtime: AffectRuntime, audio_dim: int):
        p = cfg.people
        self.cfg, self.model, self.runtime, self.audio_dim = cfg, model, runtime, audio_dim
        self.num_faces = p.num_faces
        self.single = p.num_faces == 1
        self.primary_mode = p.primary
        self.tracker = PersonTracker(p.num_faces, p.forget_s)
        self.voice = VoiceAttribution(p.attribution_s, p.attribution_min_corr)
        self.persons: dict[int, Person] = {}
        self.crowd_hyst = Hysteresis(cfg.events)
        self.primary_id: int | None = None
        self.seq = 0
        self._label = "neutral"
        self._events: list[PersonEvent] = []
        self.face_muted = False
        self.lock = threading.Lock()  # the face worker pushes, the ticker steps

    def reset(self) -> None:
        with self.lock:
            self._reset()

    def _reset(self) -> None:
        self.tracker.reset()
        self.voice.reset()
        self.persons.clear()
        self.crowd_hyst.reset()
        self.primary_id = None
        self._events.clear()
        self._label = "neutral"

    def calibrate(self, seconds: float, person: int | None = None) -> None:
        """The calibrate command with several faces: the next ``seconds`` of each person in view (or of
        ``person``) are that person's resting face."""
        if self.single:
            return  # one face: the feature engine's calibration, as before
        with self.lock:
            for p in self.present():
                if person is None or p.id == person:
                    p.calibration.start(seconds)

    def health(self) -> dict:
        with self.lock:
            here = self.present()
            return {"num_faces": self.num_faces, "in_view": len(here),
                    "tracked": len(self.tracker.tracks), "slots": {p.slot: p.id for p in here},
                    "speaking": self.voice.speaker if self.voice.speaker in {p.id for p in here} else None,
                    "primary": self.primary_id if not self.single else (here[0].id if here else None),
                    "face_calibration": {p.id: p.calibration.status() for p in here} if not self.single else {}}

    # ---------------------------------------------------------------- faces
    def push_faces(self, faces: list[FaceObservation], t: float) -> None:
        with self.lock:
            self._push_faces(faces, t)

    def _push_faces(self, faces: list[FaceObservation], t: float) -> None:
        pairs, events = self.tracker.update(faces, t)
        for tr, obs in pairs:
            person = self.persons.get(tr.id)
            if person is None:
                person = self.persons[tr.id] = Person(tr, self.model, self.cfg)
            person.push_face(obs)
            self.voice.push_mouth(tr.id, obs.t_capture, mouth_opening(obs.blendshapes))
        self._note(events)

    def _note(self, events: list[TrackEvent]) -> None:
        for ev in events:
            if ev.kind == "forgotten":
                self.persons.pop(ev.id, None)
                self.voice.forget(ev.id)
                if self.primary_id == ev.id:
                    self.primary_id = None
            else:
                self._events.append(PersonEvent(ev.kind, ev.id, ev.slot, returning=ev.returning))

    def primary_blendshapes(self) -> np.ndarray | None:
        """The raw blendshapes of the primary person's newest face (``osc.blendshapes`` with several visitors;
        with one face the feature engine's), None with nobody in view."""
        with self.lock:
            p = self.persons.get(self.primary_id) if self.primary_id is not None else None
            if p is None or p.last is None or not p.track.present:
                return None
            return p.last.blendshapes

    # ---------------------------------------------------------------- ticks
    def present(self) -> list[Person]:
        return sorted((p for p in self.persons.values() if p.track.present), key=lambda p: p.slot)

    def step(self, vec: np.ndarray, info: TickInfo, now: float) -> tuple[AffectState, str | None]:
        with self.lock:
            return self._step(vec, info, now)

    def _step(self, vec: np.ndarray, info: TickInfo, now: float) -> tuple[AffectState, str | None]:
        self._note(self.tracker.expire(now))
        self.voice.push_voice(now, info.loudness_db, info.voice_active)
        here = self.present()
        speaker_id = self.voice.decide(now, [p.id for p in here])
        audio_vec = vec[:self.audio_dim] if vec[-4] > 0.5 else None
        if self.single:
            # one face: exactly the single-visitor path; person 0 mirrors it
            state, prev = self.runtime.step(vec, info, now)
            self._label = state.label
            for p in here:
                p.state, p.speaking = state, bool(info.voice_active)
                if prev:
                    self._events.append(PersonEvent("label_changed", p.id, p.slot, state.label, prev))
        else:
            someone_speaks = speaker_id is not None or now - self.voice._t_voice <= self.voice.hold_s
            # the speaker gets the voice; while a voice is heard the others get face-only evidence; in silence
            # everyone gets the (silent) audio, as a lone visitor would. Everyone's model step in one call.
            inputs = [p.tick_input(audio_vec, info, self.audio_dim, now, p.id == speaker_id or not someone_speaks,
                                   self.face_muted) for p in here]
            results = step_runtimes([(p.runtime, vec_p, info_p) for p, (vec_p, info_p) in zip(here, inputs)], now)
            for p, (pstate, pprev) in zip(here, results):
                p.state, p.speaking = pstate, p.id == speaker_id
                if pprev:
                    self._events.append(PersonEvent("label_changed", p.id, p.slot, p.state.label, pprev))
            primary = self._primary(here, speaker_id)
            if primary is None:
                state, _ = self.runtime.step(vec, info, now)  # nobody in view: the room's voice
            else:
                state = dataclasses.replace(primary.state)
            self.seq += 1
            state = dataclasses.replace(state, seq=self.seq)
            prev = None
            if state.label != self._label:
                prev, self._label = self._label, state.label
        people = [PersonState(p.id, p.slot, True, p.state, p.speaking, self.voice.scores.get(p.id, 0.0),
                              tuple(float(x) for x in p.track.box), p.track.t_first)
                  for p in here if p.state is not None]
        speaker = next((ps for ps in people if ps.id == speaker_id), None)
        state.people = people
        state.crowd = crowd_state(people, self.crowd_hyst, now, speaker)
        state.crowd.slots = self.num_faces
        prim = next((ps for ps in people if ps.id == (here[0].id if self.single and here else self.primary_id)),
                    None)
        if prim is not None:
            state.crowd.primary_slot, state.crowd.primary_id = prim.slot, prim.id
        state.person_events, self._events = self._events, []
        return state, prev

    def _primary(self, here: list[Person], speaker_id: int | None) -> Person | None:
        if not here:
            return None
        by_id = {p.id: p for p in here}
        cur = by_id.get(self.primary_id)
        if self.primary_mode == "speaking" and speaker_id in by_id:
            choice = by_id[speaker_id]
        elif self.primary_mode == "longest":
            choice = min(here, key=lambda p: (p.track.t_first, p.slot))
        else:
            def size(p: Person) -> float:
                return p.last.size if p.last is not None else 0.0

            big = max(here, key=size)
            # sticky: the current primary keeps the role until another face is clearly (25 %) larger
            choice = cur if cur is not None and size(big) <= 1.25 * size(cur) else big
            if self.primary_mode == "speaking" and cur is not None:
                choice = cur
        self.primary_id = choice.id
        return choice


# ------------------------------------------------------------------------------------------------ other sources
class GroupView:
    """People whose states come from elsewhere — the simulated group (``--source simulate --people N``), a replayed
    recording: turns each tick's members into ``state.people``, the crowd, and the entered/left events (from the
    slots' presence), the same way as live."""

    def __init__(self, cfg: Config, slots: int | None = None):
        self.slots = slots or cfg.people.num_faces
        self.crowd_hyst = Hysteresis(cfg.events)
        self._present: dict[int, int] = {}  # slot -> id present last tick
        self._seen: set[int] = set()
        self._since: dict[int, float] = {}

    def attach(self, state: AffectState, now: float, members: list[tuple[int, int, AffectState, bool]],
               label_events: list[PersonEvent] = (), primary_slot: int | None = 0) -> AffectState:
        """``members``: (id, slot, state, speaking) of everyone in view this tick."""
        events: list[PersonEvent] = []
        here = {slot: pid for pid, slot, _, _ in members}
        for slot, pid in list(self._present.items()):
            if here.get(slot) != pid:
                events.append(PersonEvent("left", pid, slot))
                del self._present[slot]
        people = []
        for pid, slot, st, speaking in members:
            if self._present.get(slot) != pid:
                events.append(PersonEvent("entered", pid, slot, returning=pid in self._seen))
                self._present[slot] = pid
                self._seen.add(pid)
                self._since.setdefault(pid, now)
            x0 = slot / max(self.slots, 1)
            box = (x0 + 0.02, 0.25, x0 + 1.0 / max(self.slots, 1) - 0.02, 0.75)
            people.append(PersonState(pid, slot, True, st, speaking, 0.0, box, self._since[pid]))
        events += list(label_events)
        speaker = next((p for p in people if p.speaking), None)
        state.people = sorted(people, key=lambda p: p.slot)
        state.crowd = crowd_state(state.people, self.crowd_hyst, now, speaker)
        state.crowd.slots = self.slots
        prim = next((p for p in state.people if p.slot == primary_slot), None)
        if prim is not None:
            state.crowd.primary_slot, state.crowd.primary_id = prim.slot, prim.id
        state.person_events = events
        return state


def person_state_from_json(d: dict, template: AffectState) -> tuple[int, int, AffectState, bool] | None:
    """A recorded ``state.people[*]`` entry back into (id, slot, state, speaking); None when malformed."""
    try:
        pid, slot = int(d["id"]), int(d["slot"])
        label = d["label"] if d.get("label") in LABELS else "neutral"
        probs = {n: float(d.get("probs", {}).get(n, 0.0)) for n in LABELS}
        st = dataclasses.replace(template, valence=float(np.clip(float(d["valence"]), -1, 1)),
                                 arousal=float(np.clip(float(d["arousal"]), -1, 1)),
                                 confidence=float(np.clip(float(d["confidence"]), 0, 1)), probs=probs, label=label,
                                 face_present=True, face_size=float(d.get("face_size") or 0.0),
                                 voice_active=bool(d.get("speaking")), people=None, crowd=None, person_events=None)
        return pid, slot, st, bool(d.get("speaking"))
    except (KeyError, TypeError, ValueError):
        return None
