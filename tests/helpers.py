"""Small helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest


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
