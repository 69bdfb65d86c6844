"""The latency outlier of issue 13: a camera file that ends (or a camera that stalls) while the audio goes on,
and then the audio ends too. The old rule stamped each state with the newest capture time of *any* input, fresh
or not: once the audio had ended, every state carried the last video frame's capture time and the wire latency
read as seconds (`p99 9047 ms` in a 14 s run whose video ended after 3 s). These tests fail on that rule."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from bridge.config import AudioConfig, Config, VideoConfig
from bridge.engine import FACE_STALE_S, FeatureEngine
from bridge.features.face import FaceObservation
from helpers import face_model_path, free_port


def test_stale_face_does_not_stamp_the_state():
    eng = FeatureEngine(AudioConfig(), VideoConfig())
    eng.push_face(FaceObservation(t_capture=3.0, present=True))
    for k in range(int(9.0 / 0.02)):  # audio from 3 s to 12 s, then the file ends
        eng.push_audio(np.zeros(320, np.float32), 3.0 + (k + 1) * 0.02)
    _, info = eng.vector(12.0)
    assert info.t_newest == pytest.approx(12.0)  # the audio is the newest input
    eng.audio_lost()  # the audio file ended (or the microphone went away)
    _, info = eng.vector(12.1)
    assert not info.face_present
    assert 12.1 - info.t_newest < FACE_STALE_S, (
        f"a state at 12.1 s is stamped {info.t_newest:.2f} s: the stale face frame of 3 s")
    # a fresh face still counts, present or not (a camera seeing nobody is an input too)
    eng.push_face(FaceObservation(t_capture=12.2, present=False))
    _, info = eng.vector(12.25)
    assert info.t_newest == pytest.approx(12.2)


@pytest.mark.slow
def test_video_ends_before_audio_no_seconds_old_states(make_face_video, speech_wav, tmp_path):
    """The issue's run, shortened: the face video ends after 0.6 s, the audio after 2.5 s; the bridge keeps
    ticking 0.8 s after both ended (as `run` does until it notices, longer under CPU load)."""
    from bridge.capture.audio import FileAudioSource
    from bridge.capture.video import FileVideoSource
    from bridge.features.face import FaceTracker
    from bridge.output.hub import OutputHub
    from bridge.pipeline import Bridge, load_model

    video = make_face_video("face_short", seconds=0.6)
    y, sr = sf.read(speech_wav, dtype="float32")
    audio = tmp_path / "a.wav"
    sf.write(audio, y[: int(2.5 * sr)], sr)
    cfg = Config.model_validate({"osc": {"targets": [f"127.0.0.1:{free_port(2)}"], "control_port": 0},
                                 "websocket": {"port": 0}, "monitor": {"enabled": False}})
    model = load_model(cfg)
    br = Bridge(cfg, model, FileAudioSource(audio), FileVideoSource(video),
                FaceTracker(face_model_path()), hub=OutputHub(cfg))
    br.start()
    try:
        deadline = time.monotonic() + 20
        while not br.sources_ended() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert br.sources_ended()
        time.sleep(0.8)
    finally:
        br.stop()
    lat = np.array(br.hub.latencies_ms)
    assert len(lat) > 60
    assert lat.max() < 1000.0, f"worst capture-to-wire latency {lat.max():.0f} ms (p99 {np.percentile(lat, 99):.0f})"
    assert br.face_frames > 5  # the face path really ran
