"""The FER+ head as an ensemble, measured the way `face_finetune --stage finish` fits the shipped head (the
fine-tuned network's outputs on the FER+ training faces plus 20 % covered-mouth rows): five heads from seeds 0-4,
each scored alone on FER+ valid and as the running mean of their probabilities. docs/FACE_EVIDENCE.md, "Head
ensembles". Needs the caches `face_finetune --stage compare` builds in .cache/features.

    BRIDGE_FACE_MODEL=.../face_landmarker.task python benchmarks/face_head_ensemble.py [OUT_DIR]
"""
import json, logging, sys, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
from bridge.training import face_finetune as ff, face_real as fr
W = Path("bridge/features/weights/face_expression_ferplus.npz"); C = Path(".cache/features")
mp = str(fr._landmarker_path()); fp = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus"
OUT = sys.argv[1] if len(sys.argv) > 1 else "artifacts/face-head-ensemble"
Path(OUT).mkdir(parents=True, exist_ok=True)
tr = ff.crop_cache(fp, "train", C, mp); va = ff.crop_cache(fp, "valid", C, mp)
pt, et = ff.net_outputs(W, tr, C, "train"); pv, ev = ff.net_outputs(W, va, C, "valid")
use = tr["keep"] & tr["present"]
X, T = fr.head_inputs(et, tr["blendshapes"])[use], tr["soft"][use]
sub = np.random.default_rng(0).permutation(np.flatnonzero(use))[:int(0.2 * use.sum())]
Xo, To = ff.occluded_rows(W, tr, np.sort(sub), C)
X, T = np.concatenate([X, Xo]), np.concatenate([T, To])
Xv = fr.head_inputs(ev, va["blendshapes"])
res = {}
for k in range(5):
    t0 = time.time()
    h = fr.train_head(X, T, {"seed": k})
    p = fr.head_predict(h, Xv); np.save(f"{OUT}/ens_p{k}.npy", p)
    s = ff.face_path_scores(p, va); s.pop("confusion")
    res[f"seed{k}"] = s
    m = np.mean([np.load(f"{OUT}/ens_p{j}.npy") for j in range(k + 1)], 0)
    s2 = ff.face_path_scores(m, va); s2.pop("confusion"); res[f"ensemble_0..{k}"] = s2
    logging.info("seed %d (%.0f s): %.4f / %.4f; ensemble of %d: %.4f / %.4f %s", k, time.time() - t0, s["accuracy"],
                 s["uar"], k + 1, s2["accuracy"], s2["uar"], {a: round(b, 2) for a, b in s2["recall"].items()})
    (Path(OUT) / "ens.json").write_text(json.dumps(res, indent=1))
