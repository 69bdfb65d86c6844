"""The streaming model: step() equals the full pass; weights load safely; bad weights are refused clearly."""

import numpy as np
import pytest
import torch

from bridge.config import Config
from bridge.features.face import FACE_DIM
from bridge.labels import LABELS
from bridge.model.affect import (AffectNet, StreamingAffectModel, WeightsError, default_weights_path, load_weights,
                                 save_weights)
from bridge.model.tick import feature_schema
from bridge.pipeline import load_model


def tiny(tmp_path, **meta_over):
    cfg = Config()
    sch = feature_schema(cfg.audio, cfg.video, cfg.model.tick_hz)
    a = len(sch["audio_names"])
    torch.manual_seed(0)
    net = AffectNet(a + FACE_DIM + 4, a, FACE_DIM, hidden=16, proj=16)
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
