"""Fine-tune the expression network (face-api's FaceExpressionNet, ported) on FER+ through the bridge's own crop.

Recipe (docs/FACE_EVIDENCE.md, "Fine-tuning the network"):

- Inputs: the landmark-based 112x112 crop the live path cuts (``bridge.features.expression.crop_square``) of each
  FER+ face, from the MediaPipe landmarks already cached for the face bank (``face_real.extract_landmarks``);
  the crops are cached once as uint8 (``ferplus-<split>-crops-<tag>.npz``).
- Targets: the FER+ vote distribution over the 7 expressions (the FER+ paper's "probability" scheme), classes
  weighted by prior**-balance.
- Augmentation, what cameras do to a face crop: horizontal mirror; small rotation / zoom / shift (landmark
  jitter); gain (down to low light), gamma and sensor noise; low resolution (the crop down to 20-64 px and back:
  a face 20-60 px wide); a hand-like blob over the mouth, whose target is mixed towards uniform
  (``occlusion_soften``) so that a covered mouth lowers the confidence instead of flipping the label. Every
  augmented crop then goes through ``brighten`` exactly as live crops do.
- Schedule: AdamW, linear warm-up then cosine decay, a fixed number of epochs (no selection on the validation
  split); fixed seed.

    PYTHONPATH=$PWD python -m bridge.training.face_finetune --epochs 4 --out artifacts/face-finetune

writes ``face_expression_ferplus.npz`` (the tfjs-layout weights ``ExpressionModel`` loads, with provenance) and
``finetune.json`` (config, per-epoch validation scores, timings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CROP_VERSION = 1
CONFIG = {"epochs": 4, "batch": 16, "lr": 5e-4, "weight_decay": 1e-4, "warmup_steps": 200, "balance": 0.5,
          "seed": 0, "threads": 1,  # one thread: on a busy shared CPU two threads were 3-5x slower, not faster
          "freeze_blocks": 2,  # dense0 and dense1 (low-level features) stay as face-api trained them
          
          # augmentation probabilities / ranges
          "p_affine": 0.8, "max_rot_deg": 10.0, "zoom": (0.9, 1.12), "max_shift": 0.06, "p_mirror": 0.5,
          "p_lowres": 0.3, "lowres_px": (20, 64), "p_lowlight": 0.15, "lowlight_gain": (0.12, 0.4),
          "gain": (0.7, 1.3), "p_gamma": 0.5, "gamma": (0.7, 1.4), "noise_sd": (0.0, 5.0), "p_tint": 0.5,
          "p_occlude": 0.2, "occlusion_soften": 0.5}


def _tag(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def mediapipe_cache(cache_dir: Path, split: str, model_path: str) -> Path:
    from bridge.training.face_real import _settings_tag

    return Path(cache_dir) / f"ferplus-{split}-mediapipe-{_settings_tag(model_path)}.npz"


def crop_cache(ferplus: Path, split: str, cache_dir: Path, model_path: str) -> dict[str, np.ndarray]:
    """The live path's landmark crop of every FER+ ``split`` face with a face found, as uint8 grey (N, 112, 112),
    with soft targets, majority labels, the keep mask and the blendshapes; built once (MediaPipe results from
    their own cache, run now only for images not in it)."""
    from bridge.features.expression import CROP_DOWN, CROP_SIDE, crop_square
    from bridge.training.face_real import (extract_landmarks, fer_canvas, ferplus_targets, image_key,
                                           load_evidence, _settings_tag)

    tag = _tag({"v": CROP_VERSION, "mp": _settings_tag(model_path), "crop": [CROP_SIDE, CROP_DOWN]})
    out = Path(cache_dir) / f"ferplus-{split}-crops-{tag}.npz"
    if out.is_file():
        z = np.load(out)
        return {k: z[k] for k in z.files}
    d = np.load(Path(ferplus) / f"ferplus_{split}.npz")
    images, votes = d["images"], d["votes"]
    mp = mediapipe_cache(cache_dir, split, model_path)
    ev = load_evidence(mp, images) if mp.is_file() else {"cached": np.zeros(len(images), bool)}
    if not ev["cached"].all():
        extract_landmarks(images, model_path, mp)  # resumes: only images not cached yet
        ev = load_evidence(mp, images)
    soft, maj, keep = ferplus_targets(votes)
    crops = np.zeros((len(images), 112, 112), np.uint8)
    present = ev["present"].copy()
    for i in np.flatnonzero(present):
        sq = crop_square(fer_canvas(images[i]), ev["landmarks"][i].astype(np.float32))
        if sq is None:
            present[i] = False
            continue
        crops[i] = sq[:, :, 0]  # FER+ faces are grey: the three channels are equal
    arrays = {"crops": crops, "soft": soft.astype(np.float32), "label": maj, "keep": keep, "present": present,
              "blendshapes": ev["blendshapes"].astype(np.float32), "key": image_key(images)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    return arrays


# ---------------------------------------------------------------------------------------------------------------
# augmentation: what cameras do to a face crop
# ---------------------------------------------------------------------------------------------------------------

def occlude_mouth(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A hand-like blob (ellipse or rounded rectangle, flat colour with texture, soft edge) over the mouth of a
    112x112 crop (the mouth is ~85 px down in the live crop)."""
    import cv2

    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cx, cy = int(56 + rng.uniform(-8, 8)), int(86 + rng.uniform(-6, 8))
    ax, ay = int(rng.uniform(26, 44)), int(rng.uniform(14, 26))
    ang = rng.uniform(-25, 25)
    if rng.random() < 0.7:
        cv2.ellipse(mask, (cx, cy), (ax, ay), ang, 0, 360, 255, -1)
    else:
        box = cv2.boxPoints(((cx, cy), (2 * ax, 2 * ay), ang)).astype(np.int32)
        cv2.fillConvexPoly(mask, box, 255)
    m = cv2.GaussianBlur(mask, (7, 7), 0).astype(np.float32)[..., None] / 255.0 if img.ndim == 3 else \
        cv2.GaussianBlur(mask, (7, 7), 0).astype(np.float32) / 255.0
    base = rng.uniform(40, 230)
    tex = cv2.GaussianBlur(rng.normal(0, 10, (h, w)).astype(np.float32), (0, 0), 3) * 2.0
    grad = np.linspace(-1, 1, h, dtype=np.float32)[:, None] * rng.uniform(-25, 25)
    fill = np.clip(base + tex + grad, 0, 255)
    if img.ndim == 3:
        fill = fill[..., None]
    return (img.astype(np.float32) * (1 - m) + fill * m).astype(np.float32)


def augment(crop: np.ndarray, rng: np.random.Generator, c: dict) -> tuple[np.ndarray, bool]:
    """One uint8 grey 112x112 crop -> (float32 RGB 112x112x3 network input as the live path makes it, occluded?)."""
    import cv2

    from bridge.features.expression import brighten

    g = crop.astype(np.float32)
    if rng.random() < c["p_affine"]:
        a = rng.uniform(-c["max_rot_deg"], c["max_rot_deg"])
        s = rng.uniform(*c["zoom"])
        m = cv2.getRotationMatrix2D((56.0, 56.0), a, s)
        m[:, 2] += rng.uniform(-1, 1, 2) * c["max_shift"] * 112
        g = cv2.warpAffine(g, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < c["p_mirror"]:
        g = g[:, ::-1]
    occluded = rng.random() < c["p_occlude"]
    if occluded:
        g = occlude_mouth(g, rng)
    # light: gain (sometimes low light), gamma, sensor noise, 8-bit quantisation
    gain = rng.uniform(*c["lowlight_gain"]) if rng.random() < c["p_lowlight"] else rng.uniform(*c["gain"])
    g = g * gain
    if rng.random() < c["p_gamma"]:
        g = 255.0 * (np.clip(g, 0, 255) / 255.0) ** rng.uniform(*c["gamma"])
    g = g + rng.normal(0, rng.uniform(*c["noise_sd"]), g.shape)
    g = np.clip(np.round(g), 0, 255).astype(np.uint8)
    if rng.random() < c["p_lowres"]:
        n = int(rng.integers(c["lowres_px"][0], c["lowres_px"][1] + 1))
        g = cv2.resize(cv2.resize(g, (n, n), interpolation=cv2.INTER_AREA), (112, 112),
                       interpolation=cv2.INTER_LINEAR)
    rgb = np.repeat(g[:, :, None].astype(np.float32), 3, 2)
    if rng.random() < c["p_tint"]:
        rgb = np.clip(rgb * rng.uniform(0.9, 1.1, 3).astype(np.float32), 0, 255)
    return brighten(rgb), occluded


def plain(crop: np.ndarray) -> np.ndarray:
    """A cached uint8 grey crop -> the network input the live path makes from it (no augmentation)."""
    from bridge.features.expression import brighten

    return brighten(np.repeat(crop[:, :, None].astype(np.float32), 3, 2))


# ---------------------------------------------------------------------------------------------------------------
# weights out: the tfjs layout ExpressionModel reads
# ---------------------------------------------------------------------------------------------------------------

def _torch_to_tf(name: str, t: np.ndarray) -> np.ndarray:
    kind = name.split("/")[-1]
    if name.startswith("fc/"):
        return t.T if kind == "weights" else t
    if kind in ("filters", "pointwise_filter"):  # [out, in, kh, kw] -> [kh, kw, in, out]
        return t.transpose(2, 3, 1, 0)
    if kind == "depthwise_filter":  # [in, 1, kh, kw] -> [kh, kw, in, 1]
        return t.transpose(2, 3, 0, 1)
    return t  # bias


def save_weights(net, path: Path, base: Path, extra_meta: dict) -> Path:
    """The fine-tuned network -> an npz in the converted weights' format (float32, unquantised), provenance of
    the base weights kept and the fine-tuning described."""
    from bridge.features.expression import _tf_to_torch, load_tfjs_weights

    base_w, base_meta = load_tfjs_weights(base)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    arrays, entries = {}, []
    for j, (name, w) in enumerate(base_w.items()):
        key, _ = _tf_to_torch(name, w)
        a = np.ascontiguousarray(_torch_to_tf(name, sd[key]).astype(np.float32))
        assert a.shape == w.shape, (name, a.shape, w.shape)
        k = f"w{j:02d}"
        arrays[k] = a
        entries.append({"name": name, "shape": list(a.shape), "dtype": "float32", "key": k})
    meta = dict(base_meta, weights=entries, **extra_meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, meta=json.dumps(meta), **arrays)
    return path


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------

def predict(net, crops: np.ndarray, idx: np.ndarray, batch: int = 256, mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Network probabilities and embeddings on the plain (un-augmented) crops ``idx``."""
    import torch

    probs = np.zeros((len(idx), 7), np.float32)
    emb = np.zeros((len(idx), 256), np.float32)
    net.eval()
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            b = idx[s:s + batch]
            x = np.stack([plain(crops[i]) for i in b])
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            lo, e = net(xt)
            p = torch.softmax(lo, 1)
            if mirror:
                lo2, e2 = net(torch.flip(xt, dims=[3]))
                p = (p + torch.softmax(lo2, 1)) / 2
                e = (e + e2) / 2
            probs[s:s + len(b)], emb[s:s + len(b)] = p.numpy(), e.numpy()
    return probs, emb


def valid_scores(net, va: dict, mirror: bool = False) -> dict:
    """FER+ valid, 7-label majority among the kept faces; faces MediaPipe did not find count as wrong."""
    from bridge.training.face_eval import scores

    ev = np.flatnonzero(va["keep"])
    pred = np.full(len(ev), -1)
    have = va["present"][ev]
    p, _ = predict(net, va["crops"], ev[have], mirror=mirror)
    pred[have] = p.argmax(1)
    s = scores(va["label"][ev], pred)
    s.pop("confusion")
    return s


def finetune(tr: dict, va: dict | None, base: Path, config: dict | None = None, log_every: int = 100,
             checkpoint=None):
    import torch

    from bridge.features.expression import build_net

    c = dict(CONFIG, **(config or {}))
    torch.set_num_threads(int(c["threads"]))
    torch.manual_seed(c["seed"])
    rng = np.random.default_rng(c["seed"])
    net = build_net(base)
    frozen = [net.dense0, net.dense1, net.dense2, net.dense3][:int(c["freeze_blocks"])]
    for blk in frozen:
        blk.requires_grad_(False)
    idx_all = np.flatnonzero(tr["keep"] & tr["present"])
    S = tr["soft"]
    prior = np.clip(S[idx_all].mean(0), 1e-4, None)
    w = prior ** -c["balance"]
    w = torch.from_numpy((w / (w * prior).sum()).astype(np.float32))
    uniform = np.full(7, 1 / 7, np.float32)
    steps_per_epoch = math.ceil(len(idx_all) / c["batch"])
    total = steps_per_epoch * c["epochs"]
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], c["lr"], weight_decay=c["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / c["warmup_steps"]) * 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
    history = []
    if va is not None:
        s0 = valid_scores(net, va)
        log.info("epoch 0 (base): valid acc %.4f UAR %.4f", s0["accuracy"], s0["uar"])
        history.append({"epoch": 0, "valid": s0})
    t_start = time.time()
    step = 0
    for ep in range(1, c["epochs"] + 1):
        net.train()
        for blk in frozen:
            blk.eval()
        t0 = time.time()
        order = rng.permutation(idx_all)
        run_loss, n_seen = 0.0, 0
        for s in range(0, len(order), c["batch"]):
            b = order[s:s + c["batch"]]
            xs, ts = [], []
            for i in b:
                x, occ = augment(tr["crops"][i], rng, c)
                t = S[i]
                if occ:
                    t = (1 - c["occlusion_soften"]) * t + c["occlusion_soften"] * uniform
                xs.append(x)
                ts.append(t)
            x = torch.from_numpy(np.ascontiguousarray(np.stack(xs).transpose(0, 3, 1, 2)))
            t = torch.from_numpy(np.stack(ts).astype(np.float32))
            logits, _ = net(x)
            loss = -(t * torch.log_softmax(logits, 1) * w).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item() * len(b)
            n_seen += len(b)
            if step % log_every == 0:
                el = time.time() - t0
                log.info("epoch %d step %d/%d loss %.4f  %.1f ms/face  (epoch eta %.0f s)", ep, step, total,
                         run_loss / n_seen, el / n_seen * 1000, el / n_seen * (len(order) - n_seen))
        rec = {"epoch": ep, "train_loss": run_loss / n_seen, "epoch_s": time.time() - t0}
        if va is not None:
            rec["valid"] = valid_scores(net, va)
            log.info("epoch %d: loss %.4f, %.0f s; valid acc %.4f UAR %.4f %s", ep, rec["train_loss"],
                     rec["epoch_s"], rec["valid"]["accuracy"], rec["valid"]["uar"], rec["valid"]["recall"])
        history.append(rec)
        if checkpoint is not None:
            checkpoint(net, ep, rec)
    return net.eval(), {"config": c, "history": history, "train_s": time.time() - t_start,
                        "n_train": int(len(idx_all))}


# ---------------------------------------------------------------------------------------------------------------
# after training: network outputs (cached per weights), the FER+ head on them, the scores
# ---------------------------------------------------------------------------------------------------------------

def net_outputs(weights: Path, data: dict, cache_dir: Path, split: str, mirror: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """(probs, embedding) of the network ``weights`` on every face of ``data`` with a crop (zeros elsewhere),
    cached per weights file and split."""
    import torch

    from bridge.features.expression import build_net
    from bridge.features.face_model import sha256

    out = Path(cache_dir) / f"ferplus-{split}-net-{sha256(Path(weights))[:16]}{'-mirror' if mirror else ''}.npz"
    if out.is_file():
        z = np.load(out)
        return z["probs"], z["emb"]
    torch.set_num_threads(1)
    net = build_net(Path(weights))
    idx = np.flatnonzero(data["present"])
    probs = np.zeros((len(data["present"]), 7), np.float32)
    emb = np.zeros((len(data["present"]), 256), np.float32)
    t0 = time.time()
    probs[idx], emb[idx] = predict(net, data["crops"], idx, batch=8, mirror=mirror)
    log.info("%s: network on %d %s faces, %.1f ms each", Path(weights).name, len(idx), split,
             (time.time() - t0) / max(len(idx), 1) * 1000)
    np.savez(out, probs=probs, emb=emb)
    return probs, emb


def face_path_scores(probs: np.ndarray, data: dict) -> dict:
    """FER+ 7-label majority on the kept faces; faces without a crop (MediaPipe found none) count as wrong."""
    from bridge.training.face_eval import scores

    ev = np.flatnonzero(data["keep"])
    pred = np.where(data["present"][ev], probs[ev].argmax(1), -1)
    return scores(data["label"][ev], pred)


def neutral_reference(blendshapes: np.ndarray, probs: np.ndarray, soft: np.ndarray, label: np.ndarray) -> dict:
    """The population's neutral face for calibration: median blendshapes / mean log probabilities of the training
    faces with a neutral majority of at least half the votes."""
    m = (label == 0) & (soft[:, 0] >= 0.5)
    return {"neutral_bs": np.median(blendshapes[m], 0).astype(np.float32),
            "neutral_logp": np.log(np.clip(probs[m], 1e-6, 1.0)).mean(0).astype(np.float32), "n": int(m.sum())}


MOUTH_BLENDSHAPES = ("cheekPuff", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouth", "tongueOut")


def occluded_rows(weights: Path, tr: dict, idx: np.ndarray, cache_dir: Path, seed: int = 1, soften: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Extra head-training rows for a covered mouth: the network's embedding of the crop with a hand-like blob
    over the mouth, the mouth blendshapes taken from another random face (what MediaPipe reports under a hand
    is not the person's mouth), the target mixed towards uniform by ``soften``. -> (X rows, soft targets)."""
    import torch

    from bridge.features.expression import build_net
    from bridge.features.face_model import sha256
    from bridge.training.face_real import head_inputs
    from bridge.training.face_synth import BS_INDEX

    rng = np.random.default_rng(seed)
    out = Path(cache_dir) / f"ferplus-train-occluded-{sha256(Path(weights))[:16]}-{seed}-{len(idx)}.npz"
    if out.is_file():
        emb = np.load(out)["emb"]
    else:
        torch.set_num_threads(1)
        net = build_net(Path(weights)).eval()
        emb = np.zeros((len(idx), 256), np.float32)
        with torch.no_grad():
            for s in range(0, len(idx), 8):
                x = np.stack([np.repeat(np.clip(occlude_mouth(tr["crops"][i], rng), 0, 255)[:, :, None], 3, 2)
                              for i in idx[s:s + 8]]).astype(np.float32)
                from bridge.features.expression import brighten

                x = np.stack([brighten(v) for v in x])
                emb[s:s + len(x)] = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))[1].numpy()
        np.savez(out, emb=emb)
    bs = tr["blendshapes"][idx].copy()
    cols = [j for n, j in BS_INDEX.items() if n.startswith(MOUTH_BLENDSHAPES)]
    donor = rng.choice(idx, len(idx))
    bs[:, cols] = tr["blendshapes"][donor][:, cols]
    soft = (1 - soften) * tr["soft"][idx] + soften / 7
    return head_inputs(emb, bs), soft.astype(np.float32)


def compare(finetuned: Path, ferplus: Path, cache_dir: Path, model_path: str, head_config: dict | None = None,
            mirror: bool = True, occlusion_share: float = 0.0) -> tuple[dict, dict]:
    """FER+ valid through the face path's pieces, from the cached crops and MediaPipe results: the port alone,
    the port + its shipped head, the fine-tuned network alone, the fine-tuned network + a head re-fitted on its
    training-split outputs, and (``mirror``) both with mirror test-time averaging. -> (report, re-fitted head)."""
    from bridge.features.expression import DEFAULT_HEAD, PORT_WEIGHTS
    import torch

    from bridge.training.face_real import head_inputs, head_predict, train_head

    torch.set_num_threads(1)  # small matrices on a shared CPU: more threads were slower
    tr = crop_cache(ferplus, "train", cache_dir, model_path)
    va = crop_cache(ferplus, "valid", cache_dir, model_path)
    rep: dict = {}

    def score(name, probs):
        s = face_path_scores(probs, va)
        s.pop("confusion")
        rep[name] = s
        log.info("%-28s acc %.4f UAR %.4f %s", name, s["accuracy"], s["uar"], s["recall"])

    p_port, e_port = net_outputs(PORT_WEIGHTS, va, cache_dir, "valid")
    score("port alone", p_port)
    z = np.load(DEFAULT_HEAD)
    old_head = {k: z[k] for k in z.files if k in ("mu", "sd") or k[0] in "wb"}
    score("port + shipped head", head_predict(old_head, head_inputs(e_port, va["blendshapes"])))
    p_ft, e_ft = net_outputs(finetuned, va, cache_dir, "valid")
    score("fine-tuned alone", p_ft)
    pt, et = net_outputs(finetuned, tr, cache_dir, "train")
    use = tr["keep"] & tr["present"]
    tr_scores = face_path_scores(pt, dict(tr, keep=use))
    rep["fine-tuned alone on its training faces"] = {"accuracy": tr_scores["accuracy"], "uar": tr_scores["uar"]}
    t0 = time.time()
    X, T = head_inputs(et, tr["blendshapes"])[use], tr["soft"][use]
    if occlusion_share > 0:  # rows for a covered mouth (see occluded_rows)
        sub = np.random.default_rng(0).permutation(np.flatnonzero(use))[:int(occlusion_share * use.sum())]
        Xo, To = occluded_rows(finetuned, tr, np.sort(sub), cache_dir)
        X, T = np.concatenate([X, Xo]), np.concatenate([T, To])
    head = train_head(X, T, head_config)
    rep["head_fit_s"] = time.time() - t0
    score("fine-tuned + re-fitted head", head_predict(head, head_inputs(e_ft, va["blendshapes"])))
    if mirror:
        pm, em = net_outputs(finetuned, va, cache_dir, "valid", mirror=True)
        score("fine-tuned alone, mirror TTA", pm)
        score("fine-tuned + head, mirror TTA", head_predict(head, head_inputs(em, va["blendshapes"])))
    return rep, head


def finish(finetuned: Path, ferplus: Path, cache_dir: Path, model_path: str, out: Path,
           occlusion_share: float = 0.2, ship_head: bool = True) -> dict:
    """After training: the comparison on FER+ valid, the head re-fitted on the fine-tuned network's outputs
    (written with the calibration's neutral reference to the package), and the training face bank rebuilt with
    the final face path (``face_real.bank_path``; the network must already be the package default)."""
    from bridge.features import expression as ex
    from bridge.features.face_model import sha256
    import torch

    from bridge.training import face_real as fr

    torch.set_num_threads(1)
    done = Path(out) / "face_head.npz"
    if ship_head and done.is_file() and (Path(out) / "compare.json").is_file() and \
            json.loads(str(np.load(done)["meta"])).get("network_sha256") == sha256(Path(finetuned)):
        # the comparison already ran for these weights: ship its head (no second fit)
        rep = json.loads((Path(out) / "compare.json").read_text())
        z = np.load(done)
        head = {k: z[k] for k in z.files if k in ("mu", "sd") or k[0] in "wb"}
    else:
        rep, head = compare(finetuned, ferplus, cache_dir, model_path, occlusion_share=occlusion_share)
        rep["occlusion_share"] = occlusion_share
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "compare.json").write_text(json.dumps(rep, indent=1))
        fr.save_head(done, head, {"network": Path(finetuned).name, "network_sha256": sha256(Path(finetuned))})
    if not ship_head:
        return rep
    if sha256(ex.DEFAULT_WEIGHTS) != sha256(Path(finetuned)):
        raise RuntimeError(f"{finetuned} is not the package default network ({ex.DEFAULT_WEIGHTS}): copy it there "
                           f"and set DEFAULT_WEIGHTS before rebuilding the bank")
    # the bank: the fine-tuned network's outputs on the training faces (cached), out-of-fold head probabilities
    d = np.load(Path(ferplus) / "ferplus_train.npz")
    images, votes = d["images"], d["votes"]
    ev = fr.load_evidence(mediapipe_cache(cache_dir, "train", model_path), images)
    tr = crop_cache(ferplus, "train", cache_dir, model_path)
    probs, emb = net_outputs(finetuned, tr, cache_dir, "train")
    ev = dict(ev, present=ev["present"] & tr["present"])
    bank = fr.bank_path(cache_dir, model_path)
    t0 = time.time()
    fr.write_bank(bank, images, votes, ev, probs, emb, model_path)
    rep["bank"] = str(bank)
    rep["bank_s"] = time.time() - t0
    b = fr.FaceBank.load(bank)
    z = np.load(bank)
    ref = neutral_reference(b.blendshapes, b.expression, z["soft"], b.label)
    use = tr["keep"] & tr["present"]
    meta = {"trained_on": f"FER+ training split ({len(images):,} images; faces found by MediaPipe with a majority "
                          f"among the 7 expressions: {int(use.sum())})"
                          + (f", plus {int(occlusion_share * use.sum())} covered-mouth rows" if occlusion_share else ""),
            "recipe": fr.HEAD_CONFIG, "network": Path(finetuned).name, "network_sha256": sha256(Path(finetuned)),
            "targets": "soft vote distribution (FER+ 'probability' scheme), classes weighted by prior**-0.5; "
                       "covered-mouth rows: target mixed half-way towards uniform",
            "occlusion_share": occlusion_share, "selected_on": "FER+ validation split (PublicTest)",
            "neutral_reference": f"median blendshapes / mean log out-of-fold probabilities of the {ref['n']} FER+ "
                                 f"training faces with a neutral majority (>= half the votes)"}
    fr.save_head(ex.DEFAULT_HEAD, dict(head, neutral_bs=ref["neutral_bs"], neutral_logp=ref["neutral_logp"]), meta)
    rep["head_sha256"] = sha256(ex.DEFAULT_HEAD)
    log.warning("wrote %s: record its sha256 in bridge/features/expression.py SHA256['face_head.npz'] = %r (the "
                "shipped files are checked on load)", ex.DEFAULT_HEAD, rep["head_sha256"])
    (Path(out) / "compare.json").write_text(json.dumps(rep, indent=1))
    return rep


def _main(argv=None) -> int:
    import argparse

    from bridge.features.expression import PORT_WEIGHTS
    from bridge.features.face_model import sha256
    from bridge.training.face_real import DEFAULT_FERPLUS, _landmarker_path

    ap = argparse.ArgumentParser(description="fine-tune the expression network on FER+ (docs/FACE_EVIDENCE.md)")
    ap.add_argument("--ferplus", default=str(DEFAULT_FERPLUS))
    ap.add_argument("--cache", default=".cache/features")
    ap.add_argument("--out", default="artifacts/face-finetune")
    ap.add_argument("--base", default=str(PORT_WEIGHTS), help="weights to start from (the converted port)")
    ap.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    ap.add_argument("--seed", type=int, default=CONFIG["seed"])
    ap.add_argument("--lr", type=float, default=CONFIG["lr"])
    ap.add_argument("--freeze-blocks", type=int, default=CONFIG["freeze_blocks"],
                    help="how many of the four dense blocks (from the input) stay as --base has them")
    ap.add_argument("--limit", type=int, default=0, help="train on this many faces only (a smoke run)")
    ap.add_argument("--no-valid", action="store_true", help="skip the per-epoch FER+ validation scores")
    ap.add_argument("--stage", choices=("train", "compare", "finish"), default="train",
                    help="train: fine-tune; compare: FER+ valid scores of --weights (alone, + a re-fitted head, "
                         "mirror TTA) vs the port; finish: compare, then write the re-fitted head to the package "
                         "and rebuild the training face bank (--weights must be the package default network)")
    ap.add_argument("--weights", help="fine-tuned weights for --stage compare/finish")
    ap.add_argument("--occlusion-share", type=float, default=0.2,
                    help="covered-mouth rows added to the head's training set (share of the faces)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    mp = str(_landmarker_path())
    if a.stage != "train":
        if not a.weights:
            ap.error("--weights is required for --stage compare/finish")
        rep = finish(Path(a.weights), Path(a.ferplus), Path(a.cache), mp, Path(a.out), a.occlusion_share,
                     ship_head=a.stage == "finish")
        print(json.dumps(rep, indent=1))
        return 0
    tr = crop_cache(Path(a.ferplus), "train", Path(a.cache), mp)
    va = None if a.no_valid else crop_cache(Path(a.ferplus), "valid", Path(a.cache), mp)
    if a.limit:
        keep = np.zeros_like(tr["keep"])
        keep[np.random.default_rng(a.seed).permutation(np.flatnonzero(tr["keep"] & tr["present"]))[:a.limit]] = True
        tr = dict(tr, keep=keep)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from bridge.features.expression import load_tfjs_weights

    base_meta = load_tfjs_weights(Path(a.base))[1]

    def extra(rep: dict) -> dict:
        return {"fine_tuned": {
        "data": "FER+ training split (Barsoum et al. 2016, labels MIT; FER2013 images: collected from web image "
                "search, no formal licence)",
        "n_train_faces": rep["n_train"], "recipe": {k: v for k, v in rep["config"].items()},
        "targets": "FER+ vote distribution over the 7 expressions, classes weighted by prior**-balance",
        "inputs": "the bridge's landmark crop (bridge.features.expression.crop_square) of MediaPipe landmarks",
        "base_weights_sha256": sha256(Path(a.base)), "script": "bridge/training/face_finetune.py",
        "base_fine_tuned": base_meta.get("fine_tuned"),  # a second stage: what --base itself was tuned with
        "valid_last_epoch": rep["history"][-1].get("valid")}}

    def checkpoint(net, ep, rec):
        save_weights(net, out / f"epoch{ep}.npz", Path(a.base), {})
        (out / "progress.json").write_text(json.dumps(rec, indent=1, default=str))

    net, rep = finetune(tr, va, Path(a.base), {"epochs": a.epochs, "seed": a.seed, "lr": a.lr,
                                               "freeze_blocks": a.freeze_blocks}, checkpoint=checkpoint)
    save_weights(net, out / "face_expression_ferplus.npz", Path(a.base), extra(rep))
    (out / "finetune.json").write_text(json.dumps(rep, indent=1, default=str))
    log.info("wrote %s (%.0f s training)", out / "face_expression_ferplus.npz", rep["train_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
