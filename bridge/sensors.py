"""Body sensors in: heart rate, skin conductance (EDA) or any other named channel declared in ``sensors.channels``.

Readings arrive as OSC ``/sensor/<name> f`` on the control port (:mod:`bridge.output.control`) or MQTT
``emotion-bridge/<site>/<bridge_id>/sensor/<name>`` (:mod:`bridge.output.mqtt`), from any thread. Each tick
takes a :meth:`SensorHub.snapshot` into ``state.sensors`` (JSON) and ``/sensor/<name>/z`` (OSC).

* **Refused, counted, never fatal:** an unknown name, a value that is not a number, NaN/Inf, or a value outside
  the channel's ``[min, max]`` (e.g. a heart rate of 0 from a strap that lost contact). Counters by reason are in
  the health message (``sensors``).
* **Per-visitor baseline:** the first ``baseline_s`` seconds of readings of each visitor (at least
  ``baseline_min_samples``) give a mean and a standard deviation; after that ``z = (value - mean) / sd`` with
  ``sd`` floored at 5 % of the baseline mean (a very steady baseline must not turn noise into z = 30). Until then
  ``z`` is null and ``baseline`` is ``collecting``. A new visitor (the model's reset after ``model.reset_after_s``
  without a face or voice, or the ``reset`` command) starts a new baseline.
* **Staleness:** a channel with no reading for its ``stale_s`` is ``fresh: false``; its z is not sent over OSC and
  not fused. When readings return, the visitor's baseline is still there.
* **Fusion into arousal (off by default, ``fusion_weight: 0``):** ``arousal' = clip(arousal + w * tanh(mean_z / 2),
  -1, 1)`` with ``mean_z`` the mean z of the fresh ``fusion_channels`` with a ready baseline. Higher heart rate
  and skin conductance than the visitor's own baseline raise arousal, bounded by ``w``. There is no labelled
  physiological data here: the rule is a documented, tested transform, **not** a validated model.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from bridge import clock
from bridge.config import SensorChannel, SensorsConfig

SD_FLOOR_REL = 0.05


@dataclass
class _Channel:
    spec: SensorChannel
    value: float | None = None
    t_last: float | None = None
    n: int = 0
    base: list[float] = field(default_factory=list)
    t_base0: float | None = None
    mean: float | None = None
    sd: float | None = None

    def reset_baseline(self) -> None:
        self.base, self.t_base0, self.mean, self.sd = [], None, None, None


class SensorHub:
    def __init__(self, cfg: SensorsConfig):
        self.cfg = cfg
        self.channels = {name: _Channel(spec) for name, spec in cfg.channels.items()}
        self.lock = threading.Lock()
        self.accepted = 0
        self.refused = {"unknown": 0, "not_a_number": 0, "nan": 0, "out_of_range": 0}
        self.last_refusal = ""

    def _refuse(self, why: str, detail: str) -> tuple[bool, str]:
        self.refused[why] += 1
        self.last_refusal = detail
        return False, detail

    def push(self, name: str, value: object, t: float | None = None) -> tuple[bool, str]:
        """One reading; returns (accepted, why not). Thread-safe; O(1) apart from the baseline's end."""
        ch = self.channels.get(name) if isinstance(name, str) else None
        if ch is None:
            return self._refuse("unknown", f"unknown sensor {name!r}; declared: {', '.join(self.channels)} "
                                           f"(add it under sensors.channels)")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return self._refuse("not_a_number", f"{name}: {value[:40]!r} is not a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self._refuse("not_a_number", f"{name}: {type(value).__name__} is not a number")
        v = float(value)
        if not math.isfinite(v):
            return self._refuse("nan", f"{name}: {v} refused")
        if not ch.spec.min <= v <= ch.spec.max:
            return self._refuse("out_of_range", f"{name}: {v:g} {ch.spec.unit} outside "
                                                f"[{ch.spec.min:g}, {ch.spec.max:g}]")
        t = clock.now() if t is None else t
        with self.lock:
            ch.value, ch.t_last, ch.n = v, t, ch.n + 1
            if ch.mean is None:
                if ch.t_base0 is None:
                    ch.t_base0 = t
                ch.base.append(v)
                if t - ch.t_base0 >= self.cfg.baseline_s and len(ch.base) >= self.cfg.baseline_min_samples:
                    m = sum(ch.base) / len(ch.base)
                    sd = math.sqrt(sum((x - m) ** 2 for x in ch.base) / (len(ch.base) - 1))
                    ch.mean, ch.sd = m, max(sd, SD_FLOOR_REL * abs(m), 1e-9)
                    ch.base = []
            self.accepted += 1
        return True, ""

    def reset(self) -> None:
        """A new visitor: new baselines (the newest readings stay, they are the sensor's)."""
        with self.lock:
            for ch in self.channels.values():
                ch.reset_baseline()

    def snapshot(self, now: float) -> dict:
        """name -> {value, unit, z, age_ms, fresh, baseline} for every channel that has had a reading."""
        out = {}
        with self.lock:
            for name, ch in self.channels.items():
                if ch.t_last is None:
                    continue
                age = max(0.0, now - ch.t_last)
                fresh = age <= ch.spec.stale_s
                z = None if ch.mean is None or ch.value is None else (ch.value - ch.mean) / ch.sd
                out[name] = {"value": round(ch.value, 4), "unit": ch.spec.unit,
                             "z": None if z is None else round(z, 4), "age_ms": round(age * 1000.0, 1),
                             "fresh": fresh, "baseline": "ready" if ch.mean is not None else "collecting"}
        return out

    def fuse_arousal(self, arousal: float, snap: dict) -> float:
        """The documented rule (module docstring); the arousal unchanged when off or with no usable channel."""
        w = self.cfg.fusion_weight
        zs = [s["z"] for n, s in snap.items() if n in self.cfg.fusion_channels and s["fresh"] and s["z"] is not None]
        if w <= 0 or not zs:
            return arousal
        return fusion_rule(arousal, sum(zs) / len(zs), w)

    def health(self) -> dict:
        return {"accepted": self.accepted, "refused": dict(self.refused), "last_refusal": self.last_refusal}


def fusion_rule(arousal: float, mean_z: float, weight: float) -> float:
    return float(min(1.0, max(-1.0, arousal + weight * math.tanh(mean_z / 2.0))))
