"""The OSC bundle is encoded directly (one encoder, bridge.output.osc); here it is checked byte for byte against
python-osc's own builders, composed from the schema independently of the encoder, and parsed back by python-osc."""

from __future__ import annotations

import dataclasses
import random

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.config import load_config
from bridge.features.face import BLENDSHAPE_NAMES
from bridge.frames import AffectState
from bridge.labels import LABELS
from bridge.output.osc import encode_message, encode_state, encode_values
from bridge.output.schema import (OSC_BLENDSHAPE_PREFIX, OSC_EVENT, osc_values, people_osc_values,
                                  person_event_osc_values, sensor_osc_values)
from bridge.people import GroupView, PersonEvent


def _msg(address: str, value: object):
    """python-osc's message for one value (the types the bridge sends: int/bool as i, float as f, text as s)."""
    b = OscMessageBuilder(address=address)
    if isinstance(value, (bool, int)):
        b.add_arg(int(value), "i")
    elif isinstance(value, float):
        b.add_arg(value, "f")
    else:
        b.add_arg(str(value), "s")
    return b.build()


def reference_bundle(state, fps, lat, blendshapes=None, changed=None) -> bytes:
    """What the bridge sends, built with python-osc from the schema's parts (the bundle's documented order)."""
    bundle = OscBundleBuilder(IMMEDIATELY)
    items = list(osc_values(state, fps, lat))
    items += [(OSC_BLENDSHAPE_PREFIX + n, float(v)) for n, v in (blendshapes or {}).items()]
    items += sensor_osc_values(state.sensors) + people_osc_values(state) + person_event_osc_values(state)
    if changed is not None:
        items.append((OSC_EVENT.address, changed))
    for address, value in items:
        bundle.add_content(_msg(address, value))
    return bundle.build().dgram


def _state(rng: random.Random, k: int) -> AffectState:
    return AffectState(seq=k, t_capture=1.0, t_capture_wall=1e9, valence=rng.uniform(-1, 1),
                       arousal=rng.uniform(-1, 1), probs={n: rng.random() for n in LABELS}, label=rng.choice(LABELS),
                       confidence=rng.random(), face_present=rng.random() < 0.5, voice_active=rng.random() < 0.5,
                       loudness_db=rng.uniform(-100, 0), pitch_hz=rng.uniform(0, 400))


def test_same_bytes_as_python_osc():
    rng = random.Random(0)
    group = GroupView(load_config(overrides={"people.num_faces": 4}))
    for k in range(200):
        st = _state(rng, k)
        bs = {n: rng.random() for n in BLENDSHAPE_NAMES} if k % 3 == 0 else None
        changed = rng.choice(LABELS) if k % 4 == 0 else None
        if k % 5 == 0:  # body sensors, one of them stale
            st.sensors = {"heart": {"z": rng.uniform(-3, 3), "fresh": True}, "gsr": {"z": 1.0, "fresh": False}}
        if k % 2 == 0:  # several visitors: per-slot values, the crowd, person events
            members = [(10 + j, j, dataclasses.replace(_state(rng, k)), rng.random() < 0.3)
                       for j in range(rng.randint(0, 4))]
            ev = [PersonEvent("label_changed", 10, 0, rng.choice(LABELS), rng.choice(LABELS))] if members else []
            group.attach(st, float(k), members, ev)
        fps, lat = rng.choice([30.0, 29.97, float("inf"), float("nan")]), rng.uniform(0, 50)
        got = encode_state(st, fps, lat, bs, changed)
        assert got == reference_bundle(st, fps, lat, bs, changed)
        msgs = list(OscBundle(got))
        n_people = len(people_osc_values(st)) + len(person_event_osc_values(st))
        assert len(msgs) == (19 + (len(BLENDSHAPE_NAMES) if bs else 0) + (changed is not None)
                             + len(sensor_osc_values(st.sensors)) + n_people)
        if k % 2 == 0 and st.people:
            assert n_people > 0


def test_values_and_messages_match_python_osc():
    """Every value type and string length around the 4-byte padding, non-ASCII text, extreme numbers."""
    values = [("/a", 0), ("/ab", -1), ("/abc", 2 ** 31 - 1), ("/abcd", True), ("/x/y", False), ("/f", 1e-38),
              ("/f2", -3.4e38), ("/s", ""), ("/s1", "a"), ("/s3", "abc"), ("/s4", "abcd"), ("/u", "grüße 😀"),
              ("/inf", float("inf")), ("/person/3/prob/happy", 0.25)]
    ref = OscBundleBuilder(IMMEDIATELY)
    for address, value in values:
        assert encode_message(address, value) == _msg(address, value).dgram
        ref.add_content(_msg(address, value))
    assert encode_values(values) == ref.build().dgram
    assert encode_values([]) == OscBundleBuilder(IMMEDIATELY).build().dgram
    assert OscMessage(encode_message("/bridge/health", '{"ok": true}')).params == ['{"ok": true}']
