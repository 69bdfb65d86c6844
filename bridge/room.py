"""``emotion-bridge room``: every bridge of a site, through the MQTT broker, as one room for TouchDesigner.

    bridge A ─┐                                       ┌─► OSC /room/... (room.osc_targets)
    bridge B ─┼─► broker: emotion-bridge/<site>/+/state ─► RoomAggregator ─► WebSocket "room" (room.ws_port)
    bridge C ─┘            (and +/status: offline)    └─► MQTT emotion-bridge/<site>/room

:class:`RoomAggregator` is pure (no threads, no clock of its own). Its rows are keyed by ``(bridge, person)``:
today every bridge follows one visitor (person ``0``, its ``state`` topic). When multi-person tracking lands
(issue 12), a bridge's per-person messages become more rows of the same bridge through :meth:`ingest` with a
``person`` id; nothing else changes. A message that is not JSON, too large, or not a valid ``state`` is refused
and counted (``refused`` by reason), never raised. A bridge without a state for ``room.stale_s`` (or whose
``status`` says ``offline``) leaves the aggregate and is listed in ``stale``; after ``room.forget_s`` it is
forgotten.

Aggregate, over the fresh rows with a visitor (a face present or a voice active):
``count`` = such rows; valence, arousal and the label distribution are their means weighted by confidence
(floor 0.05, so a row with ~0 confidence still counts a little); ``confidence`` is their plain mean; the
``label`` leads the distribution. With nobody there: valence = arousal = 0, neutral = 1, confidence 0.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge import __version__
from bridge.config import Config
from bridge.labels import LABELS
from bridge.output import schema

log = logging.getLogger(__name__)
MIN_WEIGHT = 0.05


@dataclass
class Row:
    bridge: str
    person: int
    t_arrival: float  # wall clock at the room
    t_capture: float  # wall clock at the bridge
    seq: int
    valence: float
    arousal: float
    confidence: float
    label: str
    probs: np.ndarray
    visitor: bool
    offline: bool = False


def _num(v, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{v!r} is not a number in [{lo}, {hi}]")
    return float(v)


def parse_state(msg) -> dict:
    """The fields of a ``state`` message the room needs; ValueError naming what is wrong."""
    if not isinstance(msg, dict) or msg.get("type") != "state":
        raise ValueError("not a state message")
    if not isinstance(msg.get("v"), int):
        raise ValueError("no schema version")
    probs = msg.get("probs")
    if not isinstance(probs, dict):
        raise ValueError("probs missing")
    p = np.array([_num(probs.get(n, 0.0), 0.0, 1.0) for n in LABELS])
    if p.sum() <= 0:
        raise ValueError("probs are all 0")
    label = msg.get("label")
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}")
    face, voice = msg.get("face"), msg.get("voice")
    return {"valence": _num(msg.get("valence"), -1, 1), "arousal": _num(msg.get("arousal"), -1, 1),
            "confidence": _num(msg.get("confidence"), 0, 1), "label": label, "probs": p / p.sum(),
            "seq": int(msg["seq"]) if isinstance(msg.get("seq"), int) else 0,
            "t_capture": _num(msg.get("t_capture"), 0, 1e11),
            "visitor": bool(isinstance(face, dict) and face.get("present"))
            or bool(isinstance(voice, dict) and voice.get("active"))}


class RoomAggregator:
    def __init__(self, stale_s: float = 3.0, forget_s: float = 300.0, max_message_bytes: int = 65536):
        self.stale_s, self.forget_s, self.max_bytes = stale_s, forget_s, max_message_bytes
        self.rows: dict[tuple[str, int], Row] = {}
        self.refused = {"oversized": 0, "malformed": 0, "invalid": 0}
        self.first_problem = ""
        self.received = 0
        self.latencies_ms: deque[float] = deque(maxlen=100_000)  # capture (bridge) -> arrival (room)
        self.lock = threading.Lock()
        self._said_stale: set[str] = set()

    @property
    def n_refused(self) -> int:
        return sum(self.refused.values())

    def _refuse(self, why: str, detail: str) -> bool:
        self.refused[why] += 1
        if not self.first_problem or self.n_refused in (10, 100, 1000) or self.n_refused % 100_000 == 0:
            self.first_problem = self.first_problem or detail
            log.warning("room: refused a message (%s: %s); %d refused so far", why, detail, self.n_refused)
        return False

    def ingest(self, bridge: str, payload: bytes | str, t_arrival: float, person: int = 0) -> bool:
        """One ``state`` payload from ``bridge``. Returns False (and counts why) when refused."""
        if len(payload) > self.max_bytes:
            return self._refuse("oversized", f"{len(payload)} bytes from {bridge} (limit {self.max_bytes})")
        try:
            msg = json.loads(payload)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            return self._refuse("malformed", f"not JSON from {bridge}: {str(e)[:80]}")
        try:
            f = parse_state(msg)
        except (ValueError, TypeError, OverflowError) as e:
            return self._refuse("invalid", f"bad state from {bridge}: {str(e)[:80]}")
        with self.lock:
            self.received += 1
            self.latencies_ms.append((t_arrival - f["t_capture"]) * 1000.0)
            self.rows[(bridge, person)] = Row(bridge, person, t_arrival, f["t_capture"], f["seq"], f["valence"],
                                              f["arousal"], f["confidence"], f["label"], f["probs"], f["visitor"])
        return True

    def status(self, bridge: str, payload: bytes | str) -> None:
        """A retained ``status`` message: ``offline`` takes the bridge out at once (it died or stopped)."""
        try:
            msg = json.loads(payload)
            st = msg.get("status") if isinstance(msg, dict) else None
        except (ValueError, RecursionError):
            st = None
        if st not in ("online", "offline"):
            self._refuse("invalid", f"bad status message from {bridge}")
            return
        with self.lock:
            for (b, _p), row in self.rows.items():
                if b == bridge:
                    row.offline = st == "offline"

    def aggregate(self, now: float) -> dict:
        with self.lock:
            for key in [k for k, r in self.rows.items() if now - r.t_arrival > self.forget_s]:
                del self.rows[key]
            rows = list(self.rows.values())
        fresh = [r for r in rows if not r.offline and now - r.t_arrival <= self.stale_s]
        stale = sorted({r.bridge for r in rows} - {r.bridge for r in fresh})
        for b in set(stale) - self._said_stale:
            log.warning("room: bridge %s stale (no state for %.1f s or offline): out of the aggregate", b,
                        self.stale_s)
        for b in self._said_stale - set(stale):
            log.info("room: bridge %s is back", b)
        self._said_stale = set(stale)
        vis = [r for r in fresh if r.visitor]
        if vis:
            w = np.array([max(r.confidence, MIN_WEIGHT) for r in vis])
            w = w / w.sum()
            valence = float(sum(wi * r.valence for wi, r in zip(w, vis)))
            arousal = float(sum(wi * r.arousal for wi, r in zip(w, vis)))
            probs = sum(wi * r.probs for wi, r in zip(w, vis))
            confidence = float(np.mean([r.confidence for r in vis]))
        else:
            valence = arousal = confidence = 0.0
            probs = np.array([1.0 if n == "neutral" else 0.0 for n in LABELS])
        label = LABELS[int(np.argmax(probs))]
        out_rows = [{"bridge": r.bridge, "person": r.person, "age_ms": (now - r.t_arrival) * 1000.0,
                     "latency_ms": (r.t_arrival - r.t_capture) * 1000.0, "visitor": r.visitor,
                     "stale": r not in fresh, "valence": r.valence, "arousal": r.arousal,
                     "confidence": r.confidence, "label": r.label}
                    for r in sorted(rows, key=lambda r: (r.bridge, r.person))]
        return {"count": len(vis), "bridges": len({r.bridge for r in fresh}), "stale": stale, "valence": valence,
                "arousal": arousal, "confidence": confidence, "label": label,
                "probs": {n: float(p) for n, p in zip(LABELS, probs)}, "rows": out_rows}


class RoomService:
    """The ``room`` process: MQTT in (paho thread), a ticker out (OSC, WebSocket, MQTT)."""

    def __init__(self, cfg: Config):
        from bridge.output.osc import OscSender

        self.cfg = cfg
        self.site = cfg.mqtt.site
        self.agg = RoomAggregator(cfg.room.stale_s, cfg.room.forget_s, cfg.mqtt.max_message_bytes)
        self.osc = OscSender(cfg.room.osc_targets) if cfg.room.osc_targets else None
        self.ws = None
        if cfg.websocket.enabled:
            from bridge.output.hub import warn_if_exposed
            from bridge.output.websocket import WebSocketServer

            warn_if_exposed("room WebSocket", cfg.room.ws_host)
            self.ws = WebSocketServer(cfg.room.ws_host, cfg.room.ws_port, hello=self._hello,
                                      token=cfg.websocket.token, max_message_bytes=cfg.websocket.max_message_bytes,
                                      max_queue=cfg.websocket.max_queue)
        self._client = None
        self.connected = False
        self.status = "off"
        self.last_error = ""
        self.connects = 0
        self.seq = 0
        self.last: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _hello(self) -> dict:
        return {"type": "hello", "v": schema.SCHEMA_VERSION, "version": __version__, "labels": list(LABELS),
                "room": self.site, "osc": [f.address for f in schema.ROOM_OSC_FIELDS],
                "room_fields": [f[0] for f in schema.ROOM_JSON_FIELDS]}

    def start(self) -> None:
        from bridge.output.mqtt import start_client

        if self.ws:
            self.ws.start()
        self.status = "connecting"
        client_id = f"emotion-bridge-room-{self.site}-{int(time.time() * 1000) % 100000}"
        self._client = start_client(self.cfg.mqtt, client_id, self)
        self._thread = threading.Thread(target=self._tick_loop, name="room-ticker", daemon=True)
        self._thread.start()
        log.info("room: site %r from MQTT %s:%d -> OSC %s, WebSocket %s:%s, MQTT %s/%s/%s", self.site,
                 self.cfg.mqtt.host, self.cfg.mqtt.port, ",".join(self.cfg.room.osc_targets) or "off",
                 self.cfg.room.ws_host, self.ws.port if self.ws else "off", "emotion-bridge", self.site,
                 schema.ROOM_TOPIC)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2.0)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        if self.ws:
            self.ws.stop()
        if self.osc:
            self.osc.close()

    # ------------------------------------------------------------ MQTT (paho's thread)
    def _on_connect(self, client, userdata, flags, rc, properties=None) -> None:
        from bridge.output.mqtt import reason_text

        if getattr(rc, "is_failure", False):
            self.status, self.last_error = "refused", f"broker refused the connection: {reason_text(rc)}"
            log.error("room: MQTT %s. Check mqtt.username / mqtt.password.", self.last_error)
            return
        self.connected, self.status = True, "ok"
        self.connects += 1
        base = f"emotion-bridge/{self.site}/+/"
        client.subscribe([(base + "state", 0), (base + "status", 1)])
        log.info("room: %s the broker", "reconnected to" if self.connects > 1 else "connected to")

    def _on_connect_fail(self, client, userdata) -> None:
        err = getattr(client, "last_connect_error", "") or "connection failed"
        if err != self.last_error:
            log.warning("room: cannot connect to the broker %s:%d (%s); retrying", self.cfg.mqtt.host,
                        self.cfg.mqtt.port, err)
        self.status, self.last_error = "reconnecting", err

    def _on_disconnect(self, client, userdata, flags, rc, properties=None) -> None:
        from bridge.output.mqtt import reason_text

        was, self.connected = self.connected, False
        if not self._stop.is_set():
            self.status = "reconnecting"
            if was:
                self.last_error = f"connection lost: {reason_text(rc)}"
                log.warning("room: lost the broker (%s); reconnecting", reason_text(rc))

    def _on_message(self, client, userdata, m) -> None:
        try:
            parts = m.topic.split("/")
            bridge, kind = parts[2], parts[3]
            if kind == "state":
                self.agg.ingest(bridge, m.payload, time.time())
            elif kind == "status":
                self.agg.status(bridge, m.payload[: self.agg.max_bytes + 1])
        except Exception:  # noqa: BLE001 - a message must never take the room down
            self.agg.refused["invalid"] += 1
            log.exception("room: message on %s failed", m.topic)

    # ------------------------------------------------------------ out
    def _tick_loop(self) -> None:
        period = 1.0 / self.cfg.room.rate_hz
        t_next = time.monotonic()
        while not self._stop.is_set():
            try:
                self.publish_once()
            except Exception:  # noqa: BLE001 - supervised: log, go on
                log.exception("room: publishing failed")
            t_next += period
            now = time.monotonic()
            if t_next < now - period:
                t_next = now
            self._stop.wait(max(0.0, t_next - now))

    def publish_once(self) -> dict:
        from bridge.output.osc import encode_values

        now = time.time()
        agg = self.agg.aggregate(now)
        self.seq += 1
        msg = schema.room_message(agg, self.site, self.seq, now, self.agg.n_refused)
        self.last = msg
        if self.osc:
            self.osc.send_bytes(encode_values(schema.room_osc_values(agg)))
            if self.cfg.room.osc_rows and agg["rows"]:  # own bundle: stays well under a UDP datagram per ~50 rows
                self.osc.send_bytes(encode_values(schema.room_row_osc_values(agg)))
        if self.ws and self.ws.n_clients:
            self.ws.broadcast(msg)
        c = self._client
        if c is not None and self.connected:
            c.publish(f"emotion-bridge/{self.site}/{schema.ROOM_TOPIC}", schema.dumps(msg), qos=0)
        return msg

    def health(self) -> dict:
        return {"status": self.status, "connected": self.connected, "connects": self.connects,
                "received": self.agg.received, "refused": dict(self.agg.refused), "last_error": self.last_error,
                "osc": self.osc.health() if self.osc else None}
