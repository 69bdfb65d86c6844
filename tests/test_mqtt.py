"""MQTT fan-in through a real Mosquitto broker: simulated-visitor bridges publish, `room` aggregates; the broker
crashes and comes back; bad messages; a password-protected broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from websockets.sync.client import connect as ws_connect

from bridge.config import Config
from bridge.output import schema
from bridge.rehearsal import SimulatedBridge, SimulatedVisitor, ScriptPlan, parse_script
from bridge.live import attach_outputs
from bridge.room import RoomAggregator, RoomService
from broker import Broker, Collector
from helpers import OscReceiver, free_port, wait_for

pytestmark = pytest.mark.slow


def bridge_cfg(port: int, bridge_id: str, osc_port: int | None = None, **mqtt) -> Config:
    return Config.model_validate({
        "osc": {"targets": [f"127.0.0.1:{osc_port or free_port(2)}"], "control_port": 0},
        "websocket": {"port": 0}, "monitor": {"enabled": False},
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "site": "test", "bridge_id": bridge_id,
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "keepalive_s": 2, **mqtt}})


def sim_bridge(cfg: Config, label: str, face: bool = True, voice: bool = False, seed: int = 1) -> SimulatedBridge:
    plan = ScriptPlan(parse_script({"loop": True, "segments": [
        {"label": label, "seconds": 60, "intensity": 1.0, "face": face, "voice": voice}]}))
    return attach_outputs(SimulatedBridge(cfg, SimulatedVisitor(plan, seed)), cfg)


def room_cfg(port: int, osc_port: int, **room) -> Config:
    return Config.model_validate({
        "mqtt": {"enabled": True, "port": port, "site": "test", "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                 "keepalive_s": 2, "max_message_bytes": 4096},
        "room": {"osc_targets": [f"127.0.0.1:{osc_port}"], "ws_port": 0, "rate_hz": 20, "stale_s": 1.0, **room}})




def room_bundles(rx: OscReceiver) -> list[dict]:
    """The aggregate bundles (the per-bridge rows come in bundles of their own)."""
    return [m for _, m in list(rx.bundles) if "/room/count" in m]


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def test_three_bridges_room_aggregates(broker):
    rx = OscReceiver()
    rx.start()
    bridges = [sim_bridge(bridge_cfg(broker.port, "entrance"), "happy", seed=1),
               sim_bridge(bridge_cfg(broker.port, "hall"), "sad", seed=2),
               sim_bridge(bridge_cfg(broker.port, "empty"), "neutral", face=False, seed=3)]
    room = RoomService(room_cfg(broker.port, rx.port))
    col = Collector(broker.port, ["emotion-bridge/test/#"])
    room.start()
    for b in bridges:
        b.start()
    try:
        assert wait_for(lambda: room.last is not None and room.last["bridges"] == 3, 15), room.last
        time.sleep(1.5)  # the simulated faces settle on their labels
        with ws_connect(f"ws://127.0.0.1:{room.ws.port}") as ws:
            hello = json.loads(ws.recv(timeout=5))
            msg = None
            while msg is None or msg.get("type") != "room":
                msg = json.loads(ws.recv(timeout=5))
        last_osc = room_bundles(rx)[-1]
        rows_osc = next(m for _, m in reversed(rx.bundles) if "/room/bridge/hall/valence" in m)
        # the retained hello/status of every bridge
        hellos = {m[1].split("/")[2]: json.loads(m[2]) for m in col.on("/hello")}
        statuses = {m[1].split("/")[2]: json.loads(m[2])["status"] for m in col.on("/status")}
        for b in bridges:
            b.stop()

        def last_status():
            return {m[1].split("/")[2]: json.loads(m[2])["status"] for m in col.on("/status")}
        assert wait_for(lambda: set(last_status().values()) == {"offline"}, 5), last_status()
        assert wait_for(lambda: room.last["bridges"] == 0 and len(room.last["stale"]) == 3, 5), room.last
    finally:
        for b in bridges:
            b.stop()
        room.stop()
        col.close()
        rx.close()
    assert set(statuses.values()) == {"online"}
    assert hello["type"] == "hello" and hello["room"] == "test"
    assert msg["bridges"] == 3 and msg["count"] == 2, msg  # "empty" has nobody in front of it
    assert list(msg) == [f[0] for f in schema.ROOM_JSON_FIELDS]  # declared in the schema (the docs come from it)
    rows = {r["bridge"]: r for r in msg["rows"]}
    assert set(rows) == {"entrance", "hall", "empty"} and all(r["person"] == 0 for r in rows.values())
    assert rows["entrance"]["label"] == "happy" and rows["hall"]["label"] == "sad" and not rows["empty"]["visitor"]
    assert all(0 <= r["age_ms"] < 1000 for r in rows.values())
    assert msg["probs"]["happy"] > 0.2 and msg["probs"]["sad"] > 0.2
    assert msg["label"] in ("happy", "sad")
    assert abs(sum(msg["probs"].values()) - 1) < 1e-3
    # confidence-weighted valence lies between the two visitors'
    lo, hi = sorted([rows["entrance"]["valence"], rows["hall"]["valence"]])
    assert lo - 1e-3 <= msg["valence"] <= hi + 1e-3
    assert last_osc["/room/count"] == 2 and last_osc["/room/bridges"] == 3
    assert last_osc["/room/label_name"] in ("happy", "sad")
    assert set(last_osc) >= {f.address for f in schema.ROOM_OSC_FIELDS}
    assert rows_osc["/room/bridge/entrance/label_name"] == "happy" and rows_osc["/room/bridge/hall/visitor"] == 1
    assert rows_osc["/room/bridge/empty/visitor"] == 0 and rows_osc["/room/bridge/empty/stale"] == 0
    assert set(hellos) == {"entrance", "hall", "empty"} and hellos["hall"]["labels"] == list(schema.LABELS)


def test_broker_crash_and_restart(broker):
    """Kill -9 the broker mid-run: OSC keeps flowing without a gap, the bridge reconnects and re-announces,
    the room marks the bridge stale and takes it back."""
    rx = OscReceiver()
    rx.start()
    room_rx = OscReceiver()
    room_rx.start()
    b = sim_bridge(bridge_cfg(broker.port, "solo", osc_port=rx.port), "happy")
    room = RoomService(room_cfg(broker.port, room_rx.port))
    room.start()
    b.start()
    try:
        assert wait_for(lambda: b.hub.mqtt.connected and room.last and room.last["bridges"] == 1, 10)
        time.sleep(0.5)
        t_kill = time.monotonic()
        broker.kill()
        assert wait_for(lambda: not b.hub.mqtt.connected, 10)
        assert wait_for(lambda: room.last["bridges"] == 0 and room.last["stale"] == ["solo"], 5), room.last
        h = b.health()["outputs"]["mqtt"]
        assert h["status"] == "reconnecting" and h["disconnects"] == 1
        time.sleep(1.0)  # ticks while the broker is gone: counted, not blocking
        broker.start()
        t_back = time.monotonic()
        col = Collector(broker.port, ["emotion-bridge/test/solo/+"])
        assert wait_for(lambda: b.hub.mqtt.connected, 15), b.hub.mqtt.health()
        t_reconnected = time.monotonic()
        assert wait_for(lambda: col.on("/hello") and col.on("/status") and col.on("/state"), 10)
        assert wait_for(lambda: room.last["bridges"] == 1 and room.last["stale"] == [], 15), room.last
        t_room = time.monotonic()
        col.close()
    finally:
        b.stop()
        room.stop()
        rx.close()
        room_rx.close()
    times = [t for t, _ in rx.bundles]
    around = [t for t in times if t_kill - 0.5 < t < t_reconnected + 0.5]
    gaps = [y - x for x, y in zip(around, around[1:])]
    assert around and max(gaps) < 0.25, f"OSC gap of {max(gaps) * 1000:.0f} ms while the broker was down"
    h = b.hub.mqtt.counters
    assert h["connects"] == 2 and h["dropped_offline"] > 10
    assert json.loads(col.on("/status")[-1][2])["status"] == "online"
    print(f"largest OSC gap {max(gaps) * 1000:.0f} ms; reconnect {t_reconnected - t_back:.2f} s after the broker "
          f"was back, room recovered "
          f"{t_room - t_back:.2f} s after")


def test_bad_messages_do_not_crash_room(broker):
    rx = OscReceiver()
    rx.start()
    room = RoomService(room_cfg(broker.port, rx.port))
    room.start()
    col = Collector(broker.port, [])
    try:
        assert wait_for(lambda: room.connected and col.connected, 10)
        c = col.client
        good = schema.dumps({"type": "state", "v": 2, "seq": 1, "t_capture": time.time(), "valence": 0.5,
                             "arousal": 0.1, "confidence": 0.8, "label": "happy",
                             "probs": {n: (1.0 if n == "happy" else 0.0) for n in schema.LABELS},
                             "face": {"present": True}, "voice": {"active": False}})
        for payload in (b"\xff\xfe not json", b"{", b"[1,2,3]", b'{"type":"state"}', "x" * 100_000,
                        b'{"type":"state","v":2,"valence":NaN}', b"[" * 2000 + b"]" * 2000,
                        json.dumps({"type": "state", "v": 2, "valence": 7, "arousal": 0, "confidence": 1,
                                    "label": "happy", "probs": {}, "t_capture": 1})):
            c.publish("emotion-bridge/test/evil/state", payload, qos=1).wait_for_publish(5)
        c.publish("emotion-bridge/test/evil/status", b"garbage", qos=1).wait_for_publish(5)
        c.publish("emotion-bridge/test/fine/state", good, qos=1).wait_for_publish(5)
        assert wait_for(lambda: room.last and room.last["bridges"] == 1 and room.last["count"] == 1, 5), room.last
        assert room._thread.is_alive()
    finally:
        room.stop()
        col.close()
        rx.close()
    r = room.agg.refused
    assert r["oversized"] == 1 and r["malformed"] == 3 and r["invalid"] == 5, r
    assert room.last["refused"] == room.agg.n_refused
    assert room.last["probs"]["happy"] == pytest.approx(1.0)


def test_password_broker_refuses_anonymous(tmp_path):
    b = Broker(tmp_path / "pw", users={"bridge": "s3cret"}).start()
    try:
        anon = Collector(b.port, ["#"])
        ok = Collector(b.port, ["emotion-bridge/test/+/status"], username="bridge", password="s3cret")
        wrong = sim_bridge(bridge_cfg(b.port, "wrong", username="bridge", password="nope"), "happy")
        good = sim_bridge(bridge_cfg(b.port, "good", username="bridge", password="s3cret"), "happy")
        wrong.start()
        good.start()
        try:
            assert wait_for(lambda: good.hub.mqtt.connected and ok.on("/status"), 10)
            assert wait_for(lambda: anon.refused is not None and wrong.hub.mqtt.status == "refused", 10)
            time.sleep(0.3)
        finally:
            wrong.stop()
            good.stop()
            for c in (anon, ok):
                c.close()
    finally:
        b.stop()
    assert not anon.connected and "authori" in anon.refused.lower()
    assert not wrong.hub.mqtt.connected and "authori" in wrong.hub.mqtt.last_error.lower()
    assert wrong.hub.published > 0  # the bridge ran on regardless
    assert {m[1].split("/")[2] for m in ok.messages} == {"good"}


def test_room_aggregator_is_pure():
    agg = RoomAggregator(stale_s=1.0)
    base = {"type": "state", "v": 2, "seq": 1, "arousal": 0.0, "face": {"present": True}, "voice": {}}
    def state(val, conf, label, t):
        return json.dumps({**base, "valence": val, "confidence": conf, "label": label, "t_capture": t,
                           "probs": {n: float(n == label) for n in schema.LABELS}})
    assert agg.ingest("a", state(1.0, 0.9, "happy", 100.0), 100.0)
    assert agg.ingest("b", state(-1.0, 0.1, "sad", 100.0), 100.0)
    a = agg.aggregate(100.5)
    assert a["count"] == 2 and a["valence"] == pytest.approx((0.9 - 0.1) / 1.0)
    assert a["probs"]["happy"] == pytest.approx(0.9) and a["label"] == "happy"
    agg.ingest("a", state(1.0, 0.9, "happy", 101.0), 101.0)
    a = agg.aggregate(101.6)  # b stale, a fresh
    assert a["count"] == 1 and a["stale"] == ["b"] and a["valence"] == pytest.approx(1.0)
    agg.status("a", json.dumps({"status": "offline"}))
    a = agg.aggregate(101.7)
    assert a["count"] == 0 and a["probs"]["neutral"] == 1.0 and a["stale"] == ["a", "b"]


def test_run_and_room_commands(broker, tmp_path):
    """The commands a user types: `run --source simulate --mqtt ... --site ... --bridge-id ...` and `room`."""
    rx = OscReceiver()
    rx.start()
    cfg = tmp_path / "b.yaml"
    cfg.write_text(f"osc:\n  control_port: 0\n  targets: ['127.0.0.1:{free_port(2)}']\nwebsocket:\n  port: 0\n")
    col = Collector(broker.port, ["emotion-bridge/cli/+/+"])
    room = subprocess.Popen([sys.executable, "-m", "bridge", "room", "--mqtt", f"127.0.0.1:{broker.port}",
                             "--site", "cli", "--osc", f"127.0.0.1:{rx.port}", "--ws", f"127.0.0.1:{free_port()}",
                             "--duration", "30", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    br = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(cfg), "--source", "simulate",
                           "--script", "configs/scripts/demo_timeline.yaml", "--no-monitor", "--quiet",
                           "--mqtt", f"127.0.0.1:{broker.port}", "--site", "cli", "--bridge-id", "kiosk",
                           "--duration", "30"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert col.wait(lambda: col.on("kiosk/state"), 40), br.stdout.read() if br.poll() is not None else ""
        assert wait_for(lambda: room_bundles(rx) and room_bundles(rx)[-1]["/room/bridges"] == 1, 15)
    finally:
        for p in (br, room):
            p.send_signal(2)  # Ctrl-C
        outs = [p.communicate(timeout=30)[0] for p in (br, room)]
        col.wait(lambda: col.on("kiosk/status") and b"offline" in col.on("kiosk/status")[-1][2], 5)
        col.close()
        rx.close()
    assert br.returncode == 0 and room.returncode == 0, outs
    hello = json.loads(col.on("kiosk/hello")[0][2])
    assert hello["bridge_id"] == "kiosk" and hello["site"] == "cli" and hello["v"] == schema.SCHEMA_VERSION
    assert json.loads(col.on("kiosk/status")[-1][2])["status"] == "offline"  # Ctrl-C is a clean stop
    assert "states received" in outs[1]


def test_flat_topics(broker):
    b = sim_bridge(bridge_cfg(broker.port, "flat", flat=True), "happy")
    col = Collector(broker.port, ["emotion-bridge/test/flat/osc/#"])
    b.start()
    try:
        assert col.wait(lambda: col.on("/osc/emotion/valence") and col.on("/osc/emotion/label_name"), 10)
    finally:
        b.stop()
        col.close()
    assert -1 <= float(col.on("/osc/emotion/valence")[-1][2]) <= 1
    assert col.on("/osc/emotion/label_name")[-1][2].decode() in schema.LABELS
    assert {m[1].split("/osc/")[1] for m in col.messages} >= {f.address[1:] for f in schema.OSC_FIELDS}


def test_frozen_broker_does_not_block_the_tick(broker):
    """SIGSTOP: the broker's socket stays open but nothing answers (a hung broker machine). The tick goes on."""
    import os
    import signal

    rx = OscReceiver()
    rx.start()
    b = sim_bridge(bridge_cfg(broker.port, "frozen", osc_port=rx.port), "calm")
    b.start()
    try:
        assert wait_for(lambda: b.hub.mqtt.connected, 10)
        t0 = time.monotonic()
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(4.0)  # about 2 x keepalive (2 s): paho may give up on the connection and reconnect
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        t1 = time.monotonic()
        assert wait_for(lambda: b.hub.mqtt.connected, 15), b.hub.mqtt.health()  # still or again
    finally:
        b.stop()
        rx.close()
    times = [t for t, _ in rx.bundles if t0 <= t <= t1]
    gaps = [y - x for x, y in zip(times, times[1:])]
    assert len(times) > 90 and max(gaps) < 0.25, f"{len(times)} bundles, largest gap {max(gaps) * 1000:.0f} ms"


def test_two_bridges_with_one_id_are_told(broker, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="bridge.output.mqtt")
    a = sim_bridge(bridge_cfg(broker.port, "twin"), "happy", seed=1)
    b = sim_bridge(bridge_cfg(broker.port, "twin"), "sad", seed=2)
    a.start()
    b.start()
    try:
        assert wait_for(lambda: "same id 'twin'" in caplog.text, 20), caplog.text[-2000:]
    finally:
        a.stop()
        b.stop()
    assert a.hub.published > 0 and b.hub.published > 0


def test_tls_broker_and_broker_not_there_yet(tmp_path):
    """Bridges started before their broker keep retrying (status and reason in health); over TLS, a bridge that
    trusts the broker's CA connects, one that does not is told why."""
    import shutil as _sh

    if _sh.which("openssl") is None:
        pytest.skip("openssl is not installed")
    from broker import make_tls_files

    tls = make_tls_files(tmp_path / "tls")
    port = free_port()
    good = sim_bridge(bridge_cfg(port, "tls-good", tls=True, ca_certs=str(tls["ca"])), "happy")
    bad = sim_bridge(bridge_cfg(port, "tls-bad", tls=True), "happy")  # the system CAs do not know ours
    good.start()
    bad.start()
    br = None
    try:
        assert wait_for(lambda: good.hub.mqtt.counters["connect_failures"] >= 1, 10)
        h = good.hub.mqtt.health()
        assert h["status"] == "reconnecting" and "Refused" in h["last_error"], h
        br = Broker(tmp_path / "b", port=port, tls=tls).start()
        assert wait_for(lambda: good.hub.mqtt.connected, 15), good.hub.mqtt.health()
        assert wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in bad.hub.mqtt.last_error, 15), bad.hub.mqtt.health()
        assert not bad.hub.mqtt.connected and bad.hub.published > 0
    finally:
        good.stop()
        bad.stop()
        if br is not None:
            br.stop()


def test_monitor_page_shows_mqtt_status(broker):
    """The browser monitor (real headless Chromium) lists the MQTT output in its health list."""
    from pathlib import Path

    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium not installed")
    cfg = bridge_cfg(broker.port, "monitored")
    cfg = cfg.model_copy(update={"monitor": cfg.monitor.model_copy(update={"enabled": True, "port": free_port()})})
    b = sim_bridge(cfg, "happy")
    b.start()
    try:
        mon = next(x for x in b.extras if type(x).__name__ == "MonitorServer")
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                page.goto(mon.url)
                text, deadline = "", time.monotonic() + 10
                while "mqtt" not in text and time.monotonic() < deadline:  # (the page's CSP forbids eval)
                    page.wait_for_timeout(200)
                    text = page.inner_text("#health")
            finally:
                browser.close()
    finally:
        b.stop()
    assert "mqtt" in text and "ok" in text and f"127.0.0.1:{broker.port}" in text, text
