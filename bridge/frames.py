"""Typed, timestamped records that flow through the pipeline. Times are on :mod:`bridge.clock` (process clock)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AudioBlock:
    """Mono float32 samples at ``sr``; ``t_capture`` is the capture time of the first sample."""

    samples: np.ndarray
    sr: int
    t_capture: float

    @property
    def t_end(self) -> float:
        return self.t_capture + len(self.samples) / self.sr


@dataclass(frozen=True)
class VideoFrame:
    """A BGR uint8 image (as OpenCV gives it) and the time it was grabbed."""

    image: np.ndarray
    t_capture: float
    index: int


@dataclass
class AffectState:
    seq: int
    t_capture: float  # process clock, newest input this state reflects
    t_capture_wall: float  # same, seconds since the epoch
    valence: float
    arousal: float
    probs: dict[str, float]
    label: str  # after hysteresis
    confidence: float
    face_present: bool
    voice_active: bool
    face_age_ms: float | None = None
    voice_age_ms: float | None = None
    loudness_db: float = -100.0
    pitch_hz: float = 0.0
    head_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)
    face_size: float = 0.0
    t_emit: float | None = None  # wall clock, set by the outputs
    raw_label: str = ""  # argmax before hysteresis
    features: np.ndarray | None = field(default=None, repr=False)
    # several visitors (bridge.people): every present person's state, the crowd, person events of this tick
    people: list | None = field(default=None, repr=False)
    crowd: object | None = field(default=None, repr=False)
    person_events: list | None = field(default=None, repr=False)
    sensors: dict | None = None  # body sensors (bridge.sensors), set by the tick
