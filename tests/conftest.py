"""Shared fixtures with real media and a real (virtual) sound device.

Fixtures (all session-scoped unless noted; files live under pytest's session temp dir):

``virtual_mic``      a private PulseAudio server with a null sink ``vsink``; recording from the sounddevice/
                     PortAudio device ``virtual_mic.device`` (``"pulse"``) hears whatever ``virtual_mic.play(path)``
                     plays. ``kill()`` / ``start()`` / ``restart()`` take the sound server away and bring it back
                     (a real device fault), ``unload_sink()`` / ``load_sink()`` remove/re-add the sink (the
                     recorded device vanishes), ``ensure()`` puts both back after a test that broke them. The server
                     has its own runtime dir and socket (``PULSE_SERVER``), so it never touches a desktop's
                     PulseAudio nor other test sessions. While the fixture is active ``PULSE_SERVER`` & co. are
                     set in ``os.environ`` and PortAudio is re-initialised to see the server; pass
                     ``virtual_mic.env`` to subprocesses. The first stream opened on a fresh server takes ~2 s
                     to deliver its first block. Skipped only when the ``pulseaudio`` binary is absent.
``speech_wav``       espeak-ng speaking :data:`SPEECH_TEXT`, 22.05 kHz mono PCM16, with :data:`SPEECH_PAD_S` s of
                     digital silence before and after.
``speech_mp3``       the same, encoded to MP3 by ffmpeg (libmp3lame).
``make_face_video``  factory ``(name, seconds=3.0, fps=30, size=(640, 480), codec="mp4v", black=None) -> Path``:
                     ``skimage.data.astronaut()`` (a real face photo) drifting and zooming slightly every frame;
                     ``black=(i0, i1)`` makes frames ``i0 <= i < i1`` black; ``codec`` ``"mp4v"`` -> .mp4,
                     ``"MJPG"`` -> .avi (streamable through a pipe).
``face_video``       3 s, 30 fps, 640x480 MP4 (mp4v) of the face.
``face_video_gap``   same, with black frames :data:`FACE_GAP` (face lost for 1 s, then back).
``mjpeg_server``     factory ``(video_path, fps=30, stall_after=None) -> MjpegServer``: an HTTP server on 127.0.0.1
                     streaming the video's frames as ``multipart/x-mixed-replace`` MJPEG (what IP cameras do);
                     with ``stall_after=n`` the *first* connection sends n frames and then goes silent with the
                     socket open (a hung camera); later connections stream normally. Function-scoped.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# The face model cannot be downloaded on the CI machines: use the shared copy beside the checkout when present
# (CI sets BRIDGE_FACE_MODEL itself; a user with internet gets it downloaded into the cache instead).
_SHARED_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_landmarker.task"
if not os.environ.get("BRIDGE_FACE_MODEL") and _SHARED_MODEL.is_file():
    os.environ["BRIDGE_FACE_MODEL"] = str(_SHARED_MODEL)

SPEECH_TEXT = "Hello there. I am really happy to see you today, this is wonderful news."
SPEECH_PAD_S = 1.0
FACE_GAP = (30, 60)  # black frame indices [i0, i1) in face_video_gap


# ----------------------------------------------------------------------------------------------------------------
# virtual microphone (PulseAudio null sink, recorded through its monitor)
# ----------------------------------------------------------------------------------------------------------------


class VirtualMic:
    """A private PulseAudio server whose null sink's monitor is the default recording source."""

    sink = "vsink"
    source = "vsink.monitor"
    device = "pulse"  # the ALSA pulse plugin device as PortAudio/sounddevice lists it

    def __init__(self, root: Path):
        self.root = root
        self.runtime = root / "run"
        self.state = root / "state"
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self.socket = self.runtime / "native"
        self.log = root / "pulse.log"
        self.client_conf = root / "client.conf"
        self.client_conf.write_text("autospawn = no\n")
        self.env_vars = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_RUNTIME_PATH": str(self.runtime),
            "PULSE_STATE_PATH": str(self.state),
            "PULSE_CLIENTCONFIG": str(self.client_conf),
            "PULSE_SOURCE": self.source,
            "PULSE_SINK": self.sink,
        }

    @property
    def env(self) -> dict:
        """Environment for subprocesses talking to this server."""
        return {**os.environ, **self.env_vars}

    def running(self) -> bool:
        r = subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=5)
        return r.returncode == 0

    def start(self, timeout: float = 10.0) -> None:
        cmd = ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n", "--use-pid-file=yes",
               "--disallow-exit=no", f"--log-target=file:{self.log}",
               f"--load=module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
               f"--load=module-null-sink sink_name={self.sink} rate=48000"]
        if os.geteuid() == 0:
            cmd.insert(1, "--system=no")  # root: a per-"user" daemon is still what we want (it warns, and runs)
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while not self.running():
            if time.monotonic() > deadline:
                log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"pulseaudio did not start (rc {r.returncode}): {r.stderr}\n{log}")
            time.sleep(0.05)

    def kill(self, timeout: float = 5.0) -> None:
        """Stop the sound server (streams recording from it die)."""
        subprocess.run(["pulseaudio", "-k"], env=self.env, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.socket.exists() or self.running():
            if time.monotonic() > deadline:
                raise RuntimeError("pulseaudio did not exit")
            time.sleep(0.05)

    def restart(self) -> None:
        self.kill()
        self.start()

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, check=True,
                              timeout=10).stdout

    def unload_sink(self) -> None:
        self.pactl("unload-module", "module-null-sink")

    def load_sink(self) -> None:
        self.pactl("load-module", "module-null-sink", f"sink_name={self.sink}", "rate=48000")

    def ensure(self) -> None:
        """Server up and sink present (call in ``finally`` after injecting a fault)."""
        if not self.running():
            self.start()
        if self.sink not in self.pactl("list", "short", "sinks"):
            self.load_sink()

    def play(self, path: str | os.PathLike, wait: bool = True) -> subprocess.Popen:
        """Play a sound file into the virtual microphone (``paplay -d vsink``); ``wait=False`` returns at once."""
        p = subprocess.Popen(["paplay", "-d", self.sink, os.fspath(path)], env=self.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait:
            p.wait(timeout=60)
        return p


@pytest.fixture(scope="session")
def virtual_mic():
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (apt install pulseaudio libasound2-plugins): no virtual microphone")
    root = Path(tempfile.mkdtemp(prefix="eb-pulse-"))  # short path: unix socket names are limited to 108 bytes
    vm = VirtualMic(root)
    mp = pytest.MonkeyPatch()
    for k, v in vm.env_vars.items():
        mp.setenv(k, v)
    try:
        vm.start()
        from bridge.capture.audio import input_devices, refresh_devices

        refresh_devices()  # PortAudio lists devices once; make it see the server that now exists
        names = [d["name"] for d in input_devices()]
        if vm.device not in names:
            pytest.fail(f"PortAudio does not list the ALSA '{vm.device}' device (inputs: {names}); "
                        "install libasound2-plugins")
        yield vm
    finally:
        try:
            vm.kill()
        except (RuntimeError, OSError, subprocess.SubprocessError):
            pass
        mp.undo()
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# speech
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: cannot synthesise speech")
    import soundfile as sf

    d = tmp_path_factory.mktemp("speech")
    raw = d / "raw.wav"
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(raw), SPEECH_TEXT], check=True, capture_output=True,
                   timeout=60)
    y, sr = sf.read(raw, dtype="float32", always_2d=False)
    if y.ndim > 1:
        y = y.mean(axis=1)
    pad = np.zeros(int(round(SPEECH_PAD_S * sr)), np.float32)
    out = d / "speech.wav"
    sf.write(out, np.concatenate([pad, y, pad]), sr, subtype="PCM_16")
    return out


@pytest.fixture(scope="session")
def speech_mp3(speech_wav, tmp_path_factory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: cannot encode mp3")
    out = tmp_path_factory.mktemp("speech_mp3") / "speech.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(speech_wav), "-codec:a",
                    "libmp3lame", "-b:a", "64k", str(out)], check=True, capture_output=True, timeout=60)
    return out


# ----------------------------------------------------------------------------------------------------------------
# face videos
# ----------------------------------------------------------------------------------------------------------------


def write_face_video(path: Path, seconds: float = 3.0, fps: float = 30.0, size: tuple[int, int] = (640, 480),
                     codec: str = "mp4v", black: tuple[int, int] | None = None) -> Path:
    """Write ``seconds`` of the astronaut's face, moving slightly, with cv2.VideoWriter. Returns ``path``."""
    import cv2
    import skimage.data

    w, h = size
    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)  # 512x512, face in the upper middle
    base = min(w, h) / face.shape[0]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {codec} to {path}")
    n = int(round(seconds * fps))
    try:
        for i in range(n):
            if black is not None and black[0] <= i < black[1]:
                writer.write(np.zeros((h, w, 3), np.uint8))
                continue
            ph = 2 * np.pi * i / max(n, 1)
            s = base * (1.0 + 0.04 * np.sin(ph))
            tx = (w - face.shape[1] * s) / 2 + 12 * np.sin(2 * ph)
            ty = (h - face.shape[0] * s) / 2 + 8 * np.cos(ph)
            m = np.float32([[s, 0, tx], [0, s, ty]])
            writer.write(cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    finally:
        writer.release()
    return path


@pytest.fixture(scope="session")
def make_face_video(tmp_path_factory):
    d = tmp_path_factory.mktemp("video")

    def make(name: str, seconds: float = 3.0, fps: float = 30.0, size: tuple[int, int] = (640, 480),
             codec: str = "mp4v", black: tuple[int, int] | None = None) -> Path:
        ext = ".avi" if codec.upper() in ("MJPG", "XVID", "FFV1") else ".mp4"
        return write_face_video(d / f"{name}{ext}", seconds, fps, size, codec, black)

    return make


@pytest.fixture(scope="session")
def face_video(make_face_video) -> Path:
    return make_face_video("face")


@pytest.fixture(scope="session")
def face_video_gap(make_face_video) -> Path:
    return make_face_video("face_gap", black=FACE_GAP)


# ----------------------------------------------------------------------------------------------------------------
# MJPEG-over-HTTP camera
# ----------------------------------------------------------------------------------------------------------------


class MjpegServer:
    """Serves a video's frames as an MJPEG stream at :attr:`url`; see the ``mjpeg_server`` fixture."""

    def __init__(self, video: str | os.PathLike, fps: float = 30.0, stall_after: int | None = None):
        import cv2

        cap = cv2.VideoCapture(os.fspath(video))
        self.jpegs: list[bytes] = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            self.jpegs.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        cap.release()
        if not self.jpegs:
            raise RuntimeError(f"no frames in {video}")
        self.fps = fps
        self.stall_after = stall_after
        self.connections = 0
        self.stalled = threading.Event()  # set while the first connection is hanging
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                self.connection.settimeout(10)  # a client that stops reading cannot wedge the server
                server.connections += 1
                first = server.connections == 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                i = 0
                try:
                    while not server._stop.is_set():
                        if first and server.stall_after is not None and i >= server.stall_after:
                            server.stalled.set()
                            server._stop.wait()  # hang with the socket open
                            return
                        j = server.jpegs[i % len(server.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(j) + j + b"\r\n")
                        i += 1
                        server._stop.wait(1.0 / server.fps)
                except OSError:  # client went away (broken pipe, reset, timeout)
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="mjpeg-server")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def mjpeg_server():
    servers: list[MjpegServer] = []

    def make(video, fps: float = 30.0, stall_after: int | None = None) -> MjpegServer:
        s = MjpegServer(video, fps, stall_after)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()
