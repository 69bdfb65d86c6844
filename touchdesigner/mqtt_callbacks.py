# Emotion bridge -> TouchDesigner: callbacks for the MQTT Client DAT (many bridges through one broker).
#
# Put an MQTT Client DAT in a COMP, set its Network Address to the broker (tcp://192.168.1.10, port 1883), paste
# this file into a Text DAT and point the MQTT Client DAT's "Callbacks DAT" at it. Next to the MQTT Client DAT
# create three Table DATs named `room`, `bridges` and `mqtt_status` (or change the names below).
#
# On connect it subscribes to (SITE below; see docs/SCALING.md for the topic scheme):
#   emotion-bridge/<SITE>/room        -> the `room` table (field | value): count, bridges, valence, arousal,
#                                        confidence, label, prob_<label>, stale, refused, seq, delay_ms
#                                        and the `bridges` table: one row per bridge (and person) with
#                                        bridge | person | visitor | label | valence | arousal | confidence |
#                                        age_ms | latency_ms | stale
#   emotion-bridge/<SITE>/+/status    -> the `mqtt_status` table: bridge | status (online/offline) | retained
#   and, with SUBSCRIBE_STATES = True, emotion-bridge/<SITE>/+/state -> one table per bridge named
#   `state_<bridge>` if it exists (field | value, the WebSocket `state` fields flattened).
# Bad messages are counted in the `bad_messages` row of `room`; nothing here ever raises.
#
# Callback signatures as documented for TouchDesigner's MQTT Client DAT (TD 2022+).

import json
import time

SITE = 'default'             # the bridges' --site
ROOM_TABLE = 'room'
BRIDGES_TABLE = 'bridges'
STATUS_TABLE = 'mqtt_status'
SUBSCRIBE_STATES = False     # True: also every bridge's per-tick state (30 messages/s per bridge)
BRIDGE_COLUMNS = ('bridge', 'person', 'visitor', 'label', 'valence', 'arousal', 'confidence', 'age_ms',
                  'latency_ms', 'stale')

_bad = 0


def _find(dat, name):
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


def _cell(v):
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
    if table is None:
        return
    if table.numRows == 0 or str(getattr(table[0, 0], 'val', '')) != header[0]:
        table.clear()
        table.appendRow(list(header))
    for field, value in rows:
        if table.row(field) is None:
            table.appendRow([field, _cell(value)])
        else:
            table[field, 1] = _cell(value)


def _count_bad(dat, why):
    global _bad
    _bad += 1
    _set_rows(_find(dat, ROOM_TABLE), [('bad_messages', _bad), ('last_bad', why[:200])])


def room_rows(msg, now=None):
    rows = []
    for key in ('count', 'bridges', 'valence', 'arousal', 'confidence', 'label', 'refused', 'seq', 'site'):
        rows.append((key, msg.get(key, '')))
    for name, p in (msg.get('probs') or {}).items():
        rows.append(('prob_' + str(name), p))
    rows.append(('stale', msg.get('stale', [])))
    t_emit = msg.get('t_emit')
    if isinstance(t_emit, (int, float)):
        rows.append(('delay_ms', round(((time.time() if now is None else now) - t_emit) * 1000.0, 2)))
    return rows


def _fill_bridges(table, rows):
    if table is None:
        return
    table.clear()
    table.appendRow(list(BRIDGE_COLUMNS))
    for r in rows:
        if isinstance(r, dict):
            table.appendRow([_cell(r.get(c, '')) for c in BRIDGE_COLUMNS])


def handle_message(dat, topic, payload, retained=False):
    """One MQTT message -> the tables. Returns what it was ('room', 'status', 'state') or None."""
    parts = str(topic).split('/')
    try:
        text = bytes(payload).decode('utf-8') if not isinstance(payload, str) else payload
        msg = json.loads(text)
    except (ValueError, TypeError) as e:
        _count_bad(dat, 'not JSON on %s: %s' % (topic, e))
        return None
    if not isinstance(msg, dict):
        _count_bad(dat, 'not a JSON object on %s' % topic)
        return None
    if len(parts) == 3 and parts[2] == 'room' and msg.get('type') == 'room':
        _set_rows(_find(dat, ROOM_TABLE), room_rows(msg))
        _fill_bridges(_find(dat, BRIDGES_TABLE), msg.get('rows') or [])
        return 'room'
    if len(parts) == 4 and parts[3] == 'status':
        table = _find(dat, STATUS_TABLE)
        if table is not None:
            if table.numRows == 0:
                table.appendRow(['bridge', 'status', 'retained'])
            if table.row(parts[2]) is None:
                table.appendRow([parts[2], msg.get('status', ''), _cell(bool(retained))])
            else:
                table[parts[2], 1] = msg.get('status', '')
                table[parts[2], 2] = _cell(bool(retained))
        return 'status'
    if len(parts) == 4 and parts[3] == 'state' and msg.get('type') == 'state':
        rows = []
        for key, value in msg.items():
            if isinstance(value, dict):
                for sub, subval in value.items():
                    rows.append(((('prob' if key == 'probs' else key) + '_' + str(sub)), subval))
            else:
                rows.append((key, value))
        _set_rows(_find(dat, 'state_' + parts[2]), rows)
        return 'state'
    _count_bad(dat, 'unexpected message on %s' % topic)
    return None


# ---------------------------------------------------------------- TouchDesigner MQTT Client DAT callbacks
# dat - the MQTT Client DAT

def onConnect(dat):
    try:
        base = 'emotion-bridge/' + SITE + '/'
        dat.subscribe(base + 'room', qos=0)
        dat.subscribe(base + '+/status', qos=1)
        if SUBSCRIBE_STATES:
            dat.subscribe(base + '+/state', qos=0)
        _set_rows(_find(dat, ROOM_TABLE), [('connected', 1)])
    except Exception as e:
        print('emotion bridge (MQTT): onConnect:', e)
    return


def onConnectFailure(dat, msg):
    _set_rows(_find(dat, ROOM_TABLE), [('connected', 0), ('last_error', str(msg)[:200])])
    return


def onConnectionLost(dat, msg):
    _set_rows(_find(dat, ROOM_TABLE), [('connected', 0), ('last_error', str(msg)[:200])])
    return


def onSubscribe(dat, topic):
    return


def onSubscribeFailure(dat, topic, msg):
    _set_rows(_find(dat, ROOM_TABLE), [('last_error', ('subscribe %s: %s' % (topic, msg))[:200])])
    return


def onUnsubscribe(dat, topic):
    return


def onPublish(dat, topic):
    return


# topic - the message's topic; payload - a byte array; qos, retained, dup as the broker sent them
def onMessage(dat, topic, payload, qos, retained, dup):
    try:
        handle_message(dat, topic, payload, retained)
    except Exception as e:  # a callback must never take the patch down
        print('emotion bridge (MQTT): could not handle a message on %s: %r' % (topic, e))
    return
