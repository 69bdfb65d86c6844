"""configs/performance.yaml loads, only sets documented keys, and lowers what it says it lowers."""

from __future__ import annotations

from pathlib import Path

import yaml

from bridge.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_performance_preset_loads_and_lowers_the_face_rate():
    path = ROOT / "configs" / "performance.yaml"
    cfg, default = load_config(str(path), {}), Config()
    assert cfg.video.face_fps < default.video.face_fps
    assert 0 < cfg.video.idle_face_fps < default.video.idle_face_fps
    assert cfg.video.skip_unchanged > 0 == default.video.skip_unchanged
    assert cfg.model.tick_hz == default.model.tick_hz  # the model's time base is kept
    assert cfg.video.max_input_side == default.video.max_input_side
    documented = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    for section, keys in yaml.safe_load(path.read_text()).items():
        assert set(keys) <= set(documented[section]), f"{section}: keys not in default.yaml"
    # a flag still wins over the preset
    assert load_config(str(path), {"video.face_fps": 30.0}).video.face_fps == 30.0
