"""Audio capture with real parts: a PulseAudio virtual microphone recorded through PortAudio, speech from espeak-ng,
real files (wav/mp3) decoded by libsndfile, and a real sound-server crash for the reconnect path."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from bridge.capture.audio import (FileAudioSource, MicrophoneSource, input_devices, iter_audio_file, list_devices,
                                  open_audio, resolve_input_device)
from bridge.capture.base import CaptureError, DeviceNotFoundError
from bridge.clock import now
from bridge.config import AudioConfig, SourcesConfig
from bridge.frames import AudioBlock

from conftest import SPEECH_PAD_S

SR = 16000


def wait_status(src, status: str, timeout: float) -> dict:
    deadline = now() + timeout
    while now() < deadline:
        h = src.health()
        if h["status"] == status:
            return h
        src.read(0.05) if hasattr(src, "read") else time.sleep(0.05)
    raise AssertionError(f"status never became {status!r} within {timeout}s: {src.health()}")


def collect(src, seconds: float) -> list[AudioBlock]:
    out: list[AudioBlock] = []
    deadline = now() + seconds
    while now() < deadline:
        for b in src.read(0.1):
            t = now()
            assert b.t_capture <= t and t - b.t_end < 0.5, (b.t_capture, b.t_end, t)  # close to now
            out.append(b)
    return out


def check_blocks(blocks: list[AudioBlock], max_gap: float = 0.1) -> None:
    assert blocks
    for b in blocks:
        assert isinstance(b, AudioBlock)
        assert b.sr == SR and b.samples.dtype == np.float32 and b.samples.ndim == 1 and len(b.samples) > 0
    t = np.array([b.t_capture for b in blocks])
    assert np.all(np.diff(t) > 0), "t_capture must strictly increase"
    gaps = np.array([blocks[i + 1].t_capture - blocks[i].t_end for i in range(len(blocks) - 1)])
    assert np.abs(gaps).max() < max_gap, f"timeline not contiguous: worst gap {np.abs(gaps).max():.4f}s"


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def mic(device, **kw) -> MicrophoneSource:
    kw.setdefault("backoff_initial_s", 0.1)
    kw.setdefault("backoff_max_s", 0.5)
    return MicrophoneSource(device, **kw)


# ------------------------------------------------------------------------------------------------ microphone


@pytest.mark.slow
def test_microphone_records_speech(virtual_mic, speech_wav):
    src = mic(virtual_mic.device, block_ms=20)
    src.start()
    try:
        wait_status(src, "ok", 10)
        src.read(0)
        silence = collect(src, 0.4)
        player = virtual_mic.play(speech_wav, wait=False)
        speech: list[AudioBlock] = []
        while player.poll() is None:
            speech += collect(src, 0.2)
        speech += collect(src, 0.3)
        assert player.returncode == 0, player.stderr.read()
        h = src.health()
    finally:
        t0 = now()
        src.stop()
        assert now() - t0 < 2.0
    src.stop()  # idempotent
    assert src.health()["status"] == "off"
    check_blocks(silence + speech)
    assert h["status"] == "ok" and h["device_samplerate"] == SR  # the pulse device does 16 kHz: no resampling
    assert all(len(b.samples) == 320 for b in speech)
    x = np.concatenate([b.samples for b in speech])
    dur = len(sf.read(speech_wav)[0]) / sf.info(speech_wav).samplerate
    assert len(x) / SR > dur - 2 * SPEECH_PAD_S  # the whole utterance was recorded
    win = 1600
    env = np.array([rms(x[i:i + win]) for i in range(0, len(x) - win, win)])
    quiet = rms(np.concatenate([b.samples for b in silence]))
    assert env.max() > 0.02, env.max()
    assert env.max() > 20 * max(quiet, 1e-5), (env.max(), quiet)
    assert (env > 0.02).sum() >= 8  # >= 0.8 s of voiced windows


@pytest.mark.slow
def test_microphone_resamples_device_rate_to_16k(virtual_mic, tmp_path):
    tone = tmp_path / "tone.wav"
    f0 = 1000.0
    t = np.arange(int(1.2 * 44100)) / 44100
    sf.write(tone, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), 44100)
    src = mic(virtual_mic.device, samplerate=48000, block_ms=10)
    src.start()
    try:
        wait_status(src, "ok", 10)
        src.read(0)
        t_start = now()
        player = virtual_mic.play(tone, wait=False)
        blocks = collect(src, 1.5)
        elapsed = now() - t_start
        player.wait(10)
        h = src.health()
    finally:
        src.stop()
    assert h["device_samplerate"] == 48000
    check_blocks(blocks)
    x = np.concatenate([b.samples for b in blocks])
    assert abs(len(x) / SR - elapsed) < 0.25, (len(x) / SR, elapsed)  # 16 kHz worth of samples per second
    loud = x[np.argmax(np.abs(x) > 0.1):][:8000]
    assert len(loud) == 8000
    spec = np.abs(np.fft.rfft(loud * np.hanning(len(loud))))
    peak = np.fft.rfftfreq(len(loud), 1 / SR)[np.argmax(spec)]
    assert abs(peak - f0) < 10, peak


@pytest.mark.slow
def test_microphone_reconnects_after_sound_server_dies_and_device_vanishes(virtual_mic):
    src = mic(virtual_mic.device, stall_s=1.0)
    src.start()
    try:
        wait_status(src, "ok", 10)
        assert collect(src, 0.3)
        # real fault: the sound server goes away under the open stream
        virtual_mic.kill()
        t_kill = now()
        h = wait_status(src, "reconnecting", 3.0)
        assert now() - t_kill < 2.5
        assert h["errors"] >= 1
        time.sleep(0.5)  # a few reopen attempts fail while the server is down
        assert src.health()["status"] == "reconnecting"
        virtual_mic.start()
        t_back = now()
        wait_status(src, "ok", 15)
        src.read(0)
        blocks = collect(src, 0.5)
        # second real fault: the recorded device itself disappears (null sink unloaded), then comes back
        virtual_mic.unload_sink()
        wait_status(src, "reconnecting", 3.0)
        virtual_mic.load_sink()
        t_back2 = now()
        wait_status(src, "ok", 15)
        src.read(0)
        blocks2 = collect(src, 0.3)
        h = src.health()
    finally:
        t0 = now()
        src.stop()
        stop_s = now() - t0
        virtual_mic.ensure()  # leave the shared server and sink up for the tests that follow
    assert stop_s < 2.0
    assert blocks and blocks[0].t_capture > t_back - 0.5
    assert blocks2 and blocks2[0].t_capture > t_back2 - 0.5
    check_blocks(blocks)
    check_blocks(blocks2)
    assert h["reconnects"] >= 2 and h["errors"] >= 2 and h["status"] == "ok"


@pytest.mark.slow
def test_microphone_ring_is_bounded_and_counts_drops(virtual_mic):
    src = mic(virtual_mic.device, ring_seconds=0.5, block_ms=20)
    src.start()
    try:
        wait_status(src, "ok", 10)
        before = collect(src, 0.2)
        time.sleep(1.3)  # the consumer stalls for longer than the ring holds
        after = src.read(0.5)
        more = collect(src, 0.2)
        h = src.health()
    finally:
        src.stop()
    assert len(after) <= 25
    assert h["dropped"] >= 20
    check_blocks(after + more)
    assert after[0].t_capture - before[-1].t_end > 0.5  # the gap shows in the timeline, nothing is invented


def test_device_selection_by_name_index_and_clear_error(virtual_mic):
    inputs = input_devices()
    pulse = next(d for d in inputs if d["name"] == virtual_mic.device)
    assert resolve_input_device("PuLs") == pulse["index"]  # case-insensitive substring
    assert resolve_input_device(virtual_mic.device) == pulse["index"]
    assert resolve_input_device(pulse["index"]) == pulse["index"]
    assert resolve_input_device(str(pulse["index"])) == pulse["index"]
    assert resolve_input_device("default") is None
    with pytest.raises(DeviceNotFoundError) as e:
        MicrophoneSource("no-such-microphone-xyz")
    msg = str(e.value)
    assert "no-such-microphone-xyz" in msg and "Available input devices" in msg and "pulse" in msg
    with pytest.raises(DeviceNotFoundError, match="index 999"):
        resolve_input_device(999)
    src = open_audio(AudioConfig(source="PULSE"), SourcesConfig())
    assert isinstance(src, MicrophoneSource) and src.health()["status"] == "off"
    d = list_devices()
    assert any(i["name"] == "pulse" for i in d["inputs"])
    assert isinstance(d["cameras"], list) and d["error"] is None


# ------------------------------------------------------------------------------------------------ files


def test_iter_audio_file_is_deterministic(speech_wav):
    a = list(iter_audio_file(speech_wav, block_ms=20))
    b = list(iter_audio_file(speech_wav, block_ms=20))
    assert len(a) == len(b) > 100
    assert all(np.array_equal(x.samples, y.samples) and x.t_capture == y.t_capture for x, y in zip(a, b))
    assert all(len(x.samples) == 320 for x in a[:-1]) and 0 < len(a[-1].samples) <= 320
    assert all(x.sr == SR and x.samples.dtype == np.float32 for x in a)
    assert [x.t_capture for x in a] == [i * 320 / SR for i in range(len(a))]
    info = sf.info(speech_wav)
    n = sum(len(x.samples) for x in a)
    assert abs(n - info.frames * SR / info.samplerate) <= 2  # exactly resampled from 22.05 kHz
    x = np.concatenate([blk.samples for blk in a])
    pad = int(SPEECH_PAD_S * SR)
    assert rms(x[: pad - 400]) < 1e-3 < 0.02 < rms(x[pad: -pad])


def test_mp3_decodes(speech_wav, speech_mp3):
    wav = np.concatenate([b.samples for b in iter_audio_file(speech_wav)])
    mp3 = list(iter_audio_file(speech_mp3, block_ms=32))
    assert all(len(b.samples) == 512 for b in mp3[:-1])
    y = np.concatenate([b.samples for b in mp3])
    assert abs(len(y) - len(wav)) / SR < 0.1
    pad = int(SPEECH_PAD_S * SR)
    assert abs(rms(y[pad:-pad]) / rms(wav[pad:-pad]) - 1) < 0.2
    src = open_audio(AudioConfig(source=str(speech_mp3)), SourcesConfig(speed="max"))
    assert isinstance(src, FileAudioSource)


def test_file_source_max_speed_delivers_everything_then_ends(speech_wav):
    ref = np.concatenate([b.samples for b in iter_audio_file(speech_wav)])
    src = FileAudioSource(speech_wav, speed="max")
    src.start()
    blocks: list[AudioBlock] = []
    t0 = now()
    while not src.ended and now() - t0 < 10:
        blocks += src.read(0.1)
    assert now() - t0 < 2.0  # much faster than the 4+ s of audio
    assert src.ended and src.health()["status"] == "ended"
    assert src.read(0.5) == [] and now() - t0 < 2.5  # no waiting once ended
    check_blocks(blocks, max_gap=1e-6)
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), ref)
    assert blocks[-1].t_end >= now() - 1.0
    src.stop()
    assert src.health()["status"] == "off"


def test_file_source_realtime_is_paced_like_a_microphone(speech_wav):
    src = FileAudioSource(speech_wav, speed="realtime")
    src.start()
    t0 = now()
    blocks = collect(src, 1.0)
    elapsed = now() - t0
    src.stop()
    check_blocks(blocks, max_gap=1e-6)
    delivered = sum(len(b.samples) for b in blocks) / SR
    assert abs(delivered - elapsed) < 0.1, (delivered, elapsed)
    assert abs(blocks[0].t_capture - t0) < 0.01
    assert not src.ended


def test_file_source_realtime_slow_consumer_drops_oldest(speech_wav):
    src = FileAudioSource(speech_wav, speed="realtime", ring_seconds=0.5)
    src.start()
    time.sleep(1.2)
    blocks = src.read(0.1)
    src.stop()
    assert len(blocks) == 25  # the ring: 0.5 s of 20 ms blocks
    assert src.health()["dropped"] >= 30
    assert now() - blocks[-1].t_end < 0.1  # the newest audio is kept


def test_file_source_loops(tmp_path):
    p = tmp_path / "short.flac"
    sf.write(p, (0.1 * np.sin(np.linspace(0, 400, 8000))).astype(np.float32), 8000)  # 1 s at 8 kHz
    src = FileAudioSource(p, speed="max", loop=True)
    src.start()
    blocks: list[AudioBlock] = []
    while sum(len(b.samples) for b in blocks) < 2.5 * SR:
        blocks += src.read(0.1)
    h = src.health()
    src.stop()
    assert not src.ended and h["status"] == "ok" and h["loops"] >= 2
    check_blocks(blocks, max_gap=1e-6)


def test_file_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        FileAudioSource(tmp_path / "nope.wav")
    with pytest.raises(FileNotFoundError):
        open_audio(AudioConfig(source=str(tmp_path / "nope.wav")), SourcesConfig())
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not audio")
    with pytest.raises(CaptureError, match="bad.wav"):
        FileAudioSource(bad)
