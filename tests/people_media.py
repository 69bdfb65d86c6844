"""Real test media for several visitors: videos composed with OpenCV from real face photos (the astronaut photo and
upscaled FER+ faces from ../shared/data/ferplus), moving, crossing, leaving and returning, and one mouth opened in
time with espeak-ng speech. Every sprite's position is known per frame (the ground truth the tests score against).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus" / "ferplus_valid.npz"
FPS = 30.0
SIZE = (640, 360)  # w, h
# FER+ vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
FER_NEUTRAL, FER_HAPPY, FER_SAD = 0, 1, 3


@dataclass
class Sprite:
    name: str
    image: np.ndarray  # BGR
    mouth: tuple[float, float, float, float] | None = None  # x0, x1 (corners), y (lips centre), chin y


def astronaut(height: int = 170) -> np.ndarray:
    import cv2
    import skimage.data

    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)[20:230, 130:300]
    return cv2.resize(img, (int(round(img.shape[1] * height / img.shape[0])), height), interpolation=cv2.INTER_AREA)


def ferplus_face(expression: int, rank: int = 0, size: int = 160) -> np.ndarray:
    """The ``rank``-th FER+ validation face on which at least 8 of 10 taggers agreed on ``expression``,
    upscaled (bicubic) to ``size`` px."""
    import cv2

    if not FERPLUS.is_file():
        import pytest

        pytest.skip(f"FER+ data not found at {FERPLUS}")
    d = np.load(FERPLUS)
    votes = d["votes"]
    idx = np.flatnonzero((votes.argmax(1) == expression) & (votes.max(1) >= 8))
    g = cv2.resize(d["images"][idx[rank]], (size, size), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)


def find_mouth(img: np.ndarray, model_path: str) -> tuple[float, float, float, float]:
    """Mouth corners, lips centre and chin of the face in ``img`` (pixels), from the real landmarker."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

    pad = 60
    canvas = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    opts = FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=model_path),
                                 running_mode=RunningMode.IMAGE, num_faces=1)
    with FaceLandmarker.create_from_options(opts) as lmk:
        res = lmk.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)))
    if not res.face_landmarks:
        raise RuntimeError("the landmarker finds no face in the sprite")
    h, w = canvas.shape[:2]
    lm = np.array([(p.x * w - pad, p.y * h - pad) for p in res.face_landmarks[0]])
    return float(lm[61, 0]), float(lm[291, 0]), float((lm[13, 1] + lm[14, 1]) / 2), float(lm[152, 1])


def open_mouth(img: np.ndarray, mouth: tuple[float, float, float, float], amount: float) -> np.ndarray:
    """The face with its mouth opened by ``amount`` (0..1): the chin moved down, a dark mouth between the lips."""
    import cv2

    x0, x1, ym, ychin = mouth
    d = int(round(amount * 0.55 * (ychin - ym)))
    if d <= 0:
        return img
    out = img.copy()
    y_end = min(img.shape[0], int(ychin + 0.3 * (ychin - ym)))
    y_start = int(ym)
    for y in range(y_start + d, y_end):
        sy = y_start + (y - y_start - d) * (y_end - y_start) / max(y_end - y_start - d, 1)
        out[y] = img[min(int(sy), img.shape[0] - 1)]
    cx, w = (x0 + x1) / 2, x1 - x0
    cv2.ellipse(out, (int(cx), int(ym + d / 2)), (max(1, int(w * 0.38)), max(1, d // 2)), 0, 0, 360, (35, 25, 70), -1)
    return out


def write_video(path: Path, frames: list[list[tuple[np.ndarray, int, int]]], size=SIZE, fps=FPS) -> Path:
    """Each frame: sprites (image, x, y) painted in order on a grey background (later ones cover earlier ones)."""
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write MJPG to {path}")
    try:
        for sprites in frames:
            canvas = np.full((h, w, 3), 96, np.uint8)
            for img, x, y in sprites:
                sh, sw = img.shape[:2]
                x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + sw, w), min(y + sh, h)
                if x1 > x0 and y1 > y0:
                    canvas[y0:y1, x0:x1] = img[y0 - y:y1 - y, x0 - x:x1 - x]
            writer.write(canvas)
    finally:
        writer.release()
    return path


def _box(img: np.ndarray, x: int, y: int) -> tuple[float, float, float, float]:
    w, h = SIZE
    return x / w, y / h, (x + img.shape[1]) / w, (y + img.shape[0]) / h


def crossing_scene(path: Path, seconds: float = 4.0):
    """Three real faces: the astronaut walks left to right in front of a happy FER+ face walking right to left
    (it is hidden behind the astronaut while they cross); a sad FER+ face stands bottom right, leaves at 1.3 s and
    comes back at 2.6 s. Returns (path, truth): truth[i] = {name: (x0, y0, x1, y1) in normalised coordinates}."""
    a, b, c = astronaut(160), ferplus_face(FER_HAPPY, 0, 150), ferplus_face(FER_SAD, 0, 170)
    w, h = SIZE
    n = int(round(seconds * FPS))
    frames, truth = [], []
    for i in range(n):
        u = i / (n - 1)
        xa = int(20 + u * (w - 20 - a.shape[1] - 20))
        xb = int(w - 20 - b.shape[1] - u * (w - 40 - b.shape[1]))
        sprites = [(b, xb, 15), (a, xa, 10)]  # the astronaut in front
        t = i / FPS
        gt = {"astronaut": _box(a, xa, 10), "happy": _box(b, xb, 15)}
        if not (1.3 <= t < 2.6):
            sprites.append((c, w - 20 - c.shape[1], h - 5 - c.shape[0]))
            gt["sad"] = _box(c, w - 20 - c.shape[1], h - 5 - c.shape[0])
        frames.append(sprites)
        truth.append(gt)
    return write_video(path, frames), truth


def speech(path: Path, text: str, pad_s: float = 0.6, speed: int = 150) -> tuple[Path, np.ndarray, int]:
    """espeak-ng speaking ``text`` to a 16 kHz mono wav with ``pad_s`` of silence either side."""
    import soundfile as sf
    from scipy.signal import resample_poly

    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(raw), text], check=True, capture_output=True,
                   timeout=60)
    y, sr = sf.read(raw, dtype="float32", always_2d=False)
    if y.ndim > 1:
        y = y.mean(1)
    y = resample_poly(y, 16000, sr).astype(np.float32)
    pad = np.zeros(int(pad_s * 16000), np.float32)
    y = np.concatenate([pad, 0.7 * y / max(np.abs(y).max(), 1e-6), pad])
    sf.write(path, y, 16000, subtype="PCM_16")
    return path, y, 16000


def envelope(y: np.ndarray, sr: int, n_frames: int, fps: float = FPS) -> np.ndarray:
    """Mouth opening 0..1 per video frame from the loudness of the speech around that frame."""
    hop = sr / fps
    env = np.zeros(n_frames)
    for i in range(n_frames):
        seg = y[int(i * hop):int((i + 1) * hop)]
        env[i] = 20 * np.log10(np.sqrt(np.mean(seg ** 2)) + 1e-6) if len(seg) else -120
    return np.clip((env + 45.0) / 30.0, 0.0, 1.0)


def speaking_scene(path: Path, audio: np.ndarray, sr: int, other: np.ndarray, model_path: str,
                   speaker_left: bool = True):
    """Two real faces side by side (the astronaut left, a neutral FER+ face right). One mouth opens with
    ``audio``'s envelope, the other's with the envelope of ``other`` (a different utterance, not in the sound).
    Returns (path, truth) with truth = {"speaker": name, names: centres}."""
    a, b = astronaut(170), ferplus_face(FER_NEUTRAL, 1, 170)
    ma, mb = find_mouth(a, model_path), find_mouth(b, model_path)
    n = int(np.ceil(len(audio) / sr * FPS))
    e_in, e_out = envelope(audio, sr, n), envelope(other, sr, n)
    w, h = SIZE
    xa, ya, xb, yb = 60, 90, w - 60 - b.shape[1], 90
    frames = []
    for i in range(n):
        ea, eb = (e_in[i], e_out[i]) if speaker_left else (e_out[i], e_in[i])
        frames.append([(open_mouth(a, ma, ea), xa, ya), (open_mouth(b, mb, eb), xb, yb)])
    truth = {"speaker": "astronaut" if speaker_left else "neutral", "astronaut": _box(a, xa, ya),
             "neutral": _box(b, xb, yb)}
    return write_video(path, frames), truth


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / u if u > 0 else 0.0


def unambiguous(truth: dict) -> dict:
    """The ground-truth faces of a frame that overlap no other (IoU < 0.05): where identity can be scored."""
    names = [k for k in truth if k != "speaker"]
    return {k: truth[k] for k in names if all(box_iou(truth[k], truth[o]) < 0.05 for o in names if o != k)}


def identify(truth: dict, people) -> dict:
    """name -> person id, for the unambiguous faces each matched to the person box inside it (centre inside)."""
    out = {}
    for name, (x0, y0, x1, y1) in unambiguous(truth).items():
        inside = [p for p in people if x0 <= (p.box[0] + p.box[2]) / 2 <= x1 and y0 <= (p.box[1] + p.box[3]) / 2 <= y1]
        if len(inside) == 1:
            out[name] = inside[0].id
    return out
