"""Per-visitor neutral calibration of the face evidence.

People's resting faces differ: some look sad, stern or amused when they feel nothing in particular. As face-analysis
tools do (a "neutral baseline" per participant), the bridge estimates each visitor's resting face and expresses what
follows relative to it: the blendshapes become ``rest-corrected + the population's neutral face`` and the
expression probabilities are shifted in log space by ``log p_rest - log p_neutral`` (so the resting face itself
maps onto the average neutral face the affect model knows from training).

The resting face comes from

* ``auto`` (default): the visitor's first ``seconds`` of *low expression* -- face steady (no fast change), mouth
  not open (not talking), no smile or surprise, no expression above ``STRONG`` -- gathered while they are in
  view; or
* the ``calibrate`` command (OSC ``/bridge/cmd/calibrate [seconds]``, WebSocket ``{"cmd":"calibrate"}``): the
  next ``seconds`` of face, whatever it shows (the visitor is asked to relax).

It is forgotten when the visitor leaves (no face for ``reset_after_s``) and on ``reset``. Until a resting face is
known the evidence passes unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from bridge.features.face import BS_INDEX, EXPRESSION_NAMES, FaceObservation

_HAPPY, _SURPRISED = EXPRESSION_NAMES.index("happy"), EXPRESSION_NAMES.index("surprised")
_JAW = BS_INDEX["jawOpen"]
MAX_SHIFT = 3.0  # at most this much log-probability correction per label
STEADY = 0.03  # mean absolute blendshape change per frame below this: a steady face
STRONG = 0.75  # a non-neutral expression probability above this is an expression, never a resting face
_REF_CACHE: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}


def neutral_reference(path: Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The population's neutral face (median blendshapes, mean log expression probabilities of the FER+ neutral
    training faces), shipped with the FER+ head; None if absent."""
    p = Path(path) if path else Path(__file__).with_name("weights") / "face_head.npz"
    key = str(p)
    if key not in _REF_CACHE:
        ref = None
        if p.is_file():
            z = np.load(p, allow_pickle=False)
            if "neutral_bs" in z.files and "neutral_logp" in z.files:
                ref = (z["neutral_bs"].astype(np.float32), z["neutral_logp"].astype(np.float32))
        _REF_CACHE[key] = ref
    return _REF_CACHE[key]


class NeutralCalibration:
    def __init__(self, mode: str = "auto", seconds: float = 2.0, reset_after_s: float = 8.0,
                 reference: tuple[np.ndarray, np.ndarray] | None = None):
        if mode not in ("auto", "command", "off"):
            raise ValueError(f"calibration mode {mode!r}: expected auto, command or off")
        self.mode, self.seconds, self.reset_after_s = mode, float(seconds), float(reset_after_s)
        self.reference = reference
        self.reset()

    def reset(self) -> None:
        self.rest_bs: np.ndarray | None = None
        self.rest_logp: np.ndarray | None = None
        self._bs: list[np.ndarray] = []
        self._logp: list[np.ndarray] = []
        self._t: list[float] = []
        self._forced_until: float | None = None
        self._forced_pending: float | None = None
        self._prev: np.ndarray | None = None
        self._t_last_face: float | None = None

    @property
    def calibrated(self) -> bool:
        return self.rest_bs is not None

    def status(self) -> str:
        if self.mode == "off" or self.reference is None:
            return "off"
        if self._forced_pending is not None or self._forced_until is not None:
            return "calibrating"
        return "calibrated" if self.calibrated else ("collecting" if self.mode == "auto" else "uncalibrated")

    def start(self, seconds: float | None = None) -> None:
        """The ``calibrate`` command: the next ``seconds`` of face are the resting face."""
        self._forced_pending = float(seconds or self.seconds)
        self._bs, self._logp, self._t = [], [], []

    def apply(self, obs: FaceObservation) -> FaceObservation:
        """Update the estimate with this frame and return the calibrated observation."""
        if self.mode == "off" or self.reference is None:
            return obs
        t = obs.t_capture
        if self._t_last_face is not None and t - self._t_last_face > self.reset_after_s and (
                self.calibrated or self._bs):
            forced = self._forced_pending
            self.reset()  # the visitor left: the next face is a new person
            self._forced_pending = forced
        if not obs.present or obs.expression is None:
            return obs
        self._t_last_face = t
        bs = np.asarray(obs.blendshapes, np.float32)
        logp = np.log(np.clip(np.asarray(obs.expression, np.float32), 1e-4, 1.0))
        self._collect(t, bs, logp, obs.expression)
        self._prev = bs
        if not self.calibrated:
            return obs
        ref_bs, ref_logp = self.reference
        bs_c = np.clip(bs - self.rest_bs + ref_bs, 0.0, 1.0).astype(np.float32)
        shift = np.clip(self.rest_logp - ref_logp, -MAX_SHIFT, MAX_SHIFT)
        z = logp - shift
        e = np.exp(z - z.max())
        return replace(obs, blendshapes=bs_c, expression=(e / e.sum()).astype(np.float32))

    def _collect(self, t: float, bs: np.ndarray, logp: np.ndarray, probs: np.ndarray) -> None:
        if self._forced_pending is not None:
            self._forced_until = t + self._forced_pending
            self._forced_pending = None
            self._bs, self._logp, self._t = [], [], []
        if self._forced_until is not None:
            self._bs.append(bs)
            self._logp.append(logp)
            self._t.append(t)
            if t >= self._forced_until:
                self._finish()
                self._forced_until = None
            return
        if self.mode != "auto" or self.calibrated:
            return
        steady = self._prev is not None and float(np.mean(np.abs(bs - self._prev))) < STEADY
        # low expression: no smile or surprise, mouth not open, and no expression shown clearly (a resting face
        # may look a little sad or stern; a strong frown is an expression, not a resting face)
        low = (probs[_HAPPY] < 0.5 and probs[_SURPRISED] < 0.5 and bs[_JAW] < 0.25
               and float(np.max(probs[1:])) < STRONG)
        if steady and low:
            self._bs.append(bs)
            self._logp.append(logp)
            self._t.append(t)
            if len(self._t) >= 3 and self._t[-1] - self._t[0] >= self.seconds:
                self._finish()

    def _finish(self) -> None:
        if self._bs:
            self.rest_bs = np.median(np.stack(self._bs), 0).astype(np.float32)
            self.rest_logp = np.mean(np.stack(self._logp), 0).astype(np.float32)
        self._bs, self._logp, self._t = [], [], []


def describe(cal: NeutralCalibration | None) -> dict:
    if cal is None:
        return {"status": "off"}
    out: dict = {"status": cal.status(), "mode": cal.mode}
    if cal.calibrated and cal.rest_logp is not None:
        p = np.exp(cal.rest_logp)
        p = p / p.sum()
        out["resting_face"] = {n: round(float(x), 3) for n, x in zip(EXPRESSION_NAMES, p)}
    return out
