"""One process clock for every timestamp: ``time.perf_counter`` (monotonic, sub-millisecond on every OS;
``time.monotonic`` ticks at ~15 ms on Windows). ``to_wall`` maps it to seconds since the epoch for the wire.

The mapping is taken from the wall clock at each call, not once at start-up: the wall clock is set while the bridge
runs (NTP corrections, a VM resumed, Windows' time service), and ``perf_counter`` drifts from it by tens of ppm on
some PCs -- seconds after a week. With a fixed offset every ``t_capture``/``t_emit`` on the wire moved away from the
receiver's own clock (the monitor's and TouchDesigner's "delay" = their clock - ``t_emit``) and from the health
message's ``t``; a CI run whose clock was stepped saw states seconds away from the health message that was made
beside them."""

from __future__ import annotations

import time

now = time.perf_counter


def to_wall(t: float) -> float:
    """``t`` (a ``now()`` reading) in seconds since the epoch, on the wall clock as it reads at this moment."""
    return t + (time.time() - time.perf_counter())


def wall_now() -> float:
    return time.time()
