"""touchdesigner/mqtt_callbacks.py fed with real messages from a real broker: two simulated bridges and the room,
received by a plain MQTT subscriber and handed to the MQTT Client DAT callbacks (TouchDesigner stand-in)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import td_stub  # noqa: E402

from bridge.labels import LABELS  # noqa: E402
from bridge.room import RoomService  # noqa: E402
from broker import Broker, Collector  # noqa: E402
from helpers import free_port, wait_for  # noqa: E402
from test_mqtt import bridge_cfg, room_cfg, sim_bridge  # noqa: E402

TD = Path(__file__).resolve().parent.parent / "touchdesigner"
pytestmark = pytest.mark.slow


class MqttClientDAT(td_stub.DAT):
    def __init__(self, parent):
        super().__init__(td_stub.OP_TYPES["textDAT"], "mqtt", parent)
        self.subscriptions: list[tuple[str, int]] = []

    def subscribe(self, topic, qos=0):
        self.subscriptions.append((topic, qos))


def test_mqtt_client_dat_callbacks_from_real_messages(tmp_path):
    broker = Broker(tmp_path / "b").start()
    bridges = [sim_bridge(bridge_cfg(broker.port, "left"), "happy", seed=1),
               sim_bridge(bridge_cfg(broker.port, "right"), "angry", seed=2)]
    room = RoomService(room_cfg(broker.port, free_port(2)))
    col = Collector(broker.port, ["emotion-bridge/test/room", "emotion-bridge/test/+/status"])
    room.start()
    for b in bridges:
        b.start()
    try:
        assert wait_for(lambda: any(json.loads(m[2]).get("bridges") == 2 for m in col.on("/room")), 15)
        time.sleep(1.0)
    finally:
        for b in bridges:
            b.stop()
        room.stop()
        time.sleep(0.2)
        col.close()
        broker.stop()

    root = td_stub.make_root()
    comp = root.op("/project1")
    for name in ("room", "bridges", "mqtt_status"):
        comp.create(td_stub.OP_TYPES["tableDAT"], name)
    dat = MqttClientDAT(comp)
    comp._children["mqtt"] = dat
    ns = {"op": root.op, "me": dat, "__name__": "mqtt_callbacks"}
    exec(compile((TD / "mqtt_callbacks.py").read_text(), "mqtt_callbacks", "exec"), ns)
    ns["SITE"] = "test"
    ns["onConnect"](dat)
    assert ("emotion-bridge/test/room", 0) in dat.subscriptions
    assert ("emotion-bridge/test/+/status", 1) in dat.subscriptions
    last_room = None
    for _, topic, payload, retained in col.messages:
        ns["onMessage"](dat, topic, bytearray(payload), 0, retained, False)
        if topic.endswith("/room") and json.loads(payload).get("bridges") == 2:
            last_room = json.loads(payload)
            break
    ns["onMessage"](dat, "emotion-bridge/test/left/status", b"\xff not json", 0, False, False)
    room_t = comp.op("room").as_dict()
    assert room_t["connected"] == "1" and room_t["count"] == str(last_room["count"]) and room_t["bridges"] == "2"
    assert {f"prob_{n}" for n in LABELS} <= set(room_t) and float(room_t["delay_ms"]) >= 0
    assert room_t["bad_messages"] == "1"
    br = comp.op("bridges")
    assert br.numRows == 3 and {br[i, "bridge"].val for i in (1, 2)} == {"left", "right"}
    st = comp.op("mqtt_status").as_dict()
    assert st["left"] == "online" and st["right"] == "online"
