"""Streaming audio features: equal to librosa's offline computation, independent of block size, guarded."""

import librosa
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bridge.config import AudioConfig
from bridge.features.audio import AudioFeatures, sanitize_audio

# Incremental MFCC vs librosa on the whole signal (center=False, power_to_db without top_db clipping, which is
# relative to the whole signal's maximum and so not streamable): max abs difference below this, in MFCC units
# (the coefficients span roughly -600..+200).
MFCC_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def speech(speech_wav):
    y, sr = sf.read(str(speech_wav), dtype="float32")
    if y.ndim == 2:
        y = y.mean(1)
    return librosa.resample(y, orig_sr=sr, target_sr=16000) if sr != 16000 else y


def test_incremental_mfcc_matches_librosa(speech):
    af = AudioFeatures(AudioConfig(window_s=8.0))
    for i in range(0, len(speech), 333):  # odd block size on purpose
        af.process(speech[i:i + 333])
    n = af.frames_seen
    ref_mel = librosa.feature.melspectrogram(y=speech, sr=16000, n_fft=512, hop_length=160, center=False,
                                             n_mels=40, power=2.0)
    ref_db = librosa.power_to_db(ref_mel, ref=1.0, amin=1e-16, top_db=None)
    ref_db = np.maximum(ref_db, ref_db.max(axis=0, keepdims=True) - 80.0)  # the per-frame floor (top_db per frame)
    ref = librosa.feature.mfcc(S=ref_db, n_mfcc=13).T
    assert ref.shape[0] == n
    rows = af.frame_rows()  # the last window_s of frames
    got = rows[:, af.sl_mfcc]
    assert np.abs(got - ref[-len(got):]).max() < MFCC_TOLERANCE
    assert np.abs(rows[:, af.sl_logmel] - ref_db.T[-len(got):]).max() < 5e-3  # dB


@pytest.mark.parametrize("block", [1, 160, 320, 441, 1024, 16000])
def test_block_size_independence(speech, block):
    ref = AudioFeatures()
    ref.process(speech)
    af = AudioFeatures()
    for i in range(0, len(speech), block):
        af.process(speech[i:i + block])
    assert af.frames_seen == ref.frames_seen
    np.testing.assert_allclose(af.frame_rows(), ref.frame_rows(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(af.snapshot().vector, ref.snapshot().vector, rtol=1e-5, atol=1e-4)


def test_voice_activity_pitch_and_loudness(speech):
    af = AudioFeatures()
    af.process(np.zeros(16000, np.float32))
    assert not af.snapshot().voice_active
    assert af.snapshot().loudness_db < -90
    assert af.snapshot().speech_level_db is None  # no speech yet: no level
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sign(np.sin(2 * np.pi * 150 * t)).astype(np.float32)  # a buzzy 150 Hz tone: not a voice
    af.process(tone)
    s = af.snapshot()
    assert not s.voice_active  # the VAD model knows a buzz from speech (the old dB threshold did not)
    assert abs(s.pitch_hz - 150) < 5
    assert -15 < s.loudness_db < 0
    af.reset()
    active = []
    for i in range(0, len(speech), 320):
        af.process(speech[i:i + 320])
        active.append(af.snapshot().voice_active)
    assert np.mean(active) > 0.3 and not active[0]  # espeak: speech between the 1 s pads of silence
    assert -40 < af.snapshot().speech_level_db < -5


def test_cost_does_not_depend_on_history(speech):
    """Only the new hop is analysed: pushing more audio before does not change the work per new block."""
    af = AudioFeatures()
    af.process(speech)
    before = af.frames_seen
    assert af.process(speech[:1600]) == 10  # 100 ms -> exactly 10 new frames at a 10 ms hop
    assert af.frames_seen == before + 10


def test_reset_forgets_everything(speech):
    af = AudioFeatures()
    af.process(speech)
    af.reset()
    fresh = AudioFeatures()
    af.process(speech[:8000])
    fresh.process(speech[:8000])
    np.testing.assert_array_equal(af.snapshot().vector, fresh.snapshot().vector)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(0, 3000), elements=st.floats(allow_nan=True, allow_infinity=True,
                                                                        width=64)))
def test_input_guard_never_emits_nan(x):
    af = AudioFeatures()
    af.process(x)
    af.process(np.full(2000, 1e6))  # clipped, DC
    v = af.snapshot().vector
    assert np.isfinite(v).all()
    assert np.isfinite(sanitize_audio(x)).all()


def test_sanitize_formats():
    assert sanitize_audio(np.array([[0.5, -0.5], [1.0, 1.0]])).tolist() == [0.0, 1.0]  # stereo -> mono
    i16 = sanitize_audio(np.array([32767, -32768], np.int16))
    assert i16.dtype == np.float32 and abs(i16[0] - 1) < 1e-3 and i16[1] == -1


def test_pitch_range_percentiles_equal_numpys_bit_for_bit():
    """The window's pitch range uses a hand-made 10th/90th percentile (numpy's costs ~130 us a tick): it must be
    np.percentile's "linear" result exactly, for every length the window can hold, with ties and equal values."""
    from bridge.features.audio import percentile_10_90

    rng = np.random.default_rng(0)
    for k in range(3000):
        n = int(rng.integers(1, 151))
        x = (12 * np.log2(rng.uniform(60, 500, n) / 100)).astype(np.float32)
        if k % 3 == 0:
            x = np.round(x, 1).astype(np.float32)
        if k % 7 == 0:
            x[:] = x[0]
        ref = np.percentile(x, [10, 90])
        got = percentile_10_90(x)
        assert got == (ref[0], ref[1]) and got[1] - got[0] == float(ref[1] - ref[0]), (n, ref, got)
