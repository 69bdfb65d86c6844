# Emotion bridge -> TouchDesigner: callbacks for the OSC In DAT.
#
# setup_bridge.py copies this file into the Text DAT `osc_callbacks` and points the OSC In DAT's
# "Callbacks DAT" parameter at it. The OSC In DAT is scoped to the two string messages the OSC In CHOP
# cannot turn into channels:
#   /emotion/changed s     once per label change -> a row in the `events` Table DAT, `label_text` shows it
#   /emotion/label_name s  every state            -> row `label_name` in the `state` Table DAT
# Put your own reaction to a label change in on_label_changed() below (trigger a cue, switch a scene...).
# Nothing here ever raises: a bad packet is ignored.

import time

STATE_TABLE = 'state'
EVENTS_TABLE = 'events'
LABEL_TEXT = 'label_text'
MAX_EVENTS = 50

CHANGED = '/emotion/changed'
LABEL_NAME = '/emotion/label_name'

_last_label_name = None
_errors = 0


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


def _val(cell):
    return str(getattr(cell, 'val', cell))


def _set_row(table, field, value):
    if table is None:
        return
    if table.numRows == 0 or _val(table[0, 0]) != 'field':
        table.clear()
        table.appendRow(['field', 'value'])
    if table[field, 1] is None:
        table.appendRow([field, value])
    else:
        table[field, 1] = value


def on_label_changed(dat, label):
    """Called once per label change. Edit me: e.g. op('/project1/scenes').par.index = ..."""
    return


def handle_osc(dat, address, args):
    """React to one OSC message; returns True if it was one of ours."""
    global _last_label_name
    if not args:
        return False
    label = str(args[0])
    if address == CHANGED:
        events = _find(dat, EVENTS_TABLE)
        if events is not None:
            if events.numRows == 0 or _val(events[0, 0]) != 'time':
                events.clear()
                events.appendRow(['time', 'label', 'previous', 'seq', 'source'])
            previous = _val(events[events.numRows - 1, 1]) if events.numRows > 1 else ''
            events.appendRow([time.strftime('%H:%M:%S'), label, previous, '', 'osc'])
            while events.numRows > MAX_EVENTS + 1:
                events.deleteRow(1)
        text_top = _find(dat, LABEL_TEXT)
        if text_top is not None:
            text_top.par.text = label
        on_label_changed(dat, label)
        return True
    if address == LABEL_NAME:
        if label != _last_label_name:  # arrives with every state; only touch the table when it changes
            _last_label_name = label
            _set_row(_find(dat, STATE_TABLE), 'label_name', label)
        return True
    return False


# me - this DAT
# dat - the DAT that received a message
# rowIndex - the row number the message was placed into
# message - an ascii representation of the data
# bytes - a byte array of the message.
# timeStamp - the arrival time component the OSC message
# address - the address component of the OSC message
# args - a list of values contained within the OSC message
# peer - a Peer object describing the originating message
def onReceiveOSC(dat, rowIndex, message, bytes, timeStamp, address, args, peer):
    global _errors
    try:
        handle_osc(dat, address, list(args) if args is not None else [])
    except Exception as e:  # never let a packet break the patch
        _errors += 1
        if _errors in (1, 10, 100, 1000):
            print('emotion bridge: could not handle OSC %r (%d so far): %r' % (address, _errors, e))
    return
