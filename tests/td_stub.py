"""A minimal stand-in for the parts of TouchDesigner's Python API that touchdesigner/*.py use.

TouchDesigner cannot run on CI, so touchdesigner/setup_bridge.py is executed against this stub the way
the Textport would run it (its names injected as globals). The stub is strict where a real patch would
break: a parameter name that an operator type does not have raises AttributeError, connections must
stay inside one network and one operator family, and names inside a COMP are unique.

Parameter names per operator type come from TouchDesigner's operator reference
(https://docs.derivative.ca/<Operator_Name>, read in the public markdown mirrors of those pages):
``DOCUMENTED`` holds names printed on the pages; ``CONVENTION`` holds the per-component names of tuple
parameters (e.g. the Lag CHOP's two-value ``lag`` -> ``lag1``/``lag2``), which the pages print only as
the tuple's name. tests/test_touchdesigner.py lists which CONVENTION names the setup script relies on,
so an assumption can't slip in unnoticed.
"""

from __future__ import annotations

import fnmatch
import re
from collections import OrderedDict

# ----------------------------------------------------------------------------- parameter names
_CHOP_COMMON = ("timeslice", "scope", "srselect", "exportmethod", "autoexportroot", "exporttable")
_DAT_COMMON = ("language", "extension", "customext", "wordwrap")
_TOP_COMMON = ("outputresolution", "resolution", "resmenu", "resmult", "outputaspect", "aspect", "armenu",
               "inputfiltertype", "fillmode", "filtertype", "npasses", "chanmask", "format")
_TOP_COMMON_CONVENTION = ("resolutionw", "resolutionh", "aspect1", "aspect2")

DOCUMENTED: dict[str, tuple[str, ...]] = {
    # https://docs.derivative.ca/OSC_In_CHOP
    "oscinCHOP": ("active", "protocol", "netaddress", "port", "localaddress", "oscaddressscope",
                  "useglobalrate", "samplerate", "queued", "queuevariance", "queuevarianceunit", "maxqueue",
                  "maxqueueunit", "adjusttime", "adjusttimeunit", "stripsegments", "resetchannels",
                  "resetchannelspulse", "resetvalues", *_CHOP_COMMON),
    # https://docs.derivative.ca/Rename_CHOP
    "renameCHOP": ("renamefrom", "renameto", *_CHOP_COMMON),
    # https://docs.derivative.ca/Select_CHOP
    "selectCHOP": ("chop", "channames", "renamefrom", "renameto", "filterbydigits", "digits", "stripdigits",
                   "align", "autoprefix", *_CHOP_COMMON),
    # https://docs.derivative.ca/Null_CHOP
    "nullCHOP": ("cooktype", "checkvalues", "checknames", "checkrange", *_CHOP_COMMON),
    # https://docs.derivative.ca/Lag_CHOP
    "lagCHOP": ("lagmethod", "lag", "lagunit", "overshoot", "overshootunit", "clamp", "slope", "aclamp",
                "accel", "lagsamples", "reset", "resetpulse", *_CHOP_COMMON),
    # https://docs.derivative.ca/OSC_In_DAT
    "oscinDAT": ("active", "protocol", "address", "port", "localaddress", "shared", "addscope", "typetag",
                 "splitbundle", "splitmessage", "bundletimestamp", "callbacks", "executeloc", "fromop",
                 "clamp", "maxlines", "clear", "bytes", *_DAT_COMMON),
    # https://docs.derivative.ca/OSC_Out_DAT
    "oscoutDAT": ("active", "protocol", "address", "port", "localaddress", "shared", "addscope", "typetag",
                  "splitbundle", "splitmessage", "bundletimestamp", "callbacks", "executeloc", "fromop",
                  "clamp", "maxlines", "clear", "bytes", *_DAT_COMMON),
    # https://docs.derivative.ca/WebSocket_DAT
    "websocketDAT": ("active", "netaddress", "port", "timeout", "callbacks", "executeloc", "fromop", "clamp",
                     "maxlines", "clear", "bytes", *_DAT_COMMON),
    # https://docs.derivative.ca/Text_DAT
    "textDAT": ("edit", "file", "syncfile", "loadonstart", "loadonstartpulse", "write", "writepulse",
                *_DAT_COMMON),
    # https://docs.derivative.ca/Table_DAT
    "tableDAT": ("edit", "file", "syncfile", "defaultreadencoding", "loadonstart", "write", "removeblank",
                 "fill", "rows", "cols", "cellexpr", "includenames", "fills", *_DAT_COMMON),
    # https://docs.derivative.ca/Circle_TOP (Circle page; radius/center components are printed there)
    "circleTOP": ("radius", "radiusx", "radiusy", "radiusunit", "rotate", "center", "centerx", "centery",
                  "centerunit", "justifyh", "justifyv", *_TOP_COMMON),
    # https://docs.derivative.ca/Constant_TOP ; colorr/colorg/colorb also appear verbatim in the docs'
    # own examples (UI Class undo example: op('constant1').par.colorr = 0)
    "constantTOP": ("color", "colorr", "colorg", "colorb", "alpha", "multrgbbyalpha", "rgbaunit",
                    "compoverinput", "operand", "swaporder", *_TOP_COMMON),
    # https://docs.derivative.ca/Text_TOP (subset)
    "textTOP": ("field", "dat", "rowindex", "colindex", "specdat", "text", "appendvalue", "valuetouse",
                "posttext", "wordwrap", "font", "fontfile", "bold", "italic", "fontautosize", "fontsizex",
                "fontsizexunit", "fontsizey", "fontsizeyunit", "keepfontratio", "alignx", "aligny",
                "fontcolor", "fontalpha", "bgcolor", "bgalpha", *_TOP_COMMON),
    # Multiply / Over / Null TOP: only created and wired, no parameters set
    "multiplyTOP": _TOP_COMMON,
    "overTOP": _TOP_COMMON,
    "nullTOP": _TOP_COMMON,
    "baseCOMP": (),
}

CONVENTION: dict[str, tuple[str, ...]] = {
    "lagCHOP": ("lag1", "lag2", "overshoot1", "overshoot2", "slope1", "slope2", "accel1", "accel2"),
    "textTOP": ("fontcolorr", "fontcolorg", "fontcolorb", "bgcolorr", "bgcolorg", "bgcolorb",
                *_TOP_COMMON_CONVENTION),
    "circleTOP": _TOP_COMMON_CONVENTION,
    "constantTOP": _TOP_COMMON_CONVENTION,
    "multiplyTOP": _TOP_COMMON_CONVENTION,
    "overTOP": _TOP_COMMON_CONVENTION,
    "nullTOP": _TOP_COMMON_CONVENTION,
}

# number of input connectors (from each page's "Operator Inputs"; generators have none)
_INPUTS = {"oscinCHOP": 0, "renameCHOP": 2, "selectCHOP": 0, "nullCHOP": 1, "lagCHOP": 1, "oscinDAT": 0,
           "websocketDAT": 1, "oscoutDAT": 1, "textDAT": 0, "tableDAT": 0, "circleTOP": 0, "constantTOP": 0, "textTOP": 0,
           "multiplyTOP": 2, "overTOP": 2, "nullTOP": 1, "baseCOMP": 1}


class ParMode:
    CONSTANT = "CONSTANT"
    EXPRESSION = "EXPRESSION"
    EXPORT = "EXPORT"
    BIND = "BIND"


class OpType:
    def __init__(self, name: str):
        self.name = name
        self.family = next(f for f in ("CHOP", "DAT", "TOP", "COMP", "SOP", "MAT") if name.endswith(f))

    def __repr__(self) -> str:
        return self.name


OP_TYPES = {name: OpType(name) for name in DOCUMENTED}


# ----------------------------------------------------------------------------- parameters
class Par:
    def __init__(self, owner: "OP", name: str):
        self.owner, self.name = owner, name
        self.val: object = None
        self.expr = ""
        self.mode = ParMode.CONSTANT

    def eval(self):
        return self.val

    def pulse(self):
        pass

    def __repr__(self) -> str:
        return f"<Par {self.owner.path}:{self.name} mode={self.mode} val={self.val!r} expr={self.expr!r}>"


class ParCollection:
    def __init__(self, owner: "OP", valid: set[str]):
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_valid", valid)
        object.__setattr__(self, "_pars", {})

    def __getattr__(self, name: str) -> Par:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in self._valid:
            raise AttributeError(f"{self._owner.OPType} {self._owner.path!r} has no parameter {name!r}")
        if name not in self._pars:
            self._pars[name] = Par(self._owner, name)
        return self._pars[name]

    def __setattr__(self, name: str, value) -> None:
        self.__getattr__(name).val = value

    def touched(self) -> dict[str, Par]:
        """Parameters that were read or set (what the script touched)."""
        return dict(self._pars)


# ----------------------------------------------------------------------------- operators
class Connector:
    def __init__(self, owner: "OP", index: int, is_input: bool):
        self.owner, self.index, self.isInput = owner, index, is_input
        self.connections: list[Connector] = []

    def connect(self, target) -> None:
        if self.isInput:
            src = target if isinstance(target, Connector) else target.outputConnectors[0]
            dst = self
        else:
            dst = target if isinstance(target, Connector) else target.inputConnectors[0]
            src = self
        a, b = src.owner, dst.owner
        if a.family != b.family:
            raise ValueError(f"cannot wire {a.OPType} {a.path} into {b.OPType} {b.path}: different families")
        if a.parent() is not b.parent():
            raise ValueError(f"cannot wire {a.path} into {b.path}: different networks")
        dst.connections = [src]  # an input takes one wire
        src.connections.append(dst)

    def disconnect(self) -> None:
        self.connections.clear()


class Cell:
    def __init__(self, row: list, col: int):
        self._row, self._col = row, col

    @property
    def val(self) -> str:
        return self._row[self._col]

    def __str__(self) -> str:
        return self.val

    def __repr__(self) -> str:
        return f"<Cell {self.val!r}>"


class OP:
    def __init__(self, optype: OpType, name: str, parent: "COMP | None"):
        self.OPType = optype.name
        self.family = optype.family
        self.name = name
        self._parent = parent
        self.par = ParCollection(self, set(DOCUMENTED.get(optype.name, ())) | set(CONVENTION.get(optype.name, ())))
        self.nodeX = 0
        self.nodeY = 0
        self.comment = ""
        self.valid = True
        n_in = _INPUTS.get(optype.name, 1)
        self.inputConnectors = [Connector(self, i, True) for i in range(n_in)]
        self.outputConnectors = [Connector(self, 0, False)]
        self._storage: dict = {}

    isCHOP = property(lambda self: self.family == "CHOP")
    isDAT = property(lambda self: self.family == "DAT")
    isTOP = property(lambda self: self.family == "TOP")
    isCOMP = property(lambda self: self.family == "COMP")

    @property
    def path(self) -> str:
        if self._parent is None:
            return "/"
        base = self._parent.path
        return (base if base.endswith("/") else base + "/") + self.name

    def parent(self, n: int = 1):
        p = self
        for _ in range(n):
            p = p._parent
        return p

    @property
    def inputs(self) -> list["OP"]:
        return [c.connections[0].owner for c in self.inputConnectors if c.connections]

    def destroy(self) -> None:
        if self._parent is not None:
            del self._parent._children[self.name]
        self.valid = False

    def store(self, key, value):
        self._storage[key] = value

    def fetch(self, key, default=None):
        return self._storage.get(key, default)

    def __repr__(self) -> str:
        return f"<{self.OPType} {self.path}>"


class DAT(OP):
    def __init__(self, optype, name, parent):
        super().__init__(optype, name, parent)
        self._rows: list[list[str]] = []
        self.sent_text: list[str] = []
        self.sent_pongs: list = []

    @property
    def text(self) -> str:
        return "\n".join("\t".join(r) for r in self._rows)

    @text.setter
    def text(self, value: str) -> None:
        self._rows = [line.split("\t") for line in str(value).split("\n")]

    @property
    def numRows(self) -> int:
        return len(self._rows)

    @property
    def numCols(self) -> int:
        return max((len(r) for r in self._rows), default=0)

    def clear(self, keepSize=False, keepFirstRow=False, keepFirstCol=False):
        self._rows = self._rows[:1] if keepFirstRow else []

    def appendRow(self, cells=(), *args, **kwargs) -> int:
        self._rows.append([str(c) for c in cells])
        return len(self._rows) - 1

    def deleteRow(self, nameOrIndex) -> None:
        del self._rows[self._row_index(nameOrIndex)]

    def _row_index(self, r) -> int | None:
        if isinstance(r, int):
            return r if 0 <= r < len(self._rows) else None
        for i, row in enumerate(self._rows):
            if row and row[0] == str(r):
                return i
        return None

    def _col_index(self, c) -> int | None:
        if isinstance(c, int):
            return c
        header = self._rows[0] if self._rows else []
        return header.index(str(c)) if str(c) in header else None

    def __getitem__(self, key):
        r, c = key
        ri, ci = self._row_index(r), self._col_index(c)
        if ri is None or ci is None or ci >= len(self._rows[ri]):
            return None
        return Cell(self._rows[ri], ci)

    def __setitem__(self, key, value) -> None:
        r, c = key
        ri, ci = self._row_index(r), self._col_index(c)
        if ri is None or ci is None:
            raise IndexError(f"{self.path}: no cell {key!r}")
        row = self._rows[ri]
        row.extend([""] * (ci + 1 - len(row)))
        row[ci] = str(value)

    def row(self, nameOrIndex):
        ri = self._row_index(nameOrIndex)
        return None if ri is None else [Cell(self._rows[ri], i) for i in range(len(self._rows[ri]))]

    def as_dict(self) -> dict[str, str]:
        """Stub-only helper: a field|value table as a dict (header row skipped)."""
        return {r[0]: (r[1] if len(r) > 1 else "") for r in self._rows[1:]}

    # OSC Out DAT / WebSocket DAT methods
    def sendOSC(self, address: str, values, **kwargs) -> int:
        self.sent_osc = getattr(self, "sent_osc", []) + [(address, list(values))]
        return 0

    def sendText(self, text: str) -> int:
        self.sent_text.append(text)
        return len(text)

    def sendPong(self, contents) -> int:
        self.sent_pongs.append(contents)
        return 0


class CHOP(OP):
    pass


class TOP(OP):
    pass


class COMP(OP):
    def __init__(self, optype, name, parent):
        super().__init__(optype, name, parent)
        self._children: OrderedDict[str, OP] = OrderedDict()

    @property
    def children(self) -> list[OP]:
        return list(self._children.values())

    def create(self, optype: OpType, name: str | None = None) -> OP:
        if not isinstance(optype, OpType):
            raise TypeError(f"create() needs an operator type token like oscinCHOP, got {optype!r}")
        if name is None:
            i = 1
            while f"{optype.name[:-len(optype.family)].lower()}{i}" in self._children:
                i += 1
            name = f"{optype.name[:-len(optype.family)].lower()}{i}"
        if name in self._children:
            raise ValueError(f"{self.path} already has an operator named {name!r}")
        cls = {"DAT": DAT, "CHOP": CHOP, "TOP": TOP, "COMP": COMP}.get(optype.family, OP)
        new = cls(optype, name, self)
        self._children[name] = new
        return new

    def op(self, path: str):
        path = str(path)
        node: OP | None = self
        if path.startswith("/"):
            while node._parent is not None:
                node = node._parent
            parts = [p for p in path.split("/") if p]
        else:
            parts = [p for p in path.split("/") if p]
        for p in parts:
            if node is None:
                return None
            if p == "..":
                node = node._parent
            elif p == ".":
                continue
            elif isinstance(node, COMP):
                node = node._children.get(p)
            else:
                return None
        return node


class Project:
    def __init__(self, folder: str):
        self.folder = folder


def make_root() -> COMP:
    """A fresh '/' with '/project1', like a new TouchDesigner project."""
    root = COMP(OP_TYPES["baseCOMP"], "", None)
    root.create(OP_TYPES["baseCOMP"], "project1")
    return root


def namespace(root: COMP, project_folder: str = "/nonexistent", me: OP | None = None) -> dict:
    """The globals TouchDesigner's Textport gives a script: op(), ParMode, operator type tokens, ..."""
    ns: dict = {"op": root.op, "ParMode": ParMode, "project": Project(project_folder), "root": root,
                "parent": lambda n=1: root}
    ns.update(OP_TYPES)
    if me is not None:
        ns["me"] = me
    return ns


# ----------------------------------------------------------------------------- TD pattern matching
def match(pattern: str, name: str) -> bool:
    """TouchDesigner's name pattern: * any run, ? one character, [abc] / [a-z] a character class."""
    return fnmatch.fnmatchcase(name, pattern)


def scope_match(scope: str, name: str) -> bool:
    """A scope string: space-separated patterns, ^pattern excludes (https://docs.derivative.ca/Pattern_Matching)."""
    inc = [p for p in scope.split() if not p.startswith("^")]
    exc = [p[1:] for p in scope.split() if p.startswith("^")]
    return any(match(p, name) for p in inc) and not any(match(p, name) for p in exc)


def rename(names: list[str], frm: str, to: str) -> list[str]:
    """Rename CHOP: each name is matched against the From patterns; the first match takes the To entry at the
    same position; an unmatched name is unchanged. A '*' in the To entry receives what the From '*' matched."""
    frms, tos = frm.split(), to.split()
    if len(frms) != len(tos):
        raise ValueError(f"Rename From has {len(frms)} patterns but To has {len(tos)}")
    out = []
    for n in names:
        for f, t in zip(frms, tos):
            if match(f, n):
                if "*" in t:
                    rx = re.escape(f).replace(r"\*", "(.*)", 1).replace(r"\*", ".*").replace(r"\?", ".")
                    t = t.replace("*", re.fullmatch(rx, n).group(1), 1)
                out.append(t)
                break
        else:
            out.append(n)
    return out
