"""Microphone-and-room augmentation for training audio, and the conditions of the robustness evaluation.

Everything is a pure function of its inputs and a ``numpy.random.Generator``, so a seed reproduces it exactly.
The same functions make the evaluation conditions (``bridge.training.robustness``), so "pink noise at 10 dB SNR"
means the same thing in training and in the table.

- gain with clipping at full scale (a hot or a quiet microphone)
- spectral tilt / EQ and band-limiting (telephone band 300-3400 Hz, a cheap USB microphone's bumpy response)
- additive noise at a chosen SNR: pink, brown, babble (a mix of other speakers), tonal music-like noise
- reverberation from synthetic room impulse responses: exponentially decaying noise with a chosen RT60
  (Schroeder's statistical model of a diffuse late field), with a direct path and sparse early reflections
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import signal

SR = 16000


# ------------------------------------------------------------------ levels
def active_power(y: np.ndarray, sr: int = SR, floor_db: float = 40.0) -> float:
    """Mean power of the 20 ms frames within ``floor_db`` of the loudest one (a simple active speech level,
    so the leading/trailing silence of a clip does not lower its "signal" power)."""
    n = int(0.02 * sr)
    k = len(y) // n
    if k == 0:
        return float(np.mean(y.astype(np.float64) ** 2) + 1e-20)
    p = np.mean(y[:k * n].astype(np.float64).reshape(k, n) ** 2, axis=1)
    keep = p >= p.max() * 10 ** (-floor_db / 10)
    return float(p[keep].mean() + 1e-20)


def gain(y: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` and clip at full scale, as an overdriven input stage does."""
    return np.clip(y * np.float32(10 ** (db / 20)), -1.0, 1.0).astype(np.float32)


def mix_at_snr(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``y`` plus ``noise`` scaled so that active speech power / noise power = ``snr_db``."""
    noise = fit_length(noise, len(y))
    pn = float(np.mean(noise.astype(np.float64) ** 2) + 1e-20)
    k = np.sqrt(active_power(y) / (pn * 10 ** (snr_db / 10)))
    return np.clip(y + k * noise, -1.0, 1.0).astype(np.float32)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) >= n:
        return x[:n]
    reps = int(np.ceil(n / max(1, len(x))))
    return np.tile(x, reps)[:n]


# ------------------------------------------------------------------ noises
def colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectral density ~ 1/f**exponent (1: pink, 2: brown), unit RMS."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / SR)
    f[0] = f[1] if len(f) > 1 else 1.0
    spec *= f ** (-exponent / 2)
    x = np.fft.irfft(spec, n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return colored_noise(n, rng, 1.0)


def brown_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return colored_noise(n, rng, 2.0)


def babble(others: Sequence[np.ndarray], n: int, rng: np.random.Generator, talkers: int = 4) -> np.ndarray:
    """Several other speakers talking at once: ``talkers`` clips (level-normalised, random start) summed."""
    out = np.zeros(n, np.float64)
    for _ in range(talkers):
        x = others[int(rng.integers(len(others)))]
        x = x / np.sqrt(active_power(x))
        x = fit_length(np.roll(x, int(rng.integers(len(x)))), n)
        out += x
    return (out / np.sqrt(np.mean(out ** 2) + 1e-20)).astype(np.float32)


def music_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Tonal, music-like background: random chords of harmonic tones with note changes and a soft beat."""
    t = np.arange(n) / SR
    out = np.zeros(n)
    note_len = int(rng.uniform(0.25, 0.8) * SR)
    for start in range(0, n, note_len):
        seg = slice(start, min(n, start + note_len))
        tt = t[seg] - t[start]
        env = np.minimum(1.0, tt / 0.01) * np.exp(-tt * rng.uniform(1.0, 4.0))
        for _ in range(int(rng.integers(2, 5))):
            f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
            for h in range(1, 6):
                if f0 * h < SR / 2:
                    out[seg] += env * np.sin(2 * np.pi * f0 * h * tt + rng.uniform(0, 6.3)) / h
    return (out / (np.std(out) + 1e-12)).astype(np.float32)


# ------------------------------------------------------------------ channel
def band_limit(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Band-pass (4th-order Butterworth, zero-phase is not needed: causal like a real channel)."""
    hi = min(hi, SR / 2 * 0.98)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=SR, output="sos")
    return signal.sosfilt(sos, y).astype(np.float32)


def tilt_eq(y: np.ndarray, rng: np.random.Generator, max_tilt_db: float = 6.0, n_bands: int = 4,
            max_band_db: float = 6.0) -> np.ndarray:
    """A random microphone response: a spectral tilt of up to ±``max_tilt_db`` per octave re 1 kHz, plus a few
    random peaking bumps, as an FIR filter designed from the desired magnitude."""
    f = np.linspace(0, SR / 2, 257)
    octv = np.log2(np.maximum(f, 50.0) / 1000.0)
    mag_db = rng.uniform(-max_tilt_db, max_tilt_db) * octv / 3.0
    for _ in range(n_bands):
        fc = np.exp(rng.uniform(np.log(150.0), np.log(6000.0)))
        bw = rng.uniform(0.3, 1.5)  # octaves
        mag_db += rng.uniform(-max_band_db, max_band_db) * np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / fc) / bw) ** 2)
    mag_db -= np.max(mag_db)  # never louder than the original: the gain stage decides the level
    taps = signal.firwin2(129, f / (SR / 2), 10 ** (mag_db / 20))
    return signal.lfilter(taps, [1.0], y).astype(np.float32)


def synth_rir(rt60: float, rng: np.random.Generator, sr: int = SR, drr_db: float | None = None) -> np.ndarray:
    """A room impulse response: direct path, a few early reflections, then exponentially decaying Gaussian
    noise reaching -60 dB after ``rt60`` seconds; lowpassed slightly as walls absorb the highs."""
    n = int(max(0.1, rt60 * 1.2) * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * 10 ** (-3 * t / rt60)  # amplitude: -60 dB at rt60
    onset = int(rng.uniform(0.002, 0.008) * sr)
    tail[:onset] = 0.0
    h = np.zeros(n)
    h[0] = 1.0
    for _ in range(6):
        k = int(rng.uniform(0.003, 0.03) * sr)
        h[k] += rng.uniform(-0.6, 0.6)
    drr = rng.uniform(-3.0, 6.0) if drr_db is None else drr_db  # direct-to-reverberant ratio
    tail *= np.sqrt(np.sum(h ** 2) / (np.sum(tail ** 2) + 1e-20) / 10 ** (drr / 10))
    sos = signal.butter(2, 5000, btype="lowpass", fs=sr, output="sos")
    h = h + signal.sosfilt(sos, tail)
    return (h / np.max(np.abs(h))).astype(np.float32)


def reverb(y: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir`` (same length as ``y``: the tail beyond the clip is dropped, as in a live stream),
    keeping the active level, then clip."""
    out = signal.fftconvolve(y, rir)[:len(y)]
    out *= np.sqrt(active_power(y) / active_power(out))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------ training recipe
def draw_condition(rng: np.random.Generator, p_noise: float = 0.7, p_reverb: float = 0.5, p_channel: float = 0.6,
                   max_gain_db: float = 24.0) -> dict:
    """One random microphone, room and noise (one visitor at one installation): channel (tilt/EQ, sometimes the
    telephone band or a cheap USB mic's band), room reverb (RT60 0.2-1.0 s), additive noise at 0-30 dB SNR
    (pink, brown, babble of other speakers, music-like), and a gain of ±``max_gain_db`` with clipping."""
    c: dict = {"gain_db": round(float(rng.uniform(-max_gain_db, max_gain_db)), 2), "eq_seed": int(rng.integers(2**31))}
    if rng.random() < p_channel:
        c["eq"] = True
        u = rng.random()
        if u < 0.2:
            c["band"] = (300.0, 3400.0)
        elif u < 0.4:
            c["band"] = (float(rng.uniform(80, 200)), float(rng.uniform(5000, 7800)))
    if rng.random() < p_reverb:
        c["rt60"] = round(float(rng.uniform(0.2, 1.0)), 3)
    if rng.random() < p_noise:
        c["noise"] = ("pink", "brown", "music", "babble")[int(rng.integers(4))]
        c["snr_db"] = round(float(rng.uniform(0.0, 30.0)), 2)
    return c


def apply_condition(y: np.ndarray, c: dict, rng: np.random.Generator,
                    others: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Apply a condition from :func:`draw_condition` (``rng`` draws the noise and room realisations)."""
    x = y.astype(np.float32)
    if c.get("eq"):
        x = tilt_eq(x, np.random.default_rng(c["eq_seed"]))  # the same microphone for every stream of a session
    if "band" in c:
        x = band_limit(x, *c["band"])
    if "rt60" in c:
        x = reverb(x, synth_rir(c["rt60"], np.random.default_rng(c["eq_seed"] + 1)))
    if "noise" in c:
        kind = c["noise"] if (c["noise"] != "babble" or others) else "pink"
        noise = {"pink": lambda: pink_noise(len(x), rng), "brown": lambda: brown_noise(len(x), rng),
                 "music": lambda: music_noise(len(x), rng),
                 "babble": lambda: babble(others or [], len(x), rng)}[kind]()
        x = mix_at_snr(x, noise, c["snr_db"])
    return gain(x, c["gain_db"])
