"""The face expression network: the PyTorch port equals face-api's own tfjs build on real faces, and the crop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.features.expression import (EXPRESSION_LABELS, PORT_WEIGHTS, ExpressionModel, crop_face,
                                        crop_geometry, load_tfjs_weights, net_input, pad_to_square,
                                        resize_bilinear_legacy)

FIXTURE = Path(__file__).parent / "fixtures" / "face_expression_ref.npz"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return ExpressionModel(PORT_WEIGHTS)  # the converted weights, not the fine-tuned default


def test_port_equals_tfjs_reference(model):
    """tfjs 4.22 (face-api 1.7.15's bundle, CPU backend) on 9 real face crops of different sizes and aspect
    ratios, recorded by tools/convert_face_api.py --reference: probabilities and embeddings equal to 1e-4."""
    from convert_face_api import reference_inputs

    ref = np.load(FIXTURE)
    crops, names = reference_inputs()
    assert list(ref["names"]) == names
    probs, emb = model(np.stack([net_input(c) for c in crops]))
    np.testing.assert_allclose(probs, ref["probs"], atol=1e-4)
    np.testing.assert_allclose(emb, ref["embed"], atol=1e-4)
    # the crops are not trivial: several different winning expressions
    assert len(set(ref["probs"].argmax(1))) >= 3


def test_legacy_resize_matches_tf_convention():
    """align_corners=False, half_pixel_centers=False: output pixel i samples input i * in/out."""
    img = np.arange(4 * 6, dtype=np.float32).reshape(4, 6, 1)
    out = resize_bilinear_legacy(img, 3)
    # rows sample 0, 4/3, 8/3; columns sample 0, 2, 4
    rows = np.array([0, 4 / 3, 8 / 3])
    cols = np.array([0, 2, 4])
    expect = rows[:, None] * 6 + cols[None, :]
    np.testing.assert_allclose(out[:, :, 0], expect, atol=1e-5)
    assert pad_to_square(np.ones((3, 6, 3))).shape == (6, 6, 3)
    p = pad_to_square(np.ones((4, 1, 1)))  # diff 3: round(1.5) = 2 after, 1 before (JS Math.round)
    assert p[:, :, 0].tolist() == [[0, 1, 0, 0]] * 4


def test_weights_carry_provenance():
    _, meta = load_tfjs_weights(PORT_WEIGHTS)
    assert meta["package"] == "@vladmandic/face-api" and meta["license"] == "MIT"
    assert len(meta["bin_sha256"]) == 64 and "Permission is hereby granted" in meta["notice"]
    assert meta["labels"] == list(EXPRESSION_LABELS)
    assert (PORT_WEIGHTS.parent / "FACE_API_LICENSE").is_file()
    assert json.loads(str(np.load(FIXTURE)["meta"]))["bin_sha256"] == meta["bin_sha256"]


def test_crop_follows_face_size_position_and_roll():
    """A synthetic landmark set moved, scaled and rotated: the crop geometry moves, scales and rotates with it."""
    lm = np.zeros((478, 3), np.float32)
    pts = {33: (0.40, 0.40), 263: (0.60, 0.40), 61: (0.44, 0.60), 291: (0.56, 0.60)}
    for i, (x, y) in pts.items():
        lm[i, :2] = (x, y)
    cx, cy, side, roll = crop_geometry(lm, 1000, 1000)
    assert abs(roll) < 1e-6 and cx == pytest.approx(500) and side == pytest.approx(2.83 * 200)
    assert cy == pytest.approx(400 + 0.278 * 200)
    rot = np.deg2rad(20)
    r = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    lm2 = lm.copy()
    lm2[:, :2] = ((lm[:, :2] - 0.5) * 0.5) @ r.T + (0.3, 0.7)
    cx2, cy2, side2, roll2 = crop_geometry(lm2, 1000, 1000)
    assert roll2 == pytest.approx(20, abs=1e-3) and side2 == pytest.approx(side * 0.5)
    img = np.full((1000, 1000, 3), 128, np.uint8)
    assert crop_face(img, lm2).shape == (112, 112, 3)


def test_one_face_layout_equals_the_plain_network(model):
    """The live path (one face per call) runs a channels-last copy of the network for speed: on the 9 real face
    crops, one at a time, its probabilities and embeddings are those of the plain network to float32 rounding.
    (Bit-identical on some CPUs; oneDNN picks its convolution kernels per CPU, and on an AMD EPYC host of
    2026-12-03 the two layouts differed by up to 1e-6.)"""
    from convert_face_api import reference_inputs

    crops, _ = reference_inputs()
    for c in crops:
        x = net_input(c)
        probs, emb = model(x)
        with torch.no_grad():
            logits, e = model.net(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])))
        np.testing.assert_allclose(emb, e.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), rtol=1e-5, atol=1e-6)
        assert probs.argmax() == int(logits.argmax())


def test_shipped_network_runs_its_onnx_export_equal_to_pytorch(tmp_path, caplog):
    """The live path of the shipped (fine-tuned) network runs its ONNX export in onnxruntime: on the 9 real face
    crops, one at a time and as one frame's batch, probabilities and embeddings equal the PyTorch network's to
    float32 rounding and the labels are the same. An export made from other weights is not used (PyTorch runs,
    with a warning that says how to re-export)."""
    import shutil

    from convert_face_api import reference_inputs

    from bridge.features.expression import FINETUNED_WEIGHTS, file_sha256

    torch.set_num_threads(1)
    live = ExpressionModel(FINETUNED_WEIGHTS)
    assert live._ort is not None, "the shipped ONNX export is missing or was made from other weights"
    xs = np.stack([net_input(c) for c in reference_inputs()[0]])
    with torch.no_grad():
        logits, e_ref = live.net(torch.from_numpy(np.ascontiguousarray(xs.transpose(0, 3, 1, 2))))
    p_ref = torch.softmax(logits, 1).numpy()
    for k, x in enumerate(xs):
        probs, emb = live(x)
        np.testing.assert_allclose(emb[0], e_ref[k].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(probs[0], p_ref[k], rtol=1e-5, atol=1e-6)
        assert probs.argmax() == p_ref[k].argmax()
    probs2, emb2 = live.faces(xs[:2])
    np.testing.assert_allclose(emb2, e_ref[:2].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probs2, p_ref[:2], rtol=1e-5, atol=1e-6)
    # a re-trained network beside an export of the old one: the export is refused, PyTorch runs
    own = tmp_path / "mine.npz"
    z = dict(np.load(FINETUNED_WEIGHTS, allow_pickle=False))
    first = next(k for k in z if z[k].dtype == np.float32 and z[k].size > 1)
    z[first] = z[first] * np.float32(1.01)
    np.savez(own, **z)
    shutil.copy(FINETUNED_WEIGHTS.with_suffix(".onnx"), tmp_path / "mine.onnx")
    assert file_sha256(own) != file_sha256(FINETUNED_WEIGHTS)
    with caplog.at_level("WARNING"):
        other = ExpressionModel(own)
    assert other._ort is None and "Re-export" in caplog.text
    probs, emb = other(xs[0])
    with torch.no_grad():
        lo, eo = other.net(torch.from_numpy(np.ascontiguousarray(xs[:1].transpose(0, 3, 1, 2))))
    np.testing.assert_allclose(emb, eo.numpy(), rtol=1e-5, atol=1e-5)
