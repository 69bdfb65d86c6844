"""Control from the patch over OSC: ``/bridge/cmd/<name> [args]`` -> the same command handler as the WebSocket.

    /bridge/cmd/reset                 reset the model state (a new visitor)
    /bridge/cmd/calibrate   [f]       the next f seconds (default video.calibration_s) of face are the resting face
    /bridge/cmd/mute_face   i         1 mutes the face path, 0 unmutes
    /bridge/cmd/mute_voice  i         1 mutes the voice path, 0 unmutes
    /bridge/cmd/rate        f         tick rate in Hz (1-120)
    /bridge/cmd/record_start [s]      start recording states to a JSONL file
    /bridge/cmd/record_stop
    /bridge/cmd/status                send a health message now
    /sensor/<name>          f         a body sensor reading (bridge.sensors), when sensors are enabled

Malformed packets and unknown addresses are logged and ignored; nothing here can stop the bridge. Messages beyond
``commands_per_s`` (token bucket, shared by all senders: UDP senders cannot be told apart reliably) are dropped
and counted, so a flood cannot starve the pipeline or flood the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

log = logging.getLogger(__name__)
PREFIX = "/bridge/cmd/"
SENSOR_PREFIX = "/sensor/"


def osc_to_command(address: str, args: tuple) -> dict:
    """Translate one OSC control message into the JSON command form."""
    name = address[len(PREFIX):] if address.startswith(PREFIX) else address
    a = args[0] if args else None
    if name in ("mute_face", "mute_voice"):
        return {"cmd": "mute", "target": name[5:], "on": bool(a) if isinstance(a, (int, float)) else a}
    if name == "rate":
        return {"cmd": "rate", "hz": a}
    if name == "calibrate":
        return {"cmd": "calibrate", **({"seconds": a} if a is not None else {})}
    if name == "record_start":
        return {"cmd": "record_start", **({"path": a} if isinstance(a, str) else {})}
    return {"cmd": name}


class OscControlServer:
    def __init__(self, host: str, port: int, handler: Callable[[dict], dict], commands_per_s: float = 100.0,
                 sensor_sink: Callable[[str, object], tuple[bool, str]] | None = None,
                 sensors_per_s: float = 2000.0):
        self.host, self.port, self.handler = host, port, handler
        self.sensor_sink = sensor_sink
        self.sensor_messages = 0
        self.sensor_refused = 0
        self._s_rate = float(sensors_per_s)
        self._s_tokens = self._s_rate
        self._t_s_tokens = time.monotonic()
        self.received = 0
        self.refused = 0
        self.flood_drops = 0
        self._rate = float(commands_per_s)
        self._tokens = self._rate
        self._t_tokens = time.monotonic()
        d = Dispatcher()
        d.map(PREFIX + "*", self._on)
        if sensor_sink is not None:
            d.map(SENSOR_PREFIX + "*", self._sensor)
        d.set_default_handler(self._unknown)
        self._server: BlockingOSCUDPServer | None = None
        self._dispatcher = d
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._server = BlockingOSCUDPServer((self.host, self.port), self._dispatcher)
        except OSError as e:
            log.error("OSC control port %s:%d unavailable (%s); commands over OSC are off. "
                      "Set osc.control_port (0 disables it).", self.host, self.port, e)
            return
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="osc-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._t_tokens) * self._rate)
        self._t_tokens = now
        if self._tokens < 1.0:
            self.flood_drops += 1
            if self.flood_drops in (1, 100, 1000) or self.flood_drops % 100000 == 0:
                log.warning("OSC control messages arrive faster than %.0f/s; dropping (%d so far)", self._rate,
                            self.flood_drops)
            return False
        self._tokens -= 1.0
        return True

    def _on(self, address: str, *args) -> None:
        self.received += 1
        if not self._allow():
            return
        try:
            reply = self.handler(osc_to_command(address, args))
            if not reply.get("ok"):
                self.refused += 1
        except Exception:  # never let a command take the server down
            self.refused += 1
            log.exception("OSC command %s %r failed", address, args)

    def _sensor(self, address: str, *args) -> None:
        """``/sensor/<name> f``: a body sensor reading (own token bucket: sensors may send fast)."""
        now = time.monotonic()
        self._s_tokens = min(self._s_rate, self._s_tokens + (now - self._t_s_tokens) * self._s_rate)
        self._t_s_tokens = now
        self.sensor_messages += 1
        if self._s_tokens < 1.0:
            self.sensor_refused += 1
            return
        self._s_tokens -= 1.0
        name = address[len(SENSOR_PREFIX):]
        value = args[0] if len(args) == 1 else None
        try:
            ok, why = self.sensor_sink(name, value) if "/" not in name else (False, "nested address")
        except Exception:  # noqa: BLE001 - never let a reading take the server down
            ok, why = False, "failed"
            log.exception("sensor message %s %r failed", address, args)
        if not ok:
            self.sensor_refused += 1
            if self.sensor_refused in (1, 10, 100, 1000) or self.sensor_refused % 100000 == 0:
                log.warning("refused sensor reading %s %r: %s (%d refused so far)", address, args, why,
                            self.sensor_refused)

    def _unknown(self, address: str, *args) -> None:
        self.refused += 1
        if not self._allow():
            return
        log.info("ignored OSC message %s %r (not a /bridge/cmd/ command)", address, args)
