"""Performance benchmark of the emotion bridge: ``emotion-bridge bench [--quick] [--out F] [--only NAME,...]``
or ``python benchmarks/bench.py [--quick] ...``.

Sections (``--only`` takes these names):

``wire``       Capture to wire. The FULL bridge (:func:`bridge.live.build_bridge`, as ``emotion-bridge run``
               builds it) runs in a child process on a 30 fps face video (:func:`bridge.demo.make_face_video`) and a
               speech file (:func:`bridge.demo.make_speech`) as separate file sources, paced at real time, looping.
               A SEPARATE receiver process reads the WebSocket and the OSC output on 127.0.0.1 and computes receive
               time minus capture time (``t_capture`` of the JSON state; OSC bundles are matched to WebSocket states
               through their ``latency_ms``, which both carry from the same publish call). Beside it, in the same
               child process and on the same frames, paced at 30 fps before and after the bridge phase: the bare
               MediaPipe FaceLandmarker call (``detect_for_video`` on a prepared image, VIDEO mode: the floor) and
               ``FaceTracker.process``. For a file source, capture time is when the pacing thread delivered the
               frame (video) or when the block's last sample became due (audio). Timestamps inside the child split
               the path into frame wait, face stage, hand-over to the ticker, tick and publish.
``cpu``        CPU share of that same bridge run: process CPU time over wall time (psutil), as % of one core and of
               all cores, plus per thread (audio, face, ticker, ...; MediaPipe's dispatcher and native threads
               apart) and the bridge's own ``stage_s`` (seconds spent per stage, wall).
``audio``      Audio features on the same speech, fed in the bridge's 20 ms blocks, a state at 30 Hz: ours
               (incremental ``AudioFeatures.process`` + ``snapshot()``) against a whole-window librosa
               recomputation of the same frame features every tick, and against openSMILE eGeMAPSv02 driven through
               its streaming API (SMILEapi ``cExternalAudioSource`` -> ``cExternalSink``, ``smile_run`` in its own
               thread), both as low-level descriptors only and with eGeMAPS functionals over a sliding 1.5 s window
               every 1/30 s (what our snapshot computes). CPU seconds per second of audio; rounds interleaved;
               BLAS limited to one thread (OpenBLAS's threads spin on a small machine and slow librosa down).
``smoothing``  LSTM vs per-window classifier raw / +EMA / +One-Euro (jitter, lag, UAR) from the training report
               (``artifacts/train/report.json``, section ``smoothing``).
``fanout``     WebSocket broadcast at 30 Hz through :class:`bridge.output.hub.OutputHub` in this process to 1, 10 and
               50 real ``websockets`` clients in a separate process: delivered fraction and latency.
``growth``     Cost per tick (1/30 s of new audio + snapshot) as the audio window grows (0.5, 1, 2, 4 s): ours
               (incremental) beside the librosa whole-window recomputation, interleaved tick by tick.

Every figure is a distribution or a ratio measured side by side in the same run (the development machines are
shared); the targets are checked against those ratios and distributions. Results go to JSON (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTIONS = ("wire", "cpu", "audio", "smoothing", "fanout", "growth")
FPS = 30.0
TARGETS = {
    "wire_p99_ms": 25.0,  # capture-to-wire p99 (WebSocket, receive side)
    "cpu_pct_of_all_cores": 30.0,  # whole bridge at 30 fps face + voice
    "face_stage_over_landmarker": 1.15,  # bridge face stage per frame / bare FaceLandmarker call
    "audio_ours_over_opensmile": 0.5,  # our audio features / openSMILE eGeMAPS streaming (CPU time)
}

# durations: quick (< 2 min in all) and full
PROFILES = {
    "quick": {"bridge_s": 12.0, "warmup_s": 3.0, "floor_frames": 60, "audio_s": 4.0, "audio_rounds": 2,
              "fanout_s": 3.0, "fanout_clients": (1, 10, 50), "growth_ticks": 20, "growth_windows": (0.5, 1, 2, 4)},
    "full": {"bridge_s": 90.0, "warmup_s": 5.0, "floor_frames": 300, "audio_s": 30.0, "audio_rounds": 7,
             "fanout_s": 15.0, "fanout_clients": (1, 10, 50), "growth_ticks": 300,
             "growth_windows": (0.5, 1, 2, 4)},
}


# ================================================================================================ helpers
def dist(xs, scale: float = 1.0) -> dict:
    """Distribution summary (n, mean, p50, p95, p99, max) of ``xs * scale``; NaN fields when empty."""
    a = np.asarray([x for x in xs if x is not None and math.isfinite(x)], float) * scale
    if a.size == 0:
        return {"n": 0, "mean": float("nan"), "p50": float("nan"), "p95": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(a.max())}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b and math.isfinite(a) and math.isfinite(b) else float("nan")


def machine_info() -> dict:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = None
    with contextlib.suppress(ImportError):
        import psutil

        ram = round(psutil.virtual_memory().total / 2 ** 30, 1)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": ram, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": [round(x, 2) for x in load] if load else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def media(workdir: Path, video_s: float = 6.0) -> tuple[Path, Path]:
    """The face video (30 fps, 640x480) and the speech file, made once per work directory."""
    from bridge.demo import make_face_video, make_speech

    workdir.mkdir(parents=True, exist_ok=True)
    video, audio = workdir / "face.mp4", workdir / "speech.wav"
    if not video.is_file():
        make_face_video(video, seconds=video_s, fps=FPS)
    if not audio.is_file():
        make_speech(audio)
    return video, audio


def weights_path(workdir: Path, weights: str | None) -> tuple[str | None, str]:
    """(path or None for the packaged default, description). Without packaged weights: random weights of the
    default architecture (timing does not depend on the values), said so in the results."""
    from bridge.config import Config
    from bridge.model.affect import default_weights_path

    if weights:
        return weights, weights
    if default_weights_path().is_file():
        return None, f"packaged ({default_weights_path()})"
    import torch

    from bridge.features.face import FACE_DIM
    from bridge.labels import LABELS
    from bridge.model.affect import AffectNet, save_weights
    from bridge.model.tick import feature_schema

    cfg = Config()
    sch = feature_schema(cfg.audio, cfg.video, cfg.model.tick_hz)
    a = len(sch["audio_names"])
    torch.manual_seed(0)
    p = workdir / "random-weights.pt"
    save_weights(p, AffectNet(a + FACE_DIM + 4, a, FACE_DIM), {"labels": list(LABELS), "feature_schema": sch})
    return str(p), "RANDOM weights of the default architecture (packaged weights missing; timing is the same)"


def _machine_busy() -> float:
    """CPU seconds all processes have used so far (every core), or NaN without psutil."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def face_model_path(face_model: str | None) -> str:
    from bridge.features import face_model as fm

    return str(fm.resolve(face_model))


def _run_child(args: list[str], log: Path) -> subprocess.Popen:
    """This file as a child process (``_bridge`` / ``_receiver`` / ``_clients``), output to ``log``."""
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], stdout=f,
                                stderr=subprocess.STDOUT, cwd=str(ROOT))


def _end(p: subprocess.Popen, grace: float = 10.0) -> None:
    """Wait for a child we started; SIGTERM, then kill, if it does not finish."""
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _tail(p: Path, n: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return p.read_text(errors="replace")[-n:]
    return ""


# ================================================================================================ 1+2: wire, cpu
def _floor(frames: list, model: str, start_ts_ms: int, raw_first: bool = True) -> dict:
    """The bare FaceLandmarker call (VIDEO mode, image prepared beforehand) and FaceTracker.process on the same
    frames, one after the other (each alone, like the bridge's single landmarker), paced at 30 fps like a
    camera."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

    from bridge.features.face import FaceTracker

    opts = FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=model), running_mode=RunningMode.VIDEO,
                                 num_faces=1, min_face_detection_confidence=0.5, min_face_presence_confidence=0.5,
                                 min_tracking_confidence=0.5, output_face_blendshapes=True,
                                 output_facial_transformation_matrixes=True)
    raw = FaceLandmarker.create_from_options(opts)
    tracker = FaceTracker(model)
    images = [mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]
    found = [0, 0]

    def call_raw(i: int) -> None:
        found[0] += bool(raw.detect_for_video(images[i], start_ts_ms + int(i * 1000 / FPS)).face_landmarks)

    def call_tracker(i: int) -> None:
        found[1] += tracker.process(frames[i], (start_ts_ms + int(i * 1000 / FPS)) / 1000.0).present

    def paced(fn) -> list[float]:
        ts = []
        t0 = time.perf_counter()
        for i in range(len(frames)):
            a = time.perf_counter()
            fn(i)
            ts.append(time.perf_counter() - a)
            rem = t0 + (i + 1) / FPS - time.perf_counter()
            if rem > 0:
                time.sleep(rem)
        return ts

    try:
        order = (call_raw, call_tracker) if raw_first else (call_tracker, call_raw)
        times = {fn: paced(fn) for fn in order}
        t_raw, t_trk = times[call_raw], times[call_tracker]
    finally:
        raw.close()
        tracker.close()
    found = min(found)
    return {"raw_s": t_raw, "tracker_s": t_trk, "face_found": found}


def _native_name(pid: int, tid: int) -> str:
    """Threads Python does not know: MediaPipe's graph threads call themselves "drishti" (Linux /proc)."""
    try:
        comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    except OSError:
        return "native"
    return "mediapipe-graph" if comm.startswith("drishti") else f"native ({comm})"


def _thread_cpu(proc, names: dict[int, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in proc.threads():
        name = names.get(t.id) or _native_name(proc.pid, t.id)
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


def _thread_names() -> dict[int, str]:
    names = {}
    for th in threading.enumerate():
        if th.native_id is None:
            continue
        n = th.name
        if n.startswith("ThreadPoolExecutor"):
            n = "mediapipe-dispatch"  # MediaPipe runs every C call on its own executor thread
        elif n.startswith("capture-video"):
            n = "video-decode"
        names[th.native_id] = n
    return names


def _decompose(face_ev: list, tick_ev: list) -> dict:
    """Split the path of each state that follows a face result into: frame waiting in the slot (capture ->
    landmarker start), face stage (landmarker + push_face), hand-over to the ticker (face done -> tick start),
    tick (features + model), publish (OSC send + WebSocket queueing) -- all on bridge.clock, in ms."""
    import bisect

    ends = [f[2] for f in face_ev]
    parts: dict[str, list[float]] = {"frame_wait": [], "face": [], "handover": [], "tick": [], "publish": [],
                                     "face_capture_to_send": []}
    for t_start, t_pub, t_end, _ in tick_ev:
        i = bisect.bisect_right(ends, t_start) - 1
        if i < 0 or not math.isfinite(t_pub):
            continue
        cap, a, b = face_ev[i]
        parts["frame_wait"].append(a - cap)
        parts["face"].append(b - a)
        parts["handover"].append(t_start - b)
        parts["tick"].append(t_pub - t_start)
        parts["publish"].append(t_end - t_pub)
        parts["face_capture_to_send"].append(t_pub - cap)
    return {k: dist(v, 1000) for k, v in parts.items()}


def child_bridge(spec: dict) -> None:
    """Runs in the child process: floor (before), the full bridge, floor (after); writes spec['out']."""
    import logging

    import psutil

    from bridge.capture.video import iter_video_file
    from bridge.config import load_config
    from bridge.live import build_bridge

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    frames = [f.image for f in iter_video_file(spec["video"])]
    n_floor = int(spec["floor_frames"])
    loop_frames = (frames * (n_floor // len(frames) + 1))[:n_floor]
    over = {
        "video.source": spec["video"], "audio.source": spec["audio"], "sources.speed": "realtime",
        "sources.loop": True, "websocket.port": spec["ws_port"], "monitor.enabled": False, "osc.control_port": 0,
        "osc.targets": [f"127.0.0.1:{spec['osc_port']}"], "video.face_model": spec["face_model"],
        "logging.level": "WARNING",
    }
    if spec.get("weights"):
        over["model.weights"] = spec["weights"]
    cfg = load_config(None, over)
    floor_before = _floor(loop_frames, spec["face_model"], 1_000)

    bridge = build_bridge(cfg)
    # timestamps only (bridge.clock), to split capture-to-wire into its parts; no behaviour changes
    from bridge import clock

    face_ev: list[tuple[float, float, float]] = []  # (frame t_capture, process start, push_face end)
    tick_ev: list[tuple[float, float, float, float]] = []  # (tick start, publish start, tick end, state t_capture)
    pub_t: list[float] = []
    calls: list[float] = []  # FaceTracker.process inside the bridge, per frame
    pushes: list[float] = []  # FeatureEngine.push_face right after it (the rest of the face stage)
    proc_fn, push_fn, tick_fn, pub_fn = bridge.tracker.process, bridge.engine.push_face, bridge.tick, bridge.hub.publish
    pending: list[tuple[float, float]] = []

    def process(image, t_capture):
        a = clock.now()
        try:
            return proc_fn(image, t_capture)
        finally:
            calls.append(clock.now() - a)
            pending[:] = [(t_capture, a)]

    def push_face(obs):
        a = clock.now()
        try:
            return push_fn(obs)
        finally:
            b = clock.now()
            pushes.append(b - a)
            if pending:
                face_ev.append((pending[0][0], pending[0][1], b))

    def publish(state, *a, **kw):
        pub_t.append(clock.now())
        return pub_fn(state, *a, **kw)

    def tick(now):
        a = clock.now()
        n = len(pub_t)
        st = tick_fn(now)
        tick_ev.append((a, pub_t[-1] if len(pub_t) > n else float("nan"), clock.now(), st.t_capture))
        return st

    bridge.tracker.process, bridge.engine.push_face, bridge.tick, bridge.hub.publish = process, push_face, tick, publish
    proc = psutil.Process()
    bridge.start()
    try:
        time.sleep(spec["warmup_s"])
        names = _thread_names()
        c0, th0, st0 = proc.cpu_times(), _thread_cpu(proc, names), dict(bridge.stage_s)
        sys0 = psutil.cpu_times()
        f0, p0, n_calls0, w0 = bridge.face_frames, bridge.hub.published, len(calls), time.perf_counter()
        nf0, nt0 = len(face_ev), len(tick_ev)
        t_start_wall = time.time()
        time.sleep(spec["bridge_s"])
        names = _thread_names()
        c1, th1, st1 = proc.cpu_times(), _thread_cpu(proc, names), dict(bridge.stage_s)
        sys1 = psutil.cpu_times()
        f1, p1, w1 = bridge.face_frames, bridge.hub.published, time.perf_counter()
        t_end_wall = time.time()
        health = bridge.health()
        lat_self = list(bridge.hub.latencies_ms)[-(p1 - p0):] if p1 > p0 else []
        n = min(len(calls), len(pushes))
        face_calls = [a + b for a, b in zip(calls[n_calls0:n], pushes[n_calls0:n])]
        fev, tev = face_ev[nf0:], tick_ev[nt0:]
    finally:
        bridge.stop()
    parts = _decompose(fev, tev)
    floor_after = _floor(loop_frames, spec["face_model"], 1_000, raw_first=False)
    wall = w1 - w0
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    machine_busy = (sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0.0)) - (sum(sys0) - sys0.idle
                                                                          - getattr(sys0, "iowait", 0.0))
    threads = {k: th1.get(k, 0.0) - th0.get(k, 0.0) for k in set(th0) | set(th1)}
    out = {
        "wall_s": wall, "cpu_s": cpu, "machine_busy_s": machine_busy, "t_start_wall": t_start_wall,
        "t_end_wall": t_end_wall,
        "face_frames": f1 - f0, "published": p1 - p0, "threads_cpu_s": threads,
        "stage_s": {k: st1[k] - st0.get(k, 0.0) for k in st1},
        "face_calls_s": face_calls, "self_latency_ms": lat_self, "parts_ms": parts,
        "floor_before": floor_before, "floor_after": floor_after,
        "video_source": health["sources"]["video"], "audio_source": health["sources"]["audio"],
        "workers": health["workers"], "outputs": health.get("outputs", {}),
        "torch_threads": cfg.model.threads,
    }
    Path(spec["out"]).write_text(json.dumps(out))


def child_receiver(spec: dict) -> None:
    """Separate process: WebSocket client + OSC UDP socket on 127.0.0.1; stamps every message on arrival."""
    from websockets.asyncio.client import connect

    ws_msgs: list[tuple[float, str]] = []
    osc_msgs: list[tuple[float, bytes]] = []

    class Osc(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            osc_msgs.append((time.time(), data))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        transport, _ = await loop.create_datagram_endpoint(Osc, local_addr=("127.0.0.1", spec["osc_port"]))
        Path(spec["ready"]).write_text("ready")
        deadline = time.monotonic() + spec["max_s"]
        connected = False
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                async with connect(f"ws://127.0.0.1:{spec['ws_port']}", max_size=2 ** 22, open_timeout=2) as ws:
                    connected = True
                    async for raw in ws:
                        ws_msgs.append((time.time(), raw))
                        if stop.is_set():
                            break
                break  # the bridge closed the connection: it stopped
            except (OSError, asyncio.TimeoutError):
                if connected:
                    break
                await asyncio.sleep(0.1)
            except Exception:  # noqa: BLE001 - closed abnormally: the bridge stopped
                break
        await asyncio.sleep(0.3)  # trailing OSC
        transport.close()

    asyncio.run(main())
    states = []
    for t, raw in ws_msgs:
        with contextlib.suppress(ValueError):
            m = json.loads(raw)
            if m.get("type") == "state":
                face = m.get("face") or {}
                states.append([t, m["seq"], m["t_capture"], m["t_emit"], m.get("latency_ms"),
                               face.get("age_ms") if face.get("present") else None])
    from pythonosc.osc_bundle import OscBundle
    from pythonosc.osc_message import OscMessage

    osc = []
    for t, data in osc_msgs:
        if not data.startswith(b"#bundle"):
            continue
        with contextlib.suppress(Exception):
            vals = {m.address: m.params[0] for m in OscBundle(data) if isinstance(m, OscMessage)}
            osc.append([t, vals.get("/bridge/latency_ms")])
    Path(spec["out"]).write_text(json.dumps({"ws_states": states, "osc": osc}))


def _match_osc(osc: list, ws: list) -> list[tuple[float, float]]:
    """Pair OSC bundles with WebSocket states: both carry the latency of the same publish call (OSC float32,
    JSON rounded to 0.01 ms) and both arrive in order; find the index offset that matches best, then pair.
    Returns (osc receive time, t_capture of the matched state)."""
    if not osc or not ws:
        return []
    ol = np.array([o[1] if o[1] is not None else np.nan for o in osc], float)
    wl = np.array([w[4] if w[4] is not None else np.nan for w in ws], float)
    best, best_off = -1, 0
    for off in range(0, min(len(ol), 600)):
        n = min(len(ol) - off, len(wl))
        if n <= 0:
            break
        hits = int(np.sum(np.abs(ol[off:off + n] - wl[:n]) < 0.011))
        if hits > best:
            best, best_off = hits, off
    pairs = []
    for i, w in enumerate(ws):
        j = i + best_off
        if j < len(ol) and abs(ol[j] - wl[i]) < 0.011:
            pairs.append((osc[j][0], w[2]))
    return pairs


def bench_bridge(prof: dict, workdir: Path, face_model: str, weights: str | None) -> dict:
    video, audio = media(workdir)
    ws_port, osc_port = free_port(), free_port(socket.SOCK_DGRAM)
    rx_out, br_out, ready = workdir / "receiver.json", workdir / "bridge_child.json", workdir / "receiver.ready"
    for p in (rx_out, br_out, ready):
        p.unlink(missing_ok=True)
    max_s = prof["bridge_s"] + prof["warmup_s"] + 4 * prof["floor_frames"] / FPS + 120
    rx_spec = {"ws_port": ws_port, "osc_port": osc_port, "out": str(rx_out), "ready": str(ready), "max_s": max_s}
    rx = _run_child(["_receiver", json.dumps(rx_spec)], workdir / "receiver.log")
    try:
        t_wait = time.monotonic() + 30
        while not ready.exists():
            if rx.poll() is not None or time.monotonic() > t_wait:
                raise RuntimeError(f"receiver did not start:\n{_tail(workdir / 'receiver.log')}")
            time.sleep(0.05)
        br_spec = {"video": str(video), "audio": str(audio), "ws_port": ws_port, "osc_port": osc_port,
                   "face_model": face_model, "weights": weights, "warmup_s": prof["warmup_s"],
                   "bridge_s": prof["bridge_s"], "floor_frames": prof["floor_frames"], "out": str(br_out)}
        br = _run_child(["_bridge", json.dumps(br_spec)], workdir / "bridge_child.log")
        try:
            rc = br.wait(timeout=max_s)
        except subprocess.TimeoutExpired:
            _end(br, 0.1)
            raise RuntimeError(f"bridge child timed out:\n{_tail(workdir / 'bridge_child.log')}") from None
    finally:
        _end(rx)  # it ends by itself when the bridge closes the WebSocket
    if rc != 0 or not br_out.exists():
        raise RuntimeError(f"bridge child failed (rc {rc}):\n{_tail(workdir / 'bridge_child.log')}")
    if not rx_out.exists():
        raise RuntimeError(f"receiver failed:\n{_tail(workdir / 'receiver.log')}")
    b = json.loads(br_out.read_text())
    r = json.loads(rx_out.read_text())
    t0, t1 = b["t_start_wall"], b["t_end_wall"]
    ws = [s for s in r["ws_states"] if t0 <= s[0] <= t1]
    ws_lat = [(s[0] - s[2]) * 1000 for s in ws]
    face_lat = [(s[0] - (s[3] - s[5] / 1000.0)) * 1000 for s in ws if s[5] is not None]
    emit_to_rx = [(s[0] - s[3]) * 1000 for s in ws]
    pairs = [p for p in _match_osc(r["osc"], r["ws_states"]) if t0 <= p[0] <= t1]
    osc_rx_lat = [(t - tc) * 1000 for t, tc in pairs]
    osc_self = [o[1] for o in r["osc"] if t0 <= o[0] <= t1 and o[1] is not None]
    seqs = [s[1] for s in ws]
    lost = (max(seqs) - min(seqs) + 1 - len(set(seqs))) if seqs else 0

    raw_s = b["floor_before"]["raw_s"][10:] + b["floor_after"]["raw_s"][10:]  # first calls warm MediaPipe up
    trk_s = b["floor_before"]["tracker_s"][10:] + b["floor_after"]["tracker_s"][10:]
    floor = dist(raw_s, 1000)
    tracker = dist(trk_s, 1000)
    face_calls = dist(b["face_calls_s"], 1000)
    wire = dist(ws_lat)
    face_stage_ms = 1000 * b["stage_s"].get("face", 0.0) / max(1, b["face_frames"])
    wall, ncpu = b["wall_s"], os.cpu_count() or 1
    threads = {k: 100.0 * v / wall for k, v in sorted(b["threads_cpu_s"].items(), key=lambda kv: -kv[1])
               if v > 0.0005 * wall}
    res_wire = {
        "ws_receive_minus_t_capture_ms": wire,
        "ws_receive_minus_face_capture_ms": dist(face_lat),
        "ws_receive_minus_t_emit_ms": dist(emit_to_rx),
        "osc_receive_minus_t_capture_ms": dist(osc_rx_lat),
        "osc_self_reported_latency_ms": dist(osc_self),
        "bridge_self_reported_latency_ms": dist(b["self_latency_ms"]),
        "landmarker_floor_ms": floor,
        "face_tracker_process_ms": tracker,
        "wire_over_landmarker": {"p50": _ratio(wire["p50"], floor["p50"]), "p99": _ratio(wire["p99"], floor["p99"])},
        "face_stage_ms_per_frame": face_stage_ms,
        "parts_ms": b["parts_ms"],
        "face_stage_calls_ms": face_calls,
        "face_stage_over_landmarker": {
            "mean": _ratio(face_stage_ms, floor["mean"]), "p50": _ratio(face_calls["p50"], floor["p50"])},
        "states_per_s": b["published"] / wall, "face_frames_per_s": b["face_frames"] / wall,
        "ws_states_received": len(ws), "ws_states_lost": int(lost), "osc_matched": len(pairs),
        "video_frames_dropped_by_pacer": b["video_source"].get("dropped"),
        "measured_wall_s": wall,
        "face_found_in_floor_frames": b["floor_before"]["face_found"] + b["floor_after"]["face_found"],
    }
    res_cpu = {
        "pct_of_one_core": 100.0 * b["cpu_s"] / wall,
        "pct_of_all_cores": 100.0 * b["cpu_s"] / wall / ncpu,
        "cores": ncpu,
        "threads_pct_of_one_core": threads,
        "stage_wall_pct_of_one_core": {k: 100.0 * v / wall for k, v in b["stage_s"].items()},
        "stage_ms_per_state": {k: 1000.0 * v / max(1, b["published"]) for k, v in b["stage_s"].items()},
        "states_per_s": b["published"] / wall, "face_frames_per_s": b["face_frames"] / wall,
        "measured_wall_s": wall,
        "machine_busy_pct_of_all_cores": 100.0 * b["machine_busy_s"] / wall / ncpu,
        "others_busy_pct_of_all_cores": 100.0 * (b["machine_busy_s"] - b["cpu_s"]) / wall / ncpu,
    }
    return {"wire": res_wire, "cpu": res_cpu}


# ================================================================================================ 3: audio
def load_speech(path: Path, seconds: float, block_ms: float = 20.0) -> list[np.ndarray]:
    """The speech file as the bridge's audio source sees it (16 kHz blocks of ``block_ms``), looped to
    ``seconds``."""
    from bridge.capture.audio import iter_audio_file

    once = [b.samples for b in iter_audio_file(str(path), block_ms)]
    n = max(1, int(round(seconds * 1000 / block_ms)))
    return (once * (n // len(once) + 1))[:n]


def librosa_rows(af, y: np.ndarray) -> np.ndarray:
    """The frame rows of :class:`AudioFeatures` recomputed with librosa over the whole buffer ``y`` (the last
    ``context`` samples of each frame; frames end where ours end)."""
    import librosa

    sr, hop, n_fft, ylen = af.sr, af.hop, af.n_fft, af.yin_len
    ys = y[af.context - n_fft:]
    spec = librosa.stft(ys, n_fft=n_fft, hop_length=hop, window="hann", center=False)
    power = np.abs(spec) ** 2
    mag = np.sqrt(power)
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, n_mels=af.n_mels)
    logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=af.n_mfcc)
    rms = librosa.feature.rms(y=ys, frame_length=n_fft, hop_length=hop, center=False)[0]
    yl = y[af.context - ylen:]
    f0 = librosa.yin(yl, fmin=af.cfg.pitch_min_hz, fmax=af.cfg.pitch_max_hz, sr=sr, frame_length=ylen,
                     hop_length=hop, center=False)
    cent = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=n_fft)[0] / 1000.0
    zcr = librosa.feature.zero_crossing_rate(ys, frame_length=n_fft, hop_length=hop, center=False)[0]
    nm = mag / (mag.sum(0, keepdims=True) + 1e-10)
    flux = np.r_[0.0, np.sqrt((np.maximum(np.diff(nm, axis=1), 0) ** 2).sum(0))] * 10.0
    onset = librosa.onset.onset_strength(S=logmel, sr=sr, lag=1, max_size=1, aggregate=np.mean, center=False)
    n = min(spec.shape[1], len(f0), len(onset))
    rows = np.zeros((n, af.row_dim), np.float32)
    rows[:, af.sl_logmel] = logmel[:, -n:].T
    rows[:, af.sl_mfcc] = mfcc[:, -n:].T
    rows[:, af.i_rms] = 20 * np.log10(np.maximum(rms[-n:], 1e-5))
    f0 = f0[-n:]
    rows[:, af.i_f0] = np.where(f0 < af.cfg.pitch_max_hz * 0.999, f0, 0.0)
    rows[:, af.i_per] = (rows[:, af.i_f0] > 0).astype(np.float32)
    rows[:, af.i_cent] = cent[-n:]
    rows[:, af.i_flux] = flux[-n:]
    rows[:, af.i_zcr] = zcr[-n:]
    rows[:, af.i_onset] = onset[-n:]
    return rows


class LibrosaWindow:
    """Whole-window recomputation: keep the last window (+ analysis context) of samples; every tick recompute
    all frame features of the window with librosa, then the same window statistics as ours."""

    def __init__(self, audio_cfg):
        from bridge.features.audio import AudioFeatures

        self.af = AudioFeatures(audio_cfg)  # for its layout and its _window statistics only
        self.keep = self.af.win_frames * self.af.hop + self.af.context - self.af.hop
        self.buf = np.zeros(self.keep, np.float32)

    def process(self, x: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, x])[-self.keep:]

    def snapshot(self) -> np.ndarray:
        rows = librosa_rows(self.af, self.buf)
        return self.af._window(rows)[0]


class SmileStream:
    """openSMILE eGeMAPSv02 driven through its streaming API: ``cExternalAudioSource`` fed 16-bit PCM chunk by
    chunk while ``smile_run`` works in its own thread, results through ``cExternalSink`` callbacks.
    ``functionals_window_s``: None = low-level descriptors only; else eGeMAPS functionals over a sliding window
    of that length every ``step_s``."""

    def __init__(self, sr: int, functionals_window_s: float | None, step_s: float, workdir: Path):
        import opensmile
        from opensmile.core.config import config as smile_cfg
        from opensmile.core.lib import OpenSMILE

        self.C = smile_cfg
        level = "lld" if functionals_window_s is None else "func"
        s = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors if level == "lld"
                            else opensmile.FeatureLevel.Functionals)
        opts = s._options()  # the same option set opensmile-python passes to SMILEapi
        if functionals_window_s is not None:
            inc = workdir / f"smile_frames_{functionals_window_s:g}_{step_s:g}.conf.inc"
            inc.write_text(f"frameMode = fixed\nframeSize = {functionals_window_s:.6f}\nframeStep = {step_s:.6f}\n"
                           f"frameCenterSpecial = left\n")
            opts["frameModeFunctionalsConf"] = str(inc)
        opts["source"] = os.path.join(s.default_config_root, smile_cfg.EXTERNAL_INPUT_CONFIG)
        opts["sampleRate"] = sr
        opts["nBits"] = 16
        self.smile = OpenSMILE()
        self.smile.initialize(s.config_path, opts, loglevel=1)
        self.outputs = 0

        def cb(data):
            self.outputs += 1

        self._cb = cb
        self.smile.external_sink_set_callback(smile_cfg.EXTERNAL_OUTPUT_COMPONENT, cb)
        self.thread = threading.Thread(target=self.smile.run, name="smile-run", daemon=True)
        self.retries = 0

    def start(self) -> None:
        self.thread.start()

    def process(self, x: np.ndarray) -> None:
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()
        while not self.smile.external_audio_source_write_data(self.C.EXTERNAL_SOURCE_COMPONENT, pcm):
            self.retries += 1
            time.sleep(0.0005)

    def finish(self) -> None:
        self.smile.external_audio_source_set_eoi(self.C.EXTERNAL_SOURCE_COMPONENT)
        self.thread.join()
        self.smile.free()


def _feed(blocks: list[np.ndarray], sr: int, process, snapshot=None) -> None:
    t, next_tick = 0.0, 1.0 / FPS
    for b in blocks:
        process(b)
        t += len(b) / sr
        while snapshot is not None and t + 1e-9 >= next_tick:
            snapshot()
            next_tick += 1.0 / FPS


def one_blas_thread():
    """BLAS limited to one thread: OpenBLAS's own threads make librosa's whole-window matrix products several times
    slower on a small shared machine (they spin), which would flatter us; our code runs on one thread anyway."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def bench_audio(prof: dict, workdir: Path) -> dict:
    with one_blas_thread():
        return _bench_audio(prof, workdir)


def _bench_audio(prof: dict, workdir: Path) -> dict:
    from bridge.config import AudioConfig
    from bridge.features.audio import AudioFeatures

    _, audio = media(workdir)
    cfg = AudioConfig()
    blocks = load_speech(audio, prof["audio_s"], cfg.block_ms)
    sr = cfg.sample_rate
    secs = sum(len(b) for b in blocks) / sr

    def timed(make, with_snapshot=True):
        """Build the extractor, then time feeding it the blocks: (CPU s of this process, wall s, outputs)."""
        def go():
            x = make()
            c0, w0 = time.process_time(), time.perf_counter()
            if hasattr(x, "start"):
                x.start()
            _feed(blocks, sr, x.process, x.snapshot if with_snapshot else None)
            if hasattr(x, "finish"):
                x.finish()
            return time.process_time() - c0, time.perf_counter() - w0, getattr(x, "outputs", None)
        return go

    methods = {"ours": timed(lambda: AudioFeatures(cfg)), "librosa_window": timed(lambda: LibrosaWindow(cfg)),
               "opensmile_lld": timed(lambda: SmileStream(sr, None, 1.0 / FPS, workdir), False),
               "opensmile_lld_func": timed(lambda: SmileStream(sr, cfg.window_s, 1.0 / FPS, workdir), False)}
    # warm up every method once (imports, caches, FFT plans)
    blocks_full = blocks
    blocks = blocks_full[: max(1, len(blocks_full) // 8)]
    for fn in methods.values():
        fn()
    blocks = blocks_full
    cpu: dict[str, list[float]] = {k: [] for k in methods}
    wall: dict[str, list[float]] = {k: [] for k in methods}
    outputs: dict[str, int] = {}
    names = list(methods)
    for r in range(prof["audio_rounds"]):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate the order every round
        for k in order:
            c, w, n_out = methods[k]()
            if n_out is not None:
                outputs[k] = n_out
            cpu[k].append(1000.0 * c / secs)
            wall[k].append(1000.0 * w / secs)
    ratios = {}
    for other in ("librosa_window", "opensmile_lld", "opensmile_lld_func"):
        per_round = [a / b for a, b in zip(cpu["ours"], cpu[other]) if b > 0]
        ratios[f"ours_over_{other}"] = {"median": float(np.median(per_round)), "min": float(np.min(per_round)),
                                        "max": float(np.max(per_round))}
    return {
        "audio_seconds_per_round": secs, "rounds": prof["audio_rounds"], "block_ms": cfg.block_ms,
        "tick_hz": FPS, "window_s": cfg.window_s,
        "cpu_ms_per_audio_s": {k: dist(v) for k, v in cpu.items()},
        "wall_ms_per_audio_s": {k: dist(v) for k, v in wall.items()},
        "ratios_cpu": ratios,
        "opensmile_outputs": outputs,
        "notes": "CPU time of this process (openSMILE's own run thread included) per second of audio, fed as fast "
                 "as possible in 20 ms blocks, BLAS limited to one thread; ours and librosa produce a window "
                 "vector at 30 Hz; "
                 "opensmile_lld = eGeMAPSv02 low-level descriptors (10 ms); opensmile_lld_func = LLDs + eGeMAPS "
                 "functionals over a sliding 1.5 s window every 1/30 s. Both through SMILEapi streaming.",
    }


# ================================================================================================ 6: growth
def bench_growth(prof: dict, workdir: Path) -> dict:
    with one_blas_thread():
        return _bench_growth(prof, workdir)


def _bench_growth(prof: dict, workdir: Path) -> dict:
    from bridge.config import AudioConfig
    from bridge.features.audio import AudioFeatures

    _, audio = media(workdir)
    base = AudioConfig()
    sr = base.sample_rate
    per_tick = int(round(sr / FPS))
    res: dict = {"window_s": [], "ours_ms": [], "librosa_ms": [], "ours_cpu_ms": [], "librosa_cpu_ms": []}
    for w in prof["growth_windows"]:
        cfg = AudioConfig(window_s=float(w))
        blocks = load_speech(audio, w + prof["growth_ticks"] / FPS + 1.0, base.block_ms)
        y = np.concatenate(blocks)
        warm = int((w + 0.5) * sr)
        af, lw = AudioFeatures(cfg), LibrosaWindow(cfg)
        af.process(y[:warm])
        lw.process(y[:warm])
        af.snapshot()
        lw.snapshot()
        t_ours, t_lib, c_ours, c_lib = [], [], [], []
        pos = warm
        for _ in range(prof["growth_ticks"]):
            x = y[pos:pos + per_tick]
            pos += per_tick
            c0, t0 = time.process_time(), time.perf_counter()
            af.process(x)
            af.snapshot()
            t1, c1 = time.perf_counter(), time.process_time()
            lw.process(x)
            lw.snapshot()
            t2, c2 = time.perf_counter(), time.process_time()
            t_ours.append(t1 - t0)
            t_lib.append(t2 - t1)
            c_ours.append(c1 - c0)
            c_lib.append(c2 - c1)
        res["window_s"].append(float(w))
        res["ours_ms"].append(dist(t_ours, 1000))
        res["librosa_ms"].append(dist(t_lib, 1000))
        res["ours_cpu_ms"].append(float(np.median(c_ours) * 1000))
        res["librosa_cpu_ms"].append(float(np.median(c_lib) * 1000))
    o0, l0 = res["ours_cpu_ms"][0], res["librosa_cpu_ms"][0]
    res["ours_growth_vs_smallest"] = [_ratio(x, o0) for x in res["ours_cpu_ms"]]
    res["librosa_growth_vs_smallest"] = [_ratio(x, l0) for x in res["librosa_cpu_ms"]]
    res["ours_over_librosa"] = [_ratio(a, b) for a, b in zip(res["ours_cpu_ms"], res["librosa_cpu_ms"])]
    res["notes"] = ("per tick = 1/30 s of new audio + a window vector; ours and librosa alternate tick by tick on "
                    "the same samples; median CPU ms per tick (process CPU time: BLAS threads included; growth "
                    "ratios use it) and wall ms per tick (p50/p99)")
    return res


# ================================================================================================ 4: smoothing
def bench_smoothing(report: Path) -> dict:
    if not report.is_file():
        raise FileNotFoundError(f"{report} not found: train the model (`emotion-bridge train DATA`) to produce it")
    rep = json.loads(report.read_text())
    sm = rep.get("smoothing")
    if not sm:
        raise KeyError(f"{report} has no 'smoothing' section (trained with --no-baselines?)")
    tick_hz = 30.0
    rows = {}
    for name, r in sm.items():
        rows[name] = {"jitter": r.get("jitter"), "lag_ticks_median": r.get("lag_ticks_median"),
                      "lag_ms_median": (r.get("lag_ticks_median") or float("nan")) * 1000.0 / tick_hz,
                      "lag_ticks_mean": r.get("lag_ticks_mean"), "uar": r.get("uar"),
                      **({"alpha": r["alpha"]} if "alpha" in r else {}),
                      **({"min_cutoff": r["min_cutoff"]} if "min_cutoff" in r else {})}
    out: dict = {"source": str(report), "rows": rows}
    if "lstm" in rows and "window" in rows:
        out["lstm_jitter_over_window_raw"] = _ratio(rows["lstm"]["jitter"], rows["window"]["jitter"])
    for k in ("window+ema", "window+one_euro"):
        if "lstm" in rows and k in rows:
            out[f"lstm_lag_minus_{k}_ticks"] = rows["lstm"]["lag_ticks_mean"] - rows[k]["lag_ticks_mean"]
    return out


# ================================================================================================ 5: fan-out
def child_clients(spec: dict) -> None:
    """Separate process: ``n`` WebSocket clients reading everything; per client the states and their latency."""
    from websockets.asyncio.client import connect

    per_client: list[list[float]] = [[] for _ in range(spec["n"])]

    async def client(i: int) -> None:
        async with connect(f"ws://127.0.0.1:{spec['port']}", max_size=2 ** 22, open_timeout=20) as ws:
            try:
                async for raw in ws:
                    t = time.time()
                    if raw.startswith('{"type":"state"') or '"type":"state"' in raw[:40]:
                        per_client[i].append(t - json.loads(raw)["t_emit"])
            except Exception:  # noqa: BLE001 - closed by the server at the end
                pass

    async def main() -> None:
        await asyncio.gather(*(client(i) for i in range(spec["n"])), return_exceptions=True)

    asyncio.run(main())
    Path(spec["out"]).write_text(json.dumps(per_client))


def bench_fanout(prof: dict, workdir: Path) -> dict:
    from bridge import clock
    from bridge.config import load_config
    from bridge.frames import AffectState
    from bridge.labels import LABELS
    from bridge.output.hub import OutputHub

    cfg = load_config(None, {"websocket.port": 0, "osc.enabled": False, "monitor.enabled": False})
    out: dict = {"clients": [], "delivered_fraction_min": [], "delivered_fraction_mean": [], "latency_ms": [],
                 "published": [], "skipped": []}
    for n in prof["fanout_clients"]:
        hub = OutputHub(cfg)
        hub.start()
        res_file = workdir / f"fanout_{n}.json"
        res_file.unlink(missing_ok=True)
        p = _run_child(["_clients", json.dumps({"port": hub.ws.port, "n": n, "out": str(res_file)})],
                       workdir / f"fanout_{n}.log")
        try:
            t_wait = time.monotonic() + 30
            while hub.ws.n_clients < n:
                if time.monotonic() > t_wait or p.poll() is not None:
                    raise RuntimeError(f"only {hub.ws.n_clients}/{n} clients connected:\n"
                                       f"{_tail(workdir / f'fanout_{n}.log')}")
                time.sleep(0.02)
            time.sleep(0.3)
            k, t0 = 0, clock.now()
            probs = {lab: 1.0 / len(LABELS) for lab in LABELS}
            while clock.now() - t0 < prof["fanout_s"]:
                k += 1
                now = clock.now()
                st = AffectState(seq=k, t_capture=now, t_capture_wall=clock.to_wall(now), valence=0.1, arousal=0.2,
                                 probs=probs, label="neutral", confidence=0.5, face_present=True, voice_active=True,
                                 face_age_ms=5.0, voice_age_ms=5.0)
                hub.publish(st)
                nxt = t0 + k / FPS
                rem = nxt - clock.now()
                if rem > 0:
                    time.sleep(rem)
            time.sleep(0.5)  # let the queues drain
            skipped = hub.ws.counters["skipped"]
        finally:
            hub.stop()
            _end(p, 30)
        per_client = json.loads(res_file.read_text())
        frac = [len(c) / k for c in per_client]
        out["clients"].append(n)
        out["published"].append(k)
        out["delivered_fraction_min"].append(float(min(frac)))
        out["delivered_fraction_mean"].append(float(np.mean(frac)))
        out["latency_ms"].append(dist([x for c in per_client for x in c], 1000))
        out["skipped"].append(skipped)
    out["notes"] = ("OutputHub.publish at 30 Hz in this process; clients in one separate asyncio process; latency = "
                    "client receive time - t_emit stamped by the hub")
    return out


# ================================================================================================ run + report
def run_bench(quick: bool = False, out: str | Path | None = None, only: list[str] | None = None,
              face_model: str | None = None, weights: str | None = None, report: str | Path | None = None,
              workdir: str | Path | None = None, overrides: dict | None = None,
              progress=None, command: str | None = None) -> dict:
    """Run the selected sections; returns (and writes to ``out``) the results dict."""
    prof = dict(PROFILES["quick" if quick else "full"])
    prof.update(overrides or {})
    sel = list(only) if only else list(SECTIONS)
    bad = [s for s in sel if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {bad}; known: {', '.join(SECTIONS)}")
    wd = Path(workdir) if workdir else Path(tempfile.gettempdir()) / "emotion-bridge-bench"
    wd.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    res: dict = {"mode": "quick" if quick else "full", "profile": prof, "machine": machine_info(),
                 "command": command or " ".join(sys.argv), "sections": {}, "errors": {}}
    t_all = time.perf_counter()

    def section(names: tuple[str, ...], msg: str, fn) -> None:
        if not any(n in sel for n in names):
            return
        say(msg)
        b0, w0 = _machine_busy(), time.perf_counter()
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 - one section failing must not lose the others
            for n in names:
                if n in sel:
                    res["errors"][n] = f"{type(e).__name__}: {e}"
            return
        finally:
            busy = (_machine_busy() - b0) / max(1e-9, time.perf_counter() - w0) / (os.cpu_count() or 1) * 100
            res["machine"].setdefault("busy_pct_during", {})["+".join(names)] = round(busy, 1)
        for n in names:
            if n in sel:
                res["sections"][n] = r[n] if len(names) > 1 else r

    def bridge_run() -> dict:
        fm = face_model_path(face_model)
        w, res["weights"] = weights_path(wd, weights)
        return bench_bridge(prof, wd, fm, w)

    section(("smoothing",), "smoothing: reading the training report",
            lambda: bench_smoothing(Path(report) if report else ROOT / "artifacts" / "train" / "report.json"))
    section(("wire", "cpu"), f"wire + cpu: full bridge for {prof['warmup_s'] + prof['bridge_s']:.0f} s (+ bare "
                             f"landmarker {4 * prof['floor_frames'] / FPS:.0f} s)", bridge_run)
    section(("audio",), "audio: ours vs librosa whole-window vs openSMILE eGeMAPS streaming",
            lambda: bench_audio(prof, wd))
    section(("growth",), "growth: cost per tick vs audio window", lambda: bench_growth(prof, wd))
    section(("fanout",), "fanout: WebSocket broadcast to " + ", ".join(map(str, prof["fanout_clients"])) + " clients",
            lambda: bench_fanout(prof, wd))
    res["targets"] = targets(res)
    res["elapsed_s"] = time.perf_counter() - t_all
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in load] if load else None
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=1, default=float))
    return res


def targets(res: dict) -> list[dict]:
    s = res["sections"]
    t = []
    if "wire" in s:
        v = s["wire"]["ws_receive_minus_t_capture_ms"]["p99"]
        t.append({"name": "capture-to-wire p99 (WebSocket, receive side)", "target": f"<= {TARGETS['wire_p99_ms']} ms",
                  "measured": v, "unit": "ms", "met": bool(v <= TARGETS["wire_p99_ms"])})
        v = s["wire"]["face_stage_over_landmarker"]["p50"]
        t.append({"name": "face stage / bare FaceLandmarker call (median per frame)",
                  "target": f"<= {TARGETS['face_stage_over_landmarker']}x", "measured": v, "unit": "x",
                  "met": bool(v <= TARGETS["face_stage_over_landmarker"])})
    if "cpu" in s:
        v = s["cpu"]["pct_of_all_cores"]
        t.append({"name": f"whole bridge CPU at 30 fps face+voice (% of {s['cpu']['cores']} cores)",
                  "target": f"<= {TARGETS['cpu_pct_of_all_cores']} %", "measured": v, "unit": "%",
                  "met": bool(v <= TARGETS["cpu_pct_of_all_cores"])})
    if "audio" in s:
        v = s["audio"]["ratios_cpu"]["ours_over_opensmile_lld_func"]["median"]
        t.append({"name": "our audio features / openSMILE eGeMAPS streaming (LLD + 1.5 s functionals at 30 Hz)",
                  "target": f"<= {TARGETS['audio_ours_over_opensmile']}x", "measured": v, "unit": "x",
                  "met": bool(v <= TARGETS["audio_ours_over_opensmile"])})
    return t


def _f(x, nd: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def summary_rows(res: dict) -> list[tuple[str, str, str]]:
    """(section, metric, value) rows for the printed table."""
    s, rows = res["sections"], []
    if "wire" in s:
        w = s["wire"]
        for key, label in (("ws_receive_minus_t_capture_ms", "WS receive - t_capture"),
                           ("ws_receive_minus_face_capture_ms", "WS receive - face frame capture"),
                           ("osc_receive_minus_t_capture_ms", "OSC receive - t_capture"),
                           ("osc_self_reported_latency_ms", "OSC /bridge/latency_ms (at send)"),
                           ("landmarker_floor_ms", "bare FaceLandmarker call (floor)"),
                           ("face_tracker_process_ms", "FaceTracker.process")):
            d = w[key]
            rows.append(("capture to wire", label, f"p50 {_f(d['p50'])}  p95 {_f(d['p95'])}  p99 {_f(d['p99'])} ms"
                                                   f"  (n {d['n']})"))
        rows.append(("capture to wire", "wire / landmarker", f"p50 {_f(w['wire_over_landmarker']['p50'], 2)}x  "
                                                               f"p99 {_f(w['wire_over_landmarker']['p99'], 2)}x"))
        rows.append(("capture to wire", "face stage in the bridge", f"p50 {_f(w['face_stage_calls_ms']['p50'])}  "
                     f"p95 {_f(w['face_stage_calls_ms']['p95'])}  p99 {_f(w['face_stage_calls_ms']['p99'])} ms  "
                     f"(mean {_f(w['face_stage_ms_per_frame'], 2)} from stage_s)"))
        rows.append(("capture to wire", "face stage / landmarker",
                     f"p50 {_f(w['face_stage_over_landmarker']['p50'], 2)}x  mean "
                     f"{_f(w['face_stage_over_landmarker']['mean'], 2)}x"))
        pm = w.get("parts_ms", {})
        if pm:
            rows.append(("capture to wire", "parts p50 / p99 (ms)", "  ".join(
                f"{k} {_f(v['p50'])}/{_f(v['p99'])}" for k, v in pm.items() if k != "face_capture_to_send")))
        rows.append(("capture to wire", "rate", f"{_f(w['states_per_s'])} states/s, {_f(w['face_frames_per_s'])} "
                                                f"face frames/s, {w['ws_states_lost']} lost"))
    if "cpu" in s:
        c = s["cpu"]
        rows.append(("cpu share", "whole bridge", f"{_f(c['pct_of_one_core'])} % of one core = "
                                                  f"{_f(c['pct_of_all_cores'])} % of {c['cores']} cores"))
        rows.append(("cpu share", "machine meanwhile", f"{_f(c['machine_busy_pct_of_all_cores'])} % of all cores busy, "
                                                       f"{_f(c['others_busy_pct_of_all_cores'])} % by other processes"))
        th = ", ".join(f"{k} {_f(v)}" for k, v in list(c["threads_pct_of_one_core"].items())[:7])
        rows.append(("cpu share", "per thread (% of a core)", th))
        st = ", ".join(f"{k} {_f(v)}" for k, v in c["stage_wall_pct_of_one_core"].items())
        rows.append(("cpu share", "stage_s (wall, % of a core)", st))
    if "audio" in s:
        a = s["audio"]
        c = a["cpu_ms_per_audio_s"]
        rows.append(("audio features", "CPU ms per s of audio (p50)",
                     ", ".join(f"{k} {_f(v['p50'], 1)}" for k, v in c.items())))
        rows.append(("audio features", "ratios (CPU, median of rounds)",
                     ", ".join(f"{k.replace('ours_over_', 'ours/')} {_f(v['median'], 2)}x"
                               for k, v in a["ratios_cpu"].items())))
    if "smoothing" in s:
        for name, r in s["smoothing"]["rows"].items():
            rows.append(("smoothing", name, f"jitter {_f(r['jitter'], 4)}  lag mean {_f(r['lag_ticks_mean'], 1)} / "
                                            f"median {_f(r['lag_ticks_median'], 1)} ticks  UAR {_f(r['uar'], 3)}"))
    if "fanout" in s:
        f = s["fanout"]
        for i, n in enumerate(f["clients"]):
            rows.append(("fan-out 30 Hz", f"{n} clients", f"delivered {f['delivered_fraction_min'][i]:.3f} (min)  "
                                                            f"latency p50 {_f(f['latency_ms'][i]['p50'], 2)}  p99 "
                                                            f"{_f(f['latency_ms'][i]['p99'], 2)} ms"))
    if "growth" in s:
        g = s["growth"]
        for i, w in enumerate(g["window_s"]):
            rows.append(("growth", f"window {w:g} s (CPU ms/tick)",
                         f"ours {_f(g['ours_cpu_ms'][i], 2)} (x{_f(g['ours_growth_vs_smallest'][i], 2)})  librosa "
                         f"{_f(g['librosa_cpu_ms'][i], 2)} (x{_f(g['librosa_growth_vs_smallest'][i], 2)})"))
    for t in res.get("targets", []):
        rows.append(("target", t["name"], f"{_f(t['measured'], 2)} {t['unit']} vs {t['target']}: "
                                          f"{'met' if t['met'] else 'MISSED'}"))
    for k, e in res.get("errors", {}).items():
        rows.append((k, "not measured", e))
    return rows


def print_table(res: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    tab = Table(title=f"emotion-bridge bench ({res['mode']}) — {res['machine']['nproc']} cores, "
                      f"{res['machine']['cpu_model']}", show_lines=False)
    tab.add_column("section", style="bold")
    tab.add_column("metric")
    tab.add_column("value")
    for sec, metric, val in summary_rows(res):
        style = "red" if val.endswith("MISSED") else ("green" if val.endswith(": met") else None)
        tab.add_row(sec, metric, val, style=style)
    console.print(tab)


def markdown(res: dict) -> str:
    """The results as Markdown tables (for docs/PERFORMANCE.md)."""
    s = res["sections"]
    out: list[str] = []

    def d(x: dict, nd: int = 1) -> str:
        return f"{_f(x['p50'], nd)} | {_f(x['p95'], nd)} | {_f(x['p99'], nd)} | {x['n']}"

    if "wire" in s:
        w = s["wire"]
        out += ["| capture to wire (ms) | p50 | p95 | p99 | n |", "|---|---|---|---|---|"]
        for key, label in (("ws_receive_minus_t_capture_ms", "WebSocket: receive − `t_capture`"),
                           ("osc_receive_minus_t_capture_ms", "OSC: receive − `t_capture` (matched state)"),
                           ("osc_self_reported_latency_ms", "OSC `/bridge/latency_ms` (measured at send)"),
                           ("ws_receive_minus_face_capture_ms", "WebSocket: receive − face frame capture"),
                           ("ws_receive_minus_t_emit_ms", "WebSocket: receive − `t_emit` (the hop itself)"),
                           ("landmarker_floor_ms", "bare FaceLandmarker `detect_for_video` (floor)"),
                           ("face_tracker_process_ms", "`FaceTracker.process` alone"),
                           ("face_stage_calls_ms", "face stage inside the bridge (process + push_face)")):
            out.append(f"| {label} | {d(w[key])} |")
        parts = w.get("parts_ms", {})
        if parts:
            out += ["", "| where the time goes (ms, states that follow a face result) | p50 | p95 | p99 | n |",
                    "|---|---|---|---|---|"]
            for k, label in (("frame_wait", "frame waits in the slot (capture → landmarker start)"),
                             ("face", "face stage (landmarker + push_face)"),
                             ("handover", "hand-over to the ticker (face done → tick start)"),
                             ("tick", "tick (features + model step)"),
                             ("publish", "publish (OSC send + WebSocket queueing)"),
                             ("face_capture_to_send", "face frame capture → publish")):
                if k in parts:
                    out.append(f"| {label} | {d(parts[k])} |")
        out += ["", f"Ratios: wire / landmarker p50 {_f(w['wire_over_landmarker']['p50'], 2)}×, p99 "
                    f"{_f(w['wire_over_landmarker']['p99'], 2)}×; face stage / landmarker p50 "
                    f"{_f(w['face_stage_over_landmarker']['p50'], 2)}×, mean "
                    f"{_f(w['face_stage_over_landmarker']['mean'], 2)}×. Rate {_f(w['states_per_s'])} states/s, "
                    f"{_f(w['face_frames_per_s'])} face frames/s, {w['ws_states_lost']} states lost, "
                    f"{w['osc_matched']} OSC bundles matched, {_f(w['measured_wall_s'], 0)} s measured.", ""]
    if "cpu" in s:
        c = s["cpu"]
        out += [f"| CPU (% of one core) | value |", "|---|---|",
                f"| whole bridge | **{_f(c['pct_of_one_core'])}** (= **{_f(c['pct_of_all_cores'])} %** of "
                f"{c['cores']} cores) |",
                f"| machine busy meanwhile (all processes, % of all cores) | {_f(c['machine_busy_pct_of_all_cores'])} "
                f"(others than the bridge: {_f(c['others_busy_pct_of_all_cores'])}) |"]
        for k, v in c["threads_pct_of_one_core"].items():
            out.append(f"| thread `{k}` | {_f(v)} |")
        for k, v in c["stage_wall_pct_of_one_core"].items():
            out.append(f"| `stage_s[\"{k}\"]` (wall time in the stage) | {_f(v)} "
                       f"({_f(c['stage_ms_per_state'][k], 2)} ms per state) |")
        out.append("")
    if "audio" in s:
        a = s["audio"]
        out += ["| audio features, per second of audio | CPU ms p50 | wall ms p50 | ours / this (CPU) |",
                "|---|---|---|---|"]
        for k in a["cpu_ms_per_audio_s"]:
            r = a["ratios_cpu"].get(f"ours_over_{k}")
            out.append(f"| {k} | {_f(a['cpu_ms_per_audio_s'][k]['p50'])} | {_f(a['wall_ms_per_audio_s'][k]['p50'])}"
                       f" | {_f(r['median'], 2) + '×' if r else '—'} |")
        out.append("")
    if "smoothing" in s:
        out += ["| smoothing (validation chains) | jitter | lag p50 (ticks) | lag p50 (ms) | UAR |",
                "|---|---|---|---|---|"]
        for name, r in s["smoothing"]["rows"].items():
            out.append(f"| {name} | {_f(r['jitter'], 4)} | {_f(r['lag_ticks_median'], 1)} | "
                       f"{_f(r['lag_ms_median'], 0)} | {_f(r['uar'], 3)} |")
        out.append("")
    if "fanout" in s:
        f = s["fanout"]
        out += ["| WebSocket fan-out at 30 Hz | states sent | delivered (min over clients) | latency p50 (ms) | "
                "p99 (ms) |", "|---|---|---|---|---|"]
        for i, n in enumerate(f["clients"]):
            out.append(f"| {n} client{'s' if n > 1 else ''} | {f['published'][i]} | "
                       f"{f['delivered_fraction_min'][i]:.3f} | {_f(f['latency_ms'][i]['p50'], 2)} | "
                       f"{_f(f['latency_ms'][i]['p99'], 2)} |")
        out.append("")
    if "growth" in s:
        g = s["growth"]
        out += ["| audio window | ours CPU ms/tick | × vs 0.5 s | librosa CPU ms/tick | × vs 0.5 s | ours / librosa |",
                "|---|---|---|---|---|---|"]
        for i, w in enumerate(g["window_s"]):
            out.append(f"| {w:g} s | {_f(g['ours_cpu_ms'][i], 2)} | {_f(g['ours_growth_vs_smallest'][i], 2)} | "
                       f"{_f(g['librosa_cpu_ms'][i], 2)} | {_f(g['librosa_growth_vs_smallest'][i], 2)} | "
                       f"{_f(g['ours_over_librosa'][i], 3)} |")
        out.append("")
    if res.get("targets"):
        out += ["| target | measured | met |", "|---|---|---|"]
        for t in res["targets"]:
            out.append(f"| {t['name']} {t['target']} | {_f(t['measured'], 2)} {t['unit']} | "
                       f"{'met' if t['met'] else '**missed**'} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("_bridge", "_receiver", "_clients"):
        spec = json.loads(argv[1])
        {"_bridge": child_bridge, "_receiver": child_receiver, "_clients": child_clients}[argv[0]](spec)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # results are written; skip interpreter teardown (MediaPipe's exit handlers can take seconds)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short durations (under two minutes in all)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    ap.add_argument("--face-model"), ap.add_argument("--weights")
    ap.add_argument("--report", help="training report with the smoothing section (default artifacts/train/report.json)")
    ap.add_argument("--workdir", help="media and intermediate files (default: a temp dir)")
    ap.add_argument("--markdown", metavar="RESULTS_JSON", help="print the tables of a results file as Markdown")
    a = ap.parse_args(argv)
    if a.markdown:
        print(markdown(json.loads(Path(a.markdown).read_text())))
        return 0
    only = [x.strip() for x in a.only.split(",") if x.strip()] or None
    res = run_bench(a.quick, a.out, only, a.face_model, a.weights, a.report, a.workdir,
                    command="python benchmarks/bench.py " + " ".join(argv))
    print_table(res)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
