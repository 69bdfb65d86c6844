"""Site adaptation: the bridge learns its microphone, its room and its visitors' language from all the speech it
hears, across visitors, and hands the model audio features as they would have looked in training.

Why. The voice model was trained on one corpus (RAVDESS: one studio, one language). A cheap USB microphone, a
room or another language shifts the audio features as a whole -- every visitor's, whatever their emotion (on the
Spanish set, neutral speech has the delta-MFCC spread of angry English speech; through a band-limited microphone
with a tilted response, RAVDESS validation speakers fall from 0.37 to 0.20 UAR). The per-visitor speaker
adaptation in the model cannot undo that: it starts fresh with every visitor, which is exactly when it is needed.
An installation, though, hears hundreds of visitors through the same microphone in the same room.

What. Running statistics (mean and variance per feature) of the audio tick vectors of every voiced tick, over all
visitors, with a slow exponential memory (``audio.site_memory_s`` seconds of speech) and shrunk towards the
training population by ``audio.site_prior_s`` pseudo-seconds (so the first minute of speech changes little).
Each audio vector is then mapped feature by feature onto the training population's voiced statistics (stored in
the weights as ``site_reference``): ``ref_mean + (x - site_mean) * clip(ref_std / site_std, 1/k, k)``. In the
training room the map is the identity. The voice-activity flag (the last column) is never changed.

It is installation state, not visitor state: a visitor leaving, or the ``reset`` command, does not forget it.
Pure compute, no clock of its own; ``reset()`` forgets it (a new site). ``save``/``load`` keep it across restarts
(``audio.site_file``; the pipeline does the I/O): a file made for other weights (another reference) is ignored.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAX_SCALE = 1.5  # the map never stretches or squeezes a feature by more than this (noise can shrink a spread)


class SiteAdaptation:
    def __init__(self, ref_mean: np.ndarray, ref_std: np.ndarray, tick_hz: float, prior_s: float = 60.0,
                 memory_s: float = 1800.0, max_scale: float = MAX_SCALE):
        self.ref_mean = np.asarray(ref_mean, np.float64)
        self.ref_std = np.maximum(np.asarray(ref_std, np.float64), 1e-6)
        self.n0 = max(1.0, prior_s * tick_hz)  # prior, in ticks
        self.decay = 1.0 - 1.0 / max(1.0, memory_s * tick_hz)
        self.tick_hz = tick_hz
        self.max_scale = max_scale
        self.reset()

    @classmethod
    def from_meta(cls, meta: dict, tick_hz: float, prior_s: float, memory_s: float) -> SiteAdaptation | None:
        """From a weights file's metadata; None for weights trained before site adaptation existed."""
        ref = meta.get("site_reference")
        if not ref:
            return None
        return cls(np.array(ref["mean"]), np.array(ref["std"]), tick_hz, prior_s, memory_s)

    def reset(self) -> None:
        d = len(self.ref_mean)
        self.n = 0.0  # voiced ticks (decayed)
        self.s1 = np.zeros(d)
        self.s2 = np.zeros(d)

    @property
    def speech_s(self) -> float:
        """Seconds of speech the statistics hold (after forgetting)."""
        return self.n / self.tick_hz

    def update(self, x: np.ndarray) -> None:
        """Add one voiced tick's audio vector."""
        x = np.asarray(x, np.float64)
        self.n = self.n * self.decay + 1.0
        self.s1 = self.s1 * self.decay + x
        self.s2 = self.s2 * self.decay + x * x

    def set_stats(self, n: float, s1: np.ndarray, s2: np.ndarray) -> None:
        """Statistics heard elsewhere (evaluation: the other visitors of a corpus)."""
        self.n, self.s1, self.s2 = float(n), np.asarray(s1, np.float64), np.asarray(s2, np.float64)

    def copy(self) -> SiteAdaptation:
        """An independent copy (the statistics arrays copied)."""
        c = copy.copy(self)
        c.s1, c.s2 = self.s1.copy(), self.s2.copy()
        return c

    def site_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """The site's mean and standard deviation, shrunk towards the training population."""
        n, n0 = self.n, self.n0
        mean = (self.s1 + n0 * self.ref_mean) / (n + n0)
        m2 = (self.s2 + n0 * (self.ref_std ** 2 + self.ref_mean ** 2)) / (n + n0)
        return mean, np.sqrt(np.maximum(m2 - mean * mean, 1e-12))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Map an audio vector (or a (T, D) block) onto the training population; the last column is kept."""
        mean, std = self.site_stats()
        k = np.clip(self.ref_std / std, 1.0 / self.max_scale, self.max_scale)
        out = (self.ref_mean + (np.asarray(x, np.float64) - mean) * k).astype(np.float32)
        out[..., -1] = np.asarray(x)[..., -1]
        return out

    def save(self, path: str | Path) -> None:
        """Write the statistics (atomically: a crash mid-write never leaves a broken file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, n=self.n, s1=self.s1, s2=self.s2, ref_mean=self.ref_mean, ref_std=self.ref_std)
        os.replace(tmp, path)

    def load(self, path: str | Path) -> bool:
        """Take the statistics saved by ``save``; False (and a log line saying why) if there is none to take."""
        path = Path(path)
        if not path.is_file():
            return False
        try:
            with np.load(path) as d:
                n, s1, s2, rm, rs = float(d["n"]), d["s1"], d["s2"], d["ref_mean"], d["ref_std"]
        except Exception as e:  # noqa: BLE001  (a damaged file: start learning the site again)
            log.warning("site adaptation: cannot read %s (%s); learning this site again", path, e)
            return False
        if rm.shape != self.ref_mean.shape or not (np.allclose(rm, self.ref_mean) and np.allclose(rs, self.ref_std)):
            log.warning("site adaptation: %s was learned for other model weights; learning this site again", path)
            return False
        self.set_stats(n, s1, s2)
        log.info("site adaptation: %.0f s of this site's speech loaded from %s", self.speech_s, path)
        return True

    def health(self) -> dict:
        return {"speech_s": round(self.speech_s, 1), "weight": round(self.n / (self.n + self.n0), 3)}
