"""Face-only states with the bridge's late fusion (``model.face_fusion``, bridge.engine.FaceFusion: while no
voice is heard, half the affect model's probabilities and half the face path's own expression probabilities) against
the model alone -- the protocol of ``benchmarks/face_only_noise.py`` (585 clear FER+ validation faces held 2 s from a
fresh state; still, camera noise, noise + a quiet-room microphone). Numbers in docs/MODEL_CARD.md.

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/face_only_fusion.py [WEIGHTS ...]
"""
import sys
from pathlib import Path

import numpy as np
import torch

from bridge.features import face_model as fm
from bridge.features.face import FaceTracker
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

for w in W:
    alone_runner, fused_runner = _ModelRunner(w, 2.0, face_fusion=0.0), _ModelRunner(w, 2.0, face_fusion=0.5)
    room = alone_runner.room_vectors()
    for cond, noise, rm in (("still", 0.0, None), ("noise", 0.02, None), ("room", 0.02, room)):
        alone = np.array([alone_runner(obs[i], noise, np.random.default_rng(i), rm) for i in ok])
        fused = np.array([fused_runner(obs[i], noise, np.random.default_rng(i), rm) for i in ok])
        rec = lambda p, c: float(np.mean(p[yy == c] == c))  # noqa: E731
        print(Path(w or "default").name, cond, f"model alone {np.mean(alone == yy):.3f}, fused {np.mean(fused == yy):.3f}",
              " ".join(f"{EXPRESSION_LABELS[c][:3]} {rec(fused, c):.2f}" for c in range(7) if (yy == c).any()),
              flush=True)
