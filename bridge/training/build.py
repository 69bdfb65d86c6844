"""Training sequences from labelled clips, through the live feature code.

Clips of one speaker are chained (with silent gaps) into continuous audio, which is fed to the same
``FeatureEngine`` the live bridge uses, sampled at the live tick rate. Face evidence for each tick comes from
the clip's own video when it has one (RAVDESS audio-visual MP4s) or else from the synthetic face generator
(``face_synth``) following the same label timeline. The audio part is cached on disk, keyed by the files'
contents, the feature settings and the chaining seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.config import AudioConfig, VideoConfig
from bridge.engine import FeatureEngine
from bridge.features.face import FACE_DIM, FaceWindow
from bridge.labels import LABELS
from bridge.model.tick import MAX_AGE_S, feature_schema
from bridge.training.data import SR, Clip, file_digest, read_audio

log = logging.getLogger(__name__)
NOISE_DB = -72.0  # room-tone floor in the gaps between clips


@dataclass
class Sequence:
    """One chained sequence at the tick rate."""

    audio: np.ndarray  # (T, A) audio window features
    voice: np.ndarray  # (T,) voice-activity flag
    label: np.ndarray  # (T,) target label index (previous label until the new clip's speech starts)
    va: np.ndarray  # (T, 2) valence/arousal target
    weight: np.ndarray  # (T,) 0 before the first speech of the sequence
    clip: np.ndarray  # (T,) index into ``clips`` of the clip whose speech the tick belongs to (-1 before any)
    seg_label: np.ndarray  # (T,) label of the segment the tick lies in (for the face timeline)
    seg_start: np.ndarray  # (n_segments,) start time of each segment (s)
    seg_labels: list[int]
    seg_intensity: list[int]
    clips: list[str]  # clip file names
    speaker: str

    @property
    def T(self) -> int:
        return len(self.label)


def chain_plan(clips: list[Clip], chain_len: int, seed: int, single: bool = False) -> list[list[int]]:
    """Group clip indices per speaker into chains (``single``: one clip per chain)."""
    rng = np.random.default_rng(seed)
    by_spk: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_spk.setdefault(c.speaker, []).append(i)
    plan = []
    for spk in sorted(by_spk):
        idx = by_spk[spk]
        if single:
            plan += [[i] for i in idx]
            continue
        idx = list(rng.permutation(idx))
        plan += [[int(i) for i in idx[k:k + chain_len]] for k in range(0, len(idx), chain_len)]
    return plan


def speed_perturb(y: np.ndarray, factor: float) -> np.ndarray:
    """Play ``y`` ``factor`` times faster: tempo and pitch (hence apparent vocal-tract length) scale together, as
    in Ko et al. 2015, "Audio augmentation for speech recognition". Makes new voices out of the training voices."""
    from scipy.signal import resample_poly

    up = 200
    down = int(round(up * factor))
    return y if down == up else resample_poly(y, up, down).astype(np.float32)


def extract_sequence(clips: list[Clip], chain: list[int], audio_cfg: AudioConfig, video_cfg: VideoConfig,
                     tick_hz: float, seed: int, gaps: bool = True, speed: float = 0.0, condition: dict | None = None,
                     babble_from: list[int] | None = None) -> Sequence:
    """``speed`` > 0: each clip is played at a random speed in [1 - speed, 1 + speed] (training augmentation).
    ``condition``: a microphone/room/noise condition (``augment.draw_condition``) applied to the whole chained
    audio; babble is mixed from the clips ``babble_from`` (other speakers)."""
    rng = np.random.default_rng(seed)
    pieces, spans = [], []  # spans: (segment start, speech region start, end) in samples
    pos = 0
    for k, ci in enumerate(chain):
        gap = int(rng.uniform(0.2, 1.5) * SR) if (gaps and k > 0) else int(0.3 * SR)
        y = read_audio(clips[ci])
        if speed > 0:
            y = speed_perturb(y, float(rng.uniform(1 - speed, 1 + speed)))
        noise = rng.normal(0, 10 ** (NOISE_DB / 20), gap).astype(np.float32)
        pieces += [noise, y]
        spans.append((pos, pos + gap, pos + gap + len(y)))
        pos += gap + len(y)
    audio = np.concatenate(pieces)
    audio = audio + rng.normal(0, 10 ** (NOISE_DB / 20), len(audio)).astype(np.float32)
    if condition is not None:
        from bridge.training import augment

        others = [read_audio(clips[i]) for i in (babble_from or [])]
        audio = augment.apply_condition(audio, condition, rng, others)
    eng = FeatureEngine(audio_cfg, video_cfg, use_face=False)
    n_ticks = int(len(audio) / SR * tick_hz)
    A = np.zeros((n_ticks, eng.audio_dim), np.float32)
    voice = np.zeros(n_ticks, bool)
    done = 0
    for k in range(n_ticks):
        t = (k + 1) / tick_hz
        end = min(len(audio), int(round(t * SR)))
        eng.push_audio(audio[done:end], t)
        done = end
        vec, info = eng.vector(t)
        A[k] = vec[:eng.audio_dim]
        voice[k] = info.voice_active
    tick_sample = ((np.arange(n_ticks) + 1) / tick_hz * SR).astype(int)
    seg_of = np.searchsorted([s[0] for s in spans], tick_sample, side="right") - 1
    label = np.zeros(n_ticks, np.int64)
    va = np.zeros((n_ticks, 2), np.float32)
    weight = np.zeros(n_ticks, np.float32)
    clip_of = np.full(n_ticks, -1, np.int64)
    cur, cur_va, cur_clip, started = 0, (0.0, 0.0), -1, False
    for k in range(n_ticks):
        s = seg_of[k]
        c = clips[chain[s]]
        # the target follows the new clip once its speech has been heard
        if voice[k] and tick_sample[k] >= spans[s][1] and cur_clip != chain[s]:
            cur, cur_va, cur_clip, started = LABELS.index(c.label), c.va, chain[s], True
        label[k], va[k], clip_of[k] = cur, cur_va, cur_clip
        weight[k] = 1.0 if started else 0.0
    seg_labels = [LABELS.index(clips[ci].label) for ci in chain]
    return Sequence(A, voice, label, va, weight, clip_of, np.asarray(seg_labels)[seg_of],
                    np.asarray([s[0] / SR for s in spans]), seg_labels,
                    [clips[ci].intensity for ci in chain], [clips[ci].path.name for ci in chain],
                    clips[chain[0]].speaker)


def _extract_job(args):
    return extract_sequence(*args)


def session_conditions(clips: list[Clip], augment_seed: int) -> dict[str, dict]:
    """One microphone/room/noise condition per speaker (all of a speaker's chains in one chain set share it,
    as one visitor's session shares one installation)."""
    import zlib

    from bridge.training import augment

    return {spk: augment.draw_condition(np.random.default_rng([augment_seed, zlib.crc32(spk.encode())]))
            for spk in sorted({c.speaker for c in clips})}


def build_sequences(clips: list[Clip], audio_cfg: AudioConfig, video_cfg: VideoConfig, tick_hz: float,
                    seed: int, chain_len: int = 5, single: bool = False, cache_dir: Path | None = None,
                    workers: int = 2, progress=None, speed: float = 0.0,
                    augment_seed: int | None = None) -> list[Sequence]:
    """``augment_seed``: apply a random microphone/room/noise condition per speaker (``session_conditions``)."""
    plan = chain_plan(clips, chain_len, seed, single)
    conds = session_conditions(clips, augment_seed) if augment_seed is not None else None
    key = None
    if cache_dir is not None:
        # the audio part of the schema only: the face layout does not change these sequences
        schema = {k: v for k, v in feature_schema(audio_cfg, video_cfg, tick_hz).items()
                  if k not in ("face_names", "face_window_s")}
        h = hashlib.sha256(json.dumps([schema, plan, seed, single, chain_len] + ([speed] if speed else [])
                                      + ([conds] if conds else [])).encode())
        h.update(file_digest([c.path for c in clips]).encode())
        key = Path(cache_dir) / f"seq-{h.hexdigest()[:20]}.npz"
        if key.is_file():
            return _load(key)
    jobs = []
    for i, chain in enumerate(plan):
        cond = babble = None
        if conds is not None:
            spk = clips[chain[0]].speaker
            cond = conds[spk]
            if cond.get("noise") == "babble":
                other = [j for j, c in enumerate(clips) if c.speaker != spk]
                r = np.random.default_rng([seed, i, 7])
                babble = [int(j) for j in r.choice(other, min(8, len(other)), replace=False)]
        jobs.append((clips, chain, audio_cfg, video_cfg, tick_hz, seed * 100003 + i, not single, speed, cond, babble))
    out: list[Sequence] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            for s in ex.map(_extract_job, jobs, chunksize=4):
                out.append(s)
                if progress:
                    progress()
    else:
        for j in jobs:
            out.append(_extract_job(j))
            if progress:
                progress()
    if key is not None:
        _save(key, out)
    return out


def _save(path: Path, seqs: list[Sequence]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, s in enumerate(seqs):
        for f in ("audio", "voice", "label", "va", "weight", "clip", "seg_label", "seg_start"):
            arrays[f"{i}_{f}"] = getattr(s, f)
    meta = [{"seg_labels": s.seg_labels, "seg_intensity": s.seg_intensity, "clips": s.clips, "speaker": s.speaker}
            for s in seqs]
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # two builds of the same set (two trainings) never mix
    np.savez(tmp, meta=json.dumps(meta), **arrays)
    tmp.replace(path)


def _load(path: Path) -> list[Sequence]:
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    return [Sequence(*(z[f"{i}_{f}"] for f in ("audio", "voice", "label", "va", "weight", "clip", "seg_label",
                                                "seg_start")), **m) for i, m in enumerate(meta)]


def face_block(seq: Sequence, tick_hz: float, video_cfg: VideoConfig, rng: np.random.Generator,
               mode: str, bank=None, silent: bool = False, still: bool = False, noise: float | None = None,
               jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face features for a sequence's label timeline: (face (T,F), present (T,), age (T,)).

    ``mode``: "none" (no camera), "face" (visitor in view, with dropouts). ``bank``: a ``face_real.FaceBank``
    of real labelled faces (the expression comes from them, the dynamics from ``face_synth``); None: fully
    synthetic face evidence (``face_synth``). ``silent``: the visitor does not speak (no talking mouth, whatever
    the audio holds); ``still``, ``noise``, ``jitter`` (with a bank): a visitor standing still, the camera's
    measurement noise (``face_real.real_observations``)."""
    T = seq.T
    F = np.zeros((T, FACE_DIM), np.float32)
    present = np.zeros(T, np.float32)
    age = np.ones(T, np.float32)
    if mode == "none":
        return F, present, age
    from bridge.features.face import FaceObservation  # noqa: F401  (type of generate()'s items)
    from bridge.engine import FACE_STALE_S
    from bridge.training.face_synth import generate

    bounds = list(seq.seg_start) + [T / tick_hz]
    timeline = [(LABELS[lab], 0.6 if inten == 1 else 1.0, float(bounds[i + 1] - bounds[i]))
                for i, (lab, inten) in enumerate(zip(seq.seg_labels, seq.seg_intensity))]
    speaking_fps = 30.0
    n_obs = int(T / tick_hz * speaking_fps) + 1
    tick_idx = np.minimum((np.arange(n_obs) / speaking_fps * tick_hz).astype(int), T - 1)
    speaking = None if silent else seq.voice[tick_idx]
    if bank is not None:
        from bridge.training.face_real import real_observations

        obs = real_observations(timeline, bank, fps=speaking_fps, rng=rng, t0=0.0, speaking=speaking, still=still,
                                noise=noise, jitter=jitter)
    else:
        obs = generate(timeline, fps=speaking_fps, rng=rng, t0=0.0, speaking=speaking)
    win = FaceWindow(video_cfg.window_s)
    j = 0
    t_present = None
    for k in range(T):
        t = (k + 1) / tick_hz
        while j < len(obs) and obs[j].t_capture <= t + 1e-9:
            win.push(obs[j])
            if obs[j].present:
                t_present = obs[j].t_capture
            j += 1
        if t_present is not None and t - t_present <= FACE_STALE_S:
            F[k] = win.vector()
            present[k] = 1.0
            age[k] = min(t - t_present, MAX_AGE_S) / MAX_AGE_S
    return F, present, age
