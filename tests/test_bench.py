"""The benchmark works: every section comes back with finite numbers. Pass/fail is on it working, never on speed
(the machines running the tests are shared; the numbers themselves live in docs/PERFORMANCE.md)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import bench
from helpers import face_model_path as _face_model

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "artifacts" / "train" / "report.json"

# even shorter than --quick: the point is that every section runs end to end
TINY = {"bridge_s": 4.0, "warmup_s": 2.0, "floor_frames": 30, "audio_s": 2.0, "audio_rounds": 1, "fanout_s": 1.0,
        "fanout_clients": (1, 3), "growth_ticks": 5, "growth_windows": (0.5, 2.0),
        "cpu_warm_s": 10.0, "cpu_measure_s": 2.0, "cpu_duration_s": 13.0, "cpu_repeats": 1, "cpu_monitor": (False,),
        "cpu_presets": ("configs/performance.yaml",), "cpu_empty_room": False,
        "faces_counts": (1, 2), "faces_frames": 15, "faces_repeats": 1, "stages_faces": (1, 2), "stages_faces_s": 3.0}




def _report(tmp_path: Path) -> Path:
    """The training report when there is one; else a stand-in with the same layout (this tests the plumbing)."""
    if REPORT.is_file() and "smoothing" in json.loads(REPORT.read_text()):
        return REPORT
    row = {"jitter": 0.01, "lag_ticks_median": 12.0, "lag_ticks_mean": 14.0, "uar": 0.4, "accuracy": 0.45}
    p = tmp_path / "report.json"
    p.write_text(json.dumps({"smoothing": {"lstm": row, "window": dict(row, jitter=0.05),
                                           "window+ema": dict(row, alpha=0.1),
                                           "window+one_euro": dict(row, min_cutoff=0.3)}}))
    return p


def _numbers(x, path=""):
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return
    if isinstance(x, (int, float)):
        yield path, x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _numbers(v, f"{path}[{i}]")


@pytest.mark.timeout(300)
def test_bench_produces_every_section_with_numbers(tmp_path):
    if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        pytest.skip("espeak-ng is not installed: the benchmark's speech cannot be made")
    pytest.importorskip("opensmile")
    pytest.importorskip("psutil")
    out = tmp_path / "results.json"
    res = bench.run(quick=True, out=str(out), face_model=_face_model(), report=str(_report(tmp_path)),
                    workdir=str(tmp_path / "work"), overrides=TINY)
    assert res["errors"] == {}
    assert set(res["sections"]) == set(bench.sections())
    assert json.loads(out.read_text())["sections"].keys() == res["sections"].keys()

    bad = [(p, v) for p, v in _numbers(res["sections"]) if not math.isfinite(v)]
    assert not bad, f"non-finite numbers: {bad[:10]}"

    w, c, st = res["sections"]["wire"], res["sections"]["cpu"], res["sections"]["stages"]
    assert w["ws_receive_minus_t_capture_ms"]["n"] > 0  # states crossed the wire to the other process
    assert w["osc_matched"] > 0 and w["landmarker_floor_ms"]["n"] > 0
    assert w["face_found_in_floor_frames"] > 0  # the landmarker did see the face
    # the outside measurement ran the user's command as its own process and read it from /proc
    run = c["runs"]["no_monitor"][0]
    assert run["rc"] == 0 and ("emotion-bridge run" in run["command"] or " -m bridge run" in run["command"])
    assert run["cpu_s"] > 0 and run["threads_pct_of_one_core"].get("drishti", 0) > 0  # MediaPipe's own threads
    assert run["states_sent"] and run["states_sent"] > 0
    pre = c["presets"]["performance"]
    assert pre["runs"][0]["rc"] == 0 and pre["settings"]["video.face_fps"] < 30.0  # the preset's own settings
    # the per-stage profile saw every stage called
    calls = st["per_stage"]["calls"]
    assert all(calls.get(k, 0) > 0 for k in ("face_process", "landmarker_call", "push_audio", "model_step", "publish"))
    assert st["per_stage"]["landmarker"]["ms_per_unit"] > 0 and st["per_stage"]["model step"]["ms_per_unit"] > 0
    # the same run with two people in view (a video of two real faces, people.num_faces 2)
    by = st["by_faces"]
    assert set(by) == {1, 2} and by[2]["num_faces"] == 2 and by[2]["people_in_view_at_end"] == 2
    assert by[2]["ms"]["landmarker"] > 0 and by[2]["states_per_s"] > 0 and math.isfinite(by[2]["wire_p99_ms"])
    fc = res["sections"]["faces"]["faces"]
    assert set(fc) == {"1", "2"} and fc["2"]["faces_found_mean"] > 1.5  # two faces really tracked
    a = res["sections"]["audio"]
    assert set(a["cpu_ms_per_audio_s"]) == {"ours", "librosa_window", "opensmile_lld", "opensmile_lld_func"}
    assert a["opensmile_outputs"]["opensmile_lld"] > 0 and a["opensmile_outputs"]["opensmile_lld_func"] > 0
    f = res["sections"]["fanout"]
    assert f["clients"] == [1, 3] and all(0 < x <= 1 for x in f["delivered_fraction_min"])
    g = res["sections"]["growth"]
    assert g["window_s"] == [0.5, 2.0] and len(g["ours_ms"]) == 2
    assert {t["name"].split(" (")[0] for t in res["targets"]} >= {"capture-to-wire p99"}
    assert all(isinstance(t["met"], bool) for t in res["targets"]) and len(res["targets"]) == 5


def test_bench_command_writes_json(tmp_path):
    """The CLI front: `emotion-bridge bench --only smoothing --out F` prints the table and writes the JSON."""
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "bridge", "bench", "--only", "smoothing", "--report",
                        str(_report(tmp_path)), "--out", str(out)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "160"})
    assert p.returncode == 0, p.stderr
    assert "smoothing" in p.stdout and "lstm" in p.stdout
    assert "lstm" in json.loads(out.read_text())["sections"]["smoothing"]["rows"]
    bad = subprocess.run([sys.executable, "-m", "bridge", "bench", "--only", "nope"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "unknown section" in bad.stderr
