"""Would an average of 3 trained models steady the face-only states and keep the voice? (docs/MODEL_CARD.md, "Δ-MFCC
spread and onset rate".) Session-9 scratch, kept so the measurement can be repeated: it expects three weights files
of the v3 front end (``/work/lead/s9/v3f0_s{0,1,2}/w.pt``, trained by ``TrainConfig`` with the v3 change, which is
described in the model card and not in the shipped code), the v2 schema dumped to ``/work/lead/s9/schema_v2.json``
and the feature cache's v3 entries; it runs under the shipped (v2) code, since a v3 tick vector is the v2 one with
the audio columns sliced to the v3 names (exact). Voice: each clip from a fresh state, the clip label the mean of its
states' probabilities, per model and averaged over the three; face only: benchmarks/face_only_noise.py's protocol.

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/ensemble_probe.py
"""
import json, sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from bridge.model.affect import StreamingAffectModel, load_weights
from bridge.training.train import run_net, clip_eval, _mask_absent
from bridge.training import build as B
from bridge.labels import LABELS
# usage: ensemble_probe.py [SCHEMA_V2.json WEIGHTS WEIGHTS WEIGHTS] (defaults: session 9's scratch files)
args = sys.argv[1:] or ["/work/lead/s9/schema_v2.json"] + [f"/work/lead/s9/v3f0_s{i}/w.pt" for i in range(3)]
old = json.load(open(args[0]))["plain"]["audio_names"]
W = args[1:]
nets = [load_weights(w) for w in W]
new = nets[0][1]["feature_schema"]["audio_names"]
cols = [old.index(n) for n in new]
def to_v3(v):  # (..., 70 + F + 4) -> (..., 56 + F + 4)
    return np.concatenate([v[..., :70][..., cols], v[..., 70:]], -1)
# ---- voice: cached v3 singles (evaluate's seed 4243)
from bridge.training.train import make_inputs
res = {}
for tag, key in (("rav", "seq-baef6fe0f4d5d1b0ac9b.npz"), ("spa", "seq-64d08d5c10f057a5f8b7.npz")):
    seqs = B._load(Path(".cache/features") / key)
    present = {int(l) for s in seqs for l in np.unique(s.label[s.weight > 0])}
    outs = [[run_net(n, make_inputs(s, None)) for s in seqs] for n, _ in nets]
    for k in range(3):
        r = clip_eval([_mask_absent(o[0], present) for o in outs[k]], seqs, [o[1] for o in outs[k]])
        res[f"{tag}_s{k}"] = (round(r["uar"], 3), round(r.get("arousal_auc", 0), 3), round(r.get("neutral_mean_arousal", 0), 3))
    P = [np.mean([outs[k][i][0] for k in range(3)], 0) for i in range(len(seqs))]
    V = [np.mean([outs[k][i][1] for k in range(3)], 0) for i in range(len(seqs))]
    r = clip_eval([_mask_absent(p, present) for p in P], seqs, V)
    res[f"{tag}_ens"] = (round(r["uar"], 3), round(r.get("arousal_auc", 0), 3), round(r.get("neutral_mean_arousal", 0), 3))
    print(tag, {k: v for k, v in res.items() if k.startswith(tag)}, flush=True)
# ---- face only
from bridge.training.face_eval import load_images, _prepare, _ModelRunner, EXPRESSION_LABELS
from bridge.features.face import FaceTracker, FaceObservation
from bridge.features import face_model as fm
from bridge.engine import FeatureEngine
shared = Path("/work/shared")
images, y, _, kind = load_images(shared / "data" / "ferplus" / "ferplus_valid.npz", 600, min_agreement=0.7)
tr = FaceTracker(str(fm.resolve(None)), 0.3, running_mode="image")
obs = [tr.process(_prepare(im, kind), 0.0) for im in images]; tr.close()
ok = [i for i, o in enumerate(obs) if o.present and o.expression is not None]
v2run = _ModelRunner(None, 2.0)  # the v2 engine config, for the vectors
room = v2run.room_vectors()
models = [StreamingAffectModel.load(w) for w in W]
def lab_idx(p):
    lab = LABELS[int(np.argmax(p))]
    return EXPRESSION_LABELS.index("neutral" if lab == "calm" else lab)
for cond, noise, rm in (("still", 0.0, None), ("noise", 0.02, None), ("room", 0.02, room)):
    rng = np.random.default_rng(0)
    preds = {k: [] for k in ("s0", "s1", "s2", "ens")}
    for i in ok:
        o = obs[i]
        eng = FeatureEngine(v2run.audio_cfg, v2run.video_cfg, use_audio=False)
        for m in models: m.reset()
        outs = None
        for k in range(int(2.0 * v2run.tick_hz)):
            t = (k + 1) / v2run.tick_hz
            bs, ex = o.blendshapes, o.expression
            if noise > 0:
                bs = np.clip(bs + rng.normal(0, noise, bs.shape), 0, 1).astype(np.float32)
                ex = np.clip(ex + rng.normal(0, noise, ex.shape), 1e-4, None); ex = (ex / ex.sum()).astype(np.float32)
            eng.push_face(FaceObservation(t, True, bs, o.pose, o.size, None, ex))
            v = eng.vector(t)[0].copy()
            if rm is not None:
                v[:70], v[-4], v[-2] = rm[k][:70], rm[k][-4], rm[k][-2]
            v3 = to_v3(v).astype(np.float32)
            outs = [m.step(v3).probs for m in models]
        for k in range(3): preds[f"s{k}"].append(lab_idx(outs[k]))
        preds["ens"].append(lab_idx(np.mean(outs, 0)))
    yy = y[ok]
    line = []
    for k, p in preds.items():
        p = np.array(p); neu = EXPRESSION_LABELS.index("neutral")
        line.append(f"{k} acc {np.mean(p == yy):.3f} neu {np.mean(p[yy == neu] == neu):.2f} ang {np.mean(p[yy == EXPRESSION_LABELS.index('angry')] == EXPRESSION_LABELS.index('angry')):.2f}")
    print(cond, " | ".join(line), flush=True)
