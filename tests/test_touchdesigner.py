"""touchdesigner/: the setup script against a TouchDesigner stand-in, and the callbacks fed with real
messages from a running bridge (OutputHub: WebSocket server + OSC sender on free ports).

TouchDesigner itself cannot run here; tests/td_stub.py imitates the API the scripts use and rejects
parameter names that TouchDesigner's operator reference does not list.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import socket
import sys
from pathlib import Path

import pytest
from pythonosc.osc_packet import OscPacket
from websockets.sync.client import connect as ws_connect

ROOT = Path(__file__).resolve().parent.parent
TD = ROOT / "touchdesigner"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import td_stub  # noqa: E402

from bridge import __version__, clock  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.frames import AffectState  # noqa: E402
from bridge.labels import LABELS  # noqa: E402
from bridge.output import schema  # noqa: E402
from bridge.output.hub import OutputHub  # noqa: E402

SETUP = TD / "setup_bridge.py"


# ----------------------------------------------------------------------------- helpers
def run_setup(root=None, *, file=True, project_folder="/nonexistent", me=None, **overrides):
    """Execute setup_bridge.py the way TouchDesigner's Textport would; returns (root, namespace)."""
    root = root if root is not None else td_stub.make_root()
    ns = td_stub.namespace(root, project_folder=project_folder, me=me)
    if file:
        ns["__file__"] = str(SETUP)
    code = SETUP.read_text(encoding="utf-8")
    for name, value in overrides.items():  # edit the settings block like an artist would
        code, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", code, count=1, flags=re.M)
        assert n == 1, name
    exec(compile(code, str(SETUP), "exec"), ns)
    return root, ns


def setup_module_ns():
    """setup_bridge.py's definitions without running it."""
    ns = td_stub.namespace(td_stub.make_root())
    ns["EMOTION_BRIDGE_NO_RUN"] = True
    exec(compile(SETUP.read_text(encoding="utf-8"), str(SETUP), "exec"), ns)
    return ns


def load_callbacks(dat_text: str, me) -> dict:
    """A callbacks DAT's text as TouchDesigner runs it: a module with op()/me available."""
    root = me
    while root.parent() is not None:
        root = root.parent()
    ns = {"op": root.op, "me": me, "__name__": me.name}
    exec(compile(dat_text, me.path, "exec"), ns)
    return ns


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EXPR_REF = re.compile(r"op\('([^']+)'\)\['([^']+)'\]")


class FakeCHOP:
    def __init__(self, values: dict[str, float]):
        self.values = values

    def __getitem__(self, name):
        return self.values.get(name)  # TouchDesigner returns None for a missing channel


def eval_expr(expr: str, chops: dict[str, FakeCHOP]):
    return eval(expr, {"op": lambda name: chops[name], "max": max, "min": min})


# ----------------------------------------------------------------------------- single source
def test_wire_format_copies_match_the_bridge():
    ns = setup_module_ns()
    assert tuple(ns["LABELS"]) == LABELS
    assert list(ns["NUMERIC_ADDRESSES"]) == [f.address for f in schema.OSC_FIELDS if f.type != "s"]
    strings = {f.address for f in schema.OSC_FIELDS if f.type == "s"} | {schema.OSC_EVENT.address,
                                                                          schema.OSC_HEALTH.address}
    assert set(ns["STRING_ADDRESSES"]) == strings
    ws_cb = import_file(TD / "websocket_callbacks.py")
    osc_cb = import_file(TD / "oscin_callbacks.py")
    assert ws_cb.EXPECTED_SCHEMA == schema.SCHEMA_VERSION
    # several visitors: the per-slot and crowd numbers are the schema's
    person = [f.address.replace("/person/<slot>/", "") for f in schema.PERSON_OSC_FIELDS if f.type != "s"]
    crowd = [f.address.replace("/crowd/", "") for f in schema.CROWD_OSC_FIELDS if f.type != "s"]
    assert list(ns["PERSON_FIELDS"]) == person and list(ns["CROWD_FIELDS"]) == crowd
    strings = [f.address for f in (*schema.PERSON_OSC_FIELDS, *schema.CROWD_OSC_FIELDS) if f.type == "s"]
    for a in strings + [f.address for f in schema.PERSON_EVENT_OSC if f.type == "s"]:
        assert not td_stub.scope_match(ns["OSC_CHOP_SCOPE"], a.replace("<slot>", "2")), a
    assert osc_cb.CHANGED == schema.OSC_EVENT.address
    assert osc_cb.LABEL_NAME == "/emotion/label_name"
    assert osc_cb.LABEL_NAME in [f.address for f in schema.OSC_FIELDS]


def test_readme_schema_block_is_generated_from_schema():
    gen = import_file(TD / "gen_docs.py")
    text = (TD / "README.md").read_text(encoding="utf-8")
    assert gen.schema_block(text) == schema.markdown_tables()
    assert gen.render_td_readme(text) == text
    assert gen.main(["--check"]) == 0
    with pytest.raises(ValueError):
        gen.schema_block("no markers here")


def test_readme_names_every_channel_and_command():
    text = (TD / "README.md").read_text(encoding="utf-8")
    ns = setup_module_ns()
    for ch in ns["CHANNELS"]:
        assert f"`{ch}`" in text, ch
    for address in ("/bridge/cmd/reset", "/bridge/cmd/mute_face", "/bridge/cmd/mute_voice", "/bridge/cmd/rate",
                    "/bridge/cmd/record_start", "/bridge/cmd/record_stop", "/bridge/cmd/status"):
        assert address in text
    for cmd in ('{"cmd":"reset"}', '{"cmd":"mute","target":"face","on":true}', '{"cmd":"rate","hz":15}',
                '{"cmd":"record_start","path":"show.jsonl"}', '{"cmd":"record_stop"}', '{"cmd":"status"}'):
        assert cmd in text
    assert "cannot run on the CI machines" in text


# ----------------------------------------------------------------------------- the network
EXPECTED_OPS = {
    "osc_in": "oscinCHOP", "rename": "renameCHOP", "raw": "nullCHOP", "smooth": "lagCHOP", "emotion": "nullCHOP",
    "state": "tableDAT", "events": "tableDAT", "health": "tableDAT", "osc_callbacks": "textDAT",
    "osc_events": "oscinDAT", "ws_callbacks": "textDAT", "ws": "websocketDAT", "cmd_out": "oscoutDAT",
    "circle": "circleTOP", "tint": "constantTOP", "colour": "multiplyTOP", "label_text": "textTOP",
    "over": "overTOP", "out": "nullTOP", "info": "textDAT",
    # several visitors: one blob per slot (PEOPLE_SLOTS = 4), laid over each other into `people`
    **{f"blob{k}": "circleTOP" for k in range(4)}, **{f"blob{k}_tint": "constantTOP" for k in range(4)},
    **{f"blob{k}_colour": "multiplyTOP" for k in range(4)}, **{f"people_over{k}": "overTOP" for k in (1, 2, 3)},
    "people": "nullTOP",
}
EXPECTED_WIRES = {
    "rename": ["osc_in"], "raw": ["rename"], "smooth": ["raw"], "emotion": ["smooth"],
    "colour": ["circle", "tint"], "over": ["label_text", "colour"], "out": ["over"],
    **{f"blob{k}_colour": [f"blob{k}", f"blob{k}_tint"] for k in range(4)},
    "people_over1": ["blob1_colour", "blob0_colour"], "people_over2": ["blob2_colour", "people_over1"],
    "people_over3": ["blob3_colour", "people_over2"], "people": ["people_over3"],
}


def test_setup_builds_the_network(capsys):
    root, _ = run_setup()
    comp = root.op("/project1/emotion_bridge")
    assert comp is not None and comp.OPType == "baseCOMP"
    assert {c.name: c.OPType for c in comp.children} == EXPECTED_OPS
    for name, sources in EXPECTED_WIRES.items():
        assert [o.name for o in comp.op(name).inputs] == sources, name

    osc_in = comp.op("osc_in")
    assert osc_in.par.port.val == 7000 and osc_in.par.active.val is True
    osc_events = comp.op("osc_events")
    assert osc_events.par.port.val == 7000 and osc_events.par.splitbundle.val is True
    assert comp.op(osc_events.par.callbacks.val) is comp.op("osc_callbacks")
    ws = comp.op("ws")
    assert (ws.par.netaddress.val, ws.par.port.val, ws.par.active.val) == ("127.0.0.1", 9980, True)
    assert comp.op(ws.par.callbacks.val) is comp.op("ws_callbacks")
    cmd = comp.op("cmd_out")
    assert (cmd.par.address.val, cmd.par.port.val) == ("127.0.0.1", 7001)

    # the callback DATs hold the files' text (single source)
    assert comp.op("ws_callbacks").text == (TD / "websocket_callbacks.py").read_text(encoding="utf-8")
    assert comp.op("osc_callbacks").text == (TD / "oscin_callbacks.py").read_text(encoding="utf-8")
    assert comp.op("state").as_dict() == {"connected": "0"}
    assert "built /project1/emotion_bridge" in capsys.readouterr().out

    # nodes are laid out, not stacked on one spot
    spots = {(c.nodeX, c.nodeY) for c in comp.children}
    assert len(spots) == len(comp.children)


def test_only_expected_assumptions_are_used():
    """Every parameter the script touches is in the operator reference, except the ones the README lists
    under 'Assumed' (tuple components named by TouchDesigner's convention)."""
    root, _ = run_setup()
    comp = root.op("/project1/emotion_bridge")
    assumed = set()
    for o in comp.children:
        for name in o.par.touched():
            if name not in td_stub.DOCUMENTED[o.OPType]:
                assumed.add(f"{o.OPType}.{name}")
    assert assumed == {"lagCHOP.lag1", "lagCHOP.lag2"}
    readme = (TD / "README.md").read_text(encoding="utf-8")
    assert "`lag1`/`lag2`" in readme and "radiusunit = 'fraction'" in readme


def test_stub_rejects_unknown_parameter_names():
    root = td_stub.make_root()
    chop = root.op("/project1").create(td_stub.OP_TYPES["oscinCHOP"], "x")
    with pytest.raises(AttributeError):
        chop.par.prot = 7000  # typo of `port`
    assert chop.inputConnectors == []  # a generator: no inputs
    with pytest.raises(ValueError):  # a CHOP can't be wired into a TOP
        root.op("/project1").create(td_stub.OP_TYPES["nullTOP"], "t").inputConnectors[0].connect(chop)
    with pytest.raises(ValueError):  # names are unique inside a COMP
        root.op("/project1").create(td_stub.OP_TYPES["oscinCHOP"], "x")


@pytest.mark.parametrize("style", ["/emotion/valence", "emotion/valence", "emotion_valence"])
def test_rename_gives_readable_names_whatever_the_osc_in_naming(style):
    ns = setup_module_ns()
    frm, to = ns["rename_patterns"]()

    def name_of(address):
        if style.startswith("/"):
            return address
        if "/" in style:
            return address.lstrip("/")
        return address.lstrip("/").replace("/", "_")

    addresses = list(ns["NUMERIC_ADDRESSES"]) + list(ns["people_addresses"]())
    incoming = [name_of(a) for a in addresses] + [name_of("/face/blendshape/jawOpen")]
    out = td_stub.rename(incoming, frm, to)
    assert out[:-1] == list(ns["CHANNELS"]) + list(ns["PEOPLE_CHANNELS"])
    assert "p0_valence" in out and "p3_prob_happy" in out and "crowd_count" in out and "crowd_prob_sad" in out
    assert out[-1] == incoming[-1]  # blendshapes pass through untouched
    assert len(set(out)) == len(out)
    # the OSC In CHOP takes the numbers and leaves the strings to the OSC In DAT
    for a in ns["NUMERIC_ADDRESSES"]:
        assert td_stub.scope_match(ns["OSC_CHOP_SCOPE"], name_of(a)), a
        assert not td_stub.scope_match(ns["OSC_DAT_SCOPE"], a)
    for a in ns["STRING_ADDRESSES"]:
        assert not td_stub.scope_match(ns["OSC_CHOP_SCOPE"], name_of(a)), a
    assert td_stub.scope_match(ns["OSC_DAT_SCOPE"], "/emotion/changed")
    assert td_stub.scope_match(ns["OSC_DAT_SCOPE"], "/emotion/label_name")
    assert not td_stub.scope_match(ns["OSC_DAT_SCOPE"], "/bridge/health")


def test_smoothing_scope_and_expressions_reference_existing_channels():
    root, ns = run_setup()
    comp = root.op("/project1/emotion_bridge")
    channels = set(ns["CHANNELS"])
    smoothed = {c for c in channels if td_stub.scope_match(comp.op("smooth").par.scope.val, c)}
    assert smoothed == {"valence", "arousal", "confidence", *(f"prob_{n}" for n in LABELS)}
    channels |= set(ns["PEOPLE_CHANNELS"])

    exprs = {(o.name, p.name): p.expr for o in comp.children for p in o.par.touched().values()
             if p.mode == td_stub.ParMode.EXPRESSION}
    assert set(exprs) == set(ns["EXPRESSIONS"])
    for (owner, par), expr in exprs.items():
        refs = EXPR_REF.findall(expr)
        assert refs, expr
        for op_name, chan in refs:
            target = comp.op(op_name)
            assert target is not None and target.isCHOP, (owner, par, op_name)
            assert chan in channels, (owner, par, chan)
        compile(expr, f"{owner}.{par}", "eval")

    # before the first packet the channels don't exist: the expressions still evaluate
    empty = {"emotion": FakeCHOP({})}
    for expr in exprs.values():
        assert math.isfinite(eval_expr(expr, empty))
    # colour follows valence, size follows arousal, everything stays in range
    for v in (-1.0, -0.3, 0.0, 0.4, 1.0):
        for a in (-1.0, 0.0, 1.0):
            for c in (0.0, 0.5, 1.0):
                chop = {"emotion": FakeCHOP({"valence": v, "arousal": a, "confidence": c})}
                r, g, b = (eval_expr(exprs[("tint", k)], chop) for k in ("colorr", "colorg", "colorb"))
                assert all(0.0 <= x <= 1.0 for x in (r, g, b))
                radius = eval_expr(exprs[("circle", "radiusx")], chop)
                assert 0.05 <= radius <= 0.45
    red = {"emotion": FakeCHOP({"valence": -1.0, "arousal": -1.0, "confidence": 1.0})}
    green = {"emotion": FakeCHOP({"valence": 1.0, "arousal": 1.0, "confidence": 1.0})}
    assert eval_expr(exprs[("tint", "colorr")], red) > eval_expr(exprs[("tint", "colorg")], red)
    assert eval_expr(exprs[("tint", "colorg")], green) > eval_expr(exprs[("tint", "colorr")], green)
    assert eval_expr(exprs[("circle", "radiusx")], green) > eval_expr(exprs[("circle", "radiusx")], red)
    # one blob per person: gone while the slot is empty, in its own place and colour, up with valence
    absent = {"emotion": FakeCHOP({"p1_present": 0.0, "p1_arousal": 1.0})}
    here = {"emotion": FakeCHOP({"p1_present": 1.0, "p1_arousal": 0.5, "p1_valence": 0.8, "p1_confidence": 1.0})}
    assert eval_expr(exprs[("blob1", "radiusx")], absent) == 0.0
    assert 0.03 < eval_expr(exprs[("blob1", "radiusx")], here) < 0.15
    assert eval_expr(exprs[("blob1", "centery")], here) > 0
    xs = [comp.op(f"blob{k}").par.centerx.val for k in range(4)]
    assert xs == sorted(xs) and all(-0.5 < x < 0.5 for x in xs)
    tints = {tuple(round(eval_expr(exprs[(f"blob{k}_tint", c)], {"emotion": FakeCHOP({f"p{k}_confidence": 1.0})}), 3)
                   for c in ("colorr", "colorg", "colorb")) for k in range(4)}
    assert len(tints) == 4


def test_rerun_replaces_the_comp_and_keeps_the_rest(capsys):
    root, _ = run_setup()
    project = root.op("/project1")
    mine = project.create(td_stub.OP_TYPES["nullCHOP"], "my_own_null")
    first = {c.name: {k: (p.val, p.expr) for k, p in c.par.touched().items()}
             for c in project.op("emotion_bridge").children}
    old = project.op("emotion_bridge")
    run_setup(root)
    assert not old.valid
    assert project.op("my_own_null") is mine
    assert [c.name for c in project.children].count("emotion_bridge") == 1
    second = {c.name: {k: (p.val, p.expr) for k, p in c.par.touched().items()}
              for c in project.op("emotion_bridge").children}
    assert first == second


def test_settings_at_the_top_are_used():
    root, _ = run_setup(OSC_PORT=7010, OSC_EVENTS_PORT=7012, WS_HOST="192.168.1.20", WS_PORT=9990,
                        COMP_NAME="emo", PARENT_PATH="/project1")
    comp = root.op("/project1/emo")
    assert comp.op("osc_in").par.port.val == 7010
    assert comp.op("osc_events").par.port.val == 7012
    assert (comp.op("ws").par.netaddress.val, comp.op("ws").par.port.val) == ("192.168.1.20", 9990)
    assert "7010" in comp.op("info").text


def test_run_from_a_text_dat_inside_the_comp_is_refused():
    root, _ = run_setup()
    inside = root.op("/project1/emotion_bridge/info")
    with pytest.raises(RuntimeError, match="inside"):
        run_setup(root, me=inside)
    assert root.op("/project1/emotion_bridge/info") is inside  # nothing was destroyed


def test_text_dat_run_finds_callbacks_via_its_file_parameter():
    root = td_stub.make_root()
    runner = root.op("/project1").create(td_stub.OP_TYPES["textDAT"], "setup")
    runner.par.file = str(SETUP)  # a Text DAT whose File parameter points at setup_bridge.py
    run_setup(root, file=False, me=runner)
    text = root.op("/project1/emotion_bridge/ws_callbacks").text
    assert text == (TD / "websocket_callbacks.py").read_text(encoding="utf-8")


def test_missing_callback_files_are_reported_clearly(capsys):
    root, _ = run_setup(file=False)  # exec(open(p).read()) without __file__, no TD_DIR, unknown project
    out = capsys.readouterr().out
    assert "could not find websocket_callbacks.py" in out and "TD_DIR" in out
    comp = root.op("/project1/emotion_bridge")
    assert "was not found" in comp.op("ws_callbacks").text
    assert comp.op("osc_in").par.port.val == 7000  # the rest of the network is still built
    # found through the project folder
    root, _ = run_setup(file=False, project_folder=str(ROOT))
    assert "def onReceiveText" in root.op("/project1/emotion_bridge/ws_callbacks").text


# ----------------------------------------------------------------------------- callbacks, real messages
def _state(seq: int, label: str, valence: float, arousal: float, face=True, voice=False) -> AffectState:
    t = clock.now() - 0.02
    probs = {n: 0.02 for n in LABELS}
    probs[label] = 1.0 - 0.02 * (len(LABELS) - 1)
    return AffectState(seq=seq, t_capture=t, t_capture_wall=clock.to_wall(t), valence=valence, arousal=arousal,
                       probs=probs, label=label, confidence=0.8, face_present=face, voice_active=voice,
                       face_age_ms=12.0, voice_age_ms=None, loudness_db=-30.5, pitch_hz=180.0,
                       head_pose=(5.0, -2.0, 1.0), face_size=0.3)


@pytest.fixture
def live_bridge():
    """A real OutputHub (WebSocket on a free port, OSC to a local UDP socket), a WebSocket client connected to
    it, and a few published states (the second one a label change)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(3.0)
    cfg = load_config(overrides={"websocket.port": 0, "osc.targets": [f"127.0.0.1:{udp.getsockname()[1]}"],
                                 "monitor.enabled": False})
    hub = OutputHub(cfg)
    hub.start()
    try:
        with ws_connect(f"ws://127.0.0.1:{hub.ws.port}/", open_timeout=5) as client:
            texts = [client.recv(timeout=5)]  # hello
            states = [_state(1, "neutral", 0.05, -0.1), _state(2, "happy", 0.7, 0.4, voice=True)]
            hub.publish(states[0])
            hub.publish(states[1], changed="happy", previous="neutral")
            hub.publish_health({"sources": {"camera": {"status": "ok", "detail": "640x480"},
                                            "microphone": {"status": "reconnecting", "detail": "device lost"}},
                                "counters": {"frames": 42}})
            for _ in range(4):  # state, state, event, health
                texts.append(client.recv(timeout=5))
        datagrams = []
        while True:
            data = udp.recv(65536)
            datagrams.append(data)
            if b"/bridge/health" in data:
                break
        yield {"texts": texts, "datagrams": datagrams, "states": states}
    finally:
        hub.stop()
        udp.close()


def _network():
    root, _ = run_setup()
    return root.op("/project1/emotion_bridge")


def test_websocket_callbacks_fill_the_tables_from_real_messages(live_bridge):
    comp = _network()
    ws = comp.op("ws")
    cb = load_callbacks(comp.op("ws_callbacks").text, comp.op("ws_callbacks"))
    types = [json.loads(t)["type"] for t in live_bridge["texts"]]
    assert types == ["hello", "state", "state", "event", "health"]

    cb["onConnect"](ws)
    for i, text in enumerate(live_bridge["texts"]):
        cb["onReceiveText"](ws, i, text)

    state = comp.op("state").as_dict()
    last = json.loads(live_bridge["texts"][2])
    assert state["connected"] == "1"
    assert state["bridge_version"] == __version__
    assert state["schema_version"] == str(schema.SCHEMA_VERSION)
    assert state["labels"] == " ".join(LABELS)
    assert "schema_warning" not in state
    assert state["type"] == "state" and state["label"] == "happy"
    assert int(state["seq"]) == last["seq"] == 2
    for key in ("valence", "arousal", "confidence", "fps", "latency_ms", "t_emit"):
        assert float(state[key]) == pytest.approx(last[key], abs=1e-6), key
    probs = {n: float(state[f"prob_{n}"]) for n in LABELS}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert max(probs, key=probs.get) == "happy"
    assert (state["face_present"], state["voice_active"]) == ("1", "1")
    assert float(state["voice_loudness_db"]) == pytest.approx(-30.5)
    assert state["voice_age_ms"] == ""  # null in JSON
    assert 0 <= float(state["delay_ms"]) < 5000
    # every JSON state field has a row (nested ones flattened)
    for field, typ, _ in schema.JSON_STATE_FIELDS:
        if typ == "object":
            assert any(k.startswith(("prob_" if field == "probs" else field + "_")) for k in state), field
        else:
            assert field in state, field

    events = comp.op("events")
    assert events.numRows == 2 and events[1, "label"].val == "happy" and events[1, "previous"].val == "neutral"
    assert events[1, "source"].val == "ws"
    assert comp.op("label_text").par.text.val == "happy"

    health = comp.op("health").as_dict()
    assert health["camera"] == "ok" and health["microphone"] == "reconnecting"
    assert health["microphone_detail"] == "device lost" and health["counter_frames"] == "42"

    cb["onReceivePing"](ws, b"\x01\x02")
    assert ws.sent_pongs == [b"\x01\x02"]
    cb["onReceiveBinary"](ws, live_bridge["texts"][1].encode())
    assert comp.op("state").as_dict()["seq"] == "1"
    cb["onReceivePong"](ws, b"")
    cb["onMonitorMessage"](ws, "connecting")
    cb["onReceiveText"](ws, 0, json.dumps({"type": "ack", "cmd": "status", "ok": True, "detail": "fine"}))
    assert json.loads(comp.op("state").as_dict()["last_ack"])["cmd"] == "status"
    cb["onDisconnect"](ws)
    assert comp.op("state").as_dict()["connected"] == "0"


def test_websocket_callbacks_never_raise_on_bad_input():
    comp = _network()
    ws = comp.op("ws")
    cb = load_callbacks(comp.op("ws_callbacks").text, comp.op("ws_callbacks"))
    for bad in ("{nope", "[1, 2]", '"text"', json.dumps({"type": "future"}), "", "null",
                json.dumps({"type": "state", "probs": "not a dict", "t_emit": "x"}),
                json.dumps({"type": "health", "sources": [1, 2]}), json.dumps({"type": "hello", "v": 99})):
        cb["onReceiveText"](ws, 0, bad)
    cb["onReceiveBinary"](ws, b"\xff\xfe")
    state = comp.op("state").as_dict()
    assert int(state["bad_messages"]) == 7
    assert "schema 99" in state["schema_warning"]
    # with the tables deleted the callbacks still don't raise
    for name in ("state", "events", "health", "label_text"):
        comp.op(name).destroy()
    cb["onReceiveText"](ws, 0, json.dumps({"type": "event", "label": "sad", "previous": "calm", "seq": 3}))
    cb["onReceiveText"](ws, 0, "{nope")
    cb["onConnect"](ws)


def test_osc_callbacks_react_to_real_label_changes(live_bridge):
    comp = _network()
    osc_dat = comp.op("osc_events")
    cb = load_callbacks(comp.op("osc_callbacks").text, comp.op("osc_callbacks"))
    ns = setup_module_ns()

    seen = []
    values: dict[str, float] = {}
    row = 0
    for data in live_bridge["datagrams"]:
        for timed in OscPacket(data).messages:
            address, args = timed.message.address, list(timed.message.params)
            seen.append(address)
            # what the OSC In CHOP would make of it (numbers, renamed)
            if all(isinstance(a, (int, float)) for a in args):
                assert td_stub.scope_match(ns["OSC_CHOP_SCOPE"], address.lstrip("/"))
                frm, to = ns["rename_patterns"]()
                values[td_stub.rename([address.lstrip("/")], frm, to)[0]] = float(args[0])
            else:
                assert not td_stub.scope_match(ns["OSC_CHOP_SCOPE"], address.lstrip("/"))
            # what the OSC In DAT passes on (its address scope)
            if td_stub.scope_match(ns["OSC_DAT_SCOPE"], address):
                row += 1
                cb["onReceiveOSC"](osc_dat, row, f"{address} {' '.join(map(str, args))}", data, 0.0,
                                   address, args, None)
    assert seen.count("/emotion/changed") == 1
    assert set(values) == set(ns["CHANNELS"])
    assert values["valence"] == pytest.approx(0.7) and values["label"] == LABELS.index("happy")

    events = comp.op("events")
    assert events.numRows == 2 and events[1, "label"].val == "happy" and events[1, "source"].val == "osc"
    assert comp.op("label_text").par.text.val == "happy"
    assert comp.op("state").as_dict()["label_name"] == "happy"

    # the built visual, driven by the real values: pleasant -> green over red, bigger with arousal
    exprs = ns["EXPRESSIONS"]
    chop = {"emotion": FakeCHOP(values)}
    assert eval_expr(exprs[("tint", "colorg")], chop) > eval_expr(exprs[("tint", "colorr")], chop)

    # never raises, ignores what isn't ours
    cb["onReceiveOSC"](osc_dat, 0, "", b"", 0.0, "/emotion/changed", [], None)
    cb["onReceiveOSC"](osc_dat, 0, "", b"", 0.0, "/something/else", [1.0], None)
    cb["onReceiveOSC"](osc_dat, 0, "", b"", 0.0, "/emotion/changed", None, None)
    comp.op("events").destroy()
    cb["onReceiveOSC"](osc_dat, 0, "", b"", 0.0, "/emotion/changed", ["sad"], None)
    assert comp.op("label_text").par.text.val == "sad"


def test_osc_label_name_only_touches_the_table_when_it_changes():
    comp = _network()
    cb = load_callbacks(comp.op("osc_callbacks").text, comp.op("osc_callbacks"))
    dat = comp.op("osc_events")
    writes = []
    table = comp.op("state")
    original = table.__class__.__setitem__

    class Spy(type(table)):
        def __setitem__(self, key, value):
            writes.append((key, value))
            original(self, key, value)

    table.__class__ = Spy
    for _ in range(30):
        cb["onReceiveOSC"](dat, 0, "", b"", 0.0, "/emotion/label_name", ["calm"], None)
    cb["onReceiveOSC"](dat, 0, "", b"", 0.0, "/emotion/label_name", ["sad"], None)
    assert table.as_dict()["label_name"] == "sad"
    assert len(writes) == 1  # first value appended as a row, one cell write for the change
