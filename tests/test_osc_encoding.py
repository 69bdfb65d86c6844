"""The OSC bundle is encoded directly, byte for byte what python-osc's builders make (and what python-osc parses)."""

from __future__ import annotations

import random

from pythonosc.osc_bundle import OscBundle

from bridge.features.face import BLENDSHAPE_NAMES
from bridge.frames import AffectState
from bridge.labels import LABELS
from bridge.output.osc import encode_state, encode_state_reference


def _state(rng: random.Random, k: int) -> AffectState:
    return AffectState(seq=k, t_capture=1.0, t_capture_wall=1e9, valence=rng.uniform(-1, 1),
                       arousal=rng.uniform(-1, 1), probs={n: rng.random() for n in LABELS}, label=rng.choice(LABELS),
                       confidence=rng.random(), face_present=rng.random() < 0.5, voice_active=rng.random() < 0.5,
                       loudness_db=rng.uniform(-100, 0), pitch_hz=rng.uniform(0, 400))


def test_same_bytes_as_python_osc():
    rng = random.Random(0)
    for k in range(200):
        st = _state(rng, k)
        bs = {n: rng.random() for n in BLENDSHAPE_NAMES} if k % 3 == 0 else None
        changed = rng.choice(LABELS) if k % 4 == 0 else None
        fps, lat = rng.choice([30.0, 29.97, float("inf"), float("nan")]), rng.uniform(0, 50)
        got = encode_state(st, fps, lat, bs, changed)
        assert got == encode_state_reference(st, fps, lat, bs, changed)
        msgs = list(OscBundle(got))
        assert len(msgs) == 19 + (len(BLENDSHAPE_NAMES) if bs else 0) + (changed is not None)
