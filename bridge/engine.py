"""Pure compute from inputs to states, with no threads and no clock of its own.

``FeatureEngine`` turns pushed audio samples and face observations into the tick vector at a given time;
``AffectRuntime`` steps the streaming model on it and applies the label hysteresis. The live pipeline, the
offline file path (virtual clock) and the training-data builder all use these two classes, so what the model
sees in training is what it sees live.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge import clock
from bridge.config import AudioConfig, EventsConfig, VideoConfig
from bridge.features.audio import SILENCE_DB, AudioFeatures
from bridge.features.face import EXPRESSION_NAMES, FaceObservation, FaceWindow, window_expression
from bridge.frames import AffectState
from bridge.labels import LABELS, VA
from bridge.model.affect import StepOutput, StreamingAffectModel, step_many
from bridge.model.tick import assemble, feature_schema, schema_mismatch

FACE_STALE_S = 0.5  # a face older than this is reported absent


@dataclass
class TickInfo:
    t_newest: float  # capture time of the newest input reflected
    voice_active: bool
    loudness_db: float
    pitch_hz: float
    audio_age_s: float | None
    face_present: bool
    face_age_s: float | None
    pose: tuple[float, float, float]
    face_size: float
    blendshapes: np.ndarray | None
    expression: np.ndarray | None = None  # the face path's 7 expression probabilities (face window mean)


class FeatureEngine:
    def __init__(self, audio_cfg: AudioConfig, video_cfg: VideoConfig, use_audio: bool = True,
                 use_face: bool = True):
        self.audio = AudioFeatures(audio_cfg)
        self.face = FaceWindow(video_cfg.window_s)
        from bridge.features.calibration import NeutralCalibration, neutral_reference

        self.calibration = NeutralCalibration(video_cfg.calibration, video_cfg.calibration_s,
                                              video_cfg.calibration_forget_s, neutral_reference())
        self.use_audio, self.use_face = use_audio, use_face
        # site adaptation (bridge.features.site), set by the pipeline from the weights; installation state: not
        # forgotten by reset()
        self.site = None
        self.lock = threading.Lock()
        self.audio_muted = False
        self.face_muted = False
        self.reset()

    @property
    def audio_dim(self) -> int:
        return self.audio.dim

    def reset(self) -> None:
        with self.lock:
            self.audio.reset()
            self.face.reset()
            self.calibration.reset()
            self.t_audio: float | None = None  # capture time just after the newest audio sample
            self.t_face: float | None = None  # newest face observation (present or not)
            self.t_face_present: float | None = None

    def push_audio(self, samples: np.ndarray, t_end: float) -> None:
        with self.lock:
            self.audio.process(samples)
            self.t_audio = t_end

    def audio_lost(self) -> None:
        """The microphone is gone: stop claiming audio evidence until it returns."""
        with self.lock:
            self.audio.reset()
            self.t_audio = None

    def push_face(self, obs: FaceObservation) -> None:
        with self.lock:
            obs = self.calibration.apply(obs)  # relative to this visitor's resting face, once it is known
            self.face.push(obs)
            self.t_face = obs.t_capture
            if obs.present:
                self.t_face_present = obs.t_capture

    def calibrate(self, seconds: float | None = None) -> None:
        """Take the next ``seconds`` of face as this visitor's resting face."""
        with self.lock:
            self.calibration.start(seconds)

    def vector(self, now: float) -> tuple[np.ndarray, TickInfo]:
        with self.lock:
            have_audio = self.use_audio and not self.audio_muted and self.t_audio is not None
            snap = self.audio.snapshot() if have_audio else None
            face_age = None if self.t_face_present is None else max(0.0, now - self.t_face_present)
            face_present = (self.use_face and not self.face_muted and face_age is not None
                            and face_age <= FACE_STALE_S)
            face_vec = self.face.vector() if face_present else None
            last = self.face.last
            audio_age = None if not have_audio else max(0.0, now - self.t_audio)
            audio_vec = snap.vector if snap else None
            if audio_vec is not None and self.site is not None:
                if snap.voice_active:
                    self.site.update(audio_vec)
                audio_vec = self.site.apply(audio_vec)
            vec = assemble(audio_vec, face_vec, self.audio.dim, audio_age,
                           face_age if face_present else None)
            # Only inputs the vector reflects count. A face observation older than FACE_STALE_S is not in the
            # vector (the camera ended, stalled or was unplugged): with the old rule its time stayed in the max,
            # so once the audio also ended every state carried the last frame's capture time and showed a
            # latency of seconds. With no fresh input at all the state is stamped with the tick time.
            face_fresh = (self.use_face and not self.face_muted and self.t_face is not None
                          and now - self.t_face <= FACE_STALE_S)
            times = [t for t in (self.t_audio if have_audio else None,
                                 self.t_face if face_fresh else None) if t is not None]
            info = TickInfo(
                t_newest=max(times) if times else now,
                voice_active=bool(snap and snap.voice_active),
                loudness_db=snap.loudness_db if snap else SILENCE_DB,
                pitch_hz=snap.pitch_hz if snap else 0.0,
                audio_age_s=audio_age,
                face_present=face_present,
                face_age_s=face_age,
                pose=last.pose if (face_present and last is not None and last.present) else (0.0, 0.0, 0.0),
                face_size=last.size if (face_present and last is not None and last.present) else 0.0,
                blendshapes=last.blendshapes if (face_present and last is not None and last.present) else None,
                expression=window_expression(face_vec),
            )
        return vec, info


class Hysteresis:
    """Emit a label change only once the current label has been beaten for ``min_dwell_s``: another label led it
    by ``margin`` (with confidence at least ``events.min_confidence``) on every tick of that time. The new label is
    the one that led on most of those ticks. With one challenger that is "the new label must lead for the dwell";
    with two that take turns (sad, then happy, each for less than the dwell) the label still moves on after the
    dwell instead of staying on one that neither probability supports any more."""

    def __init__(self, cfg: EventsConfig, margin: float = 0.05):
        self.cfg, self.margin = cfg, margin
        self.reset()

    def reset(self) -> None:
        self.label = "neutral"
        self._since: float | None = None  # when the current label was first beaten (None: it is not)
        self._led = np.zeros(len(LABELS), np.int64)  # ticks each challenger led since then

    def update(self, probs: np.ndarray, confidence: float, now: float) -> str | None:
        """Returns the previous label when the label changed this tick, else None."""
        k = int(np.argmax(probs))
        p_top, p_cur = float(probs[k]), float(probs[LABELS.index(self.label)])
        if LABELS[k] == self.label or p_top < p_cur + self.margin or confidence < self.cfg.min_confidence:
            self._since = None
            self._led[:] = 0
            return None
        if self._since is None:
            self._since = now
        self._led[k] += 1
        if now - self._since >= self.cfg.min_dwell_s:
            prev, self.label = self.label, LABELS[int(np.argmax(self._led))]
            self._since = None
            self._led[:] = 0
            return prev
        return None


# each expression label's place among LABELS, and the (valence, arousal) the face path's probabilities stand for
_FACE_TO = np.array([LABELS.index(e) for e in EXPRESSION_NAMES])
_FACE_VA = np.array([VA[e] for e in EXPRESSION_NAMES], np.float64)


class FaceFusion:
    """Late fusion of the affect model's output with the face path's own reading while the visitor is silent.

    While no voice has been heard for ``quiet_s``, the state is ``(1 - w) * model + w * face``, where ``face`` is
    the face path's expression probabilities (the face windows of the last ``span_s`` of ticks, so about
    ``span_s`` + the face window of frames) and its valence/arousal their circumplex mean (``bridge.labels.VA``);
    ``w`` is ``weight``, slewed over ``slew_s`` (no jump when a voice starts or stops), and 0 while the visitor
    speaks: the model fuses face and voice itself. Measured on 585 clear FER+ faces held still with camera noise
    and with the microphone hearing a quiet room (``benchmarks/face_only_fusion.py``, docs/MODEL_CARD.md): the
    model alone's face-only accuracy depends on the training seed (0.55-0.87); fused at 0.5, 0.86-0.90 on every
    seed. ``weight`` 0 turns it off (the model's output unchanged)."""

    def __init__(self, weight: float, span_s: float = 1.0, quiet_s: float = 1.0, slew_s: float = 0.5):
        self.weight, self.span_s, self.quiet_s, self.slew_s = weight, span_s, quiet_s, slew_s
        self._ex: deque[tuple[float, np.ndarray]] = deque(maxlen=1024)
        self.reset()

    def reset(self) -> None:
        self._ex.clear()
        self.w = 0.0
        self._t: float | None = None
        self._t_voice: float | None = None

    def __call__(self, probs: np.ndarray, valence: float, arousal: float, info: TickInfo, now: float
                 ) -> tuple[np.ndarray, float, float]:
        if self.weight <= 0:
            return probs, valence, arousal
        if info.voice_active:
            self._t_voice = now
        if info.expression is not None:
            self._ex.append((now, info.expression))
        while self._ex and now - self._ex[0][0] > self.span_s:
            self._ex.popleft()
        quiet = self._t_voice is None or now - self._t_voice >= self.quiet_s
        target = self.weight if (quiet and info.face_present and self._ex) else 0.0
        dt = 0.0 if self._t is None else max(0.0, now - self._t)
        self._t = now
        step = self.weight * dt / self.slew_s
        self.w = target if abs(target - self.w) <= step else self.w + math.copysign(step, target - self.w)
        if self.w <= 0 or not self._ex:
            return probs, valence, arousal
        ex = np.mean([e for _, e in self._ex], 0).astype(np.float64)
        ex /= max(ex.sum(), 1e-9)
        face = np.zeros(len(LABELS))
        face[_FACE_TO] = ex
        fv, fa = ex @ _FACE_VA
        w = self.w
        return (1 - w) * probs + w * face, (1 - w) * valence + w * fv, (1 - w) * arousal + w * fa


class AffectRuntime:
    def __init__(self, model: StreamingAffectModel, events: EventsConfig, reset_after_s: float,
                 face_fusion: float):
        self.model = model
        self.hyst = Hysteresis(events)
        self.fusion = FaceFusion(face_fusion)
        self.reset_after_s = reset_after_s
        self.seq = 0
        self._t_evidence: float | None = None
        self.resets = 0

    def check_schema(self, audio_cfg: AudioConfig, video_cfg: VideoConfig, tick_hz: float) -> list[str]:
        return schema_mismatch(self.model.meta.get("feature_schema", {}),
                               feature_schema(audio_cfg, video_cfg, tick_hz))

    def reset(self) -> None:
        self.model.reset()
        self.hyst.reset()
        self.fusion.reset()
        self.resets += 1

    def step(self, vec: np.ndarray, info: TickInfo, now: float) -> tuple[AffectState, str | None]:
        """One tick. Returns the state and, on a label change, the previous label."""
        self.prepare(info, now)
        return self.finish(self.model.step(vec), info, now)

    def prepare(self, info: TickInfo, now: float) -> None:
        """Before the model step: nobody here for ``reset_after_s`` -> a fresh state for the next visitor."""
        if info.voice_active or info.face_present:
            self._t_evidence = now
        elif self._t_evidence is not None and now - self._t_evidence > self.reset_after_s:
            self.reset()  # nobody here for a while: the next visitor starts fresh
            self._t_evidence = None

    def finish(self, out: StepOutput, info: TickInfo, now: float) -> tuple[AffectState, str | None]:
        """After the model step: the late fusion with the face path while the visitor is silent, label hysteresis
        and the state."""
        probs = np.nan_to_num(out.probs, nan=1.0 / len(LABELS))
        probs, valence, arousal = self.fusion(probs, out.valence, out.arousal, info, now)
        prev = self.hyst.update(probs, out.confidence, now)
        self.seq += 1
        state = AffectState(
            seq=self.seq, t_capture=info.t_newest, t_capture_wall=clock.to_wall(info.t_newest),
            valence=float(np.clip(valence, -1, 1)), arousal=float(np.clip(arousal, -1, 1)),
            probs={n: float(p) for n, p in zip(LABELS, probs)}, label=self.hyst.label,
            confidence=float(np.clip(out.confidence, 0, 1)), face_present=info.face_present,
            voice_active=info.voice_active,
            face_age_ms=None if info.face_age_s is None else info.face_age_s * 1000.0,
            voice_age_ms=None if info.audio_age_s is None else info.audio_age_s * 1000.0,
            loudness_db=info.loudness_db, pitch_hz=info.pitch_hz, head_pose=info.pose, face_size=info.face_size,
            raw_label=LABELS[int(np.argmax(probs))],
        )
        return state, prev


def step_runtimes(items: list[tuple[AffectRuntime, np.ndarray, TickInfo]], now: float
                  ) -> list[tuple[AffectState, str | None]]:
    """One tick for several visitors' runtimes (one tick vector and info each): their model steps in one batched
    call (:func:`~bridge.model.affect.step_many`), equal to calling ``step`` on each."""
    for rt, _, info in items:
        rt.prepare(info, now)
    outs = step_many([rt.model for rt, _, _ in items], [vec for _, vec, _ in items])
    return [rt.finish(out, info, now) for (rt, _, info), out in zip(items, outs)]
