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
``cpu``        CPU as an outsider measures it: the command a user runs (``emotion-bridge run --video face.mp4 --audio
               speech.wav --loop --speed realtime --duration 30``, free ports through ``-c``) as its OWN process;
               utime + stime of /proc/<pid>/stat (every thread) from second 9 to second 24 (start-up excluded),
               with and without the monitor, 3 runs each, interleaved; % of all cores and of one core, per thread
               by /proc name (MediaPipe's graph threads are ``drishti``), load average and the other processes'
               share meanwhile. Checked against an independent reading: the scheduler's nanosecond run time of
               every thread (/proc/<pid>/task/*/schedstat), which must agree within 10 %.
``stages``     Per-stage CPU of the wire run's bridge, by thread CPU time (``time.thread_time`` inside each stage,
               /proc per-thread times for MediaPipe's native threads), so it is robust to other load: landmarker,
               face post-processing, expression net (when the build has one), audio evidence, tick assembly,
               model step, publish, capture; ms per face frame / per state and % of one core.
``faces``      The landmarker stage with 1, 2 and 4 real faces (the astronaut photo tiled), ``num_faces`` = N, paced
               at 30 fps in its own process: CPU ms per frame, 3 rounds. (The whole bridge with several people
               awaits multi-person tracking.)
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

SECTIONS = ("wire", "cpu", "stages", "faces", "audio", "smoothing", "fanout", "growth")
FPS = 30.0
TARGETS = {
    "wire_p99_ms": 25.0,  # capture-to-wire p99 (WebSocket, receive side)
    "cpu_pct_of_all_cores": 20.0,  # whole bridge at 30 fps face + voice, 1 face (outside measurement)
    "face_stage_over_landmarker": 1.15,  # bridge face stage per frame / bare FaceLandmarker call
    "audio_ours_over_opensmile": 0.5,  # our audio features / openSMILE eGeMAPS streaming (CPU time)
}

# durations: quick (< 2 min in all) and full
PROFILES = {
    "quick": {"bridge_s": 12.0, "warmup_s": 3.0, "floor_frames": 60, "audio_s": 4.0, "audio_rounds": 2,
              "fanout_s": 3.0, "fanout_clients": (1, 10, 50), "growth_ticks": 20, "growth_windows": (0.5, 1, 2, 4),
              "cpu_warm_s": 8.0, "cpu_measure_s": 6.0, "cpu_duration_s": 15.0, "cpu_repeats": 1,
              "cpu_monitor": (True, False), "cpu_presets": ("configs/performance.yaml",), "cpu_empty_room": True,
              "faces_counts": (1, 2, 4), "faces_frames": 90, "faces_repeats": 1, "stages_faces": (1,)},
    "full": {"bridge_s": 90.0, "warmup_s": 5.0, "floor_frames": 300, "audio_s": 30.0, "audio_rounds": 7,
             "fanout_s": 15.0, "fanout_clients": (1, 10, 50), "growth_ticks": 300,
             "growth_windows": (0.5, 1, 2, 4),
             # the outside measurement: the user's command for 30 s, CPU from second 9 to second 24, 3 runs each
             "cpu_warm_s": 9.0, "cpu_measure_s": 15.0, "cpu_duration_s": 30.0, "cpu_repeats": 3,
             "cpu_monitor": (True, False), "cpu_presets": ("configs/performance.yaml",), "cpu_empty_room": True,
             "faces_counts": (1, 2, 4), "faces_frames": 300, "faces_repeats": 3,
             # the wire + stages run again with 2 and 4 people in view (people.num_faces = N, a video of N real faces)
             "stages_faces": (1, 2, 4), "stages_faces_s": 45.0},
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
    """(path or None for the packaged default, description). Without packaged weights that fit this build's
    features (missing, or trained on another feature layout): random weights of the default architecture (timing
    does not depend on the values), said so in the results."""
    from bridge.config import Config
    from bridge.model.affect import WeightsError, default_weights_path
    from bridge.pipeline import load_model

    if weights:
        return weights, weights
    why = "packaged weights missing"
    if default_weights_path().is_file():
        try:
            load_model(Config())
            return None, f"packaged ({default_weights_path()})"
        except WeightsError as e:
            why = f"packaged weights do not fit this build's features ({str(e).splitlines()[1].strip()})"
    import torch

    from bridge.model.affect import AffectNet, save_weights
    from bridge.model.tick import feature_schema
    from bridge.labels import LABELS

    cfg = Config()
    sch = feature_schema(cfg.audio, cfg.video, cfg.model.tick_hz)
    a, f = len(sch["audio_names"]), len(sch["face_names"])
    torch.manual_seed(0)
    p = workdir / "random-weights.pt"
    save_weights(p, AffectNet(a + f + len(sch["mask_names"]), a, f), {"labels": list(LABELS), "feature_schema": sch})
    return str(p), f"RANDOM weights of the default architecture ({why}; timing is the same)"


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


# ================================================================================================ /proc sampling
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_cpu_s(text: str) -> float:
    """utime + stime (fields 14 and 15 of a /proc stat line) in seconds. The command name (field 2) is in
    parentheses and may itself contain spaces or parentheses, so the fields are counted after the last ')'."""
    rest = text[text.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of a whole process: utime + stime of /proc/<pid>/stat, which sums every thread, the ones that
    already ended included (what `top`, `ps` and `time` report)."""
    return _stat_cpu_s(Path(f"/proc/{pid}/stat").read_text())


def proc_threads(pid: int) -> dict[int, tuple[str, float, float]]:
    """Per thread: tid -> (name, utime + stime of /proc/<pid>/task/<tid>/stat in s, the scheduler's own run time
    from .../schedstat in s). Threads that end while being read are skipped."""
    out = {}
    base = Path(f"/proc/{pid}/task")
    for d in base.iterdir() if base.is_dir() else ():
        try:
            name = (d / "comm").read_text().strip()
            stat = _stat_cpu_s((d / "stat").read_text())
            sched = int((d / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = (name, stat, sched)
    return out


def machine_busy_s() -> float:
    """CPU seconds all processes have used so far, every core (from /proc/stat: all but idle and iowait)."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    return (sum(f[:8]) - f[3] - f[4]) / CLK_TCK  # user nice system idle iowait irq softirq steal


class CpuWindow:
    """CPU of one process between :meth:`start` and :meth:`stop`, read from /proc as an outsider would.

    ``cpu_s``: utime + stime of /proc/<pid>/stat (the figure the bench reports). ``sched_s``: the independent
    reading, the sum over threads alive at both ends of the scheduler's nanosecond run-time counter
    (/proc/<pid>/task/*/schedstat, a different kernel counter and different files). Per-thread names come
    from /proc (MediaPipe's graph threads call themselves ``drishti``)."""

    def __init__(self, pid: int):
        self.pid = pid

    def start(self) -> "CpuWindow":
        self._a = (proc_cpu_s(self.pid), proc_threads(self.pid), machine_busy_s(), time.perf_counter())
        self.loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        return self

    def stop(self) -> dict:
        cpu, thr, busy, wall = proc_cpu_s(self.pid), proc_threads(self.pid), machine_busy_s(), time.perf_counter()
        cpu0, thr0, busy0, wall0 = self._a
        wall -= wall0
        # threads that started inside the window count from zero; one that ended inside it is missed (none do in
        # the bridge's steady state: its threads live as long as it runs)
        sched = sum(v[2] - (thr0[t][2] if t in thr0 else 0.0) for t, v in thr.items())
        by_name: dict[str, float] = {}
        for t, (name, c, _) in thr.items():
            by_name[name] = by_name.get(name, 0.0) + c - (thr0[t][1] if t in thr0 else 0.0)
        ncpu = os.cpu_count() or 1
        d = cpu - cpu0
        return {"wall_s": wall, "cpu_s": d, "pct_of_one_core": 100 * d / wall,
                "pct_of_all_cores": 100 * d / wall / ncpu,
                "sched_cpu_s": sched, "sched_pct_of_all_cores": 100 * sched / wall / ncpu,
                "bench_over_independent": _ratio(d, sched), "threads_alive": len(thr),
                "threads_started": len(set(thr) - set(thr0)), "threads_ended": len(set(thr0) - set(thr)),
                "threads_pct_of_one_core": {k: 100 * v / wall for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])
                                            if v > 0},
                "machine_busy_pct_of_all_cores": 100 * (busy - busy0) / wall / ncpu,
                "others_busy_pct_of_all_cores": 100 * (busy - busy0 - d) / wall / ncpu,
                "loadavg_1min_at_start": self.loadavg}


# ================================================================================================ cpu: outside
def bridge_command() -> list[str]:
    """The command a user types: the installed ``emotion-bridge`` script next to this Python, else
    ``python -m bridge`` (the same entry point, bridge.cli:main)."""
    exe = Path(sys.executable).with_name("emotion-bridge")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "bridge"]


def outside_run(args: list[str], warm_s: float, measure_s: float, duration_s: float, workdir: Path,
                tag: str, config: dict | None = None) -> dict:
    """``emotion-bridge run ARGS --duration duration_s`` as its own process (stdout/stderr to a log); its CPU from
    /proc between ``warm_s`` and ``warm_s + measure_s`` after the start (start-up excluded)."""
    import yaml

    cfg = workdir / f"outside_{tag}.yaml"
    cfg.write_text(yaml.safe_dump(config or {}))
    log = workdir / f"outside_{tag}.log"
    cmd = bridge_command() + ["run", "-c", str(cfg), *args, "--duration", f"{duration_s:g}"]
    env = {**os.environ, "COLUMNS": "200"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep) if x])
    with open(log, "wb") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
    t0 = time.monotonic()
    try:
        for t in (warm_s, warm_s + measure_s):
            while time.monotonic() - t0 < t:
                if p.poll() is not None:
                    raise RuntimeError(f"`{' '.join(cmd)}` ended early (rc {p.returncode}):\n{_tail(log)}")
                time.sleep(min(0.05, max(0.0, t - (time.monotonic() - t0))))
            if t == warm_s:
                win = CpuWindow(p.pid).start()
            else:
                r = win.stop()
        rc = p.wait(timeout=duration_s + 60)
    finally:
        _end(p, 0.1) if p.poll() is None else None
    text = log.read_text(errors="replace")
    import re

    m = re.search(r"sent (\d+) states", text)
    lat = re.search(r"latency p50 ([\d.]+) ms, p99 ([\d.]+) ms(?:; (\d+) face frames)?(?: \(the landmarker ran on "
                    r"(\d+))?", text)
    r.update(rc=rc, command=" ".join(cmd), states_sent=int(m.group(1)) if m else None,
             states_per_s=(int(m.group(1)) / duration_s) if m else None, log=str(log),
             latency_p50_ms=float(lat.group(1)) if lat else None, latency_p99_ms=float(lat.group(2)) if lat else None,
             face_frames_per_s=(int(lat.group(3)) / duration_s) if lat and lat.group(3) else None,
             landmarker_runs_per_s=(int(lat.group(4)) / duration_s) if lat and lat.group(4) else None)
    if rc != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (rc {rc}):\n{_tail(log)}")
    return r


def bench_cpu(prof: dict, workdir: Path, face_model: str, weights: str | None) -> dict:
    """The default configuration, then each preset of ``cpu_presets`` (a configs/ file, monitor as it says)."""
    import yaml

    out = bench_outside(prof, workdir, face_model, weights)
    out["presets"] = {}
    for preset in prof.get("cpu_presets", ()):
        path = Path(preset) if Path(preset).is_absolute() else ROOT / preset
        extra = {f"{sec}.{k}": v for sec, d in (yaml.safe_load(path.read_text()) or {}).items() for k, v in d.items()}
        r = bench_outside({**prof, "cpu_monitor": (True,)}, workdir, face_model, weights, extra=extra,
                          tag=path.stem)
        out["presets"][path.stem] = {"config": str(preset), "settings": extra, **r["monitor"],
                                     "runs": r["runs"]["monitor"]}
    if prof.get("cpu_empty_room"):
        # nobody in front of the camera: the idle face rate (default) against the landmarker on every frame
        room = empty_room_video(workdir / "empty_room.mp4")
        out["empty_room"] = {}
        for name, extra in (("idle_face_fps_default", {}), ("idle_off", {"video.idle_face_fps": 0.0})):
            r = bench_outside({**prof, "cpu_monitor": (True,)}, workdir, face_model, weights, extra=extra,
                              video=room, tag=f"room_{name}_")
            out["empty_room"][name] = {"settings": extra, **r["monitor"], "runs": r["runs"]["monitor"]}
    return out


def empty_room_video(path: Path, seconds: float = 6.0) -> Path:
    """A camera looking at a still scene with nobody in it (scikit-image's coffee photo, sensor noise of 2 grey
    levels, mp4v), 640x480 at 30 fps."""
    if path.is_file():
        return path
    import cv2
    from skimage import data

    room = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (640, 480)).astype(np.float32)
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 480))
    for _ in range(int(seconds * FPS)):
        w.write(np.clip(room + rng.normal(0, 2, room.shape), 0, 255).astype(np.uint8))
    w.release()
    return path


def bench_outside(prof: dict, workdir: Path, face_model: str, weights: str | None, extra: dict | None = None,
                  video: Path | None = None, tag: str = "") -> dict:
    """The bridge CPU as an outsider measures it: ``emotion-bridge run --video face.mp4 --audio speech.wav --loop
    --speed realtime --duration 30``, with and without the monitor, ``cpu_repeats`` runs each, interleaved.
    Free ports (a config file passed with -c) so that other bridges on the machine do not collide."""
    v, audio = media(workdir)
    video = video or v
    base = ["--video", str(video), "--audio", str(audio), "--loop", "--speed", "realtime", "--face-model",
            face_model]
    if weights:
        base += ["--weights", weights]
    runs: dict[str, list[dict]] = {}
    for rep in range(int(prof["cpu_repeats"])):
        for monitor in prof["cpu_monitor"]:
            key = "monitor" if monitor else "no_monitor"
            cfg = {"websocket": {"port": free_port()}, "osc": {"targets": [f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"],
                                                                "control_port": free_port(socket.SOCK_DGRAM)},
                   "monitor": {"port": free_port()}}
            for k, val in (extra or {}).items():
                sec, _, name = k.partition(".")
                if (sec, name) not in (("websocket", "port"), ("monitor", "port"), ("osc", "control_port"),
                                       ("osc", "targets")):
                    cfg.setdefault(sec, {})[name] = val
            args = base + ([] if monitor else ["--no-monitor"])
            runs.setdefault(key, []).append(outside_run(args, prof["cpu_warm_s"], prof["cpu_measure_s"],
                                                        prof["cpu_duration_s"], workdir, f"{tag}{key}_{rep}", cfg))
    out: dict = {"method": f"/proc/<pid>/stat utime+stime of the `emotion-bridge run` process (all threads) from "
                           f"second {prof['cpu_warm_s']:g} to {prof['cpu_warm_s'] + prof['cpu_measure_s']:g} of a "
                           f"{prof['cpu_duration_s']:g} s run; independent check: per-thread schedstat run time",
                 "cores": os.cpu_count(), "runs": runs}
    for key, rs in runs.items():
        pct = [r["pct_of_all_cores"] for r in rs]
        out[key] = {"pct_of_all_cores": {"median": float(np.median(pct)), "min": float(min(pct)),
                                         "max": float(max(pct))},
                    "pct_of_one_core_median": float(np.median([r["pct_of_one_core"] for r in rs])),
                    "bench_over_independent": [r["bench_over_independent"] for r in rs],
                    "loadavg_at_start": [r["loadavg_1min_at_start"] for r in rs],
                    "others_busy_pct_of_all_cores": [r["others_busy_pct_of_all_cores"] for r in rs],
                    "face_frames_per_s": [r.get("face_frames_per_s") for r in rs],
                    "landmarker_runs_per_s": [r.get("landmarker_runs_per_s") for r in rs],
                    "latency_p99_ms": [r.get("latency_p99_ms") for r in rs]}
    allr = [r for rs in runs.values() for r in rs]
    out["pct_of_all_cores"] = float(np.median([r["pct_of_all_cores"] for r in allr]))
    out["pct_of_one_core"] = float(np.median([r["pct_of_one_core"] for r in allr]))
    dev = [abs(r["bench_over_independent"] - 1) for r in allr if math.isfinite(r["bench_over_independent"])]
    out["agrees_with_independent_within_10pct"] = bool(dev) and max(dev) <= 0.10
    out["max_deviation_from_independent"] = max(dev) if dev else float("nan")
    return out


# ================================================================================================ wire, stages
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


class StageClock:
    """CPU time of the calling thread (``time.thread_time``) spent inside chosen methods, per call: robust to
    other load on the machine (a descheduled thread's wall time grows, its CPU time does not). Wrappers are
    instance attributes; the bridge calls them as before."""

    def __init__(self):
        self.acc: dict[str, list] = {}
        self._lock = threading.Lock()

    def wrap(self, obj, attr: str, name: str) -> None:
        fn = getattr(obj, attr, None)
        if fn is None or not callable(fn):
            return
        slot = self.acc.setdefault(name, [0.0, 0])
        lock, tt = self._lock, time.thread_time

        def timed(*a, **kw):
            t0 = tt()
            try:
                return fn(*a, **kw)
            finally:
                d = tt() - t0
                with lock:
                    slot[0] += d
                    slot[1] += 1

        setattr(obj, attr, timed)

    def snapshot(self) -> dict[str, tuple[float, int]]:
        with self._lock:
            return {k: (v[0], v[1]) for k, v in self.acc.items()}

    @staticmethod
    def diff(a: dict, b: dict) -> dict[str, dict]:
        return {k: {"cpu_s": b[k][0] - a.get(k, (0.0, 0))[0], "calls": b[k][1] - a.get(k, (0.0, 0))[1]} for k in b}


def _optional_stage_hooks(bridge) -> list[tuple[object, str, str]]:
    """Evidence that only some builds have (expression network per face, voice-activity model, speech encoder):
    (owner, attribute, stage name) for whichever of them this bridge carries. A callable attribute is wrapped
    itself (``tracker._expr(...)``); an object is wrapped at its first known method."""
    hooks = []
    tr, au = bridge.tracker, getattr(bridge.engine, "audio", None)
    for obj, names, stage in ((tr, ("_expr_faces", "_expr", "expression", "expr", "expression_net"), "expression"),
                              (au, ("vad", "_vad"), "vad"), (au, ("encoder", "_encoder", "speech_encoder"), "encoder"),
                              (bridge.engine, ("vad", "_vad"), "vad"),
                              (bridge.engine, ("encoder", "_encoder", "speech_encoder"), "encoder")):
        for n in names:
            o = getattr(obj, n, None) if obj is not None else None
            if o is None:
                continue
            if callable(o):
                hooks.append((obj, n, stage))
            else:  # every known method: the speech encoder has mel() and embed(), the VAD process()
                hooks += [(o, m, stage) for m in ("process", "mel", "embed", "encode", "predict", "infer", "step")
                          if callable(getattr(o, m, None))]
            break
    return hooks


def stage_table(b: dict, ncpu: int) -> dict:
    """Per-stage CPU of the bridge run: ms of CPU per face frame / per state and % of one core. Native threads
    (MediaPipe's ``drishti`` graph threads and its dispatcher) are counted to the landmarker; the Python side of
    each stage is the calling thread's CPU time inside it (``time.thread_time``)."""
    wall, sc, th = b["wall_s"], b["stage_cpu"], b["threads_cpu_s"]
    frames, states = max(1, b["face_frames"]), max(1, b["published"])
    g = lambda k: sc.get(k, {}).get("cpu_s", 0.0)  # noqa: E731
    native = th.get("mediapipe-graph", 0.0) + th.get("mediapipe-dispatch", 0.0)
    rows = {
        "landmarker": (native + g("landmarker_call"), frames,
                       "MediaPipe graph threads + its dispatcher + the Python side of detect_for_video"),
        "face post-processing": (g("face_process") - g("landmarker_call") - g("expression") + g("push_face")
                                 + g("push_faces"), frames,
                                 "FaceTracker.process around the landmarker (colour conversion, results to numpy, "
                                 "pose) + FaceWindow push + person tracking"),
        "expression net": (g("expression"), frames, "expression network per face (when the build has one)"),
        "audio evidence": (g("push_audio") + g("audio_snapshot"), states,
                           "incremental audio features (+ voice-activity model / speech encoder when present) and "
                           "the window snapshot per state"),
        "tick assembly": (g("vector") - g("audio_snapshot"), states, "face window statistics and the tick vector"),
        "model step": (g("people_step") if "people_step" in sc else g("model_step"), states,
                       "PeopleEngine.step: the model step of every person present (one batched call) and label "
                       "hysteresis, voice attribution, crowd state"),
        "publish": (g("publish") + th.get("websocket", 0.0), states,
                    "OSC encode + send, JSON for WebSocket, the WebSocket server thread"),
        "capture": (sum(v for k, v in th.items() if k.startswith("video-decode") or k.startswith("native (av:")),
                    frames, "video file decode (a camera's grab thread on a live input)"),
    }
    # parts of "audio evidence" that only some builds have (inside push_audio, so not added to the total)
    for k, what in (("vad", "of which the voice-activity model"), ("encoder", "of which the speech encoder")):
        if k in sc:
            rows[f"  {what}"] = (g(k), states, what)
    out = {}
    for k, (cpu, n, what) in rows.items():
        out[k] = {"ms_per_unit": 1000.0 * cpu / n, "unit": "face frame" if n == frames else "state",
                  "pct_of_one_core": 100.0 * cpu / wall, "what": what}
    accounted = sum(v[0] for k, v in rows.items() if not k.startswith("  "))
    out["other"] = {"ms_per_unit": 1000.0 * (b["cpu_s"] - accounted) / states, "unit": "state",
                    "pct_of_one_core": 100.0 * (b["cpu_s"] - accounted) / wall,
                    "what": "everything else: worker loops, locks, the ticker's wake-ups, health, the interpreter"}
    out["total"] = {"ms_per_unit": 1000.0 * b["cpu_s"] / states, "unit": "state",
                    "pct_of_one_core": 100.0 * b["cpu_s"] / wall, "pct_of_all_cores": 100.0 * b["cpu_s"] / wall / ncpu,
                    "what": "the whole bridge process"}
    out["calls"] = {k: v["calls"] for k, v in sc.items()}
    return out


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
    n_faces = int(spec.get("num_faces", 1))
    over = {
        "video.source": spec["video"], "audio.source": spec["audio"], "sources.speed": "realtime",
        "sources.loop": True, "websocket.port": spec["ws_port"], "monitor.enabled": False, "osc.control_port": 0,
        "osc.targets": [f"127.0.0.1:{spec['osc_port']}"], "video.face_model": spec["face_model"],
        "logging.level": "WARNING", "people.num_faces": n_faces,
    }
    if spec.get("weights"):
        over["model.weights"] = spec["weights"]
    cfg = load_config(None, over)
    floor_before = _floor(loop_frames, spec["face_model"], 1_000) if n_floor else None

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
    stages = StageClock()
    stages.wrap(bridge.tracker, "process", "face_process")
    if callable(getattr(bridge.tracker, "_run_landmarker", None)):  # every landmarker of detector on demand
        stages.wrap(bridge.tracker, "_run_landmarker", "landmarker_call")
    elif getattr(bridge.tracker, "_landmarker", None) is not None:
        stages.wrap(bridge.tracker._landmarker, "detect_for_video", "landmarker_call")
    for obj, attr, name in _optional_stage_hooks(bridge):
        stages.wrap(obj, attr, name)
    stages.wrap(bridge.engine, "push_face", "push_face")
    stages.wrap(bridge.engine, "push_audio", "push_audio")
    stages.wrap(bridge.engine.audio, "snapshot", "audio_snapshot")
    stages.wrap(bridge.engine, "vector", "vector")
    stages.wrap(bridge.people, "push_faces", "push_faces")
    stages.wrap(bridge.runtime, "step", "model_step")
    stages.wrap(bridge.people, "step", "people_step")
    stages.wrap(bridge.hub, "publish", "publish")
    proc = psutil.Process()
    bridge.start()
    try:
        time.sleep(spec["warmup_s"])
        names = _thread_names()
        c0, th0, st0 = proc.cpu_times(), _thread_cpu(proc, names), dict(bridge.stage_s)
        sc0 = stages.snapshot()
        sys0 = psutil.cpu_times()
        f0, p0, n_calls0, w0 = bridge.face_frames, bridge.hub.published, len(calls), time.perf_counter()
        g0 = dict(bridge.gate.counts)
        nf0, nt0 = len(face_ev), len(tick_ev)
        t_start_wall = time.time()
        time.sleep(spec["bridge_s"])
        names = _thread_names()
        c1, th1, st1 = proc.cpu_times(), _thread_cpu(proc, names), dict(bridge.stage_s)
        sc1 = stages.snapshot()
        sys1 = psutil.cpu_times()
        f1, p1, w1 = bridge.face_frames, bridge.hub.published, time.perf_counter()
        gate = {k: v - g0.get(k, 0) for k, v in bridge.gate.counts.items()}
        t_end_wall = time.time()
        health = bridge.health()
        lat_self = list(bridge.hub.latencies_ms)[-(p1 - p0):] if p1 > p0 else []
        n = min(len(calls), len(pushes))
        face_calls = [a + b for a, b in zip(calls[n_calls0:n], pushes[n_calls0:n])]
        fev, tev = face_ev[nf0:], tick_ev[nt0:]
    finally:
        bridge.stop()
    parts = _decompose(fev, tev)
    floor_after = _floor(loop_frames, spec["face_model"], 1_000, raw_first=False) if n_floor else None
    wall = w1 - w0
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    machine_busy = (sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0.0)) - (sum(sys0) - sys0.idle
                                                                          - getattr(sys0, "iowait", 0.0))
    threads = {k: th1.get(k, 0.0) - th0.get(k, 0.0) for k in set(th0) | set(th1)}
    out = {
        "wall_s": wall, "cpu_s": cpu, "machine_busy_s": machine_busy, "t_start_wall": t_start_wall,
        "t_end_wall": t_end_wall,
        "face_frames": f1 - f0, "published": p1 - p0, "threads_cpu_s": threads, "gate": gate,
        "stage_s": {k: st1[k] - st0.get(k, 0.0) for k in st1},
        "face_calls_s": face_calls, "self_latency_ms": lat_self, "parts_ms": parts,
        "floor_before": floor_before, "floor_after": floor_after,
        "video_source": health["sources"]["video"], "audio_source": health["sources"]["audio"],
        "workers": health["workers"], "outputs": health.get("outputs", {}),
        "torch_threads": cfg.model.threads, "num_faces": n_faces,
        "people_in_view": health.get("people", {}).get("in_view"),
        "expression_runs": getattr(bridge.tracker, "expr_runs", None),
        "stage_cpu": StageClock.diff(sc0, sc1),
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


def group_video(workdir: Path, n: int) -> Path:
    """A 640x360 30 fps video of ``n`` real faces (the astronaut photo and FER+ faces, each moving slightly: the
    composition of benchmarks/people_cost.py and tests/test_people.py). Needs ../shared/data/ferplus."""
    path = workdir / f"group{n}.avi"
    if not path.is_file():
        for d in (ROOT / "benchmarks", ROOT / "tests"):
            if str(d) not in sys.path:
                sys.path.insert(0, str(d))
        import people_cost

        people_cost.group_video(path, n, seconds=6.0)
    return path


def faces_row(r: dict) -> dict:
    """One line of the 1 / 2 / 4 faces table: CPU, rates, capture-to-wire, the per-stage ms."""
    st, w = r["stages"], r["wire"]
    return {"num_faces": st["num_faces"], "people_in_view_at_end": st["people_in_view_at_end"],
            "pct_of_all_cores": st["pct_of_all_cores"], "states_per_s": st["states_per_s"],
            "face_frames_per_s": st["face_frames_per_s"], "landmarker_runs_per_s": st.get("landmarker_runs_per_s"),
            "wire_p50_ms": w["ws_receive_minus_t_capture_ms"]["p50"],
            "wire_p99_ms": w["ws_receive_minus_t_capture_ms"]["p99"],
            "others_busy_pct_of_all_cores": st["others_busy_pct_of_all_cores"],
            "expression_runs_per_face_frame": st["expression_runs_per_face_frame"],
            "ms": {k: v["ms_per_unit"] for k, v in st["per_stage"].items()
                   if isinstance(v, dict) and "ms_per_unit" in v}}


def bench_bridge(prof: dict, workdir: Path, face_model: str, weights: str | None, num_faces: int = 1,
                 video: Path | None = None) -> dict:
    """The wire run: the full bridge in a child process (``num_faces`` people in view: ``video`` shows that many
    faces; the bare-landmarker floor is measured with one face only), a separate receiver process."""
    v1, audio = media(workdir)
    video = video or v1
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
                   "bridge_s": prof["bridge_s"], "floor_frames": prof["floor_frames"] if num_faces == 1 else 0,
                   "out": str(br_out), "num_faces": num_faces}
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

    fb, fa = b["floor_before"] or {"raw_s": [], "tracker_s": [], "face_found": 0}, b["floor_after"] or {
        "raw_s": [], "tracker_s": [], "face_found": 0}
    raw_s = fb["raw_s"][10:] + fa["raw_s"][10:]  # first calls warm MediaPipe up
    trk_s = fb["tracker_s"][10:] + fa["tracker_s"][10:]
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
        "face_found_in_floor_frames": fb["face_found"] + fa["face_found"],
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
        "per_stage": stage_table(b, ncpu),
        "num_faces": num_faces, "people_in_view_at_end": b.get("people_in_view"),
        "expression_runs_per_face_frame": (b["expression_runs"] / max(1, b["face_frames"])
                                           if b.get("expression_runs") is not None else None),
        # the frame gate: landmarker runs, frames held (steady faces, video.steady_face_fps; a group sharing the
        # landmarker, video.faces_per_s), still
        # frames reused, frames above video.face_fps
        "gate_per_s": {k: v / wall for k, v in b.get("gate", {}).items()},
        "landmarker_runs_per_s": b.get("gate", {}).get("run", 0) / wall,
        "notes": "inside the bench's own bridge process (the wire run): thread CPU time per stage; the outside "
                 "figure of the plain command is the cpu section",
    }
    return {"wire": res_wire, "stages": res_cpu}


# ================================================================================================ faces
def tiled_faces(n_faces: int, n_frames: int, size=(640, 480)) -> list[np.ndarray]:
    """``n_frames`` BGR frames with ``n_faces`` real faces (scikit-image's astronaut photo, tiled 1, 2 side by side
    or 2 x 2), each moving slightly on its own (scale, rotation, shift), like visitors standing in front of a
    camera."""
    import cv2
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    w, h = size
    cols = 1 if n_faces == 1 else 2
    rows = (n_faces + cols - 1) // cols
    cw, ch = w // cols, h // rows
    base = 0.9 if n_faces == 1 else min(cw / 512 * 1.6, ch / 400 * 1.4) * 0.9
    out = []
    for i in range(n_frames):
        a = 2 * np.pi * i / max(1, n_frames)
        canvas = np.zeros((h, w, 3), np.uint8)
        for k in range(n_faces):
            r, c = divmod(k, cols)
            m = cv2.getRotationMatrix2D((256, 200), 2.0 * np.sin(a + k), base * (1 + 0.03 * np.sin(2 * a + k)))
            m[:, 2] += (cw / 2 - 256 + 12 * np.sin(a + k), ch / 2 - 200 + 8 * np.cos(a + k))
            canvas[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = cv2.warpAffine(face, m, (cw, ch),
                                                                             borderMode=cv2.BORDER_REFLECT)
        out.append(canvas)
    return out


def child_faces(spec: dict) -> None:
    """Separate process: the FaceLandmarker (VIDEO mode, blendshapes and pose on, results read with numpy: as
    FaceTracker builds it) with
    ``num_faces`` = N on frames of N faces, paced at 30 fps; CPU of the whole process per frame (its graph
    threads included) for each N, rounds interleaved."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

    counts, n, rounds = spec["counts"], int(spec["frames"]), int(spec["rounds"])
    frames = {k: [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in tiled_faces(k, min(n, 150))] for k in counts}
    from bridge.features.landmarker_results import fast_results  # as FaceTracker builds it

    lms = {k: fast_results(FaceLandmarker.create_from_options(FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=spec["face_model"]), running_mode=RunningMode.VIDEO, num_faces=k,
        min_face_detection_confidence=0.5, min_face_presence_confidence=0.5, min_tracking_confidence=0.5,
        output_face_blendshapes=True, output_facial_transformation_matrixes=True))) for k in counts}
    ts = {k: 0 for k in counts}
    res: dict = {str(k): {"cpu_ms_per_frame": [], "found_mean": [], "with_expression_ms_per_frame": []}
                 for k in counts}
    expr = None
    try:  # the expression network per face, where the build has one (issue 11): FaceTracker runs it per face
        from bridge.features.expression import FaceExpression

        import torch

        torch.set_num_threads(1)  # as the bridge runs torch (model.threads)
        expr = FaceExpression()
    except ImportError:
        pass
    bgr = {k: [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames[k]] for k in counts}

    def go(k: int, frames_n: int, record: bool, with_expr: bool = False) -> None:
        fr = frames[k]
        found = 0
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(frames_n):
            ts[k] += 33
            r = lms[k].detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=fr[i % len(fr)]), ts[k])
            found += len(r.face_landmarks)
            if with_expr:
                for j, marks in enumerate(r.face_landmarks):
                    bs = np.array([c.score for c in r.face_blendshapes[j]], np.float32)
                    expr(bgr[k][i % len(fr)], np.ascontiguousarray(marks.xyz), bs)
            rem = t0 + (i + 1) / FPS - time.perf_counter()
            if rem > 0:
                time.sleep(rem)
        if record:
            key = "with_expression_ms_per_frame" if with_expr else "cpu_ms_per_frame"
            res[str(k)][key].append(1000.0 * (time.process_time() - c0) / frames_n)
            if not with_expr:
                res[str(k)]["found_mean"].append(found / frames_n)

    for k in counts:
        go(k, 20, False)  # warm-up: first calls allocate
        if expr is not None:
            go(k, 5, False, True)
    for r in range(rounds):
        for k in counts[r % len(counts):] + counts[:r % len(counts)]:
            go(k, n, True)
            if expr is not None:
                go(k, n, True, True)
    for lm in lms.values():
        threading.Thread(target=lm.close, daemon=True).start()
    Path(spec["out"]).write_text(json.dumps(res))


def bench_faces(prof: dict, workdir: Path, face_model: str) -> dict:
    out_f = workdir / "faces.json"
    out_f.unlink(missing_ok=True)
    counts = list(prof["faces_counts"])
    spec = {"counts": counts, "frames": prof["faces_frames"], "rounds": prof["faces_repeats"],
            "face_model": face_model, "out": str(out_f)}
    p = _run_child(["_faces", json.dumps(spec)], workdir / "faces.log")
    budget = 60 + len(counts) * prof["faces_repeats"] * prof["faces_frames"] / FPS * 3
    try:
        rc = p.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        _end(p, 0.1)
        raise RuntimeError(f"faces child timed out:\n{_tail(workdir / 'faces.log')}") from None
    if rc != 0 or not out_f.exists():
        raise RuntimeError(f"faces child failed (rc {rc}):\n{_tail(workdir / 'faces.log')}")
    r = json.loads(out_f.read_text())
    rows = {}
    for k in counts:
        c = r[str(k)]["cpu_ms_per_frame"]
        rows[str(k)] = {"cpu_ms_per_frame": {"median": float(np.median(c)), "min": float(min(c)), "max": float(max(c))},
                        "pct_of_one_core_at_30fps": float(np.median(c)) * FPS / 10.0,
                        "pct_of_all_cores_at_30fps": float(np.median(c)) * FPS / 10.0 / (os.cpu_count() or 1),
                        "faces_found_mean": float(np.mean(r[str(k)]["found_mean"])), "rounds": len(c)}
        e = r[str(k)].get("with_expression_ms_per_frame") or []
        if e:  # landmarker + the expression network on every face found
            rows[str(k)]["with_expression_ms_per_frame"] = {"median": float(np.median(e)), "min": float(min(e)),
                                                           "max": float(max(e))}
            rows[str(k)]["with_expression_pct_of_all_cores_at_30fps"] = (float(np.median(e)) * FPS / 10.0
                                                                         / (os.cpu_count() or 1))
    one = rows[str(counts[0])]["cpu_ms_per_frame"]["median"]
    for k in counts:
        rows[str(k)]["over_first"] = _ratio(rows[str(k)]["cpu_ms_per_frame"]["median"], one)
    return {"faces": rows, "frames_per_round": prof["faces_frames"],
            "notes": "FaceLandmarker (VIDEO mode, blendshapes + transformation matrix) with num_faces = N on a "
                     "640x480 video of N real faces (astronaut photo tiled), paced at 30 fps, CPU of its own "
                     "process (graph threads included) per frame. The landmarker stage only: the whole bridge with "
                     "several people awaits multi-person tracking (issue 12)."}


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
        r = bench_bridge(prof, wd, fm, w)
        by = {1: faces_row(r)}
        for n in prof.get("stages_faces", (1,)):
            if n > 1:
                say(f"wire + stages with {n} people in view")
                rn = bench_bridge({**prof, "bridge_s": prof.get("stages_faces_s", prof["bridge_s"])}, wd, fm, w,
                                  num_faces=n, video=group_video(wd, n))
                by[n] = faces_row(rn)
        r["stages"]["by_faces"] = by
        return r

    section(("smoothing",), "smoothing: reading the training report",
            lambda: bench_smoothing(Path(report) if report else ROOT / "artifacts" / "train" / "report.json"))
    section(("cpu",), f"cpu: `emotion-bridge run` as its own process, CPU from /proc, {prof['cpu_repeats']} x "
                      f"{len(prof['cpu_monitor'])} runs of {prof['cpu_duration_s']:g} s",
            lambda: bench_cpu(prof, wd, face_model_path(face_model), weights_path(wd, weights)[0]))
    section(("faces",), "faces: the landmarker stage with " + "/".join(map(str, prof["faces_counts"])) + " faces",
            lambda: bench_faces(prof, wd, face_model_path(face_model)))
    section(("wire", "stages"), f"wire + stages: full bridge for {prof['warmup_s'] + prof['bridge_s']:.0f} s (+ bare "
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
        t.append({"name": f"whole bridge CPU at 30 fps face+voice, 1 face, outside /proc (% of {s['cpu']['cores']} "
                          f"cores, median of runs)",
                  "target": f"<= {TARGETS['cpu_pct_of_all_cores']} %", "measured": v, "unit": "%",
                  "met": bool(v <= TARGETS["cpu_pct_of_all_cores"])})
        v = s["cpu"]["max_deviation_from_independent"]
        t.append({"name": "bench CPU figure vs independent /proc reading (schedstat)", "target": "<= 0.1",
                  "measured": v, "unit": "(relative)", "met": bool(s["cpu"]["agrees_with_independent_within_10pct"])})
    if "audio" in s:
        v = s["audio"]["ratios_cpu"]["ours_over_opensmile_lld_func"]["median"]
        t.append({"name": "our audio features / openSMILE eGeMAPS streaming (LLD + 1.5 s functionals at 30 Hz)",
                  "target": f"<= {TARGETS['audio_ours_over_opensmile']}x", "measured": v, "unit": "x",
                  "met": bool(v <= TARGETS["audio_ours_over_opensmile"])})
    return t


def _spread(x: dict, cores: int) -> str:
    return f"{_f(x['median'])} % of {cores} cores (runs {_f(x['min'])}-{_f(x['max'])})"


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
        for key in ("monitor", "no_monitor"):
            if key in c:
                x = c[key]["pct_of_all_cores"]
                rows.append(("cpu (outside)", f"emotion-bridge run, {key.replace('_', ' ')}",
                             f"{_f(x['median'])} % of {c['cores']} cores (runs {_f(x['min'])}-{_f(x['max'])}); "
                             f"load {', '.join(_f(v) for v in c[key]['loadavg_at_start'])}; landmarker runs/s "
                             f"{', '.join(_f(v) for v in c[key].get('landmarker_runs_per_s') or [])}"))
        for name, x in c.get("presets", {}).items():
            rows.append(("cpu (outside)", f"preset {name}", _spread(x["pct_of_all_cores"], c["cores"])))
        for name, x in c.get("empty_room", {}).items():
            rows.append(("cpu (outside)", f"empty room, {name}", _spread(x["pct_of_all_cores"], c["cores"])))
        rows.append(("cpu (outside)", "bench / independent /proc",
                     f"max deviation {_f(100 * c['max_deviation_from_independent'])} %"))
        r0 = next(iter(c["runs"].values()))[0]
        th = ", ".join(f"{k} {_f(v)}" for k, v in list(r0["threads_pct_of_one_core"].items())[:5])
        rows.append(("cpu (outside)", "threads by name (% of a core, run 1)", th))
    if "stages" in s:
        c = s["stages"]
        for k, v in c["per_stage"].items():
            if k == "calls":
                continue
            rows.append(("per stage (CPU)", k, f"{_f(v['ms_per_unit'], 2)} ms per {v['unit']}  = "
                                               f"{_f(v['pct_of_one_core'])} % of a core"))
        for n, r in c.get("by_faces", {}).items():
            rows.append(("people in view", f"{n} face{'s' if str(n) != '1' else ''}",
                         f"{_f(r['pct_of_all_cores'])} % of all cores, {_f(r['states_per_s'])} states/s, "
                         f"{_f(r['face_frames_per_s'])} face frames/s (landmarker "
                         f"{_f(r.get('landmarker_runs_per_s'))}/s), capture-to-wire p50 {_f(r['wire_p50_ms'])} / "
                         f"p99 {_f(r['wire_p99_ms'])} ms; ms: " + ", ".join(
                             f"{k} {_f(v, 2)}" for k, v in r["ms"].items() if not k.startswith(" "))))
    if "faces" in s:
        for k, v in s["faces"]["faces"].items():
            m = v["cpu_ms_per_frame"]
            rows.append(("landmarker stage", f"{k} face{'s' if k != '1' else ''}",
                         f"{_f(m['median'], 2)} ms CPU per frame ({_f(m['min'], 2)}-{_f(m['max'], 2)}) = "
                         f"{_f(v['pct_of_all_cores_at_30fps'])} % of all cores at 30 fps; found "
                         f"{_f(v['faces_found_mean'], 2)}"))
            if "with_expression_ms_per_frame" in v:
                rows.append(("landmarker stage", f"{k} + expression net",
                             f"{_f(v['with_expression_ms_per_frame']['median'], 2)} ms CPU per frame = "
                             f"{_f(v['with_expression_pct_of_all_cores_at_30fps'])} % of all cores at 30 fps"))
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
        out += ["| `emotion-bridge run` (outside, /proc) | % of 2 cores: median | runs | % of one core | bench / "
                "independent | load avg at start |", "|---|---|---|---|---|---|"]
        for key in ("monitor", "no_monitor"):
            if key in c:
                x = c[key]
                out.append(f"| {key.replace('_', ' ')} | **{_f(x['pct_of_all_cores']['median'])}** | "
                           f"{', '.join(_f(r['pct_of_all_cores']) for r in c['runs'][key])} | "
                           f"{_f(x['pct_of_one_core_median'])} | "
                           f"{', '.join(_f(v, 3) for v in x['bench_over_independent'])} | "
                           f"{', '.join(_f(v, 2) for v in x['loadavg_at_start'])} |")
        for name, x in c.get("empty_room", {}).items():
            out.append(f"| empty room (no face), {name.replace('_', ' ')} | "
                       f"**{_f(x['pct_of_all_cores']['median'])}** | "
                       f"{', '.join(_f(r['pct_of_all_cores']) for r in x['runs'])} | "
                       f"{_f(x['pct_of_one_core_median'])} | "
                       f"{', '.join(_f(v, 3) for v in x['bench_over_independent'])} | "
                       f"{', '.join(_f(v, 2) for v in x['loadavg_at_start'])} |")
        for name, x in c.get("presets", {}).items():
            out.append(f"| preset `{x['config']}` | **{_f(x['pct_of_all_cores']['median'])}** | "
                       f"{', '.join(_f(r['pct_of_all_cores']) for r in x['runs'])} | "
                       f"{_f(x['pct_of_one_core_median'])} | "
                       f"{', '.join(_f(v, 3) for v in x['bench_over_independent'])} | "
                       f"{', '.join(_f(v, 2) for v in x['loadavg_at_start'])} |")
        out.append("")
    if "stages" in s:
        c = s["stages"]["per_stage"]
        out += ["| stage (thread CPU time) | ms per unit | unit | % of one core | what |", "|---|---|---|---|---|"]
        for k, v in c.items():
            if k != "calls":
                out.append(f"| {k} | {_f(v['ms_per_unit'], 2)} | {v['unit']} | {_f(v['pct_of_one_core'])} | "
                           f"{v['what']} |")
        out.append("")
        by = s["stages"].get("by_faces", {})
        if by:
            keys = [k for k in next(iter(by.values()))["ms"] if not k.startswith(" ")]
            out += ["| people in view | % of all cores | states/s | face frames/s | landmarker runs/s | "
                    "wire p50 / p99 ms | " + " | ".join(f"{k} ms" for k in keys) + " |", "|---" * (6 + len(keys)) + "|"]
            for n, r in by.items():
                out.append(f"| {n} | {_f(r['pct_of_all_cores'])} | {_f(r['states_per_s'])} | "
                           f"{_f(r['face_frames_per_s'])} | {_f(r.get('landmarker_runs_per_s'))} | "
                           f"{_f(r['wire_p50_ms'])} / {_f(r['wire_p99_ms'])} | "
                           + " | ".join(_f(r["ms"].get(k), 2) for k in keys) + " |")
            out.append("")
    if "faces" in s:
        out += ["| landmarker stage, faces | CPU ms per frame (median) | rounds min-max | % of all cores at 30 fps | "
                "× one face | faces found |", "|---|---|---|---|---|---|"]
        for k, v in s["faces"]["faces"].items():
            x = v["cpu_ms_per_frame"]
            out.append(f"| {k} | {_f(x['median'], 2)} | {_f(x['min'], 2)}-{_f(x['max'], 2)} | "
                       f"{_f(v['pct_of_all_cores_at_30fps'])} | {_f(v['over_first'], 2)} | "
                       f"{_f(v['faces_found_mean'], 2)} |")
        if any("with_expression_ms_per_frame" in v for v in s["faces"]["faces"].values()):
            out += ["", "| + expression network per face | CPU ms per frame (median) | rounds min-max | "
                        "% of all cores at 30 fps |", "|---|---|---|---|"]
            for k, v in s["faces"]["faces"].items():
                x = v.get("with_expression_ms_per_frame")
                if x:
                    out.append(f"| {k} | {_f(x['median'], 2)} | {_f(x['min'], 2)}-{_f(x['max'], 2)} | "
                               f"{_f(v['with_expression_pct_of_all_cores_at_30fps'])} |")
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
    if argv and argv[0] in ("_bridge", "_receiver", "_clients", "_faces"):
        spec = json.loads(argv[1])
        {"_bridge": child_bridge, "_receiver": child_receiver, "_clients": child_clients,
         "_faces": child_faces}[argv[0]](spec)
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
