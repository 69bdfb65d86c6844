"""Voice-quality and articulation measures the emotion literature uses, per analysis frame, in numpy/librosa (no
Praat: the product is MIT, Praat is GPL; ``benchmarks/prosody_probe.py`` compares these with Praat's). Measured
with that probe, none helped enough to become a product feature (docs/MODEL_CARD.md, "Prosodic extras"): they
live here, with their tests (tests/test_prosody_measures.py), for the next try.

All are frame-local (each frame's value depends only on that frame's samples, so a stream would give the same
values at any block size) and none moves with the microphone's gain (frequencies, ratios of periods, ratios of
amplitudes in dB, ratios of correlations):

- **Formants F1-F3** (Hz): LPC (librosa.lpc, Burg, order 10) of the frame resampled to 11 kHz (as Praat: five
  formants below 5.5 kHz), pre-emphasised and Hamming-windowed; the roots of the predictor polynomial above the
  real axis give frequencies ``angle * fs / 2pi`` and bandwidths ``-ln|z| * fs / pi``; the three lowest with
  frequency 90 Hz .. fs/2 - 50 Hz and bandwidth < 1 kHz.
- **Jitter (local)**: glottal-cycle marks by peak picking guided by the frame's pitch (each mark the largest
  sample, on the frame's dominant polarity, 0.8..1.25 periods after the previous one, parabolically
  interpolated); ``mean |T_i - T_{i-1}| / mean T`` over consecutive periods that differ by less than a factor 1.3
  (Praat's period factor). **Shimmer (local, dB)**: ``mean |20 log10(A_i / A_{i-1})|`` of the periods' peak
  amplitudes (the waveform's largest excursion between a period's two marks).
- **Harmonics-to-noise ratio** (dB): the normalised cross-correlation ``r`` of two pitch periods with the next
  two, at the best lag next to the period (parabolic peak), ``10 log10(r / (1 - r))`` (Boersma 1993, the
  quantity of Praat's cc method), limited to -20..40 dB.
- **Syllable nuclei** (for the speech rate): intensity peaks in voiced speech, at least 2 dB above the lowest
  intensity since the previous nucleus and no more than 25 dB below the speech level (de Jong & Wempe 2009).
"""

from __future__ import annotations

import librosa
import numpy as np

PERIOD_FACTOR = 1.3
HNR_MIN, HNR_MAX = -20.0, 40.0


def formants(frames: np.ndarray, sr: int, order: int = 10, n: int = 3, max_formant: float = 5500.0) -> np.ndarray:
    """(k, L) frames -> (k, n) formant frequencies in Hz (NaN where fewer than n were found). As Praat: the frame
    resampled to twice ``max_formant`` (5 formants below it, LPC order 10), pre-emphasised, Hamming-windowed."""
    from math import gcd

    from scipy.signal import resample_poly

    k, L = frames.shape
    out = np.full((k, n), np.nan, np.float32)
    if k == 0:
        return out
    x = frames.astype(np.float64)
    fs = int(round(2 * max_formant))
    if fs < sr:
        g = gcd(fs, sr)
        x = resample_poly(x, fs // g, sr // g, axis=1)
    else:
        fs = sr
    x = x[:, 1:] - 0.97 * x[:, :-1]  # pre-emphasis inside the frame: frame-local
    x = x * np.hamming(x.shape[1])[None, :]
    ok = (x ** 2).sum(axis=1) > 1e-20
    if not ok.any():
        return out
    a = librosa.lpc(x[ok] + 0.0, order=order, axis=-1)  # (m, order + 1), a[:, 0] = 1
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    comp = np.zeros((len(a), order, order))
    comp[:, 0, :] = -a[:, 1:]
    comp[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    roots = np.linalg.eigvals(comp)
    roots = np.where(roots.imag > 0, roots, np.nan)
    freq = np.angle(roots) * fs / (2 * np.pi)
    bw = -np.log(np.maximum(np.abs(roots), 1e-12)) * fs / np.pi
    good = (freq > 90.0) & (freq < fs / 2 - 50.0) & (bw < 1000.0)
    freq = np.where(good, freq, np.inf)
    freq.sort(axis=1)
    f = freq[:, :n]
    out[ok] = np.where(np.isfinite(f), f, np.nan)
    return out


def hnr(frames: np.ndarray, period: np.ndarray, periods: float = 2.0) -> np.ndarray:
    """(k, L) frames and their pitch periods in samples (0 = unvoiced) -> HNR in dB (NaN where unvoiced).
    Normalised correlation of the frame's first ``periods`` pitch periods with the same span one lag later, at
    the best of the lags next to the period, refined by a parabola through its neighbours."""
    k, L = frames.shape
    out = np.full(k, np.nan, np.float32)
    v = (period > 0) & (period * (periods + 1) + 3 < L)
    if not v.any():
        return out
    x = frames[v].astype(np.float64)
    T = period[v]
    m = len(x)
    rows = np.arange(m)
    span = np.maximum(np.round(periods * T).astype(int), 32)
    j = np.arange(L)[None, :]
    mask = (j < span[:, None]).astype(np.float64)
    t0 = np.round(T).astype(int)
    lags = np.arange(-2, 3)
    r = np.empty((m, len(lags)))
    a = x * mask
    e0 = (a ** 2).sum(axis=1)
    for q, d in enumerate(lags):
        idx = np.clip(j + (t0 + d)[:, None], 0, L - 1)
        b = x[rows[:, None], idx] * mask
        r[:, q] = (a * b).sum(axis=1) / np.sqrt(np.maximum(e0 * (b ** 2).sum(axis=1), 1e-30))
    q = np.clip(r[:, 1:-1].argmax(axis=1) + 1, 1, len(lags) - 2)
    ra, rb, rc = r[rows, q - 1], r[rows, q], r[rows, q + 1]
    den = ra - 2 * rb + rc
    sh = np.clip(np.where(np.abs(den) > 1e-12, 0.5 * (ra - rc) / np.where(den == 0, 1, den), 0.0), -0.5, 0.5)
    peak = rb - 0.25 * (ra - rc) * sh
    peak = np.clip(np.maximum(peak, rb), 1e-6, 1 - 1e-6)
    out[v] = np.clip(10 * np.log10(peak / (1 - peak)), HNR_MIN, HNR_MAX)
    return out


def jitter_shimmer(frames: np.ndarray, period: np.ndarray, min_period: float, max_period: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(k, L) frames and pitch periods in samples (0 = unvoiced) -> (jitter local as a fraction, shimmer local in
    dB), NaN where fewer than three usable cycles. Vectorised over frames: one step per cycle."""
    k, L = frames.shape
    jit = np.full(k, np.nan, np.float32)
    shim = np.full(k, np.nan, np.float32)
    v = (period >= min_period) & (period <= max_period)
    if not v.any():
        return jit, shim
    x = frames[v].astype(np.float64)
    T = period[v].astype(np.float64)
    m = len(x)
    rows = np.arange(m)
    # dominant polarity: the sign of the frame's largest excursion
    sgn = np.where(x.max(axis=1) >= -x.min(axis=1), 1.0, -1.0)
    xs = x * sgn[:, None]
    wav = np.abs(x)
    order = 0
    first_w = int(np.ceil(max_period)) + order + 1
    idx = np.arange(first_w)[None, :]
    seg = np.where((idx >= order) & (idx < T[:, None] + order), xs[:, :first_w], -np.inf)
    pos = seg.argmax(axis=1).astype(np.float64)
    width = int(np.ceil(0.45 * max_period)) + 2
    n_max = int(L / min_period) + 1
    marks = np.full((m, n_max), np.nan)
    amps = np.full((m, n_max), np.nan)

    def refine(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.clip(p.astype(int), 1, L - 2)
        a, b, c = xs[rows, i - 1], xs[rows, i], xs[rows, i + 1]
        den = a - 2 * b + c
        sh = np.where(np.abs(den) > 1e-20, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
        sh = np.clip(sh, -0.5, 0.5)
        return i + sh, b - 0.25 * (a - c) * sh

    marks[:, 0], amps[:, 0] = refine(pos)
    alive = np.ones(m, bool)
    cur = pos.copy()
    for j in range(1, n_max):
        lo = cur + 0.8 * T
        hi = cur + 1.25 * T
        alive &= hi < L - 1
        if not alive.any():
            break
        start = np.floor(lo).astype(int)
        cand = start[:, None] + np.arange(width)[None, :]
        inside = (cand <= hi[:, None]) & (cand < L - 1)
        vals = np.where(inside, xs[rows[:, None], np.clip(cand, 0, L - 1)], -np.inf)
        nxt = cand[rows, vals.argmax(axis=1)].astype(np.float64)
        p, a = refine(nxt)
        marks[alive, j] = p[alive]
        amps[alive, j] = a[alive]
        cur = np.where(alive, nxt, cur)
    # each period's amplitude: the waveform's peak between its two marks
    mi = np.where(np.isfinite(marks), marks, -1).astype(int)
    jj = np.arange(L)[None, :]
    for q in range(n_max - 1):
        a0, a1 = mi[:, q], mi[:, q + 1]
        okq = (a0 >= 0) & (a1 > a0)
        if not okq.any():
            break
        inside = (jj >= a0[:, None]) & (jj < a1[:, None])
        amps[:, q + 1] = np.where(okq, np.where(inside, wav, 0.0).max(axis=1), np.nan)
    per = np.diff(marks, axis=1)  # (m, n_max - 1)
    ok_p = (per >= min_period) & (per <= max_period)
    pair = ok_p[:, 1:] & ok_p[:, :-1]
    ratio = per[:, 1:] / np.where(ok_p[:, :-1], per[:, :-1], 1.0)
    pair &= (ratio < PERIOD_FACTOR) & (ratio > 1 / PERIOD_FACTOR)
    n_pair = pair.sum(axis=1)
    dT = np.where(pair, np.abs(per[:, 1:] - per[:, :-1]), 0.0)
    meanT = np.where(ok_p, per, 0.0).sum(axis=1) / np.maximum(ok_p.sum(axis=1), 1)
    j_loc = dT.sum(axis=1) / np.maximum(n_pair, 1) / np.maximum(meanT, 1e-9)
    # shimmer over consecutive marks of the usable periods (a period's two end marks)
    A = amps[:, 1:]  # A[:, i]: amplitude of period i
    okA = ok_p[:, 1:] & ok_p[:, :-1] & (A[:, 1:] > 0) & (A[:, :-1] > 0)
    dA = np.where(okA, np.abs(20 * np.log10(np.maximum(A[:, 1:], 1e-30) / np.maximum(A[:, :-1], 1e-30))), 0.0)
    s_loc = dA.sum(axis=1) / np.maximum(okA.sum(axis=1), 1)
    n_pair = np.minimum(n_pair, okA.sum(axis=1))
    good = n_pair >= 2
    jit[np.flatnonzero(v)[good]] = j_loc[good]
    shim[np.flatnonzero(v)[good]] = s_loc[good]
    return jit, shim


def syllable_nuclei(rms_db: np.ndarray, voiced: np.ndarray, level_db: np.ndarray, dip_db: float = 2.0,
                    below_level_db: float = 25.0) -> np.ndarray:
    """Boolean per frame: a syllable nucleus (an intensity peak, see the module docstring). ``rms_db`` is
    smoothed over 3 frames first; a frame's peak decision needs the next frame (10 ms of look-ahead)."""
    n = len(rms_db)
    out = np.zeros(n, bool)
    if n < 3:
        return out
    s = np.convolve(rms_db, np.ones(3) / 3, mode="same")
    s[0], s[-1] = rms_db[0], rms_db[-1]
    low = np.inf
    for i in range(1, n - 1):
        low = min(low, s[i])
        if (s[i] > s[i - 1] and s[i] >= s[i + 1] and voiced[i] and s[i] > level_db[i] - below_level_db
                and s[i] - low >= dip_db):
            out[i] = True
            low = s[i]
    return out
