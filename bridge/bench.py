"""``emotion-bridge bench``: a thin front for ``benchmarks/bench.py``, where the benchmark lives (it ships with the
source checkout, next to ``bridge/``; see docs/PERFORMANCE.md for what it measures and how)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

IMPL = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


class BenchUnavailable(RuntimeError):
    pass


def load() -> ModuleType:
    """Import ``benchmarks/bench.py`` from the checkout this package sits in."""
    name = "emotion_bridge_benchmarks_bench"
    if name in sys.modules:
        return sys.modules[name]
    if not IMPL.is_file():
        raise BenchUnavailable(f"the benchmark is not installed with the package: {IMPL} is missing. "
                               f"Run it from a source checkout (git clone ...; pip install -e '.[bench]').")
    spec = importlib.util.spec_from_file_location(name, IMPL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def run(quick: bool = False, out: str | None = None, only: list[str] | None = None, face_model: str | None = None,
        weights: str | None = None, report: str | None = None, workdir: str | None = None, progress=None,
        overrides: dict | None = None, command: str | None = None) -> dict:
    """Run the benchmark (sections ``only``, default all) and return the results; JSON to ``out`` if given."""
    return load().run_bench(quick=quick, out=out, only=only, face_model=face_model, weights=weights, report=report,
                            workdir=workdir, progress=progress, overrides=overrides, command=command)


def print_table(results: dict, console=None) -> None:
    load().print_table(results, console)


def sections() -> tuple[str, ...]:
    return tuple(load().SECTIONS)
