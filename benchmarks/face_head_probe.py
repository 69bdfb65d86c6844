"""Which face-head inputs and recipes lift FER+ accuracy and UAR together (issue 11)?

``python benchmarks/face_head_probe.py KEYS VARIANTS_JSON OUT_JSON`` (from the repo root, after
``emotion-bridge train`` or ``python -m bridge.training.face_finetune`` has filled ``.cache/features``).

Head inputs: E = the shipped (FER+-fine-tuned) expression network's embedding, B = MediaPipe's 52 blendshapes,
L = landmark geometry (similarity-normalised x, y of the 478 landmarks, PCA to 64 on the training split),
P = the plain port's embedding. KEYS names the optional blocks to compute (``L``, ``P``, ``all``). VARIANTS_JSON:
a list of ``[name, keys, head_config_overrides, seeds, do_cv]``. For each: one head per seed trained on the FER+
training faces (soft vote targets, ``bridge.training.face_real.train_head``), scored alone and as the mean of the
seeds' probabilities (an ensemble) on the validation split through the face-path rule (no face = wrong), plus a
5-fold CV on the training split (seed 0) -- choose on the CV, report the validation split.
Results of 2026-12-04: ``benchmarks/results/face-head-probe-2026-12-04.json`` (docs/FACE_EVIDENCE.md).
"""
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bridge.features import expression as ex
from bridge.features import face_model as fm
from bridge.training import face_finetune as ff
from bridge.training import face_real as fr
from bridge.training.face_eval import scores

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
log = logging.getLogger("exp")
torch.set_num_threads(1)
CACHE = ROOT / ".cache" / "features"
FER = fr.ferplus_dir() or (ROOT / fr.DEFAULT_FERPLUS)
MP = str(fm.resolve(None))

tr = ff.crop_cache(FER, "train", CACHE, MP)
va = ff.crop_cache(FER, "valid", CACHE, MP)
pt, et = ff.net_outputs(ex.DEFAULT_WEIGHTS, tr, CACHE, "train")
pv, ev_ = ff.net_outputs(ex.DEFAULT_WEIGHTS, va, CACHE, "valid")


def landmarks(split, data):
    d = np.load(FER / f"ferplus_{split}.npz")
    ev = fr.load_evidence(ff.mediapipe_cache(CACHE, split, MP), d["images"])
    return ev["landmarks"].astype(np.float32)


def geometry(lm):
    """(N, 478, 3) normalised -> similarity-normalised x, y (eye line horizontal, eye-mouth distance 1)."""
    p = lm[:, :, :2].astype(np.float64)
    eye = (p[:, ex._EYE_A] + p[:, ex._EYE_B]) / 2
    mouth = (p[:, ex._MOUTH_A] + p[:, ex._MOUTH_B]) / 2
    e = p[:, ex._EYE_B] - p[:, ex._EYE_A]
    ang = np.arctan2(e[:, 1], e[:, 0])
    d = np.linalg.norm(mouth - eye, axis=1).clip(1e-6)
    q = p - eye[:, None]
    c, s = np.cos(-ang)[:, None], np.sin(-ang)[:, None]
    x = (q[:, :, 0] * c - q[:, :, 1] * s) / d[:, None]
    y = (q[:, :, 0] * s + q[:, :, 1] * c) / d[:, None]
    return np.concatenate([x, y], 1).astype(np.float32)


def pca(Xtr, k):
    mu = Xtr.mean(0)
    u, s, vt = np.linalg.svd(Xtr - mu, full_matrices=False)
    return mu, vt[:k].T


use_tr = tr["keep"] & tr["present"]
feats_tr = {"E": et, "B": tr["blendshapes"]}
feats_va = {"E": ev_, "B": va["blendshapes"]}
if "L" in sys.argv[1] or "all" in sys.argv[1]:
    gt, gv = geometry(landmarks("train", tr)), geometry(landmarks("valid", va))
    mu, V = pca(gt[use_tr], 64)
    feats_tr["L"], feats_va["L"] = (gt - mu) @ V, (gv - mu) @ V
if "P" in sys.argv[1] or "all" in sys.argv[1]:
    _, ept = ff.net_outputs(ex.PORT_WEIGHTS, tr, CACHE, "train")
    _, epv = ff.net_outputs(ex.PORT_WEIGHTS, va, CACHE, "valid")
    feats_tr["P"], feats_va["P"] = ept, epv


def X_of(feats, keys):
    return np.concatenate([feats[k] for k in keys], 1)


def valid_score(probs):
    s = ff.face_path_scores(probs, va)
    return s["accuracy"], s["uar"], s["recall"]


def cv_score(X, T, lab, cfg, folds=5):
    fold = np.random.default_rng(0).integers(0, folds, len(X))
    pred = np.zeros(len(X), int)
    for f in range(folds):
        m = fold == f
        pred[m] = fr.head_predict(fr.train_head(X[~m], T[~m], dict(cfg, members=1)), X[m]).argmax(1)
    s = scores(lab, pred)
    return s["accuracy"], s["uar"]


results = []
variants = json.loads(sys.argv[2])
for name, keys, cfg, seeds, do_cv in variants:
    X = X_of(feats_tr, keys)[use_tr]
    T = tr["soft"][use_tr]
    Xv = X_of(feats_va, keys)
    t0 = time.time()
    probs = []
    for sd in range(seeds):
        h = fr.train_head(X, T, dict(cfg, seed=sd, members=1))  # one head per seed; their mean is the ensemble
        probs.append(fr.head_predict(h, Xv))
        a, u, r = valid_score(probs[-1])
        log.info("%s seed %d: valid acc %.4f UAR %.4f %s", name, sd, a, u, np.round(list(r.values()), 2).tolist())
    a, u, r = valid_score(np.mean(probs, 0))
    row = {"name": name, "keys": keys, "cfg": cfg, "valid_seeds": [valid_score(p)[:2] for p in probs],
           "valid_mean_probs": [a, u], "recall_mean_probs": r, "s": time.time() - t0}
    if do_cv:
        row["cv"] = cv_score(X, T, tr["label"][use_tr], cfg)
    log.info("RESULT %s", json.dumps(row))
    results.append(row)
Path(sys.argv[3]).write_text(json.dumps(results, indent=1))
