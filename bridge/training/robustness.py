"""Robustness evaluation as a visitor meets the product: every clip through ``bridge.process_files`` from a
fresh state, under the microphone and room conditions an installation sees.

Conditions (``CONDITIONS``): clean; +20 dB (clipped at full scale); -20 dB; pink noise at 10 dB SNR; babble
(4 other speakers of the same corpus) at 10 dB SNR; reverberation with RT60 0.6 s. Each is seeded per clip, so
the table is reproducible. The clip's decision is the mean of all its states' probabilities (valence/arousal:
the mean of its states).

Scores: 8-label UAR (RAVDESS), 7-label UAR (corpora without "calm", such as the Spanish set: the argmax over the
labels the corpus has), high vs low arousal UAR (angry/happy/fearful/surprised vs neutral/sad/calm, decided by
the sign of the mean arousal output: calibrated output means 0 is the boundary) and the mean valence/arousal of
neutral clips (calibration: both should be near 0).
"""

from __future__ import annotations

import os
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bridge.labels import LABELS
from bridge.training import augment as aug
from bridge.training import metrics as M
from bridge.training.data import Clip, read_audio

CONDITIONS = ("clean", "+20dB", "-20dB", "pink10", "babble10", "reverb0.6")
HIGH_AROUSAL = ("angry", "happy", "fearful", "surprised")
LOW_AROUSAL = ("neutral", "sad", "calm")
MIN_SECONDS = 0.3


def apply_condition(name: str, y: np.ndarray, rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
    if name == "clean":
        return y
    if name == "+20dB":
        return aug.gain(y, 20.0)
    if name == "-20dB":
        return aug.gain(y, -20.0)
    if name == "pink10":
        return aug.mix_at_snr(y, aug.pink_noise(len(y), rng), 10.0)
    if name == "babble10":
        return aug.mix_at_snr(y, aug.babble(others, len(y), rng), 10.0)
    if name == "reverb0.6":
        return aug.reverb(y, aug.synth_rir(0.6, rng, drr_db=0.0))
    raise ValueError(f"unknown condition {name!r}; known: {', '.join(CONDITIONS)}")


def load_clips(clips: list[Clip]) -> tuple[list[Clip], list[np.ndarray], int]:
    """Read every clip; skip those that fail to load or are shorter than 0.3 s. Returns (clips, audio, skipped)."""
    kept, audio, skipped = [], [], 0
    for c in clips:
        try:
            y = read_audio(c)
        except Exception:  # noqa: BLE001  (a malformed file is skipped and counted, as the data README asks)
            skipped += 1
            continue
        if len(y) < MIN_SECONDS * aug.SR or not np.isfinite(y).all():
            skipped += 1
            continue
        kept.append(c)
        audio.append(y)
    return kept, audio, skipped


def subset(clips: list[Clip], per_speaker_label: int | None, seed: int = 0) -> list[Clip]:
    """At most ``per_speaker_label`` clips per (speaker, label), chosen by a seeded draw (None: all)."""
    if not per_speaker_label:
        return clips
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[Clip]] = {}
    for c in clips:
        groups.setdefault((c.speaker, c.label), []).append(c)
    out = []
    for k in sorted(groups):
        g = groups[k]
        idx = sorted(rng.choice(len(g), min(per_speaker_label, len(g)), replace=False))
        out += [g[i] for i in idx]
    return out


def _run_one(args) -> tuple[np.ndarray, float, float]:
    y, weights, cfg = args
    import soundfile as sf

    from bridge.pipeline import probs_array, process_files

    with tempfile.NamedTemporaryFile(suffix=".wav", delete=False) as f:
        path = f.name
    try:
        sf.write(path, y, aug.SR, subtype="FLOAT")
        states = process_files(audio=path, config=cfg, weights=weights)
    finally:
        os.unlink(path)
    if not states:
        return np.full(len(LABELS), 1.0 / len(LABELS)), 0.0, 0.0
    return (probs_array(states).mean(0), float(np.mean([s.valence for s in states])),
            float(np.mean([s.arousal for s in states])))


def _init_worker():
    import torch

    torch.set_num_threads(1)


def run_condition(clips: list[Clip], audio: list[np.ndarray], condition: str, weights: str | None, cfg=None,
                  workers: int = 1, seed: int = 0) -> list[tuple[np.ndarray, float, float]]:
    jobs = []
    for i, (c, y) in enumerate(zip(clips, audio)):
        rng = np.random.default_rng([seed, zlib.crc32(c.path.name.encode()), CONDITIONS.index(condition)])
        others = [a for a, o in zip(audio, clips) if o.speaker != c.speaker]
        pick = [others[j] for j in rng.choice(len(others), min(8, len(others)), replace=False)] if others else [y]
        jobs.append((apply_condition(condition, y, rng, pick), weights, cfg))
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker) as ex:
            return list(ex.map(_run_one, jobs, chunksize=4))
    _init_worker()
    return [_run_one(j) for j in jobs]


def score(clips: list[Clip], outs: list[tuple[np.ndarray, float, float]]) -> dict:
    present = sorted({LABELS.index(c.label) for c in clips})
    y_true = np.array([LABELS.index(c.label) for c in clips])
    P = np.array([o[0] for o in outs])
    masked = np.full_like(P, -1.0)
    masked[:, present] = P[:, present]  # the argmax over the labels this corpus has
    y_pred = masked.argmax(1)
    res = {"n_clips": len(clips), "n_labels": len(present), "uar": M.uar(y_true, y_pred),
           "accuracy": M.accuracy(y_true, y_pred),
           "recall": dict(zip(LABELS, np.round(M.recall_per_class(M.confusion(y_true, y_pred)), 4).tolist()))}
    ar = np.array([o[2] for o in outs])
    va = np.array([o[1] for o in outs])
    hi = np.array([c.label in HIGH_AROUSAL for c in clips])
    lo = np.array([c.label in LOW_AROUSAL for c in clips])
    if hi.any() and lo.any():
        rec_hi = float(np.mean(ar[hi] > 0))
        rec_lo = float(np.mean(ar[lo] <= 0))
        res["arousal_uar"] = 0.5 * (rec_hi + rec_lo)
        # the same from the label probabilities (does not depend on the arousal head's calibration)
        ph = P[:, [LABELS.index(x) for x in HIGH_AROUSAL]].sum(1)
        pl = P[:, [LABELS.index(x) for x in LOW_AROUSAL]].sum(1)
        res["arousal_uar_from_labels"] = 0.5 * (float(np.mean(ph[hi] > pl[hi])) + float(np.mean(ph[lo] <= pl[lo])))
    neu = np.array([c.label == "neutral" for c in clips])
    if neu.any():
        res["neutral_mean_valence"] = float(va[neu].mean())
        res["neutral_mean_arousal"] = float(ar[neu].mean())
    res["mean_arousal"] = float(ar.mean())
    return res


def robustness_table(clips: list[Clip], weights: str | None, conditions=CONDITIONS, cfg=None, workers: int = 1,
                     seed: int = 0, progress=None) -> dict:
    kept, audio, skipped = load_clips(clips)
    table = {"n_clips": len(kept), "skipped": skipped, "speakers": sorted({c.speaker for c in kept}),
             "conditions": {}}
    for cond in conditions:
        outs = run_condition(kept, audio, cond, weights, cfg, workers, seed)
        table["conditions"][cond] = score(kept, outs)
        if progress:
            progress(cond, table["conditions"][cond])
    return table


def format_table(tables: dict[str, dict]) -> str:
    """Markdown: one row per condition, columns per corpus."""
    names = list(tables)
    head = "| condition | " + " | ".join(
        f"{n}: UAR ({tables[n]['conditions'][next(iter(tables[n]['conditions']))]['n_labels']} labels) | "
        f"{n}: arousal UAR" for n in names) + " |"
    sep = "|---|" + "---|---|" * len(names)
    rows = [head, sep]
    conds = list(next(iter(tables.values()))["conditions"])
    for cond in conds:
        cells = []
        for n in names:
            r = tables[n]["conditions"].get(cond, {})
            cells += [f"{r.get('uar', float('nan')):.3f}", f"{r.get('arousal_uar', float('nan')):.3f}"]
        rows.append(f"| {cond} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def default_corpora(shared: str | Path) -> dict[str, Path]:
    shared = Path(shared)
    return {"ravdess": shared / "data" / "ravdess-speech-16k", "spanish": shared / "data" / "spanish-emotion-16k"}
