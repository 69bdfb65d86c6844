"""Synthetic face evidence (bridge.training.face_synth): determinism, ranges, prototypes, dynamics, FaceWindow use,
and a check against the real MediaPipe FaceLandmarker on a real photo."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from bridge.features.face import BLENDSHAPE_NAMES, BS_INDEX, FACE_DIM, N_BLENDSHAPES, PRESENT_FRAC, FaceObservation
from bridge.labels import LABELS
from bridge.training import face_synth as fs
from bridge.training.face_synth import (EMFACS_LABELS, PROTOTYPES, SynthConfig, face_features_for_timeline, generate,
                                        nearest_prototype, parse_intensity, prototype_vector, sample_person,
                                        synthesize, window_features)

FPS = 30.0
NO_DROP = SynthConfig().without_dropouts()  # the training defaults, face always found
FULL = NO_DROP.full_prototypes()  # ... and every episode showing the whole prototype


def _bs(obs: list[FaceObservation]) -> np.ndarray:
    return np.stack([o.blendshapes for o in obs])


def _mean(track, names, sl) -> float:
    return float(np.mean([track.blendshapes[sl, BS_INDEX[n]].mean() for n in names]))


# --- tables ---------------------------------------------------------------------------------------------------


def test_tables_cover_labels_and_real_blendshape_names():
    assert set(PROTOTYPES) == set(LABELS)
    assert set(fs.PROTOTYPE_AUS) == set(LABELS)
    assert PROTOTYPES["neutral"] == {}
    for lab, d in PROTOTYPES.items():
        for name, v in d.items():
            assert name in BS_INDEX, (lab, name)
            assert -0.2 <= v <= 0.8, (lab, name, v)
    for au, names in fs.AU_BLENDSHAPES.items():
        assert all(n in BS_INDEX for n in names), au
    # every EMFACS action unit of a prototype is actually activated by that prototype
    for lab in EMFACS_LABELS:
        for au in fs.PROTOTYPE_AUS[lab]:
            assert any(PROTOTYPES[lab].get(n, 0.0) > 0.0 for n in fs.AU_BLENDSHAPES[au]), (lab, au)
    assert set(fs.BASELINE) == set(BLENDSHAPE_NAMES)
    assert all(0.0 <= v <= 0.2 for v in fs.BASELINE.values())


def test_intensity_parsing():
    assert parse_intensity(1) == 0.6 and parse_intensity(2) == 1.0
    assert parse_intensity(np.int64(2)) == 1.0
    assert parse_intensity(1.0) == 1.0 and parse_intensity(0.3) == 0.3
    assert parse_intensity("normal") == 0.6 and parse_intensity("strong") == 1.0
    for bad in (3, -0.1, 1.5, "loud", True, float("nan")):
        with pytest.raises(ValueError):
            parse_intensity(bad)
    with pytest.raises(ValueError):
        generate([("bored", 1.0, 1.0)], rng=np.random.default_rng(0))
    with pytest.raises(TypeError):
        generate([("happy", 1.0, 1.0)])


# --- determinism and ranges -----------------------------------------------------------------------------------


def test_deterministic_given_seed():
    tl = [("neutral", 1.0, 2.0), ("angry", 2, 3.0), ("happy", 1, 2.5)]
    spk = np.zeros(int(7.5 * FPS), bool)
    spk[60:150] = True
    a = generate(tl, FPS, np.random.default_rng(123), 10.0, spk)
    b = generate(tl, FPS, np.random.default_rng(123), 10.0, spk)
    c = generate(tl, FPS, np.random.default_rng(124), 10.0, spk)
    assert len(a) == len(b) == int(round(7.5 * FPS))
    assert np.array_equal(_bs(a), _bs(b))
    assert [o.pose for o in a] == [o.pose for o in b] and [o.present for o in a] == [o.present for o in b]
    assert [o.size for o in a] == [o.size for o in b]
    assert not np.array_equal(_bs(a), _bs(c))
    assert a[0].t_capture == pytest.approx(10.0) and a[1].t_capture == pytest.approx(10.0 + 1 / FPS)


def test_scores_in_range_no_nan():
    rng = np.random.default_rng(5)
    cfg = SynthConfig(p_dropouts=1.0, dropout_rate_per_min=6.0)
    for k in range(12):
        tl = [(LABELS[(k + i) % len(LABELS)], float(rng.uniform(0, 1)), float(rng.uniform(0.3, 5.0)))
              for i in range(4)]
        n = int(round(sum(d for *_, d in tl) * FPS))
        obs = generate(tl, FPS, rng, 0.0, rng.random(n) < 0.5, config=cfg)
        assert len(obs) == n
        bs = _bs(obs)
        assert bs.dtype == np.float32 and bs.shape == (n, N_BLENDSHAPES)
        assert np.isfinite(bs).all() and bs.min() >= 0.0 and bs.max() <= 1.0
        for o in obs:
            assert all(np.isfinite(o.pose))
            if o.present:
                assert 0.05 <= o.size <= 1.0 and all(abs(p) < 90 for p in o.pose)
            else:
                assert o.size == 0.0 and not o.blendshapes.any()


def test_person_ranges():
    rng = np.random.default_rng(9)
    for _ in range(50):
        p = sample_person(rng)
        assert 0.2 <= p.size <= 0.6 and 0.6 <= p.gain <= 1.4 and 15 <= p.blink_rate_per_min <= 20
        assert 3.0 <= p.syllable_hz <= 6.0
        assert p.baseline.shape == (N_BLENDSHAPES,) and (p.baseline >= 0).all() and (p.baseline <= 0.6).all()
        assert p.baseline[BS_INDEX["_neutral"]] < 1e-3  # MediaPipe's _neutral stays at ~1e-6
        # asymmetry is opposite on the two sides of a pair and zero on central channels
        assert p.asym[BS_INDEX["mouthSmileLeft"]] == pytest.approx(-p.asym[BS_INDEX["mouthSmileRight"]])
        assert p.asym[BS_INDEX["jawOpen"]] == 0.0


# --- prototypes show up at the apex ---------------------------------------------------------------------------


@pytest.mark.parametrize("label", [lab for lab in LABELS if lab != "neutral"])
def test_prototype_channels_rise_at_apex(label):
    rng = np.random.default_rng(100 + LABELS.index(label))
    neu_sl, apex_sl = slice(int(0.5 * FPS), int(3.5 * FPS)), slice(int(6.0 * FPS), int(9.0 * FPS))
    core = [n for n, v in PROTOTYPES[label].items() if v >= 0.2]
    diffs = {n: [] for n in PROTOTYPES[label]}
    for _ in range(6):
        tr = synthesize([("neutral", 1.0, 4.0), (label, 2, 6.0)], FPS, rng, config=FULL)
        for n in diffs:
            diffs[n].append(_mean(tr, [n], apex_sl) - _mean(tr, [n], neu_sl))
        if label == "happy":  # even the least expressive sampled person smiles visibly
            smile = ["mouthSmileLeft", "mouthSmileRight"]
            assert _mean(tr, smile, apex_sl) > _mean(tr, smile, neu_sl) + 0.15
    if label == "happy":
        assert np.mean(diffs["mouthSmileLeft"]) > 0.3 and np.mean(diffs["mouthSmileRight"]) > 0.3
    for n in core:  # every strong prototype channel rises by a clear share of its apex value
        assert np.mean(diffs[n]) > 0.4 * PROTOTYPES[label][n], (label, n, np.mean(diffs[n]))
    if label == "calm":  # our assumption: heavier lids, a trace of a smile, less brow activity
        assert np.mean(diffs["eyeBlinkLeft"]) > 0.05 and np.mean(diffs["mouthSmileLeft"]) > 0.03
        assert np.mean(diffs["browInnerUp"]) < 0.0


def test_normal_intensity_is_weaker_than_strong():
    rng = np.random.default_rng(11)
    sl = slice(int(1.5 * FPS), int(4.0 * FPS))
    strong, normal = [], []
    for _ in range(12):
        strong.append(_mean(synthesize([("happy", 2, 5.0)], FPS, rng, config=FULL),
                            ["mouthSmileLeft", "mouthSmileRight"], sl))
        normal.append(_mean(synthesize([("happy", 1, 5.0)], FPS, rng, config=FULL),
                            ["mouthSmileLeft", "mouthSmileRight"], sl))
    assert np.mean(strong) > np.mean(normal) + 0.1
    assert 0.55 < np.mean(strong) < 0.95  # MediaPipe's range for a broad smile (astronaut: 0.90)


def test_episodes_rise_and_fall_within_long_segments():
    rng = np.random.default_rng(2)
    n_multi = 0
    for _ in range(20):
        tr = synthesize([("angry", 2, 14.0)], FPS, rng, config=FULL)
        a = tr.activation[:, LABELS.index("angry")]
        assert a.max() > 0.4
        inside = a[int(2 * FPS):int(11 * FPS)]
        n_multi += bool(inside.min() < 0.5 * inside.max())  # relaxed between two episodes
        # onset is gradual (0.2-0.6 s + smoothing), not a step
        first = int(np.argmax(a > 0.05 * a.max()))
        top = int(np.argmax(a > 0.9 * a[: int(3 * FPS)].max()))
        assert top - first >= 4
    assert 3 <= n_multi <= 19  # some segments hold one sustained episode, most have several


# --- blinks, talking, dropouts --------------------------------------------------------------------------------


def _count_blinks(x: np.ndarray, thr: float = 0.5) -> int:
    above = x > thr
    return int(np.sum(above[1:] & ~above[:-1]) + above[0])


def _peaks(x: np.ndarray, prominence: float = 0.04) -> int:
    m = np.median(x)
    return int(np.sum((x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > m + prominence)))


def test_blink_rate_over_60s():
    rng = np.random.default_rng(21)
    rates = []
    for _ in range(8):
        tr = synthesize([("neutral", 1.0, 60.0)], FPS, rng, config=NO_DROP)
        both = np.minimum(tr.blendshapes[:, BS_INDEX["eyeBlinkLeft"]], tr.blendshapes[:, BS_INDEX["eyeBlinkRight"]])
        nb = _count_blinks(both)
        assert 6 <= nb <= 32, nb
        rates.append(nb)
        assert both.max() > 0.75  # a blink closes both eyes to ~0.8-1.0
        assert np.median(both) < 0.3
    assert 13.0 <= np.mean(rates) <= 21.0, rates


def test_blink_duration_about_150ms():
    tr = synthesize([("neutral", 1.0, 60.0)], FPS, np.random.default_rng(4), config=NO_DROP)
    x = tr.blendshapes[:, BS_INDEX["eyeBlinkLeft"]] > 0.5
    runs, k = [], 0
    for v in x:
        if v:
            k += 1
        elif k:
            runs.append(k)
            k = 0
    assert runs and np.median(runs) / FPS <= 0.15  # above half-closure for at most ~100 ms at 30 fps


def test_speaking_increases_jaw_variance():
    n = int(20 * FPS)
    spk = np.zeros(n, bool)
    spk[n // 2:] = True
    rng = np.random.default_rng(8)
    ratios = []
    for _ in range(5):
        tr = synthesize([("neutral", 1.0, 20.0)], FPS, rng, 0.0, spk, config=NO_DROP)
        jaw = tr.blendshapes[:, BS_INDEX["jawOpen"]]
        ratios.append(jaw[n // 2 + 10:].var() / max(jaw[: n // 2 - 10].var(), 1e-9))
        # the jaw opens at roughly the syllable rate (3-6 Hz) while talking, and not at all in silence
        talk, quiet = jaw[n // 2 + 5:], jaw[: n // 2 - 5]
        assert 2.0 <= _peaks(talk) / (len(talk) / FPS) <= 6.5
        assert _peaks(quiet) / (len(quiet) / FPS) < 0.3
    assert min(ratios) > 10.0, ratios


def test_explicit_dropouts_and_face_window():
    tl = [("happy", 2, 8.0)]
    tr = synthesize(tl, FPS, np.random.default_rng(1), 0.0, config=NO_DROP, dropouts=[(3.0, 2.0)])
    t = tr.times
    gone = (t >= 3.0) & (t < 5.0)
    assert not tr.present[gone].any() and tr.present[~gone].all()
    obs = tr.observations()
    ticks = np.arange(0.0, 8.0, 1 / 30)
    ft = window_features(obs, ticks, window_s=0.5, max_age_s=5.0)
    assert ft.features.shape == (len(ticks), FACE_DIM) and ft.features.dtype == np.float32
    # deep inside the dropout: nothing present in the window -> an all-zero vector, face age growing
    deep = (ticks >= 3.6) & (ticks < 4.9)
    assert not ft.features[deep].any()
    assert not ft.present[deep].any()
    assert np.all(np.diff(ft.age_s[deep]) > 0) and ft.age_s[deep][-1] == pytest.approx(4.9 - 3.0 - 1 / 30, abs=0.05)
    assert np.all(ft.age_s[ticks < 2.9] == 0.0) and ft.present[ticks < 2.9].all()
    # present_frac equals the fraction of present frames in the window the FaceWindow holds
    for k in np.flatnonzero((ticks > 2.8) & (ticks < 5.6)):
        in_win = (t <= ticks[k] + 1e-9) & (t >= t[t <= ticks[k] + 1e-9].max() - 0.5 - 1e-9)
        frac = tr.present[in_win].mean()
        assert ft.features[k, PRESENT_FRAC] == pytest.approx(frac, abs=1e-6)
        if frac == 0.0:
            assert not ft.features[k].any()
        else:
            assert ft.features[k, BS_INDEX["mouthSmileLeft"]] > 0.0


def test_random_dropouts_lengths():
    cfg = SynthConfig(p_dropouts=1.0, dropout_rate_per_min=10.0)
    rng = np.random.default_rng(31)
    lengths = []
    for _ in range(10):
        tr = synthesize([("neutral", 1.0, 60.0)], FPS, rng, config=cfg)
        x = np.r_[False, ~tr.present, False].astype(int)
        starts, ends = np.flatnonzero(np.diff(x) == 1), np.flatnonzero(np.diff(x) == -1)
        inside = ends < len(tr.present)  # a stretch cut by the end of the sequence is shorter than drawn
        lengths += list((ends - starts)[inside] / FPS)
    lengths = np.array(lengths)
    assert len(lengths) > 40
    # merged overlapping stretches can exceed 3 s, single ones sit in 0.2-3 s
    assert lengths.min() >= 0.2 - 1 / FPS and np.median(lengths) < 3.0
    tr = synthesize([("neutral", 1.0, 60.0)], FPS, rng, config=NO_DROP)
    assert tr.present.all()


def test_whole_sequence_absence():
    tl = [("sad", 2, 4.0)]
    ticks = np.arange(0.0, 4.0, 0.1)
    ft = face_features_for_timeline(tl, ticks, rng=np.random.default_rng(3), absent=True, max_age_s=2.0)
    assert not ft.present.any() and not ft.features.any() and np.all(ft.age_s == 2.0)
    # and via the config probability
    cfg = SynthConfig(p_absent=1.0)
    obs = generate(tl, FPS, np.random.default_rng(3), config=cfg)
    assert not any(o.present for o in obs)
    cfg = SynthConfig(p_absent=0.3, p_dropouts=0.0)
    rng = np.random.default_rng(6)
    n_abs = sum(not generate([("happy", 2, 1.0)], FPS, rng, config=cfg)[0].present for _ in range(200))
    assert 35 <= n_abs <= 85


def test_face_features_for_timeline_matches_manual_window():
    tl = [("neutral", 1.0, 2.0), ("surprised", 2, 3.0)]
    ticks = np.arange(0.0, 5.0, 1 / 15) + 100.0
    ft = face_features_for_timeline(tl, ticks, rng=np.random.default_rng(12), t0=100.0, config=FULL)
    obs = generate(tl, FPS, np.random.default_rng(12), 100.0, config=FULL)
    again = window_features(obs, ticks)
    assert np.array_equal(ft.features, again.features)
    k = 60  # t = 104 s: mean of the frames in (103.5, 104]
    sel = [o.blendshapes for o in obs if 103.5 - 1e-9 <= o.t_capture <= 104.0 + 1e-9]
    assert ft.features[k, :N_BLENDSHAPES] == pytest.approx(np.mean(sel, 0), abs=1e-5)
    assert ft.features[k, BS_INDEX["browInnerUp"]] > ft.features[15, BS_INDEX["browInnerUp"]] + 0.2
    with pytest.raises(ValueError):
        window_features(obs, ticks[::-1])


# --- separability and the real landmarker ---------------------------------------------------------------------


def _nearest_prototype_accuracy(cfg: SynthConfig, seed: int, reps: int = 10) -> float:
    rng = np.random.default_rng(seed)
    hits, total = 0, 0
    for label in EMFACS_LABELS:
        for k in range(reps):
            tl = [("neutral", 1.0, 2.0), (label, (1, 2)[k % 2], 4.0), ("neutral", 1.0, 1.0)]
            ticks = np.array([3.5, 4.0, 4.5])  # apex of the segment (2-6 s)
            ft = face_features_for_timeline(tl, ticks, rng=rng, config=cfg, window_s=0.5)
            for v in ft.features:
                hits += nearest_prototype(v) == label
                total += 1
    return hits / total


def test_nearest_prototype_recovers_emfacs_labels():
    # persons, intensities (RAVDESS normal/strong), asymmetry, noise, blinks all vary; full prototypes
    assert _nearest_prototype_accuracy(FULL, 2024) >= 0.9
    # the training defaults add upper-/lower-face-only and unexpressed episodes: harder, still mostly separable
    acc = _nearest_prototype_accuracy(NO_DROP, 2025)
    assert 0.75 <= acc, acc


def test_partial_and_unexpressed_episodes():
    rng = np.random.default_rng(17)
    apex, rest = slice(int(2.0 * FPS), int(3.5 * FPS)), slice(0, int(0.15 * FPS))
    cfg = replace(FULL, p_partial=1.0)
    kinds = set()
    for _ in range(16):
        tr = synthesize([("surprised", 2, 4.0)], FPS, rng, config=cfg)
        brow = _mean(tr, ["browInnerUp"], apex) - _mean(tr, ["browInnerUp"], rest)
        jaw = _mean(tr, ["jawOpen"], apex) - _mean(tr, ["jawOpen"], rest)
        rel = sorted((brow / PROTOTYPES["surprised"]["browInnerUp"], jaw / PROTOTYPES["surprised"]["jawOpen"]))
        assert rel[0] < 0.1 and rel[1] > 0.3, (brow, jaw)  # exactly one face region moves
        kinds.add(brow > jaw)
    assert kinds == {True, False}
    tr = synthesize([("surprised", 2, 4.0)], FPS, rng, config=replace(FULL, p_unexpressed=1.0))
    assert not tr.activation.any()
    assert _mean(tr, ["browInnerUp"], apex) < 0.2


def test_prototype_vectors_are_their_own_nearest():
    for lab in EMFACS_LABELS:
        assert nearest_prototype(prototype_vector(lab, 1.0)) == lab
        assert nearest_prototype(prototype_vector(lab, 1)) == lab
    with pytest.raises(ValueError):
        nearest_prototype(prototype_vector("happy"), labels=("neutral", "happy"))


_MODEL = os.environ.get("BRIDGE_FACE_MODEL") or fs.DEFAULT_FACE_MODEL


@pytest.mark.skipif(not os.path.exists(_MODEL), reason=f"face model not found at {_MODEL}")
def test_real_astronaut_photo_is_nearest_to_happy():
    pytest.importorskip("mediapipe")
    pytest.importorskip("skimage")
    v = fs.astronaut_blendshapes(_MODEL)
    assert v is not None, "MediaPipe found no face in skimage.data.astronaut()"
    assert nearest_prototype(v) == "happy"
    assert nearest_prototype(v, labels=[lab for lab in LABELS if lab != "neutral"]) == "happy"
    # the calibration facts the prototypes rely on (docs/FACE_EVIDENCE.md)
    smile = v[[BS_INDEX["mouthSmileLeft"], BS_INDEX["mouthSmileRight"]]].mean()
    assert 0.6 <= smile <= 1.0
    assert v[BS_INDEX["_neutral"]] < 1e-3
    assert v[[BS_INDEX["cheekSquintLeft"], BS_INDEX["cheekSquintRight"]]].max() < 0.05
    assert v[[BS_INDEX["eyeSquintLeft"], BS_INDEX["eyeSquintRight"]]].mean() > 0.15
