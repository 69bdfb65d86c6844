"""Body sensors: a real OSC sender (python-osc UDP client) on the control port that drops out and returns; MQTT
sensor topics through a real broker; baseline, staleness, refusals; the arousal fusion rule."""

from __future__ import annotations

import math
import time

import pytest
from pythonosc.udp_client import SimpleUDPClient

from bridge.config import Config, SensorsConfig
from bridge.live import attach_outputs
from bridge.rehearsal import ScriptPlan, SimulatedBridge, SimulatedVisitor, parse_script
from bridge.sensors import SensorHub, fusion_rule
from helpers import OscReceiver, free_port, wait_for


def _bridge(cfg: Config) -> SimulatedBridge:
    plan = ScriptPlan(parse_script({"loop": True, "segments": [{"label": "calm", "seconds": 60}]}))
    return attach_outputs(SimulatedBridge(cfg, SimulatedVisitor(plan, 5)), cfg)




@pytest.mark.slow
def test_osc_sensor_drops_out_and_returns():
    rx = OscReceiver()
    rx.start()
    ctl = free_port(2)
    cfg = Config.model_validate({
        "osc": {"targets": [f"127.0.0.1:{rx.port}"], "control_port": ctl}, "websocket": {"port": 0},
        "monitor": {"enabled": False},
        "sensors": {"baseline_s": 1.0, "baseline_min_samples": 5,
                    "channels": {"heart_rate": {"unit": "bpm", "min": 30, "max": 220, "stale_s": 0.5}}}})
    b = _bridge(cfg)
    b.start()
    tx = SimpleUDPClient("127.0.0.1", ctl)
    try:
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < 1.4:  # the baseline: 70 +- 2 bpm at 20 Hz
            tx.send_message("/sensor/heart_rate", 70.0 + 2.0 * math.sin(k))
            k += 1
            time.sleep(0.05)
        for bad in (float("nan"), 500.0, 0.0, "fast"):
            tx.send_message("/sensor/heart_rate", bad)
        tx.send_message("/sensor/unknown_thing", 1.0)
        for _ in range(6):  # excited: 90 bpm
            tx.send_message("/sensor/heart_rate", 90.0)
            time.sleep(0.05)
        assert wait_for(lambda: b.last_state.sensors["heart_rate"]["value"] == 90.0, 5.0)
        up = dict(b.last_state.sensors["heart_rate"])
        t_up = time.monotonic()
        time.sleep(1.0)  # the sender drops out
        gone = dict(b.last_state.sensors["heart_rate"])
        t_gone = time.monotonic()
        for _ in range(6):  # ... and returns, calm again
            tx.send_message("/sensor/heart_rate", 70.0)
            time.sleep(0.05)
        assert wait_for(lambda: b.last_state.sensors["heart_rate"]["fresh"], 5.0)
        back = dict(b.last_state.sensors["heart_rate"])
        time.sleep(0.1)
        health = b.health()["sensors"]
    finally:
        b.stop()
        rx.close()
    assert up["fresh"] and up["baseline"] == "ready" and up["unit"] == "bpm"
    assert up["z"] > 5, up  # 20 bpm above a ~2 bpm (floored 3.5) baseline spread
    assert not gone["fresh"] and gone["age_ms"] > 500
    assert back["fresh"] and abs(back["z"]) < 1.5 and back["baseline"] == "ready"  # same visitor, same baseline
    assert health["refused"] == {"unknown": 1, "not_a_number": 1, "nan": 1, "out_of_range": 2}, health
    # over OSC: /sensor/heart_rate/z while fresh, not while stale; /fresh follows
    zs = [(t, m.get("/sensor/heart_rate/z"), m.get("/sensor/heart_rate/fresh")) for t, m in rx.bundles]
    assert any(z is not None and z > 5 and f == 1 for t, z, f in zs if t <= t_up)
    stale = [(z, f) for t, z, f in zs if t_gone - 0.3 < t < t_gone]
    assert stale and all(z == 0.0 and f == 0 for z, f in stale), stale[:3]
    assert zs[-1][2] == 1 and zs[-1][1] is not None
    early = [z for t, z, f in zs if z is not None and t < t_up - 1.0]  # baseline still being collected
    assert early and early[0] == 0.0


@pytest.mark.slow
def test_mqtt_sensor_topic(tmp_path):
    from broker import Broker, Collector

    br = Broker(tmp_path / "b").start()
    cfg = Config.model_validate({
        "osc": {"targets": [f"127.0.0.1:{free_port(2)}"], "control_port": 0}, "websocket": {"port": 0},
        "monitor": {"enabled": False},
        "mqtt": {"enabled": True, "port": br.port, "site": "s", "bridge_id": "b1", "reconnect_min_s": 0.2},
        "sensors": {"baseline_s": 1.0}})
    b = _bridge(cfg)
    b.start()
    col = Collector(br.port, [])
    try:
        assert wait_for(lambda: b.hub.mqtt.connected and col.connected, 10)
        time.sleep(0.2)  # the bridge's subscription is in place
        for payload in (b"4.5", b'{"value": 4.7}', b"oops", b"-3"):
            col.client.publish("emotion-bridge/s/b1/sensor/eda", payload, qos=1).wait_for_publish(5)
        assert wait_for(lambda: b.last_state.sensors and b.last_state.sensors.get("eda", {}).get("value") == 4.7, 5.0)
        time.sleep(0.2)
    finally:
        b.stop()
        col.close()
        br.stop()
    assert b.sensors.refused["not_a_number"] == 1 and b.sensors.refused["out_of_range"] == 1
    assert b.last_state.sensors["eda"]["unit"] == "uS"


def test_baseline_reset_and_fusion_rule():
    cfg = SensorsConfig(baseline_s=1.0, baseline_min_samples=3)
    hub = SensorHub(cfg)
    for i, v in enumerate([60, 62, 64, 62]):
        assert hub.push("heart_rate", v, t=float(i) * 0.4)[0]
    s = hub.snapshot(1.3)["heart_rate"]
    assert s["baseline"] == "ready"
    sd = max(math.sqrt(sum((x - 62) ** 2 for x in [60, 62, 64, 62]) / 3), 0.05 * 62)
    assert s["z"] == pytest.approx(0.0)
    hub.push("heart_rate", 62 + 2 * sd, t=1.4)
    snap = hub.snapshot(1.4)
    assert snap["heart_rate"]["z"] == pytest.approx(2.0, abs=1e-3)
    assert hub.fuse_arousal(0.1, snap) == 0.1  # off by default
    on = SensorHub(SensorsConfig(baseline_s=1.0, baseline_min_samples=3, fusion_weight=0.4))
    on.channels = hub.channels
    assert on.fuse_arousal(0.1, snap) == pytest.approx(0.1 + 0.4 * math.tanh(1.0))
    assert fusion_rule(0.9, 10.0, 0.5) == 1.0 and fusion_rule(-0.9, -10.0, 0.5) == -1.0
    stale = {"heart_rate": {**snap["heart_rate"], "fresh": False}}
    assert on.fuse_arousal(0.1, stale) == 0.1  # stale readings are not fused
    hub.reset()  # a new visitor
    assert hub.snapshot(1.5)["heart_rate"]["z"] is None and hub.snapshot(1.5)["heart_rate"]["baseline"] == "collecting"
