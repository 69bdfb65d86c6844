"""Per-visitor neutral calibration, on real faces through the real face path (MediaPipe -> crop -> network -> head).

The visitor here is a real FER+ validation face that human taggers read as sad (9 of 10 votes or more): a face
whose resting expression is not neutral. Held in front of the camera (slight drift, as a person standing still),
the uncalibrated face path reports sad; once the resting face is known it reports neutral for that same face,
while a different expression (a real smiling face) still comes through as happy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bridge.config import Config
from bridge.engine import FeatureEngine
from bridge.features.calibration import NeutralCalibration, neutral_reference
from bridge.features.face import EXPR_MEAN, EXPRESSION_NAMES, FaceObservation, FaceTracker

FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus" / "ferplus_valid.npz"
pytestmark = pytest.mark.skipif(not FERPLUS.is_file(), reason="../shared/data/ferplus absent")
SAD, HAPPY = 23, 4  # FER+ valid indices: fer0028661.png (sad, >= 0.8 agreement), fer0028642.png (happy)


def _frames(img48: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """A still face in a 480x480 frame, drifting by a few pixels (a person standing still)."""
    import cv2

    rng = np.random.default_rng(seed)
    face = cv2.resize(img48, (200, 200), interpolation=cv2.INTER_CUBIC)
    out = []
    for i in range(n):
        dx, dy = (rng.normal(0, 1.5, 2)).astype(int)
        f = np.full((480, 480), int(face.mean()), np.uint8)
        f[140 + dy:340 + dy, 140 + dx:340 + dx] = face
        out.append(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    return out


@pytest.fixture(scope="module")
def observations():
    import torch

    torch.set_num_threads(1)  # as the live bridge runs it (model.threads)
    d = np.load(FERPLUS)
    images = d["images"]
    tr = FaceTracker(os.environ["BRIDGE_FACE_MODEL"])
    try:
        t, out = 0.0, {}
        for name, idx, n in (("sad", SAD, 75), ("happy", HAPPY, 30)):
            seq = []
            for f in _frames(images[idx], n, idx):
                seq.append(tr.process(f, t))
                t += 1 / 30
            out[name] = seq
    finally:
        tr.close()
    assert all(o.present and o.expression is not None for s in out.values() for o in s)
    return out


def _top(vec: np.ndarray) -> str:
    return EXPRESSION_NAMES[int(np.argmax(vec[EXPR_MEAN:EXPR_MEAN + len(EXPRESSION_NAMES)]))]


def _replay(engine: FeatureEngine, obs: list[FaceObservation], t0: float) -> list[str]:
    tops = []
    for i, o in enumerate(obs):
        t = t0 + i / 30
        engine.push_face(FaceObservation(t, o.present, o.blendshapes, o.pose, o.size, None, o.expression))
        tops.append(_top(engine.vector(t)[0][engine.audio_dim:]))
    return tops


def test_resting_face_that_looks_sad_becomes_neutral(observations):
    assert neutral_reference() is not None
    cfg = Config()
    off = FeatureEngine(cfg.audio, cfg.video.model_copy(update={"calibration": "off"}), use_audio=False)
    assert _replay(off, observations["sad"], 0.0)[-1] == "sad"  # uncalibrated: the resting face reads sad
    auto = FeatureEngine(cfg.audio, cfg.video, use_audio=False)  # default: auto
    tops = _replay(auto, observations["sad"], 0.0)
    assert auto.calibration.calibrated
    assert tops[20] == "sad" and tops[-1] == "neutral"  # sad until 2 s of resting face are in, then neutral
    # a different expression still comes through relative to the resting face
    assert _replay(auto, observations["happy"], 2.5)[-1] == "happy"


def test_calibration_is_forgotten_when_the_visitor_leaves(observations):
    cfg = Config()
    eng = FeatureEngine(cfg.audio, cfg.video, use_audio=False)
    _replay(eng, observations["sad"], 0.0)
    assert eng.calibration.calibrated
    eng.push_face(FaceObservation(3.0, False))
    eng.push_face(FaceObservation(3.0 + cfg.video.calibration_forget_s + 0.1, False))  # nobody for a while
    assert not eng.calibration.calibrated
    # a new visitor: their first frames are not corrected by the previous visitor's resting face
    assert _replay(eng, observations["sad"][:10], 20.0)[-1] == "sad"


def test_calibrate_command_uses_the_next_seconds(observations):
    cfg = Config()
    eng = FeatureEngine(cfg.audio, cfg.video.model_copy(update={"calibration": "command"}), use_audio=False)
    _replay(eng, observations["sad"][:40], 0.0)
    assert not eng.calibration.calibrated and eng.calibration.status() == "uncalibrated"
    eng.calibrate(1.0)
    assert eng.calibration.status() == "calibrating"
    assert _replay(eng, observations["sad"], 2.0)[-1] == "neutral"
    assert eng.calibration.status() == "calibrated"


def test_auto_calibration_skips_smiles_talking_and_strong_expressions():
    """A visitor who arrives smiling, talking or frowning hard is not taken as looking like that at rest."""
    ref = (np.full(52, 0.05, np.float32), np.log(np.array([0.8, 0.05, 0.05, 0.03, 0.03, 0.02, 0.02], np.float32)))
    cal = NeutralCalibration("auto", 1.0, 8.0, ref)
    smile = np.array([0.1, 0.8, 0.02, 0.02, 0.02, 0.02, 0.02], np.float32)
    for i in range(90):
        cal.apply(FaceObservation(i / 30, True, np.full(52, 0.1, np.float32), expression=smile))
    assert not cal.calibrated
    bs = np.full(52, 0.1, np.float32)
    bs[25] = 0.5  # jawOpen: talking
    for i in range(90):
        cal.apply(FaceObservation(3 + i / 30, True, bs, expression=np.roll(smile, 1)))
    assert not cal.calibrated
    angry = np.array([0.05, 0.01, 0.02, 0.88, 0.02, 0.01, 0.01], np.float32)
    for i in range(90):
        cal.apply(FaceObservation(6 + i / 30, True, np.full(52, 0.1, np.float32), expression=angry))
    assert not cal.calibrated
    mild = np.array([0.35, 0.01, 0.55, 0.05, 0.02, 0.01, 0.01], np.float32)  # looks a little sad at rest
    for i in range(90):
        cal.apply(FaceObservation(9 + i / 30, True, np.full(52, 0.1, np.float32), expression=mild))
    assert cal.calibrated


def test_calibrate_command_over_osc_and_websocket_form(tmp_path):
    """The OSC form maps onto the same command; the bridge acknowledges it, refuses bad arguments, and reports the
    calibration in its health message."""
    import torch

    from bridge.config import load_config
    from bridge.features.face import FACE_DIM
    from bridge.labels import LABELS
    from bridge.model.affect import AffectNet, StreamingAffectModel, save_weights
    from bridge.model.tick import feature_schema
    from bridge.output.control import osc_to_command
    from bridge.pipeline import Bridge

    assert osc_to_command("/bridge/cmd/calibrate", ()) == {"cmd": "calibrate"}
    assert osc_to_command("/bridge/cmd/calibrate", (3.0,)) == {"cmd": "calibrate", "seconds": 3.0}
    cfg = Config()
    sch = feature_schema(cfg.audio, cfg.video, cfg.model.tick_hz)
    a = len(sch["audio_names"])
    torch.manual_seed(0)
    w = tmp_path / "w.pt"
    save_weights(w, AffectNet(a + FACE_DIM + 4, a, FACE_DIM, hidden=8, proj=8), {"labels": list(LABELS),
                                                                                  "feature_schema": sch})
    b = Bridge(load_config(None, {"model.weights": str(w)}), StreamingAffectModel.load(str(w)))
    ack = b.handle_command({"cmd": "calibrate"})
    assert ack["ok"] and "2 s" in ack["detail"] and b.engine.calibration.status() == "calibrating"
    assert b.handle_command({"cmd": "calibrate", "seconds": "long"})["ok"] is False
    assert b.handle_command({"cmd": "calibrate", "seconds": 99})["ok"] is False
    assert b.health()["model"]["face_calibration"]["status"] == "calibrating"
    off = Bridge(load_config(None, {"model.weights": str(w), "video.calibration": "off"}),
                 StreamingAffectModel.load(str(w)))
    assert off.handle_command({"cmd": "calibrate"})["ok"] is False
