"""Fast feature probe: logistic regression on clip-pooled audio features (the cached training sequences), by
feature block, with population or per-speaker normalisation. Used to choose the voice features before spending
LSTM time (numbers in docs/MODEL_CARD.md).

    python benchmarks/voice_probe.py [--cache .cache/features] [--out probe.json]

Train: the chain sets of the default recipe (built by ``emotion-bridge train``; clean + augmented). Evaluation:
the validation speakers' single clips (each clip pooled alone = a fresh visitor) and, for "per speaker", the same
clips normalised by their speaker's statistics over all of that speaker's clips (a session's worth of voice).
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
    from sklearn.preprocessing import StandardScaler

    from bridge.config import AudioConfig, VideoConfig
    from bridge.training.build import build_sequences
    from bridge.training.data import load_dataset
    from bridge.training.metrics import uar
    from bridge.training.train import TrainConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/ravdess-speech-16k"))
    ap.add_argument("--cache", default=".cache/features")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = TrainConfig(data=args.data, out="")
    clips = load_dataset(args.data)
    val = {f"actor{a:02d}" for a in cfg.val_actors}
    tr = [c for c in clips if c.speaker not in val]
    va = [c for c in clips if c.speaker in val]
    A, V = AudioConfig(), VideoConfig()
    train_seqs = []
    for r in range(cfg.chain_sets):
        aug_seed = cfg.data_seed * 1000 + r if (r > 0 and cfg.augment) else None
        train_seqs += build_sequences(tr, A, V, cfg.tick_hz, cfg.data_seed * 1000 + r, cfg.chain_len, False,
                                      Path(args.cache), 1, None, cfg.speed_perturb if r > 0 else 0.0, aug_seed)
    singles = build_sequences(va, A, V, cfg.tick_hz, cfg.data_seed * 1000 + 778, cfg.chain_len, True,
                              Path(args.cache), 1)
    from bridge.features.audio import AudioFeatures

    names = AudioFeatures().names
    Xtr, ytr, str_ = pooled(train_seqs)
    Xva, yva, sva = pooled(singles)
    blocks = {
        "embedding": [i for i, n in enumerate(names) if n.startswith("emb")],
        "mfcc": [i for i, n in enumerate(names) if n.startswith(("mfcc", "dmfcc"))],
        "prosody": [i for i, n in enumerate(names) if n.startswith(("rel_db", "pitch", "voiced", "centroid",
                                                                     "flux", "zcr", "onset", "speech_frac"))],
    }
    blocks["mfcc+prosody"] = blocks["mfcc"] + blocks["prosody"]
    blocks["all"] = list(range(len(names)))
    D = len(names)
    res = {}
    for bname, idx in blocks.items():
        cols = idx + [D + i for i in idx]  # mean and std
        for norm in ("population", "per_speaker"):
            a, b = Xtr[:, cols], Xva[:, cols]
            if norm == "per_speaker":
                a, b = per_speaker(a, str_), per_speaker(b, sva)
            sc = StandardScaler().fit(a)
            clf = LogisticRegression(C=0.05, max_iter=2000).fit(sc.transform(a), ytr)
            res[f"{bname}/{norm}"] = round(uar(yva, clf.predict(sc.transform(b))), 4)
            print(f"{bname:>13s} {norm:>12s}: UAR {res[f'{bname}/{norm}']:.3f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
