"""Train and evaluate the streaming affect model (``emotion-bridge train`` / ``emotion-bridge evaluate``)."""

from __future__ import annotations

import json
import logging
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bridge.config import AudioConfig, VideoConfig
from bridge.features.face import FACE_DIM
from bridge.features.site import SiteAdaptation
from bridge.labels import LABELS, VA
from bridge.model.affect import AffectEnsemble, AffectNet, load_weights, save_weights
from bridge.model.tick import audio_config, feature_schema
from bridge.training import metrics as M
from bridge.training.baselines import WindowClassifier, ema, one_euro
from bridge.training.build import Sequence, build_sequences, face_block
from bridge.training.face_real import default_bank
from bridge.training.robustness import HIGH_AROUSAL, LOW_AROUSAL
from bridge.training.data import Clip, file_digest, load_dataset

log = logging.getLogger(__name__)
DATA_LICENSE = ("RAVDESS (Livingstone & Russo 2018), CC BY-NC-SA 4.0: weights trained on it are for "
                "non-commercial use only")


@dataclass
class TrainConfig:
    data: str
    out: str
    seed: int = 0  # network initialisation, batch order, modality dropout, synthetic faces
    data_seed: int = 0  # chaining of the clips, speed perturbation and the microphone/room/noise augmentation
    epochs: int = 14
    val_actors: tuple[int, ...] = (15, 16, 17, 18)
    chain_sets: int = 3
    speed_perturb: float = 0.1  # chain sets after the first play each clip at a random speed within 1 ± this
    augment: bool = True  # chain sets after the first: a random microphone, room and noise per speaker
    chain_len: int = 12
    session_len: int = 1000  # validation: all clips of a speaker in one session
    tick_hz: float = 30.0
    hidden: int = 128
    lr: float = 2e-3
    batch: int = 16
    smooth_weight: float = 0.5
    label_smoothing: float = 0.05
    class_balance: bool = True  # weight the loss by inverse label frequency (RAVDESS has half as much neutral)
    sessions: bool = True  # train on whole-speaker sessions (truncated BPTT), as the validation sessions run
    session_cut: float = 0.6  # ...cut at chain boundaries with this probability: cold starts, as fresh visitors
    # fresh visitors: sets of single training clips, each clip its own stream from a fresh feature and model state
    # (set 0 as recorded, the others speed-perturbed and through a random microphone/room/noise per speaker). The
    # chains alone start cold only at stream starts (about 6 % of the clips trained on)
    fresh_sets: int = 0
    tbptt: int = 600  # ticks per truncated-BPTT chunk (20 s at 30 Hz)
    dropout: float = 0.4  # 0.4 and weight decay 0.01 (were 0.2 / 0.001): session UAR 0.50 -> 0.53 at seed 0
    prior_ticks: float = 150.0  # speaker adaptation: pseudo-ticks of population statistics a new voice starts from
    weight_decay: float = 1e-2
    average_from: float = 0.5  # the weights shipped are the average over the epochs after this fraction (SWA);
    # no epoch is picked by its validation score, so the validation numbers are not tuned to the validation speakers
    p_no_face: float = 0.5
    # with the speech encoder on: each training stream hides the embedding columns with this probability (they
    # read as the training mean), so the model cannot lean on the embedding alone
    p_drop_embedding: float = 0.0
    p_face_only: float = 0.1
    # what a face-only chain shows. "visitor" (since 2026-12-03): a visitor who does not speak (no talking mouth),
    # standing still in ``face_only_still`` of the sequences (window spreads near 0, as a still face gives), and in
    # ``face_only_room`` of the chains with the microphone on, hearing only the room (the sequence's own unvoiced
    # ticks). "talking": the face of the two-modality chains (talking mouth), audio absent -- the recipe until
    # 2026-12-03, whose face-only states changed by up to 0.29 accuracy between retrains (docs/MODEL_CARD.md)
    face_only: str = "visitor"
    face_only_still: float = 0.5
    face_only_room: float = 0.5
    # ... and each such sequence's camera: a factor on the measurement noise, log-uniform in this range (1 = the
    # moving visitor's; a still one gets a tenth of the factor), and white per-frame jitter, its sigma uniform in
    # [0, face_only_jitter], on the blendshapes and expression probabilities (0.015: robust to a noisier camera
    # without losing the still faces; (0.5, 3) and 0.03 lost still faces, docs/MODEL_CARD.md)
    face_only_noise: tuple[float, float] = (1.0, 1.0)
    face_only_jitter: float = 0.015
    face_expert: bool = False  # the face path's log probabilities added to the label logits (AffectNet docstring)
    # networks trained alike from seeds seed .. seed + members - 1 and shipped as one ensemble (their mean;
    # AffectEnsemble): better on voices and faces it never met than any one, and no longer one training draw
    members: int = 3
    # channel / speaker variation on the audio features, in training standard deviations: one offset per stream (one
    # microphone, one voice) and noise per tick
    stream_shift: float = 0.15  # 0.5 helps the voice but hurts face-only states (docs/MODEL_CARD.md): not yet
    tick_noise: float = 0.1
    cache_dir: str = ".cache/features"
    real_faces: bool = True  # face evidence from real FER+ faces (face_real; required); False: the synthetic generator only
    workers: int = 2
    baselines: bool = True
    artifacts: str = "artifacts/train"
    audio: AudioConfig = field(default_factory=AudioConfig)
    video: VideoConfig = field(default_factory=VideoConfig)


def _progress(desc: str, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    prog = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=False)
    task = prog.add_task(desc, total=total)
    return prog, (lambda: prog.update(task, advance=1))


def _build(clips: list[Clip], cfg: TrainConfig, seed: int, single: bool, desc: str,
           chain_len: int | None = None, speed: float = 0.0, augment_seed: int | None = None) -> list[Sequence]:
    from bridge.training.build import chain_plan

    chain_len = chain_len or cfg.chain_len
    n = len(chain_plan(clips, chain_len, seed, single))
    prog, tick = _progress(desc, n)
    with prog:
        return build_sequences(clips, cfg.audio, cfg.video, cfg.tick_hz, seed, chain_len, single,
                               Path(cfg.cache_dir), cfg.workers, tick, speed, augment_seed)


@dataclass
class Batchable:
    x: np.ndarray  # (T, D) raw tick vectors
    label: np.ndarray
    va: np.ndarray
    weight: np.ndarray
    clip: np.ndarray


def make_inputs(seq: Sequence, face: tuple[np.ndarray, np.ndarray, np.ndarray] | None, audio_on: bool = True
                ) -> np.ndarray:
    T = seq.T
    if face is None:
        fv, fp, fa = np.zeros((T, FACE_DIM), np.float32), np.zeros(T, np.float32), np.ones(T, np.float32)
    else:
        fv, fp, fa = face
    ap = np.full(T, 1.0 if audio_on else 0.0, np.float32)
    aa = np.zeros(T, np.float32) if audio_on else np.ones(T, np.float32)
    audio = seq.audio if audio_on else np.zeros_like(seq.audio)
    return np.concatenate([audio, fv, np.stack([ap, fp, aa, fa], 1)], 1).astype(np.float32)


def quiet_ticks(seq: Sequence) -> np.ndarray:
    """Indices of the ticks with no voice activity (neither the sequence's flag nor the last audio column)."""
    return np.flatnonzero((seq.voice <= 0.5) & (seq.audio[:, -1] <= 0.5))


def room_only(seq: Sequence, rng: np.random.Generator) -> Sequence:
    """The sequence with its audio replaced by its own unvoiced ticks (no voice activity: neither the sequence's
    flag nor the voice-activity feature, the last audio column), in order from a random start and repeated: a
    microphone that hears the room but no voice."""
    import dataclasses

    quiet = quiet_ticks(seq)
    if len(quiet) == 0:
        raise ValueError(f"sequence of {seq.speaker} has no unvoiced tick to hear the room from")
    idx = quiet[(int(rng.integers(len(quiet))) + np.arange(seq.T)) % len(quiet)]
    return dataclasses.replace(seq, audio=seq.audio[idx], voice=np.zeros_like(seq.voice))


def _pad(items: list[Batchable], T: int):
    D = items[0].x.shape[1]
    x = np.zeros((len(items), T, D), np.float32)
    y = np.zeros((len(items), T), np.int64)
    va = np.zeros((len(items), T, 2), np.float32)
    w = np.zeros((len(items), T), np.float32)
    for i, b in enumerate(items):
        n = len(b.label)
        x[i, :n], y[i, :n], va[i, :n], w[i, :n] = b.x, b.label, b.va, b.weight
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(va), torch.from_numpy(w)


def _streams(train_seqs: list[Sequence], set_of: list[int], cfg: TrainConfig, rng: np.random.Generator
             ) -> list[list[int]]:
    """What each training stream is made of, as indices into ``train_seqs``. ``cfg.sessions``: the chains of
    one speaker from one chain set, in random order, cut at random chain boundaries (each boundary with
    probability ``cfg.session_cut``) into streams of one or more chains: long whole-speaker sessions, where the
    speaker adaptation warms up as it does live, and short ones that start cold, as every new visitor does;
    otherwise each chain alone."""
    if not cfg.sessions:
        return [[i] for i in range(len(train_seqs))]
    groups: dict[tuple, list[int]] = {}
    out = []
    for i, s in enumerate(train_seqs):
        if set_of[i] < 0:  # a fresh-visitor clip (``cfg.fresh_sets``): a stream of its own
            out.append([i])
        else:
            groups.setdefault((set_of[i], s.speaker), []).append(i)
    for _, v in sorted(groups.items()):
        order = [int(i) for i in rng.permutation(v)]
        cur = [order[0]]
        for i in order[1:]:
            if rng.random() < cfg.session_cut:
                out.append(cur)
                cur = []
            cur.append(i)
        out.append(cur)
    return out


def _detach(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(_detach(s) for s in state)


def neutral_va(net: AffectNet, singles: list[Sequence]) -> np.ndarray:
    """Mean (valence, arousal) output over neutral clips (each clip's mean over its ticks, fresh state, audio
    only) -- the offset that puts neutral speech at (0, 0)."""
    neutral = LABELS.index("neutral")
    means = []
    for s in singles:
        sel = (s.weight > 0) & (s.label == neutral)
        if sel.any():
            means.append(run_net(net, make_inputs(s, None))[1][sel].mean(0))
    return (np.mean(means, 0) if means else np.zeros(2)).astype(np.float32) + net.va_offset.numpy()


def _calibration_clips(cfg: TrainConfig, tr_clips: list[Clip]) -> list[Sequence]:
    """The training speakers' clips, each alone from a fresh state: what both calibrations are fitted on."""
    return _build(tr_clips, cfg, cfg.data_seed * 1000 + 777, True, "features: training clips (calibration)")


def fit_label_bias(net, singles: list[Sequence], reg: float = 0.01) -> np.ndarray:
    """The label calibration (``label_bias``, added to the label logits): per-label offsets fitted on the
    training speakers' clips, each from a fresh state, audio only, so that their clip decisions (the mean of the
    ticks' probabilities after speech starts, as the evaluation decides) are class-balanced -- by minimising the
    class-weighted cross-entropy of those decisions, with an L2 penalty ``reg``. From a fresh state the model
    leans to the loud, high-arousal labels (before any voice statistics it judges every voice against the
    population's); this moves the boundaries, not the network. Returns the bias to set (it replaces the net's
    current one; fitting a calibrated net again gives the same bias)."""
    logps, ys = [], []
    for s in singles:
        sel = s.weight > 0
        if not sel.any():
            continue
        p = run_net(net, make_inputs(s, None))[0][sel]
        logps.append(torch.from_numpy(np.log(np.maximum(p, 1e-9))))
        ys.append(int(np.bincount(s.label[sel]).argmax()))
    if not logps:
        return np.zeros(len(LABELS), np.float32)
    y = torch.tensor(ys)
    L = logps[0].shape[1]
    T = max(len(x) for x in logps)
    X = torch.zeros(len(logps), T, L)
    mask = torch.zeros(len(logps), T, 1)
    for i, x in enumerate(logps):
        X[i, :len(x)] = x
        mask[i, :len(x)] = 1.0
    wc = 1.0 / torch.bincount(y, minlength=L).float().clamp(min=1.0)
    cur = torch.from_numpy(net.label_bias.detach().numpy().copy())
    X = X - cur  # the outputs without the current calibration (a shift of the log probabilities: softmax-exact)
    b = cur.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        dec = (torch.softmax(X + b, -1) * mask).sum(1) / mask.sum(1)
        nll = -torch.log(dec[torch.arange(len(y)), y].clamp(min=1e-9))
        loss = (wc[y] * nll).sum() / wc[y].sum() + reg * (b * b).sum()
        loss.backward()
        return loss

    opt.step(closure)
    b = b.detach().numpy()
    return (b - b.mean()).astype(np.float32)


def site_reference(train: list[Sequence]) -> dict:
    """The training population's voiced-tick audio statistics: what site adaptation (bridge.features.site) maps an
    installation's audio features onto. All training streams, as recorded and augmented."""
    A = np.concatenate([s.audio[s.voice] for s in train]).astype(np.float64)
    return {"mean": [round(float(v), 6) for v in A.mean(0)],
            "std": [round(float(v), 6) for v in np.maximum(A.std(0), 1e-6)], "n_ticks": int(len(A))}


def site_adapted(seqs: list[Sequence], site) -> list[Sequence]:
    """Each sequence's audio through a site adaptation that has heard the voiced ticks of every OTHER speaker's
    sequences (never its own): a new visitor at an installation that has heard the visitors before them."""
    import dataclasses

    spk = sorted({s.speaker for s in seqs})
    D = seqs[0].audio.shape[1]
    tot = {k: [0.0, np.zeros(D), np.zeros(D)] for k in spk}
    for s in seqs:
        a = s.audio[s.voice].astype(np.float64)
        t = tot[s.speaker]
        t[0] += len(a)
        t[1] += a.sum(0)
        t[2] += (a * a).sum(0)
    n_all = sum(t[0] for t in tot.values())
    s1_all = sum(t[1] for t in tot.values())
    s2_all = sum(t[2] for t in tot.values())
    out = []
    for s in seqs:
        t = tot[s.speaker]
        site.set_stats(n_all - t[0], s1_all - t[1], s2_all - t[2])
        out.append(dataclasses.replace(s, audio=site.apply(s.audio)))
    return out


def norm_stats(train: list[Sequence], faces: list) -> tuple[np.ndarray, np.ndarray]:
    A = np.concatenate([s.audio for s in train])
    Fs = [f[0][f[1] > 0] for f in faces if f is not None]
    Fm = np.concatenate(Fs) if Fs else np.zeros((1, FACE_DIM), np.float32)
    mean = np.concatenate([A.mean(0), Fm.mean(0), np.zeros(4)]).astype(np.float32)
    std = np.concatenate([A.std(0), Fm.std(0), np.ones(4)]).astype(np.float32)
    return mean, np.maximum(std, 1e-3).astype(np.float32)


def run_net(net, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with torch.inference_mode():
        logits, va, conf, _ = net(torch.from_numpy(x)[None])
    return torch.softmax(logits[0], -1).numpy(), va[0].numpy(), conf[0].numpy()


def clip_eval(probs_by_seq: list[np.ndarray], seqs: list[Sequence], va_by_seq: list[np.ndarray] | None = None
              ) -> dict:
    y_true, y_pred, v_pred, v_true = [], [], [], []
    for k, (p, s) in enumerate(zip(probs_by_seq, seqs)):
        dec = M.clip_decisions(p, s.clip, s.weight)
        for c, pm in dec.items():
            sel = (s.clip == c) & (s.weight > 0)
            y_true.append(int(np.bincount(s.label[sel]).argmax()))
            y_pred.append(int(pm.argmax()))
            if va_by_seq is not None:
                v_pred.append(va_by_seq[k][sel].mean(0))
                v_true.append(s.va[sel].mean(0))
    cm = M.confusion(np.array(y_true), np.array(y_pred))
    out = {"n_clips": len(y_true), "uar": M.uar(y_true, y_pred), "accuracy": M.accuracy(y_true, y_pred),
           "recall": dict(zip(LABELS, np.round(M.recall_per_class(cm), 4).tolist())), "confusion": cm.tolist()}
    if v_pred:
        vp, vt = np.array(v_pred), np.array(v_true)
        out["ccc_valence"] = M.ccc(vp[:, 0], vt[:, 0])
        out["ccc_arousal"] = M.ccc(vp[:, 1], vt[:, 1])
        yt = np.array(y_true)
        hi = np.isin(yt, [LABELS.index(x) for x in HIGH_AROUSAL])
        lo = np.isin(yt, [LABELS.index(x) for x in LOW_AROUSAL])
        if hi.any() and lo.any():  # high vs low arousal, decided by the sign of the clip's mean arousal output
            out["arousal_uar"] = 0.5 * (float(np.mean(vp[hi, 1] > 0)) + float(np.mean(vp[lo, 1] <= 0)))
            out["arousal_auc"] = M.auc(vp[hi, 1], vp[lo, 1])  # the same without a threshold
        neu = yt == LABELS.index("neutral")
        if neu.any():
            out["neutral_mean_valence"] = float(vp[neu, 0].mean())
            out["neutral_mean_arousal"] = float(vp[neu, 1].mean())
    return out


def smoothing_eval(probs_by_seq: list[np.ndarray], seqs: list[Sequence]) -> dict:
    jit = [M.jitter(p, s.label, s.weight) for p, s in zip(probs_by_seq, seqs)]
    lg = [x for p, s in zip(probs_by_seq, seqs) for x in M.lags(p, s.label, s.weight)]
    res = clip_eval(probs_by_seq, seqs)
    return {"jitter": float(np.nanmean(jit)), "lag_ticks_median": float(np.median(lg)) if lg else float("nan"),
            "lag_ticks_mean": float(np.mean(lg)) if lg else float("nan"), "uar": res["uar"],
            "accuracy": res["accuracy"]}


def _split(cfg: TrainConfig) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """All clips, the training speakers' and the validation speakers'."""
    clips = load_dataset(cfg.data)
    if not clips:
        raise SystemExit(f"no labelled clips found in {cfg.data}")
    val_spk = {f"actor{a:02d}" for a in cfg.val_actors}
    tr_clips = [c for c in clips if c.speaker not in val_spk]
    va_clips = [c for c in clips if c.speaker in val_spk]
    if not va_clips:  # a manifest without those actors: hold out ~20 % of speakers
        spk = sorted({c.speaker for c in clips})
        hold = set(spk[-max(1, len(spk) // 5):])
        tr_clips = [c for c in clips if c.speaker not in hold]
        va_clips = [c for c in clips if c.speaker in hold]
    return clips, tr_clips, va_clips


def train_members(cfg: TrainConfig) -> dict:
    """``cfg.members`` networks, each exactly what :func:`train` makes with seed ``cfg.seed + k`` (the baselines
    only beside the first), saved at ``cfg.out`` as one ensemble with its own validation numbers; the members'
    files and reports stay in ``cfg.artifacts``/member<k>. The first member builds the features (``workers``
    processes); the others then train side by side, ``workers`` at a time, from the cache. One member:
    :func:`train`."""
    if cfg.members <= 1:
        return train(cfg)
    t_start = time.time()
    art = Path(cfg.artifacts)
    dirs = [art / f"member{k}" for k in range(cfg.members)]
    jobs = [replace(cfg, seed=cfg.seed + k, members=1, out=str(d / "weights.pt"), artifacts=str(d),
                    baselines=cfg.baselines and k == 0, workers=cfg.workers if k == 0 else 1)
            for k, d in enumerate(dirs)]
    log.info("ensemble member 1 of %d (seed %d)", cfg.members, cfg.seed)
    train(jobs[0])
    log.info("ensemble members 2-%d (seeds %d-%d), %d at a time", cfg.members, cfg.seed + 1,
             cfg.seed + cfg.members - 1, max(1, cfg.workers))
    if cfg.workers > 1:
        import multiprocessing

        with ProcessPoolExecutor(min(cfg.workers, len(jobs) - 1), mp_context=multiprocessing.get_context("spawn")
                                 ) as ex:
            list(ex.map(train, jobs[1:]))
    else:
        for job in jobs[1:]:
            train(job)
    return ensemble_of(cfg, dirs, time.time() - t_start)


def _validate(net, cfg: TrainConfig, va_clips: list[Clip]) -> dict:
    """Training's own validation pass of a finished model: the validation speakers' sessions and their clips each
    from a fresh state, audio only."""
    val_sessions = _build(va_clips, cfg, cfg.data_seed * 1000 + 779, False, "features: validation sessions",
                          cfg.session_len)
    val_single = _build(va_clips, cfg, cfg.data_seed * 1000 + 778, True, "features: validation clips")
    report = {}
    for key, seqs in (("val_clips_audio_only", val_sessions), ("val_clips_fresh_audio_only", val_single)):
        outs = [run_net(net, make_inputs(s, None)) for s in seqs]
        report[key] = clip_eval([o[0] for o in outs], seqs, [o[1] for o in outs])
    return report


def ensemble_of(cfg: TrainConfig, member_dirs: list[Path], seconds: float = 0.0) -> dict:
    """The members trained into ``member_dirs`` (each a ``weights.pt`` and ``report.json`` from :func:`train`)
    -> one ensemble at ``cfg.out``, evaluated on the validation speakers; report in ``cfg.artifacts``."""
    art = Path(cfg.artifacts)
    reports = [json.loads((Path(d) / "report.json").read_text()) for d in member_dirs]
    nets, metas = zip(*(load_weights(Path(d) / "weights.pt") for d in member_dirs))
    for m in metas[1:]:
        if m["feature_schema"] != metas[0]["feature_schema"] or m["data_list_sha256"] != metas[0]["data_list_sha256"]:
            raise ValueError("ensemble members must be trained on the same data with the same features")
    ens = AffectEnsemble(list(nets))
    _, tr_clips, va_clips = _split(cfg)
    # the ensemble's own label calibration, on the mean of its (calibrated) members, the same training clips
    train_single = _calibration_clips(cfg, tr_clips)
    ens.label_bias.copy_(torch.from_numpy(fit_label_bias(ens, train_single)))
    report = _validate(ens, cfg, va_clips)
    report["members"] = [{"seed": m["seed"], "val_uar_audio_only": m["val_uar_audio_only"],
                          "val_uar_fresh_clips_audio_only": m["val_uar_fresh_clips_audio_only"],
                          "weights_sha256": r["weights_sha256"]} for m, r in zip(metas, reports)]
    meta = dict(metas[0], seed=[m["seed"] for m in metas], members=report["members"],
                va_offset=[m["va_offset"] for m in metas],
                label_bias=[round(float(v), 4) for v in ens.label_bias],
                val_uar_audio_only=report["val_clips_audio_only"]["uar"],
                val_uar_fresh_clips_audio_only=report["val_clips_fresh_audio_only"]["uar"],
                train_seconds=round(seconds or sum(m["train_seconds"] for m in metas), 1))
    report["weights_sha256"] = save_weights(cfg.out, ens, meta)
    report["train_seconds"] = meta["train_seconds"]
    report["smoothing"] = reports[0].get("smoothing", {})  # the first member's (with the baselines)
    art.mkdir(parents=True, exist_ok=True)
    (art / "report.json").write_text(json.dumps(report, indent=2))
    _plot_confusion(np.array(report["val_clips_audio_only"]["confusion"]), art / "confusion.png",
                    f"validation speakers, audio only, ensemble of {len(member_dirs)} "
                    f"(UAR {report['val_clips_audio_only']['uar']:.1%})")
    return report


def train(cfg: TrainConfig) -> dict:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(1)  # tiny sequential ops: a second thread only adds synchronisation
    t_start = time.time()
    clips, tr_clips, va_clips = _split(cfg)
    log.info("train: %d clips / %d speakers; validation: %d clips / %d speakers", len(tr_clips),
             len({c.speaker for c in tr_clips}), len(va_clips), len({c.speaker for c in va_clips}))
    # real faces (FER+), found before the long feature build: an error that says what to do when they cannot be
    # had; or the synthetic generator alone (cfg.real_faces False)
    bank = default_bank(Path(cfg.cache_dir), required=True) if cfg.real_faces else None

    train_seqs: list[Sequence] = []
    set_of: list[int] = []
    for r in range(cfg.chain_sets):
        # set 0 as recorded; the others speed-perturbed and through a random microphone/room/noise per speaker
        aug_seed = cfg.data_seed * 1000 + r if (r > 0 and cfg.augment) else None
        new = _build(tr_clips, cfg, cfg.data_seed * 1000 + r, False, f"features: train chains {r + 1}",
                     speed=cfg.speed_perturb if r > 0 else 0.0, augment_seed=aug_seed)
        train_seqs += new
        set_of += [r] * len(new)
    for r in range(cfg.fresh_sets):
        # set 0 is the calibration's own build of the training clips (seed 777: no extra feature pass)
        aug_seed = cfg.data_seed * 1000 + 500 + r if (r > 0 and cfg.augment) else None
        seed = cfg.data_seed * 1000 + (777 if r == 0 else 500 + r)
        new = _build(tr_clips, cfg, seed, True, f"features: fresh-visitor clips {r + 1}",
                     speed=cfg.speed_perturb if r > 0 else 0.0, augment_seed=aug_seed)
        train_seqs += new
        set_of += [-1 - r] * len(new)
    val_sessions = _build(va_clips, cfg, cfg.data_seed * 1000 + 779, False, "features: validation sessions",
                          cfg.session_len)
    val_chains = val_sessions  # smoothing (jitter, lag) is measured on the same whole-speaker sessions
    val_single = _build(va_clips, cfg, cfg.data_seed * 1000 + 778, True, "features: validation clips")

    rng = np.random.default_rng(cfg.seed)
    prog, tick = _progress("real-face evidence" if bank is not None else "synthetic face evidence", len(train_seqs))
    with prog:
        faces = []
        for s in train_seqs:
            faces.append(face_block(s, cfg.tick_hz, cfg.video, rng, "face", bank))
            tick()
    if cfg.face_only not in ("talking", "visitor"):
        raise ValueError(f"face_only {cfg.face_only!r}: 'talking' or 'visitor'")
    fo_rng = np.random.default_rng([cfg.seed, 3])  # its own stream: the rest of the recipe draws as before
    faces_fo = faces
    if cfg.face_only == "visitor" and cfg.p_face_only > 0:
        prog, tick = _progress("face evidence of silent visitors", len(train_seqs))
        with prog:
            faces_fo = []
            for s in train_seqs:
                still = bool(fo_rng.random() < cfg.face_only_still)
                lo, hi = cfg.face_only_noise
                noise = math.exp(fo_rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
                noise *= 0.1 if still else 1.0
                jitter = float(fo_rng.uniform(0.0, cfg.face_only_jitter)) if cfg.face_only_jitter > 0 else 0.0
                faces_fo.append(face_block(s, cfg.tick_hz, cfg.video, fo_rng, "face", bank, silent=True,
                                           still=still, noise=noise, jitter=jitter))
                tick()
    # sequences with room to hear (``room_only``): a short single clip may be voiced from end to end
    quiet = [len(quiet_ticks(s)) > 0 for s in train_seqs]
    mean, std = norm_stats(train_seqs, faces)
    A = train_seqs[0].audio.shape[1]
    D = A + FACE_DIM + 4
    emb_cols = np.array([i for i, n in enumerate(feature_schema(cfg.audio, cfg.video, cfg.tick_hz)["audio_names"])
                         if n.startswith("emb")], np.int64)
    # the initialisation and the dropout masks draw from torch's generator: seeded here, after the data and the
    # face bank, so that nothing run before (a face bank built in this process, an ensemble's earlier member)
    # changes the network
    torch.manual_seed(cfg.seed)
    net = AffectNet(D, A, FACE_DIM, hidden=cfg.hidden, dropout=cfg.dropout, prior_ticks=cfg.prior_ticks,
                    face_expert=cfg.face_expert)
    net.mean.copy_(torch.from_numpy(mean))
    net.std.copy_(torch.from_numpy(std))
    n_params = sum(p.numel() for p in net.parameters())
    log.info("model: %d parameters", n_params)

    val_x = [make_inputs(s, None) for s in val_single]
    vals_x = [make_inputs(s, None) for s in val_sessions]
    valc_x = [make_inputs(s, None) for s in val_chains]
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    shape = _streams(train_seqs, set_of, cfg, np.random.default_rng(0))
    whole: dict[tuple, int] = {}
    for i, sq in enumerate(train_seqs):
        whole[(set_of[i], sq.speaker)] = whole.get((set_of[i], sq.speaker), 0) + sq.T
    max_len = max(whole.values()) if cfg.sessions else max(sq.T for sq in train_seqs)  # batches are padded to this
    step_len = cfg.tbptt if cfg.sessions else max_len
    # every epoch's streams and batches, drawn up front (so the learning-rate schedule knows the step count):
    # streams of similar length share a batch (little padding), the batches in random order
    plan_rng = np.random.default_rng([cfg.seed, 1])
    epoch_plans = []
    for _ in range(cfg.epochs):
        streams = _streams(train_seqs, set_of, cfg, plan_rng)
        lens = np.array([sum(train_seqs[j].T for j in st) for st in streams])
        order = np.lexsort((plan_rng.random(len(lens)), lens))
        batches = [order[b:b + cfg.batch] for b in range(0, len(order), cfg.batch)]
        batches = [batches[k] for k in plan_rng.permutation(len(batches))]
        epoch_plans.append((streams, batches, [int(lens[bt].max()) for bt in batches]))
    total_steps = sum(math.ceil(t / step_len) for _, _, ts in epoch_plans for t in ts)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps)
    class_w = None
    if cfg.class_balance:
        y_all = np.concatenate([s.label[s.weight > 0] for s in train_seqs])
        freq = np.bincount(y_all, minlength=len(LABELS)).astype(np.float64)
        class_w = torch.tensor(freq.sum() / (len(LABELS) * np.maximum(freq, 1)), dtype=torch.float32)
    history = []
    avg = torch.optim.swa_utils.AveragedModel(net)
    avg_from = min(cfg.epochs - 1, int(cfg.epochs * cfg.average_from))
    prog, tick = _progress("training epochs", cfg.epochs)
    with prog:
        for epoch in range(cfg.epochs):
            net.train()
            streams, batches, batch_len = epoch_plans[epoch]
            tot = 0.0
            for bt, T_b in zip(batches, batch_len):
                items = []
                for i in bt:
                    parts = []
                    for j in streams[i]:
                        s = train_seqs[j]
                        u = rng.random()
                        if u < cfg.p_no_face:
                            x = make_inputs(s, None)
                        elif u < cfg.p_no_face + cfg.p_face_only:
                            if (cfg.face_only == "visitor" and fo_rng.random() < cfg.face_only_room
                                    and quiet[j]):
                                x = make_inputs(room_only(s, fo_rng), faces_fo[j])
                            else:
                                x = make_inputs(s, faces_fo[j], audio_on=False)
                        else:
                            x = make_inputs(s, faces[j])
                        parts.append((x, s))
                    x = np.concatenate([p[0] for p in parts])
                    # channel / speaker variation: one offset per stream (one microphone, one voice), per-tick noise
                    x[:, :A] += ((rng.normal(0, cfg.stream_shift, A) * std[:A])[None]
                                 + rng.normal(0, cfg.tick_noise, (len(x), A)) * std[:A])
                    if len(emb_cols) and rng.random() < cfg.p_drop_embedding:
                        x[:, emb_cols] = mean[emb_cols]
                    items.append(Batchable(x.astype(np.float32), *(np.concatenate([getattr(p[1], f) for p in parts])
                                                                  for f in ("label", "va", "weight", "clip"))))
                X, Y, VA_, W = _pad(items, T_b)
                state = None
                for t0 in range(0, X.shape[1], step_len):
                    sl = slice(t0, t0 + step_len)
                    x, y, va, w = X[:, sl], Y[:, sl], VA_[:, sl], W[:, sl]
                    logits, vah, conf, state = net(x, state)
                    state = _detach(state)
                    wsum = w.sum().clamp(min=1.0)
                    ce = (F.cross_entropy(logits.transpose(1, 2), y, weight=class_w, reduction="none",
                                          label_smoothing=cfg.label_smoothing) * w).sum() / wsum
                    l_va = (((vah - va) ** 2).sum(-1) * w).sum() / wsum
                    correct = (logits.argmax(-1) == y).float()
                    l_conf = (F.binary_cross_entropy(conf.clamp(1e-4, 1 - 1e-4), correct, reduction="none") * w
                              ).sum() / wsum
                    p = torch.softmax(logits, -1)
                    steady = ((y[:, 1:] == y[:, :-1]).float() * w[:, 1:] * w[:, :-1])
                    l_smooth = ((p[:, 1:] - p[:, :-1]).abs().sum(-1) * steady).sum() / steady.sum().clamp(min=1.0)
                    loss = ce + 0.5 * l_va + 0.2 * l_conf + cfg.smooth_weight * l_smooth
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    tot += float(loss.detach())
            net.eval()
            res = clip_eval([run_net(net, x)[0] for x in vals_x], val_sessions)
            fresh = clip_eval([run_net(net, x)[0] for x in val_x], val_single)
            n_steps = sum(math.ceil(t / step_len) for t in batch_len)
            history.append({"epoch": epoch + 1, "loss": tot / n_steps, "val_uar": res["uar"],
                            "val_acc": res["accuracy"], "val_uar_fresh": fresh["uar"]})
            log.info("epoch %d loss %.3f val UAR session %.3f (acc %.3f), fresh clips %.3f", epoch + 1,
                     tot / n_steps, res["uar"], res["accuracy"], fresh["uar"])
            if epoch >= avg_from:
                avg.update_parameters(net)
            tick()
    net.load_state_dict(avg.module.state_dict())  # buffers (normalisation) are the same in every epoch
    net.eval()
    # valence/arousal calibration on the TRAINING speakers (never the validation ones): their neutral clips, each
    # from a fresh state, should average (0, 0), so an artist's thresholds mean the same on any voice
    train_single = _calibration_clips(cfg, tr_clips)
    net.va_offset.copy_(torch.from_numpy(neutral_va(net, train_single)))
    net.label_bias.copy_(torch.from_numpy(fit_label_bias(net, train_single)))

    # ---------------------------------------------------------------- evaluation
    outs = [run_net(net, x) for x in vals_x]
    report = {"val_clips_audio_only": clip_eval([o[0] for o in outs], val_sessions, [o[1] for o in outs])}
    outs = [run_net(net, x) for x in val_x]
    report["val_clips_fresh_audio_only"] = clip_eval([o[0] for o in outs], val_single, [o[1] for o in outs])
    site_ref = site_reference(train_seqs)
    site = SiteAdaptation.from_meta({"site_reference": site_ref}, cfg.tick_hz, cfg.audio.site_prior_s,
                                    cfg.audio.site_memory_s)  # as the bridge builds it (the config's prior)
    if len({s.speaker for s in val_single}) > 1:
        outs = [run_net(net, make_inputs(s, None)) for s in site_adapted(val_single, site)]
        report["val_clips_fresh_site_audio_only"] = clip_eval([o[0] for o in outs], val_single, [o[1] for o in outs])
    report.update({"averaged_epochs": [avg_from + 1, cfg.epochs], "n_params": n_params})
    lstm_chain = [run_net(net, x)[0] for x in valc_x]
    report["smoothing"] = {"lstm": smoothing_eval(lstm_chain, val_chains)}
    if cfg.baselines:
        rows, report["smoothing_sweeps"] = _baselines(cfg, net, train_seqs, val_chains, valc_x, rng)
        report["smoothing"].update(rows)
    report["history"] = history

    meta = {
        "labels": list(LABELS), "va_coordinates": {k: list(v) for k, v in VA.items()},
        "feature_schema": feature_schema(cfg.audio, cfg.video, cfg.tick_hz),
        "tick_hz": cfg.tick_hz, "seed": cfg.seed, "epochs": cfg.epochs,
        "averaged_epochs": [avg_from + 1, cfg.epochs],
        "train_speakers": sorted({c.speaker for c in tr_clips}), "val_speakers": sorted({c.speaker for c in va_clips}),
        "data_list_sha256": file_digest([c.path for c in clips]), "n_clips": len(clips),
        "data_license": DATA_LICENSE if "ravdess" in str(cfg.data).lower() else "see your data's license",
        "val_uar_audio_only": report["val_clips_audio_only"]["uar"],
        "val_uar_fresh_clips_audio_only": report["val_clips_fresh_audio_only"]["uar"],
        "created": time.strftime("%Y-%m-%d"), "train_seconds": round(time.time() - t_start, 1),
        "normalisation": "mean/std buffers in state_dict",
        "va_offset": [round(float(v), 4) for v in net.va_offset],
        "label_bias": [round(float(v), 4) for v in net.label_bias],
        "site_reference": site_ref,
    }
    digest = save_weights(cfg.out, net, meta)
    report["weights_sha256"] = digest
    report["train_seconds"] = round(time.time() - t_start, 1)
    art = Path(cfg.artifacts)
    art.mkdir(parents=True, exist_ok=True)
    (art / "report.json").write_text(json.dumps(report, indent=2))
    _plot_curves(history, art / "training_curves.png")
    _plot_confusion(np.array(report["val_clips_audio_only"]["confusion"]), art / "confusion.png",
                    f"validation speakers, audio only (UAR {report['val_clips_audio_only']['uar']:.1%})")
    return report


def _baselines(cfg: TrainConfig, net: AffectNet, train_seqs, val_chains, valc_x, rng) -> tuple[dict, dict]:
    """Per-window classifier (no recurrence), raw / EMA / One-Euro, on the same chained validation sequences."""
    A = train_seqs[0].audio.shape[1]
    X = np.concatenate([make_inputs(s, None) for s in train_seqs])
    Y = np.concatenate([s.label for s in train_seqs])
    W = np.concatenate([s.weight for s in train_seqs]) > 0
    X, Y = torch.from_numpy(X[W]), torch.from_numpy(Y[W])
    clf = WindowClassifier(net, X.shape[1])
    for p in clf.normaliser.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in clf.net.parameters()], lr=2e-3, weight_decay=1e-3)
    std = net.std[:A]
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout: the same baseline whatever ran before
    for _epoch in range(8):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 512):
            idx = perm[i:i + 512]
            xb = X[idx].clone()
            xb[:, :A] += torch.randn(len(idx), A, generator=g) * 0.1 * std
            loss = F.cross_entropy(clf(xb), Y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    with torch.inference_mode():
        raw = [torch.softmax(clf(torch.from_numpy(x)), -1).numpy() for x in valc_x]
    out = {"window": smoothing_eval(raw, val_chains)}
    sweeps: dict[str, list[dict]] = {}
    # each smoother over a range of strengths (the trade-off curve is in the report); the table shows the
    # steadiest setting whose mean lag is not above the LSTM's: the comparison "jitter at equal or lower lag"
    lstm_lag = smoothing_eval([run_net(net, x)[0] for x in valc_x], val_chains)["lag_ticks_mean"]
    for name, sweep in (("ema", [dict(smoothing_eval([ema(p, a) for p in raw], val_chains), alpha=a)
                                 for a in (0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5)]),
                        ("one_euro", [dict(smoothing_eval([one_euro(p, cfg.tick_hz, mc, beta) for p in raw],
                                                          val_chains), min_cutoff=mc, beta=beta)
                                      for beta in (0.05, 0.2, 0.5) for mc in (0.02, 0.05, 0.1, 0.3, 1.0, 2.0)])):
        ok = [r for r in sweep if r["lag_ticks_mean"] <= lstm_lag]
        out[f"window+{name}"] = min(ok, key=lambda r: r["jitter"]) if ok else min(sweep, key=lambda r: r["lag_ticks_mean"])
        sweeps[name] = sweep
    return out, sweeps


def _mask_absent(probs: np.ndarray, present: set[int]) -> np.ndarray:
    """Zero the labels a corpus does not have (e.g. no "calm" in the Spanish set): the argmax over its labels."""
    p = probs.copy()
    p[:, [k for k in range(len(LABELS)) if k not in present]] = 0.0
    return p


def _config_of(meta: dict, data: str, out: str, workers: int, cache_dir: str) -> TrainConfig:
    """A training configuration whose features are those the weights (their ``meta``) were trained on."""
    sch = meta["feature_schema"]
    return TrainConfig(data=data, out=out, workers=workers, cache_dir=cache_dir, audio=audio_config(sch),
                       video=VideoConfig(window_s=sch["face_window_s"]), tick_hz=sch["tick_hz"])


def evaluate(data: str, weights: str | None, out_dir: str = "artifacts/evaluate", actors: set[int] | None = None,
             workers: int = 2, cache_dir: str = ".cache/features", robustness: bool = False,
             per_speaker_label: int | None = None, progress=None) -> dict:
    """Primary: every clip from a fresh model state (a new visitor), audio only. Secondary: each speaker's clips
    in one session. ``robustness``: also the condition table (``bridge.training.robustness``) through
    ``bridge.process_files``; ``per_speaker_label`` limits that table to N clips per speaker and label."""
    net, meta = load_weights(weights)
    cfg = _config_of(meta, data, "", workers, cache_dir)
    clips = load_dataset(data, actors)
    if not clips:
        raise SystemExit(f"no labelled clips found in {data}")
    from bridge.training.robustness import load_clips

    clips, _, skipped = load_clips(clips)  # malformed or shorter than 0.3 s: skipped and counted
    present = {LABELS.index(c.label) for c in clips}
    singles = _build(clips, cfg, 4243, True, "features: evaluation clips (fresh state)")
    outs = [run_net(net, make_inputs(s, None)) for s in singles]
    res = clip_eval([_mask_absent(o[0], present) for o in outs], singles, [o[1] for o in outs])
    res["mode"] = "fresh: each clip from a fresh model state, as a new visitor"
    seqs = _build(clips, cfg, 4242, False, "features: evaluation sessions", cfg.session_len)
    outs = [run_net(net, make_inputs(s, None)) for s in seqs]
    sess = clip_eval([_mask_absent(o[0], present) for o in outs], seqs, [o[1] for o in outs])
    keys = ("uar", "accuracy", "recall", "ccc_valence", "ccc_arousal", "arousal_uar", "arousal_auc",
            "neutral_mean_valence", "neutral_mean_arousal")
    res["session"] = {k: sess[k] for k in keys if k in sess}
    res["session"]["mode"] = "session: each speaker's clips in one stream, as a visitor talking for minutes"
    res["fresh_clips"] = {k: res[k] for k in keys if k in res}
    site = SiteAdaptation.from_meta(meta, cfg.tick_hz, AudioConfig().site_prior_s, AudioConfig().site_memory_s)
    if site is not None and len({s.speaker for s in singles}) > 1:
        outs = [run_net(net, make_inputs(s, None)) for s in site_adapted(singles, site)]
        fs = clip_eval([_mask_absent(o[0], present) for o in outs], singles, [o[1] for o in outs])
        res["fresh_site"] = {k: fs[k] for k in keys if k in fs}
        res["fresh_site"]["mode"] = ("fresh model state per clip, with the site adaptation having heard the OTHER "
                                     "speakers of the set (an installation after its first visitors)")
    res["speakers"] = sorted({c.speaker for c in clips})
    res["skipped_files"] = skipped
    res["n_labels"] = len(present)
    if robustness:
        from bridge.training.robustness import robustness_table, subset

        res["robustness"] = robustness_table(subset(clips, per_speaker_label), weights, workers=workers,
                                             progress=progress)
        res["robustness"]["per_speaker_label"] = per_speaker_label
    od = Path(out_dir)
    od.mkdir(parents=True, exist_ok=True)
    (od / "evaluation.json").write_text(json.dumps(res, indent=2))
    _plot_confusion(np.array(res["confusion"]), od / "confusion.png",
                    f"{Path(data).name}, fresh state per clip: UAR {res['uar']:.1%}")
    return res


def recalibrate_labels(weights: str, data: str, out: str, workers: int = 2, cache_dir: str = ".cache/features"
                       ) -> dict:
    """Fit the label calibration of an existing weights file (an ensemble: its own ``label_bias``; one network:
    its ``label_bias``) on the training speakers recorded in its metadata, exactly as training ends, and save it
    at ``out`` with the validation numbers of its metadata re-measured; returns the metadata. For weights trained
    before the calibration existed; training does this itself."""
    net, meta = load_weights(weights)
    cfg = _config_of(meta, data, out, workers, cache_dir)
    clips = load_dataset(data)
    tr_clips = [c for c in clips if c.speaker in set(meta["train_speakers"])]
    va_clips = [c for c in clips if c.speaker in set(meta["val_speakers"])]
    if not tr_clips:
        raise SystemExit(f"none of the weights' training speakers ({meta['train_speakers'][:3]}...) are in {data}")
    singles = _calibration_clips(cfg, tr_clips)
    net.label_bias.copy_(torch.from_numpy(fit_label_bias(net, singles)))
    meta = dict(meta, label_bias=[round(float(v), 4) for v in net.label_bias])
    if va_clips:  # the validation numbers in the metadata are the calibrated model's
        rep = _validate(net, cfg, va_clips)
        meta.update(val_uar_audio_only=rep["val_clips_audio_only"]["uar"],
                    val_uar_fresh_clips_audio_only=rep["val_clips_fresh_audio_only"]["uar"])
    save_weights(out, net, meta)
    return meta


def _plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ep = [h["epoch"] for h in history]
    ax[0].plot(ep, [h["loss"] for h in history])
    ax[0].set_title("training loss")
    ax[1].plot(ep, [h["val_uar"] for h in history], label="UAR (session)")
    ax[1].plot(ep, [h["val_uar_fresh"] for h in history], label="UAR (fresh clip)")
    ax[1].axhline(1 / len(LABELS), color="gray", ls=":", label="chance")
    ax[1].set_title("validation speakers (audio only)")
    ax[1].legend()
    for a in ax:
        a.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_confusion(cm: np.ndarray, path: Path, title: str, rows: tuple[str, ...] = LABELS,
                    cols: tuple[str, ...] | None = None) -> None:
    """Confusion matrix PNG, cells shaded by row share; ``cols`` defaults to ``rows`` (the face evaluation adds a
    "no face" column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = rows if cols is None else cols
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
