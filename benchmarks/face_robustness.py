"""Robustness of the face path to what cameras do, on real faces (FER+ validation split).

Each face (48x48 grey, upscaled) is placed in a 640x480 frame and transformed: mirrored, zoomed in (face 320 px
wide) and out (a face 60 px wide: from a 320x240 camera, and far away in a 640x480 frame), rotated by +-15 degrees, in low light (a quarter of the brightness + sensor noise),
and with the mouth covered (a hand-sized skin-tone blob over the lower face). Every frame goes through the live face
path (FaceTracker: MediaPipe -> landmark crop -> expression network -> FER+ head); the far-away frame is
shown for 15 frames (the small-face search looks at one part of the frame every third frame without a face). Reported per condition: accuracy
against the FER+ majority, agreement with the clean frame's label, how often the label flips to another one, how
often the face is lost, and the mean top probability (the face path's confidence).

    python benchmarks/face_robustness.py --per-label 40 --out artifacts/face_robustness.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

W, H = 640, 480


def place(img48: np.ndarray, width: int, frame: tuple[int, int] = (W, H)) -> np.ndarray:
    import cv2

    W, H = frame  # noqa: N806
    face = cv2.resize(img48, (width, width), interpolation=cv2.INTER_CUBIC if width > 48 else cv2.INTER_AREA)
    f = np.full((H, W), int(img48.mean()), np.uint8)
    y0, x0 = (H - width) // 2, (W - width) // 2
    f[max(0, y0):y0 + width, max(0, x0):x0 + width] = face[max(0, -y0):H - y0, max(0, -x0):W - x0]
    return cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)


def conditions(img48: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    import cv2

    base = place(img48, 200)
    rot = lambda a: cv2.warpAffine(base, cv2.getRotationMatrix2D((W / 2, H / 2), a, 1.0), (W, H),
                                   borderMode=cv2.BORDER_REPLICATE)
    dark = np.clip(base.astype(np.float32) * 0.25 + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    occl = base.copy()
    # the lower face (mouth) of the 200 px face covered by a hand-sized skin-tone ellipse
    cv2.ellipse(occl, (W // 2, H // 2 + 62), (70, 38), 0, 0, 360, (120, 150, 190), -1)
    return {"clean": base, "mirrored": base[:, ::-1].copy(), "zoom in (320 px face)": place(img48, 320),
            "60 px face, 320x240 camera": place(img48, 60, (320, 240)),
            "60 px face in 640x480 (far away)": place(img48, 60), "rotated +15 deg": rot(15), "rotated -15 deg": rot(-15),
            "low light (1/4 + noise)": dark, "mouth covered": occl}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferplus", default="../shared/data/ferplus/ferplus_valid.npz")
    ap.add_argument("--per-label", type=int, default=40)
    ap.add_argument("--out", default="artifacts/face_robustness.json")
    ap.add_argument("--skip", action="append", default=[],
                    help="leave out conditions whose name contains this text (e.g. --skip 'far away'); repeatable")
    ap.add_argument("--face-model", default=os.environ.get("BRIDGE_FACE_MODEL", "../shared/models/face_landmarker.task"))
    a = ap.parse_args(argv)
    import torch

    from bridge.features.expression import EXPRESSION_LABELS
    from bridge.features.face import FaceTracker
    from bridge.training.face_real import ferplus_targets

    torch.set_num_threads(1)
    d = np.load(a.ferplus)
    images = d["images"]
    soft, maj, keep = ferplus_targets(d["votes"])
    agree = soft[np.arange(len(soft)), maj]
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.permutation(np.flatnonzero(keep & (maj == c) & (agree >= 0.5)))[:a.per_label]
                          for c in range(len(EXPRESSION_LABELS))])
    tr = FaceTracker(a.face_model, 0.3, running_mode="image")
    res: dict[str, dict[str, list]] = {}
    try:
        for i in idx:
            for name, frame in conditions(images[i], rng).items():
                if any(k in name for k in a.skip):
                    continue
                # a far-away face is searched for in parts of the frame, one part every third frame without a
                # face: give it the 15 frames (0.5 s) a camera would deliver, and score the last one
                for _ in range(15 if "far away" in name else 1):
                    o = tr.process(frame, 0.0)
                r = res.setdefault(name, {"pred": [], "conf": []})
                ok = o.present and o.expression is not None
                r["pred"].append(int(np.argmax(o.expression)) if ok else -1)
                r["conf"].append(float(np.max(o.expression)) if ok else 0.0)
    finally:
        tr.close()
    y = maj[idx]
    clean = np.array(res["clean"]["pred"])
    table = {}
    for name, r in res.items():
        p, c = np.array(r["pred"]), np.array(r["conf"])
        both = (p >= 0) & (clean >= 0)
        rec = [float(np.mean(p[y == k] == k)) for k in range(len(EXPRESSION_LABELS))]
        table[name] = {"accuracy": float(np.mean(p == y)), "uar": float(np.mean(rec)),
                       "same_as_clean": float(np.mean(p[both] == clean[both])) if both.any() else float("nan"),
                       "flipped": float(np.mean(p[both] != clean[both])) if both.any() else float("nan"),
                       "face_lost": float(np.mean(p < 0)),
                       "mean_top_prob": float(np.mean(c[p >= 0])) if (p >= 0).any() else 0.0}
    out = {"faces": int(len(idx)), "per_label": a.per_label, "source": a.ferplus, "table": table}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"{len(idx)} FER+ validation faces ({a.per_label} per label), face path")
    print("| condition | accuracy | UAR | same label as clean | flipped | face lost | mean top prob |")
    print("|---|---|---|---|---|---|---|")
    for name, t in table.items():
        print(f"| {name} | {t['accuracy']:.3f} | {t['uar']:.3f} | {t['same_as_clean']:.3f} | {t['flipped']:.3f} | "
              f"{t['face_lost']:.3f} | {t['mean_top_prob']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
