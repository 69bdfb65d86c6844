"""Face-only states with a fixed late fusion: the affect model's probabilities averaged half and half with the face
path's own expression probabilities (their mean over the last 1.5 s), against the model alone -- the protocol of
``benchmarks/face_only_noise.py`` (585 clear FER+ validation faces held 2 s from a fresh state; still, camera noise,
noise + a quiet-room microphone). A measurement for docs/MODEL_CARD.md ("Why it is not shipped"); the bridge does
not fuse this way (yet).

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/face_only_fusion.py [WEIGHTS ...]
"""
import sys
from pathlib import Path

import numpy as np
import torch

from bridge.features import face_model as fm
from bridge.features.face import FaceTracker
from bridge.labels import LABELS
from bridge.training.face_eval import EXPRESSION_LABELS, _ModelRunner, _prepare, load_images

torch.set_num_threads(1)
shared = Path(__file__).resolve().parents[2] / "shared"
W = sys.argv[1:] or [None]
images, y, _, kind = load_images(shared / "data" / "ferplus" / "ferplus_valid.npz", 600, min_agreement=0.7)
tr = FaceTracker(str(fm.resolve(None)), 0.3, running_mode="image")
obs = [tr.process(_prepare(im, kind), 0.0) for im in images]
tr.close()
ok = [i for i, o in enumerate(obs) if o.present and o.expression is not None]
yy = y[ok]
to_labels = [LABELS.index(lab) for lab in EXPRESSION_LABELS]


def label(p):
    lab = LABELS[int(np.argmax(p))]
    return EXPRESSION_LABELS.index("neutral" if lab == "calm" else lab)


for w in W:
    runner = _ModelRunner(w, 2.0)
    room = runner.room_vectors()
    for cond, noise, rm in (("still", 0.0, None), ("noise", 0.02, None), ("room", 0.02, room)):
        rng = np.random.default_rng(0)
        alone, fused = [], []
        for i in ok:
            out, exs = runner.hold(obs[i], noise, rng, rm)
            face = np.zeros(len(LABELS))
            face[to_labels] = exs[-int(1.5 * runner.tick_hz):].mean(0)
            alone.append(label(out))
            fused.append(label(0.5 * out + 0.5 * face))
        alone, fused = np.array(alone), np.array(fused)
        rec = lambda p, c: float(np.mean(p[yy == c] == c))  # noqa: E731
        print(Path(w or "default").name, cond, f"model alone {np.mean(alone == yy):.3f}, fused {np.mean(fused == yy):.3f}",
              " ".join(f"{EXPRESSION_LABELS[c][:3]} {rec(fused, c):.2f}" for c in range(7) if (yy == c).any()),
              flush=True)
