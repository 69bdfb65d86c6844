"""Training pieces: loaders, metrics, smoothers, and a small real training run through the live feature code."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.labels import LABELS, va_target
from bridge.model.affect import load_weights
from bridge.training import metrics as M
from bridge.training.baselines import ema, one_euro
from bridge.training.data import load_dataset, load_manifest, parse_ravdess_name

RAVDESS = Path(os.environ.get("BRIDGE_RAVDESS", Path(__file__).resolve().parents[2] / "shared" / "data" /
                              "ravdess-speech-16k"))


def test_ravdess_names():
    c = parse_ravdess_name(Path("03-01-05-02-01-01-12.flac"))
    assert (c.label, c.intensity, c.speaker, c.has_video) == ("angry", 2, "actor12", False)
    av = parse_ravdess_name(Path("01-01-03-01-02-01-07.mp4"))
    assert av.label == "happy" and av.has_video
    assert parse_ravdess_name(Path("02-01-03-01-02-01-07.mp4")) is None  # video-only: no audio track
    assert parse_ravdess_name(Path("03-02-03-01-02-01-07.wav")) is None  # song
    assert parse_ravdess_name(Path("notes.txt")) is None
    assert va_target("happy", 2)[0] > va_target("happy", 1)[0] > 0


def test_manifest(tmp_path):
    m = tmp_path / "m.csv"
    with open(m, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "start", "end", "valence", "arousal"])
        w.writerow(["a.wav", "happy", "ann", "0.5", "2.0", "0.9", ""])
        w.writerow(["b.wav", "sad", "", "", "", "", ""])
    clips = load_manifest(m)
    assert clips[0].path == tmp_path / "a.wav" and clips[0].start == 0.5 and clips[0].speaker == "ann"
    assert clips[0].va == va_target("happy", 2)  # arousal missing -> both from the label
    m.write_text("path,label\nx.wav,bored\n")
    with pytest.raises(ValueError, match="bored"):
        load_manifest(m)


def test_metrics():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    assert M.uar(y, p, 3) == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert M.ccc(np.arange(10.0), np.arange(10.0)) == pytest.approx(1.0)
    assert M.ccc(np.arange(10.0), np.arange(10.0) + 5) < 0.5  # bias is penalised, unlike correlation
    label = np.array([0] * 10 + [1] * 10)
    probs = np.zeros((20, 2))
    probs[:10, 0] = 1
    probs[10:13, 0] = 1
    probs[13:, 1] = 1
    probs[:, 1] = 1 - probs[:, 0]
    assert M.lags(probs, label, np.ones(20)) == [3.0]
    assert M.jitter(probs, label, np.ones(20)) == pytest.approx(1 / 18)


def test_smoothers_reduce_jitter_and_keep_a_distribution():
    rng = np.random.default_rng(0)
    raw = np.clip(np.tile([0.7, 0.3], (200, 1)) + rng.normal(0, 0.1, (200, 2)), 0.01, None)
    raw /= raw.sum(1, keepdims=True)
    d = lambda x: np.abs(np.diff(x, axis=0)).mean()  # noqa: E731
    for sm in (ema(raw, 0.1), one_euro(raw, 30.0, 0.3, 0.5)):
        assert d(sm) < 0.5 * d(raw)
        assert np.allclose(sm.sum(1), 1, atol=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not RAVDESS.is_dir(), reason="RAVDESS folder not available")
def test_speed_perturbation_scales_pitch_and_duration():
    """Training augmentation: a clip played 10 % faster is 10 % shorter and 10 % higher (a new voice)."""
    from bridge.training.build import speed_perturb

    sr = 16000
    t = np.arange(sr) / sr
    y = np.sin(2 * np.pi * 200.0 * t).astype(np.float32)
    for f in (0.9, 1.1):
        z = speed_perturb(y, f)
        assert abs(len(z) - sr / f) <= 2 and z.dtype == np.float32
        spec = np.abs(np.fft.rfft(z * np.hanning(len(z))))
        peak = np.argmax(spec) * sr / len(z)
        assert abs(peak - 200.0 * f) < 2.0, peak
    assert speed_perturb(y, 1.0) is y


@pytest.mark.timeout(900)
def test_small_training_run_end_to_end(tmp_path):
    """Two actors for training, one for validation, two epochs: the real trainer, cache, weights and report."""
    from bridge.training.train import TrainConfig, evaluate, train

    # statement 1, repetition 1: 15 clips per actor
    clips = [c for c in load_dataset(RAVDESS, {1, 2, 3}) if c.path.name.split("-")[4:6] == ["01", "01"]]

    def manifest(path, rows):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "speaker"])
            for c in rows:
                w.writerow([str(c.path), c.label, c.speaker])
        return path

    m = manifest(tmp_path / "m.csv", clips)
    out = tmp_path / "w.pt"
    cfg = TrainConfig(data=str(m), out=str(out), epochs=2, chain_sets=2, speed_perturb=0.1, chain_len=6, session_len=100,
                      workers=1, cache_dir=str(tmp_path / "cache"), artifacts=str(tmp_path / "art"), hidden=16,
                      real_faces=False)  # the real-face bank takes ~13 min to build; tests/test_face_real.py covers it
    rep = train(cfg)
    net, meta = load_weights(out)
    # valence/arousal calibration: the training speakers' neutral clips, each from a fresh state, average (0, 0)
    from bridge.training.train import _build, neutral_va

    tr = [c for c in clips if c.speaker != "actor03"]
    singles = _build(tr, cfg, cfg.data_seed * 1000 + 777, True, "calibration clips")
    assert len(meta["va_offset"]) == 2 and np.abs(neutral_va(net, singles) - net.va_offset.numpy()).max() < 0.02
    # label calibration: fitted on the same clips, stored; a network that leans to one label whatever it hears
    # gets a bias that takes the lean back out
    import copy

    from bridge.training.train import fit_label_bias

    assert meta["label_bias"] == [round(float(v), 4) for v in net.label_bias] and len(meta["label_bias"]) == 8
    lean = torch.tensor([0.0, -1.0, 0.5, 0.0, 2.0, 0.0, 1.0, -0.5])
    skewed = copy.deepcopy(net)
    with torch.no_grad():
        skewed.head_cls.weight.zero_()
        skewed.head_cls.bias.copy_(lean)
        skewed.label_bias.zero_()
    b = fit_label_bias(skewed, singles)
    left = lean.numpy() + b  # what remains of the lean (the L2 penalty keeps a little of it)
    assert np.ptp(left) < 0.3 * np.ptp(lean.numpy()) and np.corrcoef(b, -lean.numpy())[0, 1] > 0.99
    # weights from before the calibration (no label_bias) get it from `emotion-bridge calibrate-labels`, the same
    # as training gives; and re-fitting a calibrated file changes nothing
    from click.testing import CliRunner

    from bridge.cli import main
    from bridge.model.affect import save_weights

    old_net = copy.deepcopy(net)
    old_net.label_bias.zero_()
    old = tmp_path / "old.pt"
    save_weights(old, old_net, {k: v for k, v in meta.items() if k != "label_bias"})
    cwd = os.getcwd()
    (tmp_path / "cli" / ".cache").mkdir(parents=True)
    (tmp_path / "cli" / ".cache" / "features").symlink_to(tmp_path / "cache")  # the command's feature cache
    os.chdir(tmp_path / "cli")  # (.cache/features) is the one training filled: its clips are not extracted again
    try:
        res_cli = CliRunner().invoke(main, ["calibrate-labels", str(old), str(m), "--out", str(tmp_path / "re.pt"),
                                            "--workers", "1"])
    finally:
        os.chdir(cwd)
    assert res_cli.exit_code == 0, res_cli.output
    re_net, re_meta = load_weights(tmp_path / "re.pt")
    np.testing.assert_allclose(re_meta["label_bias"], meta["label_bias"], atol=0.02)
    np.testing.assert_allclose(re_net.label_bias.numpy(), net.label_bias.numpy(), atol=0.02)
    assert abs(re_meta["val_uar_fresh_clips_audio_only"] - meta["val_uar_fresh_clips_audio_only"]) < 0.02
    assert meta["labels"] == list(LABELS) and meta["val_speakers"] == ["actor03"]
    # site adaptation's reference: the training streams' voiced-tick statistics, one per audio feature
    ref = meta["site_reference"]
    assert len(ref["mean"]) == len(ref["std"]) == net.audio_dim and min(ref["std"]) > 0 and ref["n_ticks"] > 100
    assert 0 <= rep["val_clips_audio_only"]["uar"] <= 1 and rep["val_clips_audio_only"]["n_clips"] == 15
    assert {"lstm", "window", "window+ema", "window+one_euro"} <= set(rep["smoothing"])
    assert (tmp_path / "art" / "training_curves.png").stat().st_size > 1000
    # an ensemble of two: member 0 is exactly the network above (seed 0), member 1 another draw (seed 1, trained
    # in a process of its own); both from the feature cache the first run filled: no file in it is written again
    # (this also shows a second run reproduces the first one's weights)
    cache_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    from dataclasses import replace

    from bridge.model.affect import AffectEnsemble
    from bridge.training.train import train_members

    ens_out = tmp_path / "ens.pt"
    rep_e = train_members(replace(cfg, members=2, workers=2, out=str(ens_out), artifacts=str(tmp_path / "art_e")))
    ens, ens_meta = load_weights(ens_out)
    assert isinstance(ens, AffectEnsemble) and ens_meta["seed"] == [0, 1] and len(ens_meta["va_offset"]) == 2
    assert ens_meta["label_bias"] == [round(float(v), 4) for v in ens.label_bias]  # the ensemble's own
    assert all(torch.equal(a, b) for a, b in zip(ens.members[0].state_dict().values(), net.state_dict().values()))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()} == cache_files
    assert not torch.equal(ens.members[1].lstm.weight_hh_l0, net.lstm.weight_hh_l0)
    assert rep_e["val_clips_fresh_audio_only"]["n_clips"] == 15 and len(rep_e["members"]) == 2
    assert (tmp_path / "art_e" / "member1" / "weights.pt").is_file()
    held_out = manifest(tmp_path / "val.csv", [c for c in clips if c.speaker == "actor03"])
    res = evaluate(str(held_out), str(out), str(tmp_path / "eval"), workers=1, cache_dir=str(tmp_path / "cache"),
                   robustness=True, per_speaker_label=1)
    assert res["n_clips"] == 15 and len(res["confusion"]) == len(LABELS) and "fresh_clips" in res
    assert "fresh_site" not in res  # one speaker: no other visitors for the site to have heard
    assert 0 <= res["session"]["uar"] <= 1
    rob = res["robustness"]
    assert rob["n_clips"] == 8 and set(rob["conditions"]) == {"clean", "+20dB", "-20dB", "pink10", "babble10",
                                                               "reverb0.6"}
    assert all(0 <= r["uar"] <= 1 and 0 <= r["arousal_uar"] <= 1 for r in rob["conditions"].values())
    assert (tmp_path / "eval" / "confusion.png").is_file()
    json.loads((tmp_path / "eval" / "evaluation.json").read_text())


def test_cli_train_defaults_are_the_trainer_defaults():
    """`emotion-bridge train` with no options reproduces the shipped recipe (TrainConfig's defaults)."""
    from bridge.cli import _TRAIN_DEFAULTS
    from bridge.training.train import TrainConfig

    cfg = TrainConfig(data="", out="")
    assert {k: getattr(cfg, k) for k in _TRAIN_DEFAULTS} == _TRAIN_DEFAULTS


def test_augmentation_is_seeded_and_does_what_it_says():
    from bridge.training import augment as aug

    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    y = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    c1 = aug.draw_condition(np.random.default_rng(5))
    assert c1 == aug.draw_condition(np.random.default_rng(5))
    a = aug.apply_condition(y, c1, np.random.default_rng(1), [y])
    b = aug.apply_condition(y, c1, np.random.default_rng(1), [y])
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 1.0
    # SNR: the noise added has the asked power relative to the active speech power
    n = aug.pink_noise(len(y), rng)
    mixed = aug.mix_at_snr(y, n, 10.0)
    snr = 10 * np.log10(aug.active_power(y) / np.mean((mixed - y).astype(np.float64) ** 2))
    assert abs(snr - 10.0) < 0.2
    # gain clips at full scale
    assert np.abs(aug.gain(y, 24.0)).max() == 1.0
    # the synthetic room decays by 60 dB in about RT60 (Schroeder backward integration of the tail)
    h = aug.synth_rir(0.6, np.random.default_rng(3)).astype(np.float64)
    edc = 10 * np.log10(np.cumsum(h[::-1] ** 2)[::-1] / np.sum(h ** 2))
    t5, t25 = np.argmax(edc < -5) / 16000, np.argmax(edc < -25) / 16000
    assert 0.45 < 3 * (t25 - t5) < 0.75  # T20 extrapolated to 60 dB


@pytest.mark.skipif(not RAVDESS.is_dir(), reason="RAVDESS folder not available")
def test_train_without_ferplus_stops_at_once_and_says_what_to_do(tmp_path):
    """`emotion-bridge train` from a folder with no FER+ beside it (and $BRIDGE_FERPLUS unset) used to fall back to
    synthetic faces with only a log warning, making weights whose face-only states are much weaker. Now it stops
    before the long feature build, names both ways out, and --synthetic-faces is the explicit choice."""
    import subprocess
    import sys

    clips = [c for c in load_dataset(RAVDESS, {1, 2})][:4]
    m = tmp_path / "m.csv"
    m.write_text("path,label,speaker\n" + "".join(f"{c.path},{c.label},{c.speaker}\n" for c in clips))
    env = {k: v for k, v in os.environ.items() if k != "BRIDGE_FERPLUS"}
    r = subprocess.run([sys.executable, "-m", "bridge", "train", str(m), "--out", str(tmp_path / "w.pt"),
                        "--no-baselines", "--artifacts", str(tmp_path / "art")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and not (tmp_path / "w.pt").exists()
    msg = " ".join((r.stdout + r.stderr).split())
    assert "FER+ was not found" in msg and "$BRIDGE_FERPLUS" in msg and "--synthetic-faces" in msg, msg
    assert "features: train chains" not in msg  # it stopped before the feature build
    assert "Traceback" not in msg


def test_fresh_visitor_clips_are_streams_of_their_own():
    """``fresh_sets``: each single training clip is its own stream (a fresh model state), while the chains of one
    speaker and chain set still form sessions cut at chain boundaries."""
    from types import SimpleNamespace

    from bridge.training.train import TrainConfig, _streams

    seqs = [SimpleNamespace(speaker=f"a{k % 2}") for k in range(12)]
    set_of = [0] * 6 + [-1] * 6  # 6 chains of set 0 (3 per speaker), 6 single clips
    cfg = TrainConfig(data="", out="", session_cut=0.0)  # never cut: one session per speaker
    streams = _streams(seqs, set_of, cfg, np.random.default_rng(0))
    singles = [s for s in streams if any(set_of[i] < 0 for i in s)]
    assert sorted(i for s in singles for i in s) == list(range(6, 12)) and all(len(s) == 1 for s in singles)
    sessions = [s for s in streams if s not in singles]
    assert len(sessions) == 2 and all(len({seqs[i].speaker for i in s}) == 1 and len(s) == 3 for s in sessions)
