"""Site adaptation (bridge/features/site.py): an installation learns its microphone and room from the speech it
hears, across visitors, and hands the model features mapped onto the training population's."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bridge.config import AudioConfig, Config, VideoConfig
from bridge.engine import FeatureEngine
from bridge.features.site import SiteAdaptation
from bridge.model.affect import load_weights, save_weights
from bridge.pipeline import process_files, site_adaptation
from bridge.training import augment
from bridge.training.data import load_dataset, read_audio
from bridge.training.metrics import auc

RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-speech-16k"


def _site(d=6, tick_hz=10.0, prior_s=10.0):
    rng = np.random.default_rng(0)
    return SiteAdaptation(rng.normal(0, 3, d), rng.uniform(0.5, 2, d), tick_hz, prior_s=prior_s, memory_s=1e5), rng


def test_identity_in_the_training_room():
    site, rng = _site()
    for _ in range(3000):
        site.update(site.ref_mean + site.ref_std * rng.normal(size=6))
    x = site.ref_mean + site.ref_std * rng.normal(size=(50, 6))
    assert np.allclose(site.apply(x), x, atol=0.15 * site.ref_std.max())


def test_another_microphone_is_mapped_back_and_the_voice_flag_is_kept():
    site, rng = _site()
    scale, shift = np.array([1.3, 0.8, 1.0, 1.2, 0.9, 1.0]), np.array([2.0, -1.0, 0.5, 3.0, -2.0, 0.0])
    heard = lambda n: (site.ref_mean + site.ref_std * rng.normal(size=(n, 6))) * scale + shift  # noqa: E731
    before = site.apply(heard(2000))
    for x in heard(20000):
        site.update(x)
    after = site.apply(heard(4000))
    err_before = np.abs(before.mean(0) - site.ref_mean)[:-1] / site.ref_std[:-1]
    err_after = np.abs(after.mean(0) - site.ref_mean)[:-1] / site.ref_std[:-1]
    assert err_after.max() < 0.05 < err_before.max()
    assert np.allclose(after.std(0)[:-1] / site.ref_std[:-1], 1.0, atol=0.06)
    x = heard(5)
    assert np.array_equal(site.apply(x)[:, -1], x[:, -1].astype(np.float32))


def test_the_first_seconds_change_little_and_stretch_is_bounded():
    site, rng = _site(prior_s=10.0)  # 100 prior ticks
    for _ in range(10):  # one second of a very different voice
        site.update(site.ref_mean + 50.0)
    assert 0.05 < site.health()["weight"] < 0.15
    for _ in range(5000):  # a site where one feature never varies
        site.update(site.ref_mean + np.r_[0.001 * rng.normal(size=5), 0.0])
    x = site.ref_mean + np.r_[np.ones(5), 0.0]
    assert np.all(np.abs(site.apply(x) - site.ref_mean)[:-1] <= 1.5 + 1e-6)  # at most MAX_SCALE times


def test_a_visitor_leaving_does_not_forget_the_site():
    site, _ = _site()
    eng = FeatureEngine(AudioConfig(), VideoConfig(), use_face=False)
    eng.site = site
    site.update(site.ref_mean)
    eng.reset()  # what the pipeline does when a visitor leaves, and on the reset command
    assert eng.site is site and site.n > 0


def test_shipped_weights_carry_the_reference_and_old_ones_run_without(tmp_path, caplog):
    cfg = Config()
    from bridge.pipeline import load_model

    model = load_model(cfg)
    site = site_adaptation(cfg, model)
    assert site is not None and len(site.ref_mean) == model.net.audio_dim
    assert site_adaptation(Config(audio=AudioConfig(site_adaptation=False)), model) is None
    from bridge.pipeline import Bridge

    b = Bridge(cfg, model)
    assert b.health()["model"]["site"] == {"speech_s": 0.0, "weight": 0.0}
    b.handle_command({"cmd": "reset"})
    assert b.engine.site is not None  # the reset command resets visitors, not the site
    net, meta = load_weights(None)
    meta = {k: v for k, v in meta.items() if k != "site_reference"}
    old = tmp_path / "old.pt"
    save_weights(old, net, meta)
    with caplog.at_level(logging.INFO, logger="bridge.pipeline"):
        old_model = load_model(cfg, str(old))
        assert site_adaptation(cfg, old_model) is None
    assert "retrain" in caplog.text


@pytest.mark.skipif(not RAVDESS.is_dir(), reason="needs ../shared/data/ravdess-speech-16k")
def test_a_cheap_microphone_is_learned_from_real_speech(tmp_path):
    """RAVDESS validation speakers through a band-limited, tilted microphone: after a minute or two of their
    speech the features the model sees are much closer to the training population's than the raw ones (a short
    prior, so that a test-sized stream gets there)."""
    model_meta = load_weights(None)[1]
    cfg = Config(audio=AudioConfig(site_prior_s=10.0))
    clips = load_dataset(RAVDESS, {15, 16})[::5][:18]
    rng = np.random.default_rng(3)
    y = np.concatenate([np.r_[np.zeros(4000, np.float32), read_audio(c)] for c in clips])
    y = augment.band_limit(augment.tilt_eq(y, rng), 200.0, 4000.0)
    site = SiteAdaptation.from_meta(model_meta, cfg.model.tick_hz, cfg.audio.site_prior_s, cfg.audio.site_memory_s)
    eng = FeatureEngine(cfg.audio, cfg.video, use_face=False)
    eng.site = site
    raw, adapted = [], []
    hop = int(16000 / cfg.model.tick_hz)
    for k in range(len(y) // hop):
        eng.push_audio(y[k * hop:(k + 1) * hop], (k + 1) / cfg.model.tick_hz)
        vec, info = eng.vector((k + 1) / cfg.model.tick_hz)
        if info.voice_active and site.speech_s > 20.0:  # after the first 20 s of speech
            adapted.append(vec[:eng.audio_dim])
            raw.append(eng.audio.snapshot().vector)
    assert len(adapted) > 300
    z = lambda a: np.abs(np.mean(a, 0) - site.ref_mean)[:-1] / site.ref_std[:-1]  # noqa: E731
    print("mean |z| of the features' mean: raw", z(raw).mean(), "adapted", z(adapted).mean(), len(adapted))
    assert z(adapted).mean() < 0.5 * z(raw).mean()
    # and the same file through process_files: site adaptation changes what the model says
    path = tmp_path / "cheap_mic.wav"
    sf.write(path, y[:20 * 16000], 16000, subtype="FLOAT")  # 20 s: enough to see it
    on = process_files(audio=path, config=cfg)
    off = process_files(audio=path, config=Config(audio=AudioConfig(site_adaptation=False, site_prior_s=10.0)))
    print("max arousal difference", max(abs(a.arousal - b.arousal) for a, b in zip(on, off)))
    assert len(on) == len(off)
    assert max(abs(a.arousal - b.arousal) for a, b in zip(on, off)) > 0.05


def test_auc():
    assert auc([2, 3], [0, 1]) == 1.0 and auc([0, 1], [2, 3]) == 0.0
    assert auc([1, 1], [1, 1]) == 0.5
    assert np.isnan(auc([], [1]))


def test_the_site_is_kept_across_restarts(tmp_path, caplog):
    from bridge.pipeline import Bridge, load_model

    path = tmp_path / "site" / "gallery.npz"
    cfg = Config(audio=AudioConfig(site_file=str(path)))
    model = load_model(cfg)
    b = Bridge(cfg, model)
    for _ in range(600):
        b.engine.site.update(b.engine.site.ref_mean + 1.0)
    b.save_site()
    again = Bridge(cfg, model)  # the next morning
    assert again.engine.site.speech_s == pytest.approx(b.engine.site.speech_s)
    assert np.allclose(again.engine.site.site_stats()[0], b.engine.site.site_stats()[0])
    # a file learned for other weights is not taken
    other = SiteAdaptation(b.engine.site.ref_mean + 1.0, b.engine.site.ref_std, 30.0)
    other.update(other.ref_mean)
    other.save(path)
    with caplog.at_level(logging.WARNING, logger="bridge.features.site"):
        assert Bridge(cfg, model).engine.site.speech_s == 0.0
    assert "other model weights" in caplog.text
    # a path that cannot be written: logged, not raised
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = Bridge(Config(audio=AudioConfig(site_file=str(blocker / "site.npz"))), model)
    with caplog.at_level(logging.ERROR, logger="bridge.pipeline"):
        bad.save_site()
    assert "cannot save the site adaptation" in caplog.text
