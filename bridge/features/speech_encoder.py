"""Pretrained speech encoder: Google's speech_embedding (openWakeWord's front end, Apache-2.0), streaming.

Two ONNX models shipped in ``bridge/features/models/speech_embedding/`` (provenance, checksums and the license in
the README and NOTICE there):

- a log-mel front end: 32 bands in dB, frame k covers samples [160 k, 160 k + 512) -- the same frame grid as
  :class:`bridge.features.audio.AudioFeatures`, so frame k of both describes the same 32 ms. The ONNX graph ends
  by clamping every value at (maximum over the whole input - 80 dB), which makes a frame depend on the audio
  around it and cannot stream; so the same computation (its DFT and mel matrices, extracted unchanged into
  ``melspectrogram_weights.npz``) runs in numpy with a fixed floor instead: :func:`mel_frames` equals the ONNX
  graph to 1e-3 dB wherever that clamp does not bite (tested);
- an embedding network: 76 frames (775 ms) -> a 96-d vector, computed every 8 frames (80 ms).

Only new audio is analysed: :meth:`SpeechEncoder.mel` turns new samples into new mel frames (it keeps the last
352 samples of context), :meth:`SpeechEncoder.embed` appends frames to a 76-frame ring and runs the embedding
network once per 8 frames. Before 76 frames exist the ring is padded with the mel of digital silence, so the first
embedding comes after 80 ms, not 775 ms. ``embed`` takes a per-frame level offset in dB (the caller's running speech level): each window is shifted by
the offset of its newest frame, so the encoder sees speech at a nominal level whatever the microphone gain. :func:`offline_embeddings` is the whole-clip reference the streaming path is tested against.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

import numpy as np

MEL_WIN, MEL_HOP, N_MEL = 512, 160, 32
EMB_FRAMES, EMB_STEP, EMB_DIM = 76, 8, 96
INT16 = 32768.0
FLOOR_DB = 0.0  # after level normalisation: about one int16 LSB of power, below any real microphone's noise
SHA256 = {"melspectrogram.onnx": "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f",
          "embedding_model.onnx": "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f",
          "melspectrogram_weights.npz": "558215ce1d28338c5e6b556e59ac1728fdfd6ef3cf0f1c3e8f711d3f02284ad5"}
_BASE = ("bridge.features", "models/speech_embedding")


class EncoderUnavailable(RuntimeError):
    """The shipped ONNX files are missing or damaged, or onnxruntime is not installed."""


def _read(name: str) -> bytes:
    base = resources.files(_BASE[0]).joinpath(_BASE[1])
    try:
        blob = base.joinpath(name).read_bytes()
    except FileNotFoundError:
        raise EncoderUnavailable(f"{name} is missing from {base}: reinstall emotion-bridge") from None
    if hashlib.sha256(blob).hexdigest() != SHA256[name]:
        raise EncoderUnavailable(f"{base}/{name} does not match its checksum: the file is damaged or was "
                                 f"replaced; reinstall emotion-bridge")
    return blob


@lru_cache(maxsize=1)
def _mel_matrices() -> tuple[np.ndarray, np.ndarray]:
    """The analysis window (512,) and the (257, 32) mel matrix of the ONNX graph. Its STFT convolution kernels
    are exactly window x DFT (the k = 0 real kernel is the window; tested to 1e-7), so an FFT computes them."""
    import io

    z = np.load(io.BytesIO(_read("melspectrogram_weights.npz")))
    return z["real"][0].astype(np.float64), z["melW"].astype(np.float64)


@lru_cache(maxsize=1)
def _sessions():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise EncoderUnavailable("the speech encoder needs onnxruntime: pip install onnxruntime") from e
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(_read("embedding_model.onnx"), sess_options=so, providers=["CPUExecutionProvider"])


def onnx_mel_reference(audio: np.ndarray) -> np.ndarray:
    """The shipped ONNX mel graph itself (with its whole-input clamp): the reference for tests."""
    import onnxruntime as ort

    sess = ort.InferenceSession(_read("melspectrogram.onnx"), providers=["CPUExecutionProvider"])
    x = (np.asarray(audio, np.float32) * INT16)[None]
    return sess.run(None, {"input": x})[0].reshape(-1, N_MEL)


def silence_frame() -> np.ndarray:
    """The raw mel frame of digital silence (what the ring is padded with)."""
    return np.full(N_MEL, -100.0, np.float32)


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """All complete mel frames (dB re int16 full scale, floored at 1e-10 power as the ONNX graph): (n, 32)."""
    audio = np.asarray(audio, np.float32)
    if len(audio) < MEL_WIN:
        return np.zeros((0, N_MEL), np.float32)
    n = 1 + (len(audio) - MEL_WIN) // MEL_HOP
    import scipy.fft

    window, melw = _mel_matrices()
    frames = np.lib.stride_tricks.sliding_window_view(audio, MEL_WIN)[::MEL_HOP][:n]
    spec = scipy.fft.rfft(frames * (window * INT16), axis=1)
    power = spec.real ** 2 + spec.imag ** 2
    return (10.0 * np.log10(np.maximum(power @ melw, 1e-10))).astype(np.float32)


def normalise(frames: np.ndarray, offset_db: float) -> np.ndarray:
    """Subtract the level offset, floor at FLOOR_DB."""
    return np.maximum(frames - np.float32(offset_db), np.float32(FLOOR_DB))


def _embed_windows(windows: np.ndarray) -> np.ndarray:
    """(n, 76, 32) normalised dB frames -> (n, 96)."""
    emb = _sessions()
    x = (windows / 10.0 + 2.0).astype(np.float32)[..., None]
    # one window per run: the result must not depend on how many windows a block completed
    return np.concatenate([emb.run(None, {"input_1": w[None]})[0].reshape(1, EMB_DIM) for w in x])


class SpeechEncoder:
    def __init__(self):
        _sessions()
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)  # samples not yet covered by a complete frame, plus context
        self._ring = np.tile(silence_frame(), (EMB_FRAMES, 1)).astype(np.float32)
        self.frames = 0  # mel frames embedded so far
        self.last = np.zeros(EMB_DIM, np.float32)
        self.count = 0  # embeddings computed

    def mel(self, samples: np.ndarray) -> np.ndarray:
        """New samples -> the mel frames they complete (same count and grid as AudioFeatures' frames)."""
        buf = np.concatenate([self._buf, samples]) if len(self._buf) else np.asarray(samples, np.float32)
        if len(buf) < MEL_WIN:
            self._buf = buf
            return np.zeros((0, N_MEL), np.float32)
        n = 1 + (len(buf) - MEL_WIN) // MEL_HOP
        out = mel_frames(buf[:MEL_WIN + (n - 1) * MEL_HOP])
        self._buf = buf[n * MEL_HOP:]
        return out

    def embed(self, frames: np.ndarray, offset_db: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Append raw mel frames; every 8th frame, embed the last 76 frames shifted by that frame's
        ``offset_db`` (the whole window is shifted by the newest level estimate, so the frames before the
        speech level was known are shifted too). Returns (index within ``frames`` of each new embedding's
        newest frame, embeddings (k, 96))."""
        off = np.broadcast_to(np.asarray(offset_db, np.float32), (len(frames),))
        windows, at = [], []
        for i, f in enumerate(frames):
            self._ring[:-1] = self._ring[1:]
            self._ring[-1] = f
            self.frames += 1
            if self.frames % EMB_STEP == 0:
                windows.append(normalise(self._ring, off[i]))
                at.append(i)
        if not windows:
            return np.zeros(0, np.int64), np.zeros((0, EMB_DIM), np.float32)
        embs = _embed_windows(np.stack(windows))
        self.last = embs[-1]
        self.count += len(embs)
        return np.asarray(at, np.int64), embs


def offline_embeddings(audio: np.ndarray, offset_db: np.ndarray | float = 0.0) -> np.ndarray:
    """Whole-clip reference: mel of the whole signal at once, padded with silence frames, one embedding per 8
    frames: (n_frames // 8, 96)."""
    frames = mel_frames(audio)
    off = np.broadcast_to(np.asarray(offset_db, np.float32), (len(frames),))
    padded = np.concatenate([np.tile(silence_frame(), (EMB_FRAMES - 1, 1)), frames])
    ends = np.arange(EMB_STEP - 1, len(frames), EMB_STEP)  # frame index of each embedding's newest frame
    if len(ends) == 0:
        return np.zeros((0, EMB_DIM), np.float32)
    windows = np.stack([normalise(padded[e:e + EMB_FRAMES], off[e]) for e in ends])
    return _embed_windows(windows)
