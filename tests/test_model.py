"""The streaming model: step() equals the full pass; weights load safely; bad weights are refused clearly."""

import numpy as np
import pytest
import torch

from bridge.config import Config
from bridge.features.face import EXPR_FRAC, EXPR_MEAN, FACE_DIM
from bridge.labels import LABELS
from bridge.model.affect import (AffectEnsemble, AffectNet, StreamingAffectModel, WeightsError, default_weights_path, load_weights,
                                 pack_state, save_weights, step_many, unpack_state)
from bridge.model.tick import feature_schema
from bridge.pipeline import load_model


def tiny(tmp_path, face_expert=False, members=1, **meta_over):
    """A small random network (``members`` > 1: an ensemble of that many, each its own draw)."""
    cfg = Config()
    sch = feature_schema(cfg.audio, cfg.video, cfg.model.tick_hz)
    a = len(sch["audio_names"])
    torch.manual_seed(0)
    nets = []
    for k in range(members):
        net = AffectNet(a + FACE_DIM + 4, a, FACE_DIM, hidden=16, proj=16, face_expert=face_expert)
        if face_expert:
            net.face_w.data.uniform_(0.5, 1.5)  # as if trained: every path must apply its own weight per label
        net.va_offset.copy_(torch.tensor([0.1, -0.2 + 0.1 * k]))  # a calibrated model: every path must apply it
        net.label_bias.copy_(torch.linspace(-0.6, 0.6, len(LABELS)).roll(k))  # ... and its label calibration
        nets.append(net)
    net = nets[0] if members == 1 else AffectEnsemble(nets)
    if members > 1:
        net.label_bias.copy_(torch.linspace(0.5, -0.5, len(LABELS)))  # the ensemble's own calibration on top
    meta = {"labels": list(LABELS), "feature_schema": sch, **meta_over}
    p = tmp_path / "tiny.pt"
    save_weights(p, net, meta)
    return p, net


def test_step_equals_full_sequence(tmp_path):
    p, _ = tiny(tmp_path)
    net, meta = load_weights(p)
    x = torch.randn(1, 50, net.in_dim) * 3
    x[..., -4:] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    with torch.inference_mode():
        logits, va, conf, _ = net(x)
    m = StreamingAffectModel(net, meta)
    for t in range(50):
        out = m.step(x[0, t].numpy())
        np.testing.assert_allclose(out.probs, torch.softmax(logits[0, t], -1).numpy(), atol=1e-5)
        assert abs(out.valence - float(va[0, t, 0])) < 1e-5 and abs(out.confidence - float(conf[0, t])) < 1e-5
    m.reset()
    np.testing.assert_allclose(m.step(x[0, 0].numpy()).probs, torch.softmax(logits[0, 0], -1).numpy(), atol=1e-5)


def _bursty(net, T=240, seed=1):
    """Tick vectors with speech in bursts separated by pauses both shorter and longer than an utterance gap."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, T, net.in_dim, generator=g) * 3
    x[..., -4:] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    v = (torch.rand(2, T, generator=g) > 0.2).float()
    v[:, 40:60] = 0  # a pause longer than utt_gap: a new utterance starts at 60
    v[:, 100:104] = 0  # a short pause inside an utterance
    x[..., net.audio_dim - 1] = v
    return x, v


def _varied(net, T=240, seed=1):
    """Bursty speech (see _bursty) with the audio and the face dropping out for stretches (the masks change)."""
    x, v = _bursty(net, T, seed)
    x[:, 150:170, -4] = 0.0  # audio lost
    x[:, 180:200, -3] = 0.0  # face gone
    x[1, 10:30, -4:] = torch.tensor([0.0, 1.0, 1.0, 0.0])  # the second visitor: face only at first
    e = slice(net.audio_dim + EXPR_MEAN, net.audio_dim + EXPR_MEAN + 7)
    x[..., e] = torch.softmax(x[..., e], -1)  # the face path's expression probabilities (the face expert reads them)
    x[..., net.audio_dim + EXPR_FRAC] = (torch.arange(T) % 7 > 0).float()  # ...seen on most frames of the window
    return x


@pytest.mark.parametrize("weights", ["tiny", "tiny_face_expert", "tiny_ensemble", "packaged"])
def test_one_tick_path_equals_the_full_pass(tmp_path, weights):
    """step() takes the one-tick path (numpy, running sums, one LSTM cell); through utterances, pauses and
    missing modalities it equals the sequence pass run tick by tick (forward at T = 1, the path it replaces) to
    1e-5 and AffectNet.forward over the whole sequence to 1e-5 for 50 ticks, 5e-5 over 240 (float32 running
    sums in another order: the tick-by-tick forward differs from the whole pass by as much), shipped weights too."""
    net = load_weights(None if weights == "packaged" else
                       tiny(tmp_path, weights == "tiny_face_expert", 3 if weights == "tiny_ensemble" else 1)[0])[0]
    x = _varied(net)
    with torch.inference_mode():
        logits, va, conf, _ = net(x)
    probs = torch.softmax(logits, -1).numpy()
    for b in range(2):
        m, ref = StreamingAffectModel(net, {}), StreamingAffectModel(net, {})
        assert m.one_tick is not None
        ref.one_tick = None  # the sequence pass, one tick at a time
        for t in range(x.shape[1]):
            out, r = m.step(x[b, t].numpy()), ref.step(x[b, t].numpy())
            got = [*out.probs, out.valence, out.arousal, out.confidence]
            np.testing.assert_allclose(got, [*r.probs, r.valence, r.arousal, r.confidence], atol=1e-5)
            np.testing.assert_allclose(got, [*probs[b, t], *va[b, t].tolist(), float(conf[b, t])],
                                       atol=1e-5 if t < 50 else 5e-5)


@pytest.mark.parametrize("weights", ["packaged", "tiny_ensemble"])
def test_step_many_equals_each_visitor_stepped_alone(tmp_path, weights):
    """Several visitors in one batched call: the same outputs and states as stepping each model alone, with
    visitors joining (fresh state) and leaving between ticks."""
    net = load_weights(None if weights == "packaged" else tiny(tmp_path, members=3)[0])[0]
    x = _varied(net, T=120, seed=3)
    x3 = torch.cat([x, x[:1].flip(1)], 0).numpy()  # three visitors
    alone = [StreamingAffectModel(net, {}) for _ in range(3)]
    batched = [StreamingAffectModel(net, {}) for _ in range(3)]
    for t in range(x3.shape[1]):
        here = [k for k in range(3) if not (k == 2 and t < 40) and not (k == 1 and 70 <= t < 90)]
        if t == 90:
            alone[1].reset()
            batched[1].reset()  # the second visitor comes back as a new visitor
        ref = [alone[k].step(x3[k, t]) for k in here]
        got = step_many([batched[k] for k in here], [x3[k, t] for k in here])
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g.probs, r.probs, atol=1e-6)
            np.testing.assert_allclose([g.valence, g.arousal, g.confidence], [r.valence, r.arousal, r.confidence],
                                       atol=1e-6)
    for a, b in zip(alone, batched):
        # the state holds running sums of the speaker statistics (values up to ~30 here): float32 rounding of a
        # batched against a single matrix product differs by a few ulps on some CPUs (1.5e-5 on 30.09, AMD EPYC)
        np.testing.assert_allclose(a.state, b.state, rtol=2e-6, atol=1e-5)


@pytest.mark.parametrize("members", [1, 3])
def test_packed_state_continues_the_full_pass(tmp_path, members):
    """The one-tick state and forward()'s state tuple convert into each other: forward for 100 ticks, then
    step; step for 100 ticks, then forward — both equal the full pass (an ensemble's too)."""
    net = load_weights(tiny(tmp_path, members=members)[0])[0]
    x = _varied(net)[:1]
    with torch.inference_mode():
        full = torch.softmax(net(x)[0], -1)[0].numpy()
        _, _, _, st = net(x[:, :100])
        m = StreamingAffectModel(net, {})
        m.state = st  # forward()'s own state tuple is taken as it is (packed on the first step)
        np.testing.assert_allclose(m.step(x[0, 100].numpy()).probs, full[100], atol=1e-5)
        m.state = pack_state(net, st)
        for t in range(100, 140):
            np.testing.assert_allclose(m.step(x[0, t].numpy()).probs, full[t], atol=1e-5)
        logits, _, _, _ = net(x[:, 140:], unpack_state(net, m.state))
    np.testing.assert_allclose(torch.softmax(logits, -1)[0].numpy(), full[140:], atol=1e-5)


def test_ensemble_is_the_mean_of_its_members(tmp_path):
    """An ensemble file's states are the means of its members' (probabilities, valence/arousal, confidence), each
    member keeping its own streaming state, the probabilities then through the ensemble's own label calibration;
    saved and loaded it is the same networks and calibration; int8 keeps the full pass."""
    p, ens = tiny(tmp_path, members=3)
    net, _ = load_weights(p)
    assert isinstance(net, AffectEnsemble) and len(net.members) == 3
    assert torch.equal(net.label_bias, ens.label_bias) and net.label_bias.any()
    for a, b in zip(net.members, ens.members):
        for (ka, ta), (kb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(ta, tb)
    x = _varied(net, T=80)[0].numpy()
    m = StreamingAffectModel(net, {})
    alone = [StreamingAffectModel(k, {}) for k in net.members]
    bias = np.exp(net.label_bias.numpy())
    for v in x:
        out, outs = m.step(v), [a.step(v) for a in alone]
        mean = np.mean([o.probs for o in outs], 0) * bias
        np.testing.assert_allclose(out.probs, mean / mean.sum(), atol=1e-6)
        np.testing.assert_allclose([out.valence, out.arousal, out.confidence],
                                   np.mean([[o.valence, o.arousal, o.confidence] for o in outs], 0), atol=1e-6)
    assert len({round(float(o.probs.max()), 6) for o in outs}) == 3  # the members differ
    q = StreamingAffectModel.load(p, quantize="int8")
    assert q.one_tick is None and np.isfinite(q.step(x[0]).probs).all()


def test_int8_model_steps_through_the_full_pass():
    """A quantised network has no float weights to read: it keeps the sequence pass, close to the float model."""
    f = StreamingAffectModel.load(None)
    q = StreamingAffectModel.load(None, quantize="int8")
    assert q.one_tick is None and f.one_tick is not None
    x = _varied(f.net, T=60)[0].numpy()
    d = [np.abs(f.step(v).probs - q.step(v).probs).max() for v in x]
    assert np.isfinite(d).all() and np.median(d) < 0.1
    assert len(step_many([q, StreamingAffectModel(q.net, {})], [x[0], x[1]])) == 2


def test_chunked_passes_equal_the_full_pass(tmp_path):
    """Truncated-BPTT training and live ticking rely on the carried state: any chunking gives the same output."""
    _, net = tiny(tmp_path)
    net.eval()
    x, _ = _bursty(net)
    with torch.inference_mode():
        full = net(x)[0]
        state, outs = None, []
        for a, b in [(0, 1), (1, 45), (45, 46), (46, 103), (103, 240)]:
            logits, _, _, state = net(x[:, a:b], state)
            outs.append(logits)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=5e-5, rtol=1e-4)  # float32 sums over 250+ inputs


def test_utterance_pooling_restarts_after_a_pause(tmp_path):
    """The pooled mean is the mean of the speaker-relative features over the voiced ticks since the utterance
    began; a pause of utt_gap ticks or more starts a new one, a shorter one does not; silence holds it."""
    _, net = tiny(tmp_path)
    x, v = _bursty(net)
    with torch.inference_mode():
        z = net.normalise(x)
        rel, _ = net.adapt(z, x, None)
        mean, std, _ = net.pool(rel, net.voiced(x), None)
    r, vv = rel[0].numpy(), v[0].numpy() > 0
    for t in (30, 50, 59, 80, 102, 150, 239):
        begin = 60 if t >= 60 else 0
        sel = np.where(vv[begin:t + 1])[0] + begin
        np.testing.assert_allclose(mean[0, t].numpy(), r[sel].mean(0), atol=1e-4)
        np.testing.assert_allclose(std[0, t].numpy(), np.sqrt(r[sel].var(0) + 1e-4), atol=1e-3)
    assert net.utt_gap < 20 and net.utt_gap > 4


def test_default_weights_ship_with_metadata():
    p = default_weights_path()
    assert p.is_file(), "the trained default weights must ship inside the package"
    assert p.stat().st_size < 5_000_000
    net, meta = load_weights(p)
    assert sum(q.numel() for q in net.parameters()) < 1_000_000
    for key in ("labels", "feature_schema", "tick_hz", "data_list_sha256", "data_license", "val_uar_audio_only"):
        assert key in meta
    assert "non-commercial" in meta["data_license"]
    load_model(Config())  # schema matches the default configuration


def test_corrupt_truncated_and_foreign_weights(tmp_path):
    p, _ = tiny(tmp_path)
    data = p.read_bytes()
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt|cannot read"):
        load_weights(bad)
    p.with_suffix(".sha256").unlink()
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    p.write_bytes(bytes(flipped))
    with pytest.raises(WeightsError):
        load_weights(p)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "emotion-bridge-weights/1", "x": np.dtype("float32")}, evil)  # not weights_only-safe
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(evil)
    with pytest.raises(WeightsError, match="no model weights"):
        load_weights(tmp_path / "missing.pt")


def test_checksum_sidecar_detects_replacement(tmp_path):
    p, net = tiny(tmp_path)
    torch.save({"format": "emotion-bridge-weights/1"}, p)  # replaced, sidecar left
    with pytest.raises(WeightsError, match="checksum"):
        load_weights(p)


def test_schema_mismatch_stops_startup(tmp_path):
    p, _ = tiny(tmp_path)
    with pytest.raises(WeightsError, match="n_mels"):
        load_model(Config.model_validate({"audio": {"n_mels": 32}}), str(p))
