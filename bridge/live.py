"""Build a live ``Bridge`` from a configuration: sources, face tracker, model, outputs, monitor, OSC control.

Every start-up problem becomes a :class:`StartupError` whose message says what is wrong and what to do. A missing
camera or microphone is not fatal while the other one works; missing both is."""

from __future__ import annotations

import logging

from bridge.config import Config
from bridge.model.affect import WeightsError
from bridge.output.hub import OutputHub, warn_if_exposed
from bridge.pipeline import Bridge, load_model

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    pass


def build_bridge(cfg: Config) -> Bridge:
    import torch

    torch.set_num_threads(cfg.model.threads)
    try:
        model = load_model(cfg)
    except WeightsError as e:
        raise StartupError(str(e)) from None

    audio_src = video_src = tracker = None
    missing = []
    if cfg.audio.enabled:
        from bridge.capture.audio import open_audio

        try:
            audio_src = open_audio(cfg.audio, cfg.sources)
        except Exception as e:  # no microphone / undecodable file: run on what we have
            missing.append(f"audio ({cfg.audio.source}): {e}")
    if cfg.video.enabled:
        from bridge.capture.video import open_video
        from bridge.features import face_model as fm
        from bridge.features.face import FaceTracker

        try:
            path = fm.resolve(cfg.video.face_model)
        except fm.FaceModelError as e:
            raise StartupError(str(e)) from None
        try:
            video_src = open_video(cfg.video, cfg.sources)
            tracker = FaceTracker(str(path), cfg.video.min_detection_confidence, cfg.video.max_input_side,
                                  small_faces=cfg.video.small_faces, num_faces=cfg.people.num_faces,
                                  expression_fps=cfg.video.expression_fps, search_fps=cfg.people.search_fps)
            tracker.prepare()  # every landmarker of the detector-on-demand scheme now, not when a visitor comes
        except Exception as e:
            missing.append(f"video ({cfg.video.source}): {e}")
            video_src = None
    if audio_src is None and video_src is None:
        why = "\n  ".join(missing) if missing else "both disabled (--no-audio and --no-video)"
        raise StartupError(f"no input to work with:\n  {why}\nRun `emotion-bridge devices` to see what is "
                           f"available, then pass --audio / --video (or set them in the config).")
    for m in missing:
        log.warning("running without %s", m)

    return attach_outputs(Bridge(cfg, model, audio_src, video_src, tracker, hub=None), cfg)


def attach_outputs(bridge: Bridge, cfg: Config) -> Bridge:
    """Give a bridge (live, simulated or replay) its OutputHub, monitor page and OSC control server."""
    hub = OutputHub(cfg, on_command=bridge.handle_command)
    bridge.hub = hub
    extras = []
    if cfg.monitor.enabled:
        try:
            from bridge.monitor.server import MonitorServer

            ws = hub.ws
            analyzer = None
            if cfg.analyze.enabled:
                from bridge.analyze import Analyzer

                analyzer = Analyzer(cfg)
            mon = MonitorServer(cfg.monitor.host, cfg.monitor.port,  # a callable: websocket.port 0 is known at start
                                ws_port=(lambda: ws.port) if ws is not None else cfg.websocket.port,
                                token=cfg.websocket.token, analyzer=analyzer)
            extras.append(mon)
        except ImportError:
            log.warning("browser monitor not available in this build")
    if cfg.osc.control_port:
        from bridge.output.control import OscControlServer

        warn_if_exposed("OSC control", cfg.osc.control_host)
        extras.append(OscControlServer(cfg.osc.control_host, cfg.osc.control_port, bridge.handle_command,
                                       sensor_sink=bridge.sensors.push if bridge.sensors is not None else None))
    if hub.mqtt is not None and bridge.sensors is not None:
        hub.mqtt.on_sensor = bridge.sensors.push
    bridge.extras = extras
    return bridge
