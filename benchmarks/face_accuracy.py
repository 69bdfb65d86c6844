"""Does a CPU optimisation of the face path change what the bridge says? ``python benchmarks/face_accuracy.py``

Runs :func:`bridge.pipeline.process_files` (the live pipeline on a file, virtual clock: deterministic) on real
face videos with the frame gate off (the landmarker on every frame, as before) and with each setting to compare,
and reports, on the same frames: the blendshapes (mean / max absolute difference), the head pose, the face
window vector the model sees, the model's probabilities and its labels (agreement). Videos:

* ``astronaut``: the demo video (scikit-image's astronaut photo, always moving slightly; 640x480, 30 fps).
* ``ferplus``: FER+ validation faces (real people, clear majority vote, several expressions), each upscaled to
  240 px on a 640x480 canvas, held 1.5 s: 0.75 s still (the same frame plus camera-like noise, sigma 2 grey
  levels), then 0.75 s moving slightly. Many faces, many expressions, and still stretches where skipping acts.

* ``talking``: the astronaut photo whose mouth opens and closes with espeak-ng speech (the loudness envelope; the
  test media of ``tests/people_media.py``), drifting slowly: a face that is rarely steady.

Results go to JSON (``--out``); docs/PERFORMANCE.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FERPLUS = ROOT.parent / "shared" / "data" / "ferplus" / "ferplus_valid.npz"
EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def ferplus_video(path: Path, n_faces: int = 16, hold_s: float = 1.5, fps: float = 30.0, seed: int = 0,
                  npz: Path = FERPLUS) -> Path:
    import cv2

    d = np.load(npz)
    votes, images = d["votes"], d["images"]
    rng = np.random.default_rng(seed)
    picks = []
    for e in range(8):  # two faces of each expression with a clear majority (at least 7 of 10 votes)
        idx = np.flatnonzero((votes.argmax(1) == e) & (votes.max(1) >= 7))
        picks += list(rng.choice(idx, size=min(len(idx), max(1, n_faces // 8)), replace=False))
    rng.shuffle(picks)
    to_label = {"neutral": "neutral", "happiness": "happy", "surprise": "surprised", "sadness": "sad",
                "anger": "angry", "disgust": "disgust", "fear": "fearful"}  # contempt: no such label here
    truth = []
    w, h = 640, 480
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = int(hold_s * fps)
    for i in picks:
        face = cv2.resize(images[i], (240, 240), interpolation=cv2.INTER_CUBIC)
        face = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
        truth += [to_label.get(EMOTIONS[int(votes[i].argmax())])] * n
        for k in range(n):
            moving = k >= n // 2
            a = 2 * np.pi * (k - n // 2) / n if moving else 0.0
            m = cv2.getRotationMatrix2D((120, 120), 3.0 * np.sin(a), 1.0 + 0.03 * np.sin(2 * a))
            m[:, 2] += (w / 2 - 120 + 10 * np.sin(a), h / 2 - 120 + 6 * (1 - np.cos(a)))
            frame = cv2.warpAffine(face, m, (w, h), borderValue=(110, 110, 110))
            noise = rng.normal(0, 2.0, frame.shape)
            writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
    writer.release()
    path.with_suffix(".truth.json").write_text(json.dumps(truth))
    return path


def talking_video(path: Path, face_model: str) -> Path:
    """The astronaut speaking: its mouth opened per video frame by the loudness of espeak-ng speech."""
    sys.path.insert(0, str(ROOT / "tests"))
    import people_media as pm

    _, y, sr = pm.speech(path.with_suffix(".wav"), "Hello, I am so happy to see you here tonight. What a wonderful "
                                                   "day it is, and how lovely that you came.")
    face = pm.astronaut(240)
    mouth = pm.find_mouth(face, face_model)
    n = int(np.ceil(len(y) / sr * pm.FPS))
    env = pm.envelope(y, sr, n)
    frames = [[(pm.open_mouth(face, mouth, env[i]), int(200 + 15 * np.sin(2 * np.pi * i / n)),
                int(60 + 8 * np.cos(2 * np.pi * i / n)))] for i in range(n)]
    return pm.write_video(path, frames)


def truth_scores(states, truth: list | None) -> dict:
    """Label accuracy and unweighted average recall against the FER+ majority label of each frame's face."""
    if not truth:
        return {}
    pairs = [(s.label, truth[i]) for i, s in enumerate(states) if i < len(truth) and truth[i]]
    if not pairs:
        return {}
    classes = sorted({t for _, t in pairs})
    rec = [np.mean([p == t for p, t in pairs if t == c]) for c in classes]
    return {"accuracy": float(np.mean([p == t for p, t in pairs])), "uar": float(np.mean(rec)), "n": len(pairs)}


OFF = {"video.face_fps": 0.0, "video.skip_unchanged": 0.0, "video.idle_face_fps": 0.0, "video.expression_fps": 0.0,
       "video.steady_face_fps": 0.0, "people.num_faces": 1, "audio.enabled": False}


def observations(video: Path, face_model: str, over: dict):
    """Per frame: (t, verdict, observation used) with verdict 'run' / 'same' / 'drop'; the gate's counts."""
    from bridge.capture.video import FrameGate, iter_video_file
    from bridge.config import load_config
    from bridge.features.face import FaceTracker
    from bridge.pipeline import face_observation

    cfg = load_config(None, {**OFF, **over})
    tracker = FaceTracker(face_model, 0.5, cfg.video.max_input_side, small_faces=cfg.video.small_faces,
                          num_faces=cfg.people.num_faces, expression_fps=cfg.video.expression_fps)
    gate = FrameGate.from_config(cfg.video)
    out, last = [], None
    try:
        for fr in iter_video_file(str(video)):
            before = dict(gate.counts)
            obs = face_observation(gate, tracker, fr.image, fr.t_capture, last)
            verdict = next(k for k in gate.counts if gate.counts[k] != before[k])
            if obs is not None:
                last = obs
            out.append((fr.t_capture, verdict, obs))
    finally:
        tracker.close()
    return out, dict(gate.counts)


def compare(video: Path, face_model: str, variants: dict[str, dict]) -> dict:
    """Every variant against the reference (landmarker on every frame, nothing skipped), on the same frames."""
    from bridge.config import load_config
    from bridge.pipeline import probs_array, process_files

    ref_obs, _ = observations(video, face_model, {})
    ref_cfg = load_config(None, OFF)
    ref_states = process_files(video=video, config=ref_cfg, face_model=face_model)
    ref_t = np.array([s.t_capture for s in ref_states])
    tf = video.with_suffix(".truth.json")
    truth = json.loads(tf.read_text()) if tf.is_file() else None
    res = {"frames": len(ref_obs), "face_found_frames": int(sum(o.present for _, _, o in ref_obs)),
           "reference_vs_truth": truth_scores(ref_states, truth)}
    for name, over in variants.items():
        obs, counts = observations(video, face_model, over)
        bs_d, pose_d, present_same, ex_d = [], [], [], []
        for (t, _, o_ref), (_, verdict, o) in zip(ref_obs, obs):
            if o is None:
                continue
            present_same.append(o.present == o_ref.present)
            if o.present and o_ref.present:
                bs_d.append(np.abs(o.blendshapes - o_ref.blendshapes))
                pose_d.append(np.abs(np.subtract(o.pose, o_ref.pose)))
                if o.expression is not None and o_ref.expression is not None:
                    ex_d.append(np.abs(o.expression - o_ref.expression))
        cfg = load_config(None, {**OFF, **over})
        states = process_files(video=video, config=cfg, face_model=face_model)
        t = np.array([s.t_capture for s in states])
        idx = np.searchsorted(ref_t, t)  # the reference state at the same frame
        ok = (idx < len(ref_t)) & (np.abs(ref_t[np.minimum(idx, len(ref_t) - 1)] - t) < 1e-6)
        a, b = probs_array([states[i] for i in np.flatnonzero(ok)]), probs_array([ref_states[j] for j in idx[ok]])
        labels = np.mean([states[i].label == ref_states[j].label for i, j in zip(np.flatnonzero(ok), idx[ok])])
        raw = np.mean([states[i].raw_label == ref_states[j].raw_label for i, j in zip(np.flatnonzero(ok), idx[ok])])
        bs = np.stack(bs_d) if bs_d else np.zeros((1, 1))
        res[name] = {
            "settings": over, "gate": counts, "landmarker_runs_per_frame": counts["run"] / max(1, len(obs)),
            "presence_agreement": float(np.mean(present_same)) if present_same else float("nan"),
            "blendshape_abs_diff": {"mean": float(bs.mean()), "p99": float(np.percentile(bs, 99)),
                                    "max": float(bs.max())},
            "pose_abs_diff_deg": {"mean": float(np.mean(pose_d)) if pose_d else 0.0,
                                  "max": float(np.max(pose_d)) if pose_d else 0.0},
            "expression_abs_diff": {"mean": float(np.mean(ex_d)) if ex_d else 0.0,
                                    "max": float(np.max(ex_d)) if ex_d else 0.0},
            "states_compared": int(ok.sum()),
            "probs_abs_diff": {"mean": float(np.abs(a - b).mean()) if len(a) else float("nan"),
                               "max": float(np.abs(a - b).max()) if len(a) else float("nan")},
            "label_agreement": float(labels), "raw_label_agreement": float(raw),
            "vs_truth": truth_scores(states, truth) if len(states) == len(ref_states) else {},
        }
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--workdir", default="/tmp/emotion-bridge-face-accuracy")
    ap.add_argument("--out", default=None)
    ap.add_argument("--videos", default="astronaut,ferplus,talking", help="comma-separated: astronaut, ferplus, "
                                                                         "talking")
    ap.add_argument("--variants", default="", help="comma-separated variant names (default: all)")
    a = ap.parse_args(argv)
    from bridge.demo import make_face_video
    from bridge.features import face_model as fm

    model = str(fm.resolve(a.face_model))
    wd = Path(a.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    videos = {"astronaut": wd / "astronaut.mp4", "ferplus": wd / "ferplus.mp4", "talking": wd / "talking.avi"}
    if not videos["astronaut"].is_file():
        make_face_video(videos["astronaut"])
    if not videos["ferplus"].is_file():
        ferplus_video(videos["ferplus"])
    if "talking" in a.videos and not videos["talking"].is_file():
        talking_video(videos["talking"], model)
    variants = {
        # today's defaults: face_fps 30, idle 10, expression_fps 10, steady_face_fps 15
        "default": {"video.face_fps": 30.0, "video.idle_face_fps": 10.0, "video.expression_fps": 10.0,
                    "video.steady_face_fps": 15.0},
        "default_steady_off": {"video.face_fps": 30.0, "video.idle_face_fps": 10.0, "video.expression_fps": 10.0},
        # the landmarker at 15 per second while the face is steady, the last observation held in between
        "steady_15": {"video.steady_face_fps": 15.0},  # steady_max_change 0.05, the default
        "steady_15_change_0.1": {"video.steady_face_fps": 15.0, "video.steady_max_change": 0.1},
        "steady_10": {"video.steady_face_fps": 10.0},
        "face_fps_30_idle_10": {"video.face_fps": 30.0, "video.idle_face_fps": 10.0},
        "skip_unchanged_2": {"video.skip_unchanged": 2.0, "video.face_fps": 30.0},
        "skip_unchanged_4": {"video.skip_unchanged": 4.0, "video.face_fps": 30.0},
        "face_fps_15": {"video.skip_unchanged": 0.0, "video.face_fps": 15.0},
        "face_fps_10": {"video.skip_unchanged": 0.0, "video.face_fps": 10.0},
        "face_fps_15_skip_4": {"video.skip_unchanged": 4.0, "video.face_fps": 15.0},
        "max_input_side_320": {"video.max_input_side": 320},
        # the expression network on each face at most this often, its last result held in between
        "expression_fps_15": {"video.expression_fps": 15.0},
        "expression_fps_10": {"video.expression_fps": 10.0},
        # configs/performance.yaml, and the same with the expression network at 5 per second
        "preset": {"video.face_fps": 10.0, "video.idle_face_fps": 5.0, "video.skip_unchanged": 2.0},
        "preset_expression_fps_5": {"video.face_fps": 10.0, "video.idle_face_fps": 5.0, "video.skip_unchanged": 2.0,
                                    "video.expression_fps": 5.0},
        # the landmarker allowed 4 faces (people.num_faces 4) on videos of one face
        "num_faces_4": {"people.num_faces": 4},
    }
    if a.variants:
        keep = [x.strip() for x in a.variants.split(",")]
        variants = {k: v for k, v in variants.items() if any(k.startswith(x) for x in keep)}
    chosen = [x.strip() for x in a.videos.split(",")]
    res = {name: compare(v, model, variants) for name, v in videos.items() if name in chosen}
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
