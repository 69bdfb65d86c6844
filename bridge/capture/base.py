"""Common parts of the capture layer: the :class:`Source` contract, health bookkeeping and reconnect backoff.

Capture threads only capture: they timestamp what they grab on :func:`bridge.clock.now` and hand it off through
a bounded buffer (a ring for audio, a single newest-frame slot for video). Feature work happens in the consumer.

Health statuses (``Source.health()["status"]``):

``off``           not started, or stopped
``ok``            data is flowing
``reconnecting``  the device/stream failed or stalled; the source is reopening it with exponential backoff
``failed``        an unexpected internal error stopped the source (a bug; see the log)
``ended``         a non-looping file source delivered everything (the pipeline treats it like a lost device)
"""

from __future__ import annotations

import abc
import logging
import math
import os
import re
import threading
from typing import Any

from bridge.clock import now

log = logging.getLogger(__name__)

STATUSES = ("ok", "reconnecting", "failed", "ended", "off")

FEATURE_SAMPLE_RATE = 16000
AUDIO_FILE_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".m4a", ".aac")
_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class CaptureError(RuntimeError):
    """A capture source cannot be opened as configured (bad device, undecodable file, missing library)."""


class DeviceNotFoundError(CaptureError, LookupError):
    """No device matches the configured index or name; the message lists the available devices."""


def is_url(source: Any) -> bool:
    """``rtsp://``, ``http://``, ``udp://`` ... (anything with a scheme)."""
    return isinstance(source, str) and bool(_URL_RE.match(source.strip()))


def as_device_index(source: Any) -> int | None:
    """An int, or a string of digits (as a CLI flag gives it), is a device index; anything else is not."""
    if isinstance(source, bool):
        return None
    if isinstance(source, int):
        return source
    if isinstance(source, str) and source.strip().isdigit():
        return int(source.strip())
    return None


def looks_like_path(source: Any, extensions: tuple[str, ...] = ()) -> bool:
    """True for an existing path, or a string that ends with one of ``extensions`` or contains a path separator."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    s = os.fspath(source)
    if os.path.exists(s):
        return True
    low = s.lower()
    return low.endswith(extensions) or os.sep in s or (os.altsep is not None and os.altsep in s)


class Backoff:
    """Exponential reconnect delays: ``initial``, ``2*initial`` ... capped at ``maximum``; ``reset()`` after success."""

    def __init__(self, initial: float, maximum: float, factor: float = 2.0):
        self.initial = max(1e-3, float(initial))
        self.maximum = max(self.initial, float(maximum))
        self.factor = max(1.0, float(factor))
        self._next = self.initial

    def next(self) -> float:
        d = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return d

    def reset(self) -> None:
        self._next = self.initial


class Source(abc.ABC):
    """A capture source. ``start()`` returns at once; ``stop()`` is idempotent and releases the device or file.

    Subclasses call :meth:`_set_status` / :meth:`_count` from any thread; :meth:`health` is safe from any thread.
    Also a context manager (``with src: ...`` starts and stops it).
    """

    name: str = "source"
    kind: str = "source"

    def __init__(self, name: str):
        self.name = name
        self._hlock = threading.Lock()
        self._status = "off"
        self._detail = "not started"
        self._counters: dict[str, int] = {"reconnects": 0, "errors": 0, "dropped": 0}
        self._status_since = now()

    # -- contract -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self, timeout: float = 2.0) -> None: ...

    @property
    def ended(self) -> bool:
        """True once a non-looping file source delivered everything. Live sources never end."""
        return False

    def health(self) -> dict:
        with self._hlock:
            d: dict[str, Any] = {
                "status": self._status,
                "detail": self._detail,
                **self._counters,
                "kind": self.kind,
                "status_age_s": round(now() - self._status_since, 3),
            }
        d.update(self._health_extra())
        return d

    # -- helpers for subclasses -----------------------------------------------------------------------------
    def _health_extra(self) -> dict:
        return {}

    @property
    def status(self) -> str:
        return self._status

    def _set_status(self, status: str, detail: str = "") -> None:
        assert status in STATUSES, status
        with self._hlock:
            changed = status != self._status
            detail_changed = detail != self._detail
            self._status = status
            self._detail = detail
            if changed:
                self._status_since = now()
        if changed:
            level = logging.WARNING if status in ("reconnecting", "failed") else logging.INFO
            log.log(level, "%s source %s: %s", self.name, status, detail)
        elif detail_changed:  # e.g. each further reconnect attempt
            log.info("%s source still %s: %s", self.name, status, detail)

    def _count(self, key: str, n: int = 1) -> None:
        with self._hlock:
            self._counters[key] = self._counters.get(key, 0) + n

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self._status}>"


class AudioSource(Source):
    """Audio as mono float32 blocks at :data:`FEATURE_SAMPLE_RATE` (16 kHz) on the process clock."""

    sample_rate: int = FEATURE_SAMPLE_RATE

    @abc.abstractmethod
    def read(self, timeout: float) -> list:
        """Drain what is buffered (waiting up to ``timeout`` s for the first data); ``[]`` on timeout.

        Each :class:`bridge.frames.AudioBlock` is mono float32 at 16 kHz; ``t_capture`` is the capture time of its
        first sample on :mod:`bridge.clock`; successive blocks have increasing ``t_capture``.
        """


class VideoSource(Source):
    """Video as BGR uint8 frames; only the newest not-yet-returned frame is ever handed out."""

    @abc.abstractmethod
    def wait_frame(self, timeout: float):
        """The newest frame not yet returned (older ones are dropped, never queued), or ``None`` on timeout."""


def wait_until(deadline: float, event: threading.Event) -> bool:
    """Sleep until ``deadline`` (process clock) unless ``event`` is set first; returns ``event.is_set()``."""
    while True:
        rem = deadline - now()
        if rem <= 0 or event.is_set():
            return event.is_set()
        event.wait(min(rem, 0.5))


def ring_blocks(ring_seconds: float, block_ms: float) -> int:
    """How many blocks of ``block_ms`` fit in ``ring_seconds`` (at least 2)."""
    return max(2, int(math.ceil(ring_seconds * 1000.0 / block_ms)))
