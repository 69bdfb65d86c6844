"""Synthetic face evidence for training: label timelines -> per-frame MediaPipe-style ``FaceObservation`` streams.

No labelled face video exists for this project, so the affect model is trained on real emotional speech (RAVDESS
audio) plus face evidence synthesised here from published facial-action prototypes: Ekman & Friesen's EMFACS
predictions (FACS 1978; EMFACS-7, Friesen & Ekman 1983) mapped onto MediaPipe FaceLandmarker's 52 ARKit-style
blendshapes, with apex levels calibrated to what the real landmarker outputs (see ``docs/FACE_EVIDENCE.md``).

Pipeline of one sequence (all randomness from the caller's ``np.random.Generator``, so it is deterministic):

    timeline [(label, intensity, duration_s), ...]
      -> expression episodes per segment (onset / apex hold / offset envelopes, per-episode intensity spread)
      -> + person (baseline offsets, left/right asymmetry, expressiveness gain, rest pose, face size)
      -> + blinks, talking mouth (where ``speaking``), head-pose drift, slow baseline drift, measurement noise
      -> dropouts (face lost) -> list[FaceObservation] at ``fps``

``face_features_for_timeline`` then pushes the observations through the same ``FaceWindow`` the live pipeline uses
and samples its vector at the model's tick times. ``calm`` has no published EMFACS prototype; the one here is this
project's own assumption (a relaxed neutral face), documented as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Sequence

import numpy as np

from bridge.features.face import (BLENDSHAPE_NAMES, BS_INDEX, FACE_DIM, N_BLENDSHAPES, PRESENT_FRAC,
                                  FaceObservation, FaceWindow)
from bridge.labels import LABELS

__all__ = [
    "AU_BLENDSHAPES", "PROTOTYPE_AUS", "PROTOTYPES", "BASELINE", "EMFACS_LABELS", "RAVDESS_INTENSITY",
    "SynthConfig", "Person", "FaceTrack", "FaceTicks",
    "sample_person", "prototype_vector", "prototype_delta", "nearest_prototype", "parse_intensity",
    "synthesize", "generate", "window_features", "face_features_for_timeline",
    "mediapipe_blendshapes", "astronaut_blendshapes", "plot_example",
]

# ---------------------------------------------------------------------------------------------------------------
# Action units -> MediaPipe blendshapes, and the EMFACS prototypes
# ---------------------------------------------------------------------------------------------------------------

# FACS action unit -> the ARKit-style blendshape(s) that best express it in MediaPipe's output.
AU_BLENDSHAPES: dict[str, tuple[str, ...]] = {
    "AU1": ("browInnerUp",),                                   # inner brow raiser
    "AU2": ("browOuterUpLeft", "browOuterUpRight"),            # outer brow raiser
    "AU4": ("browDownLeft", "browDownRight"),                  # brow lowerer
    "AU5": ("eyeWideLeft", "eyeWideRight"),                    # upper lid raiser
    "AU6": ("cheekSquintLeft", "cheekSquintRight"),            # cheek raiser (MediaPipe shows it in eyeSquint)
    "AU7": ("eyeSquintLeft", "eyeSquintRight"),                # lid tightener
    "AU9": ("noseSneerLeft", "noseSneerRight"),                # nose wrinkler
    "AU12": ("mouthSmileLeft", "mouthSmileRight"),             # lip corner puller
    "AU15": ("mouthFrownLeft", "mouthFrownRight"),             # lip corner depressor
    "AU16": ("mouthLowerDownLeft", "mouthLowerDownRight"),     # lower lip depressor
    "AU20": ("mouthStretchLeft", "mouthStretchRight"),         # lip stretcher
    "AU23": ("mouthPressLeft", "mouthPressRight"),             # lip tightener
    "AU24": ("mouthPressLeft", "mouthPressRight"),             # lip pressor
    "AU26": ("jawOpen",),                                      # jaw drop
}

# EMFACS prototype action units per label (Friesen & Ekman 1983). neutral: none; calm: no published prototype.
PROTOTYPE_AUS: dict[str, tuple[str, ...]] = {
    "neutral": (),
    "calm": (),
    "happy": ("AU6", "AU12"),
    "sad": ("AU1", "AU4", "AU15"),
    "angry": ("AU4", "AU5", "AU7", "AU23"),
    "fearful": ("AU1", "AU2", "AU4", "AU5", "AU7", "AU20", "AU26"),
    "disgust": ("AU9", "AU15", "AU16"),
    "surprised": ("AU1", "AU2", "AU5", "AU26"),
}

EMFACS_LABELS: tuple[str, ...] = ("happy", "sad", "angry", "fearful", "disgust", "surprised")

# RAVDESS emotional intensity code -> apex scale of the face prototype.
RAVDESS_INTENSITY: dict[int, float] = {1: 0.6, 2: 1.0}


def _bilateral(**kw: float) -> dict[str, float]:
    """``mouthSmile=0.7`` -> ``{"mouthSmileLeft": 0.7, "mouthSmileRight": 0.7}``; central names pass through."""
    out: dict[str, float] = {}
    for k, v in kw.items():
        if k in BS_INDEX:
            out[k] = float(v)
        else:
            out[k + "Left"] = float(v)
            out[k + "Right"] = float(v)
    for k in out:
        if k not in BS_INDEX:
            raise KeyError(k)
    return out


# Resting (neutral, frontal, eyes open) MediaPipe scores. Values chosen from the channels of the astronaut
# calibration photo that the smile does not involve, and from public MediaPipe dumps (see the doc); every person
# gets multiplicative and additive offsets around these.
BASELINE: dict[str, float] = {
    "_neutral": 5e-6,
    **_bilateral(browDown=0.03, browOuterUp=0.04, cheekSquint=3e-6, eyeBlink=0.05, eyeLookDown=0.10,
                 eyeLookIn=0.06, eyeLookOut=0.06, eyeLookUp=0.07, eyeSquint=0.12, eyeWide=0.02,
                 mouthDimple=0.02, mouthFrown=0.005, mouthLowerDown=0.03, mouthPress=0.06, mouthSmile=0.02,
                 mouthStretch=0.02, mouthUpperUp=0.03, noseSneer=5e-6),
    "browInnerUp": 0.05, "cheekPuff": 6e-4, "jawForward": 0.002, "jawLeft": 6e-4, "jawRight": 3e-4,
    "jawOpen": 0.015, "mouthClose": 0.01, "mouthFunnel": 0.005, "mouthLeft": 0.002, "mouthRight": 0.002,
    "mouthPucker": 0.06, "mouthRollLower": 0.02, "mouthRollUpper": 0.02, "mouthShrugLower": 0.05,
    "mouthShrugUpper": 0.03,
}

# Apex score *added* to the baseline for a strong posed prototype (intensity 1.0), on MediaPipe's scale.
# The core entries are the EMFACS action units (via AU_BLENDSHAPES); the "appearance" entries are what those
# AUs visibly do to neighbouring regions in FACS's own descriptions and what MediaPipe reports for them
# (e.g. AU6 narrows the eye and MediaPipe answers with eyeSquint, not cheekSquint). See docs/FACE_EVIDENCE.md.
PROTOTYPES: dict[str, dict[str, float]] = {
    "neutral": {},
    # Project assumption (no EMFACS prototype): a relaxed, low-activity face: lids slightly lowered, a trace of
    # a relaxed smile, lips slightly parted and less pressed, brows at rest; slower and rarer blinks and less head
    # motion are applied in the dynamics (CALM_DYNAMICS).
    "calm": {**_bilateral(eyeBlink=0.12, eyeSquint=0.05, mouthSmile=0.08, mouthPress=-0.03, browDown=-0.02),
             "jawOpen": 0.03, "browInnerUp": -0.02, "mouthShrugLower": -0.02},
    # AU6 + AU12
    "happy": _bilateral(mouthSmile=0.72, cheekSquint=0.05, eyeSquint=0.25, mouthUpperUp=0.30),
    # AU1 + AU4 + AU15 (+ AU17 chin raise and downward gaze of the common EMFACS variants)
    "sad": {"browInnerUp": 0.45, "mouthShrugLower": 0.15,
            **_bilateral(browDown=0.22, mouthFrown=0.35, eyeLookDown=0.12, eyeSquint=0.05)},
    # AU4 + AU5 + AU7 + AU23/24
    "angry": _bilateral(browDown=0.60, eyeWide=0.12, eyeSquint=0.30, mouthPress=0.40, noseSneer=0.05),
    # AU1 + AU2 + AU4 + AU5 + AU7 + AU20 + AU26
    "fearful": {"browInnerUp": 0.50, "jawOpen": 0.20,
                **_bilateral(browOuterUp=0.25, browDown=0.18, eyeWide=0.25, eyeSquint=0.15, mouthStretch=0.35,
                             mouthLowerDown=0.10)},
    # AU9 + AU15 + AU16 (+ AU9's own appearance: medial brow lowering, lid narrowing, upper lip raise)
    "disgust": _bilateral(noseSneer=0.20, mouthFrown=0.30, mouthLowerDown=0.30, mouthUpperUp=0.30, browDown=0.20,
                          eyeSquint=0.20),
    # AU1 + AU2 + AU5 + AU26
    "surprised": {"browInnerUp": 0.55, "jawOpen": 0.35, "mouthFunnel": 0.05,
                  **_bilateral(browOuterUp=0.55, eyeWide=0.25, mouthLowerDown=0.05)},
}

# Calm also changes the dynamics (project assumption): blink rate x0.7, blink duration x1.6, head motion x0.5.
CALM_DYNAMICS = {"blink_rate": 0.7, "blink_duration": 1.6, "head_motion": 0.5}


def _vec(d: dict[str, float]) -> np.ndarray:
    v = np.zeros(N_BLENDSHAPES, np.float64)
    for k, x in d.items():
        v[BS_INDEX[k]] = x
    return v


BASELINE_VEC = _vec(BASELINE)
_DELTAS = np.stack([_vec(PROTOTYPES[lab]) for lab in LABELS])  # (n_labels, 52)
_LABEL_INDEX = {lab: i for i, lab in enumerate(LABELS)}

# Left/right sign per channel for asymmetry (+1 Left, -1 Right, 0 central) and the partner index of each channel.
_SIDE = np.array([1.0 if n.endswith("Left") else -1.0 if n.endswith("Right") else 0.0 for n in BLENDSHAPE_NAMES])
_PAIR = np.array([BS_INDEX.get(n[:-4] + "Right", i) if n.endswith("Left") else
                  BS_INDEX.get(n[:-5] + "Left", i) if n.endswith("Right") else i
                  for i, n in enumerate(BLENDSHAPE_NAMES)])
# Upper face (brows, lids, cheeks, nose) vs lower face (mouth, jaw), for partial expressions.
_UPPER = np.array([n.startswith(("brow", "eye", "cheekSquint", "noseSneer")) for n in BLENDSHAPE_NAMES])
_I = BS_INDEX


def prototype_delta(label: str) -> np.ndarray:
    """The prototype's apex change over the baseline, (52,) float64 (negative entries relax the baseline)."""
    return _DELTAS[_LABEL_INDEX[_check_label(label)]].copy()


def prototype_vector(label: str, intensity: float = 1.0) -> np.ndarray:
    """Expected MediaPipe scores (52,) of an average person at the apex of ``label`` at ``intensity``."""
    return np.clip(BASELINE_VEC + parse_intensity(intensity) * prototype_delta(label), 0.0, 1.0)


def nearest_prototype(scores: np.ndarray, labels: Sequence[str] = EMFACS_LABELS) -> str:
    """The label whose prototype direction best matches ``scores`` (52 blendshape scores, or a FaceWindow vector).

    Cosine similarity between (scores - BASELINE) and each prototype's delta: scale-free, so it compares the
    *pattern* of activation, not its strength. ``neutral`` (no delta) cannot be a candidate.
    """
    x = np.asarray(scores, np.float64)[:N_BLENDSHAPES] - BASELINE_VEC
    best, best_s = None, -np.inf
    for lab in labels:
        d = prototype_delta(lab)
        nd = float(np.linalg.norm(d))
        if nd == 0.0:
            raise ValueError(f"label {lab!r} has no prototype direction")
        s = float(x @ d) / (nd * (float(np.linalg.norm(x)) + 1e-9))
        if s > best_s:
            best, best_s = lab, s
    assert best is not None
    return best


def _check_label(label: str) -> str:
    if label not in _LABEL_INDEX:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    return label


def parse_intensity(x: object) -> float:
    """Intensity in [0, 1]. RAVDESS codes (int 1 / 2, or "normal" / "strong") map to 0.6 / 1.0.

    Note the type matters: the *int* 1 is RAVDESS "normal" (0.6), the *float* 1.0 is full intensity.
    """
    if isinstance(x, str):
        m = {"normal": 0.6, "strong": 1.0}
        if x not in m:
            raise ValueError(f"intensity {x!r}: expected 'normal' or 'strong'")
        return m[x]
    if isinstance(x, (bool, np.bool_)):
        raise ValueError("intensity must be a number, not a bool")
    if isinstance(x, (int, np.integer)):
        if int(x) in RAVDESS_INTENSITY:
            return RAVDESS_INTENSITY[int(x)]
        if int(x) == 0:
            return 0.0
        raise ValueError(f"integer intensity {x!r}: expected a RAVDESS code 1 or 2 (or 0)")
    v = float(x)  # type: ignore[arg-type]
    if not (0.0 <= v <= 1.0) or math.isnan(v):
        raise ValueError(f"intensity {x!r} outside [0, 1]")
    return v


# ---------------------------------------------------------------------------------------------------------------
# Parameters and people
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """Ranges of the dynamics model; (lo, hi) pairs are uniform ranges. See docs/FACE_EVIDENCE.md."""

    # expression episodes
    onset_delay_s: tuple[float, float] = (0.0, 0.4)     # segment start -> first onset
    onset_s: tuple[float, float] = (0.2, 0.6)
    hold_s: tuple[float, float] = (1.0, 4.0)            # apex hold of an episode in a long segment
    offset_s: tuple[float, float] = (0.3, 1.0)
    gap_s: tuple[float, float] = (0.2, 1.2)             # relaxed stretch between episodes of one segment
    single_episode_below_s: float = 5.0                 # shorter segments: one episode spanning the segment
    p_single_episode: float = 0.4                       # longer segments: chance of one sustained episode anyway
    apex_spread: tuple[float, float] = (0.75, 1.15)     # per-episode factor on the apex
    channel_jitter: float = 0.15                        # per-episode log-sd of each channel's share
    apex_wobble: float = 0.06                           # slow relative fluctuation while active
    smooth_s: float = 0.1                               # moving average applied to each envelope
    p_partial: float = 0.2                              # episode shows only the upper or only the lower face
    p_unexpressed: float = 0.05                         # segment shows no expression at all ("poker face")
    # person
    baseline_log_sd: float = 0.4
    baseline_add_sd: float = 0.015
    asym_sd: float = 0.08
    gain_log_sd: float = 0.2
    gain_range: tuple[float, float] = (0.6, 1.4)
    rest_pose_sd: tuple[float, float, float] = (7.0, 6.0, 3.0)  # yaw, pitch, roll (degrees)
    size_range: tuple[float, float] = (0.2, 0.6)        # face height / image height
    # blinks (Bentivoglio et al. 1997: ~17/min at rest, ~26/min in conversation)
    blink_rate_per_min: tuple[float, float] = (15.0, 20.0)
    speaking_blink_factor: float = 1.3
    blink_s: tuple[float, float] = (0.12, 0.18)
    blink_amp: tuple[float, float] = (0.8, 1.0)
    min_blink_gap_s: float = 0.3
    # talking
    syllable_hz: tuple[float, float] = (3.0, 6.0)
    speech_gain_log_sd: float = 0.25
    speech_ramp_s: float = 0.08
    # head pose and size
    pose_drift_sd: tuple[float, float, float] = (4.0, 3.0, 1.5)
    pose_drift_tau_s: float = 3.0
    pose_speech_sd: tuple[float, float, float] = (1.0, 1.5, 0.5)
    pose_speech_tau_s: float = 0.25
    pose_noise_sd: float = 0.3
    size_drift: float = 0.04
    size_drift_tau_s: float = 4.0
    # measurement
    baseline_drift_sd: float = 0.012
    baseline_drift_tau_s: float = 1.5
    noise_floor: float = 0.004
    noise_rel: float = 0.06
    noise_rho: float = 0.4
    # face lost
    p_dropouts: float = 0.5                             # chance a sequence has random dropouts at all
    dropout_rate_per_min: float = 2.0
    dropout_s: tuple[float, float] = (0.2, 3.0)         # log-uniform
    p_absent: float = 0.0                               # chance the whole sequence has no face

    def without_dropouts(self) -> "SynthConfig":
        """The same dynamics with the face always found."""
        return replace(self, p_dropouts=0.0, p_absent=0.0)

    def still(self) -> "SynthConfig":
        """A visitor standing still and silent in front of the camera: the same expression episodes, with the head
        almost motionless (a tenth of the drift), no wobble of the expression and no dropouts."""
        return replace(self, pose_drift_sd=tuple(0.1 * v for v in self.pose_drift_sd), pose_speech_sd=(0.0, 0.0, 0.0),
                       pose_noise_sd=0.1 * self.pose_noise_sd, size_drift=0.1 * self.size_drift,
                       apex_wobble=0.1 * self.apex_wobble, p_dropouts=0.0, p_absent=0.0)

    def full_prototypes(self) -> "SynthConfig":
        """The same dynamics with every episode showing the whole prototype (no partial / unexpressed ones)."""
        return replace(self, p_partial=0.0, p_unexpressed=0.0)


@dataclass(frozen=True)
class Person:
    """One synthetic person, sampled once per sequence."""

    baseline: np.ndarray = field(repr=False)            # (52,) resting scores
    asym: np.ndarray = field(repr=False)                # (52,) relative gain: +a on Left channels, -a on Right
    gain: float = 1.0                                   # expressiveness
    rest_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)
    size: float = 0.35
    blink_rate_per_min: float = 17.0
    syllable_hz: float = 4.5
    speech_gain: float = 1.0


def _u(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    return float(rng.uniform(lohi[0], lohi[1]))


def sample_person(rng: np.random.Generator, config: SynthConfig | None = None) -> Person:
    cfg = config or SynthConfig()
    # Left/right offsets are shared per pair (a person's resting face is mostly symmetric) plus a small side term.
    pair_log = rng.normal(0.0, cfg.baseline_log_sd, N_BLENDSHAPES)[np.minimum(np.arange(N_BLENDSHAPES), _PAIR)]
    side_log = rng.normal(0.0, cfg.baseline_log_sd * 0.3, N_BLENDSHAPES)
    add = rng.normal(0.0, cfg.baseline_add_sd, N_BLENDSHAPES)[np.minimum(np.arange(N_BLENDSHAPES), _PAIR)]
    add *= np.minimum(1.0, BASELINE_VEC / 0.02)  # channels that rest at ~0 in MediaPipe stay near 0
    baseline = np.clip(BASELINE_VEC * np.exp(pair_log + side_log) + add, 0.1 * BASELINE_VEC, 0.6)
    a = rng.normal(0.0, cfg.asym_sd, N_BLENDSHAPES)[np.minimum(np.arange(N_BLENDSHAPES), _PAIR)]
    asym = np.clip(a, -0.3, 0.3) * _SIDE
    gain = float(np.clip(math.exp(rng.normal(0.0, cfg.gain_log_sd)), *cfg.gain_range))
    pose = tuple(float(rng.normal(0.0, s)) for s in cfg.rest_pose_sd)
    return Person(baseline=baseline, asym=asym, gain=gain, rest_pose=pose,  # type: ignore[arg-type]
                  size=_u(rng, cfg.size_range), blink_rate_per_min=_u(rng, cfg.blink_rate_per_min),
                  syllable_hz=_u(rng, cfg.syllable_hz),
                  speech_gain=float(math.exp(rng.normal(0.0, cfg.speech_gain_log_sd))))


# ---------------------------------------------------------------------------------------------------------------
# Signal helpers
# ---------------------------------------------------------------------------------------------------------------


try:  # scipy comes with librosa; the pure-numpy loop below gives the same numbers, slower
    from scipy.signal import lfilter as _lfilter
except ImportError:  # pragma: no cover
    _lfilter = None


def _ou(rng: np.random.Generator, n: int, fps: float, tau_s: float, sd: float, dims: int = 1) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck process sampled at fps: (n, dims) with marginal sd ``sd``."""
    a = math.exp(-1.0 / (fps * max(tau_s, 1e-6)))
    e = rng.normal(0.0, 1.0, (n, dims))
    if n == 0:
        return e
    s = math.sqrt(1.0 - a * a)
    if _lfilter is not None and s > 0.0:  # y[0] = e[0]; y[i] = a y[i-1] + s e[i]
        e[0] /= s
        return _lfilter([s], [1.0, -a], e, axis=0) * sd
    out = np.empty((n, dims))
    out[0] = e[0]
    for i in range(1, n):
        out[i] = a * out[i - 1] + s * e[i]
    return out * sd


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    k = np.ones(width) / width
    pad = width // 2
    xp = np.pad(x, (pad, width - 1 - pad), mode="edge")
    return np.convolve(xp, k, mode="valid")


def _envelope(t: np.ndarray, start: float, onset: float, hold: float, offset: float) -> np.ndarray:
    rise = _smoothstep((t - start) / onset)
    fall = 1.0 - _smoothstep((t - (start + onset + hold)) / offset)
    return np.minimum(rise, fall)


def _episodes(rng: np.random.Generator, cfg: SynthConfig, start: float, end: float) -> list[tuple[float, ...]]:
    """(start, onset, hold, offset) tuples of the expression episodes inside one segment.

    The last episode's offset straddles the segment end (the face relaxes while the next segment begins).
    """
    dur = end - start
    eps: list[tuple[float, ...]] = []
    t = start + min(_u(rng, cfg.onset_delay_s), 0.25 * dur)
    single = dur < cfg.single_episode_below_s or rng.random() < cfg.p_single_episode
    while True:
        onset, offset = _u(rng, cfg.onset_s), _u(rng, cfg.offset_s)
        fill = end - t - onset - offset * _u(rng, (0.2, 0.7))  # hold that ends the episode with the segment
        if single:
            hold = fill
        else:
            hold = _u(rng, cfg.hold_s)
            gap = _u(rng, cfg.gap_s)
            if t + onset + hold + offset + gap + 2.0 > end:  # no room for another full episode: stretch this one
                hold = fill
        if hold < 0.0:  # very short segment: compress onset/offset to fit
            scale = max(end - t, 0.05) / (onset + offset)
            onset, offset, hold = onset * scale, offset * scale, 0.0
        eps.append((t, onset, hold, offset))
        if hold == fill or hold == 0.0 or single:
            break
        t = t + onset + hold + offset + gap
    return eps


def _speaking_mask(speaking: np.ndarray | None, n: int) -> np.ndarray:
    if speaking is None:
        return np.zeros(n)
    s = np.asarray(speaking, np.float64).ravel()
    if s.size == 0:
        return np.zeros(n)
    if s.size != n:  # stretch over the timeline (nearest neighbour)
        idx = np.minimum((np.arange(n) * s.size / max(n, 1)).astype(int), s.size - 1)
        s = s[idx]
    return np.clip(np.nan_to_num(s), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class FaceTrack:
    """Arrays of one synthetic sequence (n frames). ``observations()`` gives what ``generate`` returns."""

    times: np.ndarray          # (n,) capture times, seconds
    blendshapes: np.ndarray    # (n, 52) float32 in [0, 1]; zeros where not present
    pose: np.ndarray           # (n, 3) yaw, pitch, roll degrees; zeros where not present
    size: np.ndarray           # (n,) face height / image height; zeros where not present
    present: np.ndarray        # (n,) bool
    activation: np.ndarray     # (n, len(LABELS)) expression envelope per label (0..~1.4), ground truth
    speaking: np.ndarray       # (n,) speaking weight 0..1 used for the mouth
    person: Person

    def observations(self) -> list[FaceObservation]:
        out = []
        for i in range(len(self.times)):
            if self.present[i]:
                out.append(FaceObservation(
                    t_capture=float(self.times[i]), present=True, blendshapes=self.blendshapes[i].copy(),
                    pose=(float(self.pose[i, 0]), float(self.pose[i, 1]), float(self.pose[i, 2])),
                    size=float(self.size[i])))
            else:
                out.append(FaceObservation(t_capture=float(self.times[i]), present=False))
        return out


def _parse_timeline(timeline) -> list[tuple[str, float, float]]:
    segs = []
    for item in timeline:
        if len(item) != 3:
            raise ValueError(f"timeline item {item!r}: expected (label, intensity, duration_s)")
        label, intensity, dur = item
        d = float(dur)
        if not (d >= 0.0) or math.isinf(d):
            raise ValueError(f"timeline item {item!r}: bad duration")
        segs.append((_check_label(label), parse_intensity(intensity), d))
    return segs


def synthesize(timeline, fps: float = 30.0, rng: np.random.Generator | None = None, t0: float = 0.0,
               speaking: np.ndarray | None = None, *, person: Person | None = None,
               config: SynthConfig | None = None, absent: bool | None = None,
               dropouts: Sequence[tuple[float, float]] | None = None) -> FaceTrack:
    """Synthesise one sequence as arrays. Arguments as for :func:`generate`."""
    if rng is None:
        raise TypeError("rng (a numpy Generator) is required: the output is deterministic given it")
    if not fps > 0:
        raise ValueError("fps must be positive")
    cfg = config or SynthConfig()
    segs = _parse_timeline(timeline)
    total = sum(d for _, _, d in segs)
    n = int(round(total * fps))
    t = np.arange(n) / fps
    if person is None:
        person = sample_person(rng, cfg)
    spk = _speaking_mask(speaking, n)
    spk = _moving_average(spk, max(1, int(round(cfg.speech_ramp_s * fps)))) if n else spk

    # --- expressions ------------------------------------------------------------------------------------------
    expr = np.zeros((n, N_BLENDSHAPES))
    act = np.zeros((n, len(LABELS)))
    sw = max(1, int(round(cfg.smooth_s * fps)))
    pos = 0.0
    for label, inten, dur in segs:
        start, end = pos, pos + dur
        pos = end
        delta = _DELTAS[_LABEL_INDEX[label]]
        if inten <= 0.0 or not np.any(delta) or dur <= 0.0 or n == 0:
            continue
        if rng.random() < cfg.p_unexpressed:
            continue
        for (ts, on, hold, off) in _episodes(rng, cfg, start, end):
            env = _moving_average(_envelope(t, ts, on, hold, off), sw)
            wob = 1.0 + cfg.apex_wobble * _ou(rng, n, fps, 0.7, 1.0)[:, 0]
            amp = inten * person.gain * _u(rng, cfg.apex_spread)
            jit = np.exp(rng.normal(0.0, cfg.channel_jitter, N_BLENDSHAPES))[np.minimum(np.arange(N_BLENDSHAPES),
                                                                                        _PAIR)]
            region = np.ones(N_BLENDSHAPES)
            if rng.random() < cfg.p_partial:
                keep = _UPPER if rng.random() < 0.5 else ~_UPPER
                if np.any(delta[keep] > 0):
                    region = keep.astype(np.float64)
            e = env * wob * amp
            act[:, _LABEL_INDEX[label]] += e
            expr += e[:, None] * (delta * jit * region)[None, :]
    expr *= 1.0 + person.asym[None, :]
    calm = np.clip(act[:, _LABEL_INDEX["calm"]], 0.0, 1.0)

    # --- baseline with slow drift, expressions saturating towards 1 -------------------------------------------
    drift_sd = cfg.baseline_drift_sd * np.minimum(1.0, person.baseline / 0.05)
    base = person.baseline[None, :] + _ou(rng, n, fps, cfg.baseline_drift_tau_s, 1.0, N_BLENDSHAPES) * drift_sd
    base = np.clip(base, 0.0, 1.0)
    up = np.maximum(expr, 0.0)
    clean = base + up * (1.0 - base) + np.minimum(expr, 0.0)

    # --- talking mouth ----------------------------------------------------------------------------------------
    if n and spk.max() > 0.0:
        clean += spk[:, None] * _talking(rng, cfg, person, t, fps)

    # --- blinks -----------------------------------------------------------------------------------------------
    blink = _blinks(rng, cfg, person, t, fps, spk, calm)
    clean = np.clip(clean, 0.0, 1.0)
    for ch in ("eyeBlinkLeft", "eyeBlinkRight"):
        j = _I[ch]
        side = 1.0 + rng.uniform(-0.05, 0.05)
        clean[:, j] = clean[:, j] + (1.0 - clean[:, j]) * np.clip(blink * side, 0.0, 1.0)
    for ch in ("eyeSquintLeft", "eyeSquintRight"):
        clean[:, _I[ch]] += 0.2 * blink * (1.0 - clean[:, _I[ch]])
    for ch in ("eyeWideLeft", "eyeWideRight"):
        clean[:, _I[ch]] *= 1.0 - blink

    # --- measurement noise (more for small faces) -------------------------------------------------------------
    size = person.size * (1.0 + _ou(rng, n, fps, cfg.size_drift_tau_s, cfg.size_drift)[:, 0])
    size = np.clip(size + rng.normal(0.0, 0.003, n), 0.05, 1.0)
    small = np.clip(np.sqrt(0.35 / size), 0.7, 1.6)
    floor = np.minimum(cfg.noise_floor, 0.5 * person.baseline)
    sd = (cfg.noise_rel * clean + floor[None, :]) * small[:, None]
    ar = _ou(rng, n, fps, -1.0 / (fps * math.log(cfg.noise_rho)), 1.0, N_BLENDSHAPES)
    bs = np.clip(clean + ar * sd, 0.0, 1.0)

    # --- head pose --------------------------------------------------------------------------------------------
    motion = 1.0 - (1.0 - CALM_DYNAMICS["head_motion"]) * calm
    pose = np.asarray(person.rest_pose)[None, :] + motion[:, None] * (
        _ou(rng, n, fps, cfg.pose_drift_tau_s, 1.0, 3) * np.asarray(cfg.pose_drift_sd)[None, :])
    pose += spk[:, None] * _ou(rng, n, fps, cfg.pose_speech_tau_s, 1.0, 3) * np.asarray(cfg.pose_speech_sd)[None, :]
    pose += rng.normal(0.0, cfg.pose_noise_sd, (n, 3)) * small[:, None]

    # --- presence ---------------------------------------------------------------------------------------------
    present = np.ones(n, bool)
    if absent is None:
        absent = bool(rng.random() < cfg.p_absent)
    if absent:
        present[:] = False
    elif dropouts is not None:
        for (s0, d0) in dropouts:
            present[(t >= s0) & (t < s0 + d0)] = False
    elif n and rng.random() < cfg.p_dropouts:
        k = rng.poisson(cfg.dropout_rate_per_min * total / 60.0)
        lo, hi = math.log(cfg.dropout_s[0]), math.log(cfg.dropout_s[1])
        for _ in range(int(k)):
            s0 = rng.uniform(0.0, total)
            d0 = math.exp(rng.uniform(lo, hi))
            present[(t >= s0) & (t < s0 + d0)] = False

    bs = bs.astype(np.float32)
    bs[~present] = 0.0
    pose = pose.astype(np.float32)
    pose[~present] = 0.0
    size = size.astype(np.float32)
    size[~present] = 0.0
    return FaceTrack(times=t0 + t, blendshapes=bs, pose=pose, size=size, present=present,
                     activation=act.astype(np.float32), speaking=spk.astype(np.float32), person=person)


def _talking(rng: np.random.Generator, cfg: SynthConfig, person: Person, t: np.ndarray,
             fps: float) -> np.ndarray:
    """Mouth movement of continuous talking at the person's syllable rate (multiplied by the mask later)."""
    n = len(t)
    out = np.zeros((n, N_BLENDSHAPES))
    if n == 0:
        return out
    rate = person.syllable_hz
    total = t[-1] + 1.0 / fps
    s = -rng.uniform(0.0, 1.0 / rate)
    # viseme classes: open vowel, rounded vowel, spread vowel; bilabial closures between some syllables
    shapes = {
        "open": {"jawOpen": 0.35, "mouthLowerDownLeft": 0.20, "mouthLowerDownRight": 0.20,
                 "mouthUpperUpLeft": 0.05, "mouthUpperUpRight": 0.05},
        "round": {"jawOpen": 0.15, "mouthFunnel": 0.30, "mouthPucker": 0.35},
        "spread": {"jawOpen": 0.15, "mouthStretchLeft": 0.15, "mouthStretchRight": 0.15,
                   "mouthDimpleLeft": 0.08, "mouthDimpleRight": 0.08, "mouthLowerDownLeft": 0.08,
                   "mouthLowerDownRight": 0.08},
    }
    vecs = {k: _vec(v) for k, v in shapes.items()}
    close = _vec({"mouthClose": 0.15, "mouthPressLeft": 0.10, "mouthPressRight": 0.10, "mouthRollLower": 0.10})
    accent = _vec({"browInnerUp": 0.06, "browOuterUpLeft": 0.05, "browOuterUpRight": 0.05})
    kinds = ("open", "round", "spread")
    while s < total:
        period = rng.gamma(4.0, 1.0 / (4.0 * rate))
        width = period * rng.uniform(0.6, 0.9)
        a = rng.uniform(0.25, 1.0) * person.speech_gain
        kind = kinds[int(rng.choice(3, p=(0.5, 0.2, 0.3)))]
        i0, i1 = max(0, int(math.floor(s * fps))), min(n, int(math.ceil((s + width) * fps)) + 1)
        if i1 > i0:
            x = (t[i0:i1] - s) / width
            bump = np.where((x >= 0) & (x <= 1), np.sin(np.pi * np.clip(x, 0, 1)) ** 2, 0.0)
            out[i0:i1] += a * bump[:, None] * vecs[kind][None, :]
            if rng.random() < 0.15:
                out[i0:i1] += bump[:, None] * accent[None, :]
            if rng.random() < 0.3:  # lips meet before the next syllable
                c = s + width
                j0, j1 = max(0, int(math.floor(c * fps))), min(n, int(math.ceil((c + 0.1) * fps)) + 1)
                if j1 > j0:
                    y = (t[j0:j1] - c) / 0.1
                    cb = np.where((y >= 0) & (y <= 1), np.sin(np.pi * np.clip(y, 0, 1)) ** 2, 0.0)
                    out[j0:j1] += cb[:, None] * close[None, :]
        s += period
    return out


def _blinks(rng: np.random.Generator, cfg: SynthConfig, person: Person, t: np.ndarray, fps: float,
            spk: np.ndarray, calm: np.ndarray) -> np.ndarray:
    """Blink closure 0..1 per frame: Poisson onsets (thinned by calm, raised by talking), fast close, slower open."""
    n = len(t)
    out = np.zeros(n)
    if n == 0:
        return out
    total = t[-1] + 1.0 / fps
    rmax = person.blink_rate_per_min / 60.0 * max(1.0, cfg.speaking_blink_factor)
    s = rng.exponential(1.0 / rmax) - 0.2
    last = -np.inf
    while s < total:
        i = min(n - 1, max(0, int(s * fps)))
        r = person.blink_rate_per_min / 60.0 * (1.0 + (cfg.speaking_blink_factor - 1.0) * spk[i])
        r *= 1.0 - (1.0 - CALM_DYNAMICS["blink_rate"]) * calm[i]
        accept = rng.random() < r / rmax
        dur = _u(rng, cfg.blink_s) * (1.0 + (CALM_DYNAMICS["blink_duration"] - 1.0) * calm[i])
        amp = _u(rng, cfg.blink_amp)
        if accept and s - last >= cfg.min_blink_gap_s:
            last = s
            tc = 0.4 * dur
            i0, i1 = max(0, int(math.floor(s * fps))), min(n, int(math.ceil((s + dur) * fps)) + 1)
            x = t[i0:i1] - s
            close = _smoothstep(x / tc)
            opening = 1.0 - _smoothstep((x - tc) / (dur - tc))
            shape = np.where(x < tc, close, opening) * ((x >= 0) & (x <= dur))
            out[i0:i1] = np.maximum(out[i0:i1], amp * shape)
        s += rng.exponential(1.0 / rmax)
    return out


def generate(timeline, fps: float = 30.0, rng: np.random.Generator | None = None, t0: float = 0.0,
             speaking: np.ndarray | None = None, *, person: Person | None = None,
             config: SynthConfig | None = None, absent: bool | None = None,
             dropouts: Sequence[tuple[float, float]] | None = None) -> list[FaceObservation]:
    """Per-frame synthetic ``FaceObservation``s for a label timeline.

    timeline: ``[(label, intensity, duration_s), ...]``; intensity a float in [0, 1], or a RAVDESS code
        (int 1 -> 0.6, int 2 -> 1.0, or "normal"/"strong").
    fps: frame rate; frame i is captured at ``t0 + i / fps``; ``round(total_duration * fps)`` frames.
    rng: required; the output is a deterministic function of the arguments and the generator's state.
    speaking: per-frame talking mask (bool or 0..1), length ``n_frames``; other lengths are stretched over the
        timeline. Where true the mouth moves at the person's syllable rate (3-6 Hz) and blinks come more often.
    person: a fixed :class:`Person` (default: sampled from ``rng``).
    config: :class:`SynthConfig` (dynamics ranges, dropout probabilities).
    absent: True -> no face in the whole sequence; None -> drawn with ``config.p_absent``.
    dropouts: explicit ``[(start_s, duration_s), ...]`` (relative to t0) of face-lost stretches, replacing the
        random ones.
    """
    return synthesize(timeline, fps, rng, t0, speaking, person=person, config=config, absent=absent,
                      dropouts=dropouts).observations()


# ---------------------------------------------------------------------------------------------------------------
# FaceWindow features at tick times
# ---------------------------------------------------------------------------------------------------------------


class FaceTicks(NamedTuple):
    features: np.ndarray   # (n_ticks, FACE_DIM) float32, FaceWindow.vector() at each tick
    present: np.ndarray    # (n_ticks,) bool: the newest observation at or before the tick has a face
    age_s: np.ndarray      # (n_ticks,) float32: seconds since the newest present observation, capped at max_age_s


def window_features(observations: Sequence[FaceObservation], tick_times: np.ndarray, window_s: float = 0.5,
                    max_age_s: float = 5.0) -> FaceTicks:
    """Push observations (in time order) into a ``FaceWindow`` and sample it at each tick time.

    An observation is pushed before the tick when ``t_capture <= tick``. Works for synthetic, video-file and
    recorded observations alike.
    """
    ticks = np.asarray(tick_times, np.float64).ravel()
    if ticks.size > 1 and np.any(np.diff(ticks) < 0):
        raise ValueError("tick_times must be non-decreasing")
    fw = FaceWindow(window_s)
    feats = np.zeros((ticks.size, FACE_DIM), np.float32)
    present = np.zeros(ticks.size, bool)
    age = np.full(ticks.size, max_age_s, np.float32)
    i, last_present = 0, None
    for k, tt in enumerate(ticks):
        while i < len(observations) and observations[i].t_capture <= tt + 1e-9:
            fw.push(observations[i])
            if observations[i].present:
                last_present = observations[i].t_capture
            i += 1
        feats[k] = fw.vector()
        last = fw.last
        present[k] = last is not None and last.present
        if last_present is not None:
            age[k] = min(max_age_s, max(0.0, tt - last_present))
    return FaceTicks(feats, present, age)


def face_features_for_timeline(timeline, tick_times: np.ndarray, *, rng: np.random.Generator, fps: float = 30.0,
                               t0: float = 0.0, speaking: np.ndarray | None = None, window_s: float = 0.5,
                               max_age_s: float = 5.0, person: Person | None = None,
                               config: SynthConfig | None = None, absent: bool | None = None,
                               dropouts: Sequence[tuple[float, float]] | None = None) -> FaceTicks:
    """Synthesise a sequence (see :func:`generate`) and return its ``FaceWindow`` features at ``tick_times``.

    Returns ``FaceTicks(features (n_ticks, FACE_DIM), present (n_ticks,), age_s (n_ticks,))``; tick times are on
    the same clock as the observations (``t0 + i / fps``).
    """
    obs = generate(timeline, fps, rng, t0, speaking, person=person, config=config, absent=absent,
                   dropouts=dropouts)
    return window_features(obs, tick_times, window_s=window_s, max_age_s=max_age_s)


# ---------------------------------------------------------------------------------------------------------------
# Calibration with the real landmarker
# ---------------------------------------------------------------------------------------------------------------

DEFAULT_FACE_MODEL = "/work/shared/models/face_landmarker.task"


def _model_path(model_path: str | None) -> str:
    import os
    return model_path or os.environ.get("BRIDGE_FACE_MODEL") or DEFAULT_FACE_MODEL


def mediapipe_blendshapes(image_rgb: np.ndarray, model_path: str | None = None) -> np.ndarray | None:
    """Run the real MediaPipe FaceLandmarker (IMAGE mode) on an RGB uint8 image -> (52,) scores, or None."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=_model_path(model_path)),
                                        running_mode=vision.RunningMode.IMAGE, num_faces=1,
                                        output_face_blendshapes=True)
    with vision.FaceLandmarker.create_from_options(opts) as lm:
        img = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb[..., :3]))
        res = lm.detect(img)
    if not res.face_blendshapes:
        return None
    out = np.zeros(N_BLENDSHAPES, np.float32)
    for c in res.face_blendshapes[0]:
        if c.category_name in BS_INDEX:
            out[BS_INDEX[c.category_name]] = c.score
    return out


def astronaut_blendshapes(model_path: str | None = None) -> np.ndarray | None:
    """The calibration reference: MediaPipe's scores for ``skimage.data.astronaut()`` (a broad smile)."""
    import skimage.data
    return mediapipe_blendshapes(skimage.data.astronaut(), model_path)


# ---------------------------------------------------------------------------------------------------------------
# Plot for the docs
# ---------------------------------------------------------------------------------------------------------------


def plot_example(path: str = "docs/img/face_synth.png", seed: int = 3) -> str:
    """Write the documentation figure: neutral -> happy -> sad -> surprised, talking in the middle, one dropout."""
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = 30.0
    timeline = [("neutral", 1.0, 3.0), ("happy", 2, 5.0), ("sad", 2, 5.0), ("surprised", 2, 4.0)]
    total = sum(d for _, _, d in timeline)
    n = int(round(total * fps))
    tt = np.arange(n) / fps
    speaking = (tt >= 5.0) & (tt < 11.0)
    rng = np.random.default_rng(seed)
    track = synthesize(timeline, fps, rng, 0.0, speaking, config=SynthConfig(p_dropouts=0.0),
                       dropouts=[(9.2, 1.1)])
    obs = track.observations()
    ticks = np.arange(0.0, total, 1.0 / fps)
    fw = window_features(obs, ticks, window_s=0.5)

    def avg(*names: str) -> np.ndarray:
        v = np.mean([track.blendshapes[:, BS_INDEX[x]] for x in names], axis=0)
        return np.where(track.present, v, np.nan)

    fig, axes = plt.subplots(3, 1, figsize=(9.0, 6.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.2, 1.1]})
    ax = axes[0]
    colors = {"neutral": "#eeeeee", "happy": "#fff2b3", "sad": "#cfe0ff", "surprised": "#ffd9ec"}
    s = 0.0
    for lab, _, d in timeline:
        for a in axes:
            a.axvspan(s, s + d, color=colors.get(lab, "#f4f4f4"), lw=0, zorder=0)
        ax.text(s + d / 2, 1.01, lab, fontsize=9, va="bottom", ha="center", transform=ax.get_xaxis_transform())
        s += d
    traces = [("mouthSmile L/R", avg("mouthSmileLeft", "mouthSmileRight"), "#d08000"),
              ("eyeSquint L/R", avg("eyeSquintLeft", "eyeSquintRight"), "#a0a000"),
              ("browInnerUp", avg("browInnerUp"), "#2060c0"),
              ("mouthFrown L/R", avg("mouthFrownLeft", "mouthFrownRight"), "#6040a0"),
              ("browOuterUp L/R", avg("browOuterUpLeft", "browOuterUpRight"), "#c02060"),
              ("jawOpen", avg("jawOpen"), "#208040"),
              ("eyeBlinkLeft", avg("eyeBlinkLeft"), "#999999")]
    for name, y, c in traces:
        ax.plot(tt, y, lw=1.0 if name != "eyeBlinkLeft" else 0.7, color=c, label=name)
    fw_smile = fw.features[:, [BS_INDEX["mouthSmileLeft"], BS_INDEX["mouthSmileRight"]]].mean(1)
    ax.plot(ticks, np.where(fw.present, fw_smile, np.nan), ls="--", lw=1.2, color="#804000",
            label="FaceWindow 0.5 s mean of mouthSmile L/R (at ticks)")
    ax.set_ylim(0, 1.38)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("blendshape score")
    ax.legend(loc="upper center", fontsize=7, ncol=4, framealpha=0.9)
    fig.suptitle("Synthetic MediaPipe face evidence (one sampled person, seed %d)" % seed, fontsize=10)

    ax = axes[1]
    for j, (name, c) in enumerate((("yaw", "#c04040"), ("pitch", "#4040c0"), ("roll", "#40a040"))):
        ax.plot(tt, np.where(track.present, track.pose[:, j], np.nan), lw=0.9, color=c, label=name)
    ax.set_ylabel("head pose (deg)")
    ax.legend(loc="upper left", fontsize=7, ncol=3)

    ax = axes[2]
    ax.fill_between(tt, 0, track.speaking, step="mid", color="#b0d8b0", label="speaking mask")
    ax.plot(tt, track.present.astype(float), drawstyle="steps-mid", color="k", lw=1.0, label="present (frame)")
    ax.plot(ticks, fw.features[:, PRESENT_FRAC], color="#d04000", lw=1.0, ls="--", label="FaceWindow present_frac")
    ax.set_ylim(-0.05, 1.15)
    ax.set_ylabel("presence")
    ax.set_xlabel("time (s)")
    ax.legend(loc="lower left", fontsize=7, ncol=3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80, pil_kwargs={"optimize": True})
    plt.close(fig)
    return path


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bridge.training.face_synth",
                                description="Synthetic face evidence: documentation plot and calibration.")
    p.add_argument("--plot", metavar="PNG", help="write the documentation figure (e.g. docs/img/face_synth.png)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--calibrate", action="store_true", help="print MediaPipe's scores on skimage's astronaut")
    a = p.parse_args(argv)
    if a.plot:
        print(plot_example(a.plot, a.seed))
    if a.calibrate:
        v = astronaut_blendshapes()
        if v is None:
            print("no face found")
            return 1
        for j in np.argsort(-v):
            print(f"{BLENDSHAPE_NAMES[j]:20s} {v[j]:.4f}")
        print("nearest prototype:", nearest_prototype(v))
    if not (a.plot or a.calibrate):
        p.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
