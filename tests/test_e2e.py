"""End to end, the way a user meets the bridge: the `emotion-bridge` command on a virtual microphone and on a
real video file of a face, received over real UDP (OSC) and WebSocket clients on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

import bridge
from helpers import OscReceiver, free_port

pytestmark = pytest.mark.slow
EXE = [sys.executable, "-m", "bridge"]


def run_bridge(args, env=None, duration=8.0):
    cmd = EXE + ["run", "--quiet", "--no-monitor", "--duration", str(duration)] + args
    return subprocess.Popen(cmd, env=env or os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_virtual_microphone_voice_activity(virtual_mic, speech_wav, tmp_path):
    rx = OscReceiver()
    rx.start()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("osc:\n  control_port: 0\n")
    env = virtual_mic.env
    p = run_bridge(["--config", str(cfg), "--no-video", "--audio", virtual_mic.device, "--osc",
                    f"127.0.0.1:{rx.port}", "--ws", f"127.0.0.1:{free_port()}"], env=env, duration=10)
    try:
        deadline = time.monotonic() + 30
        while not rx.bundles and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert rx.bundles, f"no OSC from the bridge: {p.stdout.read() if p.poll() is not None else ''}"
        time.sleep(1.5)  # silence first
        t_play = time.monotonic()
        virtual_mic.play(speech_wav)
        t_done = time.monotonic()
        time.sleep(1.0)
    finally:
        out, _ = p.communicate(timeout=30)
        rx.stop = True
    assert p.returncode == 0, out
    times = np.array([t for t, _ in rx.bundles])
    steady = times[(times > times[0] + 1.0) & (times < t_done)]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert 24 <= rate <= 36, f"tick rate {rate:.1f} Hz, expected ~30"
    silent = [b["/voice/active"] for t, b in rx.bundles if times[0] + 0.5 < t < t_play - 0.2]
    speech = [b["/voice/active"] for t, b in rx.bundles if t_play + 1.3 < t < t_done - 1.0]  # 1 s padding
    assert silent and max(silent) == 0
    assert np.mean(speech) > 0.5, f"voice active only {np.mean(speech):.0%} of the speech"
    loud = [b["/voice/loudness"] for t, b in rx.bundles if t_play + 1.3 < t < t_done - 1.0]
    assert np.median(loud) > -40
    probs = np.array([[b[f"/emotion/prob/{n}"] for n in bridge.labels.LABELS] for _, b in rx.bundles])
    assert np.allclose(probs.sum(1), 1, atol=1e-3)


async def _ws_collect(port, seconds, out):
    deadline = time.monotonic() + 30
    while True:
        try:
            ws = await connect(f"ws://127.0.0.1:{port}")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    async with ws:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            try:
                out.append(json.loads(await asyncio.wait_for(ws.recv(), 1.0)))
            except asyncio.TimeoutError:
                pass
            except Exception:
                break


def test_face_video_to_osc_and_websocket(face_video, tmp_path):
    rx = OscReceiver()
    rx.start()
    ws_port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("osc:\n  blendshapes: true\n  control_port: 0\nvideo:\n  mirror: false\n")
    p = run_bridge(["--config", str(cfg), "--no-audio", "--video", str(face_video), "--loop", "--osc",
                    f"127.0.0.1:{rx.port}", "--ws", f"127.0.0.1:{ws_port}"], duration=12)
    msgs: list[dict] = []
    try:
        asyncio.run(_ws_collect(ws_port, 6.0, msgs))
    finally:
        out, _ = p.communicate(timeout=30)
        rx.stop = True
    assert p.returncode == 0, out
    assert msgs and msgs[0]["type"] == "hello"
    states = [m for m in msgs if m["type"] == "state"]
    assert len(states) > 60
    present = [s["face"]["present"] for s in states[10:]]
    assert np.mean(present) > 0.9
    smiles = [b["/face/blendshape/mouthSmileLeft"] for _, b in rx.bundles if "/face/blendshape/mouthSmileLeft" in b]
    assert np.median(smiles) > 0.5
    assert np.mean([b["/face/present"] for _, b in rx.bundles[10:]]) > 0.9
    late = states[len(states) // 2:]
    assert np.mean([s["label"] == "happy" for s in late]) > 0.8, [s["label"] for s in late][:20]
    assert np.mean([s["valence"] for s in late]) > 0.2
    lat = [s["latency_ms"] for s in states]
    assert all(x >= 0 for x in lat)


def test_process_files_is_deterministic_and_speed_independent(speech_wav, face_video):
    a = bridge.process_files(audio=speech_wav)
    b = bridge.process_files(audio=speech_wav)
    assert len(a) == len(b) > 50
    assert [s.probs for s in a] == [s.probs for s in b]
    assert any(s.voice_active for s in a) and not a[0].voice_active
    # virtual clock: state k is the tick at (k+1)/30 s and reflects audio up to the last 20 ms block before it
    assert all(-1e-9 <= (k + 1) / 30 - s.t_capture < 0.02 + 1e-9 for k, s in enumerate(a[:-1]))
    v = bridge.process_files(video=face_video)
    assert len(v) == 90 and sum(s.face_present for s in v) > 80
    assert max(s.probs["happy"] for s in v) > 0.5


def test_no_input_at_all_says_so():
    p = subprocess.run(EXE + ["run", "--no-audio", "--no-video", "--no-monitor"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode != 0
    assert "no input" in p.stderr and "emotion-bridge devices" in p.stderr


def test_missing_weights_say_so(tmp_path):
    p = subprocess.run(EXE + ["run", "--no-video", "--weights", str(tmp_path / "none.pt")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode != 0 and "no model weights" in p.stderr


def test_bad_config_names_key(tmp_path):
    c = tmp_path / "c.yaml"
    c.write_text("websocket:\n  prot: 1\n")
    p = subprocess.run(EXE + ["config", "-c", str(c)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "websocket.prot" in p.stderr and "port" in p.stderr
    p = subprocess.run(EXE + ["config"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "tick_hz: 30.0" in p.stdout


def test_missing_face_model_explains_where_to_put_it(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "BRIDGE_FACE_MODEL": "", "HOME": str(tmp_path),
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    p = subprocess.run(EXE + ["run", "--no-audio", "--no-monitor", "--duration", "1"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode != 0
    assert "face_landmarker.task" in p.stderr and "--no-video" in p.stderr
    assert str(Path(tmp_path) / "emotion-bridge") in p.stderr.replace("\n", "")


def test_label_hysteresis_dwell_and_challengers_taking_turns():
    """A new label is emitted after the current one has been beaten for the dwell: with one challenger after it has
    led for min_dwell_s (not before); a momentary lead emits nothing; with two challengers taking turns, each
    for less than the dwell, the label still moves on after the dwell, to the one that led longest."""
    from bridge.config import EventsConfig
    from bridge.engine import Hysteresis
    from bridge.labels import LABELS

    def p(**kw):
        v = np.full(len(LABELS), 0.02)
        for k, x in kw.items():
            v[LABELS.index(k)] = x
        return v / v.sum()

    cfg = EventsConfig(min_dwell_s=0.6, min_confidence=0.25)
    h = Hysteresis(cfg)
    ticks = [k / 30 for k in range(200)]
    for t in ticks[:10]:  # a lead of a third of a second: no change
        assert h.update(p(happy=0.6, neutral=0.2), 0.8, t) is None
    assert all(h.update(p(neutral=0.6), 0.8, t) is None for t in ticks[10:20])
    changed = [t for t in ticks[20:60] if h.update(p(happy=0.6, neutral=0.2), 0.8, t) == "neutral"]
    assert h.label == "happy" and changed == [ticks[38]]  # after 18 ticks = 0.6 s of lead
    assert all(h.update(p(sad=0.6, happy=0.2), 0.1, t) is None for t in ticks[60:100])  # not confident: kept
    assert h.label == "happy"
    # sad and angry take turns leading (10 ticks each), happy far behind both: the old label does not stay
    out = [h.update(p(sad=0.45, angry=0.35, happy=0.1) if (k // 10) % 2 == 0 else p(angry=0.45, sad=0.35, happy=0.1),
                    0.8, t) for k, t in enumerate(ticks[100:125])]
    k = next(i for i, o in enumerate(out) if o is not None)
    assert 17 <= k <= 19 and out[k] == "happy" and h.label == "sad"  # sad led 10 of the 18-19 ticks
