"""Face-only states of the affect model on clear FER+ validation faces (majority share >= 0.7, 600 drawn as
`emotion-bridge evaluate ... --through-model --limit 600 --min-agreement 0.7` draws them), each face held for 2 s
from a fresh state:

- ``still``: every frame the same numbers (every window standard deviation exactly 0, as the evaluate command does);
- ``noise``: camera-like noise (sigma 0.02 per frame on blendshapes and expression probabilities);
- ``room``: ``noise``, and the microphone on, hearing a quiet room (pink noise at -50 dBFS through the bridge's own
  audio features and voice-activity model) but no voice -- a visitor who does not speak in a gallery.

The affect model alone (``face_fusion`` 0); what the bridge outputs, fused with the face path while no voice is
heard, is ``benchmarks/face_only_fusion.py``. docs/MODEL_CARD.md, "Tried, not shipped" and "Face-only states".

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/face_only_noise.py WEIGHTS [WEIGHTS ...]
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch; torch.set_num_threads(1)
from bridge.training.face_eval import load_images, _prepare, _ModelRunner
from bridge.training.face_eval import EXPRESSION_LABELS
from bridge.features.face import FaceTracker
from bridge.features import face_model as fm

shared = Path(__file__).resolve().parents[2] / 'shared'
images, y, _, kind = load_images(shared / 'data' / 'ferplus' / 'ferplus_valid.npz', 600, min_agreement=0.7)
tr = FaceTracker(str(fm.resolve(None)), 0.3, running_mode='image')
obs = [tr.process(_prepare(im, kind), 0.0) for im in images]; tr.close()
ok = [i for i, o in enumerate(obs) if o.present and o.expression is not None]
print('faces', len(ok), 'face path acc', np.mean([np.argmax(obs[i].expression) == y[i] for i in ok]))


for w in sys.argv[1:]:
    runner = _ModelRunner(w, 2.0, face_fusion=0.0)
    room = runner.room_vectors()
    yy = y[ok]
    for cond, noise, rm in (("still", 0.0, None), ("noise", 0.02, None), ("room", 0.02, room)):
        rng = np.random.default_rng(0)
        pred = np.array([runner(obs[i], noise, rng, rm) for i in ok])
        rec = [np.mean(pred[yy == c] == c) for c in range(7) if (yy == c).any()]
        print(os.path.basename(w), cond, 'acc %.3f UAR %.3f' % (np.mean(pred == yy), np.mean(rec)),
              'recall ' + ' '.join('%s %.2f' % (EXPRESSION_LABELS[c][:3], r) for c, r in
                                   zip([c for c in range(7) if (yy == c).any()], rec)), flush=True)
