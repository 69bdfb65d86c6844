"""Site adaptation, measured: each clip from a fresh model state, with the site cold (nothing heard yet) or having
heard every OTHER speaker of the set under the same microphone/room condition (docs/MODEL_CARD.md, "Site
adaptation"). The training path's feature code (``extract_sequence``, the live ``FeatureEngine``) with the
condition applied to the audio; the site through ``bridge.training.train.site_adapted``.

    python benchmarks/site_adaptation.py [--weights W] [--per-speaker-label 3] [--out site.json]

About 8 minutes on one core (RAVDESS 96 clips + Spanish 294, five conditions).
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np

CONDITIONS = {
    "clean": None,
    "pink10": {"noise": "pink", "snr_db": 10.0, "gain_db": 0.0},
    "babble10": {"noise": "babble", "snr_db": 10.0, "gain_db": 0.0},
    "reverb0.6": {"rt60": 0.6, "eq_seed": 11, "gain_db": 0.0},
    "cheap_mic": {"eq": True, "eq_seed": 5, "band": (200.0, 4000.0), "gain_db": 0.0},  # tilt/EQ + 200-4000 Hz
}


def main() -> None:
    import torch

    from bridge.config import AudioConfig, VideoConfig
    from bridge.features.site import SiteAdaptation
    from bridge.model.affect import load_weights
    from bridge.model.tick import audio_config
    from bridge.training.build import extract_sequence
    from bridge.training.data import load_dataset
    from bridge.training.robustness import load_clips, subset
    from bridge.training.train import _mask_absent, clip_eval, make_inputs, run_net, site_adapted

    torch.set_num_threads(1)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--per-speaker-label", type=int, default=3)
    ap.add_argument("--out", default="site_adaptation.json")
    args = ap.parse_args()
    net, meta = load_weights(args.weights)
    sch = meta["feature_schema"]
    acfg, vcfg = audio_config(sch), VideoConfig(window_s=sch["face_window_s"])
    site = SiteAdaptation.from_meta(meta, sch["tick_hz"], AudioConfig().site_prior_s, AudioConfig().site_memory_s)
    if site is None:
        raise SystemExit("these weights carry no site_reference: retrain with `emotion-bridge train`")
    rav = [c for c in load_dataset(shared / "ravdess-speech-16k") if int(c.speaker[5:]) > 14]
    sets = {"ravdess": subset(load_clips(rav)[0], args.per_speaker_label),
            "spanish": subset(load_clips(load_dataset(shared / "spanish-emotion-16k"))[0], args.per_speaker_label)}
    res: dict = {}
    for corpus, clips in sets.items():
        for cond_name, cond in CONDITIONS.items():
            seqs = []
            for i, c in enumerate(clips):
                seed = zlib.crc32(c.path.name.encode())
                others = [j for j, o in enumerate(clips) if o.speaker != c.speaker]
                rng = np.random.default_rng([seed, len(cond_name)])
                babble = list(rng.choice(others, 4, replace=False)) if cond and cond.get("noise") == "babble" else None
                seqs.append(extract_sequence(clips, [i], acfg, vcfg, sch["tick_hz"], seed, condition=cond,
                                             babble_from=babble))
            present = {int(lab) for s in seqs for lab in s.seg_labels}
            row = {}
            for mode, ss in (("cold", seqs), ("site", site_adapted(seqs, site))):
                outs = [run_net(net, make_inputs(s, None)) for s in ss]
                r = clip_eval([_mask_absent(o[0], present) for o in outs], seqs, [o[1] for o in outs])
                row[mode] = {k: round(r[k], 3) for k in ("uar", "arousal_uar", "arousal_auc", "neutral_mean_arousal")
                             if k in r}
            res[f"{corpus} {cond_name}"] = {"n_clips": len(seqs), **row}
            print(corpus, cond_name, len(seqs), row, flush=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
