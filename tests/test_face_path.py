"""Real faces through the full bridge (video file -> FaceTracker -> expression network + head -> affect model), and
``emotion-bridge evaluate`` on faces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bridge

FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus" / "ferplus_valid.npz"
needs_ferplus = pytest.mark.skipif(not FERPLUS.is_file(), reason="../shared/data/ferplus absent")
# FER+ validation faces with >= 80 % of the ten taggers agreeing (index: label)
FACES = {4: "happy"}
# ... and faces the face path itself (network + head, no affect model) reads as their label: for `evaluate`
FACE_PATH_FACES = {4: "happy", 15: "surprised", 40: "angry"}
# The first six FER+ validation faces (in file order, not picked by result) that >= 9 of the ten taggers call
# surprised / fearful / angry / sad, each a still face drifting a little through the whole bridge (face only).
# Weights of 2026-12-02 (second fine-tuning stage): 5, 5, 3 and 3 of the six come out as their label; the weights
# shipped 2026-12-03 (face-only training chains of silent visitors): 6, 5, 4, 3. On the first 20 clear faces of each
# label: 44 of 67 then, 54 of 67 with those; the ensemble shipped later that day with the face fusion
# (model.face_fusion): 59 of 67 (surprised 20/20, fearful 6/7, angry 18/20, sad 15/20; benchmarks/face_videos.py,
# docs/MODEL_CARD.md).
# Sad is near one half on these six, so the test asks for half of the six: a face path or affect model that stops
# reading faces fails it; six faces cannot tell 0.5 from 0.6.
CLEAR = {"surprised": (16, 21, 52, 64, 71, 76), "fearful": (56, 924, 1101, 2212, 2851, 3138),
         "angry": (42, 81, 99, 151, 198, 224), "sad": (41, 78, 156, 171, 190, 207)}


def _face_video(path: Path, img48: np.ndarray, seconds: float = 3.0, fps: float = 30.0, width: int = 200,
                centre: tuple[int, int] = (320, 240)) -> Path:
    """A still real face (upscaled to ``width`` px) in a 640x480 video, drifting a little, as a visitor standing
    still."""
    import cv2

    face = cv2.cvtColor(cv2.resize(img48, (width, width), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    x0, y0 = centre[0] - width // 2, centre[1] - width // 2
    for i in range(int(seconds * fps)):
        f = np.full((480, 640, 3), int(img48.mean()), np.uint8)
        dx, dy = int(6 * np.sin(i / 9)), int(4 * np.cos(i / 13))
        f[y0 + dy:y0 + width + dy, x0 + dx:x0 + width + dx] = face
        wr.write(f)
    wr.release()
    return path


def _late_label(states) -> str:
    late = [s.label for s in states[len(states) // 2:] if s.face_present]
    return max(set(late), key=late.count) if late else "none"


def test_astronaut_is_happy_through_the_full_path(face_video):
    states = bridge.process_files(video=face_video)
    assert _late_label(states) == "happy"


def _quiet_room(path: Path, seconds: float = 4.0, db: float = -50.0) -> Path:
    """A gallery microphone that hears the room and no voice: pink noise at ``db`` dBFS."""
    import soundfile as sf

    from bridge.training.augment import pink_noise

    x = pink_noise(int(16000 * seconds), np.random.default_rng(1)) * 10 ** (db / 20)
    sf.write(str(path), x.astype(np.float32), 16000)
    return path


@needs_ferplus
def test_a_silent_visitor_with_the_microphone_on_is_read_from_the_face(face_video, tmp_path):
    """The microphone on, a quiet room, nobody speaking: the face decides (the weights before 2026-12-03 lost half
    of the clear faces this way: their face-only training never had the microphone on)."""
    room = _quiet_room(tmp_path / "room.wav")
    states = bridge.process_files(video=face_video, audio=room)
    assert not any(s.voice_active for s in states)
    assert _late_label(states) == "happy"
    images = np.load(FERPLUS)["images"]
    got = [_late_label(bridge.process_files(video=_face_video(tmp_path / f"fer{i}.mp4", images[i]), audio=room))
           for i in CLEAR["surprised"][:3] + CLEAR["angry"][:3]]
    # the weights of 2026-12-02: 4 of these 6 (two angry faces read as disgust); shipped 2026-12-03: 6
    assert sum(g == lab for g, lab in zip(got, ["surprised"] * 3 + ["angry"] * 3)) >= 5, got


@needs_ferplus
@pytest.mark.parametrize("index", sorted(FACES))
def test_real_ferplus_faces_come_out_as_their_labels(index, tmp_path):
    img = np.load(FERPLUS)["images"][index]
    states = bridge.process_files(video=_face_video(tmp_path / f"fer{index}.mp4", img))
    assert sum(s.face_present for s in states) > 0.9 * len(states)
    assert _late_label(states) == FACES[index], [s.label for s in states[-10:]]


@needs_ferplus
@pytest.mark.parametrize("label", sorted(CLEAR))
def test_clear_ferplus_faces_mostly_come_out_as_their_labels(label, tmp_path):
    images = np.load(FERPLUS)["images"]
    got = [_late_label(bridge.process_files(video=_face_video(tmp_path / f"fer{i}.mp4", images[i])))
           for i in CLEAR[label]]
    assert sum(g == label for g in got) >= 3, got


@needs_ferplus
def test_far_away_face_is_found_and_read(tmp_path):
    """A face 60 px wide in a 640x480 frame, off centre (MediaPipe's detector alone never finds it): the small-face
    search finds it within a few frames and follows it; the crop comes from the full frame."""
    from bridge.config import Config

    img = np.load(FERPLUS)["images"][4]  # happy
    video = _face_video(tmp_path / "far.mp4", img, width=60, centre=(180, 150))
    states = bridge.process_files(video=video)
    assert sum(s.face_present for s in states) > 0.7 * len(states)
    assert _late_label(states) == "happy"
    off = Config()
    off.video.small_faces = False
    assert not any(s.face_present for s in bridge.process_files(video=video, config=off))


@needs_ferplus
def test_evaluate_command_on_a_face_folder_and_on_the_npz(tmp_path):
    """A folder of labelled real faces (astronaut + FER+ faces as PNG) and a small FER+-format npz: accuracy,
    UAR, per-class recall, the confusion PNG, through the live face path."""
    import cv2
    import skimage.data

    d = np.load(FERPLUS)
    folder = tmp_path / "faces"
    (folder / "happiness").mkdir(parents=True)  # a synonym folder name
    cv2.imwrite(str(folder / "happiness" / "astronaut.png"), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    for i, lab in FACE_PATH_FACES.items():
        (folder / lab).mkdir(exist_ok=True)
        big = cv2.copyMakeBorder(cv2.resize(d["images"][i], (192, 192), interpolation=cv2.INTER_CUBIC),
                                 48, 48, 48, 48, cv2.BORDER_CONSTANT, value=int(d["images"][i].mean()))
        cv2.imwrite(str(folder / lab / f"fer{i}.png"), big)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "bridge", "evaluate"]
    r = subprocess.run(cmd + [str(folder), "--out", str(tmp_path / "e1")], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((tmp_path / "e1" / "evaluation.json").read_text())["face_path"]
    assert res["n"] == 4 and res["accuracy"] == 1.0 and (tmp_path / "e1" / "confusion.png").stat().st_size > 1000
    assert "accuracy 100.0%" in r.stdout + r.stderr
    # the npz form: 40 validation faces through the same path (the face path is far above chance, 1/7)
    sel = np.arange(40)
    np.savez(tmp_path / "small.npz", images=d["images"][sel], votes=d["votes"][sel])
    r = subprocess.run(cmd + [str(tmp_path / "small.npz"), "--out", str(tmp_path / "e2")], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads((tmp_path / "e2" / "evaluation.json").read_text())["face_path"]
    assert res["n"] >= 35 and res["accuracy"] > 0.5 and set(res["recall"]) >= {"happy", "neutral"}
