"""The frame gate in front of the face landmarker: still frames reuse the last result, the landmarker runs at most
``video.face_fps`` times a second, and what the bridge says about a real face does not change."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.capture.video import FrameGate, iter_video_file
from bridge.config import load_config
from helpers import face_model_path


def _astronaut(size=(640, 480)) -> np.ndarray:
    import cv2
    import skimage.data

    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(face, (size[1], size[1]))[:, : size[0]] if size[0] <= size[1] else \
        cv2.copyMakeBorder(cv2.resize(face, (size[1], size[1])), 0, 0, (size[0] - size[1]) // 2,
                           (size[0] - size[1]) // 2, cv2.BORDER_REFLECT)


def _noisy(img: np.ndarray, rng, sigma: float) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def test_still_scene_with_sensor_noise_reuses_the_result_and_refreshes():
    rng = np.random.default_rng(0)
    still = _astronaut()
    gate = FrameGate(face_fps=30, unchanged_level=2.0, refresh_s=1.0)
    verdicts = [gate.decide(_noisy(still, rng, 3.0), i / 30) for i in range(90)]  # 3 s of a still camera
    assert verdicts[0] == "run"
    assert verdicts.count("drop") == 0
    assert [i for i, v in enumerate(verdicts) if v == "run"] == [0, 30, 60]  # looked at again once a second


def test_any_real_motion_runs_the_landmarker(face_video):
    gate = FrameGate(face_fps=30, unchanged_level=2.0)
    verdicts = [gate.decide(f.image, f.t_capture) for f in iter_video_file(face_video)]
    assert verdicts.count("run") == len(verdicts)  # the face moves a little in every frame


def test_a_blink_sized_change_is_not_skipped():
    rng = np.random.default_rng(1)
    img = _astronaut()
    gate = FrameGate(unchanged_level=2.0)
    assert gate.decide(_noisy(img, rng, 2.0), 0.0) == "run"
    blink = img.copy()
    patch = blink[200:206, 300:312].astype(int)  # a 12x6 px patch changes by 60 grey levels, like an eyelid
    blink[200:206, 300:312] = np.where(patch > 127, patch - 60, patch + 60).astype(np.uint8)
    assert gate.decide(_noisy(blink, rng, 2.0), 1 / 30) == "run"


def test_face_fps_limits_the_rate_and_tolerates_jitter():
    img = np.zeros((480, 640, 3), np.uint8)
    rng = np.random.default_rng(2)
    t = np.arange(120) / 30 + rng.uniform(-0.004, 0.004, 120)  # a 30 fps camera with jitter
    g30 = FrameGate(face_fps=30)
    assert [g30.decide(img, x) for x in t].count("drop") == 0
    g15 = FrameGate(face_fps=15)
    v = [g15.decide(img, x) for x in t]
    assert v.count("run") == 60 and v[0::2] == ["run"] * 60  # every other frame
    off = FrameGate(face_fps=0, unchanged_level=0)
    assert {off.decide(img, x) for x in t} == {"run"}


def test_a_group_shares_the_landmarker_rate():
    """video.faces_per_s: k faces in view get a landmarker run every k/faces_per_s s (held frames between), one face
    every frame; the rate follows the group as it grows and shrinks; 0 = off."""
    from bridge.features.face import FaceObservation

    img = np.zeros((480, 640, 3), np.uint8)
    rng = np.random.default_rng(2)
    t = np.arange(240) / 30 + rng.uniform(-0.004, 0.004, 240)  # a 30 fps camera with jitter

    def run(gate, people):  # people(i): faces in view at frame i
        out = []
        for i, x in enumerate(t):
            v = gate.decide(img, x)
            if v == "run":
                gate.seen(True, x, [FaceObservation(x, True) for _ in range(people(i))])
            out.append(v)
        return out

    for k, runs in ((1, 60), (2, 30), (4, 15)):
        v = run(FrameGate(face_fps=30, faces_per_s=30), lambda i: k)[:60]
        assert v.count("run") == runs and v.count("hold") == 60 - runs and v.count("drop") == 0, (k, v)
    v = run(FrameGate(face_fps=30, faces_per_s=30), lambda i: 1 if i < 60 else (2 if i < 120 else 1))
    assert v[:60].count("run") == 60 and v[60:120].count("run") == 30 and v[120:].count("run") == 120
    assert set(run(FrameGate(face_fps=30, faces_per_s=0), lambda i: 4)) == {"run"}


def _still_then_moving_video(path, seconds_still=2.0, seconds_moving=1.0, fps=30.0):
    import cv2

    rng = np.random.default_rng(3)
    base = _astronaut()
    # lossless (FFV1), as a raw camera delivers frames: sensor noise only, no codec artefacts that vary per frame
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (640, 480))
    assert w.isOpened()
    for i in range(int(seconds_still * fps)):
        w.write(_noisy(base, rng, 2.0))
    for i in range(int(seconds_moving * fps)):
        m = np.float32([[1, 0, 6 * np.sin(i / 5)], [0, 1, 4 * np.cos(i / 5)]])
        w.write(_noisy(cv2.warpAffine(base, m, (640, 480), borderMode=cv2.BORDER_REFLECT), rng, 2.0))
    w.release()
    return path


@pytest.mark.timeout(120)
def test_skipping_still_frames_keeps_what_the_bridge_says(tmp_path):
    """process_files (the live pipeline on a file) with the gate off (the default) and skipping still frames (the
    performance preset's setting): the same labels on every frame, probabilities within the stated tolerance
    (docs/PERFORMANCE.md), while the landmarker ran on far fewer frames. The default changes nothing at all."""
    from bridge.features.face import FaceTracker
    from bridge.pipeline import face_observation, probs_array, process_files

    model = face_model_path()
    video = _still_then_moving_video(tmp_path / "still.avi")
    default = load_config(None, {"audio.enabled": False})
    assert default.video.skip_unchanged == 0 and default.video.face_fps == 30
    skip = load_config(None, {"video.skip_unchanged": 2.0, "audio.enabled": False})
    off = load_config(None, {"video.idle_face_fps": 0.0, "audio.enabled": False})
    a = process_files(video=video, config=default, face_model=model)
    b = process_files(video=video, config=skip, face_model=model)
    c = process_files(video=video, config=off, face_model=model)
    assert len(a) == len(b) == len(c) == 90 and all(s.face_present for s in a[20:])
    assert [s.t_capture for s in a] == [s.t_capture for s in b]
    assert np.array_equal(probs_array(a), probs_array(c))  # face present throughout: the idle rate never acts
    assert [s.label for s in a] == [s.label for s in b]
    d = np.abs(probs_array(a) - probs_array(b))
    assert d.mean() < 0.03 and d.max() < 0.25

    tr = FaceTracker(model)
    gate = FrameGate.from_config(skip.video)
    last = None
    try:
        for f in iter_video_file(video):
            last = face_observation(gate, tr, f.image, f.t_capture, last) or last
    finally:
        tr.close()
    assert gate.counts["same"] >= 50 and gate.counts["run"] <= 40  # 2 s still: 2 refreshes; 1 s moving: all run
