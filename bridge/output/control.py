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
and counted, so a flood cannot starve the pipeline or flood the log. A plain message is dropped on its first
bytes, before it is parsed (python-osc's parse and address match cost about 80 us a packet on a slow PC: a
10,000 packets/s flood took most of a core and the tick thread's GIL share with it); bundles are parsed, and each
message in them meets the same buckets.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from pythonosc.dispatcher import Dispatcher

log = logging.getLogger(__name__)
PREFIX = "/bridge/cmd/"
SENSOR_PREFIX = "/sensor/"
_PREFIX_B, _SENSOR_PREFIX_B = PREFIX.encode(), SENSOR_PREFIX.encode()
MAX_DATAGRAM = 65536


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
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._dispatcher = d
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            log.error("OSC control port %s:%d unavailable (%s); commands over OSC are off. "
                      "Set osc.control_port (0 disables it).", self.host, self.port, e)
            return
        sock.settimeout(0.2)  # how often the loop looks at the stop flag
        try:  # room for a burst of sensor/controller packets while the loop is descheduled (the OS caps it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        self._sock, self.port = sock, sock.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="osc-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2.0)
        if self._sock:
            self._sock.close()

    def _serve(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            try:
                data, sender = sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError as e:  # closed under us, or a transient error (ICMP port unreachable on Windows)
                if self._stop.is_set():
                    return
                log.debug("OSC control receive failed: %s", e)
                time.sleep(0.01)
                continue
            if self._drop_early(data):
                continue
            try:
                self._dispatcher.call_handlers_for_packet(data, sender)  # parse errors are dropped inside
            except Exception:  # noqa: BLE001 - nothing a sender does may end the loop
                self.refused += 1
                log.exception("OSC control packet of %d bytes from %s failed", len(data), sender)

    def _drop_early(self, data: bytes) -> bool:
        """A plain message whose bucket is empty, dropped (and counted) before it is parsed."""
        if data.startswith(_SENSOR_PREFIX_B) and self.sensor_sink is not None:
            if self._s_refill() >= 1.0:
                return False
            self.sensor_messages += 1
            self.sensor_refused += 1
            return True
        if not data.startswith(b"/") or self._refill() >= 1.0:
            return False
        if data.startswith(_PREFIX_B):
            self.received += 1
        else:
            self.refused += 1
        self._count_drop()
        return True

    def _refill(self) -> float:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._t_tokens) * self._rate)
        self._t_tokens = now
        return self._tokens

    def _s_refill(self) -> float:
        now = time.monotonic()
        self._s_tokens = min(self._s_rate, self._s_tokens + (now - self._t_s_tokens) * self._s_rate)
        self._t_s_tokens = now
        return self._s_tokens

    def _count_drop(self) -> None:
        self.flood_drops += 1
        if self.flood_drops in (1, 100, 1000) or self.flood_drops % 100000 == 0:
            log.warning("OSC control messages arrive faster than %.0f/s; dropping (%d so far)", self._rate,
                        self.flood_drops)

    def _allow(self) -> bool:
        if self._refill() < 1.0:
            self._count_drop()
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
        self.sensor_messages += 1
        if self._s_refill() < 1.0:
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
