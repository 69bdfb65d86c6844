"""Which voice features move with the corpus (language, recording) rather than the emotion, and what dropping them
does -- a linear probe on clip-pooled features of single clips, each from a fresh state (a fresh visitor).

    python benchmarks/corpus_shift.py [--cache .cache/features] [--out results.json]

1. ``shift``: per feature, the mean over the Spanish set's voiced ticks minus the mean over the RAVDESS training
   clips' voiced ticks, per label, in RAVDESS training standard deviations (the largest first); and, for scale, the
   angry - neutral difference within each corpus.
2. ``ablation``: logistic regression (L2, C 0.01, balanced classes) on the mean and std of each clip's voiced-tick
   features. Train: the RAVDESS training clips as recorded + two speed-perturbed sets through a random microphone,
   room and noise per speaker (the training augmentation); 10 draws of 11 of the 14 training speakers, the same
   draws for every row, Δ = the paired difference to the first row. Scores: RAVDESS validation speakers (15-18)
   8-label UAR; Spanish (never trained on) 7-label UAR; Spanish high vs low arousal (angry/happy/fearful/surprised vs
   neutral/sad) by a binary probe: AUC, and balanced accuracy at the probability 0.5 fitted on RAVDESS (a
   threshold that must carry over, as an artist's does).

Rows whose columns the running front end no longer computes (e.g. the delta-MFCC spread, dropped on 2026-12-03 on
this evidence) are skipped: the recorded results (benchmarks/results/corpus-shift-2026-12-03.json) were measured
with the v2 front end (commit ff2647f) that still had them.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

DROPS = ([], ["dmfcc"], ["dmfcc0"], ["onset_rate"], ["dmfcc", "onset_rate"], ["dmfcc", "onset_rate", "flux"],
         ["mfcc"], ["dmfcc", "mfcc"], ["dmfcc", "mfcc", "onset_rate"], ["pitch"], ["centroid", "zcr"])


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from bridge.features.audio import AudioFeatures
    from bridge.labels import LABELS
    from bridge.training.build import build_sequences
    from bridge.training.data import load_dataset
    from bridge.training.metrics import uar
    from bridge.training.robustness import HIGH_AROUSAL, LOW_AROUSAL, load_clips
    from bridge.training.train import TrainConfig

    warnings.filterwarnings("ignore")
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(shared / "ravdess-speech-16k"))
    ap.add_argument("--other", default=str(shared / "spanish-emotion-16k"))
    ap.add_argument("--cache", default=".cache/features")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = TrainConfig(data=args.data, out="")
    names = AudioFeatures(cfg.audio).names
    clips = load_dataset(args.data)
    val = {f"actor{a:02d}" for a in cfg.val_actors}
    tr = [c for c in clips if c.speaker not in val]
    va = [c for c in clips if c.speaker in val]

    def build(cl, seed, speed=0.0, aug=None):  # the same cache entries as training (fresh_sets) and evaluate
        return build_sequences(cl, cfg.audio, cfg.video, cfg.tick_hz, seed, cfg.chain_len, True, Path(args.cache), 1,
                               None, speed, aug)

    base = cfg.data_seed * 1000
    TR = build(tr, base + 777) + build(tr, base + 501, cfg.speed_perturb, base + 501) + \
        build(tr, base + 502, cfg.speed_perturb, base + 502)
    VA = build(va, base + 778)
    SP = build(load_clips(load_dataset(args.other))[0], 4243)

    def voiced(seqs, lab=None):
        out = []
        for s in seqs:
            m = s.voice & (s.weight > 0)
            if lab is not None:
                m &= s.label == LABELS.index(lab)
            out.append(s.audio[m])
        return np.concatenate(out)

    sd = voiced(TR[:len(tr)]).std(0) + 1e-6  # the clean training clips
    res: dict = {"names": names, "shift": {}}
    for lab in ("neutral", "sad", "angry", "happy"):
        d = (voiced(SP, lab).mean(0) - voiced(TR[:len(tr)], lab).mean(0)) / sd
        res["shift"][f"spanish-ravdess {lab}"] = {names[i]: round(float(d[i]), 2) for i in np.argsort(-np.abs(d))[:15]}
    for tag, seqs in (("ravdess", TR[:len(tr)]), ("spanish", SP)):
        d = (voiced(seqs, "angry").mean(0) - voiced(seqs, "neutral").mean(0)) / sd
        res["shift"][f"{tag} angry-neutral"] = {names[i]: round(float(d[i]), 2) for i in np.argsort(-np.abs(d))[:15]}
    for k, v in res["shift"].items():
        print(k, " ".join(f"{n}:{x:+.2f}" for n, x in list(v.items())[:10]))

    def pool(seqs):
        X, y, spk = [], [], []
        for s in seqs:
            m = s.voice & (s.weight > 0)
            if m.sum() < 3:
                m = s.weight > 0
            if m.sum() == 0:
                continue
            a = s.audio[m][:, :-1]  # the last column is the voice-activity flag
            X.append(np.concatenate([a.mean(0), a.std(0)]))
            y.append(int(np.bincount(s.label[m]).argmax()))
            spk.append(s.speaker)
        return np.array(X), np.array(y), np.array(spk)

    Xtr, ytr, str_ = pool(TR)
    Xva, yva, _ = pool(VA)
    Xsp, ysp, _ = pool(SP)
    n = len(names) - 1
    hi = [LABELS.index(x) for x in HIGH_AROUSAL]
    lo = [LABELS.index(x) for x in LOW_AROUSAL]
    mask = np.zeros(len(LABELS))
    mask[sorted(set(ysp))] = 1
    sm = np.isin(ysp, hi + lo)
    yb = np.isin(ysp[sm], hi)
    spks = sorted(set(str_))
    res["ablation"] = []
    ref = None
    for drop in DROPS:
        keep = np.array([i for i in range(n) if not any(names[i].startswith(d) for d in drop)])
        if drop and len(keep) == n:
            print(f"{drop}: not computed by this front end, skipped")
            continue
        cols = np.concatenate([keep, keep + n])
        rows = []
        for d in range(args.draws):
            use = np.isin(str_, np.random.default_rng(d).choice(spks, 11, replace=False))
            sc = StandardScaler().fit(Xtr[use][:, cols])
            f = lambda X: sc.transform(X[:, cols])  # noqa: E731
            m = LogisticRegression(C=0.01, class_weight="balanced", max_iter=2000).fit(f(Xtr[use]), ytr[use])
            bm = np.isin(ytr[use], hi + lo)
            b = LogisticRegression(C=0.01, class_weight="balanced", max_iter=2000).fit(
                f(Xtr[use])[bm], np.isin(ytr[use][bm], hi))
            pb = b.predict_proba(f(Xsp)[sm])[:, 1]
            rows.append([uar(yva, m.predict(f(Xva))), uar(ysp, (m.predict_proba(f(Xsp)) * mask).argmax(1)),
                         roc_auc_score(yb, pb), 0.5 * ((pb[yb] > 0.5).mean() + (pb[~yb] <= 0.5).mean())])
        rows = np.array(rows)
        ref = rows if ref is None else ref
        keys = ["ravdess_8_uar", "spanish_7_uar", "spanish_arousal_auc", "spanish_arousal_acc"]
        row = {"drop": drop, "n_features": int(len(keep))}
        for j, k in enumerate(keys):
            row[k] = [round(float(rows[:, j].mean()), 4), round(float(rows[:, j].std()), 4)]
            row[k + "_delta"] = [round(float((rows - ref)[:, j].mean()), 4), round(float((rows - ref)[:, j].std()), 4)]
        res["ablation"].append(row)
        print(f"{str(drop):38s} n={len(keep):2d} " + " | ".join(
            f"{k.split('_', 1)[1]} {row[k][0]:.3f}±{row[k][1]:.3f} Δ{row[k + '_delta'][0]:+.3f}±{row[k + '_delta'][1]:.3f}"
            for k in keys), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
