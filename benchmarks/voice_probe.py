"""Fast feature probe: logistic regression on clip-pooled audio features (mean and std of the tick vectors over
each clip's voiced ticks), by feature block, with population or per-speaker normalisation -- on the RAVDESS
validation speakers AND on the Spanish set (another language, never trained on). Used to choose the voice features
before spending LSTM time (numbers in docs/MODEL_CARD.md, "What carries over to another language").

    python benchmarks/voice_probe.py [--cache .cache/features] [--out probe.json]

Train: the chain sets of the default recipe (built by ``emotion-bridge train``; clean + augmented), with the
speech encoder's columns (the probe computes them). Evaluation: each clip pooled alone (population normalisation:
a fresh visitor) or normalised by its speaker's statistics over all of that speaker's clips (a session's worth of
voice). Scores: 8-label UAR on RAVDESS, 7-label UAR on the Spanish set, and high vs low arousal AUC (a binary
classifier on the same features: angry/happy/fearful/surprised vs neutral/sad/calm).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def pooled(seqs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    X, y, spk = [], [], []
    for s in seqs:
        for c in np.unique(s.clip[(s.clip >= 0) & (s.weight > 0)]):
            sel = (s.clip == c) & (s.weight > 0) & s.voice
            if sel.sum() < 3:
                sel = (s.clip == c) & (s.weight > 0)
            a = s.audio[sel]
            X.append(np.concatenate([a.mean(0), a.std(0)]))
            y.append(int(np.bincount(s.label[sel]).argmax()))
            spk.append(s.speaker)
    return np.array(X), np.array(y), spk


def per_speaker(X: np.ndarray, spk: list[str]) -> np.ndarray:
    out = X.copy()
    spk = np.array(spk)
    for s in np.unique(spk):
        m = spk == s
        out[m] = (X[m] - X[m].mean(0)) / (X[m].std(0) + 1e-6)
    return out


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from bridge.config import AudioConfig, VideoConfig
    from bridge.labels import LABELS
    from bridge.training.build import build_sequences
    from bridge.training.data import load_dataset
    from bridge.training.metrics import uar
    from bridge.training.robustness import HIGH_AROUSAL, LOW_AROUSAL, load_clips
    from bridge.training.train import TrainConfig

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(shared / "ravdess-speech-16k"))
    ap.add_argument("--other", default=str(shared / "spanish-emotion-16k"), help="another corpus, scored only")
    ap.add_argument("--cache", default=".cache/features")
    ap.add_argument("--C", type=float, default=0.01, help="inverse L2 strength of the logistic regressions")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = TrainConfig(data=args.data, out="")
    clips = load_dataset(args.data)
    val = {f"actor{a:02d}" for a in cfg.val_actors}
    tr = [c for c in clips if c.speaker not in val]
    va = [c for c in clips if c.speaker in val]
    A, V = AudioConfig(speech_encoder=True), VideoConfig()
    train_seqs = []
    for r in range(cfg.chain_sets):
        aug_seed = cfg.data_seed * 1000 + r if (r > 0 and cfg.augment) else None
        train_seqs += build_sequences(tr, A, V, cfg.tick_hz, cfg.data_seed * 1000 + r, cfg.chain_len, False,
                                      Path(args.cache), 1, None, cfg.speed_perturb if r > 0 else 0.0, aug_seed)
    singles = build_sequences(va, A, V, cfg.tick_hz, cfg.data_seed * 1000 + 778, cfg.chain_len, True,
                              Path(args.cache), 1)
    other, _, _ = load_clips(load_dataset(args.other))
    other_seqs = build_sequences(other, A, V, cfg.tick_hz, 4243, cfg.chain_len, True, Path(args.cache), 1)
    from bridge.features.audio import AudioFeatures

    names = AudioFeatures(A).names
    Xtr, ytr, str_ = pooled(train_seqs)
    Xva, yva, sva = pooled(singles)
    Xo, yo, so = pooled(other_seqs)
    emb = [i for i, n in enumerate(names) if n.startswith("emb")]
    blocks = {
        "embedding": emb,
        "mfcc": [i for i, n in enumerate(names) if n.startswith(("mfcc", "dmfcc"))],
        "pitch": [i for i, n in enumerate(names) if n.startswith(("pitch", "voiced"))],
        "spectral": [i for i, n in enumerate(names) if n.startswith(("centroid", "flux", "zcr"))],
        "prosody": [i for i, n in enumerate(names) if n.startswith(("rel_db", "pitch", "voiced", "centroid",
                                                                     "flux", "zcr", "onset", "speech_frac"))],
    }
    blocks["all but the embedding"] = [i for i in range(len(names)) if i not in emb]
    blocks["all"] = list(range(len(names)))
    hi = [LABELS.index(x) for x in HIGH_AROUSAL]
    lo = [LABELS.index(x) for x in LOW_AROUSAL]
    D = len(names)
    res = {}
    for bname, idx in blocks.items():
        cols = idx + [D + i for i in idx]  # mean and std
        for norm in ("population", "per_speaker"):
            a, b, o = Xtr[:, cols], Xva[:, cols], Xo[:, cols]
            if norm == "per_speaker":
                a, b, o = per_speaker(a, str_), per_speaker(b, sva), per_speaker(o, so)
            sc = StandardScaler().fit(a)
            a, b, o = sc.transform(a), sc.transform(b), sc.transform(o)
            clf = LogisticRegression(C=args.C, max_iter=3000, class_weight="balanced").fit(a, ytr)
            po = clf.predict_proba(o)
            po[:, [k for k in range(len(LABELS)) if k not in set(yo)]] = 0.0  # the argmax over its labels
            ar = np.isin(ytr, hi + lo)
            bin_ = LogisticRegression(C=args.C, max_iter=3000, class_weight="balanced").fit(a[ar], np.isin(ytr[ar], hi))
            mb, mo = np.isin(yva, hi + lo), np.isin(yo, hi + lo)
            r = {"ravdess_uar": uar(yva, clf.predict(b)),
                 "ravdess_arousal_auc": roc_auc_score(np.isin(yva[mb], hi), bin_.decision_function(b[mb])),
                 "other_uar": uar(yo, po.argmax(1)),
                 "other_arousal_auc": roc_auc_score(np.isin(yo[mo], hi), bin_.decision_function(o[mo]))}
            res[f"{bname}/{norm}"] = {k: round(float(v), 4) for k, v in r.items()}
            print(f"{bname:>22s} {norm:>12s}: " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
