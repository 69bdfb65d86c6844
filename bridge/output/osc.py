"""OSC output: one bundle per tick to every target, over UDP, never blocking the pipeline.

Encoding is apart from the socket (``encode_state``) so it can be tested against exact bytes. The socket is
non-blocking: a full send buffer drops the bundle, and a refused or unreachable target only counts an error —
sending goes on, so the patch picks the stream up again as soon as it listens.
"""

from __future__ import annotations

import logging
import socket

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from bridge.frames import AffectState
from bridge.output.schema import OSC_BLENDSHAPE_PREFIX, OSC_EVENT, OSC_HEALTH, osc_values

log = logging.getLogger(__name__)


def _msg(address: str, value: object):
    b = OscMessageBuilder(address=address)
    if isinstance(value, bool):
        b.add_arg(int(value), "i")
    elif isinstance(value, int):
        b.add_arg(value, "i")
    elif isinstance(value, float):
        b.add_arg(value, "f")
    else:
        b.add_arg(str(value), "s")
    return b.build()


def encode_state(state: AffectState, fps: float, latency_ms: float, blendshapes: dict[str, float] | None = None,
                 changed: str | None = None) -> bytes:
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, value in osc_values(state, fps, latency_ms):
        bundle.add_content(_msg(address, value))
    if blendshapes:
        for name, v in blendshapes.items():
            bundle.add_content(_msg(OSC_BLENDSHAPE_PREFIX + name, float(v)))
    if changed is not None:
        bundle.add_content(_msg(OSC_EVENT.address, changed))
    return bundle.build().dgram


def parse_target(t: str) -> tuple[str, int]:
    host, _, port = t.rpartition(":")
    return host.strip("[]"), int(port)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class OscSender:
    def __init__(self, targets: list[str]):
        self.targets = [parse_target(t) for t in targets]
        self._socks: dict[int, socket.socket] = {}
        self.sent = 0
        self.errors = 0
        self.last_error = ""
        self._target_errors: dict[tuple[str, int], str] = {}

    def _sock(self, family: int) -> socket.socket:
        s = self._socks.get(family)
        if s is None:
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setblocking(False)
            hosts = [h for h, _ in self.targets if _family(h) == family]
            if hosts and all(h in _LOOPBACK for h in hosts):
                # bound explicitly to loopback: otherwise the first sendto binds it to 0.0.0.0 (all interfaces)
                s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
            self._socks[family] = s
        return s

    def send_bytes(self, data: bytes) -> None:
        for host, port in self.targets:
            try:
                self._sock(_family(host)).sendto(data, (host, port))
                self.sent += 1
            except OSError as e:  # refused, unreachable, buffer full: count and carry on
                self.errors += 1
                if self._target_errors.get((host, port)) != str(e):  # once per target and error: no log flood
                    log.warning("OSC send to %s:%d failed: %s (will keep trying)", host, port, e)
                    self._target_errors[(host, port)] = str(e)
                self.last_error = str(e)

    def send_state(self, state: AffectState, fps: float, latency_ms: float,
                   blendshapes: dict[str, float] | None = None, changed: str | None = None) -> None:
        self.send_bytes(encode_state(state, fps, latency_ms, blendshapes, changed))

    def send_health(self, text: str) -> None:
        self.send_bytes(_msg(OSC_HEALTH.address, text).dgram)

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()

    def health(self) -> dict:
        return {"sent": self.sent, "errors": self.errors, "last_error": self.last_error}
