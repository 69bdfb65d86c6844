"""Configuration: defaults documented, precedence, and errors that name the key."""

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_documents_exactly_the_defaults():
    data = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    assert Config.model_validate(data) == Config()
    text = (ROOT / "configs" / "default.yaml").read_text()
    for section, fields in Config.model_fields.items():
        for key in fields.annotation.model_fields:
            line = next((ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:")), None)
            assert line is not None, f"{section}.{key} missing from configs/default.yaml"
    for preset in (ROOT / "configs").glob("*.yaml"):
        load_config(preset)


def test_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  tick_hz: 20\nosc:\n  targets: ['10.0.0.2:9000']\n")
    cfg = load_config(f, {"model.tick_hz": 15})
    assert cfg.model.tick_hz == 15  # flag beats file
    assert cfg.osc.targets == ["10.0.0.2:9000"]  # file beats default
    assert cfg.websocket.port == 9980  # default


def test_unknown_key_names_path_and_allowed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("audio:\n  hopms: 5\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert "audio.hopms" in str(e.value) and "hop_ms" in str(e.value)


def test_bad_value_names_path_and_allowed():
    with pytest.raises(ConfigError) as e:
        load_config(None, {"sources.speed": "fast"})
    assert "sources.speed" in str(e.value) and "'realtime'" in str(e.value) and "'max'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, {"osc.targets": ["localhost"]})
    assert "osc.targets" in str(e.value) and "HOST:PORT" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, {"model.tick_hz": -3})
    assert "model.tick_hz" in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("audio: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


_values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.lists(st.integers(), max_size=3))


@settings(max_examples=200, deadline=None)
@given(section=st.sampled_from(sorted(Config.model_fields)), key=st.text(min_size=1, max_size=15), value=_values)
def test_any_input_is_accepted_or_refused_with_a_config_error(section, key, value):
    try:
        load_config(None, {f"{section}.{key}": value})
    except ConfigError as e:
        assert section in str(e)
