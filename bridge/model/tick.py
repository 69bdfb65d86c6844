"""The tick vector: what the model sees each tick, assembled the same way live, on files and in training.

    [ audio window features | face window features | audio_present, face_present, audio_age, face_age ]

A missing modality contributes zeros (after normalisation, so "zero" means "the training mean") and a 0 mask.
Ages are seconds since that modality's newest input, clipped to MAX_AGE_S and scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np

from bridge.config import AudioConfig, VideoConfig
from bridge.features.audio import AudioFeatures
from bridge.features.face import FACE_DIM, face_window_names

MAX_AGE_S = 2.0
# what the audio vector is computed with beyond the config: the VAD and the speech encoder (a new front end
# changes this, so older weights are refused with a clear message instead of silently misreading the features)
AUDIO_FRONT_END = "silero-vad-6 + speech-level-relative loudness, v3"
ENCODER_FRONT_END = "silero-vad-6 + google-speech-embedding (openWakeWord) + speech-level-relative loudness, v3"
MASK_NAMES = ["audio_present", "face_present", "audio_age", "face_age"]


def feature_schema(audio_cfg: AudioConfig, video_cfg: VideoConfig, tick_hz: float) -> dict:
    """Everything that must match between the weights and the running feature code."""
    af = AudioFeatures(audio_cfg)
    return {
        "audio_names": af.names,
        "face_names": face_window_names(),
        "mask_names": MASK_NAMES,
        "audio": {k: getattr(audio_cfg, k) for k in ("sample_rate", "frame_ms", "hop_ms", "window_s", "n_mels",
                                                      "n_mfcc", "pitch_min_hz", "pitch_max_hz",
                                                      "vad_threshold", "speech_encoder")},
        "audio_front_end": ENCODER_FRONT_END if audio_cfg.speech_encoder else AUDIO_FRONT_END,
        "face_window_s": video_cfg.window_s,
        "tick_hz": tick_hz,
    }


def audio_config(schema: dict) -> AudioConfig:
    """The audio settings a weights file was trained with (files from before ``speech_encoder`` existed used it)."""
    audio = dict(schema["audio"])
    audio.setdefault("speech_encoder", schema.get("audio_front_end") == ENCODER_FRONT_END)
    return AudioConfig(**audio)


def schema_mismatch(expected: dict, actual: dict) -> list[str]:
    """Human-readable differences between the weights' feature schema and the running configuration."""
    out = []
    for key in ("audio_names", "face_names", "mask_names"):
        if list(expected.get(key, [])) != list(actual.get(key, [])):
            out.append(f"{key}: weights have {len(expected.get(key, []))} features, this build computes "
                       f"{len(actual.get(key, []))}")
    for k, v in expected.get("audio", {}).items():
        if actual.get("audio", {}).get(k) != v:
            out.append(f"audio.{k}: weights were trained with {v}, config has {actual.get('audio', {}).get(k)}")
    if expected.get("audio_front_end") == ENCODER_FRONT_END and actual.get("audio_front_end") != ENCODER_FRONT_END:
        out.append("these weights were trained with the speech encoder: set audio.speech_encoder: true in the "
                   "config (or use weights trained without it)")
    elif expected.get("audio_front_end") != ENCODER_FRONT_END and actual.get("audio_front_end") == ENCODER_FRONT_END:
        out.append("these weights were trained without the speech encoder: set audio.speech_encoder: false in the "
                   "config (or use weights trained with it)")
    elif expected.get("audio_front_end") != actual.get("audio_front_end"):
        out.append(f"audio front end: weights were trained with {expected.get('audio_front_end') or 'the v1 front end'}"
                   f", this build computes {actual.get('audio_front_end')}")
    if expected.get("face_window_s") != actual.get("face_window_s"):
        out.append(f"video.window_s: weights {expected.get('face_window_s')}, config {actual.get('face_window_s')}")
    return out


def assemble(audio_vec: np.ndarray | None, face_vec: np.ndarray | None, audio_dim: int,
             audio_age_s: float | None, face_age_s: float | None) -> np.ndarray:
    """Raw (un-normalised) tick vector; the model normalises and applies the masks."""
    a = np.zeros(audio_dim, np.float32) if audio_vec is None else audio_vec
    f = np.zeros(FACE_DIM, np.float32) if face_vec is None else face_vec
    masks = np.array([
        0.0 if audio_vec is None else 1.0,
        0.0 if face_vec is None else 1.0,
        1.0 if audio_age_s is None else min(audio_age_s, MAX_AGE_S) / MAX_AGE_S,
        1.0 if face_age_s is None else min(face_age_s, MAX_AGE_S) / MAX_AGE_S,
    ], np.float32)
    return np.concatenate([a, f, masks]).astype(np.float32)
