"""All outputs behind one call: ``publish(state)``. OSC, WebSocket and the recorder each get the state; none of
them may block the caller (the tick). fps and capture-to-wire latency are measured here, at the wire."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from bridge import __version__, clock
from bridge.config import Config
from bridge.frames import AffectState
from bridge.output import schema
from bridge.output.osc import OscSender
from bridge.output.websocket import WebSocketServer

log = logging.getLogger(__name__)


class OutputHub:
    def __init__(self, cfg: Config, on_command: Callable[[dict], dict] | None = None):
        self.cfg = cfg
        self.osc = OscSender(cfg.osc.targets) if cfg.osc.enabled else None
        self.ws: WebSocketServer | None = None
        if cfg.websocket.enabled:
            warn_if_exposed("WebSocket", cfg.websocket.host)
            origins = None
            if cfg.monitor.enabled:
                m = cfg.monitor.port
                origins = [None, f"http://127.0.0.1:{m}", f"http://localhost:{m}", f"http://[::1]:{m}"]
                if cfg.monitor.host not in ("127.0.0.1", "localhost", "::1"):
                    origins.append(f"http://{cfg.monitor.host}:{m}")
            self.ws = WebSocketServer(cfg.websocket.host, cfg.websocket.port,
                                      hello=lambda: schema.hello_message(__version__), on_command=on_command,
                                      token=cfg.websocket.token, max_message_bytes=cfg.websocket.max_message_bytes,
                                      max_queue=cfg.websocket.max_queue, allowed_origins=origins)
        self.mqtt = None
        if cfg.mqtt.enabled:
            from bridge.output.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(cfg.mqtt, hello=lambda: schema.hello_message(__version__))
        self.sinks: list[Callable[[AffectState, str | None], None]] = []  # e.g. the recorder
        self._emit_times: deque[float] = deque(maxlen=64)
        self.latencies_ms: deque[float] = deque(maxlen=4096)
        self.published = 0

    def start(self) -> None:
        if self.ws:
            self.ws.start()
        if self.mqtt:
            self.mqtt.start()

    def stop(self) -> None:
        if self.mqtt:
            self.mqtt.stop()
        if self.ws:
            self.ws.stop()
        if self.osc:
            self.osc.close()

    @property
    def fps(self) -> float:
        t = self._emit_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 and t[-1] > t[0] else 0.0

    def publish(self, state: AffectState, changed: str | None = None, previous: str | None = None,
                blendshapes: dict[str, float] | None = None) -> None:
        now = clock.now()
        self._emit_times.append(now)
        latency_ms = (now - state.t_capture) * 1000.0
        self.latencies_ms.append(latency_ms)
        state.t_emit = clock.to_wall(now)
        fps = self.fps
        if self.osc:
            self.osc.send_state(state, fps, latency_ms, blendshapes if self.cfg.osc.blendshapes else None, changed)
        to_ws = bool(self.ws and self.ws.n_clients)
        if to_ws or self.mqtt:
            msg = schema.state_message(state, state.t_emit, fps, latency_ms)
            event = (schema.event_message(changed, previous or "", state.seq, state.t_emit)
                     if changed is not None else None)
            person_events = schema.person_event_messages(state, state.t_emit)  # several visitors
            if to_ws:
                self.ws.broadcast(msg)
                if event is not None:
                    self.ws.broadcast(event)
                for ev in person_events:
                    self.ws.broadcast(ev)
            if self.mqtt:  # never blocks: a bounded queue drained by the MQTT thread
                self.mqtt.send("state", msg)
                if event is not None:
                    self.mqtt.send("event", event, qos=1)
                for ev in person_events:
                    self.mqtt.send("event", ev, qos=1)
                if self.cfg.mqtt.flat:
                    for address, value in schema.osc_values(state, fps, latency_ms):
                        self.mqtt.send("osc" + address, str(value))
        for sink in self.sinks:
            try:
                sink(state, changed)
            except Exception:  # a sink failing must not stop the wire
                log.exception("output sink failed; removing it")
                self.sinks.remove(sink)
        self.published += 1

    def publish_health(self, health: dict) -> None:
        msg = {"type": "health", "v": schema.SCHEMA_VERSION, **health}
        if self.osc:
            self.osc.send_health(schema.dumps(msg))
        if self.ws:
            self.ws.broadcast(msg)
        if self.mqtt:
            self.mqtt.send("health", msg)

    def health(self) -> dict:
        h: dict = {"published": self.published, "fps": round(self.fps, 2)}
        if self.osc:
            h["osc"] = self.osc.health()
        if self.ws:
            h["websocket"] = {"clients": self.ws.n_clients, **self.ws.counters}
        if self.mqtt:
            h["mqtt"] = self.mqtt.health()
        return h


def warn_if_exposed(what: str, host: str) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("%s listens on %s: reachable from other machines on the network. "
                    "Set a token (websocket.token) and check your firewall.", what, host)
