"""Detector on demand (``FaceTracker`` with ``num_faces`` > 1, VIDEO mode): with one face in view the evidence is
exactly the ``num_faces`` 1 tracker's, frame by frame; a newcomer is found by the search and followed, a face that
left lets the tracker move down again; a landmarker that was not fed for a while starts afresh; every landmarker's
timestamps increase; close() does not wait for MediaPipe. Real faces (the astronaut photo, FER+ faces), real video
files, the real landmarker."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import people_media as pm
from bridge.capture.video import iter_video_file
from bridge.config import ConfigError, load_config
from bridge.features.face import FaceTracker
from helpers import face_model_path


def _run(video, tracker=None, **kw):
    tr = tracker or FaceTracker(face_model_path(), **kw)
    out = []
    try:
        for frame in iter_video_file(str(video)):
            tr.process(frame.image, frame.t_capture)
            out.append([(f.landmarks, f.blendshapes, f.pose, f.size, f.expression) for f in tr.faces])
    finally:
        tr.used = set(tr._lms)  # the landmarkers it built (close() releases them)
        if tracker is None:
            tr.close()
    return tr, out


def _assert_same(ref, got):
    assert len(ref) == len(got)
    for i, (r, g) in enumerate(zip(ref, got)):
        assert len(r) == len(g), f"frame {i}: {len(r)} faces against {len(g)}"
        for (lm1, bs1, pose1, size1, ex1), (lm2, bs2, pose2, size2, ex2) in zip(r, g):
            assert np.array_equal(lm1, lm2) and np.array_equal(bs1, bs2), f"frame {i}"
            assert pose1 == pose2 and size1 == size2
            assert (ex1 is None and ex2 is None) or np.array_equal(ex1, ex2)


@pytest.fixture(scope="module")
def ferplus_one_at_a_time(tmp_path_factory):
    """One visitor at a time: four FER+ faces (surprised, happy, sad, neutral), each drifting for 1 s, then the
    next in the same place (a cut)."""
    faces = [pm.ferplus_face(2, 0, 180), pm.ferplus_face(pm.FER_HAPPY, 0, 180), pm.ferplus_face(pm.FER_SAD, 1, 180),
             pm.ferplus_face(pm.FER_NEUTRAL, 2, 180)]
    frames = []
    for k, img in enumerate(faces):
        for i in range(30):
            frames.append([(img, 230 + int(6 * np.sin(i / 5 + k)), 90 + int(4 * np.cos(i / 7)))])
    return pm.write_video(tmp_path_factory.mktemp("ondemand") / "ferplus_one.avi", frames)


@pytest.fixture(scope="module")
def comes_and_goes(tmp_path_factory):
    """The astronaut stands left for 4 s; a happy FER+ face stands right from 1.0 s to 2.5 s."""
    astro, happy = pm.astronaut(155), pm.ferplus_face(pm.FER_HAPPY, 0, 160)
    w, h = pm.SIZE
    frames = []
    for i in range(120):
        row = [(astro, 70 + int(4 * np.sin(i / 9)), 100 + int(3 * np.cos(i / 7)))]
        if 30 <= i < 75:
            row.append((happy, w - 70 - happy.shape[1] + int(4 * np.cos(i / 8)), 90))
        frames.append(row)
    return pm.write_video(tmp_path_factory.mktemp("ondemand") / "comes_and_goes.avi", frames)


@pytest.mark.parametrize("which", ["astronaut", "ferplus"])
def test_one_face_in_view_is_exactly_the_one_face_tracker(which, face_video, ferplus_one_at_a_time):
    """The evidence of one visitor does not depend on num_faces: the same landmarks, blendshapes, pose, size and
    expression probabilities on every frame as a num_faces=1 tracker (the 4-face tracker never ran its detector
    inside the landmarker: only its separate search did, a few times a second, and saw nobody new)."""
    video = face_video if which == "astronaut" else ferplus_one_at_a_time
    _, ref = _run(video, num_faces=1, expression_fps=10.0)
    tr, got = _run(video, num_faces=4, expression_fps=10.0)
    assert sum(len(r) == 1 for r in ref) >= 0.95 * len(ref)
    _assert_same(ref, got)
    seconds = len(got) / 30.0
    assert tr.searches >= int(seconds * 3.0) - 1  # people.search_fps 3 (default)
    assert tr.moves_up == 0 and tr.moves_down == 0
    assert tr.landmarker_runs == sum(1 for _ in got)  # one landmarker call per frame, the one-face one
    assert tr.used == {1}  # the larger landmarkers were never needed


def test_a_newcomer_is_found_by_the_search_and_the_tracker_moves_back_down(comes_and_goes):
    tr, got = _run(comes_and_goes, num_faces=4)
    counts = [len(f) for f in got]
    t = np.arange(len(counts)) / 30.0
    # the second face is found by the first search after it came (at most 1 / search_fps later, plus a frame)
    first = next(i for i, c in enumerate(counts) if c >= 2)
    assert 1.0 <= t[first] <= 1.0 + 1 / 3.0 + 0.05
    # and followed from then on, until it leaves
    assert all(c >= 2 for c in counts[first:74]), counts
    assert all(c == 1 for c in counts[80:]), counts
    assert tr.moves_up >= 1 and tr.moves_down >= 1
    assert tr._cur == 1  # a second after it left, the one-face landmarker again (no detector on every frame)
    # extra landmarker calls only when the search saw someone new (one per move up) and while handing over to a
    # smaller landmarker (until it has found the faces itself)
    assert tr.landmarker_runs <= len(counts) + tr.moves_up + FaceTracker.HANDOVER_FRAMES * tr.moves_down


def test_a_stale_landmarker_is_cleared_before_it_is_used_again(comes_and_goes, face_video):
    """A landmarker that was not used for a while holds old tracks (and their smoothing) of faces long gone: it
    is fed a black frame before it is used again, and then gives exactly what a new landmarker gives."""
    tr = FaceTracker(face_model_path(), num_faces=2, expression=False)
    try:
        _run(comes_and_goes, tracker=tr)  # both landmarkers used, the 2-face one left stale
        assert 2 in tr._stale
        frames = [f.image for f in iter_video_file(str(face_video))][:20]
        res = _first_face_landmarks(tr, frames)
    finally:
        tr.close()
    new = FaceTracker(face_model_path(), num_faces=2, expression=False)
    try:
        ref = _first_face_landmarks(new, frames)
    finally:
        new.close()
    assert all(a is not None and np.array_equal(a, b) for a, b in zip(res, ref))


def _first_face_landmarks(tr, frames) -> list:
    """The 2-face landmarker of ``tr`` on ``frames`` (from t = 20 s): the first face's landmarks per frame."""
    out = []
    for i, img in enumerate(frames):
        r = tr._run_landmarker(2, _mp_image(img), 20.0 + i / 30)
        out.append(np.asarray(r.face_landmarks[0].xyz).copy() if r.face_landmarks else None)
    return out


def _mp_image(bgr):
    import cv2
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_timestamps_increase_per_landmarker(comes_and_goes):
    tr = FaceTracker(face_model_path(), num_faces=4, expression=False)
    tr.prepare()
    seen: dict[int, list[int]] = {k: [] for k in tr._lms}
    for k, lm in tr._lms.items():
        orig = lm.detect_for_video

        def rec(image, ts, _orig=orig, _k=k):
            seen[_k].append(ts)
            return _orig(image, ts)

        lm.detect_for_video = rec
    try:
        for frame in iter_video_file(str(comes_and_goes)):
            # a camera that delivers two frames within a millisecond: the landmarkers still get increasing times
            tr.process(frame.image, frame.t_capture)
            tr.process(frame.image, frame.t_capture + 0.0002)
    finally:
        tr.close()
    assert len(seen[1]) > 50 and len(seen[4]) > 50
    for k, ts in seen.items():
        assert all(b > a for a, b in zip(ts, ts[1:])), k


def test_close_does_not_wait_for_mediapipe():
    """MediaPipe's close() uploads usage metrics (and waits for DNS where there is none): the tracker hands every
    landmarker's close to a daemon thread and returns."""
    tr = FaceTracker(face_model_path(), num_faces=3, expression=False)
    tr.prepare()
    release = threading.Event()
    started = []
    real = list(tr._lms.values()) + [tr._detector]
    for lm in real:
        def slow(_lm=lm, _close=lm.close):
            started.append(_lm)
            release.wait(30)
            _close()  # then MediaPipe's own

        lm.close = slow
    tr.close(timeout=0.2)
    try:
        assert len(started) == len(real) == 4  # 1-, 2- and 3-face landmarkers and the detector
        assert not release.is_set()  # returned while every close() was still blocked
        assert tr._lms == {} and tr._detector is None
    finally:
        release.set()


def test_image_mode_keeps_one_landmarker_with_num_faces(comes_and_goes):
    tr = FaceTracker(face_model_path(), num_faces=4, running_mode="image", expression=False)
    try:
        frames = [f.image for f in iter_video_file(str(comes_and_goes))]
        tr.process(frames[50], 0.0)
        assert len(tr.faces) == 2
        assert set(tr._lms) == {4} and tr.searches == 0
    finally:
        tr.close()


def test_search_rate_is_validated():
    assert load_config().people.search_fps == 3.0
    for bad in (0, -1, 31):
        with pytest.raises(ConfigError) as e:
            load_config(overrides={"people.search_fps": bad})
        assert "people.search_fps" in str(e.value)


def test_the_faces_of_a_frame_go_through_the_expression_network_in_one_call(comes_and_goes):
    """Two visitors: both faces of a frame in one batched network call, each face's probabilities those of a
    call of its own (the same label; the embeddings are bit-identical, the probabilities within 1e-6)."""
    tr = FaceTracker(face_model_path(), num_faces=4)
    batches = []
    many = tr._expr.many

    def spy(frame, lms, bss):
        batches.append(len(lms))
        return many(frame, lms, bss)

    tr._expr.many = spy
    n = 0
    try:
        for frame in iter_video_file(str(comes_and_goes)):
            tr.process(frame.image, frame.t_capture)
            if len(tr.faces) < 2:
                continue
            for f in tr.faces:
                ref = tr._expr(frame.image, f.landmarks, f.blendshapes)
                assert int(np.argmax(ref)) == int(np.argmax(f.expression))
                assert np.abs(ref - f.expression).max() < 1e-6
            n += 1
    finally:
        tr.close()
    assert n > 30 and batches and set(batches) == {2}
