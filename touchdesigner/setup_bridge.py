"""Build the emotion-bridge network inside TouchDesigner, in one go.

Run it once inside TouchDesigner (2022 or newer, Python 3.11), either
  * Textport (Dialogs > Textport and DATs), paste, with your path:
        p = r'C:/emotion-bridge/touchdesigner/setup_bridge.py'; exec(open(p).read(), dict(globals(), __file__=p))
  * or a Text DAT: set its File parameter to this file (or paste the text), right-click > Run Script.
    (A pasted Text DAT has no file path: set TD_DIR below so the callback files can be found.)

It creates the Base COMP  PARENT_PATH/COMP_NAME  (default /project1/emotion_bridge); running it again
deletes that COMP and builds it fresh. Inside:

  osc_in      OSC In CHOP on OSC_PORT: one channel per numeric OSC address (strings scoped out)
  rename      Rename CHOP: readable channel names (valence, arousal, confidence, label, prob_happy, ...)
  raw         Null CHOP: the renamed channels, unsmoothed  -> op('emotion_bridge/raw')['label']
  smooth      Lag CHOP: smooths valence/arousal/confidence/probabilities (SMOOTHING_S seconds)
  emotion     Null CHOP: reference this one               -> op('emotion_bridge/emotion')['valence']
  osc_events  OSC In DAT (+ osc_callbacks): /emotion/changed and /emotion/label_name strings
  ws          WebSocket DAT to ws://WS_HOST:WS_PORT (+ ws_callbacks): fills the tables below
  state       Table DAT  field | value  (every field of the JSON `state` message, probabilities too)
  events      Table DAT  time | label | previous | seq | source  (one row per label change)
  health      Table DAT  field | value  (per-source status from `health` messages)
  cmd_out     OSC Out DAT to CMD_HOST:CMD_PORT for commands: op('emotion_bridge/cmd_out').sendOSC('/bridge/cmd/reset', [])
  circle/tint/colour/label_text/over/out   a small visual: colour follows valence (red = unpleasant,
              green = pleasant), size follows arousal, brightness follows confidence, text shows the label
  blob<k>/blob<k>_tint/blob<k>_colour/people_over<k>/people   several visitors: one blob per person slot
              (own colour; height = valence, size = arousal, brightness = confidence; gone while the slot is empty)
              from the channels p<k>_present, p<k>_valence, ... and crowd_count, crowd_valence, ...
  info        Text DAT explaining all of the above

Only TouchDesigner's documented Python API is used: op(), COMP.create(), .par.<name>, ParMode,
.inputConnectors[i].connect(), .nodeX/.nodeY, DAT .text.  See touchdesigner/README.md.
"""

# ------------------------------------------------------------------------------------ settings
OSC_PORT = 7000            # the bridge's osc.targets port (default 127.0.0.1:7000)
OSC_EVENTS_PORT = None     # port of the OSC In DAT; None = same as OSC_PORT (see README if TD refuses)
WS_HOST = '127.0.0.1'      # the bridge's websocket.host; use 127.0.0.1 rather than localhost
WS_PORT = 9980             # the bridge's websocket.port
CMD_HOST = '127.0.0.1'     # where the bridge listens for OSC commands (osc.control_host)
CMD_PORT = 7001            # osc.control_port
PARENT_PATH = '/project1'  # where the COMP is created
COMP_NAME = 'emotion_bridge'
TD_DIR = ''                # folder holding websocket_callbacks.py and oscin_callbacks.py; '' = find it
SMOOTHING_S = 0.15         # Lag CHOP time (seconds) for valence/arousal/confidence/probabilities
PEOPLE_SLOTS = 4           # person slots to give channels and blobs (the bridge's people.num_faces)

# ------------------------------------------------------------------------------------ wire format
# Copies of bridge.labels.LABELS and bridge.output.schema's OSC addresses (TouchDesigner cannot import the
# bridge package); tests/test_touchdesigner.py fails if they ever differ from the bridge.
import os

LABELS = ('neutral', 'calm', 'happy', 'sad', 'angry', 'fearful', 'disgust', 'surprised')
NUMERIC_ADDRESSES = (
    '/emotion/valence', '/emotion/arousal', '/emotion/confidence', '/emotion/label',
    *('/emotion/prob/' + name for name in LABELS),
    '/face/present', '/voice/active', '/voice/loudness', '/voice/pitch',
    '/bridge/fps', '/bridge/latency_ms',
)
STRING_ADDRESSES = ('/emotion/label_name', '/emotion/changed', '/bridge/health')
# several visitors: /person/<slot>/<field> for every slot, and /crowd/<field> (numbers; label_name and changed are
# strings, scoped out like the ones above)
PERSON_FIELDS = ('present', 'id', 'valence', 'arousal', 'confidence', 'label', 'speaking',
                 *('prob/' + name for name in LABELS))
CROWD_FIELDS = ('count', 'valence', 'arousal', 'confidence', 'label', *('prob/' + name for name in LABELS),
                'speaking', 'primary')
SLOT_COLOURS = ((0.30, 0.79, 0.94), (0.97, 0.15, 0.52), (1.00, 0.82, 0.40), (0.02, 0.84, 0.63),
                (0.70, 0.53, 1.00), (1.00, 0.62, 0.11), (0.56, 0.79, 0.90), (0.91, 0.44, 0.32))


def people_addresses(slots=None):
    n = PEOPLE_SLOTS if slots is None else slots
    return (tuple('/person/%d/%s' % (k, f) for k in range(n) for f in PERSON_FIELDS)
            + tuple('/crowd/' + f for f in CROWD_FIELDS))

try:  # inside TouchDesigner these names already exist; elsewhere (tests) they are injected as globals
    op  # noqa: B018
except NameError:  # pragma: no cover - only outside a TouchDesigner namespace
    from td import *  # noqa: F401,F403


def channel_name(address):
    """'/emotion/valence' -> 'valence', '/emotion/prob/happy' -> 'prob_happy', '/face/present' ->
    'face_present', '/bridge/fps' -> 'fps'."""
    parts = address.strip('/').split('/')
    if parts[0] in ('emotion', 'bridge'):
        parts = parts[1:]
    elif parts[0] == 'person' and len(parts) > 2:  # '/person/0/valence' -> 'p0_valence'
        parts = ['p' + parts[1]] + parts[2:]
    return '_'.join(parts)


CHANNELS = tuple(channel_name(a) for a in NUMERIC_ADDRESSES)
PEOPLE_CHANNELS = tuple(channel_name(a) for a in people_addresses())


def rename_patterns():
    """Rename CHOP From/To. The OSC In CHOP names a channel after its address; whether a build keeps the
    leading '/' ('/emotion/valence'), drops it ('emotion/valence') or turns '/' into '_' varies, so each
    From pattern is '*emotion?valence', which matches all three."""
    addresses = NUMERIC_ADDRESSES + people_addresses()
    frm = ' '.join('*' + a.strip('/').replace('/', '?') for a in addresses)
    return frm, ' '.join(channel_name(a) for a in addresses)


# OSC In CHOP: numbers only. The string messages go to the OSC In DAT.
OSC_CHOP_SCOPE = '* ' + ' '.join('^*' + a.rsplit('/', 1)[1] for a in STRING_ADDRESSES)
OSC_DAT_SCOPE = '*emotion/changed *emotion/label_name'
SMOOTHED = 'valence arousal confidence prob_* p*_valence p*_arousal p*_confidence crowd_valence crowd_arousal'

# Parameter expressions of the visual (plain Python, evaluated by TouchDesigner every frame).
# `(chan or 0)` keeps them valid before the first packet has created the channel.
V = "(op('emotion')['valence'] or 0)"
A = "(op('emotion')['arousal'] or 0)"
C = "(op('emotion')['confidence'] or 0)"
EXPRESSIONS = {
    ('circle', 'radiusx'): '0.12 + 0.12 * (%s + 1)' % A,
    ('circle', 'radiusy'): '0.12 + 0.12 * (%s + 1)' % A,
    ('tint', 'colorr'): 'max(0.0, min(1.0, (0.5 - 0.45 * %s) * (0.4 + 0.6 * %s)))' % (V, C),
    ('tint', 'colorg'): 'max(0.0, min(1.0, (0.45 + 0.45 * %s) * (0.4 + 0.6 * %s)))' % (V, C),
    ('tint', 'colorb'): 'max(0.0, min(1.0, (0.35 + 0.25 * %s) * (0.4 + 0.6 * %s)))' % (V, C),
}



def _blob_expressions(k):
    """One person's blob: height = valence, size = arousal, brightness = confidence, radius 0 while the slot is
    empty (present 0)."""
    def ch(name):
        return "(op('emotion')['p%d_%s'] or 0)" % (k, name)
    r = '(0.03 + 0.035 * (%s + 1)) * %s' % (ch('arousal'), ch('present'))
    bright = '(0.4 + 0.6 * %s)' % ch('confidence')
    col = SLOT_COLOURS[k % len(SLOT_COLOURS)]
    return {
        ('blob%d' % k, 'radiusx'): r,
        ('blob%d' % k, 'radiusy'): r,
        ('blob%d' % k, 'centery'): '0.3 * %s' % ch('valence'),
        ('blob%d_tint' % k, 'colorr'): 'max(0.0, min(1.0, %.2f * %s))' % (col[0], bright),
        ('blob%d_tint' % k, 'colorg'): 'max(0.0, min(1.0, %.2f * %s))' % (col[1], bright),
        ('blob%d_tint' % k, 'colorb'): 'max(0.0, min(1.0, %.2f * %s))' % (col[2], bright),
    }


for _k in range(PEOPLE_SLOTS):
    EXPRESSIONS.update(_blob_expressions(_k))

INFO_TEXT = """emotion bridge network (built by touchdesigner/setup_bridge.py; re-run it to rebuild)

Numbers (OSC, port %(osc)d):  op('%(comp)s/emotion')['valence']   smoothed, -1..1
                              op('%(comp)s/emotion')['arousal']   smoothed, -1..1
                              op('%(comp)s/raw')['label']         label index 0-7 (order below)
                              op('%(comp)s/raw')['face_present']  1/0, also voice_active, fps, latency_ms
Channels: %(channels)s
Labels (index order): %(labels)s
Several visitors (people.num_faces): op('%(comp)s/emotion')['p0_valence'], p0_present, p0_id, p0_label,
                              p0_speaking, p0_prob_<label> ... per slot; crowd_count, crowd_valence, crowd_arousal,
                              crowd_label, crowd_speaking (slot or -1); the `people` TOP: one blob per person
Label change: osc_callbacks.on_label_changed() and the `events` table; the `label_text` TOP shows it.
Everything as text (WebSocket ws://%(host)s:%(port)d): the `state`, `events` and `health` tables.
Commands: op('%(comp)s/cmd_out').sendOSC('/bridge/cmd/reset', [])       (OSC, port %(cmd)d)
          op('%(comp)s/ws').sendText('{"cmd": "status"}')                 (WebSocket)
          all commands: touchdesigner/README.md
"""


# ------------------------------------------------------------------------------------ building
def _say(*a):
    print('[emotion bridge]', *a)


def _me():
    """The Text DAT running this script (Run Script), else None (Textport's `me` is not a DAT)."""
    try:
        running = me  # noqa: F821
    except NameError:
        return None
    return running if getattr(running, 'isDAT', False) else None


def _set(o, name, value):
    setattr(o.par, name, value)


def _opt(o, name, value):
    """Set a parameter whose name or menu token could not be confirmed in the docs: warn instead of stopping."""
    try:
        setattr(o.par, name, value)
    except Exception as e:
        _say('note: could not set %s.par.%s = %r (%s); the network still works' % (o.name, name, value, e))


def _expr(o, name, expression):
    p = getattr(o.par, name)
    p.expr = expression
    p.mode = ParMode.EXPRESSION  # noqa: F405


def _place(o, col, row):
    o.nodeX = col * 200
    o.nodeY = -row * 150


def find_source_dir():
    """The folder holding the callback files: TD_DIR, this file's folder, the running Text DAT's File
    parameter, or <project folder>/touchdesigner. None if none of them has the files."""
    candidates = []
    if TD_DIR:
        candidates.append(TD_DIR)
    here = globals().get('__file__')
    if here:
        candidates.append(os.path.dirname(os.path.abspath(here)))
    running = _me()
    if running is not None:
        try:
            f = running.par.file.eval()
            if f:
                candidates.append(os.path.dirname(os.path.abspath(f)))
        except Exception:
            pass
    try:
        folder = project.folder  # noqa: F821 - TouchDesigner's project object
        candidates += [os.path.join(folder, 'touchdesigner'), folder]
    except Exception:
        pass
    for c in candidates:
        if os.path.isfile(os.path.join(c, 'websocket_callbacks.py')) and \
                os.path.isfile(os.path.join(c, 'oscin_callbacks.py')):
            return c
    return None


def callback_text(src_dir, filename):
    if src_dir is not None:
        with open(os.path.join(src_dir, filename), encoding='utf-8') as f:
            return f.read()
    return ("# emotion bridge: %s was not found, so these callbacks are empty.\n"
            "# Paste the contents of touchdesigner/%s here, or set TD_DIR at the top of\n"
            "# setup_bridge.py to the touchdesigner/ folder and run it again.\n" % (filename, filename))


def build(parent_comp, src_dir):
    old = parent_comp.op(COMP_NAME)
    if old is not None:
        running = _me()
        if running is not None and (running.path + '/').startswith(old.path + '/'):
            raise RuntimeError('setup_bridge.py is running from inside %s, which it is about to replace; '
                               'move the Text DAT out of it first' % old.path)
        old.destroy()
    comp = parent_comp.create(baseCOMP, COMP_NAME)  # noqa: F405

    # --- numbers over OSC
    osc_in = comp.create(oscinCHOP, 'osc_in')  # noqa: F405
    _set(osc_in, 'port', OSC_PORT)
    _set(osc_in, 'oscaddressscope', OSC_CHOP_SCOPE)
    _set(osc_in, 'active', True)
    _place(osc_in, 0, 0)

    frm, to = rename_patterns()
    rename = comp.create(renameCHOP, 'rename')  # noqa: F405
    _set(rename, 'renamefrom', frm)
    _set(rename, 'renameto', to)
    rename.inputConnectors[0].connect(osc_in)
    _place(rename, 1, 0)

    raw = comp.create(nullCHOP, 'raw')  # noqa: F405
    raw.inputConnectors[0].connect(rename)
    _place(raw, 2, 0)

    smooth = comp.create(lagCHOP, 'smooth')  # noqa: F405
    _set(smooth, 'scope', SMOOTHED)
    _opt(smooth, 'lag1', SMOOTHING_S)
    _opt(smooth, 'lag2', SMOOTHING_S)
    smooth.inputConnectors[0].connect(raw)
    _place(smooth, 3, 0)

    emotion = comp.create(nullCHOP, 'emotion')  # noqa: F405
    emotion.inputConnectors[0].connect(smooth)
    _place(emotion, 4, 0)

    # --- tables the callbacks fill
    state = comp.create(tableDAT, 'state')  # noqa: F405
    state.clear()
    state.appendRow(['field', 'value'])
    state.appendRow(['connected', 0])
    _place(state, 2, 2)
    events = comp.create(tableDAT, 'events')  # noqa: F405
    events.clear()
    events.appendRow(['time', 'label', 'previous', 'seq', 'source'])
    _place(events, 3, 2)
    health = comp.create(tableDAT, 'health')  # noqa: F405
    health.clear()
    health.appendRow(['field', 'value'])
    _place(health, 4, 2)

    # --- label strings over OSC
    osc_cb = comp.create(textDAT, 'osc_callbacks')  # noqa: F405
    osc_cb.text = callback_text(src_dir, 'oscin_callbacks.py')
    _place(osc_cb, 1, 1)
    osc_events = comp.create(oscinDAT, 'osc_events')  # noqa: F405
    _set(osc_events, 'port', OSC_PORT if OSC_EVENTS_PORT is None else OSC_EVENTS_PORT)
    _set(osc_events, 'addscope', OSC_DAT_SCOPE)
    _set(osc_events, 'splitbundle', True)
    _set(osc_events, 'callbacks', osc_cb.name)
    _set(osc_events, 'active', True)
    _place(osc_events, 0, 1)

    # --- everything as JSON over the WebSocket
    ws_cb = comp.create(textDAT, 'ws_callbacks')  # noqa: F405
    ws_cb.text = callback_text(src_dir, 'websocket_callbacks.py')
    _place(ws_cb, 1, 2)
    ws = comp.create(websocketDAT, 'ws')  # noqa: F405
    _set(ws, 'netaddress', WS_HOST)
    _set(ws, 'port', WS_PORT)
    _set(ws, 'callbacks', ws_cb.name)
    _set(ws, 'active', True)  # last: the hello message arrives with the callbacks in place
    _place(ws, 0, 2)

    # --- commands back to the bridge (OSC); the WebSocket DAT takes JSON commands too: ws.sendText(...)
    cmd_out = comp.create(oscoutDAT, 'cmd_out')  # noqa: F405
    _set(cmd_out, 'address', CMD_HOST)
    _set(cmd_out, 'port', CMD_PORT)
    _set(cmd_out, 'active', True)
    _place(cmd_out, 0, 3)

    # --- a visual that reacts at once: colour = valence, size = arousal, brightness = confidence
    circle = comp.create(circleTOP, 'circle')  # noqa: F405
    _opt(circle, 'radiusunit', 'fraction')
    _place(circle, 0, 4)
    tint = comp.create(constantTOP, 'tint')  # noqa: F405
    _place(tint, 0, 5)
    for (name, par), expression in EXPRESSIONS.items():
        if not name.startswith('blob'):  # the blobs' are set below, once they exist
            _expr(comp.op(name), par, expression)
    colour = comp.create(multiplyTOP, 'colour')  # noqa: F405
    colour.inputConnectors[0].connect(circle)
    colour.inputConnectors[1].connect(tint)
    _place(colour, 1, 4)
    label_text = comp.create(textTOP, 'label_text')  # noqa: F405
    _set(label_text, 'text', 'waiting for the bridge')
    _place(label_text, 1, 5)
    over = comp.create(overTOP, 'over')  # noqa: F405
    over.inputConnectors[0].connect(label_text)
    over.inputConnectors[1].connect(colour)
    _place(over, 2, 4)
    out = comp.create(nullTOP, 'out')  # noqa: F405
    out.inputConnectors[0].connect(over)
    _place(out, 3, 4)

    # --- several visitors: one blob per person slot, laid over each other into `people`
    below = None
    for k in range(PEOPLE_SLOTS):
        blob = comp.create(circleTOP, 'blob%d' % k)  # noqa: F405
        _opt(blob, 'radiusunit', 'fraction')
        _opt(blob, 'centerunit', 'fraction')
        _set(blob, 'centerx', round(-0.5 + (k + 0.5) / PEOPLE_SLOTS, 4))  # slots side by side
        _place(blob, 5 + k, 4)
        tint = comp.create(constantTOP, 'blob%d_tint' % k)  # noqa: F405
        _place(tint, 5 + k, 5)
        colour = comp.create(multiplyTOP, 'blob%d_colour' % k)  # noqa: F405
        colour.inputConnectors[0].connect(blob)
        colour.inputConnectors[1].connect(tint)
        _place(colour, 5 + k, 6)
        if below is None:
            below = colour
            continue
        over_k = comp.create(overTOP, 'people_over%d' % k)  # noqa: F405
        over_k.inputConnectors[0].connect(colour)
        over_k.inputConnectors[1].connect(below)
        _place(over_k, 5 + k, 7)
        below = over_k
    for k in range(PEOPLE_SLOTS):
        for (name, par), expression in _blob_expressions(k).items():
            _expr(comp.op(name), par, expression)
    if below is not None:
        people = comp.create(nullTOP, 'people')  # noqa: F405
        people.inputConnectors[0].connect(below)
        _place(people, 5 + PEOPLE_SLOTS, 7)

    info = comp.create(textDAT, 'info')  # noqa: F405
    info.text = INFO_TEXT % {'osc': OSC_PORT, 'cmd': CMD_PORT, 'comp': comp.name, 'host': WS_HOST, 'port': WS_PORT,
                             'channels': ' '.join(CHANNELS), 'labels': ' '.join(LABELS)}
    _place(info, 4, 4)
    return comp


def main():
    parent_comp = op(PARENT_PATH)
    if parent_comp is None:
        _say('no COMP at %s: set PARENT_PATH at the top of setup_bridge.py' % PARENT_PATH)
        return None
    src_dir = find_source_dir()
    if src_dir is None:
        _say('could not find websocket_callbacks.py / oscin_callbacks.py. Set TD_DIR at the top of '
             'setup_bridge.py to the touchdesigner/ folder (or run it with __file__ set, see its first '
             'lines) and run it again. Building the network with empty callbacks for now.')
    comp = build(parent_comp, src_dir)
    _say('built %s: OSC In on port %d, WebSocket ws://%s:%d. Start the bridge (emotion-bridge run) and '
         'watch %s/emotion and the %s/state table.' % (comp.path, OSC_PORT, WS_HOST, WS_PORT,
                                                       comp.path, comp.path))
    return comp


if not globals().get('EMOTION_BRIDGE_NO_RUN'):
    emotion_bridge_comp = main()
