"""The prosodic measures benchmarks/prosody_probe.py tried (benchmarks/prosody_measures.py: formants, jitter,
shimmer, HNR, syllable nuclei; measured, not product features): known values on a synthetic vowel, plausible
values on real synthesised speech, no dependence on the gain."""

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss

from bridge.features.audio import AudioFeatures

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import prosody_measures as P  # noqa: E402

SR = 16000
FORMANTS = (700.0, 1220.0, 2600.0)


def vowel(f0: float = 120.0, jitter: float = 0.0, shimmer_db: float = 0.0, seconds: float = 1.0,
          noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A pulse train through three formant resonators. Each period is the nominal one times (1 +- ``jitter``) and
    each pulse's amplitude 10^(+-shimmer_db/40) (signs at random): local jitter ~ ``jitter``, local shimmer ~
    ``shimmer_db / 2``."""
    r = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n)
    t = 0.0
    while t < n - 1:
        i = int(t)
        a = 10 ** (r.choice([-1, 1]) * shimmer_db / 40)
        x[i] += a * (1 - (t - i))
        x[i + 1] += a * (t - i)
        t += SR / f0 * (1 + jitter * r.choice([-1, 1]))
    x = ss.lfilter([1], [1, -0.95], x)
    for f, b in zip(FORMANTS, (80, 90, 120)):
        rr = np.exp(-np.pi * b / SR)
        x = ss.lfilter([1 - rr], [1, -2 * rr * np.cos(2 * np.pi * f / SR), rr * rr], x)
    x = 0.3 * x / np.abs(x).max() + noise * r.normal(size=n)
    return x.astype(np.float32)


def frames(x: np.ndarray, length: int = 1024) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x, length)[::160]


def test_formants_of_a_synthetic_vowel():
    F = P.formants(frames(vowel(), 512), SR)
    got = np.nanmedian(F, axis=0)
    assert np.all(np.abs(got - np.array(FORMANTS)) < 0.04 * np.array(FORMANTS)), got


@pytest.mark.parametrize("jitter", [0.0, 0.005, 0.02])
def test_jitter_of_a_synthetic_vowel(jitter):
    x = frames(vowel(jitter=jitter))
    j, _ = P.jitter_shimmer(x, np.full(len(x), SR / 120.0), SR / 500, SR / 65)
    # expected local jitter: |T_i - T_i-1| / T is 2*jitter when the signs differ, 0 when they agree
    assert abs(np.nanmean(j) - jitter) < 0.25 * jitter + 0.0005, np.nanmean(j)


def test_shimmer_and_hnr_grow_with_perturbation_and_noise():
    def measure(**kw):
        x = frames(vowel(**kw))
        per = np.full(len(x), SR / 120.0)
        return np.nanmean(P.jitter_shimmer(x, per, SR / 500, SR / 65)[1]), np.nanmean(P.hnr(x, per))

    s0, h0 = measure()
    s1, _ = measure(shimmer_db=2.0)
    _, h1 = measure(noise=0.02)
    assert s1 > s0 + 0.5  # dB
    assert h0 > 25 and h1 < h0 - 10  # a clean vowel is very harmonic; noise lowers the HNR


def test_measures_do_not_move_with_gain():
    x = vowel(jitter=0.01, shimmer_db=1.0, noise=0.002)
    per = np.full(len(frames(x)), SR / 120.0)
    ref = [P.formants(frames(x, 512), SR), *P.jitter_shimmer(frames(x), per, SR / 500, SR / 65),
           P.hnr(frames(x), per)]
    for g in (0.01, 3.0):  # -40 dB, +9.5 dB (no clipping)
        y = x * g
        got = [P.formants(frames(y, 512), SR), *P.jitter_shimmer(frames(y), per, SR / 500, SR / 65),
               P.hnr(frames(y), per)]
        for a, b in zip(ref, got):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_syllable_nuclei_count_bursts():
    # 5 voiced intensity bursts of 120 ms, 20 dB above the dips between them: 5 nuclei
    t = np.arange(100)
    db = np.full(100, -45.0)
    for k in range(5):
        db[10 + 18 * k: 22 + 18 * k] = -25.0 + np.hanning(12) * 3
    n = P.syllable_nuclei(db, np.ones(100, bool), np.full(100, -25.0))
    assert n.sum() == 5 and t[n].min() >= 10


def test_measures_on_real_speech_are_plausible_and_gain_free(speech_wav):
    """On espeak speech (a real synthesiser, not our vowel model), frame by frame wherever a pitch was found:
    formants in the vowel range, small jitter, HNR of voiced speech; the same values at -20 dB and +14 dB."""
    import librosa
    import soundfile as sf

    y, sr = sf.read(str(speech_wav), dtype="float32")
    y = librosa.resample(y, orig_sr=sr, target_sr=SR)
    y = 0.1 * y / np.abs(y).max()
    af = AudioFeatures()
    got = []
    orig = af._analyse

    def analyse(buf, n):
        idx = np.arange(af.context)[None, :] + af.hop * np.arange(n)[:, None]
        rows = orig(buf, n)
        got.append((buf[idx], rows[:, af.i_f0]))
        return rows

    af._analyse = analyse
    af.process(y)
    fr = np.concatenate([g[0] for g in got])
    f0 = np.concatenate([g[1] for g in got])
    sel = f0 > 0
    assert sel.sum() > 50
    per = SR / f0[sel].astype(np.float64)

    def measure(x):
        return [P.formants(x[:, -512:], SR), *P.jitter_shimmer(x, per, SR / 500, SR / 65), P.hnr(x, per)]

    F, j, s, h = measure(fr[sel])
    f1, f2 = np.nanmedian(F[:, 0]), np.nanmedian(F[:, 1])
    assert 250 < f1 < 900 and 900 < f2 < 2500, (f1, f2)
    assert np.nanmedian(j) < 0.03 and np.nanmedian(s) < 3.0 and np.nanmedian(h) > 5.0
    for g in (0.1, 5.0):
        for a, b in zip(measure(fr[sel] * g), (F, j, s, h)):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
