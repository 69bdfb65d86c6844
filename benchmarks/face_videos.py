"""Clear real faces through the whole bridge, face only: the first N FER+ validation faces (file order, not picked
by result) that >= 9 of the ten taggers give each label, each a still face drifting a little in a 640x480 video
(``tests/test_face_path.py``'s protocol), through ``bridge.process_files`` with no audio and with a microphone
hearing a quiet room (pink noise at -50 dBFS, nobody speaking). The label is the most common label of the second
half of the states. Compared for each ``model.face_fusion`` given (bridge.engine.FaceFusion; 0 = the model alone).

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/face_videos.py [--per-label 20] [--fusion 0 0.5]
        [--weights W] [--out benchmarks/results/face-videos.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import bridge
from bridge.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_face_path import _face_video, _late_label, _quiet_room  # noqa: E402  (the tests' own protocol)

FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus" / "ferplus_valid.npz"
# FER+ vote columns of the 7 labels the face path reads
VOTE_COL = {"neutral": 0, "happy": 1, "surprised": 2, "sad": 3, "angry": 4, "disgust": 5, "fearful": 6}


def clear_faces(votes: np.ndarray, per_label: int) -> dict[str, list[int]]:
    return {lab: [int(i) for i in np.flatnonzero(votes[:, c] >= 9)[:per_label]] for lab, c in VOTE_COL.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-label", type=int, default=20)
    ap.add_argument("--fusion", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--labels", nargs="+", default=list(VOTE_COL))
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    z = np.load(FERPLUS)
    images, faces = z["images"], clear_faces(z["votes"], a.per_label)
    res: dict = {"protocol": __doc__.split("\n\n")[0], "faces": faces, "weights": a.weights or "default", "runs": {}}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        room = _quiet_room(tmp / "room.wav")
        videos = {i: _face_video(tmp / f"fer{i}.mp4", images[i]) for lab in a.labels for i in faces[lab]}
        for fusion in a.fusion:
            cfg = load_config(None, {"model.face_fusion": fusion})
            for cond, audio in (("face", None), ("room", room)):
                got = {lab: [_late_label(bridge.process_files(video=videos[i], audio=audio, config=cfg,
                                                              weights=a.weights)) for i in faces[lab]]
                       for lab in a.labels}
                hits = {lab: sum(g == lab for g in got[lab]) for lab in a.labels}
                n = sum(len(faces[lab]) for lab in a.labels)
                res["runs"][f"fusion {fusion} {cond}"] = {"hits": hits, "n": n, "correct": sum(hits.values()),
                                                          "labels": got}
                print(f"fusion {fusion} {cond}: {sum(hits.values())}/{n}",
                      " ".join(f"{lab} {hits[lab]}/{len(faces[lab])}" for lab in a.labels), flush=True)
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
