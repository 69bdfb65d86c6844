"""Face-only states of the affect model on clear FER+ validation faces (majority share >= 0.7, 600 drawn as
`emotion-bridge evaluate ... --through-model --limit 600 --min-agreement 0.7` draws them): each face held still for
2 s (every window standard deviation exactly 0, as the evaluate command does) and with camera-like noise (sigma
0.02 per frame on blendshapes and expression probabilities). docs/MODEL_CARD.md, "Tried, not shipped".

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/face_only_noise.py WEIGHTS [WEIGHTS ...]
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch; torch.set_num_threads(1)
from bridge.training.face_eval import load_images, _prepare, _ModelRunner
from bridge.features.face import FaceTracker
from bridge.features import face_model as fm
shared = Path(__file__).resolve().parents[2] / 'shared'
images, y, _, kind = load_images(shared / 'data' / 'ferplus' / 'ferplus_valid.npz', 600, min_agreement=0.7)
tr = FaceTracker(str(fm.resolve(None)), 0.3, running_mode='image')
obs = [tr.process(_prepare(im, kind), 0.0) for im in images]; tr.close()
ok = [i for i, o in enumerate(obs) if o.present and o.expression is not None]
print('faces', len(ok), 'face path acc', np.mean([np.argmax(obs[i].expression) == y[i] for i in ok]))
for w in sys.argv[1:]:
    runner = _ModelRunner(w, 2.0)
    yy = y[ok]
    for noise in (0.0, 0.02):
        rng = np.random.default_rng(0)
        pred = np.array([runner(obs[i], noise, rng) for i in ok])
        rec = [np.mean(pred[yy == c] == c) for c in range(7) if (yy == c).any()]
        print(os.path.basename(w), 'noise', noise, 'acc %.3f UAR %.3f' % (np.mean(pred == yy), np.mean(rec)), flush=True)
