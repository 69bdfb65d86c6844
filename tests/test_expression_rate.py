"""video.expression_fps: the expression network runs on each face at most this often; in between each face keeps
its own last result. Real faces: the astronaut photo and two FER+ faces side by side."""

from __future__ import annotations

import numpy as np

import people_media as pm
from bridge.capture.video import iter_video_file
from bridge.features.face import FaceTracker
from helpers import face_model_path


def _two_faces(path, seconds=1.2):
    happy, sad = pm.ferplus_face(pm.FER_HAPPY, 0, 160), pm.ferplus_face(pm.FER_SAD, 0, 160)
    w, _ = pm.SIZE
    frames = [[(happy, 60 + int(3 * np.sin(i / 5)), 90), (sad, w - 220, 90 + int(3 * np.cos(i / 7)))]
              for i in range(int(seconds * pm.FPS))]
    return pm.write_video(path, frames)


def _run(video, **kw):
    tr = FaceTracker(face_model_path(), **kw)
    out = []
    try:
        for fr in iter_video_file(str(video)):
            tr.process(fr.image, fr.t_capture)
            out.append((fr.t_capture, sorted(tr.faces, key=lambda f: f.landmarks[:, 0].mean())))
    finally:
        tr.close()
    return tr, out


def test_expression_rate_holds_each_faces_own_result(tmp_path):
    video = _two_faces(tmp_path / "two.avi")
    every, ref = _run(video, num_faces=2)
    tr, got = _run(video, num_faces=2, expression_fps=10.0)
    two = [i for i, (_, fs) in enumerate(got) if len(fs) == 2 and len(ref[i][1]) == 2]
    assert len(two) > 0.8 * len(got)
    # the network ran on about a third of the face frames (30 fps video, 10 per second), the rest held
    faces = sum(len(fs) for _, fs in got)
    assert every.expr_runs == sum(len(fs) for _, fs in ref) and every.expr_held == 0
    assert tr.expr_runs + tr.expr_held == faces and 0.28 < tr.expr_runs / faces < 0.45
    for i in two:
        for k in range(2):
            e, e_ref = got[i][1][k].expression, ref[i][1][k].expression
            # a run frame equals the network on that frame; a held frame equals one of the last few frames' runs
            recent = [ref[j][1][k].expression for j in range(max(0, i - 3), i + 1) if len(ref[j][1]) == 2]
            assert any(np.allclose(e, r, atol=1e-6) for r in recent)
            assert np.abs(e - e_ref).max() < 0.5
    # each person keeps their own: the happy face's held result stays happy, the sad one's sad
    happy = np.mean([got[i][1][0].expression[1] for i in two])
    sad = np.mean([got[i][1][1].expression[1] for i in two])
    assert happy > sad + 0.2


def test_expression_rate_leaves_still_images_alone(tmp_path):
    """IMAGE mode (face sets, the model card's evaluations): every image gets its own network call."""
    img = np.zeros((480, 640, 3), np.uint8) + 110
    a = pm.astronaut(200)
    img[100:100 + a.shape[0], 200:200 + a.shape[1]] = a
    tr = FaceTracker(face_model_path(), running_mode="image", expression_fps=5.0)
    try:
        for k in range(4):
            assert tr.process(img, k / 30).present
    finally:
        tr.close()
    assert tr.expr_runs == 4 and tr.expr_held == 0
