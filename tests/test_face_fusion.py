"""The late fusion with the face path while the visitor is silent (``model.face_fusion``, bridge.engine.FaceFusion):
its weight, its ramps, and on a real face with real speech through the whole bridge: the model alone while the
visitor speaks, the fused reading while they are silent."""

from __future__ import annotations

import numpy as np
import soundfile as sf

import bridge
from bridge.config import load_config
from bridge.engine import FaceFusion, TickInfo
from bridge.features.face import EXPRESSION_NAMES
from bridge.labels import LABELS, VA

HZ = 30.0
EX = np.array([0.1, 0.6, 0.05, 0.05, 0.1, 0.05, 0.05], np.float32)  # a face path reading: mostly happy


def _info(voice: bool, face: bool = True) -> TickInfo:
    return TickInfo(0.0, voice, -30.0, 0.0, 0.0, face, 0.0 if face else None, (0.0, 0.0, 0.0), 0.2, None,
                    EX if face else None)


def test_weight_ramps_in_while_silent_out_while_speaking_and_resets():
    fusion = FaceFusion(0.5)
    probs = np.full(len(LABELS), 1 / len(LABELS))
    face = np.zeros(len(LABELS))
    face[[LABELS.index(e) for e in EXPRESSION_NAMES]] = EX / EX.sum()
    fv, fa = (EX / EX.sum()) @ np.array([VA[e] for e in EXPRESSION_NAMES])
    ws, t = [], 0.0

    def run(seconds, **kw):
        nonlocal t
        out = None
        for _ in range(int(seconds * HZ)):
            t += 1 / HZ
            out = fusion(probs, 0.1, -0.2, _info(**kw), t)
            ws.append(fusion.w)
        return out

    p, v, a = run(1.0, voice=False)  # a silent face: half the face path's reading after 0.5 s
    assert np.diff(ws).max() <= 0.5 / (0.5 * HZ) + 1e-9 and ws[int(0.5 * HZ)] == 0.5
    np.testing.assert_allclose(p, 0.5 * probs + 0.5 * face, atol=1e-6)
    assert abs(v - (0.05 + 0.5 * fv)) < 1e-6 and abs(a - (-0.1 + 0.5 * fa)) < 1e-6 and abs(p.sum() - 1) < 1e-6
    n = len(ws)
    p, v, a = run(1.0, voice=True)  # speaking: the model alone, reached smoothly within 0.5 s
    assert np.diff(ws[n - 1:]).min() >= -0.5 / (0.5 * HZ) - 1e-9 and ws[-1] == 0.0
    assert p is probs and (v, a) == (0.1, -0.2)
    n = len(ws)
    run(0.9, voice=False)  # just stopped speaking: still the model alone (the voice may go on)
    assert max(ws[n:]) == 0.0
    run(0.7, voice=False)
    assert ws[-1] == 0.5
    run(0.6, voice=False, face=False)  # the face went away: nothing to fuse
    assert ws[-1] == 0.0
    run(1.0, voice=False)
    fusion.reset()
    assert fusion.w == 0.0 and fusion(probs, 0.1, -0.2, _info(voice=False), t + 1 / HZ)[0] is probs
    off = FaceFusion(0.0)
    assert off(probs, 0.1, -0.2, _info(voice=False), 1.0)[0] is probs


def test_speaking_visitor_is_the_model_alone_and_a_silent_one_is_fused(make_face_video, speech_wav, tmp_path):
    """A real face and real speech (espeak-ng, 1 s of silence either side) through ``process_files``: the state
    while the visitor speaks is the model's own, the fusion weight 0.5 or 0; in the silence before and after it
    is not."""
    y, sr = sf.read(speech_wav, dtype="float32")
    audio = tmp_path / "speech.wav"
    sf.write(audio, np.concatenate([y, np.zeros(2 * sr, np.float32)]), sr)  # 3 s of silence after the speech
    video = make_face_video("fusion", seconds=len(y) / sr + 2.0)
    runs = [bridge.process_files(video=video, audio=audio, config=load_config(None, {"model.face_fusion": w}))
            for w in (0.0, 0.5)]
    alone, fused = ([np.array([s.probs[lab] for lab in LABELS]) for s in states] for states in runs)
    voice = [s.voice_active for s in runs[0]]
    assert [s.voice_active for s in runs[1]] == voice and sum(voice) > 30
    n = len(voice)
    # speaking for the last 0.5 s (the weight has ramped out): identical states
    speaking = [k for k in range(n) if k >= 15 and all(voice[k - 15:k + 1])]
    assert len(speaking) > 30
    for k in speaking:
        np.testing.assert_array_equal(fused[k], alone[k])
    # silent for more than 1.5 s, the face in view: fused
    last_voice = max(k for k in range(n) if voice[k])
    quiet = [k for k in range(last_voice + 45, n) if runs[1][k].face_present]
    assert len(quiet) > 15
    assert all(np.abs(fused[k] - alone[k]).max() > 1e-3 for k in quiet)
