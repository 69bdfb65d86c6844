"""``run --preview``: an OpenCV window with the camera image, the face landmarks, the label, its confidence and a
small valence/arousal plot — to check framing and lighting while setting up, without TouchDesigner.

The pipeline only hands over references (``Bridge.on_frame`` for the newest image + face observation,
``Bridge.on_state`` for the newest state); drawing and showing happen elsewhere, always from the newest frame and
state (anything older is dropped), so a slow window never slows the bridge. The window lives on the main thread
(macOS requires that; the bridge's own loop moves to a helper thread meanwhile). Closing the window or pressing
Esc/q closes only the preview; the bridge keeps running.

On a machine without a display (Linux without a reachable X server at ``$DISPLAY`` — XWayland provides one on
Wayland desktops — or an OpenCV built without GUI support) the preview is silently off (logged at DEBUG).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from bridge.labels import VA

log = logging.getLogger(__name__)

WINDOW = "emotion bridge preview"
BLANK_SIZE = (640, 480)  # canvas when there is no camera (simulate, voice only)
MAX_FPS = 30.0


def _x_reachable(display: str, timeout: float = 0.5) -> bool:
    """Whether the X server named by ``$DISPLAY`` answers. OpenCV's Qt aborts the whole process (not an
    exception) when it cannot connect, e.g. with a stale DISPLAY over ssh, so this is checked first."""
    import socket

    host, sep, rest = display.rpartition(":")
    if not sep:
        return False
    num = rest.split(".")[0]
    if not num.isdigit():
        return False
    try:
        if host in ("", "unix") or host.startswith("/"):
            path = display.split(":")[0] if host.startswith("/") else f"/tmp/.X11-unix/X{num}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                try:
                    s.connect(path)
                except OSError:
                    s.connect("\0" + f"/tmp/.X11-unix/X{num}")  # Linux abstract socket
            return True
        with socket.create_connection((host, 6000 + int(num)), timeout=timeout):
            return True
    except OSError:
        return False


def display_available(env: dict | None = None, platform: str | None = None, probe: bool = True) -> tuple[bool, str]:
    """Whether a window can be opened here; the reason when not. Windows and macOS always have a display; on
    Linux/BSD an X server (``$DISPLAY``, also provided by XWayland) must answer (``probe=False`` skips that)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform.startswith(("linux", "freebsd", "openbsd", "netbsd", "sunos")):
        display = env.get("DISPLAY")
        if not display:
            return False, "no display ($DISPLAY is unset)"
        if probe and not _x_reachable(display):
            return False, f"no X server answers at DISPLAY={display}"
    return True, ""


def _text(img, s: str, org, scale: float, color=(255, 255, 255), thick: int = 1) -> None:
    import cv2

    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _shade(img, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.55) -> None:
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(img.shape[1], x1), min(img.shape[0], y1)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha)).astype(np.uint8)


def render_overlay(image_bgr: np.ndarray, state=None, landmarks: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``image_bgr`` (H x W x 3 uint8; the input is not modified) with the face landmarks (normalised
    x, y in [0, 1], as MediaPipe gives them), the label and confidence, face/voice flags and a valence/arousal
    plot drawn on it. ``state`` is an :class:`~bridge.frames.AffectState` or None (nothing received yet)."""
    import cv2

    img = np.asarray(image_bgr)
    if img.ndim == 2:
        img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    out = np.ascontiguousarray(img[..., :3], dtype=np.uint8).copy()
    h, w = out.shape[:2]
    k = max(0.4, min(h, w) / 480.0)  # scale for text and marks

    if landmarks is not None:
        lm = np.asarray(landmarks, np.float32)
        if lm.ndim == 2 and lm.shape[1] >= 2 and len(lm):
            pts = np.round(lm[:, :2] * (w, h)).astype(np.int32)
            ok = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
            r = max(1, int(round(1.2 * k)))
            for x, y in pts[ok]:
                cv2.circle(out, (int(x), int(y)), r, (80, 255, 120), -1, cv2.LINE_AA)

    # label panel, top left
    pw, ph = int(250 * k), int(92 * k)
    _shade(out, 0, 0, pw, ph)
    x, y = int(10 * k), int(34 * k)
    if state is None:
        _text(out, "waiting for states...", (x, y), 0.6 * k)
    else:
        conf = float(np.clip(state.confidence, 0, 1))
        _text(out, str(state.label), (x, y), 0.95 * k, thick=max(1, int(2 * k)))
        bx, by, bw, bh = x, int(48 * k), int(150 * k), int(10 * k)
        cv2.rectangle(out, (bx, by), (bx + bw, by + bh), (90, 90, 90), -1)
        cv2.rectangle(out, (bx, by), (bx + int(bw * conf), by + bh), (0, 200, 255), -1)
        _text(out, f"{conf:.2f}", (bx + bw + int(8 * k), by + bh), 0.45 * k)
        fy = int(80 * k)
        for i, (name, on) in enumerate((("face", state.face_present), ("voice", state.voice_active))):
            cx = x + i * int(95 * k)
            cv2.circle(out, (cx + int(6 * k), fy - int(5 * k)), max(2, int(6 * k)),
                       (80, 220, 80) if on else (70, 70, 70), -1, cv2.LINE_AA)
            _text(out, name, (cx + int(16 * k), fy), 0.45 * k)

    # valence/arousal plot, bottom right
    size = int(min(h, w) * 0.3)
    if size >= 40:
        m = int(8 * k)
        x0, y0 = w - size - m, h - size - m
        _shade(out, x0, y0, x0 + size, y0 + size)
        c = (x0 + size // 2, y0 + size // 2)
        r = size // 2 - max(4, int(6 * k))

        def at(v: float, a: float) -> tuple[int, int]:
            return int(c[0] + np.clip(v, -1, 1) * r), int(c[1] - np.clip(a, -1, 1) * r)

        cv2.circle(out, c, r, (120, 120, 120), 1, cv2.LINE_AA)
        cv2.line(out, (c[0] - r, c[1]), (c[0] + r, c[1]), (90, 90, 90), 1)
        cv2.line(out, (c[0], c[1] - r), (c[0], c[1] + r), (90, 90, 90), 1)
        for name, (v, a) in VA.items():
            p = at(v, a)
            cv2.circle(out, p, max(2, int(2 * k)), (170, 170, 170), -1, cv2.LINE_AA)
            if size >= 120:
                _text(out, name[:3], (p[0] + 3, p[1] - 3), 0.32 * k, (200, 200, 200))
        if state is not None:
            v, a = float(state.valence), float(state.arousal)
            col = (80, 220, 80) if v >= 0 else (80, 80, 240)
            cv2.circle(out, at(v, a), max(4, int(6 * k)), col, -1, cv2.LINE_AA)
            cv2.circle(out, at(v, a), max(4, int(6 * k)), (255, 255, 255), 1, cv2.LINE_AA)
            _text(out, f"V{v:+.2f} A{a:+.2f}", (x0 + 4, y0 + int(14 * k)), 0.4 * k)
    return out


class Preview:
    """Holds the newest frame and state (references only) and shows them; see :func:`attach_preview`."""

    def __init__(self, window: str = WINDOW):
        self.window = window
        self._lock = threading.Lock()
        self._frame: tuple[np.ndarray, np.ndarray | None] | None = None
        self._state = None
        self._version = 0
        self._shown = -1
        self.open = True

    # called from the pipeline's threads: store and return
    def on_frame(self, image: np.ndarray, obs) -> None:
        lm = getattr(obs, "landmarks", None) if getattr(obs, "present", False) else None
        with self._lock:
            self._frame = (image, lm)
            self._version += 1

    def on_state(self, state) -> None:
        with self._lock:
            self._state = state
            self._version += 1

    def render(self) -> np.ndarray | None:
        """The newest frame + state drawn, or None when nothing changed since the last call."""
        with self._lock:
            if self._version == self._shown:
                return None
            self._shown = self._version
            frame, state = self._frame, self._state
        if frame is None:
            image, lm = np.full((BLANK_SIZE[1], BLANK_SIZE[0], 3), 32, np.uint8), None
        else:
            image, lm = frame
        return render_overlay(image, state, lm)

    def close(self) -> None:
        import cv2

        if self.open:
            self.open = False
            try:
                cv2.destroyWindow(self.window)
                cv2.waitKey(1)
            except cv2.error:
                pass

    def run_alongside(self, work: Callable[[], None]) -> None:
        """Run ``work`` (the bridge's loop) in a helper thread and the window on this (main) thread until it
        returns. Signals still reach the main thread: the wait below returns every few milliseconds."""
        import cv2

        errors: list[BaseException] = []

        def _work() -> None:
            try:
                work()
            except BaseException as e:  # handed to the main thread below
                errors.append(e)

        t = threading.Thread(target=_work, name="bridge-main", daemon=True)
        t.start()
        last = 0.0
        shown = False
        while t.is_alive():
            if not self.open:
                t.join(0.2)
                continue
            try:
                now = time.monotonic()
                img = self.render() if now - last >= 1.0 / MAX_FPS else None
                if img is not None:
                    last, shown = now, True
                    cv2.imshow(self.window, img)
                key = cv2.waitKey(15) & 0xFF
                closed = shown and cv2.getWindowProperty(self.window, cv2.WND_PROP_VISIBLE) < 1
                if key in (27, ord("q")) or closed:
                    log.info("preview closed (the bridge keeps running)")
                    self.close()
            except cv2.error as e:
                log.debug("preview off: %s", e)
                self.close()
        self.close()
        if errors:
            raise errors[0]


def attach_preview(bridge) -> Preview | None:
    """Open the window and hook it to ``bridge`` (call on the main thread). None, silently, without a display."""
    ok, why = display_available()
    if not ok:
        log.debug("preview off: %s", why)
        return None
    try:
        import cv2

        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except Exception as e:  # cv2.error: OpenCV without GUI support (e.g. opencv-python-headless)
        log.debug("preview off: cannot open a window: %s", e)
        return None
    p = Preview()
    prev = bridge.on_state

    def on_state(state) -> None:
        p.on_state(state)
        if prev is not None:
            prev(state)

    bridge.on_state = on_state
    bridge.on_frame = p.on_frame
    return p
