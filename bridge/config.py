"""Validated configuration. Precedence: built-in defaults -> YAML file -> CLI flags.

Every key is documented in ``configs/default.yaml`` (a test checks that file equals the defaults here).
An unknown key or a bad value raises :class:`ConfigError` naming the key path and what is allowed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_hostport(v: str) -> str:
    host, sep, port = str(v).rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {v!r}")
    if not port.isdigit() or not (1 <= int(port) <= 65535):
        raise ValueError(f"port must be an integer 1-65535, got {port!r}")
    return f"{host}:{int(port)}"


class AudioConfig(_Strict):
    enabled: bool = True
    source: Union[int, str] = "default"
    sample_rate: Literal[16000] = 16000
    block_ms: float = Field(20.0, gt=0, le=500)
    ring_seconds: float = Field(4.0, ge=0.5, le=60)
    frame_ms: float = Field(32.0, ge=8, le=128)
    hop_ms: float = Field(10.0, ge=2, le=64)
    window_s: float = Field(1.5, ge=0.2, le=8)
    n_mels: int = Field(40, ge=8, le=128)
    n_mfcc: int = Field(13, ge=4, le=40)
    pitch_min_hz: float = Field(65.0, ge=30, le=400)
    pitch_max_hz: float = Field(500.0, ge=100, le=2000)
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    # Google's speech embedding (bridge.features.speech_encoder) in the feature vector. Off by default: trained on
    # RAVDESS's two English sentences it learns their words, not the emotion, and does not carry over to another
    # language (docs/MODEL_CARD.md, "What carries over"). Weights record it; it must match them.
    speech_encoder: bool = False
    # site adaptation (bridge/features/site.py): learn this microphone, room and language from all the speech heard,
    # across visitors, and map the audio features onto the training population's. Installation state: a visitor
    # leaving or the reset command does not forget it. prior_s: seconds of speech before it carries half the weight;
    # memory_s: seconds of speech it remembers (exponential)
    site_adaptation: bool = True
    site_prior_s: float = Field(60.0, gt=0, le=36000)
    site_memory_s: float = Field(1800.0, gt=0, le=10**6)
    site_file: str | None = None  # keep what was learned across restarts in this file (saved every minute and on stop)


class VideoConfig(_Strict):
    enabled: bool = True
    source: Union[int, str] = 0
    width: int = Field(640, ge=64, le=7680)
    height: int = Field(480, ge=48, le=4320)
    fps: float = Field(30.0, gt=0, le=240)
    mirror: bool = True
    watchdog_s: float = Field(2.0, gt=0, le=60)
    face_model: str | None = None
    window_s: float = Field(0.5, ge=0.05, le=5)
    min_detection_confidence: float = Field(0.5, ge=0, le=1)
    max_input_side: int = Field(640, ge=64, le=4096)
    face_fps: float = Field(30.0, ge=0, le=240)
    skip_unchanged: float = Field(0.0, ge=0, le=64)
    idle_face_fps: float = Field(10.0, ge=0, le=240)
    # per-visitor neutral calibration of the face evidence (bridge/features/calibration.py): "auto" takes the first
    # calibration_s seconds of low expression as the resting face, "command" waits for the calibrate command,
    # "off" never corrects; forgotten after calibration_forget_s without a face (the visitor left)
    calibration: Literal["auto", "command", "off"] = "auto"
    small_faces: bool = True  # look for far-away faces (narrower than ~1/5 of the frame) in parts of the frame
    expression_fps: float = Field(10.0, ge=0, le=240)  # expression network per face at most this often; 0 = every frame
    # while every face is steady (expression and position barely changed between the landmarker's last two runs),
    # run the landmarker at most this often and hold the last observation on the frames in between; 0 = off
    steady_face_fps: float = Field(15.0, ge=0, le=240)
    steady_max_change: float = Field(0.05, gt=0, le=1)  # "barely": every blendshape moved by less than this
    # with several faces in view, the landmarker analyses at most this many faces a second in all (each run costs
    # one landmark pass per face): k faces get a run every k/faces_per_s s and the frames in between hold the last
    # observation, so a group costs about what one visitor at this rate costs; 0 = off (every face every frame)
    faces_per_s: float = Field(30.0, ge=0, le=1000)
    calibration_s: float = Field(2.0, gt=0, le=60)
    calibration_forget_s: float = Field(8.0, gt=0, le=3600)


class SourcesConfig(_Strict):
    speed: Literal["realtime", "max"] = "realtime"
    loop: bool = False
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(10.0, gt=0, le=600)


class ModelConfig(_Strict):
    weights: str | None = None
    tick_hz: float = Field(30.0, ge=1, le=120)
    reset_after_s: float = Field(8.0, gt=0, le=3600)
    threads: int = Field(1, ge=1, le=16)
    quantize: Literal["none", "int8"] = "none"
    # while the visitor is silent, the state is this share the face path's own reading and the rest the model's
    # (bridge.engine.FaceFusion; 0 = the model alone). Measured in docs/MODEL_CARD.md ("Face-only states")
    face_fusion: float = Field(0.5, ge=0, le=1)


class EventsConfig(_Strict):
    min_dwell_s: float = Field(0.6, ge=0, le=30)
    min_confidence: float = Field(0.25, ge=0, le=1)


class PeopleConfig(_Strict):
    num_faces: int = Field(4, ge=1, le=8)
    # how often a second the face detector looks for newcomers while fewer than num_faces are tracked (VIDEO mode;
    # bridge.features.face.FaceTracker): 3 = a newcomer is picked up within ~1/3 s, at ~2 ms of CPU per search
    search_fps: float = Field(3.0, gt=0, le=30)
    forget_s: float = Field(10.0, ge=0, le=3600)
    primary: Literal["largest", "speaking", "longest"] = "largest"
    attribution_s: float = Field(1.0, ge=0.3, le=5)
    attribution_min_corr: float = Field(0.3, ge=0, le=1)


class OscConfig(_Strict):
    enabled: bool = True
    targets: list[str] = Field(default_factory=lambda: ["127.0.0.1:7000"])
    blendshapes: bool = False
    control_host: str = "127.0.0.1"
    control_port: int = Field(7001, ge=0, le=65535)

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        return [_check_hostport(t) for t in v]


class WebSocketConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9980, ge=0, le=65535)
    token: str | None = None
    max_message_bytes: int = Field(65536, ge=256, le=16 * 1024 * 1024)
    max_queue: int = Field(8, ge=1, le=1024)


class MonitorConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9981, ge=0, le=65535)


class RecordConfig(_Strict):
    path: str | None = None
    features: bool = False


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str | None = None
    max_bytes: int = Field(5_000_000, ge=10_000)
    backups: int = Field(5, ge=0, le=100)


def _check_topic_level(v: str | None) -> str | None:
    if v is None:
        return v
    if not v or len(v) > 64 or not all(c.isascii() and (c.isalnum() or c in "_.-") for c in v):
        raise ValueError("use 1-64 letters, digits, '_', '.' or '-' (it becomes one MQTT topic level and part "
                         "of OSC addresses)")
    return v


class MqttConfig(_Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    site: str = "default"
    bridge_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    tls_insecure: bool = False
    keepalive_s: int = Field(10, ge=2, le=3600)
    reconnect_min_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(8.0, gt=0, le=600)
    queue: int = Field(256, ge=8, le=100_000)
    flat: bool = False
    max_message_bytes: int = Field(65536, ge=256, le=16 * 1024 * 1024)

    _site = field_validator("site", "bridge_id")(classmethod(lambda cls, v: _check_topic_level(v)))


class RoomConfig(_Strict):
    rate_hz: float = Field(10.0, ge=1, le=120)
    stale_s: float = Field(3.0, gt=0, le=3600)
    forget_s: float = Field(300.0, gt=0, le=86400)
    osc_targets: list[str] = Field(default_factory=lambda: ["127.0.0.1:7002"])
    ws_host: str = "127.0.0.1"
    ws_port: int = Field(9982, ge=0, le=65535)
    osc_rows: bool = True

    @field_validator("osc_targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        return [_check_hostport(t) for t in v]


class SensorChannel(_Strict):
    unit: str = ""
    min: float
    max: float
    stale_s: float = Field(5.0, gt=0, le=3600)


def _default_channels() -> dict[str, SensorChannel]:
    return {"heart_rate": SensorChannel(unit="bpm", min=30.0, max=220.0),
            "eda": SensorChannel(unit="uS", min=0.01, max=100.0)}


class SensorsConfig(_Strict):
    enabled: bool = True
    channels: dict[str, SensorChannel] = Field(default_factory=_default_channels)
    baseline_s: float = Field(20.0, ge=1, le=3600)
    baseline_min_samples: int = Field(5, ge=2, le=100_000)
    fusion_weight: float = Field(0.0, ge=0, le=1)
    fusion_channels: list[str] = Field(default_factory=lambda: ["heart_rate", "eda"])

    @field_validator("channels")
    @classmethod
    def _names(cls, v: dict) -> dict:
        for name, ch in v.items():
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise ValueError(f"sensor name {name!r}: use letters, digits, '_' or '-'")
            if not ch.min < ch.max:
                raise ValueError(f"sensor {name}: min must be below max")
        return v


class AnalyzeConfig(_Strict):
    enabled: bool = True
    max_bytes: int = Field(50_000_000, ge=1024, le=2_000_000_000)
    token: str | None = None


class Config(_Strict):
    audio: AudioConfig = Field(default_factory=AudioConfig)
    video: VideoConfig = Field(default_factory=VideoConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    people: PeopleConfig = Field(default_factory=PeopleConfig)
    osc: OscConfig = Field(default_factory=OscConfig)
    websocket: WebSocketConfig = Field(default_factory=WebSocketConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    record: RecordConfig = Field(default_factory=RecordConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    room: RoomConfig = Field(default_factory=RoomConfig)
    sensors: SensorsConfig = Field(default_factory=SensorsConfig)
    analyze: AnalyzeConfig = Field(default_factory=AnalyzeConfig)


class ConfigError(ValueError):
    """A configuration problem; the message names the key path and what is allowed."""


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    m: Any = model
    for part in loc[:-1]:
        f = m.model_fields.get(part) if isinstance(part, str) else None
        if f is None or not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)):
            return []
        m = f.annotation
    return sorted(m.model_fields)


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in {"int", "str"}))
        path = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(Config, loc)
            lines.append(f"  {path}: unknown key; allowed keys here: {', '.join(allowed)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {path}: {msg} (got {e.get('input')!r})")
    lines.append("See configs/default.yaml for every key with its meaning, or run `emotion-bridge config`.")
    return "\n".join(dict.fromkeys(lines))


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_dotted(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults -> YAML file at ``path`` -> ``overrides`` (dotted keys, e.g. ``{"osc.targets": [...]}``)."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}. Copy configs/default.yaml and edit it.")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (audio:, video:, ...)")
        data = loaded
        source = str(p)
    for k, v in (overrides or {}).items():
        set_dotted(data, k, v)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(e, source + (" + command-line flags" if overrides else ""))) from None


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
