"""Prosodic measures (bridge.features.prosody): formants, jitter, shimmer and HNR (measured, not product features:
benchmarks/prosody_probe.py) with known values on a synthetic vowel and gain invariance; the ``audio.prosody``
speech-rate column: follows the talker's rate, not the gain, streams at any block size, changes nothing else, old
weights still load."""

import numpy as np
import pytest
import scipy.signal as ss

from bridge.config import AudioConfig
from bridge.features import prosody as P
from bridge.features.audio import AudioFeatures

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


@pytest.fixture(scope="module")
def speech(speech_wav):
    import librosa
    import soundfile as sf

    y, sr = sf.read(str(speech_wav), dtype="float32")
    return librosa.resample(y, orig_sr=sr, target_sr=SR)


def espeak(tmp_path, words_per_minute: int) -> np.ndarray:
    import shutil
    import subprocess

    import librosa
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from conftest import SPEECH_TEXT

    wav = tmp_path / f"s{words_per_minute}.wav"
    subprocess.run(["espeak-ng", "-s", str(words_per_minute), "-w", str(wav), SPEECH_TEXT], check=True,
                   capture_output=True, timeout=60)
    y, sr = sf.read(str(wav), dtype="float32")
    return librosa.resample(y, orig_sr=sr, target_sr=SR)


def rates(y: np.ndarray, gain: float = 1.0, block: int = 533) -> np.ndarray:
    """The speech-rate column at each block while the voice is active."""
    af = AudioFeatures(AudioConfig(prosody=True))
    i = af.names.index("speech_rate")
    x = np.clip(y * gain, -1, 1).astype(np.float32)
    out = []
    for k in range(0, len(x), block):
        af.process(x[k:k + block])
        s = af.snapshot()
        if s.voice_active:
            out.append(s.vector[i])
    return np.array(out)


def test_prosody_option_adds_only_the_speech_rate_and_streams(speech):
    on, off = AudioFeatures(AudioConfig(prosody=True)), AudioFeatures()
    assert [n for n in on.names if n not in off.names] == ["speech_rate"]
    assert on.names[-1] == off.names[-1] == "recent_active"
    keep = [on.names.index(n) for n in off.names]
    y = 0.3 * speech / np.abs(speech).max()
    for i in range(0, len(y), 533):
        on.process(y[i:i + 533])
        off.process(y[i:i + 533])
        a, b = on.snapshot(), off.snapshot()
        assert np.array_equal(a.vector[keep], b.vector) and a.voice_active == b.voice_active
    # any block size: the same frames (nucleus flags among them) and window vector
    long = AudioConfig(prosody=True, window_s=8.0)  # the whole clip in the window
    ref = AudioFeatures(long)
    ref.process(y)
    assert ref.frame_rows()[:, ref.i_nuc].sum() >= 5
    for block in (1, 441, 16000):
        af = AudioFeatures(long)
        for k in range(0, len(y), block):
            af.process(y[k:k + block])
        np.testing.assert_array_equal(af.frame_rows()[:, af.i_nuc], ref.frame_rows()[:, ref.i_nuc])
        np.testing.assert_allclose(af.frame_rows(), ref.frame_rows(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(af.snapshot().vector, ref.snapshot().vector, rtol=1e-5, atol=1e-4)
    # reset forgets the nucleus detector too
    ref.reset()
    fresh = AudioFeatures(long)
    ref.process(y[:20000])
    fresh.process(y[:20000])
    np.testing.assert_array_equal(ref.snapshot().vector, fresh.snapshot().vector)


def test_speech_rate_follows_the_talker_not_the_gain(tmp_path):
    slow, fast = espeak(tmp_path, 110), espeak(tmp_path, 260)
    slow, fast = (0.1 * y / np.abs(y).max() for y in (slow, fast))  # peaks at -20 dBFS
    r_slow, r_fast = rates(slow), rates(fast)
    assert 1.5 < np.median(r_slow) < 8 and np.median(r_fast) > 1.4 * np.median(r_slow), (r_slow, r_fast)
    for g in (10.0, 0.1):  # +20 dB (clipping the loudest peaks), -20 dB
        r = rates(slow, g)
        assert abs(np.mean(r) - np.mean(r_slow)) < 0.1 * np.mean(r_slow), (g, np.mean(r), np.mean(r_slow))


def test_prosody_cost_does_not_depend_on_history(speech):
    af = AudioFeatures(AudioConfig(prosody=True))
    af.process(speech)
    before = af.frames_seen
    assert af.process(speech[:1600]) == 10
    assert af.frames_seen == before + 10


def test_old_weights_without_the_option_load_and_refuse_a_mismatch():
    from bridge.config import VideoConfig
    from bridge.model.tick import audio_config, feature_schema, schema_mismatch

    old = feature_schema(AudioConfig(), VideoConfig(), 30.0)
    del old["audio"]["prosody"]  # a weights file from before the option
    assert audio_config(old).prosody is False
    assert schema_mismatch(old, feature_schema(AudioConfig(), VideoConfig(), 30.0)) == []
    msg = schema_mismatch(old, feature_schema(AudioConfig(prosody=True), VideoConfig(), 30.0))
    assert any("audio.prosody: false" in m for m in msg), msg
    new = feature_schema(AudioConfig(prosody=True), VideoConfig(), 30.0)
    assert audio_config(new).prosody is True
    assert any("prosody" in m for m in schema_mismatch(new, feature_schema(AudioConfig(), VideoConfig(), 30.0)))
