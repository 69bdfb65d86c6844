"""Audio capture: microphone (sounddevice/PortAudio) and audio files, as mono float32 blocks at 16 kHz.

* :class:`MicrophoneSource` -- a PortAudio ``InputStream`` whose callback only copies each block (first channel,
  or the channel mean) into a bounded ring together with its capture time. Resampling to 16 kHz (when the device
  cannot do 16 kHz) and timestamp smoothing happen in :meth:`MicrophoneSource.read`, on the consumer's thread.
  A supervisor thread reopens the stream with exponential backoff when PortAudio fails, the stream stops on its
  own (device unplugged, sound server died), callbacks stop arriving, or the callback keeps flagging errors.
* :class:`FileAudioSource` -- wav/flac/ogg/mp3 decoded with soundfile (librosa as a fallback), paced in real time
  or delivered as fast as the consumer reads. No thread: :meth:`FileAudioSource.read` works out what is due.
* :func:`iter_audio_file` -- the deterministic offline path: blocks with ``t_capture = sample_index / 16000``.
* :func:`open_audio` -- picks one from ``AudioConfig.source``; :func:`list_devices` -- inputs and cameras.

Capture timestamps: for a block the callback computes ``now() - (currentTime - inputBufferAdcTime)``; during the
first 0.5 s of a stream, and when the host API reports 0 or an implausible delay (outside one block .. stream
latency + one block; the ALSA ``pulse`` plugin reports ~0.5 s at start-up and ~0 at 48 kHz), it falls back to
``now() - len/sr``. The consumer then puts the blocks on a contiguous sample timeline whose anchor is the
running minimum of those raw times (callbacks can run late, never early; see :meth:`MicrophoneSource._consume`),
so ``t_capture`` is smooth, strictly increasing, never in the future, immune to scheduling jitter, and follows
a drifting device clock.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import warnings
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from bridge.capture.base import (AUDIO_FILE_EXTENSIONS, FEATURE_SAMPLE_RATE, AudioSource, Backoff, CaptureError,
                                 DeviceNotFoundError, as_device_index, looks_like_path, ring_blocks)
from bridge.clock import now
from bridge.frames import AudioBlock

if TYPE_CHECKING:
    from bridge.config import AudioConfig, SourcesConfig

log = logging.getLogger(__name__)

SR = FEATURE_SAMPLE_RATE
_PA_LOCK = threading.RLock()  # PortAudio device queries / open / re-initialisation
_OPEN_STREAMS = 0  # streams of ours that are open (PortAudio is only re-initialised when 0)


def _sd():
    """Import sounddevice lazily (it loads the PortAudio library at import)."""
    try:
        import sounddevice
    except (ImportError, OSError) as e:
        raise CaptureError(f"sounddevice/PortAudio is not usable ({e}); install the PortAudio library "
                           "(Debian/Ubuntu: apt install libportaudio2) or use an audio file as audio.source") from e
    return sounddevice


def _block_samples(block_ms: float, sr: int = SR) -> int:
    return max(1, int(round(sr * block_ms / 1000.0)))


# --------------------------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------------------------


def refresh_devices() -> bool:
    """Re-initialise PortAudio so newly plugged devices (or a restarted sound server) show up.

    PortAudio enumerates devices once, at initialisation. This is only done while none of our streams is open;
    returns whether it happened.
    """
    sd = _sd()
    with _PA_LOCK:
        if _OPEN_STREAMS:
            return False
        try:
            sd._terminate()
            sd._initialize()
        except (AttributeError, sd.PortAudioError) as e:
            log.debug("PortAudio re-initialisation failed: %s", e)
            return False
    return True


def input_devices() -> list[dict]:
    """Every PortAudio device with inputs: index, name, hostapi, default_samplerate, channels, default."""
    sd = _sd()
    with _PA_LOCK:
        devs = sd.query_devices()
        apis = sd.query_hostapis()
        try:
            default_in = int(sd.default.device[0])
        except (TypeError, ValueError, IndexError):
            default_in = -1
    out = []
    for d in devs:
        if d["max_input_channels"] > 0:
            out.append({
                "index": int(d["index"]),
                "name": d["name"],
                "hostapi": apis[d["hostapi"]]["name"] if 0 <= d["hostapi"] < len(apis) else str(d["hostapi"]),
                "default_samplerate": float(d["default_samplerate"]),
                "channels": int(d["max_input_channels"]),
                "default": int(d["index"]) == default_in,
            })
    return out


def _describe_inputs(inputs: list[dict]) -> str:
    if not inputs:
        return "  (no input devices found)"
    return "\n".join(f"  [{d['index']}] {d['name']} ({d['hostapi']}, {d['default_samplerate']:.0f} Hz"
                     f"{', default' if d['default'] else ''})" for d in inputs)


def resolve_input_device(device: int | str | None) -> int | None:
    """Map ``audio.source`` to a PortAudio device index (``None`` = the host's default input).

    ``None``/``"default"`` is the default input; an int (or digit string) is an index; any other string is a
    case-insensitive name substring (an exact name wins over a substring; then the first match).
    Raises :class:`DeviceNotFoundError` listing the available inputs when nothing matches.
    """
    inputs = input_devices()
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "default")):
        if not inputs:
            raise DeviceNotFoundError("no audio input device found. Available input devices:\n"
                                      + _describe_inputs(inputs))
        return None
    idx = as_device_index(device)
    if idx is not None:
        for d in inputs:
            if d["index"] == idx:
                return idx
        raise DeviceNotFoundError(f"audio input device index {idx} does not exist or has no inputs. "
                                  f"Available input devices:\n{_describe_inputs(inputs)}")
    want = str(device).strip().lower()
    exact = [d for d in inputs if d["name"].strip().lower() == want]
    subs = [d for d in inputs if want in d["name"].lower()]
    match = exact or subs
    if not match:
        raise DeviceNotFoundError(f"no audio input device matches {device!r}. Available input devices:\n"
                                  f"{_describe_inputs(inputs)}\nUse an index, a part of a name, 'default', or "
                                  "a path to an audio file.")
    if len(match) > 1:
        log.info("audio source %r matches %d devices; using [%d] %s", device, len(match), match[0]["index"],
                 match[0]["name"])
    return match[0]["index"]


def list_devices() -> dict:
    """Inputs and cameras for ``emotion-bridge devices``. Best effort: problems are reported, never raised.

    ``{"inputs": [{index, name, hostapi, default_samplerate, channels, default}], "cameras": [{index, width,
    height, fps, backend, readable}], "errors": [str], "error": str | None}`` (``error`` joins ``errors``).
    """
    out: dict[str, Any] = {"inputs": [], "cameras": [], "errors": []}
    try:
        out["inputs"] = input_devices()
    except Exception as e:  # noqa: BLE001 - CaptureError, OSError, sounddevice.PortAudioError: report them all
        out["errors"].append(f"audio: {e}")
    try:
        from bridge.capture.video import list_cameras

        out["cameras"] = list_cameras()
    except Exception as e:  # noqa: BLE001 - cv2.error, CaptureError, OSError: report them all
        out["errors"].append(f"video: {e}")
    out["error"] = "; ".join(out["errors"]) or None
    return out


# --------------------------------------------------------------------------------------------------------------
# microphone
# --------------------------------------------------------------------------------------------------------------


class _StreamState:
    """Written by the PortAudio callback of one opened stream, read by the supervisor."""

    __slots__ = ("gen", "sr", "channels", "max_delay", "settle_blocks", "last_cb", "callbacks", "overflows",
                 "underflows", "bad_run", "exc", "seq")

    def __init__(self, gen: int, sr: int, channels: int):
        self.gen = gen
        self.sr = sr
        self.channels = channels
        self.max_delay = 0.5
        self.settle_blocks = 0
        self.last_cb: float | None = None
        self.callbacks = 0
        self.overflows = 0
        self.underflows = 0
        self.bad_run = 0  # consecutive callbacks flagged with an error other than overflow
        self.exc: str | None = None
        self.seq = 0


class MicrophoneSource(AudioSource):
    """Live audio from a PortAudio input device, delivered as 16 kHz mono float32 :class:`AudioBlock`.

    ``device``: ``None``/``"default"``, an index, or a case-insensitive name substring (resolved now, raising
    :class:`DeviceNotFoundError` with the list of inputs, and again by name on every reopen, so a replugged USB
    microphone with a new index is found). ``samplerate``: force the device rate (default: 16 kHz when the
    device supports it, else its default rate, resampled with a streaming soxr resampler in :meth:`read`).
    The ring holds ``ring_seconds`` of blocks; when the consumer falls behind the oldest block is dropped and
    counted in ``health()["dropped"]``. ``stall_s``: no callback for that long (``startup_grace_s`` right after
    opening) means the device is gone, and it is reopened.
    """

    kind = "microphone"
    _JUMP_S = 0.5  # a raw time this much later than the timeline re-anchors it (samples lost unreported)
    _CREEP = 0.005  # the anchor may move later by 5 ms per second of audio (device clock slower than ours)
    _BAD_RUN_S = 1.0  # seconds of consecutive error-flagged callbacks that trigger a reopen

    def __init__(self, device: int | str | None = None, *, block_ms: float = 20.0, ring_seconds: float = 4.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0, stall_s: float = 2.0,
                 startup_grace_s: float = 5.0, samplerate: int | None = None, name: str = "audio"):
        super().__init__(name)
        if isinstance(device, str) and device.strip().lower() in ("", "default"):
            device = None
        self.device = device
        self.block_ms = float(block_ms)
        self.stall_s = float(stall_s)
        self.startup_grace_s = max(float(startup_grace_s), self.stall_s)
        self.samplerate_override = int(samplerate) if samplerate else None
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._device_index = resolve_input_device(device)  # raises DeviceNotFoundError early
        self._ring: collections.deque = collections.deque(maxlen=ring_blocks(ring_seconds, self.block_ms))
        self._data_evt = threading.Event()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._gen = 0
        self._state: _StreamState | None = None
        self._ring_drops = 0  # written by the callback only
        self._device_desc = ""
        self._opened_sr = 0
        # consumer-side state (read() thread only)
        self._c_gen = -1
        self._c_seq = -1
        self._c_anchor = 0.0  # estimated capture time of the segment's first sample
        self._c_pos = 0  # samples of the segment before the current block
        self._c_n = 0  # samples of the previous block
        self._c_last_out = -math.inf
        self._rs = None
        self._n_in = 0
        self._n_out = 0
        self._stats_lock = threading.Lock()
        self._totals = {"callbacks": 0, "overflows": 0, "underflows": 0}

    @classmethod
    def from_config(cls, cfg: AudioConfig, sources: SourcesConfig, **kw) -> "MicrophoneSource":
        return cls(cfg.source, block_ms=cfg.block_ms, ring_seconds=cfg.ring_seconds,
                   backoff_initial_s=sources.backoff_initial_s, backoff_max_s=sources.backoff_max_s, **kw)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_evt.clear()
        self._set_status("reconnecting", f"opening audio input {self._describe_device()}")
        self._thread = threading.Thread(target=self._supervise, name=f"capture-{self.name}-mic", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop_evt.set()
        self._data_evt.set()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout)
            if th.is_alive():
                log.warning("%s: microphone supervisor did not stop within %.1fs (stream close hangs?)", self.name,
                            timeout)
        self._thread = None
        self._set_status("off", "stopped")

    # -- consumer -------------------------------------------------------------------------------------------
    def read(self, timeout: float) -> list[AudioBlock]:
        ring = self._ring
        if not ring and timeout > 0 and not self._stop_evt.is_set():
            self._data_evt.clear()
            if not ring:  # re-check after clear: the callback sets the event after appending
                self._data_evt.wait(timeout)
        out: list[AudioBlock] = []
        while True:
            try:
                item = ring.popleft()
            except IndexError:
                break
            self._consume(item, out)
        return out

    def _consume(self, item: tuple, out: list[AudioBlock]) -> None:
        """Timestamp one ring block on a contiguous sample timeline, resample it, append the result to ``out``.

        Every block gives ``est = t_raw - samples_before/sr``, an estimate of the segment's start time. Late
        callbacks (scheduling jitter, bursts after the process was starved) only ever make ``est`` *later*, so
        the anchor is the running minimum of ``est``, allowed to creep later by ``_CREEP`` to follow a device
        clock that runs slow. A new stream, a ring overflow (sequence gap) or a PortAudio input overflow starts
        a new segment; so does ``est`` jumping more than ``_JUMP_S`` past the anchor.
        """
        gen, seq, sr, t_raw, overflow, x = item
        n = len(x)
        if gen == self._c_gen and seq == self._c_seq + 1 and not overflow:
            self._c_pos += self._c_n
            est = t_raw - self._c_pos / sr
            relaxed = self._c_anchor + self._CREEP * self._c_n / sr
            self._c_anchor = est if est - relaxed > self._JUMP_S else min(relaxed, est)
        else:
            if self._c_gen >= 0:
                log.debug("%s: audio discontinuity (stream %d seq %d -> stream %d seq %d%s)", self.name,
                          self._c_gen, self._c_seq, gen, seq, ", input overflow" if overflow else "")
            self._c_anchor, self._c_pos = t_raw, 0
            self._rs = None
            self._n_in = self._n_out = 0
            if sr != SR:
                import soxr

                self._rs = soxr.ResampleStream(sr, SR, 1, dtype="float32")
        self._c_gen, self._c_seq, self._c_n = gen, seq, n
        t = self._c_anchor + self._c_pos / sr
        if self._rs is None:
            y, t_out = x, t
        else:
            # output sample k of this segment corresponds to input time k/SR: shift by what is still "inside"
            t_out = t - (self._n_in / sr - self._n_out / SR)
            y = self._rs.resample_chunk(x)
            self._n_in += n
            self._n_out += len(y)
        if len(y) == 0:
            return
        if t_out <= self._c_last_out:
            t_out = self._c_last_out + 1e-6
        self._c_last_out = t_out
        out.append(AudioBlock(np.ascontiguousarray(y, dtype=np.float32), SR, float(t_out)))

    # -- health ---------------------------------------------------------------------------------------------
    def _health_extra(self) -> dict:
        st = self._state
        with self._stats_lock:
            tot = dict(self._totals)
        if st is not None:
            tot["callbacks"] += st.callbacks
            tot["overflows"] += st.overflows
            tot["underflows"] += st.underflows
        return {
            **tot,
            "dropped": self._ring_drops,
            "device": self._device_desc or self._describe_device(),
            "device_samplerate": self._opened_sr,
            "buffered_s": round(sum(len(i[5]) / i[2] for i in list(self._ring)), 3),
            "last_data_age_s": None if st is None or st.last_cb is None else round(now() - st.last_cb, 3),
        }

    def _describe_device(self) -> str:
        return "default input" if self.device is None else repr(self.device)

    # -- supervisor -----------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        global _OPEN_STREAMS
        backoff = Backoff(*self._backoff)
        attempts = 0
        refresh = False
        try:
            while not self._stop_evt.is_set():
                if attempts:
                    self._count("reconnects")
                attempts += 1
                if refresh:
                    refresh_devices()
                sd = _sd()
                try:
                    stream, st = self._open_stream(sd)
                except (sd.PortAudioError, CaptureError, OSError, ValueError) as e:
                    self._count("errors")
                    delay = backoff.next()
                    self._set_status("reconnecting", f"cannot open audio input {self._describe_device()}: {e}; "
                                                     f"retrying in {delay:.1f}s")
                    refresh = True
                    self._stop_evt.wait(delay)
                    continue
                refresh = False
                with _PA_LOCK:
                    _OPEN_STREAMS += 1
                try:
                    reason = self._monitor(stream, st, backoff)
                finally:
                    self._close(stream, st)
                    with _PA_LOCK:
                        _OPEN_STREAMS -= 1
                if reason is None:
                    break
                self._count("errors")
                delay = backoff.next()
                refresh = True
                self._set_status("reconnecting", f"{reason}; reopening in {delay:.1f}s")
                self._stop_evt.wait(delay)
        except Exception as e:  # noqa: BLE001 - a bug must not kill the process silently
            log.exception("%s: microphone supervisor crashed", self.name)
            self._set_status("failed", f"internal error: {type(e).__name__}: {e}")

    def _choose_rate(self, sd, idx: int | None, info: dict) -> int:
        if self.samplerate_override:
            return self.samplerate_override
        try:
            sd.check_input_settings(device=idx, samplerate=SR, channels=1, dtype="float32")
            return SR
        except (sd.PortAudioError, ValueError):
            rate = int(round(float(info["default_samplerate"]))) or 48000
            log.debug("%s: %s does not take %d Hz; opening at %d Hz and resampling", self.name, info["name"], SR,
                      rate)
            return rate

    def _open_stream(self, sd):
        with _PA_LOCK:
            if self.device is None:
                idx = None
            elif as_device_index(self.device) is not None:
                idx = self._device_index
            else:  # by name, again: a replugged device may have a new index
                idx = resolve_input_device(self.device)
            info = sd.query_devices(idx, "input") if idx is None else sd.query_devices(idx)
            sr = self._choose_rate(sd, idx, info)
            channels = 1
            try:
                sd.check_input_settings(device=idx, samplerate=sr, channels=1, dtype="float32")
            except (sd.PortAudioError, ValueError):
                channels = max(1, min(2, int(info["max_input_channels"])))
            self._gen += 1
            st = _StreamState(self._gen, sr, channels)
            blocksize = _block_samples(self.block_ms, sr)
            stream = sd.InputStream(device=idx, samplerate=sr, channels=channels, dtype="float32",
                                    blocksize=blocksize, callback=self._make_callback(st))
            try:
                stream.start()
            except sd.PortAudioError:
                stream.close(ignore_errors=True)
                raise
        st.max_delay = float(stream.latency) + blocksize / sr + 0.02
        st.settle_blocks = int(math.ceil(0.5 * sr / blocksize))
        self._state = st
        self._opened_sr = sr
        self._device_desc = f"[{stream.device}] {info['name']}"
        log.info("%s: opened audio input %s at %d Hz, %d ch, block %d, latency %.0f ms", self.name,
                 self._device_desc, sr, channels, blocksize, 1000 * float(stream.latency))
        return stream, st

    def _make_callback(self, st: _StreamState):
        ring = self._ring
        evt = self._data_evt
        gen, sr, channels = st.gen, st.sr, st.channels

        def callback(indata, frames, time_info, status) -> None:
            t_cb = now()
            try:
                x = indata[:, 0].copy() if channels == 1 else indata.mean(axis=1, dtype=np.float32)
                dur = frames / sr
                delay = time_info.currentTime - time_info.inputBufferAdcTime
                # 0, NaN, garbage (some host APIs report nonsense while the stream settles): fall back to the
                # upper bound "captured no later than one block before now"
                if st.callbacks < st.settle_blocks or not (dur - 0.002 <= delay <= st.max_delay):
                    delay = dur
                if len(ring) >= ring.maxlen:
                    self._ring_drops += 1
                ring.append((gen, st.seq, sr, t_cb - delay, bool(status and status.input_overflow), x))
                st.seq += 1
                st.callbacks += 1
                st.last_cb = t_cb
                if status:
                    if status.input_overflow:
                        st.overflows += 1
                    if status.input_underflow:
                        st.underflows += 1
                        st.bad_run += 1
                else:
                    st.bad_run = 0
                evt.set()
            except Exception as e:  # noqa: BLE001 - never raise into PortAudio
                st.exc = f"{type(e).__name__}: {e}"

        return callback

    def _monitor(self, stream, st: _StreamState, backoff: Backoff) -> str | None:
        """Watch one open stream; return why it must be reopened, or None when stopping."""
        t_open = now()
        bad_limit = max(3, int(self._BAD_RUN_S * 1000.0 / self.block_ms))
        while not self._stop_evt.wait(0.05):
            if st.exc:
                return f"audio callback error: {st.exc}"
            try:
                active = stream.active
            except Exception as e:  # noqa: BLE001 - PortAudioError from a dead stream
                return f"audio stream error: {e}"
            if not active:
                return "audio stream stopped unexpectedly (device unplugged or sound server gone?)"
            last = st.last_cb
            t = now()
            if last is None:
                if t - t_open > self.startup_grace_s:
                    return f"no audio callbacks within {self.startup_grace_s:.1f}s of opening"
                continue
            if self.status != "ok":
                self._set_status("ok", f"{self._device_desc} @ {st.sr} Hz")
                backoff.reset()
            if t - last > self.stall_s:
                return f"no audio callbacks for {t - last:.1f}s"
            if st.bad_run >= bad_limit:
                return f"audio callback flagged input errors for {st.bad_run} blocks in a row"
        return None

    def _close(self, stream, st: _StreamState) -> None:
        try:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        except Exception as e:  # noqa: BLE001 - closing a dead stream may raise anything PortAudio-ish
            log.debug("%s: closing audio stream: %s", self.name, e)
        with self._stats_lock:
            self._totals["callbacks"] += st.callbacks
            self._totals["overflows"] += st.overflows
            self._totals["underflows"] += st.underflows
            if self._state is st:
                self._state = None


# --------------------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------------------


def _check_file(path: str | os.PathLike, what: str = "audio") -> str:
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{what} file not found: {p}")
    if os.path.isdir(p):
        raise CaptureError(f"{what} source {p} is a directory, not a file")
    return p


def decode_audio_chunks(path: str | os.PathLike, chunk_s: float = 1.0) -> Iterator[np.ndarray]:
    """Decode a file into successive mono float32 chunks at 16 kHz (streaming; memory stays bounded).

    soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3 with libsndfile >= 1.1) first, ``librosa.load`` as a
    fallback for anything else audioread/ffmpeg can read. Channels are averaged; resampling is soxr (HQ).
    """
    p = _check_file(path)
    import soundfile as sf

    try:
        f = sf.SoundFile(p)
    except (RuntimeError, TypeError, ValueError) as e:  # sf.LibsndfileError is a RuntimeError
        log.info("soundfile cannot read %s (%s); falling back to librosa", p, e)
        y = _librosa_load(p)
        step = max(1, int(SR * chunk_s))
        for i in range(0, len(y), step):
            yield y[i:i + step]
        return
    with f:
        sr = int(f.samplerate)
        rs = None
        if sr != SR:
            import soxr

            rs = soxr.ResampleStream(sr, SR, 1, dtype="float32")
        for block in f.blocks(blocksize=max(1, int(sr * chunk_s)), dtype="float32", always_2d=True):
            mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
            mono = np.ascontiguousarray(mono, dtype=np.float32)
            y = rs.resample_chunk(mono) if rs is not None else mono
            if len(y):
                yield y
        if rs is not None:
            tail = rs.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield tail


def _librosa_load(p: str) -> np.ndarray:
    try:
        import librosa

        with warnings.catch_warnings():  # "PySoundFile failed. Trying audioread", audioread deprecations
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            y, _ = librosa.load(p, sr=SR, mono=True)
    except Exception as e:  # noqa: BLE001 - librosa/audioread raise many unrelated types
        raise CaptureError(f"cannot decode audio file {p}: {type(e).__name__}: {e}") from e
    return np.ascontiguousarray(y, dtype=np.float32)


def iter_audio_file(path: str | os.PathLike, block_ms: float = 20.0) -> Iterator[AudioBlock]:
    """Deterministic offline audio: 16 kHz mono float32 blocks of ``block_ms`` (the last may be shorter),
    ``t_capture = first_sample_index / 16000`` (a virtual clock starting at 0). Raises ``FileNotFoundError`` now
    and :class:`CaptureError` on the first ``next()`` when the file cannot be decoded."""
    p = _check_file(path)
    bs = _block_samples(block_ms)
    return _iter_blocks(p, bs)


def _iter_blocks(p: str, bs: int) -> Iterator[AudioBlock]:
    pending = np.zeros(0, np.float32)
    idx = 0
    for chunk in decode_audio_chunks(p):
        pending = np.concatenate([pending, chunk]) if len(pending) else chunk
        n_full = len(pending) // bs
        for k in range(n_full):
            yield AudioBlock(pending[k * bs:(k + 1) * bs].copy(), SR, idx / SR)
            idx += bs
        pending = pending[n_full * bs:]
    if len(pending):
        yield AudioBlock(pending.copy(), SR, idx / SR)


class FileAudioSource(AudioSource):
    """An audio file played like a microphone.

    ``speed="realtime"``: block k (starting at sample position ``pos``) becomes readable once its last sample is
    "captured", at ``t0 + (pos + len)/16000``, and gets ``t_capture = t0 + pos/16000`` (real time on
    :mod:`bridge.clock`). A consumer that falls behind by more than ``ring_seconds`` loses the oldest blocks
    (counted in ``dropped``), exactly like the microphone ring.
    ``speed="max"``: every :meth:`read` returns up to ``max_read_s`` of audio immediately; the first block's
    ``t_capture`` is ``max(now() - duration_returned, end of the previous block)`` and the rest follow
    contiguously, so times are real, strictly increasing and never overlap.
    ``loop``: start again at the end (the timeline continues); otherwise ``ended`` becomes True once the last
    block was returned and ``health()["status"]`` is ``"ended"``. No thread: decoding happens in :meth:`read`.
    """

    kind = "audio-file"

    def __init__(self, path: str | os.PathLike, *, block_ms: float = 20.0, ring_seconds: float = 4.0,
                 speed: str = "realtime", loop: bool = False, max_read_s: float = 0.5, name: str = "audio"):
        super().__init__(name)
        if speed not in ("realtime", "max"):
            raise ValueError(f"speed must be 'realtime' or 'max', got {speed!r}")
        self.path = _check_file(path)
        self.block_ms = float(block_ms)
        self.speed = speed
        self.loop = bool(loop)
        self._bs = _block_samples(self.block_ms)
        self._ring_cap = ring_blocks(ring_seconds, self.block_ms)
        self._max_read = max(1, int(round(max_read_s * 1000.0 / self.block_ms)))
        self._lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._it: Iterator[AudioBlock] | None = None
        self._nextb: AudioBlock | None = None
        self._exhausted = False
        self._started = False
        self._t0 = 0.0
        self._pos = 0  # samples delivered or dropped since start (continues across loops)
        self._prev_end = -math.inf
        self._loops = 0
        self._delivered = 0
        # fail early on an undecodable file
        it = iter_audio_file(self.path, self.block_ms)
        try:
            self._nextb = next(it)
        except StopIteration:
            self._nextb = None
        self._it = it
        if self._nextb is None:
            raise CaptureError(f"audio file {self.path} contains no samples")

    @classmethod
    def from_config(cls, cfg: AudioConfig, sources: SourcesConfig, **kw) -> "FileAudioSource":
        return cls(str(cfg.source), block_ms=cfg.block_ms, ring_seconds=cfg.ring_seconds, speed=sources.speed,
                   loop=sources.loop, **kw)

    @property
    def ended(self) -> bool:
        return self._exhausted

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            if self._it is None:  # started again after stop(): from the beginning
                self._it = iter_audio_file(self.path, self.block_ms)
                self._nextb, self._exhausted, self._pos, self._loops = None, False, 0, 0
            self._started = True
            self._stop_evt.clear()
            self._t0 = now()
        self._set_status("ok", f"{os.path.basename(self.path)} ({self.speed}{', loop' if self.loop else ''})")

    def stop(self, timeout: float = 2.0) -> None:
        self._stop_evt.set()
        with self._lock:
            self._started = False
            it, self._it = self._it, None
            self._nextb = None
            if it is not None and hasattr(it, "close"):
                it.close()  # closes the decoder's file
        self._set_status("off", "stopped")

    def _pull(self) -> AudioBlock | None:
        """The next block (one-block lookahead), refilling from the decoder and looping; None at the end."""
        if self._nextb is not None:
            return self._nextb
        if self._exhausted or self._it is None:
            return None
        try:
            b = next(self._it, None)
            if b is None and self.loop:
                self._loops += 1
                self._it = iter_audio_file(self.path, self.block_ms)
                b = next(self._it, None)
        except (CaptureError, RuntimeError, OSError, ValueError) as e:
            self._count("errors")
            self._exhausted = True
            self._set_status("failed", f"decoding {self.path}: {e}")
            return None
        if b is None:
            self._exhausted = True
            self._set_status("ended", f"end of {os.path.basename(self.path)}")
        self._nextb = b
        return b

    def _take(self) -> AudioBlock:
        b = self._nextb
        assert b is not None
        self._nextb = None
        return b

    def read(self, timeout: float) -> list[AudioBlock]:
        if not self._started:
            if timeout > 0:
                self._stop_evt.wait(timeout)
            return []
        if self.speed == "max":
            with self._lock:
                return self._read_max()
        deadline = now() + max(0.0, timeout)
        while True:
            with self._lock:
                if not self._started:
                    return []
                b = self._pull()
                if b is None:
                    return []
                due_at = self._t0 + (self._pos + len(b.samples)) / SR
                t = now()
                if t >= due_at:
                    return self._read_due(t)
            if t >= deadline or self._stop_evt.wait(min(due_at, deadline) - t):
                return []

    def _read_due(self, t: float) -> list[AudioBlock]:
        due: collections.deque = collections.deque(maxlen=self._ring_cap)  # the ring a microphone would have
        n = 0
        while True:
            b = self._pull()
            if b is None or self._t0 + (self._pos + len(b.samples)) / SR > t:
                break
            self._take()
            due.append((self._pos, b.samples))
            self._pos += len(b.samples)
            n += 1
        if n > len(due):
            self._count("dropped", n - len(due))
        self._delivered += len(due)
        return [AudioBlock(x, SR, self._t0 + pos / SR) for pos, x in due]

    def _read_max(self) -> list[AudioBlock]:
        xs: list[np.ndarray] = []
        while len(xs) < self._max_read:
            b = self._pull()
            if b is None:
                break
            xs.append(self._take().samples)
        if not xs:
            return []
        total = sum(len(x) for x in xs) / SR
        t = max(now() - total, self._prev_end)
        out = []
        for x in xs:
            out.append(AudioBlock(x, SR, t))
            t += len(x) / SR
            self._pos += len(x)
        self._prev_end = t
        self._delivered += len(out)
        return out

    def _health_extra(self) -> dict:
        return {"path": self.path, "speed": self.speed, "loop": self.loop, "loops": self._loops,
                "position_s": round(self._pos / SR, 3), "blocks": self._delivered}


# --------------------------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------------------------


def is_audio_file_source(source: Any) -> bool:
    return as_device_index(source) is None and looks_like_path(source, AUDIO_FILE_EXTENSIONS)


def open_audio(cfg: AudioConfig, sources: SourcesConfig) -> AudioSource:
    """``cfg.source``: ``"default"``, a device index, a device-name substring, or a path to an audio file
    (wav/flac/mp3/ogg...). Raises ``FileNotFoundError`` / :class:`DeviceNotFoundError` / :class:`CaptureError`
    with a message meant for the user. The source is not started."""
    src = cfg.source
    if is_audio_file_source(src):
        return FileAudioSource.from_config(cfg, sources)
    return MicrophoneSource.from_config(cfg, sources)
