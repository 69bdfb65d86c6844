"""MQTT fan-in: N simulated-visitor bridges (separate `emotion-bridge run --source simulate` processes) at R Hz
-> a real Mosquitto broker -> the room aggregator, on this machine. Measures delivery (per-bridge seq numbers
received at the room vs. sent), capture-to-room latency (state t_capture, the bridge's wall clock, to arrival at
the room's MQTT client; same machine so the clocks agree), and the time to recover from a broker crash
(SIGKILL, restarted after --down seconds): until every bridge's states arrive again and until the room
aggregate counts every bridge again.

    python benchmarks/fanin.py --bridges 10 --rate 30 --seconds 30 --out benchmarks/results/fanin.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, d: Path):
        self.port = free_port()
        self.conf = d / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "log_dest stderr", "log_type error", "max_queued_messages 1000"]
        if os.geteuid() == 0:
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bridges", type=int, default=10)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=30.0, help="steady-state measurement window")
    ap.add_argument("--down", type=float, default=2.0, help="broker down time in the restart phase")
    ap.add_argument("--out", type=str, default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import paho.mqtt.client as mqtt

    from bridge.config import Config
    from bridge.room import RoomService

    d = Path(tempfile.mkdtemp(prefix="eb-fanin-"))
    broker = Broker(d)
    broker.start()
    site = "bench"
    cfgfile = d / "bridge.yaml"
    cfgfile.write_text(f"osc:\n  control_port: 0\n  targets: ['127.0.0.1:{free_port()}']\nwebsocket:\n  port: 0\n"
                       f"model:\n  tick_hz: {a.rate}\nmqtt:\n  enabled: true\n  port: {broker.port}\n"
                       f"  site: {site}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(cfgfile), "--source",
                               "simulate", "--seed", str(i), "--bridge-id", f"b{i:02d}", "--no-monitor", "--quiet",
                               "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(d / f"b{i:02d}.log", "w"))
             for i in range(a.bridges)]

    lock = threading.Lock()
    recv: list[tuple[float, str, int, float]] = []  # (arrival wall, bridge, seq, latency ms)

    def on_message(c, u, m):
        t = time.time()
        try:
            msg = json.loads(m.payload)
            with lock:
                recv.append((t, m.topic.split("/")[2], int(msg["seq"]), (t - msg["t_capture"]) * 1000.0))
        except (ValueError, KeyError, TypeError):
            pass

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fanin-meter")
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"emotion-bridge/{site}/+/state", 0)
    sub.on_message = on_message
    sub.reconnect_delay_set(0.5, 8.0)  # the same backoff as the bridges' defaults
    sub.connect_async("127.0.0.1", broker.port, keepalive=10)
    sub.loop_start()
    room = RoomService(Config.model_validate({"mqtt": {"enabled": True, "port": broker.port, "site": site},
                                              "room": {"osc_targets": [f"127.0.0.1:{free_port()}"], "ws_port": 0}}))
    room.start()

    # wait for every bridge, then a warm-up
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        with lock:
            seen = {b for _, b, _, _ in recv}
        if len(seen) == a.bridges:
            break
        time.sleep(0.2)
    t_all = time.monotonic() - t0
    time.sleep(3.0)
    with lock:
        recv.clear()
    w0 = time.time()
    time.sleep(a.seconds)
    w1 = time.time()
    with lock:
        window = [r for r in recv if w0 <= r[0] <= w1]
    per = {}
    for b in sorted({r[1] for r in window}):
        seqs = sorted({r[2] for r in window if r[1] == b})
        per[b] = {"received": len(seqs), "expected": seqs[-1] - seqs[0] + 1,
                  "rate_hz": round(len(seqs) / (w1 - w0), 2)}
    received = sum(p["received"] for p in per.values())
    expected = sum(p["expected"] for p in per.values())
    lat = [r[3] for r in window]
    room_lat = list(room.agg.latencies_ms)[-len(window):]

    # broker crash and restart
    with lock:
        recv.clear()
    t_kill = time.time()
    broker.kill()
    time.sleep(a.down)
    broker.start()
    t_up = time.time()
    t_each: dict[str, float] = {}
    t_room = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(t_each) < a.bridges or t_room is None):
        with lock:
            for t, b, _, _ in recv:
                if t >= t_up and b not in t_each:
                    t_each[b] = t - t_up
        m = room.last
        if (t_room is None and m and m["t_emit"] > t_up and m["bridges"] == a.bridges
                and all(m["t_emit"] - r["age_ms"] / 1000.0 > t_up for r in m["rows"])):
            t_room = m["t_emit"] - t_up  # every bridge's row in the aggregate is from after the restart
        time.sleep(0.02)

    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
    room.stop()
    sub.loop_stop()
    broker.kill()
    res = {
        "bridges": a.bridges, "rate_hz": a.rate, "window_s": round(w1 - w0, 2),
        "states_received": received, "states_sent": expected,
        "delivery_pct": round(100.0 * received / expected, 3) if expected else None,
        "latency_capture_to_room_ms": {"p50": round(pct(lat, 0.5), 2), "p90": round(pct(lat, 0.9), 2),
                                       "p99": round(pct(lat, 0.99), 2), "max": round(max(lat), 2) if lat else None},
        "room_aggregator_latency_ms": {"p50": round(pct(room_lat, 0.5), 2), "p99": round(pct(room_lat, 0.99), 2)},
        "per_bridge": per,
        "startup_all_bridges_s": round(t_all, 2),
        "broker_restart": {"down_s": a.down, "killed_at": t_kill,
                           "first_state_after_restart_s": {"min": round(min(t_each.values()), 3) if t_each else None,
                                                           "max": round(max(t_each.values()), 3) if t_each else None},
                           "bridges_back": len(t_each), "room_all_rows_fresh_again_s": None if t_room is None
                           else round(t_room, 3)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "note": "2 cores shared with other jobs while measured"},
        "command": "python benchmarks/fanin.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
