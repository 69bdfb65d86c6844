"""One process clock for every timestamp: ``time.perf_counter`` (monotonic, sub-millisecond on every OS;
``time.monotonic`` ticks at ~15 ms on Windows). ``to_wall`` maps it to seconds since the epoch for the wire."""

from __future__ import annotations

import time

now = time.perf_counter
_OFFSET = time.time() - time.perf_counter()


def to_wall(t: float) -> float:
    return t + _OFFSET


def wall_now() -> float:
    return time.time()
