"""Outputs over real sockets on 127.0.0.1: OSC bundles, WebSocket hello/state, slow clients, bad clients."""

import asyncio
import json
import socket
import threading
import time

import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from websockets.asyncio.client import connect

from bridge import clock
from bridge.config import load_config
from bridge.frames import AffectState
from bridge.labels import LABELS
from bridge.output import schema
from bridge.output.hub import OutputHub
from bridge.output.osc import OscSender, encode_state


def state(seq=1, label="happy", valence=0.5):
    probs = {n: 0.02 for n in LABELS}
    probs[label] = 1 - 0.02 * 7
    t = clock.now()
    return AffectState(seq=seq, t_capture=t, t_capture_wall=clock.to_wall(t), valence=valence, arousal=0.2,
                       probs=probs, label=label, confidence=0.8, face_present=True, voice_active=False)


def udp_receiver():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    return s


def parse(dgram):
    b = OscBundle(dgram)
    return {m.address: m.params[0] for m in b if isinstance(m, OscMessage)}


def test_osc_bundle_has_every_address_once():
    got = parse(encode_state(state(), 30.0, 5.0, changed="happy"))
    expected = [f.address for f in schema.OSC_FIELDS] + [schema.OSC_EVENT.address]
    assert sorted(got) == sorted(expected)
    assert got["/emotion/label"] == LABELS.index("happy") and got["/emotion/label_name"] == "happy"
    assert got["/face/present"] == 1 and got["/emotion/changed"] == "happy"


def test_osc_never_sends_nan():
    s = state()
    s.valence = float("nan")
    s.loudness_db = float("-inf")
    got = parse(encode_state(s, float("inf"), float("nan")))
    assert all(v == v and abs(v) != float("inf") for v in got.values() if isinstance(v, float))


def test_osc_to_real_udp_and_refused_target():
    rx = udp_receiver()
    dead = udp_receiver()
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there now: the kernel refuses
    tx = OscSender([f"127.0.0.1:{rx.getsockname()[1]}", f"127.0.0.1:{dead_port}"])
    for i in range(20):
        tx.send_state(state(i), 30.0, 4.0)
    got = parse(rx.recv(65536))
    assert got["/emotion/label_name"] == "happy"
    assert tx.sent >= 20  # the live target kept receiving
    tx.close()


async def _collect(url, n, out, delay=0.0):
    async with connect(url) as ws:
        for _ in range(n):
            out.append((time.monotonic(), json.loads(await ws.recv())))
            if delay:
                await asyncio.sleep(delay)


def test_websocket_hello_state_and_stalled_client():
    cfg = load_config(None, {"websocket.port": 0, "osc.enabled": False, "monitor.enabled": False})
    hub = OutputHub(cfg)
    hub.start()
    url = f"ws://127.0.0.1:{hub.ws.port}"
    try:
        # a client that connects and never reads
        stalled = socket.create_connection(("127.0.0.1", hub.ws.port))
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        got = []
        t = threading.Thread(target=lambda: asyncio.run(_collect(url, 61, got)))
        t.start()
        deadline = time.monotonic() + 5
        while hub.ws.n_clients < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hub.ws.n_clients == 2
        sent_at = {}
        for i in range(60):
            s = state(i + 1, valence=i / 100)
            sent_at[i + 1] = time.monotonic()
            hub.publish(s)
            time.sleep(1 / 60)
        t.join(5)
        assert got[0][1]["type"] == "hello" and got[0][1]["labels"] == list(LABELS)
        states = [m for _, m in got if m["type"] == "state"]
        assert [m["seq"] for m in states] == list(range(1, 61))  # the reader got everything, in order
        delays = [ts - sent_at[m["seq"]] for ts, m in got[1:]]
        assert max(delays) < 0.5  # not held back by the stalled client (a generous bound, not a benchmark)
        assert set(states[0]) >= {f[0] for f in schema.JSON_STATE_FIELDS}
        stalled.close()
    finally:
        hub.stop()


def test_wire_times_follow_the_wall_clock_when_it_is_set(monkeypatch):
    """The wall clock is set while an installation runs (NTP, a resumed VM): t_capture and t_emit on a real WebSocket
    follow it, so a receiver's "delay" (its clock - t_emit) and the health message's t stay true. With an offset
    fixed at start-up they stayed an hour (here) away."""
    cfg = load_config(None, {"websocket.port": 0, "osc.enabled": False, "monitor.enabled": False})
    hub = OutputHub(cfg)
    hub.start()
    got = []
    try:
        t = threading.Thread(target=lambda: asyncio.run(_collect(f"ws://127.0.0.1:{hub.ws.port}", 3, got)))
        t.start()
        deadline = time.monotonic() + 5
        while hub.ws.n_clients < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        hub.publish(state(1))
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600.0)  # the clock is set an hour ahead
        hub.publish(state(2))
        after_set = real() + 3600.0
        t.join(5)
    finally:
        monkeypatch.undo()
        hub.stop()
    s1, s2 = [m for _, m in got if m["type"] == "state"]
    assert abs(s1["t_emit"] - time.time()) < 5
    assert abs(s2["t_emit"] - after_set) < 1 and abs(s2["t_capture"] - after_set) < 1
    assert 0 <= s2["t_emit"] - s2["t_capture"] < 0.5


def test_websocket_garbage_flood_and_huge_frames():
    replies = []
    cfg = load_config(None, {"websocket.port": 0, "osc.enabled": False, "monitor.enabled": False,
                             "websocket.max_message_bytes": 1024})

    def handler(msg):
        replies.append(msg)
        return {"type": "ack", "cmd": msg.get("cmd"), "ok": True, "detail": ""}

    hub = OutputHub(cfg, on_command=handler)
    hub.start()
    url = f"ws://127.0.0.1:{hub.ws.port}"

    async def go():
        async with connect(url) as ws:
            await ws.recv()  # hello
            await ws.send("{not json")
            ack = json.loads(await ws.recv())
            assert ack["type"] == "ack" and ack["ok"] is False and "malformed" in ack["detail"]
            for _ in range(500):
                await ws.send('{"cmd":"status"}')
            await asyncio.sleep(0.2)
        async with connect(url) as ws:
            await ws.recv()
            await ws.send("x" * 5000)
            with pytest.raises(Exception):
                for _ in range(3):
                    await ws.recv()
        async with connect(url) as ws:  # the server is still fine for others
            assert json.loads(await ws.recv())["type"] == "hello"

    try:
        asyncio.run(go())
        assert hub.ws.counters["bad_messages"] == 1
        assert hub.ws.counters["flood_drops"] > 300  # limited to ~20 commands/s
        assert len(replies) < 100
    finally:
        hub.stop()


def test_websocket_token():
    cfg = load_config(None, {"websocket.port": 0, "osc.enabled": False, "monitor.enabled": False,
                             "websocket.token": "s3cret"})
    hub = OutputHub(cfg)
    hub.start()

    async def go():
        with pytest.raises(Exception):
            async with connect(f"ws://127.0.0.1:{hub.ws.port}"):
                pass
        async with connect(f"ws://127.0.0.1:{hub.ws.port}/?token=s3cret") as ws:
            assert json.loads(await ws.recv())["type"] == "hello"

    try:
        asyncio.run(go())
    finally:
        hub.stop()
