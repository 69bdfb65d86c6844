"""Baselines on the same tick vectors: a per-window classifier without recurrence, smoothed by an EMA or by a
One-Euro filter (Casiez, Roussel & Vogel 2012, "1€ Filter", CHI)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bridge.labels import LABELS


class WindowClassifier(nn.Module):
    """MLP on one tick vector (same normalisation and masking as the LSTM)."""

    def __init__(self, normaliser: nn.Module, in_dim: int, hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        self.normaliser = normaliser  # an AffectNet whose normalise() we reuse (buffers only)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, len(LABELS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normaliser.normalise(x))


def ema(probs: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(probs)
    acc = probs[0]
    for t, p in enumerate(probs):
        acc = alpha * p + (1 - alpha) * acc
        out[t] = acc
    return out


class OneEuro:
    """One-Euro filter on a vector signal sampled at ``rate`` Hz."""

    def __init__(self, rate: float, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0):
        self.rate, self.min_cutoff, self.beta, self.d_cutoff = rate, min_cutoff, beta, d_cutoff
        self.x = None
        self.dx = None

    @staticmethod
    def _alpha(rate: float, cutoff: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * rate)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self.x) * self.rate
        a_d = self._alpha(self.rate, self.d_cutoff)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        a = 1.0 / (1.0 + self.rate / (2 * math.pi * cutoff))
        self.x = a * x + (1 - a) * self.x
        return self.x.copy()


def one_euro(probs: np.ndarray, rate: float, min_cutoff: float = 0.5, beta: float = 0.5) -> np.ndarray:
    f = OneEuro(rate, min_cutoff, beta)
    out = np.stack([f(p) for p in probs])
    out = np.clip(out, 0, None)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-9)
