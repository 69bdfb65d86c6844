"""Cost of several visitors: the live bridge on a 30 fps video of 1, 2 and 4 real faces (the astronaut and FER+
faces, composed as in tests/test_people.py), speech on the audio side, OSC to a local UDP socket.

    PYTHONPATH=. python benchmarks/people_cost.py [--seconds 8] [--out benchmarks/results/people_cost.json]

Per face count: CPU of the whole process over the run (utime + stime from os.times, as a share of 2 cores),
capture -> wire latency of every state at the OutputHub (p50 / p99), states per second, and the per-tick cost of
the people engine (thread CPU of the tick stage). Needs ../shared/data/ferplus and the MediaPipe face model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def group_video(path: Path, n: int, seconds: float = 4.0) -> Path:
    import people_media as pm

    sprites = [pm.astronaut(155), pm.ferplus_face(pm.FER_SAD, 0, 160), pm.ferplus_face(pm.FER_HAPPY, 0, 160),
               pm.ferplus_face(pm.FER_NEUTRAL, 1, 160)][:n]
    w, h = pm.SIZE
    frames = []
    for i in range(int(seconds * pm.FPS)):
        row = []
        for k, img in enumerate(sprites):
            # a 2 x 2 grid, faces far apart (MediaPipe's detector misses faces standing close side by side)
            x = int((70 if k % 2 == 0 else w - 70 - img.shape[1]) + 4 * np.sin(2 * np.pi * i / 60 + k))
            y = int((8 if k < 2 else h - 8 - img.shape[0]) + 3 * np.cos(2 * np.pi * i / 45 + k))
            row.append((img, x, y))
        frames.append(row)
    return pm.write_video(path, frames)


def measure(n: int, video: Path, audio: Path, seconds: float, face_model: str) -> dict:
    from bridge.config import load_config
    from bridge.live import build_bridge

    cfg = load_config(overrides={
        "people.num_faces": n, "video.source": str(video), "audio.source": str(audio), "video.face_model": face_model,
        "sources.loop": True, "osc.targets": ["127.0.0.1:9"], "websocket.enabled": False, "monitor.enabled": False,
        "osc.control_port": 0, "video.mirror": False})
    bridge = build_bridge(cfg)
    bridge.start()
    try:
        time.sleep(2.0)  # warm-up: landmarker graphs, first model steps
        bridge.hub.latencies_ms.clear()
        c0, t0, pub0, tick0 = os.times(), time.monotonic(), bridge.hub.published, bridge.stage_s["tick"]
        faces0 = bridge.face_frames
        time.sleep(seconds)
        c1, t1, pub1, tick1 = os.times(), time.monotonic(), bridge.hub.published, bridge.stage_s["tick"]
        faces1 = bridge.face_frames
        people = [len(bridge.last_state.people or [])] if bridge.last_state is not None else [0]
    finally:
        bridge.stop()
    wall = t1 - t0
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    lat = np.array(bridge.hub.latencies_ms)
    states = pub1 - pub0
    return {"faces": n, "people_seen_at_end": people[0], "cpu_share_of_2_cores": round(cpu / wall / 2, 4),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 2), "latency_p99_ms": round(float(np.percentile(lat, 99)), 2),
            "states_per_s": round(states / wall, 2), "face_frames_per_s": round((faces1 - faces0) / wall, 2),
            "tick_ms": round(1000 * (tick1 - tick0) / max(states, 1), 3), "seconds": round(wall, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--faces", default="1,2,4")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "people_cost.json"))
    ap.add_argument("--face-model", default=os.environ.get("BRIDGE_FACE_MODEL",
                                                          str(ROOT.parent / "shared" / "models" / "face_landmarker.task")))
    a = ap.parse_args(argv)
    import people_media as pm

    d = Path(tempfile.mkdtemp(prefix="people_cost_"))
    audio, _, _ = pm.speech(d / "say.wav", "Welcome to the gallery. Please take your time and look around. "
                                           "The next room shows the paintings of the river.")
    rows = []
    for n in (int(x) for x in a.faces.split(",")):
        video = group_video(d / f"group{n}.avi", n)
        rows.append(measure(n, video, audio, a.seconds, a.face_model))
        print(json.dumps(rows[-1]), flush=True)
    out = {"machine": f"{os.cpu_count()} CPUs (shared)", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "fps": 30, "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
