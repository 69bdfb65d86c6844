"""Real-face training evidence: a face bank from real FER+ faces through the bridge's face path, and the
generator that builds training sequences from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bridge.features.face import EXPR_MEAN, EXPRESSION_NAMES, FACE_DIM, FaceWindow, face_window_names
from bridge.labels import LABELS

FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus"
pytestmark = pytest.mark.skipif(not (FERPLUS / "ferplus_valid.npz").is_file(), reason="../shared/data/ferplus absent")


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory):
    """A bank from 12 clear FER+ validation faces per label (the real path: MediaPipe, crop, network, head)."""
    import os

    import torch

    from bridge.training import face_real as fr

    torch.set_num_threads(1)
    d = np.load(FERPLUS / "ferplus_valid.npz")
    soft, maj, keep = fr.ferplus_targets(d["votes"])
    agree = soft[np.arange(len(soft)), maj]
    idx = np.concatenate([np.flatnonzero(keep & (maj == c) & (agree >= 0.6))[:12] for c in range(7)])
    images, votes = d["images"][idx], d["votes"][idx]
    mp = os.environ["BRIDGE_FACE_MODEL"]
    tmp = tmp_path_factory.mktemp("bank")
    fr.extract_landmarks(images, mp, tmp / "mp.npz", progress=False)
    ev = fr.load_evidence(tmp / "mp.npz", images)
    probs, emb = fr.network_evidence(images, ev)
    path = fr.write_bank(tmp / "bank.npz", images, votes, ev, probs, emb, mp)
    return fr.FaceBank.load(path), probs, maj[idx], ev


def test_layout_has_expression_evidence():
    names = face_window_names()
    assert FACE_DIM == len(names) == 112 + 2 * len(EXPRESSION_NAMES) + 1
    assert names[112:119] == [f"expr_{e}_mean" for e in EXPRESSION_NAMES] and names[-1] == "expr_frac"
    from bridge.features.expression import EXPRESSION_LABELS

    assert EXPRESSION_NAMES == EXPRESSION_LABELS


def test_bank_from_real_faces(small_bank):
    bank, probs, y, ev = small_bank
    assert ev["present"].mean() > 0.9  # MediaPipe finds the upscaled FER faces
    # the network alone already recognises most of these clear faces (7 labels: chance 0.14)
    found = ev["present"]
    assert np.mean(probs[found].argmax(1) == y[found]) > 0.5
    assert len(bank) == int(found.sum()) and set(bank.by_label) == set(LABELS)
    assert all(len(bank.by_label[lab]) > 0 for lab in LABELS)
    np.testing.assert_allclose(bank.expression.sum(1), 1.0, atol=1e-4)


def test_generator_follows_the_timeline_with_real_faces(small_bank):
    import copy

    from bridge.training.face_real import BANK_SOURCES, real_observations

    bank = copy.copy(small_bank[0])
    # this checks the generator, not the tiny bank's out-of-fold heads (trained on ~70 faces each, 57 % right):
    # draw only faces whose evidence shows their label
    bank.by_label = {lab: ids[bank.expression[ids].argmax(1) == EXPRESSION_NAMES.index(BANK_SOURCES[lab])]
                     for lab, ids in bank.by_label.items()}
    timeline = [("neutral", 1.0, 2.0), ("happy", 2, 3.0), ("surprised", 2, 3.0)]
    obs = real_observations(timeline, bank, 30.0, np.random.default_rng(3))
    assert len(obs) == 240 and all(o.expression is not None for o in obs if o.present)
    again = real_observations(timeline, bank, 30.0, np.random.default_rng(3))
    assert all(np.array_equal(a.blendshapes, b.blendshapes) for a, b in zip(obs, again))  # deterministic
    w = FaceWindow(0.5)
    tops = {}
    for o in obs:
        w.push(o)
        v = w.vector()
        if v[-1] > 0:  # expr_frac
            tops[round(o.t_capture, 2)] = EXPRESSION_NAMES[int(np.argmax(v[EXPR_MEAN:EXPR_MEAN + 7]))]
    # apex of each segment (after onset, before the next segment): the segment's expression wins in the window
    assert tops.get(4.0) == "happy" or tops.get(4.5) == "happy"
    assert tops.get(7.0) == "surprised" or tops.get(7.5) == "surprised"


def test_face_block_uses_the_bank(small_bank):
    """build.face_block with a bank: the face evidence of the training sequences carries expression features."""
    from bridge.config import VideoConfig
    from bridge.training.build import Sequence, face_block

    T = 100
    seq = Sequence(np.zeros((T, 3), np.float32), np.zeros(T, bool), np.zeros(T, np.int64), np.zeros((T, 2)),
                   np.ones(T), np.zeros(T, np.int64), np.zeros(T, np.int64), np.array([0.0, 2.0]),
                   [LABELS.index("neutral"), LABELS.index("happy")], [2, 2], ["a", "b"], "spk")
    F, present, _age = face_block(seq, 20.0, VideoConfig(), np.random.default_rng(0), "face", small_bank[0])
    assert F.shape == (T, FACE_DIM)
    assert F[present > 0, EXPR_MEAN:EXPR_MEAN + 7].sum(1).min() > 0.9  # expression means sum to ~1 wherever the face is seen


def test_a_still_silent_visitor_has_window_spreads_near_zero(small_bank):
    """Face-only training streams of a visitor who stands still and does not speak: the window spreads of the
    blendshapes and expression probabilities are a small fraction of a moving, talking visitor's (a still face in
    front of a camera gives spreads near 0), and no talking mouth moves without a voice."""
    from bridge.config import VideoConfig
    from bridge.features.face import BS_INDEX, N_BLENDSHAPES, N_EXPRESSIONS
    from bridge.training.build import Sequence, face_block

    T = 200  # 10 s at 20 Hz, a voice over most of it
    voice = np.zeros(T, bool)
    voice[20:180] = True
    seq = Sequence(np.zeros((T, 3), np.float32), voice, np.zeros(T, np.int64), np.zeros((T, 2)), np.ones(T),
                   np.zeros(T, np.int64), np.zeros(T, np.int64), np.array([0.0, 5.0]),
                   [LABELS.index("happy"), LABELS.index("sad")], [2, 2], ["a", "b"], "spk")
    spread = {}
    for name, kw in {"talking": {}, "silent": {"silent": True}, "still": {"silent": True, "still": True},
                     "jitter": {"silent": True, "still": True, "jitter": 0.02}}.items():
        runs = [face_block(seq, 20.0, VideoConfig(), np.random.default_rng(s), "face", small_bank[0], **kw)
                for s in range(4)]
        F = np.concatenate([f[f[:, -1] > 0] for f, _p, _a in runs])
        spread[name] = {"bs": np.median(F[:, N_BLENDSHAPES:2 * N_BLENDSHAPES].mean(1)),
                        "expr": np.median(F[:, EXPR_MEAN + N_EXPRESSIONS:EXPR_MEAN + 2 * N_EXPRESSIONS].mean(1)),
                        "jaw": np.median(F[:, N_BLENDSHAPES + BS_INDEX["jawOpen"]])}
    assert spread["silent"]["jaw"] < 0.5 * spread["talking"]["jaw"]  # no talking mouth without a voice
    assert spread["still"]["bs"] < 0.3 * spread["silent"]["bs"]
    assert spread["still"]["expr"] < 0.3 * spread["silent"]["expr"]
    # a noisier camera: white per-frame jitter of sigma 0.02 shows in the spreads (~0.01-0.02 after clipping at 0)
    assert spread["jitter"]["bs"] > 0.005 > spread["still"]["bs"]


def test_room_only_keeps_the_unvoiced_ticks():
    """A face-only training chain with the microphone on hears the room: only the sequence's own unvoiced ticks."""
    from bridge.training.build import Sequence
    from bridge.training.train import room_only

    T = 50
    audio = np.arange(T * 3, dtype=np.float32).reshape(T, 3)
    voice = np.zeros(T, bool)
    voice[10:40] = True
    audio[:, -1] = voice  # the voice-activity feature
    seq = Sequence(audio, voice, np.zeros(T, np.int64), np.zeros((T, 2)), np.ones(T), np.zeros(T, np.int64),
                   np.zeros(T, np.int64), np.array([0.0]), [0], [1], ["a"], "spk")
    out = room_only(seq, np.random.default_rng(0))
    quiet = {tuple(r) for r in audio[~voice]}
    assert out.T == T and not out.voice.any() and all(tuple(r) in quiet for r in out.audio)
    assert len({tuple(r) for r in out.audio}) == len(quiet)  # all of the room, in order, repeated


def test_head_training_leaves_torch_generator_alone():
    """The FER+ head seeds its own draws; it used to re-seed torch's global generator, so a face bank built inside
    ``emotion-bridge train`` (an empty cache) changed the affect model's initialisation."""
    import torch

    from bridge.training.face_real import train_head

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 10)).astype(np.float32)
    soft = rng.dirichlet(np.ones(7), 64).astype(np.float32)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    head = train_head(X, soft, {"epochs": 2, "members": 1})
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.isfinite(head["w0"]).all()
    again = train_head(X, soft, {"epochs": 2, "members": 1})  # its own seed: the same head whatever came before
    assert all(np.array_equal(head[k], again[k]) for k in head)


def test_head_ensemble_is_the_mean_of_its_seeds(tmp_path):
    """members = K: K heads from seeds seed..seed+K-1, stacked in one file; the training code and the live FaceHead
    both give the mean of the single heads' probabilities."""
    from bridge.features.expression import FaceHead
    from bridge.training.face_real import head_predict, save_head, train_head

    rng = np.random.default_rng(1)
    emb, bs = rng.normal(size=(80, 256)).astype(np.float32), rng.random((80, 52)).astype(np.float32)
    X = np.concatenate([emb, bs], 1)
    soft = rng.dirichlet(np.ones(7), 80).astype(np.float32)
    ens = train_head(X, soft, {"epochs": 2, "members": 3, "seed": 4})
    assert ens["w0"].shape == (3, 308, 256) and ens["b1"].shape == (3, 7) and ens["mu"].shape == (308,)
    singles = [head_predict(train_head(X, soft, {"epochs": 2, "members": 1, "seed": s}), X) for s in (4, 5, 6)]
    assert not np.allclose(singles[0], singles[1], atol=1e-3)  # the members differ
    want = np.mean(singles, 0)
    np.testing.assert_allclose(head_predict(ens, X), want, atol=1e-6)
    save_head(tmp_path / "head.npz", ens, {})
    head = FaceHead(tmp_path / "head.npz")
    assert head.members == 3 and head.meta["members"] == 3
    np.testing.assert_allclose(np.concatenate([head(emb[i:i + 1], bs[i]) for i in range(5)]), want[:5], atol=1e-5)
