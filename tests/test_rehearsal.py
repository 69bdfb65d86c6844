"""Rehearsal without a camera: the simulated visitor, record and replay, and the preview window.

The end-to-end tests run the `emotion-bridge` command as a subprocess and listen with a real UDP socket and a
real WebSocket client on 127.0.0.1, as TouchDesigner would."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from websockets.asyncio.client import connect

from bridge.config import Config, EventsConfig, load_config
from bridge.engine import Hysteresis
from bridge.labels import LABELS, va_target
from bridge.rehearsal import (RandomPlan, ScriptError, ScriptPlan, SimulatedVisitor, build_simulated_bridge,
                              load_recording, load_script, parse_script, parse_speed)
from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
EXE = [sys.executable, "-m", "bridge"]
SCRIPT3 = """\
loop: false
segments:
  - {label: happy, seconds: 1.6, intensity: 0.9}
  - {label: sad, seconds: 2.0, intensity: 0.8, voice: false}
  - {label: angry, seconds: 2.4, intensity: 0.9}
"""




class OscReceiver(threading.Thread):
    """Stores raw datagrams with their arrival time; parsing happens afterwards so nothing is dropped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.raw: list[tuple[float, bytes]] = []
        self.stop = False
        self.start()

    def run(self):
        while not self.stop:
            try:
                self.raw.append((time.monotonic(), self.sock.recv(65536)))
            except OSError:
                continue

    def bundles(self) -> list[tuple[float, dict]]:
        out = []
        for t, data in self.raw:
            if data.startswith(b"#bundle"):
                out.append((t, {m.address: m.params[0] for m in OscBundle(data) if isinstance(m, OscMessage)}))
        return out


def _words(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines on a non-terminal stderr


@pytest.fixture
def quiet_cfg(tmp_path) -> Path:
    c = tmp_path / "c.yaml"
    c.write_text("osc:\n  control_port: 0\n")  # no clash with a bridge already listening on 7001
    return c


# ------------------------------------------------------------------------------------------------ scripts


def test_bad_script_names_the_entry(tmp_path):
    cases = {
        "segments:\n  - {label: happy, seconds: 2}\n  - {label: hapy, seconds: 2}\n": ["segment 2", "hapy",
                                                                                       "happy"],
        "- {label: sad, seconds: -1}\n": ["segment 1", "seconds", "greater than 0"],
        "- {label: sad, secs: 3}\n": ["segment 1", "secs", "unknown key", "seconds"],
        "segments:\n  - {label: sad, seconds: 1, intensity: 2}\n": ["segment 1", "intensity"],
        "segmets: []\n": ["segmets", "unknown key"],
        "segments: []\n": ["segments"],
        "loop: true\n": ["segments"],
        "just text\n": ["segments:"],
    }
    for text, needles in cases.items():
        f = tmp_path / "s.yaml"
        f.write_text(text)
        with pytest.raises(ScriptError) as e:
            load_script(f)
        for n in needles:
            assert n in str(e.value), (text, str(e.value))
    with pytest.raises(ScriptError, match="not found"):
        load_script(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("segments: [\n")
    with pytest.raises(ScriptError, match="not valid YAML"):
        load_script(tmp_path / "bad.yaml")
    s = parse_script([{"label": "Happy", "seconds": 2}])  # a bare list, any case
    assert s.segments[0].label == "happy" and s.segments[0].face and s.segments[0].voice and not s.loop


def test_shipped_timeline_and_preset_are_valid():
    s = load_script(ROOT / "configs" / "scripts" / "demo_timeline.yaml")
    assert s.loop and len(s.segments) >= 5
    cfg = load_config(ROOT / "configs" / "rehearsal.yaml")
    assert cfg.video.enabled is False and cfg.osc.targets == ["127.0.0.1:7000"]


def test_bad_script_on_the_command_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("- {label: happy, seconds: 2}\n- {label: hapy, seconds: 2}\n")
    p = subprocess.run(EXE + ["run", "--source", "simulate", "--script", str(f), "--no-monitor", "--duration", "1"],
                       capture_output=True, text=True, timeout=120)
    err = _words(p.stderr)
    assert p.returncode == 2, p.stderr
    assert "segment 2" in err and "'hapy'" in err and "unknown label" in err
    assert "Traceback" not in p.stderr


# ------------------------------------------------------------------------------------------------ the visitor


def _drive(visitor, seconds, hz=30.0, hyst=None, **mute):
    out = []
    for k in range(int(seconds * hz)):
        t = 100.0 + k / hz
        s = visitor.step(t, **mute)
        changed = hyst.update(s.probs, s.confidence, t) if hyst else None
        out.append((t, s, hyst.label if hyst else None, changed))
    return out


def test_visitor_follows_the_script_like_the_model():
    script = parse_script(yaml.safe_load(SCRIPT3))
    v = SimulatedVisitor(ScriptPlan(script), seed=1)
    hyst = Hysteresis(EventsConfig())
    run = _drive(v, 6.0, hyst=hyst)
    starts = [0.0, 1.6, 3.6]
    for (t, s, _, _) in run:
        assert abs(s.probs.sum() - 1) < 1e-9 and 0 <= s.confidence <= 1
        assert abs(s.confidence - s.probs.max()) < 0.05
    # 0.6 s into each segment the target leads with a clear margin; valence/arousal near the target
    for seg, t0 in zip(script.segments, starts):
        t, s, _, _ = run[int((t0 + 0.6) * 30)]
        assert LABELS[int(np.argmax(s.probs))] == seg.label and np.diff(np.sort(s.probs))[-1] > 0.2
        t, s, _, _ = run[int((t0 + 1.2) * 30)]
        vt, at = va_target(seg.label)
        assert abs(s.valence - vt * seg.intensity) < 0.2 and abs(s.arousal - at * seg.intensity) < 0.2
    # smooth: no jumps between ticks
    vals = np.array([s.valence for _, s, _, _ in run])
    assert np.abs(np.diff(vals)).max() < 0.15
    # the label changes once per segment, through the real hysteresis, after the dwell
    changes = [(t - 100.0, lab) for t, _, lab, ch in run if ch]
    assert [lab for _, lab in changes] == ["happy", "sad", "angry"]
    for (t, _), t0 in zip(changes, starts):
        assert t0 + 0.6 <= t <= t0 + 1.2, changes
    # face/voice flags as scripted; the voice comes and goes like speech
    assert all(s.face_present for _, s, _, _ in run)
    sad = [s for t, s, _, _ in run if 1.7 < t - 100 < 3.5]
    assert not any(s.voice_active for s in sad) and all(s.pitch_hz == 0 for s in sad)
    talk = [s.voice_active for t, s, _, _ in run if t - 100 < 1.6 or t - 100 > 3.7]
    assert 0.3 < np.mean(talk) < 0.95
    loud = [s.loudness_db for _, s, _, _ in run if s.voice_active]
    assert -45 < np.median(loud) < -10
    assert all(60 < s.pitch_hz < 400 for _, s, _, _ in run if s.voice_active)


def test_visitor_is_deterministic_with_a_seed_and_random_walk_is_plausible():
    a = _drive(SimulatedVisitor(seed=7), 40.0)
    b = _drive(SimulatedVisitor(seed=7), 40.0)
    c = _drive(SimulatedVisitor(seed=8), 40.0)
    pa = np.array([s.probs for _, s, _, _ in a])
    assert np.array_equal(pa, np.array([s.probs for _, s, _, _ in b]))
    assert not np.allclose(pa, np.array([s.probs for _, s, _, _ in c]))
    plan = RandomPlan(np.random.default_rng(3))
    plan.at(300.0)
    dwell = np.diff([0.0] + plan._ends)
    assert dwell.min() >= 3.0 and dwell.max() <= 10.0
    assert len({s.label for s in plan._segs}) >= 5
    visitors = [(x, y) for x, y in zip(plan._segs, plan._segs[1:]) if (x.face or x.voice) and (y.face or y.voice)]
    assert visitors and all(x.label != y.label for x, y in visitors)
    assert any(not (s.face or s.voice) for s in plan._segs)  # now and then nobody there


def test_nobody_there_sinks_to_a_weak_neutral():
    v = SimulatedVisitor(ScriptPlan(parse_script(yaml.safe_load(
        "- {label: happy, seconds: 2}\n- {label: happy, seconds: 4, face: false, voice: false}\n"))), 1)
    run = _drive(v, 6.0)
    t, s, _, _ = run[-1]
    assert not s.face_present and not s.voice_active and s.confidence < EventsConfig().min_confidence
    assert LABELS[int(np.argmax(s.probs))] == "neutral" and abs(s.valence) < 0.15 and abs(s.arousal) < 0.15
    assert s.face_age_ms is not None and s.face_age_ms > 3000  # the face was last seen 4 s ago
    muted = SimulatedVisitor(seed=1).step(0.0, face_muted=True, voice_muted=True)
    assert not muted.face_present and muted.loudness_db == -100 and muted.voice_age_ms is None


# ------------------------------------------------------------------------------------------------ end to end


async def _ws_collect(port, seconds, out, actions=()):
    deadline = time.monotonic() + 30
    while True:
        try:
            ws = await connect(f"ws://127.0.0.1:{port}")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    async with ws:
        t0 = time.monotonic()
        pending = sorted(actions)
        while time.monotonic() < t0 + seconds:
            if pending and time.monotonic() >= t0 + pending[0][0]:
                await ws.send(json.dumps(pending.pop(0)[1]))
            try:
                out.append((time.monotonic(), json.loads(await asyncio.wait_for(ws.recv(), 0.2))))
            except asyncio.TimeoutError:
                pass
            except Exception:
                break


@pytest.mark.slow
def test_simulate_script_to_osc_and_websocket(tmp_path, quiet_cfg):
    script = tmp_path / "three.yaml"
    script.write_text(SCRIPT3)
    rx = OscReceiver()
    ws_port = free_port()
    p = subprocess.Popen(EXE + ["run", "--quiet", "--no-monitor", "--duration", "6", "--source", "simulate",
                                "--script", str(script), "--seed", "1", "-c", str(quiet_cfg),
                                "--osc", f"127.0.0.1:{rx.port}", "--ws", f"127.0.0.1:{ws_port}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    msgs: list = []
    try:
        asyncio.run(_ws_collect(ws_port, 8.0, msgs))
    finally:
        out, _ = p.communicate(timeout=60)
        rx.stop = True
    assert p.returncode == 0, out
    bundles = rx.bundles()
    assert len(bundles) > 100, out
    times = np.array([t for t, _ in bundles])
    steady = times[times > times[0] + 0.5]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert 20 <= rate <= 40, f"{rate:.1f} states/s, expected ~30"
    for _, b in bundles:
        assert abs(sum(b[f"/emotion/prob/{n}"] for n in LABELS) - 1) < 1e-3
        assert b["/face/present"] == 1
    names = [b["/emotion/label_name"] for _, b in bundles]
    dedup = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
    assert dedup == ["neutral", "happy", "sad", "angry"], dedup
    changed = [(i, b["/emotion/changed"]) for i, (_, b) in enumerate(bundles) if "/emotion/changed" in b]
    assert [c for _, c in changed] == ["happy", "sad", "angry"]
    for i, label in changed:  # fired where the label switched, after the new label had led for the dwell time
        assert names[i] == label and names[i - 1] != label
        lead = 0
        while lead < i and LABELS[int(np.argmax([bundles[i - 1 - lead][1][f"/emotion/prob/{n}"]
                                                 for n in LABELS]))] == label:
            lead += 1
        assert lead >= 10, f"{label} led only {lead} ticks before /emotion/changed"

    kinds = [m["type"] for _, m in msgs]
    assert kinds and kinds[0] == "hello", kinds[:3]
    states = [m for _, m in msgs if m["type"] == "state"]
    assert len(states) > 60
    seqs = [s["seq"] for s in states]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # the classic label events (people.num_faces 4, the default, adds each person's own, with "person")
    events = [m for _, m in msgs if m["type"] == "event" and "person" not in m]
    assert {m["person"] for _, m in msgs if m["type"] == "event" and "person" in m} <= {1}  # one visitor
    assert [e["label"] for e in events] == ["happy", "sad", "angry"]
    assert [e["previous"] for e in events] == ["neutral", "happy", "sad"]
    for e in events:  # the new label led for at least the dwell time (0.6 s) before the event
        before = [s for s in states if s["seq"] <= e["seq"]]
        t_event = before[-1]["t_capture"]
        k = len(before) - 1
        while k > 0 and max(before[k - 1]["probs"], key=before[k - 1]["probs"].get) == e["label"]:
            k -= 1
        assert t_event - before[k]["t_capture"] >= 0.55
    for s in states:
        assert s["t_emit"] >= s["t_capture"] and 0 <= s["latency_ms"] < 200
    health = [m for _, m in msgs if m["type"] == "health"]
    assert health and health[-1]["sources"]["video"]["status"] == "ok"
    assert health[-1]["simulation"]["script"] == str(script)


@pytest.mark.slow
def test_mute_face_over_websocket_during_simulate(tmp_path):
    rx = OscReceiver()
    script = tmp_path / "s.yaml"
    script.write_text("- {label: calm, seconds: 60}\n")
    cfg = load_config(None, {"osc.targets": [f"127.0.0.1:{rx.port}"], "websocket.port": 0,
                             "monitor.enabled": False, "osc.control_port": 0})
    bridge = build_simulated_bridge(cfg, script, seed=2)
    bridge.start()
    msgs: list = []
    try:
        mute = {"cmd": "mute", "target": "face", "on": True}
        asyncio.run(_ws_collect(bridge.hub.ws.port, 2.5, msgs, [(1.0, mute), (1.8, {"cmd": "status"})]))
    finally:
        bridge.stop()
        rx.stop = True
    acks = [(t, m) for t, m in msgs if m["type"] == "ack"]
    assert acks and acks[0][1]["ok"] and acks[0][1]["cmd"] == "mute", acks
    t_ack = acks[0][0]
    states = [(t, m) for t, m in msgs if m["type"] == "state"]
    before = [m["face"]["present"] for t, m in states if t < t_ack - 0.1]
    after = [m for t, m in states if t > t_ack + 0.1]
    assert before and all(before)
    assert after and not any(m["face"]["present"] for m in after)
    assert all(m["face"]["yaw"] == 0 for m in after)
    health = [m for _, m in msgs if m["type"] == "health"]
    assert health and health[-1]["model"]["muted"]["face"] is True
    assert bridge.engine.face_muted
    osc_present = [b["/face/present"] for _, b in rx.bundles()]
    assert osc_present[0] == 1 and osc_present[-1] == 0


@pytest.mark.slow
def test_record_then_replay_matches(tmp_path, quiet_cfg):
    script = tmp_path / "s.yaml"
    script.write_text("- {label: happy, seconds: 1.2}\n- {label: sad, seconds: 1.2}\n- {label: calm, seconds: 3}\n")
    out = tmp_path / "take.jsonl"
    common = ["--quiet", "--no-monitor", "-c", str(quiet_cfg), "--ws", f"127.0.0.1:{free_port()}"]
    p = subprocess.run(EXE + ["record", str(out), "--duration", "3.5", "--source", "simulate", "--script",
                              str(script), "--seed", "4", "--osc", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]
                       + common, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = out.read_text().splitlines()
    assert len(lines) > 60
    recs = [json.loads(ln) for ln in lines]
    for r in recs:
        assert r["type"] == "state" and {"seq", "t_capture", "t_emit", "probs", "valence", "label"} <= set(r)
        assert set(r["probs"]) == set(LABELS) and abs(sum(r["probs"].values()) - 1) < 1e-3
        assert r["t_emit"] >= r["t_capture"]
        assert "features" not in r
    assert all(b["seq"] > a["seq"] for a, b in zip(recs, recs[1:]))
    assert [r["changed"] for r in recs if "changed" in r] == ["happy", "sad", "calm"]

    again = subprocess.run(EXE + ["record", str(out), "--source", "simulate", "--duration", "1"] + common,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--overwrite" in _words(again.stderr)
    assert out.read_text().splitlines() == lines  # untouched

    with out.open("a") as f:  # damage: two malformed lines and one foreign message
        f.write("this is not json\n")
        f.write('{"type": "state", "label": "hapy", "t_capture": 1}\n')
        f.write('{"type": "health", "sources": {}}\n')
    rx = OscReceiver()
    t0 = time.monotonic()
    p = subprocess.run(EXE + ["replay", str(out), "--speed", "max", "--osc", f"127.0.0.1:{rx.port}"] + common,
                       capture_output=True, text=True, timeout=120)
    time.sleep(0.3)
    rx.stop = True
    assert p.returncode == 0, p.stderr
    err = _words(p.stderr)
    assert "skipped 2 malformed lines" in err, err
    bundles = rx.bundles()
    assert len(bundles) == len(recs), (len(bundles), len(recs))
    assert [b["/emotion/label_name"] for _, b in bundles] == [r["label"] for r in recs]
    np.testing.assert_allclose([b["/emotion/valence"] for _, b in bundles], [r["valence"] for r in recs],
                               atol=1e-4)
    np.testing.assert_allclose([b["/emotion/prob/happy"] for _, b in bundles], [r["probs"]["happy"] for r in recs],
                               atol=1e-4)
    assert [b["/voice/active"] for _, b in bundles] == [int(r["voice"]["active"]) for r in recs]
    assert [b["/emotion/changed"] for _, b in bundles if "/emotion/changed" in b] == ["happy", "sad", "calm"]
    recorded_s = recs[-1]["t_capture"] - recs[0]["t_capture"]
    assert bundles[-1][0] - bundles[0][0] < recorded_s / 2  # max speed: much faster than recorded
    assert all(0 <= b["/bridge/latency_ms"] < 100 for _, b in bundles)  # restamped: honest latency
    assert time.monotonic() - t0 < 60


# ------------------------------------------------------------------------------------------------ replay parts


def test_load_recording_skips_and_counts(tmp_path):
    good = {"type": "state", "seq": 1, "t_capture": 1000.0, "t_emit": 1000.01, "valence": 0.1, "arousal": -0.2,
            "confidence": 0.5, "label": "calm", "probs": {n: 1 / 8 for n in LABELS},
            "face": {"present": True, "age_ms": 12.0, "yaw": 1.0, "pitch": 2.0, "roll": 3.0, "size": 0.4},
            "voice": {"active": False, "age_ms": None, "loudness_db": -60.0, "pitch_hz": 0.0}}
    lines = [json.dumps(good), "", "{broken", "[1, 2]", json.dumps({**good, "valence": "x"}),
             json.dumps({**good, "t_capture": None, "t_emit": None}), json.dumps({"type": "event"}),
             json.dumps({**good, "t_capture": 1000.033, "valence": None}),
             json.dumps({**good, "t_capture": 5000.0, "label": "sad"})]
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(lines) + "\n")
    rec = load_recording(f)
    assert len(rec.states) == 2 and rec.malformed == 5 and rec.other == 1 and rec.cut_pauses == 1
    assert rec.first_problem.startswith("line 3")
    assert rec.gaps == [0.0, 2.0] and rec.states[1].label == "sad"
    assert rec.states[0].pose == (1.0, 2.0, 3.0) and rec.states[0].voice_age_ms is None
    assert parse_speed("realtime") == 1 and math.isinf(parse_speed("max")) and parse_speed("2x") == 2
    for bad in ("0", "-1", "fast", "nan"):
        with pytest.raises(ValueError):
            parse_speed(bad)


# ------------------------------------------------------------------------------------------------ preview


def test_render_overlay_on_a_face():
    import cv2
    import skimage.data

    from bridge.frames import AffectState
    from bridge.preview import render_overlay

    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    orig = img.copy()
    state = AffectState(seq=1, t_capture=0.0, t_capture_wall=0.0, valence=0.6, arousal=0.3,
                        probs={n: 1 / 8 for n in LABELS}, label="happy", confidence=0.8, face_present=True,
                        voice_active=False)
    lm = np.column_stack([np.linspace(0.35, 0.6, 478), np.linspace(0.2, 0.45, 478), np.zeros(478)]).astype(
        np.float32)
    out = render_overlay(img, state, lm)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, orig)  # the input is untouched
    changed = np.any(out != img, axis=2)
    assert changed.mean() > 0.02
    x, y = int(lm[200, 0] * 512), int(lm[200, 1] * 512)
    assert changed[y, x]  # a landmark was drawn where it lies
    waiting = render_overlay(np.zeros((240, 320, 3), np.uint8), None)
    assert waiting.shape == (240, 320, 3) and waiting.any()


def test_preview_is_off_without_a_display(monkeypatch, caplog):
    from bridge import preview

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert preview.display_available(platform="linux")[0] is False
    assert preview.display_available({"WAYLAND_DISPLAY": "wayland-0"}, "linux")[0] is False
    assert preview.display_available({"DISPLAY": ":0"}, "linux", probe=False)[0] is True
    ok, why = preview.display_available({"DISPLAY": "127.0.0.1:99"}, "linux")  # stale DISPLAY: off, no abort
    assert ok is False and "127.0.0.1:99" in why
    assert preview.display_available({}, "win32")[0] is True and preview.display_available({}, "darwin")[0]

    class FakeBridge:
        on_state = None
        on_frame = None

    b = FakeBridge()
    with caplog.at_level(logging.DEBUG, logger="bridge.preview"):
        if sys.platform.startswith("linux"):
            assert preview.attach_preview(b) is None
            assert b.on_state is None and b.on_frame is None
            assert any("preview off" in r.message and r.levelno == logging.DEBUG for r in caplog.records)
    p = preview.Preview()
    assert p.render().shape == (preview.BLANK_SIZE[1], preview.BLANK_SIZE[0], 3)
    assert p.render() is None  # nothing new: nothing drawn
    from bridge.features.face import FaceObservation

    p.on_frame(np.zeros((120, 160, 3), np.uint8), FaceObservation(0.0, True, landmarks=np.full((478, 3), 0.5)))
    assert p.render().shape == (120, 160, 3)



def test_preview_window_runs_on_the_calling_thread_and_never_blocks_the_work(monkeypatch):
    """The window loop with OpenCV's GUI calls replaced (no display here): shown on the calling (main) thread,
    the bridge's loop in a helper thread, newest state only, errors in the work handed back."""
    import cv2

    from bridge import preview
    from bridge.frames import AffectState

    shown: list = []
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append((threading.current_thread(), img.shape)))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: (time.sleep(ms / 1000), -1)[1])
    monkeypatch.setattr(cv2, "getWindowProperty", lambda name, prop: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: None)
    p = preview.Preview()
    worker: list = []

    def work():
        worker.append(threading.current_thread())
        for k in range(300):  # 300 states as fast as possible: the window only ever draws the newest
            p.on_state(AffectState(seq=k, t_capture=0.0, t_capture_wall=0.0, valence=0.0, arousal=0.0, probs={},
                                   label="calm", confidence=0.5, face_present=False, voice_active=False))
        time.sleep(0.4)

    p.run_alongside(work)
    assert worker and worker[0] is not threading.current_thread()
    assert shown and all(t is threading.current_thread() for t, _ in shown)
    assert len(shown) < 30 and shown[0][1] == (preview.BLANK_SIZE[1], preview.BLANK_SIZE[0], 3)

    def broken():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        preview.Preview().run_alongside(broken)


def test_replay_bridge_commands_and_events(tmp_path):
    from bridge.rehearsal import ReplayBridge

    base = {"type": "state", "valence": 0.1, "arousal": 0.2, "confidence": 0.6, "probs": {n: 1 / 8 for n in LABELS},
            "face": {"present": True, "yaw": 5.0}, "voice": {"active": True, "loudness_db": -20.0, "pitch_hz": 150}}
    labels = ["calm", "calm", "happy", "happy", "sad"]
    f = tmp_path / "r.jsonl"
    f.write_text("".join(json.dumps({**base, "t_capture": 10 + i / 30, "label": lab}) + "\n"
                         for i, lab in enumerate(labels)))
    b = ReplayBridge(Config(), load_recording(f), speed=math.inf, loop=True)
    assert [w.name for w in b.workers] == ["replay", "health"]
    got = []
    b.on_state = got.append
    events = []

    class Hub:
        def publish(self, state, changed=None, previous=None):
            events.append((changed, previous))

    b.hub = Hub()
    assert b.handle_command({"cmd": "rate", "hz": 10})["ok"] is False
    assert b.handle_command({"cmd": "mute", "target": "face", "on": True})["ok"]
    for _ in range(40):
        b._replay_body()
        if len(got) >= 7:
            break
    assert [s.label for s in got[:7]] == labels + labels[:2]  # looped
    assert [s.seq for s in got[:7]] == list(range(1, 8))
    assert [c for c, _ in events[:7]] == [None, None, "happy", None, "sad", "calm", None]
    assert not any(s.face_present for s in got) and all(s.head_pose == (0.0, 0.0, 0.0) for s in got)
    assert all(s.voice_active and s.pitch_hz == 150 for s in got)
    assert b.handle_command({"cmd": "reset"})["ok"]
    n = len(got)
    for _ in range(20):
        b._replay_body()
        if len(got) > n:
            break
    assert got[n].label == "calm" and b._i == 1  # rewound to the first state
