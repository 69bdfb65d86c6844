"""Soak test: the full live bridge on looping file sources at maximum speed, for N *simulated* hours.

    python benchmarks/soak.py --hours 2 --sample-s 10 --out bench-results/soak.json
    python benchmarks/soak.py --mode tracker --hours 1                          # MediaPipe alone (issue 4321)

``--mode bridge`` (default) builds the real bridge with :func:`bridge.live.build_bridge`: a face video and a
speech file (made with :func:`bridge.demo.make_face_video` / :func:`bridge.demo.make_speech`, or passed with
``--video`` / ``--audio``), ``sources.speed: max`` and ``sources.loop: true``, OSC to an in-process UDP receiver,
a WebSocket client that reads everything (and sends a ``status`` command now and then), a WebSocket client that
connects and never reads (reconnected every ``--stalled-every`` s; the server must drop it), and recording to a
temporary JSONL file. Simulated time is the video time processed (frames / fps): the face landmarker is the
bottleneck; the audio file runs ahead on its own (its simulated seconds are reported too).

``--mode tracker`` runs :class:`bridge.features.face.FaceTracker` alone on the video's frames in VIDEO mode, to
see whether MediaPipe's FaceLandmarker itself grows (mediapipe issue 4321). With the installed MediaPipe it does
not (see docs/RELIABILITY.md), so the tracker is not re-created periodically.

Every ``--sample-s`` seconds it samples RSS (psutil), thread and file-descriptor counts, and the buffers that must
stay bounded (WebSocket client queues, audio ring, recorder queue, face window, frame slot), plus the output
counters. At the end it checks: RSS growth after the warm-up < ``--max-growth`` (5 %), thread count stable,
buffers bounded, outputs still flowing; prints a table and writes JSON. Exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------------------ helpers
def _media(args) -> tuple[Path, Path]:
    from bridge.demo import make_face_video, make_speech

    d = Path(tempfile.gettempdir()) / "emotion-bridge-soak"
    d.mkdir(parents=True, exist_ok=True)
    video = Path(args.video) if args.video else d / "face.mp4"
    audio = Path(args.audio) if args.audio else d / "speech.wav"
    if not video.is_file():
        make_face_video(video, seconds=6.0)
    if not audio.is_file():
        make_speech(audio)
    return video, audio


def _weights(args, cfg) -> str | None:
    """The packaged weights when present, else (so the soak still runs on a checkout without them) random weights
    of the default architecture and the configuration's feature schema."""
    if args.weights:
        return args.weights
    from bridge.model.affect import default_weights_path

    if default_weights_path().is_file():
        return None
    import torch

    from bridge.features.face import FACE_DIM
    from bridge.labels import LABELS
    from bridge.model.affect import AffectNet, save_weights
    from bridge.model.tick import feature_schema

    sch = feature_schema(cfg.audio, cfg.video, cfg.model.tick_hz)
    a = len(sch["audio_names"])
    torch.manual_seed(0)
    p = Path(tempfile.gettempdir()) / "emotion-bridge-soak" / "random-weights.pt"
    save_weights(p, AffectNet(a + FACE_DIM + 4, a, FACE_DIM), {"labels": list(LABELS), "feature_schema": sch})
    print(f"note: no packaged weights; using random weights of the default architecture ({p})", file=sys.stderr)
    return str(p)


class OscCounter(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True, name="soak-osc-rx")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.bundles = 0
        self.health = 0
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            if data.startswith(b"#bundle"):
                self.bundles += 1
            elif data.startswith(b"/bridge/health"):
                self.health += 1


class WsReader(threading.Thread):
    """Reads everything; sends {"cmd": "status"} every 10 s; reconnects if dropped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True, name="soak-ws-reader")
        self.port = port
        self.counts: dict[str, int] = {}
        self.reconnects = 0
        self.stop = False

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.client import connect

        while not self.stop:
            try:
                async with connect(f"ws://127.0.0.1:{self.port}", max_size=2 ** 22) as ws:
                    t_cmd = time.monotonic()
                    while not self.stop:
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 1.0)
                        except asyncio.TimeoutError:
                            continue
                        t = json.loads(raw).get("type", "?")
                        self.counts[t] = self.counts.get(t, 0) + 1
                        if time.monotonic() - t_cmd > 10:
                            t_cmd = time.monotonic()
                            await ws.send('{"cmd":"status"}')
            except Exception:  # noqa: BLE001 - keep reading whatever happens
                self.reconnects += 1
                await asyncio.sleep(0.5)


def _stalled_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and never reads again (tiny receive buffer)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return s


def _proc():
    import psutil

    return psutil.Process()


def _base_sample(proc, t0: float) -> dict:
    with proc.oneshot():
        rss = proc.memory_info().rss
        threads = proc.num_threads()
        fds = proc.num_fds() if hasattr(proc, "num_fds") else proc.num_handles()
    return {"t": round(time.monotonic() - t0, 1), "rss_mb": round(rss / 2 ** 20, 1), "threads": threads,
            "py_threads": threading.active_count(), "fds": fds}


# ------------------------------------------------------------------------------------------------ modes
def soak_bridge(args) -> dict:
    from bridge.config import load_config
    from bridge.live import build_bridge

    video, audio = _media(args)
    osc = OscCounter()
    osc.start()
    rec_dir = Path(tempfile.mkdtemp(prefix="eb-soak-"))
    over = {
        "audio.source": str(audio), "video.source": str(video), "sources.speed": "max", "sources.loop": True,
        "websocket.port": 0, "monitor.enabled": False, "osc.control_port": 0,
        "osc.targets": [f"127.0.0.1:{osc.port}"], "record.path": str(rec_dir / "soak.jsonl"),
        "logging.level": "WARNING",
    }
    if args.face_model:
        over["video.face_model"] = args.face_model
    cfg = load_config(args.config, over)
    w = _weights(args, cfg)
    if w:
        cfg = load_config(args.config, {**over, "model.weights": w})
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bridge = build_bridge(cfg)
    fps = bridge.video_src.fps
    bridge.start()
    reader = WsReader(bridge.hub.ws.port)
    reader.start()
    stalled: socket.socket | None = None
    t_stalled = -1e9
    proc = _proc()
    t0 = time.monotonic()
    target_s = args.hours * 3600.0
    samples: list[dict] = []
    try:
        while True:
            time.sleep(args.sample_s)
            now = time.monotonic()
            if args.stalled_every and now - t_stalled > args.stalled_every:
                if stalled is not None:
                    stalled.close()
                stalled = _stalled_client(bridge.hub.ws.port)
                t_stalled = now
            h = bridge.health()
            vh, ah = h["sources"]["video"], h["sources"]["audio"]
            ws = bridge.hub.ws
            rec = bridge.recorder
            s = _base_sample(proc, t0)
            s.update({
                "sim_video_s": round(bridge.face_frames / fps, 1),
                "sim_audio_s": ah.get("position_s", 0.0),
                "face_frames": bridge.face_frames,
                "published": bridge.hub.published,
                "osc_rx": osc.bundles,
                "ws_rx_states": reader.counts.get("state", 0),
                "ws_clients": ws.n_clients,
                "ws_queue_max": max((c.queue.qsize() for c in list(ws._clients)), default=0),
                "ws_dropped_clients": ws.counters["dropped_clients"],
                "recorder_queue": rec._q.qsize() if rec is not None else None,
                "recorder_written": rec.written if rec is not None else None,
                "audio_ring": ah.get("buffered_s", 0.0),
                "face_window": len(bridge.engine.face._obs),
                "frame_slot_dropped": vh.get("dropped", 0),
                "worker_restarts": sum(wk["restarts"] for wk in h["workers"].values()),
                "video_status": vh["status"], "audio_status": ah["status"],
            })
            samples.append(s)
            if not args.quiet:
                print(f"[{s['t']:7.1f}s] sim {s['sim_video_s'] / 3600:6.3f} h  rss {s['rss_mb']:7.1f} MB  "
                      f"threads {s['threads']:3d}  fds {s['fds']:3d}  states {s['published']:8d}  "
                      f"wsq {s['ws_queue_max']}  recq {s['recorder_queue']}", flush=True)
            if s["sim_video_s"] >= target_s or (args.max_wall_s and now - t0 >= args.max_wall_s):
                break
    finally:
        reader.stop = True
        osc.stop = True
        if stalled is not None:
            stalled.close()
        bridge.stop()
        for p in rec_dir.glob("*"):
            p.unlink()
        rec_dir.rmdir()
    return {"mode": "bridge", "fps": fps, "samples": samples, "ws_reader_reconnects": reader.reconnects,
            "osc_health_messages": osc.health, "max_queue": cfg.websocket.max_queue,
            "recorder_max_queue": 1024}


def soak_tracker(args) -> dict:
    """FaceTracker alone, VIDEO mode, on the video's frames in a loop."""
    import cv2

    from bridge.features import face_model as fm
    from bridge.features.face import FaceTracker

    video, _ = _media(args)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    fps = 30.0
    tracker = FaceTracker(str(fm.resolve(args.face_model)))
    proc = _proc()
    t0 = time.monotonic()
    t_next = t0 + args.sample_s
    target = int(args.hours * 3600 * fps)
    samples: list[dict] = []
    present = 0
    i = 0
    try:
        while i < target:
            obs = tracker.process(frames[i % len(frames)], i / fps)
            present += obs.present
            i += 1
            now = time.monotonic()
            if now >= t_next:
                t_next = now + args.sample_s
                s = _base_sample(proc, t0)
                s.update({"sim_video_s": round(i / fps, 1), "face_frames": i, "present_frac": round(present / i, 3)})
                samples.append(s)
                if not args.quiet:
                    print(f"[{s['t']:7.1f}s] sim {i / fps / 3600:6.3f} h  frames {i:8d}  rss {s['rss_mb']:7.1f} MB  "
                          f"threads {s['threads']:3d}", flush=True)
                if args.max_wall_s and now - t0 >= args.max_wall_s:
                    break
    finally:
        tracker.close()
    import mediapipe

    return {"mode": "tracker", "fps": fps, "samples": samples, "mediapipe": getattr(mediapipe, "__version__", "?")}


# ------------------------------------------------------------------------------------------------ report
def evaluate(res: dict, args) -> dict:
    ss = res["samples"]
    wall = ss[-1]["t"] if ss else 0.0
    warm = [s for s in ss if s["t"] >= args.warmup_s] or ss
    checks: dict[str, dict] = {}
    if len(warm) >= 2:
        # median of the first/last few samples after the warm-up, so one GC moment does not decide
        k = max(1, min(3, len(warm) // 4))
        start = sorted(s["rss_mb"] for s in warm[:k])[k // 2]
        end = sorted(s["rss_mb"] for s in warm[-k:])[k // 2]
        growth = end / start - 1.0
        checks["rss_growth"] = {"ok": growth < args.max_growth, "start_mb": start, "end_mb": end,
                                "growth_pct": round(100 * growth, 2), "limit_pct": 100 * args.max_growth}
        th = [s["threads"] for s in warm]
        checks["threads_stable"] = {"ok": max(th) - min(th) <= args.thread_slack, "min": min(th), "max": max(th)}
        fd = [s["fds"] for s in warm]
        checks["fds_stable"] = {"ok": max(fd) - min(fd) <= 8, "min": min(fd), "max": max(fd)}
    else:
        checks["enough_samples"] = {"ok": False, "n": len(ss)}
    if res["mode"] == "bridge" and ss:
        mq = res["max_queue"]
        checks["buffers_bounded"] = {
            "ok": all(s["ws_queue_max"] <= mq and (s["recorder_queue"] or 0) <= res["recorder_max_queue"]
                      and s["face_window"] <= 256 and s["audio_ring"] <= 60 for s in ss),
            "ws_queue_max": max(s["ws_queue_max"] for s in ss),
            "recorder_queue_max": max((s["recorder_queue"] or 0) for s in ss),
            "face_window_max": max(s["face_window"] for s in ss)}
        if len(ss) >= 2:
            a, b = ss[-2], ss[-1]
            checks["outputs_flowing_at_end"] = {
                "ok": b["published"] > a["published"] and b["osc_rx"] > a["osc_rx"]
                and b["ws_rx_states"] > a["ws_rx_states"] and b["face_frames"] > a["face_frames"],
                "states_last_interval": b["published"] - a["published"],
                "osc_last_interval": b["osc_rx"] - a["osc_rx"],
                "ws_last_interval": b["ws_rx_states"] - a["ws_rx_states"]}
        checks["no_worker_restarts"] = {"ok": ss[-1]["worker_restarts"] == 0, "restarts": ss[-1]["worker_restarts"]}
    sim = ss[-1]["sim_video_s"] if ss else 0.0
    summary = {"mode": res["mode"], "wall_s": wall, "simulated_video_h": round(sim / 3600, 3),
               "speedup": round(sim / wall, 1) if wall else 0.0,
               "ok": all(c["ok"] for c in checks.values()), "checks": checks}
    if res["mode"] == "bridge" and ss:
        summary["simulated_audio_h"] = round(ss[-1]["sim_audio_s"] / 3600, 3)
        summary["states_published"] = ss[-1]["published"]
        summary["ws_dropped_stalled_clients"] = ss[-1]["ws_dropped_clients"]
    return summary


def print_table(res: dict, summary: dict) -> None:
    ss = res["samples"]
    cols = ["t", "sim_video_s", "rss_mb", "threads", "fds"]
    if res["mode"] == "bridge":
        cols += ["published", "osc_rx", "ws_rx_states", "ws_queue_max", "recorder_queue", "face_window"]
    step = max(1, len(ss) // 20)
    rows = ss[::step] + ([ss[-1]] if ss and (len(ss) - 1) % step else [])
    print(" ".join(f"{c:>13s}" for c in cols))
    for s in rows:
        print(" ".join(f"{s.get(c)!s:>13s}" for c in cols))
    print(f"\nwall {summary['wall_s']:.0f} s, simulated {summary['simulated_video_h']:.3f} h of video "
          f"({summary['speedup']}x real time)")
    for name, c in summary["checks"].items():
        detail = ", ".join(f"{k}={v}" for k, v in c.items() if k != "ok")
        print(f"  [{'PASS' if c['ok'] else 'FAIL'}] {name}: {detail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["bridge", "tracker"], default="bridge")
    ap.add_argument("--hours", type=float, default=0.05, help="simulated hours of video to process")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup-s", type=float, default=60.0, help="wall seconds ignored for the growth check")
    ap.add_argument("--max-wall-s", type=float, default=0.0, help="stop after this many wall seconds (0: no cap)")
    ap.add_argument("--max-growth", type=float, default=0.05, help="allowed RSS growth after warm-up (fraction)")
    ap.add_argument("--thread-slack", type=int, default=2, help="allowed thread-count variation after warm-up")
    ap.add_argument("--stalled-every", type=float, default=60.0,
                    help="connect a never-reading WebSocket client every N s (0: never)")
    ap.add_argument("--video"), ap.add_argument("--audio"), ap.add_argument("--config")
    ap.add_argument("--weights"), ap.add_argument("--face-model")
    ap.add_argument("--out", default="bench-results/soak.json")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    res = soak_bridge(args) if args.mode == "bridge" else soak_tracker(args)
    summary = evaluate(res, args)
    print_table(res, summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "summary": summary, **res}, indent=1))
    print(f"wrote {out}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
