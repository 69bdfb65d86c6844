"""Metrics: UAR / accuracy / confusion per clip, CCC for valence/arousal, jitter and lag on chained sequences."""

from __future__ import annotations

import numpy as np

from bridge.labels import LABELS


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int = len(LABELS)) -> np.ndarray:
    m = np.zeros((n, n), np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def recall_per_class(cm: np.ndarray) -> np.ndarray:
    support = cm.sum(1)
    return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def uar(y_true, y_pred, n: int = len(LABELS)) -> float:
    return float(np.nanmean(recall_per_class(confusion(y_true, y_pred, n))))


def accuracy(y_true, y_pred) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve of scores ``pos`` (positives) vs ``neg``: the chance that a random positive scores
    above a random negative (ties count half). Threshold-free, so it does not depend on calibration."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return float("nan")
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = ((x - mx) * (y - my)).mean()
    return float(2 * cov / (vx + vy + (mx - my) ** 2 + 1e-12))


def jitter(probs: np.ndarray, label: np.ndarray, weight: np.ndarray) -> float:
    """Mean absolute change of the probability vector per tick (L1 / 2, i.e. total variation) on steady ticks:
    the target label did not change from the previous tick."""
    d = 0.5 * np.abs(np.diff(probs, axis=0)).sum(1)
    steady = (label[1:] == label[:-1]) & (weight[1:] > 0) & (weight[:-1] > 0)
    return float(d[steady].mean()) if steady.any() else float("nan")


def lags(probs: np.ndarray, label: np.ndarray, weight: np.ndarray, max_ticks: int = 90) -> list[float]:
    """Ticks from each label switch until the new label's probability first crosses 0.5
    (``max_ticks`` when it never does within the segment or ``max_ticks``)."""
    out = []
    switches = np.where((label[1:] != label[:-1]) & (weight[1:] > 0) & (weight[:-1] > 0))[0] + 1
    for s in switches:
        end = s + 1
        while end < len(label) and label[end] == label[s]:
            end += 1
        seg = probs[s:min(end, s + max_ticks), label[s]]
        hit = np.where(seg >= 0.5)[0]
        out.append(float(hit[0]) if len(hit) else float(max_ticks))
    return out


def clip_decisions(probs: np.ndarray, clip: np.ndarray, weight: np.ndarray) -> dict[int, np.ndarray]:
    """Mean probability vector per clip over the ticks that follow its speech onset."""
    out = {}
    for c in np.unique(clip[(clip >= 0) & (weight > 0)]):
        sel = (clip == c) & (weight > 0)
        out[int(c)] = probs[sel].mean(0)
    return out
