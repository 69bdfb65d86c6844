"""Real-face evidence for training and evaluation: FER+ faces through the bridge's own face path.

Each FER+ image (48x48 grey) is upscaled and padded onto a canvas (so MediaPipe's detector finds it), run through
MediaPipe FaceLandmarker once (IMAGE mode: every image is a new face), and its per-image evidence -- 52 blendshapes,
head pose, landmarks -- is stored in a cache keyed by the image bytes and the extraction settings. The expression
network's outputs are computed from the cached landmarks with the same crop the live ``FaceTracker`` uses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# FER+ vote columns -> the bridge's 7 face labels (contempt, unknown, not-a-face are dropped)
FERPLUS_COLUMNS = ("neutral", "happy", "surprised", "sad", "angry", "disgust", "fearful", "contempt", "unknown", "NF")
UPSCALE = 192  # 48 px -> 192 px, bicubic
CANVAS = 288  # padded onto a square canvas with the image's mean grey
EXTRACT_VERSION = 1


def fer_canvas(img48: np.ndarray) -> np.ndarray:
    """A FER+ 48x48 grey face -> BGR canvas the landmarker can find a face in."""
    import cv2

    g = cv2.resize(np.asarray(img48, np.uint8), (UPSCALE, UPSCALE), interpolation=cv2.INTER_CUBIC)
    p = (CANVAS - UPSCALE) // 2
    q = CANVAS - UPSCALE - p
    g = cv2.copyMakeBorder(g, p, q, p, q, cv2.BORDER_CONSTANT, value=int(g.mean()))
    return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))


def image_key(images: np.ndarray) -> np.ndarray:
    """Content key per image (first 16 hex digits of sha256 of its bytes)."""
    return np.array([hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest()[:16] for im in images])


def _settings_tag(model_path: str) -> str:
    from bridge.features.face_model import sha256

    s = json.dumps({"v": EXTRACT_VERSION, "up": UPSCALE, "canvas": CANVAS, "model": sha256(Path(model_path))[:16]})
    return hashlib.sha256(s.encode()).hexdigest()[:12]


def extract_landmarks(images: np.ndarray, model_path: str, out_path: Path, order: np.ndarray | None = None,
                      save_every: int = 500, progress: bool = True) -> Path:
    """MediaPipe evidence per image -> ``out_path`` (npz, rewritten every ``save_every`` images so a long run
    can be used while it grows). Images whose key is already in ``out_path`` are skipped (resume)."""
    from bridge.features.face import FaceTracker

    out_path = Path(out_path)
    order = np.arange(len(images)) if order is None else np.asarray(order)
    keys = image_key(images)
    tag = _settings_tag(model_path)
    done: dict[str, dict] = {}
    if out_path.is_file():
        z = np.load(out_path)
        if str(z["tag"]) == tag:
            for j, k in enumerate(z["key"]):
                done[str(k)] = {f: z[f][j] for f in ("present", "blendshapes", "pose", "landmarks")}
    tracker = FaceTracker(model_path, 0.3, max_input_side=CANVAS, running_mode="image")
    t0, n_new = time.time(), 0
    try:
        for n, i in enumerate(order):
            k = str(keys[i])
            if k in done:
                continue
            obs = tracker.process(fer_canvas(images[i]), 0.0)
            done[k] = {"present": obs.present, "blendshapes": obs.blendshapes.astype(np.float32),
                       "pose": np.asarray(obs.pose, np.float32),
                       "landmarks": (obs.landmarks if obs.present else np.zeros((478, 3))).astype(np.float16)}
            n_new += 1
            if n_new % save_every == 0:
                _save_evidence(out_path, done, tag)
                if progress:
                    log.info("%d/%d images, %.1f ms each", n + 1, len(order), (time.time() - t0) / n_new * 1000)
    finally:
        _save_evidence(out_path, done, tag)
        tracker.close()
    return out_path


def _save_evidence(path: Path, done: dict[str, dict], tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ks = list(done)
    arrays = {f: np.stack([done[k][f] for k in ks]) for f in ("present", "blendshapes", "pose", "landmarks")}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, key=np.array(ks), tag=tag, **arrays)
    tmp.replace(path)


def _main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="MediaPipe evidence for FER+ images (cache)")
    ap.add_argument("npz")
    ap.add_argument("out")
    ap.add_argument("--model", default="../shared/models/face_landmarker.task")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    images = np.load(a.npz)["images"]
    order = np.random.default_rng(a.seed).permutation(len(images))
    if a.limit:
        order = order[:a.limit]
    extract_landmarks(images, a.model, Path(a.out), order)


if __name__ == "__main__":
    _main()


def load_evidence(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Cached MediaPipe evidence aligned to ``images`` (missing images: present False, zeros)."""
    z = np.load(path)
    row = {str(k): j for j, k in enumerate(z["key"])}
    keys = image_key(images)
    idx = np.array([row.get(str(k), -1) for k in keys])
    have = idx >= 0
    out = {"cached": have}
    for f in ("present", "blendshapes", "pose", "landmarks"):
        a = z[f]
        o = np.zeros((len(images),) + a.shape[1:], a.dtype)
        o[have] = a[idx[have]]
        out[f] = o
    out["present"] = out["present"].astype(bool) & have
    return out


def network_evidence(images: np.ndarray, ev: dict[str, np.ndarray], batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The expression network on the landmark crop of each image with a face: (probs (N, 7), embedding (N, 256));
    zeros where no face was found."""
    import torch

    from bridge.features.expression import EMBED_DIM, N_EXPRESSIONS, ExpressionModel, crop_face

    torch.set_num_threads(1)
    model = ExpressionModel()
    probs = np.zeros((len(images), N_EXPRESSIONS), np.float32)
    emb = np.zeros((len(images), EMBED_DIM), np.float32)
    idx = np.flatnonzero(ev["present"])
    for s in range(0, len(idx), batch):
        b = idx[s:s + batch]
        crops = np.stack([crop_face(fer_canvas(images[i]), ev["landmarks"][i].astype(np.float32))
                          for i in b])
        p, e = model(crops)
        probs[b], emb[b] = p, e
    return probs, emb
