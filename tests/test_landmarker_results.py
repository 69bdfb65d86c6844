"""Reading FaceLandmarker results with numpy gives exactly MediaPipe's own numbers (two real faces, 30 frames)."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.features.landmarker_results import LandmarkList, _FastLandmarker, fast_results
from helpers import face_model_path


def _landmarker(model: str, num_faces: int = 2):
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

    return FaceLandmarker.create_from_options(FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=model), running_mode=RunningMode.VIDEO, num_faces=num_faces,
        output_face_blendshapes=True, output_facial_transformation_matrixes=True))


@pytest.mark.timeout(120)
def test_same_results_as_mediapipe_bit_for_bit():
    import cv2
    import mediapipe as mp

    from bridge import bench

    model = face_model_path()
    ref, fast = _landmarker(model), fast_results(_landmarker(model))
    assert isinstance(fast, _FastLandmarker)
    frames = bench.load().tiled_faces(2, 30)
    try:
        for i, f in enumerate(frames):
            im = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            a, b = ref.detect_for_video(im, 33 * i), fast.detect_for_video(im, 33 * i)
            assert len(a.face_landmarks) == len(b.face_landmarks) == 2
            for fa, fb in zip(a.face_landmarks, b.face_landmarks):
                assert isinstance(fb, LandmarkList) and len(fa) == len(fb) == 478
                assert [(p.x, p.y, p.z, p.visibility, p.presence) for p in fa] == \
                       [(q.x, q.y, q.z, q.visibility, q.presence) for q in fb]
                assert np.array_equal(np.array([(p.x, p.y, p.z) for p in fa], np.float32), fb.xyz)
                assert (fb[5].x, fb[-1].y) == (fa[5].x, fa[-1].y) and len(fb[:3]) == 3
            for ca, cb in zip(a.face_blendshapes, b.face_blendshapes):
                assert [(c.index, c.score, c.category_name) for c in ca] == \
                       [(d.index, d.score, d.category_name) for d in cb]
            for ma, mb in zip(a.facial_transformation_matrixes, b.facial_transformation_matrixes):
                assert np.array_equal(ma, mb)
    finally:
        ref.close()
        fast.close()


def test_unknown_mediapipe_layout_falls_back_to_the_landmarker_itself():
    class Other:  # a landmarker without the ctypes layer this module knows
        def detect_for_video(self, image, ts):
            return "own result"

    lm = Other()
    assert fast_results(lm) is lm
