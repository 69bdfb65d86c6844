"""Video capture: cameras and streams (OpenCV ``VideoCapture``) and video files, newest frame wins.

* :class:`CameraSource` -- a device index, a stream URL (``rtsp://``, ``http://`` ...), or any path OpenCV can
  read as a live input (``/dev/video0``, a FIFO). A grab thread reads frames into a single slot; a supervisor
  thread is the watchdog: no frame for ``watchdog_s`` (``cv2`` reads can block forever, opencv#5221/#4468), a
  failed read or a failed open marks the source ``reconnecting``, *abandons* the grab thread (a generation
  counter makes anything it still delivers be ignored; it releases its capture whenever its read returns, and
  for FFmpeg inputs a read timeout slightly longer than the watchdog makes sure it does) and opens a new
  ``VideoCapture`` after an exponential backoff.
* :class:`FileVideoSource` -- a video file paced in real time (stale frames are dropped) or at ``max`` speed
  (back-pressure: the reader waits until the consumer took the previous frame, so every frame is processed).
* :func:`iter_video_file` -- the deterministic offline path: frames with ``t_capture = index / fps``.
* :func:`open_video` -- picks one from ``VideoConfig.source``; :func:`list_cameras` -- probes camera indices.

Newest frame wins: producers overwrite the slot; a frame overwritten before :meth:`wait_frame` took it is counted
in ``health()["dropped"]``. Frames are always BGR ``uint8`` with 3 channels (grayscale/BGRA/16-bit converted);
large frames are passed through unscaled (the face stage downsizes). ``mirror`` (camera/stream only) flips
horizontally in :meth:`CameraSource.wait_frame`, on the consumer's thread, so the grab thread only grabs; file
sources deliver frames as recorded, so a live replay of a file and the offline path see the same images.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import stat
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from bridge.capture.base import (Backoff, CaptureError, VideoSource, as_device_index, is_url, wait_until)
from bridge.clock import now
from bridge.frames import VideoFrame

if TYPE_CHECKING:
    from bridge.config import SourcesConfig, VideoConfig

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - opencv is a hard dependency via mediapipe
        raise CaptureError(f"OpenCV (cv2) is not importable: {e}") from e
    return cv2


def to_bgr_uint8(img: Any) -> np.ndarray | None:
    """Normalise a decoded frame to a contiguous BGR uint8 HxWx3 array; ``None`` for missing/empty/odd frames."""
    if img is None or not isinstance(img, np.ndarray) or img.size == 0 or img.ndim not in (2, 3):
        return None
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    cv2 = _cv2()
    if img.ndim == 3:
        c = img.shape[2]
        if c == 3:
            pass
        elif c == 1:
            img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
        elif c == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        else:
            return None
    else:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


def _sane_fps(fps: float) -> float:
    return float(fps) if fps and math.isfinite(fps) and 1.0 <= fps <= 1000.0 else DEFAULT_FPS


# --------------------------------------------------------------------------------------------------------------
# newest-frame slot
# --------------------------------------------------------------------------------------------------------------


class _FrameSlot:
    """One pending frame guarded by a Condition. Producers of an outdated generation are ignored."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frame: VideoFrame | None = None
        self.gen = 0
        self.closed = False
        self.exhausted = False  # a file finished: no more frames will come
        self.next_index = 0
        self.dropped = 0
        self.published = 0
        self.taken = 0
        self.last_put: float | None = None
        self._times: collections.deque = collections.deque(maxlen=31)

    def _accept(self, image: np.ndarray, t: float, gen: int) -> bool:
        if self.closed or gen != self.gen:
            return False
        if self.frame is not None:
            self.dropped += 1
        self.frame = VideoFrame(image, t, self.next_index)
        self.next_index += 1
        self.published += 1
        self.last_put = t
        self._times.append(t)
        self.cond.notify_all()
        return True

    def put(self, image: np.ndarray, t: float, gen: int) -> bool:
        """Overwrite the slot (newest wins); False when ``gen`` is stale or the slot is closed."""
        with self.cond:
            return self._accept(image, t, gen)

    def put_wait(self, image: np.ndarray, gen: int, stop: threading.Event) -> bool:
        """Back-pressure: wait until the consumer took the previous frame, then put (``t`` = now at put)."""
        with self.cond:
            while self.frame is not None and not self.closed and gen == self.gen and not stop.is_set():
                self.cond.wait(0.25)
            return self._accept(image, now(), gen)

    def take(self, timeout: float) -> VideoFrame | None:
        with self.cond:
            if self.frame is None and not self.closed and not self.exhausted and timeout > 0:
                self.cond.wait_for(lambda: self.frame is not None or self.closed or self.exhausted, timeout)
            f, self.frame = self.frame, None
            if f is not None:
                self.taken += 1
                self.cond.notify_all()  # wakes a producer waiting in put_wait
            return f

    def new_generation(self) -> int:
        with self.cond:
            self.gen += 1
            self.cond.notify_all()
            return self.gen

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.gen += 1
            self.cond.notify_all()

    def reopen(self) -> None:
        with self.cond:
            self.closed = False
            self.exhausted = False
            self.frame = None

    def fps(self) -> float:
        with self.cond:
            ts = list(self._times)
        if len(ts) < 2 or ts[-1] <= ts[0]:
            return 0.0
        return (len(ts) - 1) / (ts[-1] - ts[0])

    def stats(self) -> dict:
        with self.cond:
            age = None if self.last_put is None else round(now() - self.last_put, 3)
            return {"dropped": self.dropped, "frames": self.published, "delivered": self.taken,
                    "last_frame_age_s": age}


# --------------------------------------------------------------------------------------------------------------
# camera / stream
# --------------------------------------------------------------------------------------------------------------


class _Worker:
    """Bookkeeping of one grab thread (one generation)."""

    __slots__ = ("gen", "thread", "first_frame", "last_frame", "fail", "empty")

    def __init__(self, gen: int):
        self.gen = gen
        self.thread: threading.Thread | None = None
        self.first_frame: float | None = None
        self.last_frame: float | None = None
        self.fail: str | None = None
        self.empty = 0


class CameraSource(VideoSource):
    """A live video input with a watchdog. ``source``: device index, URL, or a path read as a live input.

    ``width``/``height``/``fps`` are requested from devices only (streams and files give what they give).
    ``watchdog_s``: no frame for that long means stalled; ``open_timeout_s`` is added before the first frame of
    each (re)open. ``api_preference``: an OpenCV ``CAP_*`` backend for device indices (e.g. ``cv2.CAP_DSHOW``
    on Windows); default lets OpenCV choose. A file read through this class is treated like a stream: its end
    is a failed read and it is reopened (use :class:`FileVideoSource` to play files).
    """

    kind = "camera"

    def __init__(self, source: int | str, *, width: int = 640, height: int = 480, fps: float = 30.0,
                 mirror: bool = True, watchdog_s: float = 2.0, open_timeout_s: float = 10.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0, api_preference: int | None = None,
                 name: str = "video"):
        super().__init__(name)
        idx = as_device_index(source)
        self.source: int | str = idx if idx is not None else os.fspath(source)
        self.kind = "camera" if idx is not None else ("stream" if is_url(self.source) else "live-file")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.mirror = bool(mirror)
        self.watchdog_s = float(watchdog_s)
        self.open_timeout_s = float(open_timeout_s)
        self.api_preference = api_preference
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._slot = _FrameSlot()
        self._stop_evt = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: _Worker | None = None
        self._abandoned: list[threading.Thread] = []
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: VideoConfig, sources: SourcesConfig, **kw) -> "CameraSource":
        return cls(cfg.source, width=cfg.width, height=cfg.height, fps=cfg.fps, mirror=cfg.mirror,
                   watchdog_s=cfg.watchdog_s, backoff_initial_s=sources.backoff_initial_s,
                   backoff_max_s=sources.backoff_max_s, **kw)

    def describe(self) -> str:
        return f"camera {self.source}" if isinstance(self.source, int) else str(self.source)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_evt.clear()
        self._slot.reopen()
        self._set_status("reconnecting", f"opening {self.describe()}")
        self._thread = threading.Thread(target=self._supervise, name=f"capture-{self.name}-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        deadline = now() + timeout
        self._stop_evt.set()
        self._slot.close()  # stale generation: nothing more gets in; wakes wait_frame
        self._wake.set()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(max(0.0, deadline - now()))
        w = self._worker
        if w is not None and w.thread is not None and w.thread is not threading.current_thread():
            w.thread.join(max(0.0, deadline - now()))
            if w.thread.is_alive():
                self._abandoned.append(w.thread)
        alive = [t for t in self._abandoned if t.is_alive()]
        self._abandoned = alive
        if alive:
            log.warning("%s: %d grab thread(s) still blocked inside VideoCapture.read(); left behind as daemon "
                        "threads, they release their capture when the read returns", self.name, len(alive))
        self._thread = None
        self._set_status("off", "stopped")

    # -- consumer -------------------------------------------------------------------------------------------
    def wait_frame(self, timeout: float) -> VideoFrame | None:
        f = self._slot.take(timeout)
        if f is not None and self.mirror:
            f = VideoFrame(_cv2().flip(f.image, 1), f.t_capture, f.index)
        return f

    def _health_extra(self) -> dict:
        d = self._slot.stats()
        d.update(source=self.describe(), fps=round(self._slot.fps(), 2),
                 abandoned_threads=sum(1 for t in self._abandoned if t.is_alive()))
        return d

    # -- capture --------------------------------------------------------------------------------------------
    def _open_capture(self):
        cv2 = _cv2()
        src = self.source
        if isinstance(src, int):
            cap = cv2.VideoCapture(src) if self.api_preference is None else cv2.VideoCapture(src,
                                                                                              self.api_preference)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                cap.set(cv2.CAP_PROP_FPS, self.fps)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, where the backend supports it
            return cap
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int((self.watchdog_s + 1.0) * 1000)]
        cap = cv2.VideoCapture(src, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            cap = cv2.VideoCapture(src)  # other backends: GStreamer, V4L2 by path, image sequences
        return cap

    def _current(self, gen: int) -> bool:
        return gen == self._slot.gen and not self._stop_evt.is_set()

    def _grab(self, w: _Worker) -> None:
        cv2 = _cv2()
        cap = None
        gen = w.gen
        try:
            cap = self._open_capture()
            if not self._current(gen):
                return
            if not cap.isOpened():
                w.fail = f"could not open {self.describe()}"
                return
            while self._current(gen):
                ok, img = cap.read()
                t = now()
                if not self._current(gen):
                    break
                if not ok:
                    w.fail = f"read from {self.describe()} failed (device lost or stream ended)"
                    break
                img = to_bgr_uint8(img)
                if img is None:
                    w.empty += 1
                    self._stop_evt.wait(0.005)
                    continue
                if self._slot.put(img, t, gen):
                    if w.first_frame is None:
                        w.first_frame = t
                    w.last_frame = t
        except cv2.error as e:
            w.fail = f"OpenCV error on {self.describe()}: {e}"
        finally:
            if cap is not None:
                cap.release()
            self._wake.set()

    def _supervise(self) -> None:
        backoff = Backoff(*self._backoff)
        attempts = 0
        try:
            while not self._stop_evt.is_set():
                if attempts:
                    self._count("reconnects")
                attempts += 1
                w = _Worker(self._slot.new_generation())
                w.thread = threading.Thread(target=self._grab, args=(w,), daemon=True,
                                            name=f"capture-{self.name}-grab-{w.gen}")
                self._worker = w
                t_open = now()
                w.thread.start()
                reason = self._watch(w, t_open, backoff)
                if reason is None:
                    break
                self._slot.new_generation()  # abandon: whatever it still grabs is ignored
                if w.thread.is_alive():
                    self._abandoned.append(w.thread)
                self._abandoned = [t for t in self._abandoned if t.is_alive()]
                self._count("errors")
                delay = backoff.next()
                self._set_status("reconnecting", f"{reason}; reopening in {delay:.1f}s")
                if self._stop_evt.wait(delay):
                    break
        except Exception as e:  # noqa: BLE001 - a bug must not kill the process silently
            log.exception("%s: video supervisor crashed", self.name)
            self._set_status("failed", f"internal error: {type(e).__name__}: {e}")

    def _watch(self, w: _Worker, t_open: float, backoff: Backoff) -> str | None:
        while not self._stop_evt.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            if self._stop_evt.is_set():
                return None
            if w.fail:
                return w.fail
            t = now()
            last = w.last_frame
            if last is None:
                if t - t_open > self.open_timeout_s + self.watchdog_s:
                    return f"no frame from {self.describe()} within {t - t_open:.1f}s of opening"
                if not w.thread.is_alive():
                    return f"capture of {self.describe()} ended"
                continue
            if self.status != "ok":
                self._set_status("ok", self.describe())
                backoff.reset()
            if t - last > self.watchdog_s:
                return f"watchdog: no frame from {self.describe()} for {t - last:.1f}s (read stalled)"
            if not w.thread.is_alive():
                return f"capture of {self.describe()} ended"
        return None


# --------------------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------------------


def _check_file(path: str | os.PathLike) -> str:
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"video file not found: {p}")
    if os.path.isdir(p):
        raise CaptureError(f"video source {p} is a directory, not a file")
    return p


def video_info(path: str | os.PathLike) -> dict:
    """``{"fps", "frames", "width", "height"}`` of a video file (fps defaults to 30 when unknown).
    Raises ``FileNotFoundError`` / :class:`CaptureError` when it cannot be opened or has no decodable frame."""
    p = _check_file(path)
    cv2 = _cv2()
    cap = cv2.VideoCapture(p)
    try:
        if not cap.isOpened():
            raise CaptureError(f"OpenCV cannot open video file {p} (unsupported container or codec?)")
        ok, img = cap.read()
        if not ok or to_bgr_uint8(img) is None:
            raise CaptureError(f"video file {p} has no decodable frame")
        return {"fps": _sane_fps(cap.get(cv2.CAP_PROP_FPS)), "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                "width": int(img.shape[1]), "height": int(img.shape[0])}
    finally:
        cap.release()


def iter_video_file(path: str | os.PathLike) -> Iterator[VideoFrame]:
    """Deterministic offline video: every decodable frame as BGR uint8, ``index`` = decode position,
    ``t_capture = index / fps`` (``CAP_PROP_FPS``, 30 when unknown). ``FileNotFoundError`` now,
    :class:`CaptureError` on the first ``next()`` if OpenCV cannot open it."""
    return _iter_video(_check_file(path))


def _iter_video(p: str) -> Iterator[VideoFrame]:
    cv2 = _cv2()
    cap = cv2.VideoCapture(p)
    try:
        if not cap.isOpened():
            raise CaptureError(f"OpenCV cannot open video file {p} (unsupported container or codec?)")
        fps = _sane_fps(cap.get(cv2.CAP_PROP_FPS))
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            img = to_bgr_uint8(img)
            if img is not None:
                yield VideoFrame(img, i / fps, i)
            i += 1
    finally:
        cap.release()


class FileVideoSource(VideoSource):
    """A video file played like a camera, reusing :func:`iter_video_file`.

    ``speed="realtime"``: frame i is published at ``start + i/fps`` (``t_capture`` = the real time it was
    published); a slow consumer gets the newest frame and the others count as ``dropped``.
    ``speed="max"``: the reader waits until the consumer took the previous frame (nothing is dropped);
    ``t_capture`` = real time of publication. ``loop``: start again at the end (indices and the schedule
    continue); otherwise ``ended`` becomes True once the last frame was taken and the status is ``"ended"``.
    ``index`` counts published frames of this source (= the file's frame index on the first pass).
    """

    kind = "video-file"

    def __init__(self, path: str | os.PathLike, *, speed: str = "realtime", loop: bool = False,
                 name: str = "video"):
        super().__init__(name)
        if speed not in ("realtime", "max"):
            raise ValueError(f"speed must be 'realtime' or 'max', got {speed!r}")
        self.path = _check_file(path)
        self.speed = speed
        self.loop = bool(loop)
        self.info = video_info(self.path)  # fail early
        self.fps = self.info["fps"]
        self._slot = _FrameSlot()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._loops = 0

    @classmethod
    def from_config(cls, cfg: VideoConfig, sources: SourcesConfig, **kw) -> "FileVideoSource":
        return cls(str(cfg.source), speed=sources.speed, loop=sources.loop, **kw)

    @property
    def ended(self) -> bool:
        with self._slot.cond:
            return self._slot.exhausted and self._slot.frame is None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_evt.clear()
        self._slot.reopen()
        self._set_status("ok", f"{os.path.basename(self.path)} ({self.speed}{', loop' if self.loop else ''})")
        self._thread = threading.Thread(target=self._play, name=f"capture-{self.name}-file", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop_evt.set()
        self._slot.close()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout)
            if th.is_alive():
                log.warning("%s: video file reader did not stop within %.1fs", self.name, timeout)
        self._thread = None
        self._set_status("off", "stopped")

    def wait_frame(self, timeout: float) -> VideoFrame | None:
        f = self._slot.take(timeout)
        self._check_ended()
        return f

    def _check_ended(self) -> None:
        if self.ended and self.status == "ok":
            self._set_status("ended", f"end of {os.path.basename(self.path)}")

    def _health_extra(self) -> dict:
        d = self._slot.stats()
        d.update(path=self.path, speed=self.speed, loop=self.loop, loops=self._loops,
                 fps=round(self._slot.fps(), 2))
        if self.ended and self.status == "ok":  # the last frame was just taken
            d["status"] = "ended"
        return d

    def _play(self) -> None:
        gen = self._slot.new_generation()
        put: Callable[[np.ndarray], bool]
        if self.speed == "max":
            def put(img: np.ndarray) -> bool:
                return self._slot.put_wait(img, gen, self._stop_evt)
        else:
            def put(img: np.ndarray) -> bool:
                return self._slot.put(img, now(), gen)
        t0 = now()
        offset = 0.0
        try:
            while not self._stop_evt.is_set():
                n = 0
                last_t = 0.0
                for fr in iter_video_file(self.path):
                    if self.speed == "realtime" and wait_until(t0 + offset + fr.t_capture, self._stop_evt):
                        break
                    if not put(fr.image) and self._stop_evt.is_set():
                        break
                    n += 1
                    last_t = fr.t_capture
                if self._stop_evt.is_set():
                    break
                if n == 0:
                    self._count("errors")
                    self._set_status("failed", f"no decodable frame in {self.path}")
                    break
                if not self.loop:
                    with self._slot.cond:
                        self._slot.exhausted = True
                        self._slot.cond.notify_all()
                    self._check_ended()
                    break
                self._loops += 1
                offset += last_t + 1.0 / self.fps
        except (CaptureError, OSError) as e:
            self._count("errors")
            self._set_status("failed", f"reading {self.path}: {e}")
        except Exception as e:  # noqa: BLE001 - cv2.error and bugs: report, never kill the process
            log.exception("%s: video file reader crashed", self.name)
            self._count("errors")
            self._set_status("failed", f"reading {self.path}: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------------------------------------------
# discovery and factory
# --------------------------------------------------------------------------------------------------------------


def list_cameras(max_index: int = 10, budget_s: float = 4.0) -> list[dict]:
    """Probe camera indices 0..max_index-1 with OpenCV (best effort, bounded by ``budget_s``).

    On Linux only indices with a ``/dev/videoN`` node are tried; elsewhere probing stops after two misses in a row
    once past index 0. Returns ``[{index, width, height, fps, backend}]``.
    """
    cv2 = _cv2()
    linux = sys.platform.startswith("linux")
    idxs = [i for i in range(max_index) if not linux or os.path.exists(f"/dev/video{i}")]
    found: list[dict] = []
    lg = getattr(getattr(cv2, "utils", None), "logging", None)
    old = None
    if lg is not None:
        old = lg.getLogLevel()
        lg.setLogLevel(lg.LOG_LEVEL_SILENT)
    t0 = now()
    misses = 0
    try:
        for i in idxs:
            if now() - t0 > budget_s:
                break
            cap = cv2.VideoCapture(i)
            try:
                if cap.isOpened():
                    ok, img = cap.read()
                    ok = bool(ok) and img is not None
                    found.append({
                        "index": i,
                        "width": int(img.shape[1]) if ok else int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                        "height": int(img.shape[0]) if ok else int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                        "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                        "backend": cap.getBackendName(),
                        "readable": bool(ok),
                    })
                    misses = 0
                else:
                    misses += 1
                    if not linux and i > 0 and misses >= 2:
                        break
            except cv2.error as e:
                log.debug("probing camera %d: %s", i, e)
            finally:
                cap.release()
    finally:
        if lg is not None and old is not None:
            lg.setLogLevel(old)
    return found


def _is_live_path(p: str) -> bool:
    """Device nodes and FIFOs are live inputs, not files to pace."""
    try:
        m = os.stat(p).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(m) or stat.S_ISFIFO(m) or stat.S_ISSOCK(m)


def open_video(cfg: VideoConfig, sources: SourcesConfig) -> VideoSource:
    """``cfg.source``: a device index, a stream URL (``rtsp://``, ``http://`` ...), a device node / FIFO path
    (all -> :class:`CameraSource`), or a video file (-> :class:`FileVideoSource`, paced by ``sources.speed``).
    Raises ``FileNotFoundError`` / :class:`CaptureError` with a message for the user; not started."""
    src = cfg.source
    if as_device_index(src) is not None or is_url(src) or (isinstance(src, str) and _is_live_path(src)):
        return CameraSource.from_config(cfg, sources)
    return FileVideoSource.from_config(cfg, sources)


# --------------------------------------------------------------------------------------------------------------
# which frames go to the face landmarker
# --------------------------------------------------------------------------------------------------------------


class FrameGate:
    """Decides, per camera frame, whether the face landmarker runs on it (the costliest thing the bridge does: about
    7-9 ms of CPU per face per frame).

    * ``face_fps``: the landmarker runs at most this often; frames arriving sooner are ``"drop"`` (a 60 fps camera
      with ``face_fps`` 30 gives every other frame; 0 = every frame). A frame counts as due from 3/4 of the period
      on, so camera jitter does not halve the rate.
    * ``unchanged_level``: a frame whose every 16 x 16-pixel block differs from the last frame the landmarker saw by
      less than this many grey levels (mean over the block, 0-255) is ``"same"``: the caller reuses that frame's
      observation instead of running the landmarker again. A still scene (an empty room, a visitor who holds
      still) then costs almost nothing; sensor noise averages out over a block (it moves a block's mean by well
      under one level), any real motion (lips, eyes, a head turn) moves some block by more. 0 = off.
    * ``refresh_s``: even an unchanged scene is looked at again after this long (tracking and presence stay
      fresh).
    * ``idle_fps``: while no face has been seen for ``idle_after_s``, the landmarker runs at most this often (an
      empty room still costs the face detector on every frame: about 4 ms of CPU each). A visitor who walks in
      is found within 1/idle_fps s, and from then on every frame is analysed again. 0 = off.
      The caller reports what the landmarker found through :meth:`seen`.
    * ``steady_fps``: while every face is steady -- between the landmarker's last two runs no blendshape moved by
      ``steady_change`` or more and no face box by 5 % of its height or more -- the landmarker runs at most this
      often, and the frames in between are ``"hold"``: the caller reuses the last observation, re-stamped, so the
      face window and the states still get every frame. The first run that sees a change brings back the full
      rate (``face_fps``) at once, so at most one frame in a row is held at 15 per second from a 30 fps camera.
      0 = off. Needs the faces through :meth:`seen`.
    * ``faces_per_s``: with k > 1 faces in the last run, the landmarker runs at most every k / ``faces_per_s``
      seconds (a quarter of one face's period early counts, for camera jitter) and the frames in between are
      ``"hold"``: a group costs about what one face at ``faces_per_s`` costs (2 faces at 30 -> 15 runs a second,
      4 -> 7.5), and the states still get every frame. One face is not affected. 0 = off.
    """

    BLOCK = 16
    STEADY_MOVE = 0.05  # a face box that moved by this fraction of its height between two runs is not steady

    def __init__(self, face_fps: float = 0.0, unchanged_level: float = 0.0, refresh_s: float = 1.0,
                 idle_fps: float = 0.0, idle_after_s: float = 2.0, steady_fps: float = 0.0,
                 steady_change: float = 0.05, faces_per_s: float = 0.0):
        self.faces_per_s = float(faces_per_s)
        self.n_faces = 0  # faces the landmarker found on its last run
        self.min_interval = 0.75 / face_fps if face_fps and face_fps > 0 else 0.0
        self.idle_interval = max(self.min_interval, 0.75 / idle_fps) if idle_fps and idle_fps > 0 else 0.0
        self.idle_after_s = float(idle_after_s)
        self._t_face = -math.inf  # last time the landmarker found a face
        self._t_first = None
        self.idle = False
        self.level = float(unchanged_level)
        self.refresh_s = float(refresh_s)
        self._ref: np.ndarray | None = None  # block means of the last frame the landmarker saw
        self._t_ref = -math.inf
        self._t_last = -math.inf
        self.steady_interval = 0.75 / steady_fps if steady_fps and steady_fps > 0 else 0.0
        self.steady_change = float(steady_change)
        self.steady = False  # every face of the last two runs barely changed
        self._faces: list[tuple[np.ndarray, np.ndarray]] | None = None  # (blendshapes, box) of the last run
        self._t_run = -math.inf
        self.counts = {"run": 0, "same": 0, "hold": 0, "drop": 0}

    @property
    def group_interval(self) -> float:
        """The shortest time between two landmarker runs for the faces now in view (0: no limit)."""
        if self.faces_per_s <= 0 or self.n_faces <= 1:
            return 0.0
        return (self.n_faces - 0.25) / self.faces_per_s

    @classmethod
    def from_config(cls, cfg: VideoConfig) -> "FrameGate":
        return cls(cfg.face_fps, cfg.skip_unchanged, idle_fps=cfg.idle_face_fps, steady_fps=cfg.steady_face_fps,
                   steady_change=cfg.steady_max_change, faces_per_s=cfg.faces_per_s)

    def reset(self) -> None:
        self.n_faces = 0
        self._ref, self._t_ref, self._t_last = None, -math.inf, -math.inf
        self._t_face, self._t_first = -math.inf, None
        self.steady, self._faces, self._t_run = False, None, -math.inf

    @property
    def interval(self) -> float:
        """The shortest time between two analysed frames now (0 = every frame)."""
        return self.idle_interval / 0.75 if self.idle else self.min_interval / 0.75

    def seen(self, present: bool, t: float, faces=None) -> None:
        """What the landmarker found on the frame of time ``t`` (drives the idle rate); ``faces``: its
        observations (``FaceObservation`` with blendshapes and landmarks; drives the steady rate)."""
        if present:
            self._t_face = t
        self.n_faces = sum(1 for f in (faces or ()) if f.present) if faces is not None else int(present)
        if not self.steady_interval:
            return
        now = [(f.blendshapes, _box(f.landmarks)) for f in (faces or ()) if f.present and f.landmarks is not None]
        prev, self._faces = self._faces, now
        self.steady = bool(now) and prev is not None and len(prev) == len(now) and all(
            _steady(a, b, self.steady_change, self.STEADY_MOVE) for a, b in zip(prev, now))

    def _blocks(self, image: np.ndarray) -> np.ndarray:
        """Mean of every 16 x 16 block per channel, in float: OpenCV's area resize to a quarter (fast, rounded
        to integers), then the mean of 4 x 4 of those (the rounding averages out instead of adding a level)."""
        h, w = image.shape[:2]
        q = self.BLOCK // 4
        h4, w4 = (h // self.BLOCK) * q, (w // self.BLOCK) * q
        if h4 == 0 or w4 == 0:
            return image.astype(np.float32)
        small = _cv2().resize(image[: h4 * 4, : w4 * 4], (w4, h4), interpolation=_cv2().INTER_AREA)
        small = small.reshape(h4 // q, q, w4 // q, q, -1).astype(np.float32)
        return small.mean(axis=(1, 3))

    def decide(self, image: np.ndarray, t: float) -> str:
        """``"run"`` (give it to the landmarker), ``"same"`` (reuse the last observation) or ``"drop"``."""
        if self._t_first is None:
            self._t_first = t
        interval = self.min_interval
        self.idle = bool(self.idle_interval) and t - max(self._t_face, self._t_first) > self.idle_after_s
        if self.idle:
            interval = self.idle_interval  # nobody seen for a while
        if t - self._t_last < interval:
            self.counts["drop"] += 1
            return "drop"
        self._t_last = t
        if t - self._t_run < self.group_interval:  # a group: its faces share the landmarker's rate
            self.counts["hold"] += 1
            return "hold"
        if self.steady and t - self._t_run < self.steady_interval:
            self.counts["hold"] += 1
            return "hold"
        if self.level > 0:
            blocks = self._blocks(image)
            ref = self._ref
            if (ref is not None and ref.shape == blocks.shape and t - self._t_ref < self.refresh_s
                    and float(np.abs(blocks - ref).max()) < self.level):
                self.counts["same"] += 1
                return "same"
            self._ref, self._t_ref = blocks, t
        self.counts["run"] += 1
        self._t_run = t
        return "run"


def _box(landmarks: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 of normalised landmarks."""
    xy = np.asarray(landmarks)[:, :2]
    return np.concatenate([xy.min(0), xy.max(0)])


def _steady(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], change: float, move: float) -> bool:
    """One face between two landmarker runs: no blendshape moved by ``change`` or more, and the box not by
    ``move`` of its height or more."""
    (bs0, box0), (bs1, box1) = a, b
    if len(bs0) != len(bs1) or float(np.abs(bs1 - bs0).max(initial=0.0)) >= change:
        return False
    return float(np.abs(box1 - box0).max()) < move * max(float(box1[3] - box1[1]), 1e-6)
