"""Face features: MediaPipe FaceLandmarker (Tasks API, VIDEO mode) -> per-frame observation -> window statistics.

``FaceObservation`` is one frame's evidence (52 blendshape scores, head yaw/pitch/roll in degrees, face size as
the fraction of the image height the face spans, presence). ``FaceWindow`` keeps the recent observations
(bounded by ``window_s``) and turns them into the face part of the model's tick vector. The same ``FaceWindow``
is fed by the live landmarker, by video files and by the synthetic face evidence used in training.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

# MediaPipe FaceLandmarker blendshape categories, in the model's output order (ARKit names, plus _neutral).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
N_BLENDSHAPES = len(BLENDSHAPE_NAMES)
BS_INDEX = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}


@dataclass
class FaceObservation:
    t_capture: float
    present: bool
    blendshapes: np.ndarray = field(default_factory=lambda: np.zeros(N_BLENDSHAPES, np.float32))
    pose: tuple[float, float, float] = (0.0, 0.0, 0.0)  # yaw, pitch, roll in degrees
    size: float = 0.0
    landmarks: np.ndarray | None = field(default=None, repr=False)  # (478, 3) normalised, for the preview
    # the face path's 7 expression probabilities (bridge.features.expression.EXPRESSION_LABELS order), None when
    # the tracker runs without the expression network
    expression: np.ndarray | None = field(default=None, repr=False)


# the expression network's labels (bridge.features.expression.EXPRESSION_LABELS; repeated here so that this module
# does not import torch)
EXPRESSION_NAMES: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
N_EXPRESSIONS = len(EXPRESSION_NAMES)


def face_window_names() -> list[str]:
    n = [f"bs_{b}_mean" for b in BLENDSHAPE_NAMES] + [f"bs_{b}_std" for b in BLENDSHAPE_NAMES]
    n += ["yaw_mean", "pitch_mean", "roll_mean", "yaw_std", "pitch_std", "roll_std", "size_mean", "present_frac"]
    n += [f"expr_{e}_mean" for e in EXPRESSION_NAMES] + [f"expr_{e}_std" for e in EXPRESSION_NAMES]
    n += ["expr_frac"]
    return n


FACE_DIM = len(face_window_names())
PRESENT_FRAC = face_window_names().index("present_frac")  # index of the fraction of frames with a face
EXPR_MEAN = face_window_names().index(f"expr_{EXPRESSION_NAMES[0]}_mean")  # first of the 7 expression means
EXPR_FRAC = face_window_names().index("expr_frac")  # share of the window's face frames the network saw


def window_expression(face_vec: np.ndarray | None) -> np.ndarray | None:
    """The face path's 7 expression probabilities in a face window vector (their mean over the window), or None
    when there is no face or the network saw none of its frames."""
    if face_vec is None or face_vec[EXPR_FRAC] <= 0:
        return None
    return face_vec[EXPR_MEAN:EXPR_MEAN + N_EXPRESSIONS].copy()


class FaceWindow:
    """Window statistics over the face observations of the last ``window_s`` seconds (present frames only)."""

    def __init__(self, window_s: float = 0.5, max_frames: int = 256):
        self.window_s = window_s
        self._obs: deque[FaceObservation] = deque(maxlen=max_frames)

    def reset(self) -> None:
        self._obs.clear()

    def push(self, obs: FaceObservation) -> None:
        self._obs.append(obs)
        while self._obs and obs.t_capture - self._obs[0].t_capture > self.window_s:
            self._obs.popleft()

    @property
    def last(self) -> FaceObservation | None:
        return self._obs[-1] if self._obs else None

    def vector(self) -> np.ndarray:
        obs = list(self._obs)
        present = [o for o in obs if o.present]
        out = np.zeros(FACE_DIM, np.float32)
        if not present:
            return out
        bs = np.stack([o.blendshapes for o in present]).astype(np.float32)
        pose = np.asarray([o.pose for o in present], np.float32) / 45.0
        out[:N_BLENDSHAPES] = bs.mean(0)
        out[N_BLENDSHAPES:2 * N_BLENDSHAPES] = bs.std(0)
        k = 2 * N_BLENDSHAPES
        out[k:k + 3] = pose.mean(0)
        out[k + 3:k + 6] = pose.std(0)
        out[k + 6] = float(np.mean([o.size for o in present]))
        out[k + 7] = len(present) / len(obs)
        ex = [o.expression for o in present if o.expression is not None]
        if ex:  # the expression probabilities of the frames whose crop the network saw
            e = np.stack(ex).astype(np.float32)
            k += 8
            out[k:k + N_EXPRESSIONS] = e.mean(0)
            out[k + N_EXPRESSIONS:k + 2 * N_EXPRESSIONS] = e.std(0)
            out[k + 2 * N_EXPRESSIONS] = len(ex) / len(present)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def euler_from_matrix(m: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from MediaPipe's 4x4 facial transformation matrix (rotation part)."""
    r = np.asarray(m, np.float64)[:3, :3]
    sy = math.hypot(r[0, 0], r[1, 0])
    if sy > 1e-6:
        pitch = math.atan2(r[2, 1], r[2, 2])
        yaw = math.atan2(-r[2, 0], sy)
        roll = math.atan2(r[1, 0], r[0, 0])
    else:
        pitch = math.atan2(-r[1, 2], r[1, 1])
        yaw = math.atan2(-r[2, 0], sy)
        roll = 0.0
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


class FaceTracker:
    """MediaPipe FaceLandmarker (Tasks API, VIDEO mode, blendshapes + transformation matrix) on BGR frames.

    **Several faces, detector on demand** (VIDEO mode, ``num_faces`` N > 1). MediaPipe's VIDEO mode runs its face
    detector on every frame while it tracks fewer faces than its ``num_faces`` allows (there is no setting for
    how often): with one visitor and ``num_faces`` 4 that cost ~14 % more landmarker CPU and, because the
    detector's fresh box each frame moves the landmarks, changed the one-face evidence. So the tracker keeps one
    VIDEO-mode landmarker per face count k = 1..N (created when first needed, or all at once by
    :meth:`prepare`) and each frame runs the one whose k equals the number of faces it tracks (at least 1): while
    everyone is followed it only tracks. With one face in view that is exactly the ``num_faces`` 1 landmarker,
    fed exactly the same frames and timestamps, so the evidence is bit-identical. At most ``search_fps`` times a
    second (while fewer than N faces are tracked and at least one is) the face detector of the same model bundle
    alone (~2 ms) looks for newcomers on the same frame; only when it sees a face outside every tracked one does
    the N-face landmarker run on the frame, and only when that finds a face not tracked is its result used and
    the tracker moves to it (its own detector then finds the rest of a group). When the landmarker finds fewer
    faces than it expects for ``DOWN_S`` seconds on end (until then its own detector looks for the missing face
    on every frame, so a face hidden for a moment, e.g. by a passer-by, is found again at once), the tracker
    hands over to the landmarker for the most faces seen in that time, once that one has found them itself (at
    most ``HANDOVER_FRAMES`` frames with both). A landmarker that was not fed for a while holds stale tracks (and
    smoothing state) of faces long gone: before it is used again it is fed one black frame, which clears them
    (afterwards it gives what a new landmarker gives, bit for bit).
    """

    DOWN_S = 1.0  # seconds with fewer faces than the landmarker expects before moving to a smaller one
    HANDOVER_FRAMES = 15  # at most this many frames with both landmarkers while the smaller one finds the faces

    def __init__(self, model_path: str, min_detection_confidence: float = 0.5, max_input_side: int = 640,
                 running_mode: str = "video", expression: bool = True, small_faces: bool = True, num_faces: int = 1,
                 expression_fps: float = 0.0, search_fps: float = 3.0):
        """``running_mode``: "video" (a camera or video file: tracking across frames, increasing timestamps) or
        "image" (unrelated still images, e.g. a labelled face set: every call detects afresh).
        ``expression``: run the expression network on each face's crop (one small network call per face).
        ``small_faces``: when the frame shows no face, look for a small (far away) one in a part of the frame
        (2/5 of its width and height; every second such frame, cycling over a 3x3 grid, the centre first), then
        follow it in a region around it; MediaPipe's detector alone misses faces narrower than about a fifth of
        the frame.
        ``expression_fps``: run the expression network on each face at most this often (0 = on every frame);
        in between, a face keeps its last expression (matched to the last frame's faces by box overlap, so
        each person keeps their own). VIDEO mode only: unrelated still images always get their own.
        ``num_faces``: faces tracked at most. ``search_fps``: with ``num_faces`` > 1 in VIDEO mode, how often a
        second the detector looks for newcomers while fewer faces are tracked (see the class docstring)."""
        import mediapipe as mp
        from mediapipe.tasks.python.vision import FaceLandmarker, RunningMode

        self._mp = mp
        self._model_path = str(model_path)
        self._conf = min_detection_confidence
        self._video = running_mode != "image"
        self._n = max(1, int(num_faces))
        self._on_demand = self._video and self._n > 1
        self._FaceLandmarker, self._RunningMode = FaceLandmarker, RunningMode
        self._lms: dict[int, object] = {}  # face count -> landmarker (VIDEO mode: one per count in use)
        self._ts: dict[int, int] = {}  # face count -> that landmarker's last timestamp (ms; increasing per instance)
        self._stale: set[int] = set()  # landmarkers fed before and not in use since: cleared before their next use
        self._cur = 1 if self._on_demand else self._n  # the landmarker in use (its num_faces)
        self._t_fewer: float | None = None  # since when the landmarker in use finds fewer faces than it expects
        self._fewer_max = 0  # ... and the most it found since then
        self._next: int | None = None  # the smaller landmarker being handed over to, and for how many frames
        self._handover = 0
        self._search_interval = 1.0 / search_fps if search_fps > 0 else math.inf
        self._t_search = -math.inf
        self._detector = None
        self._black: np.ndarray | None = None
        self.searches = 0  # detector runs, moves up to a larger landmarker and down to a smaller one
        self.moves_up = 0
        self.moves_down = 0
        self.landmarker_runs = 0  # landmarker calls on camera frames (all instances; the black frames not counted)
        self._landmarker = self._instance(self._cur)
        self._small = small_faces
        self._roi_landmarker = None
        self._roi: tuple[int, int, int, int] | None = None  # x0, y0, w, h of the region a small face is in
        self._misses = 0
        self._max_side = max_input_side
        self.faces: list[FaceObservation] = []  # every face of the last frame (process() returns the first)
        self._expr = None
        self._expr_interval = 1.0 / expression_fps if expression_fps > 0 and self._video else 0.0
        self._held: list[tuple[np.ndarray, float, np.ndarray]] = []  # (box, time, expression) of the last faces
        self.expr_runs = 0  # expression network calls (and faces that reused a held result: expr_held)
        self.expr_held = 0
        if expression:
            from bridge.features.expression import FaceExpression

            self._expr = FaceExpression()

    def _options(self, num_faces: int, image_mode: bool):
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarkerOptions

        rm = self._RunningMode
        return FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=self._model_path),
            running_mode=rm.IMAGE if image_mode else rm.VIDEO,
            num_faces=num_faces,
            min_face_detection_confidence=self._conf,
            min_face_presence_confidence=self._conf,
            min_tracking_confidence=0.5,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )

    def _instance(self, k: int):
        """The landmarker for ``k`` faces (created on first use: ~150 ms, ~10 MB each)."""
        lm = self._lms.get(k)
        if lm is None:
            from bridge.features.landmarker_results import fast_results

            # results read with numpy instead of 478 + 52 Python objects per face (landmarker_results)
            lm = self._lms[k] = fast_results(self._FaceLandmarker.create_from_options(
                self._options(k, image_mode=not self._video)))
            self._ts[k] = -1
        return lm

    def prepare(self) -> None:
        """Create every landmarker (1..num_faces) and the detector now, so that the first frame with a second or
        third visitor does not wait for one to be built (the live bridge calls this at start)."""
        if self._on_demand:
            for k in range(1, self._n + 1):
                self._instance(k)
            self._search_detector()

    def _search_detector(self):
        """MediaPipe's face detector, from the detector model inside the landmarker's own bundle (the one its
        graph runs), same confidence."""
        if self._detector is None:
            import zipfile

            from mediapipe.tasks.python import BaseOptions
            from mediapipe.tasks.python.vision import FaceDetector, FaceDetectorOptions

            with zipfile.ZipFile(self._model_path) as z:
                buf = z.read("face_detector.tflite")
            self._detector = FaceDetector.create_from_options(FaceDetectorOptions(
                base_options=BaseOptions(model_asset_buffer=buf), running_mode=self._RunningMode.IMAGE,
                min_detection_confidence=self._conf))
        return self._detector

    def _run_landmarker(self, k: int, mp_image, t_capture: float):
        """One landmarker call (VIDEO: the instance for ``k`` faces, its own increasing timestamps)."""
        lm = self._instance(k)
        self.landmarker_runs += 1
        if not self._video:
            return lm.detect(mp_image)
        if k in self._stale:  # not fed for a while: clear its old tracks with a black frame first
            self._stale.discard(k)
            if self._black is None or self._black.shape != mp_image.numpy_view().shape:
                self._black = np.zeros(mp_image.numpy_view().shape, np.uint8)
            black = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=self._black)
            self._ts[k] = ts = max(int(t_capture * 1000), self._ts[k] + 1)
            lm.detect_for_video(black, ts)
        self._ts[k] = ts = max(int(t_capture * 1000), self._ts[k] + 1)
        return lm.detect_for_video(mp_image, ts)

    def _use(self, k: int) -> None:
        """From now on, run the landmarker for ``k`` faces; the one left holds stale tracks."""
        if k != self._cur:
            self._stale.add(self._cur)
            self._cur, self._t_fewer = k, None

    def process(self, image, t_capture: float) -> FaceObservation:
        """One frame (BGR/gray/BGRA uint8 of any size) -> observation. Timestamps must increase."""
        import cv2

        img = sanitize_frame(image)
        if img is None:
            self.faces = []
            return FaceObservation(t_capture, False)
        full = img
        h, w = img.shape[:2]
        s = self._max_side / max(h, w)
        if s < 1.0:
            img = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        res = self._run_landmarker(self._cur, mp_image, t_capture)
        if self._on_demand:
            res = self._on_demand_step(res, mp_image, t_capture)
        region = None
        if not res.face_landmarks and self._small:
            res, region = self._small_face(full)
        if not res.face_landmarks:
            self.faces, self._held = [], []
            return FaceObservation(t_capture, False)
        held, self._held = self._held, []
        pending: list = []  # faces whose expression network runs now: all of them in one call
        self.faces = [self._observe(res, i, full, t_capture, region, held, pending)
                      for i in range(len(res.face_landmarks))]
        if pending:
            exprs = self._expr_faces(full, [o.landmarks for o, _ in pending], [o.blendshapes for o, _ in pending])
            self.expr_runs += len(pending)
            for (obs, box), expr in zip(pending, exprs):
                obs.expression = expr
                if expr is not None and box is not None:
                    self._held.append((box, t_capture, expr))
        return self.faces[0]

    def _expr_faces(self, full: np.ndarray, lms: list, bss: list) -> list:
        """The expression network on the faces of one frame: one face as always (the channels-last single-image
        path), several in one batched call (the same layout; the same labels, probabilities within ~1e-7)."""
        if len(lms) == 1 or not hasattr(self._expr, "many"):
            return [self._expr(full, lm, bs) for lm, bs in zip(lms, bss)]
        return self._expr.many(full, lms, bss)

    def _on_demand_step(self, res, mp_image, t: float):
        """Detector on demand (class docstring): a few times a second the detector looks for a face outside the
        tracked ones; if it sees one, the landmarker for all ``num_faces`` runs on the frame, and if it finds a
        face that is not tracked its result is this frame's and it is used from now on (its own detector then
        runs on every frame, finding the rest of a group that came in together). After DOWN_S with fewer faces
        the tracker hands over to the landmarker for the most faces seen in that time: that one runs beside the
        one in use (whose result still counts) until it has found as many faces, at most HANDOVER_FRAMES."""
        found = distinct_faces(res)
        if found and self._cur < self._n and t - self._t_search >= self._search_interval - 1e-3:
            self._t_search = t
            self.searches += 1
            boxes = face_boxes(res)
            h, w = mp_image.height, mp_image.width
            seen = [((d.bounding_box.origin_x + d.bounding_box.width / 2) / w,
                     (d.bounding_box.origin_y + d.bounding_box.height / 2) / h)
                    for d in self._search_detector().detect(mp_image).detections]
            if any(not _inside(c, boxes) for c in seen):
                big = self._run_landmarker(self._n, mp_image, t)
                if any(not _inside(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), boxes) for b in face_boxes(big)):
                    self._cancel_handover()
                    self._use(self._n)
                    self.moves_up += 1
                    if distinct_faces(big) < self._n:
                        self._t_fewer, self._fewer_max = t, distinct_faces(big)
                    return big
                self._stale.add(self._n)  # fed once, not in use: cleared before it is used
        if found >= self._cur:
            self._t_fewer = None
            self._cancel_handover()
        elif self._cur > 1:
            if self._t_fewer is None:
                self._t_fewer, self._fewer_max = t, found
            self._fewer_max = max(self._fewer_max, found)
            if self._next is None and t - self._t_fewer >= self.DOWN_S - 1e-3:
                # to the most faces seen in that time (a face hidden behind another now is still looked for)
                self._next, self._handover = max(1, self._fewer_max), 0
        if self._next is not None:  # the smaller landmarker finds the faces (from its own detection) first
            nxt = self._run_landmarker(self._next, mp_image, t)
            self._handover += 1
            if distinct_faces(nxt) >= min(self._next, found) or self._handover >= self.HANDOVER_FRAMES:
                self._use(self._next)
                self._next = None
                self.moves_down += 1
                return nxt
        return res

    def _cancel_handover(self) -> None:
        if self._next is not None:
            self._stale.add(self._next)
            self._next = None

    def _observe(self, res, i: int, full: np.ndarray, t_capture: float, region=None, held=(),
                 pending: list | None = None) -> FaceObservation:
        """Face ``i`` of a landmarker result -> observation (its expression: held, or run for the whole frame at
        once when ``pending`` is given, else run here)."""
        bs = np.zeros(N_BLENDSHAPES, np.float32)
        if res.face_blendshapes and i < len(res.face_blendshapes):
            for k, cat in enumerate(res.face_blendshapes[i][:N_BLENDSHAPES]):
                bs[k] = cat.score
        pose = (0.0, 0.0, 0.0)
        if res.facial_transformation_matrixes and i < len(res.facial_transformation_matrixes):
            pose = euler_from_matrix(res.facial_transformation_matrixes[i])
        marks = res.face_landmarks[i]
        if hasattr(marks, "xyz"):  # fast_results: the numpy array itself, no 478 Python objects
            lm = np.ascontiguousarray(marks.xyz)
        else:
            lm = np.array([(p.x, p.y, p.z) for p in marks], np.float32)
        if region is not None:  # region-normalised -> frame-normalised
            x0, y0, rw, rh = region
            fh, fw = full.shape[:2]
            lm = lm * np.array([rw / fw, rh / fh, rw / fw], np.float32) + np.array([x0 / fw, y0 / fh, 0], np.float32)
        size = float(np.clip(lm[:, 1].max() - lm[:, 1].min(), 0.0, 1.0))
        if self._expr is None:
            return FaceObservation(t_capture, True, bs, pose, size, lm, None)
        expr, box = self._expression(lm, t_capture, held)
        obs = FaceObservation(t_capture, True, bs, pose, size, lm, expr)
        if expr is None:  # the network runs on it (with the frame's other faces: process())
            if pending is not None:
                pending.append((obs, box))
            else:
                self.expr_runs += 1
                obs.expression = self._expr_faces(full, [lm], [bs])[0]
                if obs.expression is not None and box is not None:
                    self._held.append((box, t_capture, obs.expression))
        return obs

    def _expression(self, lm: np.ndarray, t: float, held) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Within ``1 / expression_fps`` of its last run, the last result of the same face (the last frame's face
        whose box overlaps this one most, IoU >= 0.3): (that result, its box); else (None, box) = run the network
        (box None without an expression rate: nothing is held)."""
        if not self._expr_interval:
            return None, None
        box = np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()], np.float32)
        best, best_iou = None, 0.3
        for b, t_run, e in held:
            ix = max(0.0, min(box[2], b[2]) - max(box[0], b[0]))
            iy = max(0.0, min(box[3], b[3]) - max(box[1], b[1]))
            union = (box[2] - box[0]) * (box[3] - box[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
            ov = ix * iy / union if union > 0 else 0.0
            if ov >= best_iou:
                best, best_iou = (t_run, e), ov
        if best is not None and t - best[0] < self._expr_interval - 1e-3:
            t_run, expr = best
            self.expr_held += 1
            self._held.append((box, t_run, expr))
            return expr, box
        return None, box

    def _small_face(self, frame: np.ndarray):
        """No face in the whole frame: search a region (the last small face's, else the next of nine search
        regions every second frame). Returns (MediaPipe result, region or None)."""
        import cv2

        h, w = frame.shape[:2]
        roi = self._roi
        if roi is None:
            self._misses += 1
            if self._misses % 2:
                return _NO_FACE, None
            k = (self._misses // 2 - 1) % 9
            rw, rh = int(w / 2.5), int(h / 2.5)
            # a 3x3 grid of overlapping regions, the centre first
            cx, cy = (w - rw) // 2, (h - rh) // 2
            grid = [(cx, cy)] + [(x, y) for y in (0, cy, h - rh) for x in (0, cx, w - rw) if (x, y) != (cx, cy)]
            x0, y0 = grid[k]
            roi = (x0, y0, rw, rh)
        if self._roi_landmarker is None:
            self._roi_landmarker = self._FaceLandmarker.create_from_options(self._options(self._n, image_mode=True))
        x0, y0, rw, rh = roi
        rgb = np.ascontiguousarray(cv2.cvtColor(frame[y0:y0 + rh, x0:x0 + rw], cv2.COLOR_BGR2RGB))
        res = self._roi_landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        if not res.face_landmarks:
            self._roi = None
            return res, None
        # follow the face: next frame's region is centred on it, four face heights wide (within the frame)
        p = np.array([(q.x * rw + x0, q.y * rh + y0) for q in res.face_landmarks[0]])
        side = int(min(max(4 * (p[:, 1].max() - p[:, 1].min()), 64), w, h))
        cx, cy = p.mean(0)
        nx = int(np.clip(cx - side / 2, 0, w - side))
        ny = int(np.clip(cy - side / 2, 0, h - side))
        self._roi = (nx, ny, side, side)
        return res, roi

    def close(self, timeout: float = 1.0) -> None:
        """Release the landmarkers, waiting at most ``timeout`` seconds in all. MediaPipe's own close() also
        uploads the library's usage metrics to play.googleapis.com; where a DNS server does not answer, that lookup
        alone takes 5-10 s, so each close() runs in a daemon thread and is left behind if it takes longer."""
        import time

        lms = [lm for lm in (*self._lms.values(), self._roi_landmarker, self._detector) if lm is not None]
        self._lms, self._roi_landmarker, self._detector, self._landmarker = {}, None, None, None
        if not lms:
            return
        threads = [threading.Thread(target=lm.close, name="face-landmarker-close", daemon=True) for lm in lms]
        for t in threads:
            t.start()
        end = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in threads):
            logging.getLogger(__name__).info("MediaPipe FaceLandmarker.close() still busy after %.1f s (its usage "
                                             "metrics upload waits for the network); not waiting for it", timeout)


class _NoFace:
    face_landmarks: list = []


_NO_FACE = _NoFace()


def face_boxes(res) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of every face of a landmarker result, in normalised image coordinates."""
    out = []
    for m in res.face_landmarks:
        xy = np.asarray(m.xyz if hasattr(m, "xyz") else [(p.x, p.y) for p in m], np.float32)[:, :2]
        x0, y0 = xy.min(0)
        x1, y1 = xy.max(0)
        out.append((float(x0), float(y0), float(x1), float(y1)))
    return out


def _inside(c: tuple[float, float], boxes) -> bool:
    return any(b[0] <= c[0] <= b[2] and b[1] <= c[1] <= b[3] for b in boxes)


def distinct_faces(res, max_iou: float = 0.4) -> int:
    """Faces in a landmarker result, a face that MediaPipe's VIDEO mode keeps twice (two boxes overlapping more
    than ``max_iou``, as ``bridge.people.dedupe`` drops them) counted once."""
    boxes = face_boxes(res)
    keep: list[tuple] = []
    for b in sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
        ok = True
        for k in keep:
            ix = max(0.0, min(b[2], k[2]) - max(b[0], k[0]))
            iy = max(0.0, min(b[3], k[3]) - max(b[1], k[1]))
            union = (b[2] - b[0]) * (b[3] - b[1]) + (k[2] - k[0]) * (k[3] - k[1]) - ix * iy
            if union > 0 and ix * iy / union > max_iou:
                ok = False
                break
        if ok:
            keep.append(b)
    return len(keep)


def sanitize_frame(image) -> np.ndarray | None:
    """Any frame -> contiguous BGR uint8 of at least 32x32, or None if unusable."""
    import cv2

    if image is None:
        return None
    img = np.asarray(image)
    if img.size == 0 or img.ndim not in (2, 3):
        return None
    if img.dtype == np.uint16:  # 16-bit cameras: keep the top 8 bits (as the capture layer does), not a clip
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        if img.dtype.kind == "f":
            img = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
            img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255)
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] != 3:
        return None
    if min(img.shape[:2]) < 32:
        return None
    return np.ascontiguousarray(img)
