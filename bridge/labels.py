"""The label set and each label's place on the valence/arousal circumplex.

Coordinates are from Russell's circumplex model of affect as placed by Russell (1980), "A circumplex model of
affect", J. Personality and Social Psychology 39(6):1161-1178 (Fig. 2 angles), rescaled to [-1, 1]. Valence is
pleasant (+) vs unpleasant (-), arousal is activated (+) vs deactivated (-). RAVDESS "strong" intensity scales
the point outward (1.0) and "normal" intensity inward (0.7); neutral sits at the origin.
"""

from __future__ import annotations

LABELS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

# (valence, arousal) at full intensity
VA: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "calm": (0.55, -0.65),
    "happy": (0.85, 0.45),
    "sad": (-0.75, -0.45),
    "angry": (-0.60, 0.80),
    "fearful": (-0.55, 0.75),
    "disgust": (-0.75, 0.30),
    "surprised": (0.30, 0.85),
}

INTENSITY_SCALE = {1: 0.7, 2: 1.0}


def va_target(label: str, intensity: int = 2) -> tuple[float, float]:
    v, a = VA[label]
    s = INTENSITY_SCALE.get(intensity, 1.0)
    return v * s, a * s
