# Emotion bridge -> TouchDesigner: callbacks for the WebSocket DAT.
#
# setup_bridge.py copies this file into the Text DAT `ws_callbacks` and points the WebSocket DAT's
# "Callbacks DAT" parameter at it. You can also paste it into any WebSocket DAT's callbacks yourself.
#
# What it does with each JSON text message from the bridge (see touchdesigner/README.md for every field):
#   hello  -> rows `connected`, `bridge_version`, `schema_version`, `labels` in the `state` Table DAT
#   state  -> one row per field in `state` (field | value): valence, arousal, confidence, label,
#             prob_<label> for all 8 labels, face_present, voice_active, fps, latency_ms, ... plus
#             `delay_ms` (t_emit -> received here, same machine clock)
#   event  -> one row appended to the `events` Table DAT (time | label | previous | seq | source) and the
#             `label_text` Text TOP shows the new label
#   health -> the `health` Table DAT (source | status, <source>_detail, counter_<name>)
#   ack    -> row `last_ack` in `state` (reply to a command you sent with sendText)
# Bad JSON or unknown messages are counted in the `bad_messages` row; nothing here ever raises.
#
# The callbacks' signatures are the ones TouchDesigner's WebSocket DAT documents (TD 2022+, Python 3.11).

import json
import time

STATE_TABLE = 'state'        # Table DAT next to the WebSocket DAT, filled with field | value rows
EVENTS_TABLE = 'events'      # Table DAT: time | label | previous | seq | source
HEALTH_TABLE = 'health'      # Table DAT: field | value
LABEL_TEXT = 'label_text'    # Text TOP whose `text` shows the current label (optional)
MAX_EVENTS = 50              # rows kept in the events table (plus its header)
EXPECTED_SCHEMA = 3          # bridge.output.schema.SCHEMA_VERSION this file was written for

_last_label = None
_errors = 0


# ---------------------------------------------------------------- helpers (no TouchDesigner-only calls)
def _find(dat, name):
    """The operator `name` next to `dat` (same COMP), else op(name); None when missing."""
    try:
        comp = dat.parent()
        found = comp.op(name) if comp is not None else None
        if found is not None:
            return found
    except Exception:
        pass
    try:
        return op(name)  # noqa: F821 - provided by TouchDesigner
    except Exception:
        return None


def _val(cell):
    """A Cell's text (TouchDesigner Cell objects have .val)."""
    return str(getattr(cell, 'val', cell))


def _cell_value(v):
    if isinstance(v, bool):
        return 1 if v else 0
    if v is None:
        return ''
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, (list, tuple)):
        return ' '.join(str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, separators=(',', ':'))
    return v


def _set_rows(table, rows, header=('field', 'value')):
    """Write (field, value) pairs into a two-column table, keeping one row per field."""
    if table is None:
        return
    if table.numRows == 0 or table[0, 0] is None or _val(table[0, 0]) != header[0]:
        table.clear()
        table.appendRow(list(header))
    for field, value in rows:
        value = _cell_value(value)
        if table[field, 1] is None:
            table.appendRow([field, value])
        else:
            table[field, 1] = value


def _row_value(table, field):
    if table is None:
        return None
    cell = table[field, 1]
    return None if cell is None else _val(cell)


def _append_event(table, label, previous, seq, source):
    if table is None:
        return
    header = ['time', 'label', 'previous', 'seq', 'source']
    if table.numRows == 0 or table[0, 0] is None or _val(table[0, 0]) != 'time':
        table.clear()
        table.appendRow(header)
    table.appendRow([time.strftime('%H:%M:%S'), label, previous, seq, source])
    while table.numRows > MAX_EVENTS + 1:
        table.deleteRow(1)


def _show_label(dat, label):
    global _last_label
    if label == _last_label:
        return
    _last_label = label
    text_top = _find(dat, LABEL_TEXT)
    if text_top is not None:
        try:
            text_top.par.text = str(label)
        except Exception:
            pass


def flatten_state(msg, now=None):
    """The (field, value) rows of a `state` message: nested objects become prefix_key
    (probs -> prob_<label>, face -> face_<key>, voice -> voice_<key>, sensors -> sensor_<name>_<key>)."""
    rows = []
    for key, value in msg.items():
        if key == 'people' and isinstance(value, list):
            rows.append(('people', len(value)))  # how many are in view; their rows: person<slot>_<field>
            rows += flatten_people(value, msg.get('crowd'))
            continue
        if key == 'sensors' and isinstance(value, dict):
            # sensors -> sensors_count, sensor_<name>_<key> (value, z, age_ms, fresh, ...)
            rows.append(('sensors_count', len(value)))
            for name, info in value.items():
                for sub, subval in (info.items() if isinstance(info, dict) else [('value', info)]):
                    rows.append(('sensor_' + str(name) + '_' + str(sub), '' if subval is None else subval))
            continue
        if isinstance(value, dict):
            prefix = 'prob' if key == 'probs' else key
            for sub, subval in value.items():
                rows.append((prefix + '_' + str(sub), subval))
        else:
            rows.append((key, value))
    t_emit = msg.get('t_emit')
    if isinstance(t_emit, (int, float)):
        rows.append(('delay_ms', round(((time.time() if now is None else now) - t_emit) * 1000.0, 2)))
    return rows


def flatten_people(people, crowd):
    """Rows per slot: person<slot>_<field> (probs -> person<slot>_prob_<label>); an empty slot gets
    person<slot>_present 0, so the table keeps one fixed set of rows per slot."""
    rows = []
    slots = crowd.get('slots', 0) if isinstance(crowd, dict) else 0
    by_slot = {p.get('slot'): p for p in people if isinstance(p, dict)}
    for slot in range(max([slots] + [s + 1 for s in by_slot if isinstance(s, int)])):
        p = by_slot.get(slot)
        pre = 'person%d_' % slot
        if p is None:
            rows += [(pre + 'present', 0), (pre + 'id', -1), (pre + 'label', ''), (pre + 'speaking', 0)]
            continue
        for k, v in p.items():
            if k == 'probs' and isinstance(v, dict):
                rows += [(pre + 'prob_' + str(n), pv) for n, pv in v.items()]
            elif k != 'slot':
                rows.append((pre + k, int(v) if isinstance(v, bool) else v))
    return rows


def flatten_health(msg):
    rows = []
    for key, value in msg.items():
        if key == 'sources' and isinstance(value, dict):
            for name, info in value.items():
                if isinstance(info, dict):
                    rows.append((name, info.get('status', '')))
                    for k, v in info.items():
                        if k != 'status':
                            rows.append((name + '_' + k, v))
                else:
                    rows.append((name, info))
        elif key == 'counters' and isinstance(value, dict):
            for k, v in value.items():
                rows.append(('counter_' + k, v))
        elif isinstance(value, dict):
            for k, v in value.items():
                rows.append((key + '_' + k, v))
        else:
            rows.append((key, value))
    return rows


def _count_bad(dat, why):
    state = _find(dat, STATE_TABLE)
    try:
        n = int(float(_row_value(state, 'bad_messages') or 0)) + 1
    except ValueError:
        n = 1
    _set_rows(state, [('bad_messages', n), ('last_bad', why[:200])])


def handle_text(dat, message):
    """Parse one text message and update the tables. Returns the message type (or None if ignored)."""
    try:
        msg = json.loads(message)
    except (ValueError, TypeError) as e:
        _count_bad(dat, 'not JSON: %s' % e)
        return None
    if not isinstance(msg, dict):
        _count_bad(dat, 'not a JSON object')
        return None
    kind = msg.get('type')
    if kind == 'state':
        _set_rows(_find(dat, STATE_TABLE), flatten_state(msg))
        if msg.get('label'):
            _show_label(dat, msg['label'])
    elif kind == 'event' and 'person' in msg:  # several visitors: person_entered / person_left / a person's label
        what = msg.get('label') or str(msg.get('event', '')).replace('person_', '')
        _append_event(_find(dat, EVENTS_TABLE), what, msg.get('previous', ''), msg.get('seq', ''),
                      'ws person %s slot %s' % (msg.get('person'), msg.get('slot')))
    elif kind == 'event':
        _append_event(_find(dat, EVENTS_TABLE), msg.get('label', ''), msg.get('previous', ''),
                      msg.get('seq', ''), 'ws')
        if msg.get('label'):
            _show_label(dat, msg['label'])
    elif kind == 'health':
        _set_rows(_find(dat, HEALTH_TABLE), flatten_health(msg))
    elif kind == 'hello':
        rows = [('connected', 1), ('bridge_version', msg.get('version', '')),
                ('schema_version', msg.get('v', '')), ('labels', msg.get('labels', []))]
        if msg.get('v') != EXPECTED_SCHEMA:
            rows.append(('schema_warning', 'bridge speaks schema %s, these callbacks expect %s: update '
                         'touchdesigner/ and re-run setup_bridge.py' % (msg.get('v'), EXPECTED_SCHEMA)))
        _set_rows(_find(dat, STATE_TABLE), rows)
    elif kind == 'ack':
        _set_rows(_find(dat, STATE_TABLE), [('last_ack', msg)])
    else:
        _count_bad(dat, 'unknown message type %r' % (kind,))
        return None
    return kind


# ---------------------------------------------------------------- TouchDesigner WebSocket DAT callbacks
# me - this DAT
# dat - the WebSocket DAT

def onConnect(dat):
    try:
        _set_rows(_find(dat, STATE_TABLE), [('connected', 1)])
    except Exception as e:
        print('emotion bridge: onConnect:', e)
    return


def onDisconnect(dat):
    try:
        _set_rows(_find(dat, STATE_TABLE), [('connected', 0)])
    except Exception as e:
        print('emotion bridge: onDisconnect:', e)
    return


# rowIndex - the row number the message was placed into
# message - a unicode representation of the text
def onReceiveText(dat, rowIndex, message):
    global _errors
    try:
        handle_text(dat, message)
    except Exception as e:  # a callback must never take the patch down
        _errors += 1
        if _errors in (1, 10, 100, 1000):
            print('emotion bridge: could not handle a WebSocket message (%d so far): %r' % (_errors, e))
    return


# contents - a byte array of the message contents (the bridge only sends text; handled as UTF-8 anyway)
def onReceiveBinary(dat, contents):
    try:
        onReceiveText(dat, -1, bytes(contents).decode('utf-8', 'replace'))
    except Exception:
        pass
    return


# The bridge pings every 10 s and drops a client that does not answer within 10 s: keep this reply.
def onReceivePing(dat, contents):
    try:
        dat.sendPong(contents)
    except Exception as e:
        print('emotion bridge: could not answer ping:', e)
    return


def onReceivePong(dat, contents):
    return


# message - status/diagnostic text from the WebSocket DAT itself
def onMonitorMessage(dat, message):
    return
