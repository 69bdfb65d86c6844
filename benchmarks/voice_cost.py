"""Voice path cost and int8 agreement (numbers for docs/MODEL_CARD.md).

    python benchmarks/voice_cost.py [--weights W] [--clips DIR] [--n 40] [--out results.json]

1. CPU time of the audio path per second of audio, at the live block size (20 ms) and tick rate (30 Hz), split into
   Silero VAD, the speech encoder (mel + embedding) and the rest of the features: thread CPU time
   (``time.thread_time``), so other processes on the machine do not inflate it.
2. The affect model's step time in float32 and with ``model.quantize: int8``, and their agreement (top label,
   max probability difference) on the same tick vectors of real clips.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def audio_cost(clips: list[Path], block_ms: float = 20.0, tick_hz: float = 30.0, speech_encoder: bool = False) -> dict:
    import soundfile as sf

    from bridge.config import AudioConfig

    from bridge.features import speech_encoder as se
    from bridge.features import vad as vadmod
    from bridge.features.audio import AudioFeatures

    spent = {"vad": 0.0, "encoder": 0.0}
    orig_vad, orig_mel, orig_embed = vadmod.SileroVad.process, se.SpeechEncoder.mel, se.SpeechEncoder.embed

    def timed(name, fn):
        def wrap(*a, **k):
            t = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.thread_time() - t
        return wrap

    vadmod.SileroVad.process = timed("vad", orig_vad)
    se.SpeechEncoder.mel = timed("encoder", orig_mel)
    se.SpeechEncoder.embed = timed("encoder", orig_embed)
    try:
        af = AudioFeatures(AudioConfig(speech_encoder=speech_encoder))
        total, audio_s = 0.0, 0.0
        bs = int(16000 * block_ms / 1000)
        for p in clips:
            y, _ = sf.read(str(p), dtype="float32")
            af.reset()
            next_tick = 1.0 / tick_hz
            t0 = time.thread_time()
            for i in range(0, len(y), bs):
                af.process(y[i:i + bs])
                while (i + bs) / 16000 >= next_tick:
                    af.snapshot()
                    next_tick += 1.0 / tick_hz
            total += time.thread_time() - t0
            audio_s += len(y) / 16000
    finally:
        vadmod.SileroVad.process, se.SpeechEncoder.mel, se.SpeechEncoder.embed = orig_vad, orig_mel, orig_embed
    ms = lambda x: round(1000 * x / audio_s, 2)  # noqa: E731
    return {"audio_seconds": round(audio_s, 1), "cpu_ms_per_audio_s_total": ms(total),
            "cpu_ms_per_audio_s_vad": ms(spent["vad"]), "cpu_ms_per_audio_s_encoder": ms(spent["encoder"]),
            "cpu_ms_per_audio_s_other_features": ms(total - spent["vad"] - spent["encoder"]),
            "share_of_one_core": round(total / audio_s, 4), "block_ms": block_ms, "tick_hz": tick_hz,
            "speech_encoder": speech_encoder}


def int8_agreement(weights: str | None, clips: list[Path]) -> dict:
    import torch

    from bridge.config import VideoConfig
    from bridge.engine import FeatureEngine
    from bridge.model.affect import StreamingAffectModel, load_weights, quantize_int8
    from bridge.model.tick import audio_config
    from bridge.training.data import Clip, read_audio

    torch.set_num_threads(1)
    net, meta = load_weights(weights)
    models = {"fp32": StreamingAffectModel(net, meta), "int8": StreamingAffectModel(quantize_int8(net), meta)}
    xs = []
    for p in clips:
        y = read_audio(Clip(p, "neutral", "x"))
        eng = FeatureEngine(audio_config(meta["feature_schema"]), VideoConfig(), use_face=False)
        seq = []
        for k in range(int(len(y) / 16000 * 30)):
            t = (k + 1) / 30
            eng.push_audio(y[int(k / 30 * 16000):int(t * 16000)], t)
            seq.append(eng.vector(t)[0])
        xs.append(seq)
    out: dict = {}
    probs: dict = {}
    for name, m in models.items():
        steps, P = [], []
        for seq in xs:
            m.reset()
            for v in seq:
                t = time.perf_counter()
                o = m.step(v)
                steps.append(time.perf_counter() - t)
                P.append(o.probs)
        probs[name] = np.array(P)
        out[f"step_ms_{name}_median"] = round(1000 * float(np.median(steps)), 4)
        out[f"step_ms_{name}_p99"] = round(1000 * float(np.percentile(steps, 99)), 4)
    a, b = probs["fp32"], probs["int8"]
    out["ticks"] = len(a)
    out["top_label_agreement"] = float(np.mean(a.argmax(1) == b.argmax(1)))
    out["max_prob_diff_max"] = float(np.abs(a - b).max())
    out["max_prob_diff_mean"] = float(np.abs(a - b).max(1).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--clips", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" /
                                           "ravdess-speech-16k"))
    ap.add_argument("--actors", default="15,16,17,18")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    actors = {f"{int(a):02d}" for a in args.actors.split(",") if a}
    files = sorted(p for p in Path(args.clips).rglob("*.flac") if p.stem.split("-")[-1] in actors)
    files = files[:: max(1, len(files) // args.n)][: args.n]
    res = {"audio_path": audio_cost(files), "audio_path_with_speech_encoder": audio_cost(files, speech_encoder=True),
           "int8": int8_agreement(args.weights, files), "n_clips": len(files)}
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
