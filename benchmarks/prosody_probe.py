"""Do formants, jitter, shimmer, HNR and speech rate help? A linear probe on clip-pooled features, as
``benchmarks/voice_probe.py``, with a block of clip-level voice-quality statistics added to the 70 hand-made
features the product ships (encoder off).

    python benchmarks/prosody_probe.py base          # per clip: the shipped 70 features (fresh state, pooled)
    python benchmarks/prosody_probe.py features      # per clip: ours (benchmarks/prosody_measures.py) + Praat's
    python benchmarks/prosody_probe.py probe [--out prosody_probe.json] [--draws 10] [--C 0.01]
    python benchmarks/prosody_probe.py conditions    # how ours move with gain, noise and reverb
    python benchmarks/prosody_probe.py cost          # what they would cost live (CPU per second of audio)

Result (2026-12-02, benchmarks/results/prosody-probe-2026-12-02.json, docs/MODEL_CARD.md "Prosodic extras"):
none helps measurably on both corpora, so none is a product feature.

Per clip (RAVDESS actors 1-14 clean for training, actors 15-18 and the Spanish set for scoring, each from a fresh
state): the 70 tick features pooled over the clip's voiced ticks (mean and std, ``voice_probe.pooled``), and over
its voiced frames (YIN pitch and Silero VAD, as ``AudioFeatures``) the mean and std of F1-F3, jitter, shimmer and
HNR, plus the speech rate (syllable nuclei per second of speech). **Praat** (praat-parselmouth, GPL: installed only
to check these measures, never a dependency of the product) gives the same measures its own way: the correlation
of ours with Praat's across clips is printed, and Praat's block is probed too, so "it does not help" is a finding
about the measure, not about our implementation.

Training set: the clean training clips (not the augmented chain sets of ``voice_probe.py``: matching their rows to
the clips' audio is awkward and the new measures would have to be recomputed on the augmented audio). Scores:
RAVDESS 8-label UAR (actors 15-18), Spanish 7-label UAR, Spanish high vs low arousal AUC; population
normalisation (a fresh visitor) and per-speaker normalisation (a session). Spread: 10 resamplings of the training
speakers (11 of the 14 at random), the same draws for every feature set, so the gain of a block is a paired
difference with its own spread; trained on all 14, a 95 % interval of that difference from resampling the
evaluation speakers (only 4 on RAVDESS: wide). ``features`` needs ``pip install praat-parselmouth`` (or
``--no-praat``); stages cache under ``.cache/prosody``. The streaming speech-rate rows of the model card were
measured with ``audio.prosody`` at the branch's commits 7614145 (1.5 s window) and d92d946 (running rate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / ".cache" / "prosody"

OURS = ["f1", "f2", "f3", "jitter", "shimmer", "hnr"]
BLOCKS = {"formants": ["f1", "f2", "f3"], "jitter": ["jitter"], "shimmer": ["shimmer"], "hnr": ["hnr"]}


def clip_measures(y: np.ndarray, af) -> tuple[dict, dict]:
    """Our measures of one clip, from a fresh ``AudioFeatures`` state (frame-level values and clip statistics)."""
    import prosody_measures as P

    af.reset()
    got: dict = {"frames": [], "rows": []}
    orig_analyse, orig_push = af._analyse, af._push

    def analyse(buf, n):
        idx = np.arange(af.context)[None, :] + af.hop * np.arange(n)[:, None]
        got["frames"].append(buf[idx])
        return orig_analyse(buf, n)

    def push(rows):
        got["rows"].append(rows.copy())
        return orig_push(rows)

    af._analyse, af._push = analyse, push
    try:
        af.process(y)
    finally:
        af._analyse, af._push = orig_analyse, orig_push
    frames = np.concatenate(got["frames"])
    rows = np.concatenate(got["rows"])
    f0 = rows[:, af.i_f0]
    active = rows[:, af.i_vad] >= af.cfg.vad_threshold
    voiced = (f0 > 0) & active
    period = np.where(voiced, af.sr / np.maximum(f0, 1e-3), 0.0)
    sel = np.flatnonzero(voiced)
    vals = {k: np.full(len(rows), np.nan) for k in OURS}
    if len(sel):
        F = P.formants(frames[sel, -af.n_fft:], af.sr)
        vals["f1"][sel], vals["f2"][sel], vals["f3"][sel] = F.T
        j, s = P.jitter_shimmer(frames[sel], period[sel], af.sr / af.cfg.pitch_max_hz, af.sr / af.cfg.pitch_min_hz)
        vals["jitter"][sel], vals["shimmer"][sel] = 100 * j, s  # jitter in %
        vals["hnr"][sel] = P.hnr(frames[sel], period[sel])
    rms, rel = rows[:, af.i_rms], rows[:, af.i_rel]
    level = np.where(rel > -49.9, rms - rel, np.nan)
    level = np.where(np.isnan(level), np.nanmedian(level) if np.isfinite(level).any() else 0.0, level)
    nuclei = P.syllable_nuclei(rms, voiced, level)
    speech_s = max(active.sum() * af.hop / af.sr, 0.1)
    stats = {}
    for k, v in vals.items():
        vv = v[voiced & np.isfinite(v)]
        stats[f"{k}_mean"] = float(vv.mean()) if len(vv) else np.nan
        stats[f"{k}_std"] = float(vv.std()) if len(vv) else np.nan
        stats[f"{k}_median"] = float(np.median(vv)) if len(vv) else np.nan
    stats["rate_speech"] = nuclei.sum() / speech_s
    stats["rate_voiced"] = nuclei.sum() / max(voiced.sum() * af.hop / af.sr, 0.1)
    return stats, vals


def praat_measures(y: np.ndarray, sr: int = 16000) -> dict:
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(y.astype(np.float64), sr)
    out = {}
    pitch = snd.to_pitch_cc(pitch_floor=65, pitch_ceiling=500)
    pp = call([snd, pitch], "To PointProcess (cc)")
    out["jitter_mean"] = 100 * call(pp, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3)
    out["shimmer_mean"] = call([snd, pp], "Get shimmer (local_dB)", 0, 0, 0.0001, 0.02, 1.3, 1.6)
    h = call(snd, "To Harmonicity (cc)", 0.01, 65, 0.1, 1.0)
    hv = h.values[0]
    hv = hv[hv > -199]
    out["hnr_mean"] = float(hv.mean()) if len(hv) else np.nan
    out["hnr_std"] = float(hv.std()) if len(hv) else np.nan
    fm = snd.to_formant_burg(time_step=0.01, max_number_of_formants=5, maximum_formant=5500)
    f0 = pitch.selected_array["frequency"]
    times = pitch.xs()[f0 > 0]
    for i in (1, 2, 3):
        v = np.array([fm.get_value_at_time(i, t) for t in times]) if len(times) else np.array([])
        v = v[np.isfinite(v)]
        out[f"f{i}_mean"] = float(v.mean()) if len(v) else np.nan
        out[f"f{i}_std"] = float(v.std()) if len(v) else np.nan
    return out


def features(args) -> None:
    from bridge.config import AudioConfig
    from bridge.features.audio import AudioFeatures
    from bridge.training.data import load_dataset, read_audio

    af = AudioFeatures(AudioConfig())
    rav = load_dataset(SHARED / "ravdess-speech-16k")
    sp = load_dataset(SHARED / "spanish-emotion-16k")
    CACHE.mkdir(parents=True, exist_ok=True)
    for name, clips in (("val", [c for c in rav if int(c.speaker[5:]) >= 15]), ("sp", sp),
                        ("train", [c for c in rav if int(c.speaker[5:]) < 15])):
        t0 = time.time()
        ours, praat, names = [], [], []
        rng = np.random.default_rng(0)
        for c in clips:
            try:
                y = read_audio(c)
            except Exception:  # noqa: BLE001  (malformed files: the data README says to skip them)
                continue
            if len(y) < 0.3 * 16000:
                continue
            y = y + rng.normal(0, 10 ** (-72 / 20), len(y)).astype(np.float32)  # the training build's room tone
            ours.append(clip_measures(y, af)[0])
            praat.append(praat_measures(y) if not args.no_praat else {})
            names.append(c.speaker + "/" + c.path.name)
        np.savez(CACHE / f"prosody_{name}.npz", name=np.array(names), ours=json.dumps(ours), praat=json.dumps(praat))
        print(f"{name}: {len(names)} clips, {time.time() - t0:.0f} s", flush=True)


def base(args) -> None:
    """The shipped features per clip, each clip from a fresh state, pooled as ``voice_probe.pooled``."""
    from voice_probe import pooled

    from bridge.config import AudioConfig, VideoConfig
    from bridge.training.build import build_sequences
    from bridge.training.data import load_dataset
    from bridge.training.robustness import load_clips

    A, V = AudioConfig(), VideoConfig()
    rav = load_dataset(SHARED / "ravdess-speech-16k")
    sp, _, skipped = load_clips(load_dataset(SHARED / "spanish-emotion-16k"))
    CACHE.mkdir(parents=True, exist_ok=True)
    for name, clips, seed in (("val", [c for c in rav if int(c.speaker[5:]) >= 15], 778), ("sp", sp, 4243),
                              ("train", [c for c in rav if int(c.speaker[5:]) < 15], 0)):
        t0 = time.time()
        seqs = build_sequences(clips, A, V, 30.0, seed, 12, True, Path(args.cache), 1)
        X, y, spk = pooled(seqs)
        names = []
        for sq in seqs:  # the clips pooled() kept, in its order
            if len(np.unique(sq.clip[(sq.clip >= 0) & (sq.weight > 0)])):
                names.append(sq.speaker + "/" + sq.clips[0])
        out = CACHE / f"base_{name}.npz"
        np.savez(out, X=X, y=y, spk=np.array(spk), name=np.array(names))
        print(f"{name}: {len(X)} clips, {time.time() - t0:.0f} s (Spanish files skipped: {skipped})", flush=True)


def load_split(name: str):
    """(X base, y, speaker, our measures, Praat's) per clip, in the same order."""
    b = np.load(CACHE / f"base_{name}.npz")
    p = np.load(CACHE / f"prosody_{name}.npz")
    ours, praat = json.loads(str(p["ours"])), json.loads(str(p["praat"]))
    at = {n: i for i, n in enumerate(p["name"])}
    keep = [i for i, n in enumerate(b["name"]) if n in at]
    j = [at[b["name"][i]] for i in keep]
    return (b["X"][keep], b["y"][keep], b["spk"][keep], [ours[k] for k in j], [praat[k] for k in j])


def block_matrix(meas: list[dict], keys: list[str]) -> np.ndarray:
    X = np.array([[m.get(k, np.nan) for k in keys] for m in meas], dtype=np.float64)
    return X


def probe(args) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from bridge.labels import LABELS
    from bridge.training.metrics import uar
    from bridge.training.robustness import HIGH_AROUSAL, LOW_AROUSAL

    from voice_probe import per_speaker

    tr, va, sp = load_split("train"), load_split("val"), load_split("sp")
    print(f"clips: train {len(tr[1])}, RAVDESS validation {len(va[1])}, Spanish {len(sp[1])}")
    # correlation of ours with Praat's, across all clips
    allm = tr[3] + va[3] + sp[3]
    allp = tr[4] + va[4] + sp[4]
    corr = {}
    if allp and allp[0]:
        for k in ("f1_mean", "f2_mean", "f3_mean", "jitter_mean", "shimmer_mean", "hnr_mean", "hnr_std"):
            a, b = block_matrix(allm, [k])[:, 0], block_matrix(allp, [k])[:, 0]
            ok = np.isfinite(a) & np.isfinite(b)
            from scipy.stats import spearmanr

            corr[k] = {"pearson": round(float(np.corrcoef(a[ok], b[ok])[0, 1]), 3),
                       "spearman": round(float(spearmanr(a[ok], b[ok])[0]), 3),
                       "ours_median": round(float(np.median(a[ok])), 3),
                       "praat_median": round(float(np.median(b[ok])), 3),
                       "n": int(ok.sum())}
            print(f"ours vs Praat {k:>13s}: " + " ".join(f"{kk} {vv}" for kk, vv in corr[k].items()))
    stat = lambda ks: [f"{k}_{s}" for k in ks for s in ("mean", "std")]  # noqa: E731
    sets = {"base (70 shipped features)": None}
    for b, ks in BLOCKS.items():
        sets[f"+ {b}"] = ("ours", stat(ks))
    sets["+ speech rate"] = ("ours", ["rate_speech", "rate_voiced"])
    sets["+ all five"] = ("ours", stat(OURS) + ["rate_speech", "rate_voiced"])
    sets["+ shimmer, speech rate"] = ("ours", stat(["shimmer"]) + ["rate_speech", "rate_voiced"])
    sets["+ jitter, shimmer, HNR (medians)"] = ("ours", ["jitter_median", "shimmer_median", "hnr_median"])
    if allp and allp[0]:
        sets["+ Praat: formants"] = ("praat", stat(["f1", "f2", "f3"]))
        sets["+ Praat: jitter, shimmer, HNR"] = ("praat", ["jitter_mean", "shimmer_mean", "hnr_mean", "hnr_std"])
    sets["all five alone (no base)"] = ("ours-only", stat(OURS) + ["rate_speech", "rate_voiced"])
    hi = [LABELS.index(x) for x in HIGH_AROUSAL]
    lo = [LABELS.index(x) for x in LOW_AROUSAL]
    spk_tr = np.unique(tr[2])
    draws = [np.random.default_rng(s).choice(spk_tr, len(spk_tr) - 3, replace=False) for s in range(args.draws)]

    def design(split, spec):
        X = split[0]
        if spec is None:
            return X
        kind, keys = spec
        M = block_matrix(split[4] if kind == "praat" else split[3], keys)
        return M if kind == "ours-only" else np.hstack([X, M])

    res = {}
    base_scores = {}
    base_pred = {}
    boot = np.random.default_rng(12345)

    def cluster_boot(spk: np.ndarray, n: int = 500) -> list[np.ndarray]:
        """Resamples of clip indices drawn by speaker (speakers with replacement): the evaluation-set spread."""
        u = np.unique(spk)
        at = {x: np.flatnonzero(spk == x) for x in u}
        return [np.concatenate([at[x] for x in boot.choice(u, len(u))]) for _ in range(n)]

    boots_va, boots_sp = cluster_boot(va[2]), cluster_boot(sp[2])
    for sname, spec in sets.items():
        for norm in ("population", "per_speaker"):
            mats = [design(s, spec) for s in (tr, va, sp)]
            # missing values (a clip without enough voiced cycles): the training mean
            mu = np.nanmean(mats[0], axis=0)
            mats = [np.where(np.isfinite(m), m, mu) for m in mats]
            if norm == "per_speaker":
                mats = [per_speaker(m, list(s[2])) for m, s in zip(mats, (tr, va, sp))]
            scores = []
            for d in [spk_tr] + draws:
                m_tr = np.isin(tr[2], d)
                a = mats[0][m_tr]
                ytr = tr[1][m_tr]
                sc = StandardScaler().fit(a)
                a, b, o = sc.transform(a), sc.transform(mats[1]), sc.transform(mats[2])
                clf = LogisticRegression(C=args.C, max_iter=3000, class_weight="balanced").fit(a, ytr)
                po = clf.predict_proba(o)
                po[:, [k for k in range(len(LABELS)) if k not in set(sp[1])]] = 0.0
                ar = np.isin(ytr, hi + lo)
                bi = LogisticRegression(C=args.C, max_iter=3000, class_weight="balanced")
                bi.fit(a[ar], np.isin(ytr[ar], hi))
                mo = np.isin(sp[1], hi + lo)
                scores.append([uar(va[1], clf.predict(b)), uar(sp[1], po.argmax(1)),
                               roc_auc_score(np.isin(sp[1][mo], hi), bi.decision_function(o[mo]))])
                if len(scores) == 1:  # all 14 training speakers: keep the predictions for the bootstrap
                    pred = (clf.predict(b), po.argmax(1), bi.decision_function(o))
            full, scores = scores[0], np.array(scores[1:])
            if spec is None:
                base_pred[norm] = pred
            bp = base_pred[norm]
            ar_sp = np.isin(sp[1], hi + lo)
            dboot = []
            for ib, ia in zip(boots_va, boots_sp):
                ia2 = ia[ar_sp[ia]]
                lab = np.isin(sp[1][ia2], hi)
                dboot.append([uar(va[1][ib], pred[0][ib]) - uar(va[1][ib], bp[0][ib]),
                              uar(sp[1][ia], pred[1][ia]) - uar(sp[1][ia], bp[1][ia]),
                              roc_auc_score(lab, pred[2][ia2]) - roc_auc_score(lab, bp[2][ia2])])
            ci = np.percentile(np.array(dboot), [2.5, 97.5], axis=0)
            key = (norm,)
            if spec is None:
                base_scores[key] = scores
            delta = scores - base_scores[key]
            r = {"all_14_speakers": np.round(full, 4).tolist(),
                 "delta_95ci_eval_speaker_bootstrap": ci.T.round(4).tolist(),
                 "mean": scores.mean(0).round(4).tolist(), "sd": scores.std(0).round(4).tolist(),
                 "delta_mean": delta.mean(0).round(4).tolist(), "delta_sd": delta.std(0).round(4).tolist()}
            res[f"{sname}/{norm}"] = r
            print(f"{sname:>34s} {norm:>11s}: " + "  ".join(
                f"{m} {r['mean'][i]:.3f}±{r['sd'][i]:.3f} (Δ {r['delta_mean'][i]:+.3f}±{r['delta_sd'][i]:.3f}; "
                f"all: {full[i]:.3f}, Δ CI [{ci[0, i]:+.3f}, {ci[1, i]:+.3f}])"
                for i, m in enumerate(("RAV-UAR", "SP-UAR", "SP-arousal-AUC"))), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"praat_agreement": corr, "probe": res}, indent=2))


def conditions(args) -> None:
    """How each clip-level measure moves with the microphone and the room: every 6th RAVDESS validation clip under
    the robustness conditions of ``emotion-bridge evaluate --robustness`` (+-20 dB with clipping, pink noise and
    babble at 10 dB SNR, reverb RT60 0.6 s): median relative change and rank correlation with the clean value."""
    from scipy.stats import spearmanr

    from bridge.config import AudioConfig
    from bridge.features.audio import AudioFeatures
    from bridge.training.data import load_dataset, read_audio
    from bridge.training.robustness import CONDITIONS, apply_condition

    af = AudioFeatures(AudioConfig())
    clips = [c for c in load_dataset(SHARED / "ravdess-speech-16k") if int(c.speaker[5:]) >= 15][::6]
    others = [read_audio(c) for c in load_dataset(SHARED / "ravdess-speech-16k") if int(c.speaker[5:]) < 3][::10]
    vals: dict = {}
    for i, c in enumerate(clips):
        y = read_audio(c)
        for cond in CONDITIONS:
            x = apply_condition(cond, y, np.random.default_rng(i), others).astype(np.float32)
            for k, v in clip_measures(x, af)[0].items():
                vals.setdefault(k, {}).setdefault(cond, []).append(v)
    out = {}
    for k, by in vals.items():
        ref = np.array(by["clean"])
        out[k] = {}
        for cond in CONDITIONS[1:]:
            v = np.array(by[cond])
            ok = np.isfinite(v) & np.isfinite(ref)
            rel = np.median((v[ok] - ref[ok]) / np.maximum(np.abs(ref[ok]), 1e-6))
            out[k][cond] = {"median_rel_change": round(float(rel), 3),
                            "spearman": round(float(spearmanr(v[ok], ref[ok])[0]), 3)}
        print(f"{k:>14s}: " + "  ".join(f"{cond} {r['median_rel_change']:+.2f} (rho {r['spearman']:.2f})"
                                        for cond, r in out[k].items()), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


def cost(args) -> None:
    """CPU the frame-level measures would cost live: thread time per second of audio on every frame with a pitch,
    each 20 ms block's new frames at a time (as the bridge analyses them), 20 RAVDESS validation clips."""
    import prosody_measures as P
    import soundfile as sf

    from bridge.config import AudioConfig
    from bridge.features.audio import AudioFeatures

    files = sorted(p for p in (SHARED / "ravdess-speech-16k").rglob("*.flac")
                   if p.stem.split("-")[-1] in {"15", "16", "17", "18"})
    files = files[:: max(1, len(files) // 20)][:20]
    af = AudioFeatures(AudioConfig())
    spent = {"formants": 0.0, "jitter_shimmer": 0.0, "hnr": 0.0}
    secs = 0.0
    for p in files:
        y, _ = sf.read(str(p), dtype="float32")
        secs += len(y) / af.sr
        af.reset()
        got = []
        orig = af._analyse

        def analyse(buf, n, orig=orig, got=got):
            idx = np.arange(af.context)[None, :] + af.hop * np.arange(n)[:, None]
            rows = orig(buf, n)
            got.append((buf[idx], rows[:, af.i_f0]))
            return rows

        af._analyse = analyse
        for i in range(0, len(y), 320):
            af.process(y[i:i + 320])
        af._analyse = orig
        for fr, f0 in got:
            sel = f0 > 0
            if not sel.any():
                continue
            per = af.sr / f0[sel].astype(np.float64)
            for name, fn in (("formants", lambda: P.formants(fr[sel, -af.n_fft:], af.sr)),
                             ("jitter_shimmer", lambda: P.jitter_shimmer(fr[sel], per, af.sr / af.cfg.pitch_max_hz,
                                                                         af.sr / af.cfg.pitch_min_hz)),
                             ("hnr", lambda: P.hnr(fr[sel], per))):
                t = time.thread_time()
                fn()
                spent[name] += time.thread_time() - t
    print({k: round(1000 * v / secs, 2) for k, v in spent.items()}, f"ms of CPU per second of audio ({secs:.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["base", "features", "probe", "conditions", "cost"])
    ap.add_argument("--cache", default=".cache/features", help="base: the sequence cache")
    ap.add_argument("--C", type=float, default=0.01)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--no-praat", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    {"base": base, "features": features, "probe": probe, "conditions": conditions, "cost": cost}[args.stage](args)


if __name__ == "__main__":
    main()
