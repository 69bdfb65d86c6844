"""File analysis over HTTP: ``POST /analyze`` on the monitor's server runs an uploaded recording through
:func:`bridge.pipeline.process_files` (the live pipeline on a virtual clock) and answers
``{"states": [...], "summary": {...}, "file": {...}, "warnings": [...]}``.

The upload is the raw request body (any ``Content-Type``) or the ``file`` field of a ``multipart/form-data``
form. Its type is decided by content, never by name: ``RIFF....WAVE`` (wav), ``fLaC`` (flac), ``ID3`` or an MPEG
audio frame sync (mp3), ``....ftyp`` (mp4/mov/m4a: ISO-BMFF; video, with its audio track when there is one).
One analysis runs at a time (a second request gets 429 at once); the size limit is ``analyze.max_bytes`` (413).
Errors are :class:`AnalyzeError` with an HTTP status and a message that says what is wrong.

In the returned states ``t_capture`` is the position in the file in seconds; ``t_emit``, ``fps`` and
``latency_ms`` are null (nothing was sent live).
"""

from __future__ import annotations

import logging
import struct
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bridge.config import Config
from bridge.labels import LABELS
from bridge.output import schema

log = logging.getLogger(__name__)

KINDS = {"wav": ".wav", "flac": ".flac", "mp3": ".mp3", "mp4": ".mp4"}


class AnalyzeError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def sniff(head: bytes) -> str | None:
    """The container by its first bytes, or None."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0
                              and (head[1] & 0x06) != 0):  # frame sync + a valid layer
        return "mp3"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    return None


def wav_truncated(data: bytes) -> str | None:
    """A warning when the RIFF header promises more bytes than came (a cut-off upload or recording)."""
    if len(data) < 12:
        return "wav header incomplete"
    riff = struct.unpack("<I", data[4:8])[0]
    if riff + 8 > len(data) and riff != 0xFFFFFFFF and riff != 0:
        return (f"the file looks truncated: its header announces {riff + 8} bytes, {len(data)} arrived; "
                f"the part that arrived was analysed")
    return None


def parse_multipart(body: bytes, content_type: str, field: str = "file") -> bytes:
    """The bytes of form field ``field`` (``multipart/form-data``); AnalyzeError 400 when it is not there."""
    boundary = None
    for part in content_type.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip().strip('"')
    if not boundary:
        raise AnalyzeError(400, "multipart/form-data without a boundary")
    delim = b"--" + boundary.encode("latin-1")
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        disp = next((ln for ln in head.decode("latin-1").split("\r\n")
                     if ln.lower().startswith("content-disposition:")), "")
        params = {}
        for p in disp.split(";")[1:]:
            k, _, v = p.strip().partition("=")
            params[k.lower()] = v.strip().strip('"')
        if params.get("name") == field:
            return content[:-2] if content.endswith(b"\r\n") else content
    raise AnalyzeError(400, f"the multipart upload has no `{field}` field: send the recording as "
                            f"-F {field}=@recording.wav (or as the raw request body)")


def summarize(states, tick_hz: float) -> dict:
    if not states:
        return {"n_states": 0}
    t = np.array([s.t_capture for s in states])
    val = np.array([s.valence for s in states])
    aro = np.array([s.arousal for s in states])
    conf = np.array([s.confidence for s in states])
    labels = [s.label for s in states]
    shares = Counter(labels)
    timeline = []
    for sec in range(int(np.floor(t.max())) + 1):
        m = (t >= sec) & (t < sec + 1)
        if not m.any():
            continue
        lab = Counter(lb for lb, k in zip(labels, m) if k).most_common(1)[0][0]
        timeline.append({"t": sec, "valence": round(float(val[m].mean()), 4), "arousal": round(float(aro[m].mean()), 4),
                         "confidence": round(float(conf[m].mean()), 4), "label": lab})
    return {"n_states": len(states), "duration_s": round(float(t.max()), 3), "tick_hz": tick_hz,
            "valence_mean": round(float(val.mean()), 4), "arousal_mean": round(float(aro.mean()), 4),
            "confidence_mean": round(float(conf.mean()), 4),
            "label_shares": {n: round(shares.get(n, 0) / len(states), 4) for n in LABELS},
            "top_label": shares.most_common(1)[0][0],
            "face_present_share": round(float(np.mean([s.face_present for s in states])), 4),
            "voice_active_share": round(float(np.mean([s.voice_active for s in states])), 4),
            "timeline": timeline}


class Analyzer:
    """One analysis at a time in a worker thread; :meth:`try_begin` / :meth:`end` bracket a request."""

    def __init__(self, cfg: Config, weights: str | None = None, face_model: str | None = None):
        self.cfg = cfg
        self.max_bytes = cfg.analyze.max_bytes
        self.token = cfg.analyze.token
        self.weights, self.face_model = weights, face_model
        self._busy = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analyze")
        self.counters = {"ok": 0, "refused": 0, "busy": 0, "failed": 0}

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    def try_begin(self) -> bool:
        ok = self._busy.acquire(blocking=False)
        if not ok:
            self.counters["busy"] += 1
        return ok

    def end(self) -> None:
        self._busy.release()

    def analyze(self, data: bytes) -> dict:
        """The upload's bytes -> the response dict (call between try_begin and end). AnalyzeError on bad input."""
        kind = sniff(data[:64])
        if kind is None:
            self.counters["refused"] += 1
            preview = data[:16]
            what = "text" if preview and all(32 <= b < 127 or b in (9, 10, 13) for b in preview) else "binary data"
            raise AnalyzeError(415, f"not a wav, flac, mp3 or mp4 file (the content starts like {what}: "
                                    f"{preview!r}); the type is checked by content, not by the file name")
        warnings = []
        if kind == "wav" and (w := wav_truncated(data)):
            warnings.append(w)
        with tempfile.TemporaryDirectory(prefix="eb-analyze-") as d:
            path = Path(d) / ("upload" + KINDS[kind])
            path.write_bytes(data)
            try:
                states, has_audio = self._pool.submit(self._run, path, kind).result()
            except AnalyzeError:
                self.counters["failed"] += 1
                raise
            except Exception as e:  # noqa: BLE001 - decoders raise many types; the client gets the reason
                self.counters["failed"] += 1
                log.info("analyze: %s upload failed: %s", kind, e)
                raise AnalyzeError(422, f"could not analyse the {kind} upload ({len(data)} bytes): "
                                        f"{type(e).__name__}: {str(e)[:300]}. Is the file complete?") from None
        if not states:
            self.counters["failed"] += 1
            raise AnalyzeError(422, f"the {kind} upload ({len(data)} bytes) decoded to nothing: no audio samples "
                                    f"or video frames. Is the file complete?")
        if kind == "mp4" and not has_audio:
            warnings.append("the mp4 has no audio track that could be decoded: face only")
        self.counters["ok"] += 1
        out_states = []
        for s in states:
            m = schema.state_message(s, None, 0.0, 0.0)
            m.update(t_capture=round(s.t_capture, 4), t_emit=None, fps=None, latency_ms=None)
            out_states.append(m)
        return {"states": out_states, "summary": summarize(states, self.cfg.model.tick_hz),
                "file": {"type": kind, "bytes": len(data), "audio": has_audio, "video": kind == "mp4"},
                "warnings": warnings}

    def _run(self, path: Path, kind: str):
        from bridge.capture.audio import CaptureError, iter_audio_file
        from bridge.pipeline import process_files

        has_audio = True
        if kind == "mp4":
            try:
                next(iter(iter_audio_file(str(path), self.cfg.audio.block_ms)))
            except (CaptureError, StopIteration, RuntimeError, ValueError, OSError):
                has_audio = False
            return process_files(audio=path if has_audio else None, video=path, config=self.cfg,
                                 weights=self.weights, face_model=self.face_model), has_audio
        return process_files(audio=path, config=self.cfg, weights=self.weights), True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
