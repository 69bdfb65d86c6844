"""Small helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def face_model_path() -> str:
    """The MediaPipe face model (conftest points BRIDGE_FACE_MODEL at ../shared when it is there)."""
    p = os.environ.get("BRIDGE_FACE_MODEL")
    if p and Path(p).is_file():
        return p
    pytest.skip("no MediaPipe face model (set BRIDGE_FACE_MODEL)")


class OscReceiver(threading.Thread):
    """A real UDP receiver: state bundles and /bridge/health messages, with their arrival time."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.bundles: list[tuple[float, dict]] = []
        self.health: list[tuple[float, dict]] = []
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            t = time.monotonic()
            if data.startswith(b"#bundle"):
                self.bundles.append((t, {m.address: m.params[0] for m in OscBundle(data)
                                         if isinstance(m, OscMessage)}))
            elif data.startswith(b"/bridge/health"):
                self.health.append((t, json.loads(OscMessage(data).params[0])))

    def close(self):
        self.stop = True
        self.join(1)
        self.sock.close()


def wait_for(cond, timeout: float = 10.0) -> bool:
    """Poll ``cond`` every 20 ms until it is true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())
