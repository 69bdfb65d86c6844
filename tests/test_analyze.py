"""POST /analyze on the monitor's HTTP server, with a real HTTP client (http.client) and real files: speech from
espeak-ng (wav), a face video from OpenCV muxed with that speech by ffmpeg (mp4), a truncated mp4 and wav, a text
file named .wav, an oversized upload, a concurrent second request, and the token rule off loopback."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
import time
import uuid

import pytest

from bridge.analyze import Analyzer, sniff
from bridge.config import Config
from bridge.monitor.server import MonitorServer

pytestmark = pytest.mark.slow


def _post(port: int, body: bytes, ctype: str = "application/octet-stream", headers: dict | None = None,
          path: str = "/analyze", timeout: float = 120) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": ctype, **(headers or {})})
        r = c.getresponse()
        raw = r.read()
        is_json = r.getheader("Content-Type", "").startswith("application/json")
        return r.status, json.loads(raw) if is_json else {"text": raw.decode(errors="replace")}
    finally:
        c.close()


def _multipart(data: bytes, filename: str, field: str = "file") -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


@pytest.fixture(scope="module")
def server(face_model_env):
    cfg = Config.model_validate({"analyze": {"max_bytes": 3_000_000}})
    mon = MonitorServer("127.0.0.1", 0, 9980, analyzer=Analyzer(cfg))
    mon.start()
    yield mon
    mon.stop()


@pytest.fixture(scope="module")
def face_model_env():
    from helpers import face_model_path

    return face_model_path()


@pytest.fixture(scope="module")
def speech_mp4(make_face_video, speech_wav, tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    video = make_face_video("analyze_face", seconds=2.0)
    out = tmp_path_factory.mktemp("mp4") / "face_speech.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-ss", "1.0",
                    "-i", str(speech_wav), "-t", "2.0", "-c:v", "copy", "-c:a", "aac", "-shortest", str(out)],
                   check=True, capture_output=True, timeout=60)
    return out


def test_good_wav_raw_body(server, speech_wav):
    data = speech_wav.read_bytes()
    code, res = _post(server.port, data, "audio/wav")
    assert code == 200, res
    s = res["summary"]
    assert res["file"] == {"type": "wav", "bytes": len(data), "audio": True, "video": False}
    assert s["n_states"] == len(res["states"]) > 100
    assert s["duration_s"] == pytest.approx(res["states"][-1]["t_capture"], abs=2e-3)
    assert abs(sum(s["label_shares"].values()) - 1) < 1e-3 and s["top_label"] in s["label_shares"]
    assert len(s["timeline"]) == int(s["duration_s"]) + 1 and 0.2 < s["voice_active_share"] < 1.0
    st = res["states"][0]
    assert st["type"] == "state" and st["t_emit"] is None and 0 <= st["t_capture"] < 0.1
    assert -1 <= s["valence_mean"] <= 1 and res["warnings"] == []
    from bridge.output import schema  # every field the endpoint returns is declared there (the docs are made from it)

    assert list(s) == [f[0] for f in schema.ANALYZE_SUMMARY_FIELDS]
    assert list(res) == [f[0] for f in schema.ANALYZE_RESPONSE_FIELDS]
    assert set(st) == {f[0] for f in schema.JSON_STATE_FIELDS}


def test_good_mp4_multipart(server, speech_mp4):
    body, ctype = _multipart(speech_mp4.read_bytes(), "clip.mp4")
    code, res = _post(server.port, body, ctype)
    assert code == 200, res
    assert res["file"]["type"] == "mp4" and res["file"]["audio"] and res["file"]["video"]
    s = res["summary"]
    assert s["face_present_share"] > 0.8 and s["voice_active_share"] > 0.2
    assert 50 <= s["n_states"] <= 61  # one state per frame of 2 s at 30 fps


def test_bad_inputs(server, speech_mp4, speech_wav):
    mp4 = speech_mp4.read_bytes()
    code, res = _post(server.port, mp4[: len(mp4) // 3], "video/mp4")  # cut off: no index (moov) at the end
    assert 400 <= code < 500 and "mp4" in res["error"], res
    wav = speech_wav.read_bytes()
    code, res = _post(server.port, wav[: len(wav) // 2], "audio/wav")  # a cut-off wav: what arrived is analysed
    assert code == 200 and "truncated" in res["warnings"][0], res
    body, ctype = _multipart(b"hello, this is not audio at all\n" * 20, "speech.wav")
    code, res = _post(server.port, body, ctype)
    assert code == 415 and "not a wav" in res["error"] and "by content" in res["error"], res
    code, res = _post(server.port, b"x" * 3_100_000, "audio/wav")
    assert code == 413 and "max_bytes" in res["error"], res
    body, ctype = _multipart(wav, "speech.wav", field="upload")
    code, res = _post(server.port, body, ctype)
    assert code == 400 and "`file` field" in res["error"], res
    code, res = _post(server.port, b"", "audio/wav")
    assert code == 400
    code, _ = _post(server.port, wav, "audio/wav", path="/config.json")
    assert code == 405


def test_concurrent_second_request_gets_429(server, speech_mp4):
    data = speech_mp4.read_bytes()
    first: dict = {}

    def run():
        first["r"] = _post(server.port, data, "video/mp4")

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 20
    while not server.analyzer.busy and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.analyzer.busy
    code, res = _post(server.port, data, "video/mp4")
    t.join(120)
    assert code == 429 and "one at a time" in res["error"], res
    assert first["r"][0] == 200


def test_token_required_off_loopback(face_model_env, speech_wav):
    data = speech_wav.read_bytes()
    open_mon = MonitorServer("0.0.0.0", 0, 9980, analyzer=Analyzer(Config()))
    tok_mon = MonitorServer("0.0.0.0", 0, 9980,
                            analyzer=Analyzer(Config.model_validate({"analyze": {"token": "t0ken"}})))
    open_mon.start()
    tok_mon.start()
    try:
        code, res = _post(open_mon.port, data, "audio/wav")
        assert code == 403 and "analyze.token" in res["error"]
        code, res = _post(tok_mon.port, data, "audio/wav")
        assert code == 401
        code, res = _post(tok_mon.port, data, "audio/wav", headers={"Authorization": "Bearer t0ken"})
        assert code == 200 and res["summary"]["n_states"] > 100
    finally:
        open_mon.stop()
        tok_mon.stop()


def test_sniff():
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff(b"fLaC\x00") == "flac"
    assert sniff(b"ID3\x04") == "mp3" and sniff(b"\xff\xfb\x90\x00") == "mp3"
    assert sniff(b"\x00\x00\x00\x18ftypmp42") == "mp4"
    assert sniff(b"hello world") is None and sniff(b"") is None and sniff(b"\xff\xe0") is None
