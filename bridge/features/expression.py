"""The face expression network: face-api.js's FaceExpressionNet (Vincent Mühler, MIT; packaged as
``@vladmandic/face-api``), ported to PyTorch, plus the face crop that feeds it.

Architecture (from the package's ``src/faceFeatureExtractor`` and ``src/faceExpressionNet``): a 112x112 RGB crop,
minus the mean RGB (122.782, 117.001, 104.298), divided by 255 -> four dense blocks of depthwise-separable
convolutions (32, 64, 128, 256 channels, each halving the resolution) -> 7x7 average pool -> a 256-d embedding ->
a fully connected layer -> softmax over (neutral, happy, sad, angry, fearful, disgust, surprised).

TensorFlow details kept exactly: "same" padding (stride 2 on an even size pads one pixel at the bottom/right only),
the crop padded to a square with zeros (centred), and the legacy bilinear resize (``align_corners=False,
half_pixel_centers=False``), to which the network's predictions are sensitive.

The weights are converted from the npm tarball by ``tools/convert_face_api.py`` into ``weights/face_expression.npz``
(8-bit quantised as shipped; dequantised here exactly as tfjs does: ``q * scale + min``). Provenance and the MIT
notice travel in the same file and in ``weights/FACE_API_LICENSE``.
"""

from __future__ import annotations

import copy
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EXPRESSION_LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")
N_EXPRESSIONS = len(EXPRESSION_LABELS)
EMBED_DIM = 256
INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
WEIGHTS_DIR = Path(__file__).with_name("weights")
PORT_WEIGHTS = WEIGHTS_DIR / "face_expression.npz"  # the converted face-api weights (== tfjs)
# the port fine-tuned on FER+ through the bridge's crop (bridge/training/face_finetune.py, docs/FACE_EVIDENCE.md)
FINETUNED_WEIGHTS = WEIGHTS_DIR / "face_expression_ferplus.npz"
DEFAULT_WEIGHTS = FINETUNED_WEIGHTS
# the shipped weight files, checked on load (a truncated or altered file fails with a clear message); whoever
# regenerates one (tools/convert_face_api.py, bridge/training/face_finetune.py) records its new digest here
SHA256 = {
    "face_expression.npz": "56afe4bf6630016745495660982c1b441298b609f23d7ad5b07d61cd7625e723",
    "face_expression_ferplus.npz": "f4787c210930e5d8b2f8802bd7789e59539d55229a29af5019e8455623727eb4",
    "face_head.npz": "a7ba405af028b231cbacf83e4888ae10bd4c0c6d503d85ec17b2cb0decccf6d4",
    # the fine-tuned network exported for onnxruntime (tools/export_expression_onnx.py; records the npz's sha256)
    "face_expression_ferplus.onnx": "13f5ee0df41eb3ba8169ff8297e1f5e5b89c577ebf8a23888eea28cd3b1f3948",
}


class WeightsError(ValueError):
    pass


def file_sha256(path: Path | str) -> str:
    """sha256 of a file, computed once per file version (start-up checks the same weight files more than once)."""
    p = Path(path).resolve()
    st = p.stat()
    return _file_sha256(str(p), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def verify_weights(path: Path | str) -> Path:
    """A shipped weights file (one of ``SHA256``, in the package's weights folder) must have its recorded sha256;
    other paths (a user's own weights) are not checked."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"face expression weights not found: {path} (reinstall emotion-bridge)")
    want = SHA256.get(path.name)
    if want is None or path.resolve().parent != WEIGHTS_DIR.resolve():
        return path
    h = file_sha256(path)
    if h != want:
        raise WeightsError(f"{path}: sha256 {h[:16]}... is not the shipped file's {want[:16]}... (truncated or "
                           f"altered); reinstall emotion-bridge (pip install --force-reinstall emotion-bridge)")
    return path


def _same_pad(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """TensorFlow "same" padding: total = max((ceil(n/s)-1)*s + k - n, 0), the odd pixel at the bottom/right."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + k - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class SeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 0, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(_same_pad(x, 3, self.stride)))


class FirstConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(cin, cout, 3, stride, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_same_pad(x, 3, self.stride))


class DenseBlock4(nn.Module):
    """face-api's denseBlock4: out1 = relu(conv0(x)); each further conv sees the relu of the sum of all before."""

    def __init__(self, cin: int, cout: int, first: bool = False):
        super().__init__()
        self.conv0 = FirstConv(cin, cout, 2) if first else SeparableConv(cin, cout, 2)
        self.conv1 = SeparableConv(cout, cout, 1)
        self.conv2 = SeparableConv(cout, cout, 1)
        self.conv3 = SeparableConv(cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + (out2 + out3)))
        return F.relu(out1 + (out2 + (out3 + out4)))


class ExpressionNet(nn.Module):
    """FaceExpressionNet. ``forward`` takes (N, 3, 112, 112) RGB in 0..255 and returns (logits (N, 7),
    embedding (N, 256))."""

    def __init__(self):
        super().__init__()
        self.dense0 = DenseBlock4(3, 32, first=True)
        self.dense1 = DenseBlock4(32, 64)
        self.dense2 = DenseBlock4(64, 128)
        self.dense3 = DenseBlock4(128, 256)
        self.fc = nn.Linear(EMBED_DIM, N_EXPRESSIONS)
        self.register_buffer("mean", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 255.0
        x = self.dense3(self.dense2(self.dense1(self.dense0(x))))
        return F.avg_pool2d(x, 7, 2).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(x)
        return self.fc(e), e


# ---------------------------------------------------------------------------------------------------------------
# weights: tfjs manifest names <-> PyTorch parameters
# ---------------------------------------------------------------------------------------------------------------

def _tf_to_torch(name: str, w: np.ndarray) -> tuple[str, np.ndarray]:
    """One tfjs weight (name, array in TF layout) -> (state_dict key, array in PyTorch layout)."""
    block, conv, kind = name.split("/") if name.count("/") == 2 else (None, *name.split("/"))
    if block is None:  # fc/weights [256, 7], fc/bias [7]
        return (f"fc.weight", w.T) if kind == "weights" else ("fc.bias", w)
    pre = f"{block}.{conv}."
    if kind == "filters":  # [kh, kw, in, out] -> [out, in, kh, kw]
        return pre + "conv.weight", w.transpose(3, 2, 0, 1)
    if kind == "depthwise_filter":  # [kh, kw, in, 1] -> [in, 1, kh, kw]
        return pre + "depthwise.weight", w.transpose(2, 3, 0, 1)
    if kind == "pointwise_filter":  # [1, 1, in, out] -> [out, in, 1, 1]
        return pre + "pointwise.weight", w.transpose(3, 2, 0, 1)
    if kind == "bias":
        return pre + ("conv.bias" if block == "dense0" and conv == "conv0" else "pointwise.bias"), w
    raise KeyError(name)


def dequantize(q: np.ndarray, scale: float, minimum: float) -> np.ndarray:
    """tfjs ``decodeWeights`` for uint8 quantisation: ``q * scale + min`` (in doubles), stored as float32."""
    return (q.astype(np.float64) * float(scale) + float(minimum)).astype(np.float32)


def load_tfjs_weights(path: Path = DEFAULT_WEIGHTS) -> tuple[dict[str, np.ndarray], dict]:
    """The converted npz -> ({tfjs name: float32 array in TF layout}, provenance metadata)."""
    z = np.load(verify_weights(path), allow_pickle=False)
    meta = json.loads(str(z["meta"]))
    out = {}
    for w in meta["weights"]:
        a = z[w["key"]]
        if "quantization" in w:
            qz = w["quantization"]
            a = dequantize(a, qz["scale"], qz["min"])
        out[w["name"]] = a.astype(np.float32).reshape(w["shape"])
    return out, meta


def build_net(path: Path = DEFAULT_WEIGHTS) -> ExpressionNet:
    return net_from_weights(load_tfjs_weights(path)[0], path)


def net_from_weights(weights: dict[str, np.ndarray], path: Path | str = "") -> ExpressionNet:
    """The network from ``load_tfjs_weights``'s arrays (``path`` only names the file in error messages)."""
    net = ExpressionNet()
    sd = net.state_dict()
    new = {}
    for name, w in weights.items():
        key, a = _tf_to_torch(name, w)
        if tuple(sd[key].shape) != a.shape:
            raise ValueError(f"{path}: {name} has shape {a.shape}, the network expects {tuple(sd[key].shape)}")
        new[key] = torch.from_numpy(np.ascontiguousarray(a))
    missing = set(sd) - set(new) - {"mean"}
    if missing:
        raise ValueError(f"{path}: weights missing for {sorted(missing)}")
    new["mean"] = sd["mean"]
    net.load_state_dict(new)
    return net.eval()


# ---------------------------------------------------------------------------------------------------------------
# pre-processing: pad to square, TF legacy bilinear resize, the landmark crop
# ---------------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _legacy_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = n_in / n_out
    src = np.arange(n_out, dtype=np.float64) * scale  # legacy: no half-pixel offset
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_bilinear_legacy(img: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.resizeBilinear(img, [size, size], alignCorners=false, halfPixelCenters=false)`` on (H, W, C)."""
    img = np.asarray(img, np.float32)
    h, w = img.shape[:2]
    if h == size and w == size:
        return img
    y0, y1, fy = _legacy_axis(h, size)
    x0, x1, fx = _legacy_axis(w, size)
    top = img[y0][:, x0] + (img[y0][:, x1] - img[y0][:, x0]) * fx[None, :, None]
    bot = img[y1][:, x0] + (img[y1][:, x1] - img[y1][:, x0]) * fx[None, :, None]
    return top + (bot - top) * fy[:, None, None]


def pad_to_square(img: np.ndarray) -> np.ndarray:
    """face-api's ``padToSquare(isCenterImage=true)``: zeros, ``round(diff / 2)`` after, the rest before."""
    h, w = img.shape[:2]
    if h == w:
        return img
    diff = abs(h - w)
    after = int(math.floor(diff * 0.5 + 0.5))  # JS Math.round
    before = diff - after
    pad = ((0, 0), (before, after), (0, 0)) if h > w else ((before, after), (0, 0), (0, 0))
    return np.pad(img, pad)


def net_input(crop_rgb: np.ndarray) -> np.ndarray:
    """An RGB face crop of any size -> the network's (112, 112, 3) float32 input, as face-api prepares it."""
    return resize_bilinear_legacy(pad_to_square(np.asarray(crop_rgb, np.float32)), INPUT_SIZE)


# MediaPipe FaceMesh landmark indices: outer eye corners and mouth corners
_EYE_A, _EYE_B, _MOUTH_A, _MOUTH_B = 33, 263, 61, 291
# The crop in the face's own frame (eye line horizontal), in units of the eye-centre -> mouth-centre distance d:
# side CROP_SIDE * d, centre CROP_DOWN * d below the eye centre. Fitted to the FER2013 crops (median over the FER+
# validation faces: the FER box is 2.57 d wide, centred 0.28 d below the eyes), then 10 % wider, which the
# network preferred on FER+ validation (accuracy 0.684 vs 0.677 on 1,500 faces; 8 % tighter: 0.641).
CROP_SIDE = 2.83
CROP_DOWN = 0.278
# Low light: a crop darker than LOW_LIGHT_MEAN (mean grey level; 2-3 % of the FER+ photos are) is brightened to a
# mean of LOW_LIGHT_TARGET before the network. On FER+ faces at a quarter of the light + sensor noise this raised
# accuracy from 0.54 to 0.67 (label flips 35 % -> 20 %) and left normally lit faces as they were (0.731 -> 0.728).
LOW_LIGHT_MEAN = 70.0
LOW_LIGHT_TARGET = 100.0


def crop_geometry(landmarks: np.ndarray, width: int, height: int, scale: float = 1.0
                  ) -> tuple[float, float, float, float]:
    """Landmarks (N, 3) normalised to the frame -> (centre x, centre y, side, roll in degrees) of the upright
    square face crop in pixels. Eyes and mouth fix it, so it follows the face at any size, position and roll."""
    p = np.asarray(landmarks, np.float64)[:, :2] * (width, height)
    eye = (p[_EYE_A] + p[_EYE_B]) / 2
    mouth = (p[_MOUTH_A] + p[_MOUTH_B]) / 2
    e = p[_EYE_B] - p[_EYE_A]
    roll = math.degrees(math.atan2(e[1], e[0]))
    d = float(np.linalg.norm(mouth - eye))
    # "down" is perpendicular to the eye line (not the eye -> mouth direction, which a turned head skews)
    down = np.array([-math.sin(math.radians(roll)), math.cos(math.radians(roll))])
    c = eye + down * CROP_DOWN * d
    return float(c[0]), float(c[1]), CROP_SIDE * d * scale, roll


def crop_square(image_bgr: np.ndarray, landmarks: np.ndarray, scale: float = 1.0) -> np.ndarray | None:
    """The upright square face crop from a BGR frame and its normalised landmarks, 112x112 BGR uint8, before any
    brightening. The square is cut at the frame's resolution (rotated by the roll angle; zeros outside the
    frame), then resized with area averaging when shrinking (no aliasing on large faces) or bilinear when
    enlarging (small faces). None when the face is under 8 px."""
    import cv2

    h, w = image_bgr.shape[:2]
    cx, cy, side, roll = crop_geometry(landmarks, w, h, scale)
    n = int(round(side))
    if n < 8:
        return None
    m = cv2.getRotationMatrix2D((cx, cy), roll, 1.0)  # rotates the image so the eye line becomes horizontal
    m[0, 2] += n / 2 - cx
    m[1, 2] += n / 2 - cy
    sq = cv2.warpAffine(image_bgr, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.resize(sq, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if n > INPUT_SIZE else cv2.INTER_LINEAR)


def brighten(crop_rgb: np.ndarray) -> np.ndarray:
    """A 112x112 RGB crop -> float32 network input; a dark crop is brightened (``LOW_LIGHT_MEAN``)."""
    crop = np.asarray(crop_rgb, np.float32)
    m = float(crop.mean())
    if m < LOW_LIGHT_MEAN:  # a dark face: brighten it (the network was not made for dark faces)
        crop = np.clip(crop * (LOW_LIGHT_TARGET / max(m, 1.0)), 0.0, 255.0)
    return crop


def crop_face(image_bgr: np.ndarray, landmarks: np.ndarray, scale: float = 1.0) -> np.ndarray | None:
    """The upright square face crop from a BGR frame and its normalised landmarks -> the network's
    (112, 112, 3) RGB float32 input (``crop_square``, then ``brighten``)."""
    sq = crop_square(image_bgr, landmarks, scale)
    if sq is None:
        return None
    return brighten(np.ascontiguousarray(sq[:, :, ::-1]))


def onnx_session(weights: Path):
    """The onnxruntime session of ``weights``' ONNX export (``<weights>.onnx``, tools/export_expression_onnx.py),
    single-threaded; None when there is none, or when it was exported from other weights (then with a warning: a
    re-trained network whose export was not redone runs in PyTorch, never as the stale export)."""
    import logging

    path = Path(weights).with_suffix(".onnx")
    if not path.is_file():
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    verify_weights(path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    source = sess.get_modelmeta().custom_metadata_map.get("source_sha256")
    if source != file_sha256(weights):
        logging.getLogger(__name__).warning(
            "%s was exported from other weights than %s; the expression network runs in PyTorch (slower). "
            "Re-export it: pip install onnx; python tools/export_expression_onnx.py %s", path, weights, weights)
        return None
    return sess


class ExpressionModel:
    """The network (single-threaded inference) with its provenance; ``__call__`` on 112x112 RGB inputs."""

    def __init__(self, path: Path | str = DEFAULT_WEIGHTS):
        self.path = Path(path)
        weights, self.meta = load_tfjs_weights(self.path)
        self.net = net_from_weights(weights, self.path)
        # the live path (the faces of one frame): onnxruntime on the weights' ONNX export when it is there (the
        # shipped network has one; 2x faster than PyTorch here, equal to float32 rounding, tests/test_expression.py);
        # else the same network in channels-last memory layout, which oneDNN's depthwise and pointwise convolutions
        # run faster than the plain one. Batches through ``__call__`` (training, the face bank) keep PyTorch's plain
        # layout.
        self._ort = onnx_session(self.path)
        self._net_one = None if self._ort is not None else copy.deepcopy(self.net).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def __call__(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(112, 112, 3) or (N, 112, 112, 3) RGB float -> (probabilities (N, 7), embedding (N, 256))."""
        x = np.asarray(inputs, np.float32)
        if x.ndim == 3:
            x = x[None]
        if len(x) == 1:
            return self.faces(x)
        logits, emb = self.net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
        return torch.softmax(logits, 1).numpy(), emb.numpy()

    @torch.no_grad()
    def faces(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The live path: (N, 112, 112, 3) -> as ``__call__``, the faces of one frame in one call (~25 % less CPU
        than a call per face), through onnxruntime or the channels-last copy."""
        x = np.ascontiguousarray(np.asarray(inputs, np.float32))
        if self._ort is not None:
            probs, emb = self._ort.run(None, {"x": x})
            return probs, emb
        logits, emb = self._net_one(torch.from_numpy(x).permute(0, 3, 1, 2))  # NHWC is channels-last NCHW: a view
        return torch.softmax(logits, 1).numpy(), emb.numpy()


DEFAULT_HEAD = WEIGHTS_DIR / "face_head.npz"
HEAD_FEATURES = ("embedding", "blendshapes")  # what the head reads, in this order


class FaceHead:
    """The FER+-trained head: standardised [network embedding (256), blendshapes (52)] -> a linear layer or one
    hidden ReLU layer -> 7 expression probabilities; several such heads from different seeds when the file holds
    an ensemble (their probabilities averaged). Trained by ``bridge.training.face_real.train_head``; stored as
    plain arrays (``face_head.npz``) with its training metadata."""

    def __init__(self, path: Path | str = DEFAULT_HEAD):
        z = np.load(verify_weights(path), allow_pickle=False)
        self.meta = json.loads(str(z["meta"]))
        if tuple(self.meta["features"]) != HEAD_FEATURES or list(self.meta["labels"]) != list(EXPRESSION_LABELS):
            raise ValueError(f"{path}: head trained on {self.meta['features']} / {self.meta['labels']}, this build "
                             f"feeds {HEAD_FEATURES} / {EXPRESSION_LABELS}")
        self.mu, self.sd = z["mu"].astype(np.float32), z["sd"].astype(np.float32)
        self.layers = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32))
                       for i in range(int(self.meta["n_layers"]))]
        self.members = self.layers[0][0].shape[0] if self.layers[0][0].ndim == 3 else 1

    def __call__(self, embedding: np.ndarray, blendshapes: np.ndarray) -> np.ndarray:
        return head_probs(self.mu, self.sd, self.layers,
                          np.concatenate([np.atleast_2d(embedding), np.atleast_2d(blendshapes)], 1))


def head_probs(mu: np.ndarray, sd: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray
               ) -> np.ndarray:
    """Standardise ``X`` (rows), then dense layers with ReLU between them, softmax. Weights of shape (members,
    inputs, outputs) are an ensemble: every member runs on the same rows and their probabilities are averaged."""
    x = (np.asarray(X, np.float32) - mu) / sd
    if layers[0][0].ndim == 3:
        x = x[None]  # members x rows x inputs
    for k, (w, b) in enumerate(layers):
        x = x @ w + (b[:, None] if b.ndim == 2 else b)
        if k < len(layers) - 1:
            x = np.maximum(x, 0.0)
    z = np.exp(x - x.max(-1, keepdims=True))
    p = z / z.sum(-1, keepdims=True)
    return (p.mean(0) if p.ndim == 3 else p).astype(np.float32)


class FaceExpression:
    """One face -> its 7 expression probabilities: landmark crop -> network -> head (when shipped)."""

    def __init__(self, weights: Path | str = DEFAULT_WEIGHTS, head: Path | str | None = DEFAULT_HEAD):
        self.model = ExpressionModel(weights)
        self.head = FaceHead(head) if head is not None and Path(head).is_file() else None
        if self.head is not None and self.head.meta.get("network_sha256"):
            if file_sha256(weights) != self.head.meta["network_sha256"]:
                import logging

                logging.getLogger(__name__).warning(
                    "the face head %s was trained on the outputs of %s, not of %s: its expression probabilities "
                    "may be off (re-fit it: python -m bridge.training.face_finetune --stage finish)", head,
                    self.head.meta.get("network"), weights)

    def __call__(self, frame_bgr: np.ndarray, landmarks: np.ndarray, blendshapes: np.ndarray) -> np.ndarray | None:
        crop = crop_face(frame_bgr, landmarks)
        if crop is None:
            return None
        probs, emb = self.model(crop)
        return (self.head(emb, blendshapes) if self.head is not None else probs)[0]

    def many(self, frame_bgr: np.ndarray, landmarks: list, blendshapes: list) -> list[np.ndarray | None]:
        """Several faces of one frame -> their probabilities (None where a face gives no crop), one network call."""
        crops = [crop_face(frame_bgr, lm) for lm in landmarks]
        ok = [i for i, c in enumerate(crops) if c is not None]
        out: list[np.ndarray | None] = [None] * len(crops)
        if not ok:
            return out
        probs, emb = self.model.faces(np.stack([crops[i] for i in ok]))
        if self.head is not None:
            probs = np.concatenate([self.head(emb[k:k + 1], blendshapes[i]) for k, i in enumerate(ok)])
        for k, i in enumerate(ok):
            out[i] = probs[k]
        return out
