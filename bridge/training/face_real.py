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
            arrays = {f: z[f] for f in ("present", "blendshapes", "pose", "landmarks")}  # read each array once
            for j, k in enumerate(z["key"]):
                done[str(k)] = {f: a[j] for f, a in arrays.items()}
    # the expression network is not needed here (its outputs come from the cached landmarks later)
    tracker = FaceTracker(model_path, 0.3, max_input_side=CANVAS, running_mode="image", expression=False)
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


# ---------------------------------------------------------------------------------------------------------------
# The face bank: per-image evidence of the FER+ training faces, and the training-time generator built on it
# ---------------------------------------------------------------------------------------------------------------

# FER+ majority label -> the bridge's labels that draw from it (calm has no FER+ class: relaxed neutral faces)
BANK_SOURCES = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
                "fearful": "fearful", "disgust": "disgust", "surprised": "surprised"}
MIN_AGREEMENT = 0.5  # a bank face's majority label has at least half of the (7-class) votes
BANK_VERSION = 1


def ferplus_targets(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FER+ votes (N, 10) -> (soft targets (N, 7) in EXPRESSION_LABELS order, majority label index in that order
    (N,), keep mask: the most-voted of all 10 columns is one of the 7 expressions)."""
    from bridge.features.expression import EXPRESSION_LABELS

    v = np.asarray(votes, np.float32)
    perm = [FERPLUS_COLUMNS.index(k) for k in EXPRESSION_LABELS]
    soft = v[:, perm]
    soft = soft / np.maximum(soft.sum(1, keepdims=True), 1.0)
    top = v.argmax(1)
    keep = top < 7 - 0  # neutral..fearful are columns 0-6; contempt, unknown, NF are dropped
    maj = np.array([EXPRESSION_LABELS.index(FERPLUS_COLUMNS[t]) if t < 7 else 0 for t in top])
    return soft, maj, keep


class FaceBank:
    """Per-image evidence of real labelled faces (the FER+ training split through the bridge's face path):
    blendshapes, head pose, the face path's expression probabilities (out-of-fold: each face scored by a head
    that never saw it), grouped by label."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict):
        self.meta = meta
        self.blendshapes = arrays["blendshapes"].astype(np.float32)
        self.expression = arrays["expression"].astype(np.float32)
        self.pose = arrays["pose"].astype(np.float32)
        self.label = arrays["label"].astype(np.int64)  # EXPRESSION_LABELS index
        self.agreement = arrays["agreement"].astype(np.float32)
        from bridge.features.expression import EXPRESSION_LABELS

        self.by_label = {lab: np.flatnonzero((self.label == EXPRESSION_LABELS.index(src))
                                             & (self.agreement >= MIN_AGREEMENT))
                         for lab, src in BANK_SOURCES.items()}

    @classmethod
    def load(cls, path: Path) -> "FaceBank":
        z = np.load(path, allow_pickle=False)
        return cls({k: z[k] for k in z.files if k != "meta"}, json.loads(str(z["meta"])))

    def __len__(self) -> int:
        return len(self.label)


def _ou_noise(rng: np.random.Generator, n: int, fps: float, tau_s: float, sd: float, dims: int) -> np.ndarray:
    from bridge.training.face_synth import _ou

    return _ou(rng, n, fps, tau_s, sd, dims)


def real_observations(timeline, bank: FaceBank, fps: float = 30.0, rng: np.random.Generator | None = None,
                      t0: float = 0.0, speaking: np.ndarray | None = None, config=None, still: bool = False,
                      noise: float | None = None, jitter: float = 0.0):
    """Per-frame ``FaceObservation``s for a label timeline ``[(label, intensity, duration_s), ...]`` from REAL
    faces: the synthetic generator supplies only the dynamics (expression episodes with onset / apex / offset,
    intensity, head-pose drift, face size, dropouts, talking mouth and blinks); the expression itself -- the
    blendshapes and the expression probabilities -- is a blend between a real neutral face (the visitor's resting
    face, one per sequence) and a real face of the segment's label (one per segment), weighted by the episode
    envelope. See docs/FACE_EVIDENCE.md.

    ``still``: a visitor standing still (``SynthConfig.still`` dynamics), with a tenth of the measurement noise and,
    in half of such sequences, no blinks -- a face whose window standard deviations are near 0, as a still face
    in front of a camera gives and as ``emotion-bridge evaluate --through-model`` holds one. ``noise``: a factor on
    the measurement noise (default 0.1 still, 1 otherwise; a camera in low light or a small face gives more);
    ``jitter``: sigma of white per-frame noise on the blendshapes and the expression probabilities (landmark jitter
    from frame to frame)."""
    from bridge.features.face import FaceObservation
    from bridge.labels import LABELS
    from bridge.training import face_synth as fs

    if rng is None:
        raise TypeError("rng (a numpy Generator) is required")
    cfg = config or fs.SynthConfig()
    if still:
        cfg = cfg.still()
    track = fs.synthesize(timeline, fps, rng, t0, speaking, config=cfg)
    n = len(track.times)
    if n == 0:
        return []
    segs = fs._parse_timeline(timeline)
    rest = int(rng.choice(bank.by_label["neutral"]))
    # the apex face of each segment; a label's activation column uses the face of its latest segment so far
    starts = np.cumsum([0.0] + [d for _, _, d in segs])[:-1]
    t = track.times - t0
    blend_bs = np.repeat(bank.blendshapes[rest][None], n, 0).astype(np.float64)
    blend_p = np.repeat(bank.expression[rest][None], n, 0).astype(np.float64)
    act = np.clip(track.activation, 0.0, None)
    tot = act.sum(1)
    act = act / np.maximum(tot, 1.0)[:, None]  # never more than the full apex
    for li, lab in enumerate(LABELS):
        if not np.any(act[:, li] > 0):
            continue
        a = act[:, li]
        seg_ids = [k for k, s in enumerate(segs) if s[0] == lab]
        img = {k: int(rng.choice(bank.by_label[lab])) for k in seg_ids}
        # frame -> the latest segment of this label that has started (or its first one, for a preceding offset)
        which = np.full(n, seg_ids[0] if seg_ids else -1)
        for k in seg_ids:
            which[t >= starts[k]] = k
        if which[0] < 0:
            continue
        ids = np.array([img[k] for k in which])
        blend_bs += a[:, None] * (bank.blendshapes[ids] - bank.blendshapes[rest])
        blend_p += a[:, None] * (bank.expression[ids] - bank.expression[rest])
    # talking mouth and blinks from the synthetic dynamics
    spk = track.speaking.astype(np.float64)
    bs = blend_bs
    if spk.max() > 0:
        bs = bs + spk[:, None] * fs._talking(rng, cfg, track.person, t, fps)
    calm = np.clip(track.activation[:, LABELS.index("calm")], 0.0, 1.0)
    blink = fs._blinks(rng, cfg, track.person, t, fps, spk, calm)
    if still and rng.random() < 0.5:
        blink[:] = 0.0
    noise = (0.1 if still else 1.0) if noise is None else float(noise)
    bs = np.clip(bs, 0.0, 1.0)
    I = fs.BS_INDEX
    for ch in ("eyeBlinkLeft", "eyeBlinkRight"):
        bs[:, I[ch]] += (1.0 - bs[:, I[ch]]) * blink
    for ch in ("eyeWideLeft", "eyeWideRight"):
        bs[:, I[ch]] *= 1.0 - blink
    # measurement noise: blendshapes relative + floor, expression probabilities in log space (more when talking
    # or blinking: the network sees a moving mouth / closed eyes)
    bs = np.clip(bs + _ou_noise(rng, n, fps, 0.1, 1.0, bs.shape[1]) * (0.004 + 0.06 * bs) * noise, 0.0, 1.0)
    logp = np.log(np.clip(blend_p, 1e-4, 1.0))
    sd = (0.25 + 0.25 * spk + 0.5 * blink) * noise
    logp = logp + _ou_noise(rng, n, fps, 0.15, 1.0, logp.shape[1]) * sd[:, None]
    p = np.exp(logp - logp.max(1, keepdims=True))
    p = p / p.sum(1, keepdims=True)
    if jitter > 0:
        bs = np.clip(bs + rng.normal(0.0, jitter, bs.shape), 0.0, 1.0)
        p = np.clip(p + rng.normal(0.0, jitter, p.shape), 1e-4, None)
        p = p / p.sum(1, keepdims=True)
    p = p.astype(np.float32)
    bs = bs.astype(np.float32)
    out = []
    for i in range(n):
        if track.present[i]:
            out.append(FaceObservation(float(track.times[i]), True, bs[i],
                                       tuple(float(x) for x in track.pose[i]), float(track.size[i]),
                                       expression=p[i]))
        else:
            out.append(FaceObservation(float(track.times[i]), False))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The FER+ head: [embedding, blendshapes] -> 7 expressions, trained on the soft vote targets
# ---------------------------------------------------------------------------------------------------------------

HEAD_CONFIG = {"hidden": 256, "dropout": 0.5, "epochs": 40, "lr": 3e-3, "weight_decay": 1e-2, "batch": 256,
               "balance": 0.5, "seed": 0}
# A config may add "members": K heads trained alike from seeds seed .. seed+K-1, their probabilities averaged (an
# ensemble; 1 when absent, as shipped). docs/FACE_EVIDENCE.md, "Head ensembles": the one consistent gain of the head
# variants measured on FER+; not the default yet (shipping it means rebuilding the bank and retraining the affect
# model on it).


def head_inputs(embedding: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(embedding, np.float32), np.asarray(blendshapes, np.float32)], 1)


def train_head(X: np.ndarray, soft: np.ndarray, config: dict | None = None) -> dict[str, np.ndarray]:
    """Soft-target cross-entropy (the FER+ "probability" scheme), classes weighted by prior**-balance.
    Returns the head's arrays (mu, sd, w0, b0[, w1, b1]); with ``members`` > 1 the weights and biases of that many
    heads from consecutive seeds, stacked on a first axis (w0: members x inputs x hidden), which ``head_predict``
    and ``FaceHead`` average. Seeds torch's generator for its own draws and restores it after: a face bank built
    inside ``emotion-bridge train`` (an empty cache) used to re-seed the affect model's initialisation, so a cold
    and a warm run trained different networks."""
    import torch

    c = dict(HEAD_CONFIG, **(config or {}))
    with torch.random.fork_rng():
        heads = [_train_head(X, soft, dict(c, seed=c["seed"] + k)) for k in range(int(c.get("members", 1)))]
    if len(heads) == 1:
        return heads[0]
    out = {"mu": heads[0]["mu"], "sd": heads[0]["sd"]}  # the same data: the same standardisation
    for k in heads[0]:
        if k not in out:
            out[k] = np.stack([h[k] for h in heads])
    return out


def _train_head(X: np.ndarray, soft: np.ndarray, config: dict | None) -> dict[str, np.ndarray]:
    import torch

    c = dict(HEAD_CONFIG, **(config or {}))
    torch.manual_seed(c["seed"])
    A = torch.from_numpy(np.asarray(X, np.float32))
    S = torch.from_numpy(np.asarray(soft, np.float32))
    mu, sd = A.mean(0), A.std(0) + 1e-3
    A = (A - mu) / sd
    prior = S.mean(0).clamp_min(1e-4)
    w = prior ** -c["balance"]
    w = w / (w * prior).sum()
    nn = torch.nn
    if c["hidden"]:
        net = nn.Sequential(nn.Linear(A.shape[1], c["hidden"]), nn.ReLU(), nn.Dropout(c["dropout"]),
                            nn.Linear(c["hidden"], S.shape[1]))
        lin = [net[0], net[3]]
    else:
        net = nn.Sequential(nn.Linear(A.shape[1], S.shape[1]))
        lin = [net[0]]
    opt = torch.optim.AdamW(net.parameters(), c["lr"], weight_decay=c["weight_decay"])
    g = torch.Generator().manual_seed(c["seed"])
    for _ in range(c["epochs"]):
        net.train()
        idx = torch.randperm(len(A), generator=g)
        for s in range(0, len(A), c["batch"]):
            b = idx[s:s + c["batch"]]
            lp = torch.log_softmax(net(A[b]), 1)
            loss = -(S[b] * lp * w).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    out = {"mu": mu.numpy(), "sd": sd.numpy()}
    for i, layer in enumerate(lin):
        out[f"w{i}"] = layer.weight.detach().numpy().T.copy()
        out[f"b{i}"] = layer.bias.detach().numpy().copy()
    return out


def save_head(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    from bridge.features.expression import EXPRESSION_LABELS, HEAD_FEATURES

    meta = dict(meta, features=list(HEAD_FEATURES), labels=list(EXPRESSION_LABELS),
                n_layers=sum(1 for k in arrays if k.startswith("w")),
                members=int(arrays["w0"].shape[0]) if arrays["w0"].ndim == 3 else 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=json.dumps(meta), **arrays)


def head_predict(arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """The head's probabilities for the rows of ``X`` (the mean of its members' for an ensemble)."""
    from bridge.features.expression import head_probs

    n = sum(1 for k in arrays if k.startswith("w"))
    return head_probs(arrays["mu"], arrays["sd"], [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(n)], X)


def out_of_fold(X: np.ndarray, soft: np.ndarray, folds: int = 5, seed: int = 0, config: dict | None = None
                ) -> np.ndarray:
    """Each row's head probabilities from a head trained on the other folds."""
    fold = np.random.default_rng(seed).integers(0, folds, len(X))
    out = np.zeros((len(X), soft.shape[1]), np.float32)
    for f in range(folds):
        m = fold == f
        out[m] = head_predict(train_head(X[~m], soft[~m], config), X[m])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Building the bank (once; cached) and the default locations
# ---------------------------------------------------------------------------------------------------------------

FERPLUS_ENV = "BRIDGE_FERPLUS"
DEFAULT_FERPLUS = Path("../shared/data/ferplus")


def ferplus_dir() -> Path | None:
    import os

    for p in (os.environ.get(FERPLUS_ENV), DEFAULT_FERPLUS):
        if p and (Path(p) / "ferplus_train.npz").is_file():
            return Path(p)
    return None


def bank_tag(model_path: str) -> str:
    """Settings the bank depends on: extraction, the landmarker, the network weights and the head recipe."""
    from bridge.features.expression import (CROP_DOWN, CROP_SIDE, DEFAULT_WEIGHTS, LOW_LIGHT_MEAN,
                                            LOW_LIGHT_TARGET)
    from bridge.features.face_model import sha256

    s = json.dumps({"bank": BANK_VERSION, "mp": _settings_tag(model_path), "crop": [CROP_SIDE, CROP_DOWN, LOW_LIGHT_MEAN, LOW_LIGHT_TARGET],
                    "net": sha256(DEFAULT_WEIGHTS)[:16], "head": HEAD_CONFIG})
    return hashlib.sha256(s.encode()).hexdigest()[:12]


def bank_path(cache_dir: Path, model_path: str) -> Path:
    return Path(cache_dir) / f"ferplus-face-bank-{bank_tag(model_path)}.npz"


def build_bank(ferplus: Path, cache_dir: Path, model_path: str) -> Path:
    """FER+ train split -> the face bank (MediaPipe once per image, the network once per face, out-of-fold head
    probabilities). Intermediate caches are kept in ``cache_dir`` (resumable)."""
    out = bank_path(cache_dir, model_path)
    if out.is_file():
        return out
    d = np.load(Path(ferplus) / "ferplus_train.npz")
    images, votes = d["images"], d["votes"]
    mp_cache = Path(cache_dir) / f"ferplus-train-mediapipe-{_settings_tag(model_path)}.npz"
    log.info("face bank: MediaPipe on %d FER+ training faces (once; ~10 ms each) -> %s", len(images), mp_cache)
    extract_landmarks(images, model_path, mp_cache)
    ev = load_evidence(mp_cache, images)
    log.info("face bank: expression network on %d faces", int(ev["present"].sum()))
    probs, emb = network_evidence(images, ev)
    return write_bank(out, images, votes, ev, probs, emb, model_path)


def write_bank(out: Path, images, votes, ev, probs, emb, model_path: str) -> Path:
    soft, maj, keep = ferplus_targets(votes)
    use = keep & ev["present"]
    X = head_inputs(emb, ev["blendshapes"])[use]
    log.info("face bank: out-of-fold head probabilities for %d faces", int(use.sum()))
    oof = out_of_fold(X, soft[use])
    agreement = soft[use][np.arange(use.sum()), maj[use]]
    arrays = {"key": image_key(images[use]), "index": np.flatnonzero(use), "label": maj[use],
              "agreement": agreement.astype(np.float32), "soft": soft[use].astype(np.float32),
              "blendshapes": ev["blendshapes"][use].astype(np.float32), "pose": ev["pose"][use].astype(np.float32),
              "expression": oof, "net_probs": probs[use].astype(np.float32)}
    meta = {"source": "FER+ training split (Barsoum et al. 2016; FER2013 images, no formal licence)",
            "n_images": int(len(images)), "n_faces": int(use.sum()), "tag": bank_tag(model_path),
            "head": HEAD_CONFIG, "min_agreement": MIN_AGREEMENT}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, meta=json.dumps(meta), **arrays)
    tmp.replace(out)
    return out


_BANKS: dict[str, FaceBank | None] = {}


def _landmarker_path() -> Path:
    from bridge.features import face_model as fm

    try:
        return fm.resolve(None, download=False)
    except fm.FaceModelError:
        shared = Path("../shared/models/face_landmarker.task")
        if shared.is_file():
            return shared
        raise


class FaceBankError(RuntimeError):
    """Real-face training evidence was asked for and cannot be had; the message says how to get it."""


def default_bank(cache_dir: Path, model_path: str | None = None, required: bool = False) -> FaceBank | None:
    """The face bank for training (built on first use when FER+ is present). Without FER+ or the landmarker:
    ``FaceBankError`` when ``required``, else None with a warning (the synthetic generator is used)."""
    from bridge.features import face_model as fm

    key = str(cache_dir)
    if key not in _BANKS:
        ferplus = ferplus_dir()
        try:
            mp = str(model_path or _landmarker_path())
        except fm.FaceModelError as e:
            why = f"the MediaPipe face model is not available ({e})"
        else:
            path = bank_path(cache_dir, mp)
            if path.is_file() or ferplus is not None:
                _BANKS[key] = FaceBank.load(path if path.is_file() else build_bank(ferplus, Path(cache_dir), mp))
                return _BANKS[key]
            why = (f"FER+ was not found: set ${FERPLUS_ENV} to the folder with ferplus_train.npz "
                   f"(looked in ${FERPLUS_ENV} and {DEFAULT_FERPLUS.resolve()})")
        if required:
            raise FaceBankError(f"real-face training evidence is unavailable: {why}. Or pass --synthetic-faces to "
                                f"train the face branch on the synthetic generator alone (face-only states are "
                                f"much weaker: docs/FACE_EVIDENCE.md).")
        log.warning("real-face training evidence unavailable (%s): using the synthetic face generator", why)
        _BANKS[key] = None
    return _BANKS[key]
