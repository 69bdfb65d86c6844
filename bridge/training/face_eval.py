"""Evaluate the face path on labelled still faces: a FER+ npz (``images``, ``votes``) or an image folder with one
sub-folder per label (``happy/``, ``sad/``, ... ; common synonyms such as ``happiness``, ``anger``, ``fear`` work).

Every image goes through what the live bridge runs on a camera frame: ``FaceTracker`` (MediaPipe FaceLandmarker,
here in IMAGE mode because the images are unrelated) -> landmark crop -> expression network -> FER+ head. With
``through_model`` each face is also held in front of the full affect model for ``hold_s`` seconds (face only, no
audio, fresh state per face) and the model's final label is scored too (calm counts as neutral).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from bridge.features.expression import EXPRESSION_LABELS

log = logging.getLogger(__name__)

SYNONYMS = {"happiness": "happy", "joy": "happy", "sadness": "sad", "anger": "angry", "fear": "fearful",
            "disgusted": "disgust", "surprise": "surprised", "neutrality": "neutral", "calm": "neutral"}
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def folder_label(name: str) -> str | None:
    n = name.lower().strip()
    n = SYNONYMS.get(n, n)
    return n if n in EXPRESSION_LABELS else None


def load_images(data: Path, limit: int = 0, seed: int = 0, min_agreement: float = 0.0
                ) -> tuple[list, np.ndarray, np.ndarray | None, str]:
    """-> (images (BGR or grey), majority labels (EXPRESSION_LABELS index), soft targets or None, kind).
    ``min_agreement`` (FER+ only): keep faces whose majority label has at least this share of the votes."""
    import cv2

    data = Path(data)
    if data.suffix == ".npz":
        from bridge.training.face_real import ferplus_targets

        z = np.load(data)
        images = z["images"]  # NpzFile reads the whole array on every access: once
        soft, maj, keep = ferplus_targets(z["votes"])
        idx = np.flatnonzero(keep & (soft[np.arange(len(soft)), maj] >= min_agreement))
        if limit:
            idx = np.sort(np.random.default_rng(seed).permutation(idx)[:limit])
        return list(images[idx]), maj[idx], soft[idx], "ferplus"
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: expected a FER+ .npz or a folder with one sub-folder per label")
    images, labels = [], []
    for sub in sorted(p for p in data.iterdir() if p.is_dir()):
        lab = folder_label(sub.name)
        if lab is None:
            log.warning("%s: not a label (%s); skipped", sub, ", ".join(EXPRESSION_LABELS))
            continue
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() in IMAGE_EXT:
                im = cv2.imread(str(f), cv2.IMREAD_COLOR)
                if im is None:
                    log.warning("%s: unreadable image; skipped", f)
                    continue
                images.append(im)
                labels.append(EXPRESSION_LABELS.index(lab))
    if not images:
        raise FileNotFoundError(f"{data}: no labelled images found (sub-folders named {', '.join(EXPRESSION_LABELS)})")
    labels = np.array(labels)
    if limit and limit < len(images):
        idx = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
        images, labels = [images[i] for i in idx], labels[idx]
    return images, labels, None, "folder"


def _prepare(img, kind: str):
    if kind == "ferplus":
        from bridge.training.face_real import fer_canvas

        return fer_canvas(img)
    return img


def scores(y: np.ndarray, pred: np.ndarray, n: int = len(EXPRESSION_LABELS)) -> dict:
    """pred -1 = no face found (counts as wrong)."""
    cm = np.zeros((n, n + 1), np.int64)
    for t, p in zip(y, pred):
        cm[t, p if p >= 0 else n] += 1
    rec = np.array([cm[c, c] / cm[c].sum() if cm[c].sum() else np.nan for c in range(n)])
    return {"n": int(len(y)), "accuracy": float(np.mean(pred == y)), "uar": float(np.nanmean(rec)),
            "recall": dict(zip(EXPRESSION_LABELS, np.round(rec, 4).tolist())),
            "no_face": int(np.sum(pred < 0)), "confusion": cm.tolist()}


def evaluate_faces(data: str | Path, out_dir: str | Path = "artifacts/evaluate-faces", limit: int = 0,
                   face_model: str | None = None, through_model: bool = False, weights: str | None = None,
                   hold_s: float = 2.0, min_agreement: float = 0.0) -> dict:
    import torch

    from bridge.features import face_model as fm
    from bridge.features.face import FaceTracker

    torch.set_num_threads(1)
    images, y, _soft, kind = load_images(Path(data), limit, min_agreement=min_agreement)
    tracker = FaceTracker(str(fm.resolve(face_model)), 0.3, running_mode="image")
    runner = _ModelRunner(weights, hold_s) if through_model else None
    pred = np.full(len(images), -1)
    pred_model = np.full(len(images), -1)
    try:
        for i, im in enumerate(images):
            obs = tracker.process(_prepare(im, kind), 0.0)
            if obs.present and obs.expression is not None:
                pred[i] = int(np.argmax(obs.expression))
                if runner is not None:
                    pred_model[i] = runner(obs)
            if (i + 1) % 500 == 0:
                log.info("%d/%d faces", i + 1, len(images))
    finally:
        tracker.close()
    res = {"data": str(data), "kind": kind, "min_agreement": min_agreement, "face_path": scores(y, pred)}
    if runner is not None:
        res["affect_model_face_only"] = dict(scores(y, pred_model), hold_s=hold_s)
    od = Path(out_dir)
    od.mkdir(parents=True, exist_ok=True)
    (od / "evaluation.json").write_text(json.dumps(res, indent=1))
    from bridge.training.train import _plot_confusion

    _plot_confusion(np.array(res["face_path"]["confusion"]), od / "confusion.png",
                    f"{Path(data).name}: face path accuracy {res['face_path']['accuracy']:.1%}, "
                    f"UAR {res['face_path']['uar']:.1%}", EXPRESSION_LABELS, (*EXPRESSION_LABELS, "no face"))
    return res


class _ModelRunner:
    """Holds one still face in front of the full affect model (face only, fresh state) -> final label index in
    EXPRESSION_LABELS (calm -> neutral). As the bridge does, the state is fused with the face path's own reading
    while no voice is heard (``face_fusion``, ``model.face_fusion``; 0 = the affect model alone)."""

    def __init__(self, weights: str | None, hold_s: float, face_fusion: float | None = None):
        from bridge.config import ModelConfig, VideoConfig
        from bridge.engine import FeatureEngine
        from bridge.model.affect import StreamingAffectModel
        from bridge.model.tick import audio_config

        self.model = StreamingAffectModel.load(weights)
        sch = self.model.meta["feature_schema"]
        self.audio_cfg = audio_config(sch)
        self.video_cfg = VideoConfig(window_s=sch["face_window_s"], calibration="off")  # unrelated stills
        self.tick_hz = sch["tick_hz"]
        self.hold_s = hold_s
        self.face_fusion = ModelConfig().face_fusion if face_fusion is None else face_fusion
        self._Engine = FeatureEngine

    def room_vectors(self, db: float = -50.0) -> np.ndarray:
        """Tick vectors of a microphone hearing a quiet room and no voice: pink noise at ``db`` dBFS through the
        bridge's own audio features and voice-activity model, one per tick of the hold (for ``room``)."""
        from bridge.config import VideoConfig
        from bridge.training.augment import pink_noise

        n = int(self.hold_s * self.tick_hz)
        eng = self._Engine(self.audio_cfg, VideoConfig(), use_face=False)
        sr = self.audio_cfg.sample_rate
        x = (pink_noise(int(sr * n / self.tick_hz) + sr, np.random.default_rng(1)) * 10 ** (db / 20)).astype(np.float32)
        blk = int(sr / self.tick_hz)
        out = []
        for k in range(n):
            t = (k + 1) / self.tick_hz
            eng.push_audio(x[k * blk:(k + 1) * blk], t)
            v, info = eng.vector(t)
            if info.voice_active:
                raise RuntimeError(f"the quiet room at {db} dBFS was heard as speech")
            out.append(v)
        return np.stack(out)

    def __call__(self, obs, noise: float = 0.0, rng: np.random.Generator | None = None,
                 room: np.ndarray | None = None) -> int:
        """``noise`` > 0: Gaussian noise of that sigma on the blendshapes and expression probabilities of every frame
        (a camera never gives the exact same numbers twice; a perfectly still face has window spreads of 0).
        ``room`` (:meth:`room_vectors`): the microphone on, hearing the room -- each tick's audio block and audio
        masks from it."""
        from bridge.engine import FaceFusion
        from bridge.features.face import FaceObservation
        from bridge.labels import LABELS

        eng = self._Engine(self.audio_cfg, self.video_cfg, use_audio=False)
        self.model.reset()
        fusion = FaceFusion(self.face_fusion)
        for k in range(int(self.hold_s * self.tick_hz)):
            t = (k + 1) / self.tick_hz
            bs, ex = obs.blendshapes, obs.expression
            if noise > 0:
                bs = np.clip(bs + rng.normal(0, noise, bs.shape), 0, 1).astype(np.float32)
                ex = np.clip(ex + rng.normal(0, noise, ex.shape), 1e-4, None)
                ex = (ex / ex.sum()).astype(np.float32)
            eng.push_face(FaceObservation(t, True, bs, obs.pose, obs.size, None, ex))
            v, info = eng.vector(t)
            if room is not None:  # audio present: the room's audio block, presence mask and age (no voice in it)
                v = v.copy()
                a = eng.audio_dim
                v[:a], v[-4], v[-2] = room[k][:a], room[k][-4], room[k][-2]
            out = self.model.step(v)
            probs = fusion(out.probs, out.valence, out.arousal, info, t)[0]
        lab = LABELS[int(np.argmax(probs))]
        return EXPRESSION_LABELS.index("neutral" if lab == "calm" else lab)
