"""Export the shipped face expression network to ONNX, for the live path's onnxruntime session.

    pip install onnx                      # the exporter needs it; the bridge itself only needs onnxruntime
    python tools/export_expression_onnx.py [WEIGHTS.npz]

Writes ``<WEIGHTS>.onnx`` beside the weights (default: the package's fine-tuned network,
``bridge/features/weights/face_expression_ferplus.npz``): input ``x`` (N, 112, 112, 3) RGB float32 in 0..255, as
the crop comes (NHWC, no transpose needed), outputs ``probs`` (N, 7, softmax) and ``embedding`` (N, 256), exactly
the PyTorch network of ``bridge.features.expression`` (checked here on random inputs to 1e-5 before writing).
The file records the sha256 of the weights it was made from (metadata ``source_sha256``); ``ExpressionModel`` uses
it only when that matches, so re-training the network (``bridge.training.face_finetune``) without re-exporting
falls back to PyTorch with a warning, never to a stale network. Record the new file's sha256 in
``bridge.features.expression.SHA256`` (the command prints it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.features.expression import FINETUNED_WEIGHTS, file_sha256, load_tfjs_weights, net_from_weights  # noqa: E402

OPSET = 17


class _NHWC(torch.nn.Module):
    """The network with the live path's layout and softmax folded in."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, emb = self.net(x.permute(0, 3, 1, 2))
        return torch.softmax(logits, 1), emb


def export(weights: Path) -> tuple[Path, str]:
    try:
        import onnx
    except ImportError:
        raise SystemExit("the ONNX exporter needs the onnx package: pip install onnx") from None
    import onnxruntime as ort

    w, _ = load_tfjs_weights(weights)
    net = net_from_weights(w, weights).eval()
    buf = io.BytesIO()
    torch.onnx.export(_NHWC(net), torch.zeros(1, 112, 112, 3), buf, dynamo=False, opset_version=OPSET,
                      input_names=["x"], output_names=["probs", "embedding"],
                      dynamic_axes={"x": {0: "n"}, "probs": {0: "n"}, "embedding": {0: "n"}})
    model = onnx.load_from_string(buf.getvalue())
    model.producer_name = "emotion-bridge tools/export_expression_onnx.py"
    for k, v in {"source": weights.name, "source_sha256": file_sha256(weights)}.items():
        model.metadata_props.add(key=k, value=v)
    data = model.SerializeToString()
    # the exported graph must be the PyTorch network
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (3, 112, 112, 3)).astype(np.float32)
    p, e = sess.run(None, {"x": x})
    with torch.no_grad():
        tp, te = _NHWC(net)(torch.from_numpy(x))
    np.testing.assert_allclose(e, te.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p, tp.numpy(), rtol=1e-5, atol=1e-6)
    out = weights.with_suffix(".onnx")
    out.write_bytes(data)
    return out, hashlib.sha256(data).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", nargs="?", default=str(FINETUNED_WEIGHTS))
    a = ap.parse_args(argv)
    out, digest = export(Path(a.weights))
    print(f"{out} ({out.stat().st_size} bytes)\nsha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
