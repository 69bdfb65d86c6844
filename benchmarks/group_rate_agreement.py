"""What `video.faces_per_s` changes in what the bridge says about a group: `process_files` on the bench's 2- and
4-face videos (`benchmarks/bench.py` `group_video`, real faces) with its speech, every person's state of every tick,
with the landmarker on every face of every frame (`faces_per_s` 0) against the default (30). docs/PERFORMANCE.md.

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/group_rate_agreement.py [WORKDIR]
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
import bench  # noqa: E402
import bridge  # noqa: E402
from bridge.config import Config  # noqa: E402

wd = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
_, speech = bench.media(wd)
for n in (2, 4):
    out = {}
    for fps in (0.0, 30.0):
        cfg = Config.model_validate({"video": {"faces_per_s": fps}})
        states = bridge.process_files(video=bench.group_video(wd, n), audio=speech, config=cfg)
        out[fps] = {(i, p.slot): (p.state.label, np.array(list(p.state.probs.values())))
                    for i, s in enumerate(states) for p in s.people}
    keys = sorted(set(out[0.0]) & set(out[30.0]))
    same = np.mean([out[0.0][k][0] == out[30.0][k][0] for k in keys])
    dp = np.mean([np.abs(out[0.0][k][1] - out[30.0][k][1]).max() for k in keys])
    print(f"{n} people: {len(keys)} person-states in both (of {len(out[0.0])} / {len(out[30.0])}), "
          f"same label {same:.3f}, mean max |dp| {dp:.3f}", flush=True)
