"""MQTT output (paho-mqtt) to a broker such as Mosquitto: many bridges -> one broker -> many patches.

Topics (``<prefix>`` = ``emotion-bridge/<site>/<bridge_id>``, see :data:`bridge.output.schema.MQTT_TOPICS`):
``state`` (QoS 0, every tick), ``event`` (QoS 1), ``health`` (QoS 0, once a second), ``hello`` (retained:
schema, labels, version) and ``status`` (retained ``online``; ``offline`` is the last will, so a bridge that
dies is marked offline by the broker). Sensors come in on ``<prefix>/sensor/<name>``.

**The tick never waits for the broker.** :meth:`MqttPublisher.send` appends to a bounded deque and returns; a
thread of its own hands messages to paho, whose network loop runs in paho's thread. With the broker down or
slow, messages are dropped and counted (``dropped_offline``, ``dropped_full``) and health says
``reconnecting``; paho reconnects with backoff (``reconnect_min_s`` doubling to ``reconnect_max_s``) and
``hello`` / ``status`` are published again on every (re)connect.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable

from bridge import clock
from bridge.config import MqttConfig
from bridge.output import schema

log = logging.getLogger(__name__)

ROOT = "emotion-bridge"
TAKEOVER_S = 5.0  # sessions shorter than this, three in a row: probably two clients with one id


def default_bridge_id() -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname() or "bridge")[:64]
    return name or "bridge"


def topic_prefix(site: str, bridge_id: str) -> str:
    return f"{ROOT}/{site}/{bridge_id}"


def parse_hostport(v: str, default_port: int = 1883) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[v6]:PORT`` -> (host, port); ValueError with a readable message."""
    v = v.strip()
    if v.startswith("["):
        host, _, rest = v[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif v.count(":") == 1:
        host, port = v.split(":")
    else:
        host, port = v, str(default_port)
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected HOST or HOST:PORT (port 1-65535), got {v!r}")
    return host, int(port)


def make_client(cfg: MqttConfig, client_id: str):
    """A paho client with the login, TLS and backoff of ``cfg`` (not connected)."""
    import paho.mqtt.client as mqtt

    class _Client(mqtt.Client):
        """Keeps why the last connection attempt failed (paho's on_connect_fail does not say)."""

        last_connect_error = ""

        def reconnect(self):
            try:
                return super().reconnect()
            except OSError as e:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
                self.last_connect_error = f"{type(e).__name__}: {e}"
                raise

    c = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if cfg.username is not None:
        c.username_pw_set(cfg.username, cfg.password)
    if cfg.tls:
        c.tls_set(ca_certs=cfg.ca_certs, certfile=cfg.certfile, keyfile=cfg.keyfile,
                  cert_reqs=ssl.CERT_REQUIRED)
        if cfg.tls_insecure:
            c.tls_insecure_set(True)
    c.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)  # type: ignore[arg-type]
    c.max_queued_messages_set(cfg.queue)
    c.connect_timeout = 3.0  # a broker address that drops packets: give up the attempt (and a stop) after 3 s
    return c


def start_client(cfg: MqttConfig, client_id: str, owner, will: tuple[str, str] | None = None):
    """``make_client`` wired to ``owner``'s paho callbacks (``_on_connect``, ``_on_disconnect``, ``_on_message``,
    ``_on_connect_fail``, called in paho's thread), with an optional retained last will (topic, payload),
    connecting in the background with paho's network loop started. Raises OSError / ValueError when the
    broker address cannot be used at all (paho retries everything else by itself)."""
    c = make_client(cfg, client_id)
    if will is not None:
        c.will_set(will[0], will[1], qos=1, retain=True)
    c.on_connect, c.on_disconnect = owner._on_connect, owner._on_disconnect
    c.on_message, c.on_connect_fail = owner._on_message, owner._on_connect_fail
    c.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
    c.loop_start()
    return c


def reason_text(rc) -> str:
    return str(getattr(rc, "getName", lambda: rc)()) if rc is not None else ""


class MqttPublisher:
    """One bridge's connection to the broker. ``send(suffix, msg)`` never blocks."""

    def __init__(self, cfg: MqttConfig, hello: Callable[[], dict],
                 on_sensor: Callable[[str, object], None] | None = None):
        self.cfg = cfg
        self.bridge_id = cfg.bridge_id or default_bridge_id()
        self.site = cfg.site
        self.prefix = topic_prefix(self.site, self.bridge_id)
        self._hello = hello
        self.on_sensor = on_sensor
        self._q: deque = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None
        self.connected = False
        self.status = "off"
        self.last_error = ""
        self.counters = {"published": 0, "dropped_full": 0, "dropped_offline": 0, "publish_errors": 0,
                         "connects": 0, "disconnects": 0, "refusals": 0, "connect_failures": 0,
                         "sensor_messages": 0, "sensor_refused": 0}
        self.t_connected: float | None = None
        self._short_sessions = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.status = "connecting"
        will = (self.prefix + "/status", schema.dumps(schema.status_message("offline", self.bridge_id, self.site)))
        try:
            self._client = start_client(self.cfg, f"emotion-bridge-{self.bridge_id}", self, will)
        except (OSError, ValueError) as e:
            self.status, self.last_error = "failed", f"{self.cfg.host}:{self.cfg.port}: {e}"
            log.error("MQTT: cannot connect to %s:%d (%s); MQTT output is off. Check mqtt.host / --mqtt.",
                      self.cfg.host, self.cfg.port, e)
            return
        self._thread = threading.Thread(target=self._drain, name="mqtt-out", daemon=True)
        self._thread.start()
        log.info("MQTT: publishing to %s:%d under %s/", self.cfg.host, self.cfg.port, self.prefix)

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        c, self._client = self._client, None
        if c is None:
            return
        if self.connected:
            try:  # a clean stop says so (the last will is for crashes); retained, so late subscribers see it
                info = c.publish(self.prefix + "/status", schema.dumps(schema.status_message(
                    "offline", self.bridge_id, self.site)), qos=1, retain=True)
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError, OSError):
                pass
        c.disconnect()
        c.loop_stop()
        self.status = "off"

    # ------------------------------------------------------------ sending (tick side: never blocks)
    def send(self, suffix: str, msg: dict | str, qos: int = 0, retain: bool = False) -> None:
        payload = msg if isinstance(msg, str) else schema.dumps(msg)
        with self._cond:
            if len(self._q) >= self.cfg.queue:
                self._q.popleft()
                self.counters["dropped_full"] += 1
            self._q.append((suffix, payload, qos, retain))
            self._cond.notify()

    def _drain(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._q and not self._stop.is_set():
                    self._cond.wait(0.5)
                batch = list(self._q)
                self._q.clear()
            c = self._client
            for suffix, payload, qos, retain in batch:
                if c is None or not self.connected:
                    self.counters["dropped_offline"] += 1
                    continue
                try:
                    info = c.publish(f"{self.prefix}/{suffix}", payload, qos=qos, retain=retain)
                    if info.rc == 0:
                        self.counters["published"] += 1
                    else:
                        self.counters["dropped_offline" if info.rc == 4 else "publish_errors"] += 1
                except (RuntimeError, ValueError, OSError) as e:
                    self.counters["publish_errors"] += 1
                    self.last_error = f"publish: {e}"

    # ------------------------------------------------------------ paho callbacks (paho's thread)
    def _on_connect(self, client, userdata, flags, rc, properties=None) -> None:
        if getattr(rc, "is_failure", False):
            err = f"broker refused the connection: {reason_text(rc)}"
            if err != self.last_error:  # once per distinct refusal: paho retries with backoff, no log flood
                log.error("MQTT %s:%d: %s. Check mqtt.username / mqtt.password (and the broker's ACL).",
                          self.cfg.host, self.cfg.port, err)
            self.status, self.last_error = "refused", err
            self.counters["refusals"] += 1
            return
        self.connected = True
        self.status = "ok"
        self.t_connected = clock.now()
        self.counters["connects"] += 1
        if self.counters["connects"] > 1:
            log.info("MQTT: reconnected to %s:%d", self.cfg.host, self.cfg.port)
        client.publish(self.prefix + "/hello", schema.dumps({**self._hello(), "bridge_id": self.bridge_id,
                                                             "site": self.site}), qos=1, retain=True)
        client.publish(self.prefix + "/status", schema.dumps(schema.status_message("online", self.bridge_id,
                                                                                   self.site)), qos=1, retain=True)
        if self.on_sensor is not None:
            client.subscribe(self.prefix + "/sensor/+", qos=0)

    def _on_connect_fail(self, client, userdata) -> None:
        err = getattr(client, "last_connect_error", "") or "connection failed"
        self.counters["connect_failures"] += 1
        if self.status != "refused":
            self.status = "reconnecting"
        if err != self.last_error:
            log.warning("MQTT: cannot connect to %s:%d (%s); retrying with backoff up to %.0f s, OSC/WebSocket go "
                        "on. Check mqtt.host/port (--mqtt), that the broker runs and listens there, and the TLS "
                        "settings.", self.cfg.host, self.cfg.port, err, self.cfg.reconnect_max_s)
        self.last_error = err

    def _on_disconnect(self, client, userdata, flags, rc, properties=None) -> None:
        was = self.connected
        self.connected = False
        if self._stop.is_set():
            return
        if not was and self.status == "refused":
            return  # the broker said no (login): stay "refused" while paho retries
        self.status = "reconnecting"
        if was:
            self.counters["disconnects"] += 1
            self.last_error = f"connection lost: {reason_text(rc)}"
            short = self.t_connected is not None and clock.now() - self.t_connected < TAKEOVER_S
            self._short_sessions = self._short_sessions + 1 if short else 0
            if self._short_sessions == 3:
                log.warning("MQTT: the broker keeps closing the connection right after it opens. Is another "
                            "bridge using the same id %r (client id emotion-bridge-%s)? Give each bridge its own "
                            "--bridge-id (mqtt.bridge_id).", self.bridge_id, self.bridge_id)
            log.warning("MQTT: lost the broker %s:%d (%s); reconnecting with backoff, OSC/WebSocket go on",
                        self.cfg.host, self.cfg.port, reason_text(rc))

    def _on_message(self, client, userdata, m) -> None:
        name = m.topic.rsplit("/", 1)[-1]
        if len(m.payload) > self.cfg.max_message_bytes:
            self.counters["sensor_refused"] += 1
            return
        self.counters["sensor_messages"] += 1
        value = parse_sensor_payload(m.payload)
        if self.on_sensor is not None:
            try:
                self.on_sensor(name, value)
            except Exception:  # noqa: BLE001 - never let a bad message kill paho's thread
                self.counters["sensor_refused"] += 1
                log.exception("MQTT sensor message on %s failed", m.topic)

    def health(self) -> dict:
        with self._cond:
            q = len(self._q)
        return {"status": self.status, "connected": self.connected, "broker": f"{self.cfg.host}:{self.cfg.port}",
                "topic": self.prefix, "queue": q, "last_error": self.last_error, **self.counters}


def parse_sensor_payload(payload: bytes) -> object:
    """``72.5`` or ``{"value": 72.5}`` -> the value as it came (validation is the sensor hub's job)."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return text
    if isinstance(v, dict):
        return v.get("value")
    return v


def wait_connected(pub: MqttPublisher, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pub.connected:
            return True
        time.sleep(0.02)
    return pub.connected
