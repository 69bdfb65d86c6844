"""The streaming affect model: a small LSTM over tick vectors, with its recurrent state in one object.

``AffectNet.forward`` runs whole sequences (training, evaluation); ``StreamingAffectModel.step`` runs one tick
through :class:`OneTick` (the same arithmetic written for one tick, in numpy, ~6x cheaper) and keeps the streaming
state in ``self.state`` — equal to the full-sequence pass (tested to 1e-5); :func:`step_many` steps several
visitors in one batched call. ``AffectEnsemble`` holds several networks trained alike (the shipped weights are
three) and is their mean, through every one of these paths. Weights files are plain dicts of tensors and metadata,
loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bridge.features.face import EXPR_FRAC, EXPR_MEAN, EXPRESSION_NAMES, N_EXPRESSIONS
from bridge.labels import LABELS

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "default.pt"
# the face path's 7 expressions -> the model's labels (calm has no face class: it shares neutral's probability)
FACE_TO_LABEL = [EXPRESSION_NAMES.index("neutral" if lab == "calm" else lab) for lab in LABELS]
FACE_FLOOR = 1e-3  # the face expert's probabilities are floored here before the log


class WeightsError(RuntimeError):
    """Weights missing, corrupt or made for other features; the message says what to do."""


class AffectNet(nn.Module):
    """Normalise -> speaker adaptation -> utterance pooling -> projection -> LSTM -> heads (labels,
    valence/arousal, confidence).

    Speaker adaptation: voices differ more between people than between one person's emotions, so the audio
    features are also given relative to the current visitor's own voice: a running mean and variance over the
    voiced ticks since the last reset, shrunk towards the training population by ``prior_ticks`` pseudo-ticks
    (so the first seconds of a new voice fall back to the population statistics). It is causal and part of the
    streaming state, so ``step()`` and the full-sequence pass stay equal.

    Utterance pooling: the running mean and standard deviation of those speaker-relative features over the voiced
    ticks of the current utterance (an utterance starts at the first voiced tick after ``utt_gap`` unvoiced
    ticks, and its statistics are held through the silence after it). A judgment over the whole utterance so far,
    not just the last audio window: on RAVDESS validation speakers a linear classifier on the tick features went
    from 41 % to 50 % UAR with it. Also causal and part of the streaming state.

    Face expert (``face_expert``): the label logits are the LSTM head's plus ``face_w`` (one learned weight per
    label) times the log of the face path's own expression probabilities (their mean over the face window, calm
    sharing neutral's), wherever the tick has them. A visitor who does not speak then gets the face path's
    judgement directly -- the LSTM adds to it rather than having to re-learn it from the 10 % of training streams
    that are face only -- and with a voice the LSTM learns what to add or take away. Measured over 3 seeds it did
    not make the face-only states stable or better (docs/MODEL_CARD.md, "Tried, not shipped"): an option, off in the
    shipped recipe."""

    def __init__(self, in_dim: int, audio_dim: int, face_dim: int, hidden: int = 128, proj: int = 128,
                 dropout: float = 0.2, n_labels: int = len(LABELS), prior_ticks: float = 150.0,
                 utt_gap: int = 8, face_expert: bool = False):
        super().__init__()
        self.in_dim, self.audio_dim, self.face_dim = in_dim, audio_dim, face_dim
        self.hidden, self.proj_dim, self.prior_ticks, self.utt_gap = hidden, proj, prior_ticks, utt_gap
        self.face_expert = face_expert
        if face_expert:
            if face_dim <= EXPR_FRAC or n_labels != len(LABELS):
                raise ValueError("the face expert needs the face path's expression columns and the standard labels")
            self.face_w = nn.Parameter(torch.ones(n_labels))
        self.proj = nn.Sequential(nn.Linear(in_dim + 3 * audio_dim, proj), nn.LayerNorm(proj), nn.GELU(),
                                  nn.Dropout(dropout))
        self.lstm = nn.LSTM(proj, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head_cls = nn.Linear(hidden, n_labels)
        self.head_va = nn.Linear(hidden, 2)
        self.head_conf = nn.Linear(hidden + n_labels, 1)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        # valence/arousal calibration: subtracted from the head's output so that neutral speech of the training
        # speakers, each clip from a fresh state, comes out at (0, 0) on average (set by training)
        self.register_buffer("va_offset", torch.zeros(2))
        # label calibration: added to the label logits (after the confidence head has read them) so that the
        # training speakers' clips, each from a fresh state, are decided class-balanced (set by training)
        self.register_buffer("label_bias", torch.zeros(n_labels))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """z-score, then zero a missing modality's block (masks sit in the last 4 columns)."""
        a, f = self.audio_dim, self.face_dim
        z = (x - self.mean) / self.std
        z = torch.clamp(z, -8.0, 8.0)
        audio_present = x[..., a + f: a + f + 1]
        face_present = x[..., a + f + 1: a + f + 2]
        return torch.cat([z[..., :a] * audio_present, z[..., a:a + f] * face_present, x[..., a + f:]], dim=-1)

    def face_logp(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_labels): log of the face path's expression probabilities (window mean, floored at
        ``FACE_FLOOR``) on the model's labels where the tick has them (a face, seen by the network); 0 elsewhere
        (adds nothing to the softmax)."""
        a, f = self.audio_dim, self.face_dim
        p = x[..., a + EXPR_MEAN: a + EXPR_MEAN + N_EXPRESSIONS][..., FACE_TO_LABEL]
        on = (x[..., a + EXPR_FRAC: a + EXPR_FRAC + 1] > 0).float() * x[..., a + f + 1: a + f + 2]
        return torch.log(p.clamp(min=FACE_FLOOR)) * on

    def voiced(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 1): 1 where the voice-activity feature (the last audio column) is on and audio is present."""
        a = self.audio_dim
        return (x[..., a - 1:a] > 0.5).float() * x[..., a + self.face_dim: a + self.face_dim + 1]

    def adapt(self, z: torch.Tensor, x: torch.Tensor, state: tuple | None):
        """Audio features relative to the running statistics of this voice (voiced ticks only)."""
        a = self.audio_dim
        za = z[..., :a]
        voiced = self.voiced(x)
        n0 = self.prior_ticks
        n = torch.cumsum(voiced, dim=1)
        s1 = torch.cumsum(voiced * za, dim=1)
        s2 = torch.cumsum(voiced * za * za, dim=1)
        if state is not None:
            n, s1, s2 = n + state[0], s1 + state[1], s2 + state[2]
        mean = s1 / (n + n0)
        var = (s2 + n0) / (n + n0) - mean * mean
        rel = (za - mean) / torch.sqrt(var.clamp(min=1e-2))
        rel = torch.clamp(rel, -8.0, 8.0) * x[..., a + self.face_dim: a + self.face_dim + 1]
        return rel, (n[:, -1:], s1[:, -1:], s2[:, -1:])

    def pool(self, rel: torch.Tensor, voiced: torch.Tensor, state: tuple | None):
        """Running mean and std of ``rel`` over the voiced ticks of the current utterance.

        ``state`` = (last voiced tick relative to this call's first tick, n, sum, sum of squares) of the utterance
        in progress. Vectorised with cumulative sums restarted at each utterance start (found with cummax), so a
        whole sequence and tick-by-tick give the same numbers."""
        B, T, _ = rel.shape
        v = voiced[..., 0] > 0
        idx = torch.arange(T, device=rel.device).expand(B, T)
        never = torch.full((B, 1), -1e9, device=rel.device)
        last_v, n0, s10, s20 = state if state is not None else (never, torch.zeros(B, 1, 1, device=rel.device),
                                                                 torch.zeros(B, 1, rel.shape[-1], device=rel.device),
                                                                 torch.zeros(B, 1, rel.shape[-1], device=rel.device))
        seen = torch.cummax(torch.where(v, idx.float(), torch.full_like(idx, -1e9, dtype=torch.float)), 1).values
        seen = torch.maximum(seen, last_v)  # last voiced tick at or before t
        before = torch.cat([last_v, seen[:, :-1]], 1)  # last voiced tick strictly before t
        start = v & (idx - before - 1 >= self.utt_gap)
        st = torch.cummax(torch.where(start, idx, torch.full_like(idx, -1)), 1).values  # last start at or before t
        fresh = (st >= 0).float()[..., None]  # an utterance started in this call: carried sums no longer count
        vf = voiced
        zero = torch.zeros_like(rel[:, :1])
        c1 = torch.cat([zero, torch.cumsum(vf * rel, 1)], 1)
        c2 = torch.cat([zero, torch.cumsum(vf * rel * rel, 1)], 1)
        cn = torch.cat([zero[..., :1], torch.cumsum(vf, 1)], 1)
        g = st.clamp(min=0)[..., None]
        s1 = c1[:, 1:] - torch.gather(c1, 1, g.expand(-1, -1, rel.shape[-1])) + (1 - fresh) * s10
        s2 = c2[:, 1:] - torch.gather(c2, 1, g.expand(-1, -1, rel.shape[-1])) + (1 - fresh) * s20
        n = cn[:, 1:] - torch.gather(cn, 1, g) + (1 - fresh) * n0
        mean = s1 / n.clamp(min=1.0)
        std = torch.sqrt((s2 / n.clamp(min=1.0) - mean * mean).clamp(min=0.0) + 1e-4) * (n > 0).float()
        new_state = (seen[:, -1:] - T, n[:, -1:], s1[:, -1:], s2[:, -1:])
        return mean, std, new_state

    def forward(self, x: torch.Tensor, state: tuple | None = None):
        """x: (B, T, in_dim) raw tick vectors -> logits (B,T,L), va (B,T,2) in [-1,1], conf (B,T), state.

        ``state`` is ((h, c), (n, sum, sum of squares), utterance) — the LSTM's, the speaker adaptation's and the
        utterance pooling's."""
        lstm_state, adapt_state, pool_state = state if state is not None else (None, None, None)
        z = self.normalise(x)
        rel, adapt_state = self.adapt(z, x, adapt_state)
        u_mean, u_std, pool_state = self.pool(rel, self.voiced(x), pool_state)
        h, lstm_state = self.lstm(self.proj(torch.cat([z, rel, u_mean, u_std], -1)), lstm_state)
        state = (lstm_state, adapt_state, pool_state)
        h = self.drop(h)
        logits = self.head_cls(h)
        if self.face_expert:
            logits = logits + self.face_w * self.face_logp(x)
        va = torch.clamp(torch.tanh(self.head_va(h)) - self.va_offset, -1.0, 1.0)
        conf = torch.sigmoid(self.head_conf(torch.cat([h, torch.softmax(logits, -1).detach()], -1))).squeeze(-1)
        return logits + self.label_bias, va, conf, state


class AffectEnsemble(nn.Module):
    """Several ``AffectNet`` trained alike from different seeds (``emotion-bridge train --members``), run side by
    side: the label probabilities, valence/arousal and confidence are their means (``forward`` returns the log of
    the mean probabilities, shifted by the ensemble's own ``label_bias`` and renormalised, as logits). An average
    of independently trained networks generalises better than any one of them and does not depend on one training
    draw (docs/MODEL_CARD.md); each member keeps its own streaming state (the state is the tuple of the
    members')."""

    def __init__(self, members: list[AffectNet]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        first = members[0]
        for m in members[1:]:
            if (m.in_dim, m.audio_dim, m.face_dim) != (first.in_dim, first.audio_dim, first.face_dim):
                raise ValueError("ensemble members must take the same tick vector")
        self.members = nn.ModuleList(members)
        self.in_dim, self.audio_dim, self.face_dim = first.in_dim, first.audio_dim, first.face_dim
        # the ensemble's own label calibration, on the log of the members' mean probabilities (set by training)
        self.register_buffer("label_bias", torch.zeros(first.head_cls.out_features))

    def forward(self, x: torch.Tensor, state: tuple | None = None):
        states = state if state is not None else (None,) * len(self.members)
        outs = [m(x, st) for m, st in zip(self.members, states)]
        probs = torch.stack([torch.softmax(o[0], -1) for o in outs]).mean(0)
        va = torch.stack([o[1] for o in outs]).mean(0)
        conf = torch.stack([o[2] for o in outs]).mean(0)
        logp = torch.log_softmax(torch.log(probs.clamp(min=1e-12)) + self.label_bias, -1)
        return logp, va, conf, tuple(o[3] for o in outs)


def members(net: nn.Module) -> list[AffectNet]:
    """The networks of a weights file: the ensemble's members, or the one network."""
    return list(net.members) if isinstance(net, AffectEnsemble) else [net]


@dataclass
class StepOutput:
    probs: np.ndarray
    valence: float
    arousal: float
    confidence: float


def _fast_step_ok(net: AffectNet) -> bool:
    """The one-tick path reads the float layers' weights directly; a quantised net (int8) keeps the full pass."""
    if isinstance(net, AffectEnsemble):
        return not net.training and all(_fast_step_ok(m) for m in net.members)
    return (not net.training and type(net.lstm) is nn.LSTM and net.lstm.num_layers == 1
            and not net.lstm.bidirectional and net.lstm.proj_size == 0 and type(net.proj[0]) is nn.Linear
            and all(type(m) is nn.Linear for m in (net.head_cls, net.head_va, net.head_conf)))


def state_width(net: AffectNet) -> int:
    """Width of the packed one-tick state: LSTM (h, c), speaker statistics (n, sum, sum of squares), utterance
    (last voiced tick, n, sum, sum of squares); an ensemble's members' side by side."""
    if isinstance(net, AffectEnsemble):
        return sum(state_width(m) for m in net.members)
    return 2 * net.hidden + 1 + 2 * net.audio_dim + 2 + 2 * net.audio_dim


def _split_sizes(net: AffectNet) -> list[int]:
    H, a = net.hidden, net.audio_dim
    return [H, H, 1, a, a, 1, 1, a, a]


def fresh_state(net: AffectNet, batch: int = 1) -> np.ndarray:
    """The packed state of a new visitor (what ``AffectNet.forward`` assumes for ``state=None``)."""
    if isinstance(net, AffectEnsemble):
        return np.concatenate([fresh_state(m, batch) for m in net.members], 1)
    s = np.zeros((batch, state_width(net)), np.float32)
    s[:, 2 * net.hidden + 1 + 2 * net.audio_dim] = -1e9  # no voiced tick yet
    return s


def pack_state(net: AffectNet, state: tuple) -> np.ndarray:
    """``AffectNet.forward``'s state tuple -> the packed (B, state_width) array of :class:`OneTick`."""
    if isinstance(net, AffectEnsemble):
        return np.concatenate([pack_state(m, st) for m, st in zip(net.members, state)], 1)
    (h, c), (n, s1, s2), (last_v, pn, ps1, ps2) = state
    return torch.cat([h[0], c[0], n[:, 0], s1[:, 0], s2[:, 0], last_v, pn[:, 0], ps1[:, 0], ps2[:, 0]],
                     1).detach().numpy().astype(np.float32)


def unpack_state(net: AffectNet, s: np.ndarray) -> tuple:
    """The packed state -> ``AffectNet.forward``'s state tuple (to continue with the full-sequence pass)."""
    if isinstance(net, AffectEnsemble):
        ends = np.cumsum([state_width(m) for m in net.members])[:-1]
        return tuple(unpack_state(m, part) for m, part in zip(net.members, np.split(s, ends, 1)))
    h, c, n, s1, s2, last_v, pn, ps1, ps2 = (torch.from_numpy(np.ascontiguousarray(x))
                                             for x in np.split(s, np.cumsum(_split_sizes(net))[:-1], 1))
    return ((h[None], c[None]), (n[:, None], s1[:, None], s2[:, None]),
            (last_v, pn[:, None], ps1[:, None], ps2[:, None]))


class OneTick:
    """One tick of ``AffectNet.forward`` for B visitors at once, written for T = 1 in numpy: the sequence pass's
    cumulative sums, cummax and gather reduce to running sums and its ``nn.LSTM`` to one LSTM cell. Same
    arithmetic in the same order (float32), so equal to the full pass (tested to 1e-5), at a fifth of the CPU:
    at T = 1 the sequence pass is ~80 tiny torch operations of a few microseconds of dispatch each, and
    ``nn.LSTM``'s oneDNN kernel alone costs ~120 us; numpy's per-operation cost is about a third of torch's.

    One network: the weights are numpy *views* of its tensors (no copies), so loading new weights into the same
    network in place is seen at once. An :class:`AffectEnsemble`: the K members' weights stacked on a leading axis
    (copies), so the K members take the same ~80 operations as one, on (K, B, ...) arrays (batched matrix
    products); the packed state holds the members' states side by side, and the output is their mean, as
    ``AffectEnsemble.forward``'s."""

    def __init__(self, net: AffectNet | AffectEnsemble):
        nets = members(net)
        self.k = len(nets)
        first = nets[0]
        for m in nets[1:]:
            if (m.prior_ticks, m.utt_gap, m.face_expert, m.proj[2].approximate, m.proj[1].eps) != (
                    first.prior_ticks, first.utt_gap, first.face_expert, first.proj[2].approximate, first.proj[1].eps):
                raise ValueError("ensemble members must share the architecture")

        def w(get, t: bool = False) -> np.ndarray:
            arrs = [get(m).detach().numpy() for m in nets]
            arrs = [a.T for a in arrs] if t else arrs
            if self.k == 1:
                return arrs[0]
            st = np.stack(arrs)
            return st[:, None] if st.ndim == 2 else st  # vectors: (K, 1, n), broadcast over the visitors

        from scipy.special import erf, expit

        self.net, self.erf, self.expit = net, erf, expit
        self.a, self.f = first.audio_dim, first.face_dim
        self.n0, self.gap = np.float32(first.prior_ticks), first.utt_gap
        self.width = state_width(first)
        ends = np.cumsum(_split_sizes(first)).tolist()
        self.parts = [slice(a, b) for a, b in zip([0] + ends[:-1], ends)]  # one network's packed state fields
        self.mean, self.std = w(lambda m: m.mean), w(lambda m: m.std)
        self.Wp, self.bp = w(lambda m: m.proj[0].weight, True), w(lambda m: m.proj[0].bias)
        self.ln_w, self.ln_b, self.ln_eps = w(lambda m: m.proj[1].weight), w(lambda m: m.proj[1].bias), np.float32(
            first.proj[1].eps)
        self.gelu_tanh = first.proj[2].approximate == "tanh"
        self.Wih, self.Whh = w(lambda m: m.lstm.weight_ih_l0, True), w(lambda m: m.lstm.weight_hh_l0, True)
        self.bih, self.bhh = w(lambda m: m.lstm.bias_ih_l0), w(lambda m: m.lstm.bias_hh_l0)
        self.Wc, self.bc = w(lambda m: m.head_cls.weight, True), w(lambda m: m.head_cls.bias)
        self.Wva, self.bva = w(lambda m: m.head_va.weight, True), w(lambda m: m.head_va.bias)
        self.Wf, self.bf = w(lambda m: m.head_conf.weight, True), w(lambda m: m.head_conf.bias)
        self.va_offset = w(lambda m: m.va_offset)
        self.label_bias = w(lambda m: m.label_bias)
        self.ens_bias = net.label_bias.detach().numpy() if isinstance(net, AffectEnsemble) else None
        self.face_w = w(lambda m: m.face_w) if first.face_expert else None
        self.face_cols = np.array(FACE_TO_LABEL) + self.a + EXPR_MEAN

    def __call__(self, x: np.ndarray, s: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """x: (B, in_dim) raw tick vectors (float32); s: (B, state_width) packed states or None (all fresh).
        Returns (out (B, n_labels + 3): probabilities, valence, arousal, confidence; the new packed state)."""
        erf, expit = self.erf, self.expit
        a, f = self.a, self.f
        if s is None:
            s = fresh_state(self.net, x.shape[0])
        elif isinstance(s, tuple):  # a state from AffectNet.forward (e.g. set after a sequence pass)
            s = pack_state(self.net, s)
        if self.k > 1:  # (B, K * width) -> (K, B, width): each member's state
            s = s.reshape(s.shape[0], self.k, self.width).transpose(1, 0, 2)
        h, c, an, as1, as2, last_v, pn, ps1, ps2 = (s[..., k] for k in self.parts)
        # normalise
        z = np.clip((x - self.mean) / self.std, -8.0, 8.0)
        ap = x[:, a + f: a + f + 1]
        za = z[..., :a] * ap
        zn = np.concatenate([za, z[..., a:a + f] * x[:, a + f + 1: a + f + 2],
                             np.broadcast_to(x[:, a + f:], za.shape[:-1] + (x.shape[1] - a - f,))], -1)
        voiced = (x[:, a - 1:a] > 0.5).astype(np.float32) * ap
        # speaker adaptation: running statistics of this voice
        n0 = self.n0
        vza = voiced * za
        n, s1, s2 = voiced + an, vza + as1, vza * za + as2
        mean = s1 / (n + n0)
        var = (s2 + n0) / (n + n0) - mean * mean
        rel = np.clip((za - mean) / np.sqrt(np.maximum(var, np.float32(1e-2))), -8.0, 8.0) * ap
        # utterance pooling: an utterance starts at a voiced tick more than utt_gap ticks after the last voiced one
        v = voiced > 0
        seen = np.maximum(np.where(v, np.float32(0.0), np.float32(-1e9)), last_v)
        keep = 1.0 - (v & (-last_v - 1 >= self.gap)).astype(np.float32)
        vr = voiced * rel
        un, us1, us2 = voiced + keep * pn, vr + keep * ps1, vr * rel + keep * ps2
        nc = np.maximum(un, np.float32(1.0))
        u_mean = us1 / nc
        u_std = np.sqrt(np.maximum(us2 / nc - u_mean * u_mean, np.float32(0.0)) + np.float32(1e-4)) * (un > 0)
        # projection (linear, layer norm, GELU), one LSTM cell (gates i, f, g, o), heads
        y = np.concatenate([zn, rel, u_mean, u_std], -1) @ self.Wp + self.bp
        mu = y.mean(-1, keepdims=True)
        d = y - mu
        y = d / np.sqrt((d * d).mean(-1, keepdims=True) + self.ln_eps) * self.ln_w + self.ln_b
        if self.gelu_tanh:
            y = 0.5 * y * (1.0 + np.tanh(np.float32(0.7978845608028654) * (y + np.float32(0.044715) * y * y * y)))
        else:
            y = 0.5 * y * (1.0 + erf(y * np.float32(0.7071067811865476)))
        g = (y @ self.Wih + self.bih) + (h @ self.Whh + self.bhh)
        H = h.shape[-1]
        gi, gf, gg, go = g[..., :H], g[..., H:2 * H], g[..., 2 * H:3 * H], g[..., 3 * H:]
        c = expit(gf) * c + expit(gi) * np.tanh(gg)
        h = expit(go) * np.tanh(c)
        logits = h @ self.Wc + self.bc
        if self.face_w is not None:
            on = (x[:, a + EXPR_FRAC: a + EXPR_FRAC + 1] > 0).astype(np.float32) * x[:, a + f + 1: a + f + 2]
            logits = logits + self.face_w * (np.log(np.maximum(x[:, self.face_cols], np.float32(FACE_FLOOR))) * on)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        probs = e / e.sum(-1, keepdims=True)
        va = np.clip(np.tanh(h @ self.Wva + self.bva) - self.va_offset, -1.0, 1.0)
        conf = expit(np.concatenate([h, probs], -1) @ self.Wf + self.bf)
        probs = _biased(probs, self.label_bias)  # the calibration comes after the confidence head, as in forward
        out = np.concatenate([probs, va, conf], -1)
        new = np.concatenate([h, c, n, s1, s2, seen - np.float32(1.0), un, us1, us2], -1)
        if self.k > 1:  # the members' mean; their states side by side again
            out = out.mean(0, dtype=np.float32)
            L = self.ens_bias.shape[-1]
            out[:, :L] = _biased(out[:, :L], self.ens_bias)
            return out, new.transpose(1, 0, 2).reshape(new.shape[1], -1)
        return out, new


def _biased(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(log(probs) + bias) without the log: probs * exp(bias), renormalised."""
    p = probs * np.exp(bias).astype(np.float32)
    return p / p.sum(-1, keepdims=True)


def one_tick(net: nn.Module) -> OneTick | None:
    """The numpy one-tick step of a network or an ensemble (None for a quantised one: it keeps the full pass)."""
    return OneTick(net) if _fast_step_ok(net) else None


class StreamingAffectModel:
    """One tick at a time; the LSTM's (h, c), the speaker statistics and the utterance pooling live in
    ``self.state`` (one packed array, see :class:`OneTick`); ``reset()`` clears them (a new visitor).
    :func:`step_many` steps several of them (one per visitor) in one batched call."""

    def __init__(self, net: AffectNet, meta: dict):
        self.net = net.eval()
        self.meta = meta
        self.state: np.ndarray | tuple | None = None
        self.one_tick = one_tick(self.net)

    def reset(self) -> None:
        self.state = None

    def step(self, vec: np.ndarray) -> StepOutput:
        if self.one_tick is not None:
            out, self.state = self.one_tick(np.asarray(vec, np.float32).reshape(1, -1), self.state)
            return _outputs(out)[0]
        return self._step_full(vec)

    @torch.inference_mode()
    def _step_full(self, vec: np.ndarray) -> StepOutput:
        """The full-sequence pass at T = 1 (a quantised network)."""
        x = torch.from_numpy(np.asarray(vec, np.float32)).view(1, 1, -1)
        logits, va, conf, self.state = self.net(x, self.state)
        probs = torch.softmax(logits[0, 0], -1).numpy()
        return StepOutput(probs, float(va[0, 0, 0]), float(va[0, 0, 1]), float(conf[0, 0]))

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: str | Path | None = None, quantize: str = "none") -> StreamingAffectModel:
        net, meta = load_weights(path)
        if quantize == "int8":
            net = quantize_int8(net)
        return cls(net, meta)


def _outputs(out: np.ndarray) -> list[StepOutput]:
    L = out.shape[1] - 3
    return [StepOutput(row[:L].copy(), float(row[L]), float(row[L + 1]), float(row[L + 2])) for row in out]


def step_many(models: list[StreamingAffectModel], vecs: list[np.ndarray]) -> list[StepOutput]:
    """One tick for several visitors: models sharing one network, one tick vector each, stepped in one batched
    call (equal to stepping each alone, tested). Models that cannot take the one-tick path (int8), or a single
    model, are stepped one by one."""
    if len(models) < 2 or not all(m.one_tick is not None and m.net is models[0].net for m in models):
        return [m.step(v) for m, v in zip(models, vecs)]
    net = models[0].net
    fresh = None
    states = []
    for m in models:
        if m.state is None:
            fresh = fresh_state(net) if fresh is None else fresh
            states.append(fresh)
        else:
            states.append(pack_state(net, m.state) if isinstance(m.state, tuple) else m.state)
    out, new = models[0].one_tick(np.stack([np.asarray(v, np.float32) for v in vecs]), np.concatenate(states, 0))
    for k, m in enumerate(models):
        m.state = new[k:k + 1]
    return _outputs(out)


def quantize_int8(net: AffectNet) -> AffectNet:
    """Dynamic int8 quantisation of the Linear and LSTM layers (weights int8, activations quantised per call);
    the normalisation, speaker adaptation and pooling stay in float32."""
    import copy

    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(copy.deepcopy(net).eval(), {nn.Linear, nn.LSTM}, dtype=torch.qint8)


def default_weights_path() -> Path:
    return Path(str(resources.files("bridge.model") / "weights" / DEFAULT_WEIGHTS))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _arch(net: AffectNet) -> dict:
    return {"in_dim": net.in_dim, "audio_dim": net.audio_dim, "face_dim": net.face_dim, "hidden": net.hidden,
            "proj": net.proj_dim, "prior_ticks": net.prior_ticks, "utt_gap": net.utt_gap,
            "face_expert": net.face_expert}


def _tensors(net: AffectNet) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def save_weights(path: str | Path, net: AffectNet | AffectEnsemble, meta: dict) -> str:
    """One network: ``arch`` + ``state_dict``; an ensemble: ``members``, a list of those."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": "emotion-bridge-weights/1", "meta": meta}
    if isinstance(net, AffectEnsemble):
        blob["members"] = [{"arch": _arch(m), "state_dict": _tensors(m)} for m in net.members]
        blob["ensemble"] = {"label_bias": net.label_bias.detach().cpu().contiguous()}
    else:
        blob.update(arch=_arch(net), state_dict=_tensors(net))
    torch.save(blob, path)
    digest = sha256_file(path)
    path.with_suffix(".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def load_weights(path: str | Path | None = None) -> tuple[AffectNet, dict]:
    p = Path(path) if path else default_weights_path()
    if not p.is_file():
        raise WeightsError(
            f"no model weights at {p}. The bridge sends no emotions without a trained model. "
            f"Pass --weights PATH (train one with `emotion-bridge train`), or reinstall the package to get the "
            f"default weights.")
    sidecar = p.with_suffix(".sha256")
    if sidecar.is_file():
        expected = sidecar.read_text().split()[0]
        actual = sha256_file(p)
        if actual != expected:
            raise WeightsError(f"{p} does not match its checksum in {sidecar.name} (expected {expected[:12]}…, "
                               f"got {actual[:12]}…): the file is corrupt or was replaced. Re-download or retrain.")
    try:  # torch files are zip archives with a CRC-32 per entry; torch.load itself does not check them
        bad = zipfile.ZipFile(p).testzip() if zipfile.is_zipfile(p) else None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        bad = f"({type(e).__name__}: {e})"
    if bad:
        raise WeightsError(f"{p} is corrupt (checksum error in {bad}): the file was damaged on disk or in transfer. "
                           f"Re-download or retrain.")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for corrupt/truncated/unsafe files
        raise WeightsError(f"cannot read model weights {p}: {type(e).__name__}: {str(e)[:200]}. "
                           f"The file is corrupt, truncated or not an emotion-bridge weights file.") from None
    if not isinstance(blob, dict) or blob.get("format") != "emotion-bridge-weights/1":
        raise WeightsError(f"{p} is not an emotion-bridge weights file (format tag missing).")
    try:
        meta = blob["meta"]
        parts = blob["members"] if "members" in blob else [{"arch": blob["arch"], "state_dict": blob["state_dict"]}]
        labels = meta.get("labels", [])
    except (KeyError, TypeError, AttributeError) as e:  # the right tag, but not the content it promises
        raise WeightsError(f"{p} is an incomplete or damaged emotion-bridge weights file ({type(e).__name__}: "
                           f"{e}). Re-download or retrain.") from None
    if not isinstance(labels, (list, tuple)) or list(labels) != list(LABELS):
        raise WeightsError(f"{p} was trained for labels {meta.get('labels')}, this bridge uses {list(LABELS)}.")
    try:
        nets = []
        for part in parts:
            net = AffectNet(**part["arch"])
            sd = dict(part["state_dict"])
            sd.setdefault("va_offset", torch.zeros(2))  # weights from before the calibration: uncalibrated
            sd.setdefault("label_bias", torch.zeros(len(LABELS)))  # ... and from before the label calibration
            net.load_state_dict(sd)
            nets.append(net.eval())
        net = nets[0] if len(nets) == 1 else AffectEnsemble(nets)
        if len(nets) > 1 and "label_bias" in blob.get("ensemble", {}):
            net.label_bias.copy_(blob["ensemble"]["label_bias"])
    except (RuntimeError, TypeError, ValueError, KeyError, IndexError) as e:
        raise WeightsError(f"{p}: weights do not fit the model architecture: {type(e).__name__}: "
                           f"{str(e)[:300]}") from None
    return net.eval(), meta
