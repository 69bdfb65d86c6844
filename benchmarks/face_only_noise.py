"""Face-only states of the affect model on clear FER+ validation faces (majority share >= 0.7, 600 drawn as
`emotion-bridge evaluate ... --through-model --limit 600 --min-agreement 0.7` draws them), each face held for 2 s
from a fresh state:

- ``still``: every frame the same numbers (every window standard deviation exactly 0, as the evaluate command does);
- ``noise``: camera-like noise (sigma 0.02 per frame on blendshapes and expression probabilities);
- ``room``: ``noise``, and the microphone on, hearing a quiet room (pink noise at -50 dBFS through the bridge's own
  audio features and voice-activity model) but no voice -- a visitor who does not speak in a gallery.

docs/MODEL_CARD.md, "Tried, not shipped" and "Face-only states".

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/face_only_noise.py WEIGHTS [WEIGHTS ...]
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch; torch.set_num_threads(1)
from bridge.training.face_eval import load_images, _prepare, _ModelRunner
from bridge.training.face_eval import EXPRESSION_LABELS
from bridge.features.face import FaceObservation, FaceTracker
from bridge.features import face_model as fm
from bridge.labels import LABELS

shared = Path(__file__).resolve().parents[2] / 'shared'
images, y, _, kind = load_images(shared / 'data' / 'ferplus' / 'ferplus_valid.npz', 600, min_agreement=0.7)
tr = FaceTracker(str(fm.resolve(None)), 0.3, running_mode='image')
obs = [tr.process(_prepare(im, kind), 0.0) for im in images]; tr.close()
ok = [i for i, o in enumerate(obs) if o.present and o.expression is not None]
print('faces', len(ok), 'face path acc', np.mean([np.argmax(obs[i].expression) == y[i] for i in ok]))


def room_vectors(runner, n_ticks, db=-50.0):
    """The audio block and audio masks of each tick for a quiet room: pink noise through the bridge's audio path."""
    from bridge.config import VideoConfig
    from bridge.training.augment import pink_noise

    eng = runner._Engine(runner.audio_cfg, VideoConfig(), use_face=False)
    sr = runner.audio_cfg.sample_rate
    x = (pink_noise(int(sr * n_ticks / runner.tick_hz) + sr, np.random.default_rng(1)) * 10 ** (db / 20)
         ).astype(np.float32)
    blk = int(sr / runner.tick_hz)
    out = []
    for k in range(n_ticks):
        t = (k + 1) / runner.tick_hz
        eng.push_audio(x[k * blk:(k + 1) * blk], t)
        v, info = eng.vector(t)
        assert not info.voice_active, "the quiet room must not be speech"
        out.append(v)
    return np.stack(out)


def face_only(runner, o, noise, rng, room=None):
    eng = runner._Engine(runner.audio_cfg, runner.video_cfg, use_audio=False)
    runner.model.reset()
    A = eng.audio_dim
    out = None
    for k in range(int(runner.hold_s * runner.tick_hz)):
        t = (k + 1) / runner.tick_hz
        bs, ex = o.blendshapes, o.expression
        if noise > 0:
            bs = np.clip(bs + rng.normal(0, noise, bs.shape), 0, 1).astype(np.float32)
            ex = np.clip(ex + rng.normal(0, noise, ex.shape), 1e-4, None)
            ex = (ex / ex.sum()).astype(np.float32)
        eng.push_face(FaceObservation(t, True, bs, o.pose, o.size, None, ex))
        v = eng.vector(t)[0]
        if room is not None:  # the room's audio block and masks (audio present, its age)
            v = v.copy()
            v[:A] = room[k][:A]
            v[-4], v[-2] = room[k][-4], room[k][-2]
        out = runner.model.step(v)
    lab = LABELS[int(np.argmax(out.probs))]
    return EXPRESSION_LABELS.index("neutral" if lab == "calm" else lab)


for w in sys.argv[1:]:
    runner = _ModelRunner(w, 2.0)
    room = room_vectors(runner, int(runner.hold_s * runner.tick_hz))
    yy = y[ok]
    for cond, noise, rm in (("still", 0.0, None), ("noise", 0.02, None), ("room", 0.02, room)):
        rng = np.random.default_rng(0)
        pred = np.array([face_only(runner, obs[i], noise, rng, rm) for i in ok])
        rec = [np.mean(pred[yy == c] == c) for c in range(7) if (yy == c).any()]
        print(os.path.basename(w), cond, 'acc %.3f UAR %.3f' % (np.mean(pred == yy), np.mean(rec)),
              'recall ' + ' '.join('%s %.2f' % (EXPRESSION_LABELS[c][:3], r) for c, r in
                                   zip([c for c in range(7) if (yy == c).any()], rec)), flush=True)
