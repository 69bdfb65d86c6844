"""MediaPipe FaceLandmarker results read straight from its C structs with numpy.

MediaPipe's Python API turns every result into Python objects: per face, 478 ``NormalizedLandmark`` dataclasses
and 52 ``Category`` objects, each field read through ctypes. That took 0.47 ms per face per frame here, about 40 %
of everything the bridge's face thread does in Python. :func:`fast_results` wraps a landmarker so that
``detect_for_video`` (and ``detect``) return the same shape of result -- ``face_landmarks[i][j].x``,
``face_blendshapes[i][k].score``, ``facial_transformation_matrixes[i]`` -- built from one numpy copy per face,
plus ``face_landmarks[i].xyz``, an (N, 3) float32 array. The numbers are the same floats, bit for bit (a test
checks it against MediaPipe's own conversion).

It relies on MediaPipe's ctypes layer (``_lib``, ``_handle``, ``MpFaceLandmarkerResultC``), which is not public
API: when any of it is missing (another MediaPipe version), the landmarker is returned unwrapped and everything
works as before, at MediaPipe's own speed.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)


class Landmark(NamedTuple):
    x: float
    y: float
    z: float
    visibility: float | None = None
    presence: float | None = None
    name: str | None = None


class Category(NamedTuple):
    index: int
    score: float
    display_name: str | None
    category_name: str | None


class LandmarkList(Sequence):
    """One face's landmarks: a read-only sequence of :class:`Landmark` (made on access) over a numpy array."""

    __slots__ = ("_a",)

    def __init__(self, rows: np.ndarray):
        self._a = rows  # (N, 5) float32: x, y, z, visibility, presence (NaN where MediaPipe has none)

    @property
    def xyz(self) -> np.ndarray:
        return self._a[:, :3]

    def __len__(self) -> int:
        return len(self._a)

    def _make(self, r: list) -> Landmark:
        v, p = r[3], r[4]
        return Landmark(r[0], r[1], r[2], None if v != v else v, None if p != p else p)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._make(r) for r in self._a[i].tolist()]
        return self._make(self._a[i].tolist())

    def __iter__(self):
        return map(self._make, self._a.tolist())


class Result:
    __slots__ = ("face_landmarks", "face_blendshapes", "facial_transformation_matrixes")

    def __init__(self, landmarks, blendshapes, matrixes):
        self.face_landmarks, self.face_blendshapes, self.facial_transformation_matrixes = (landmarks, blendshapes,
                                                                                           matrixes)


def _dtype(struct, names: tuple[str, ...], fmt: str) -> np.dtype:
    return np.dtype({"names": list(names), "formats": [fmt] * len(names),
                     "offsets": [getattr(struct, n).offset for n in names], "itemsize": ctypes.sizeof(struct)})


class _FastLandmarker:
    """Delegates everything to the MediaPipe landmarker; only the result conversion differs."""

    def __init__(self, lm, flm, landmark_c, category_c):
        self._lm, self._flm = lm, flm
        self._lm_dtype = _dtype(landmark_c, ("x", "y", "z", "visibility", "presence"), "<f4")
        self._lm_flags = _dtype(landmark_c, ("has_visibility", "has_presence"), "?")
        self._cat_dtype = np.dtype({"names": ["index", "score"], "formats": ["<i4", "<f4"],
                                    "offsets": [category_c.index.offset, category_c.score.offset],
                                    "itemsize": ctypes.sizeof(category_c)})
        self._lm_size, self._cat_size = ctypes.sizeof(landmark_c), ctypes.sizeof(category_c)
        self._names: dict[tuple[int, int], tuple[str | None, str | None]] = {}

    def __getattr__(self, name):
        return getattr(self._lm, name)

    def _records(self, ptr, n: int, size: int, dtype: np.dtype) -> np.ndarray:
        if n == 0 or not ptr:
            return np.zeros(0, dtype)
        buf = (ctypes.c_char * (n * size)).from_address(ctypes.addressof(ptr.contents))
        return np.frombuffer(buf, dtype, count=n).copy()

    def _convert(self, c) -> Result:
        faces = []
        for i in range(c.face_landmarks_count):
            lc = c.face_landmarks[i]
            rec = self._records(lc.landmarks, lc.landmarks_count, self._lm_size, self._lm_dtype)
            flags = self._records(lc.landmarks, lc.landmarks_count, self._lm_size, self._lm_flags)
            rows = np.stack([rec["x"], rec["y"], rec["z"], np.where(flags["has_visibility"], rec["visibility"], np.nan),
                             np.where(flags["has_presence"], rec["presence"], np.nan)], 1).astype(np.float32)
            faces.append(LandmarkList(rows))
        shapes = []
        for i in range(c.face_blendshapes_count):
            cc = c.face_blendshapes[i]
            rec = self._records(cc.categories, cc.categories_count, self._cat_size, self._cat_dtype)
            cats = []
            for k, (idx, score) in enumerate(zip(rec["index"].tolist(), rec["score"].tolist())):
                names = self._names.get((k, idx))
                if names is None:  # the 52 names never change: decode them once
                    cat = cc.categories[k]
                    names = (cat.display_name.decode() if cat.display_name else None,
                             cat.category_name.decode() if cat.category_name else None)
                    self._names[(k, idx)] = names
                cats.append(Category(idx, score, *names))
            shapes.append(cats)
        mats = [c.facial_transformation_matrixes[i].to_numpy() for i in range(c.facial_transformation_matrixes_count)]
        return Result(faces, shapes, mats)

    def detect_for_video(self, image, timestamp_ms: int, image_processing_options=None):
        if image_processing_options is not None:
            return self._lm.detect_for_video(image, timestamp_ms, image_processing_options)
        lm = self._lm
        res = self._flm.MpFaceLandmarkerResultC()
        lm._lib.MpFaceLandmarkerDetectForVideo(lm._handle, image._image_ptr, None, timestamp_ms, ctypes.byref(res))
        try:
            return self._convert(res)
        finally:
            lm._lib.MpFaceLandmarkerCloseResult(ctypes.byref(res))

    def close(self):
        return self._lm.close()


def fast_results(landmarker):
    """``landmarker`` with numpy result reading, or ``landmarker`` itself where this MediaPipe differs."""
    try:
        from mediapipe.tasks.python.components.containers import category_c, landmark_c
        from mediapipe.tasks.python.vision import face_landmarker as flm

        for attr in ("_lib", "_handle"):
            getattr(landmarker, attr)
        for attr in ("MpFaceLandmarkerDetectForVideo", "MpFaceLandmarkerCloseResult"):
            getattr(landmarker._lib, attr)
        flm.MpFaceLandmarkerResultC  # noqa: B018 - present in this version?
        return _FastLandmarker(landmarker, flm, landmark_c.MpNormalizedLandmarkC, category_c.MpCategoryC)
    except (ImportError, AttributeError) as e:
        log.info("MediaPipe's result structs differ from the ones known here (%s): using its own conversion", e)
        return landmarker
