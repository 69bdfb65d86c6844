"""Wiring: sources -> FeatureEngine -> AffectRuntime -> OutputHub, live (threads) or on files (virtual clock).

Live threads, each supervised (an unexpected exception is logged, counted in health and the worker restarted):
  audio   drains the microphone ring into the audio features
  face    runs the face landmarker on the newest camera frame, then kicks the ticker
  ticker  steps the model as soon as a face result arrives (so a state leaves within milliseconds of the newest
          frame), or on a timer at ``model.tick_hz`` while no camera result is flowing
  health  once a second: per-source status and counters to /bridge/health and the WebSocket
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bridge import clock
from bridge.capture.video import FrameGate
from bridge.config import Config
from bridge.engine import AffectRuntime, FeatureEngine
from bridge.features.calibration import describe as describe_calibration
from bridge.frames import AffectState
from bridge.labels import LABELS
from bridge.model.affect import StreamingAffectModel, WeightsError
from bridge.people import PeopleEngine

log = logging.getLogger(__name__)
SITE_SAVE_S = 60.0  # how often the site adaptation is written to audio.site_file


class Worker:
    """A supervised thread: ``body()`` is called in a loop until stop; exceptions restart it with backoff."""

    def __init__(self, name: str, body: Callable[[], None], stop: threading.Event):
        self.name, self.body, self._stop = name, body, stop
        self.restarts = 0
        self.last_error = ""
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self.body()
                backoff = 0.1
            except Exception as e:  # supervised: report and restart, never a silent stall
                self.restarts += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("worker %s crashed (restart %d)", self.name, self.restarts)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def health(self) -> dict:
        return {"alive": self.thread.is_alive(), "restarts": self.restarts, "last_error": self.last_error}


def load_model(cfg: Config, weights: str | None = None) -> StreamingAffectModel:
    model = StreamingAffectModel.load(weights or cfg.model.weights, cfg.model.quantize)
    if "label_bias" not in model.meta:
        log.info("these weights carry no label calibration (trained before it existed): a new visitor's voice leans "
                 "to the loud labels; `emotion-bridge calibrate-labels WEIGHTS TRAINING_DATA` adds it")
    rt = AffectRuntime(model, cfg.events, cfg.model.reset_after_s, cfg.model.face_fusion)
    problems = rt.check_schema(cfg.audio, cfg.video, cfg.model.tick_hz)
    if problems:
        raise WeightsError("the model weights were trained on other features than this configuration computes:\n  "
                           + "\n  ".join(problems)
                           + "\nUse the configuration the weights were trained with, or retrain "
                             "(`emotion-bridge train`).")
    return model


def site_adaptation(cfg: Config, model: StreamingAffectModel):
    """The site adaptation for these weights (``audio.site_adaptation``), or None: off, or weights trained before
    it existed (they carry no ``site_reference``; retrain to get it)."""
    if not cfg.audio.site_adaptation:
        return None
    from bridge.features.site import SiteAdaptation

    site = SiteAdaptation.from_meta(model.meta, cfg.model.tick_hz, cfg.audio.site_prior_s, cfg.audio.site_memory_s)
    if site is None:
        log.info("site adaptation off: these weights carry no site_reference (weights from before it existed; "
                 "retrain with `emotion-bridge train` to get it)")
    return site


class Bridge:
    def __init__(self, cfg: Config, model: StreamingAffectModel, audio_source=None, video_source=None,
                 face_tracker=None, hub=None, on_state: Callable[[AffectState], None] | None = None):
        self.cfg = cfg
        self.engine = FeatureEngine(cfg.audio, cfg.video, use_audio=audio_source is not None,
                                    use_face=video_source is not None)
        self.engine.site = site_adaptation(cfg, model)
        if self.engine.site is not None and cfg.audio.site_file:
            self.engine.site.load(cfg.audio.site_file)
        self._site_saved = time.monotonic()
        self.runtime = AffectRuntime(model, cfg.events, cfg.model.reset_after_s, cfg.model.face_fusion)
        self.people = PeopleEngine(cfg, model, self.runtime, self.engine.audio_dim)  # a state per person
        self.audio_src, self.video_src, self.tracker, self.hub = audio_source, video_source, face_tracker, hub
        self.on_state = on_state
        self.on_frame: Callable[[np.ndarray, object], None] | None = None  # (image, FaceObservation): the preview
        self._stop = threading.Event()
        self._kick = threading.Condition()
        self._kicked = False
        self._t_face_result = -1e9
        self._last_tick = -1e9
        self._prev_tick = -1e9  # the tick before the last one (the kicked ticks' rate limit spans two periods)
        self.tick_hz = cfg.model.tick_hz
        self.last_state: AffectState | None = None
        self.stage_s = {"audio": 0.0, "face": 0.0, "tick": 0.0}
        self.face_frames = 0
        # which camera frames the landmarker sees: at most video.face_fps, and a still frame reuses the last result
        self.gate = FrameGate.from_config(cfg.video)
        self._last_obs = None
        self._ticks_since_face = 0
        self._audio_was_lost = False
        self.recorder = None
        self.extras: list = []  # monitor page, OSC control: anything with start()/stop()
        self.sensors = None  # body sensors (bridge.sensors.SensorHub): state.sensors, optional arousal fusion
        if cfg.sensors.enabled:
            from bridge.sensors import SensorHub

            self.sensors = SensorHub(cfg.sensors)
        self._sensor_resets = 0
        self.workers: list[Worker] = []
        if audio_source is not None:
            self.workers.append(Worker("audio", self._audio_body, self._stop))
        if video_source is not None:
            self.workers.append(Worker("face", self._face_body, self._stop))
        self.workers.append(Worker("ticker", self._tick_body, self._stop))
        self.workers.append(Worker("health", self._health_body, self._stop))

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self.hub:
            self.hub.start()
        for x in self.extras:
            x.start()
        for s in (self.audio_src, self.video_src):
            if s is not None:
                s.start()
        for w in self.workers:
            w.start()
        if self.cfg.record.path:
            ok, detail = self.start_recording(self.cfg.record.path)
            if not ok:
                log.error("%s", detail)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._kick:
            self._kick.notify_all()
        deadline = time.monotonic() + timeout
        for s in (self.audio_src, self.video_src):
            if s is not None:
                s.stop(timeout=max(0.1, deadline - time.monotonic()))
        for w in self.workers:
            w.thread.join(max(0.05, deadline - time.monotonic()))
        if self.tracker is not None:
            self.tracker.close()
        for x in self.extras:
            x.stop()
        self.stop_recording()
        self.save_site()
        if self.hub:
            self.hub.stop()

    def run(self, duration: float | None = None, status: Callable[[Bridge], None] | None = None) -> None:
        """Block until ``duration`` passes, both file sources ended, or stop() (e.g. from a signal handler)."""
        t_end = None if duration is None else time.monotonic() + duration
        while not self._stop.is_set():
            if t_end is not None and time.monotonic() >= t_end:
                break
            if self.sources_ended():
                log.info("all file sources ended")
                break
            if status:
                status(self)
            self._stop.wait(0.25)

    def sources_ended(self) -> bool:
        srcs = [s for s in (self.audio_src, self.video_src) if s is not None]
        return bool(srcs) and all(getattr(s, "ended", False) for s in srcs)

    # ---------------------------------------------------------------- workers
    def _audio_body(self) -> None:
        blocks = self.audio_src.read(timeout=0.1)
        status = self.audio_src.health().get("status", "ok")
        if status != "ok" and not blocks:
            if not self._audio_was_lost:
                self.engine.audio_lost()
                self._audio_was_lost = True
            if getattr(self.audio_src, "ended", False):
                self._stop.wait(0.1)  # an ended file returns at once: without this wait the worker would spin
            return
        t0 = time.perf_counter()
        for b in blocks:
            self._audio_was_lost = False
            self.engine.push_audio(b.samples, b.t_end)
        self.stage_s["audio"] += time.perf_counter() - t0

    def _face_body(self) -> None:
        frame = self.video_src.wait_frame(timeout=0.1)
        if frame is None:
            if getattr(self.video_src, "ended", False):
                self._stop.wait(0.1)  # an ended file returns at once: without this wait the worker would spin
            return
        t0 = time.perf_counter()
        image = frame.image
        obs = face_observation(self.gate, self.tracker, image, frame.t_capture, self._last_obs)
        if obs is None:  # above video.face_fps: this frame is not analysed
            return
        self._last_obs = obs
        feed_faces(self.engine, self.people, self.tracker, obs)
        self.stage_s["face"] += time.perf_counter() - t0
        if self.on_frame is not None:
            self.on_frame(image, obs)
        self.face_frames += 1
        self._t_face_result = clock.now()
        with self._kick:
            self._kicked = True
            self._kick.notify()

    def _tick_body(self) -> None:
        """One tick. With faces flowing, a face result kicks it (fallback deadline 1.5 periods after the last tick);
        otherwise it runs on a fixed schedule: it waits until the next deadline, not a whole period after the last
        tick finished, so the time a tick takes does not slow the rate (under load, 30/s stayed 30/s instead of
        drifting to 18-25/s). A schedule that fell more than a period behind restarts from now: no burst of
        catch-up ticks."""
        period = 1.0 / self.tick_hz
        now = clock.now()
        per_face = max(1, round(self.gate.interval * self.tick_hz))  # ticks per analysed face frame
        face_flowing = now - self._t_face_result < 3 * period * per_face
        # with faces analysed slower than the tick rate (video.face_fps), the ticks between two face results run on
        # the timer and the one due with the next face result waits for it (1.5 periods at most)
        wait_face = face_flowing and self._ticks_since_face >= per_face - 1
        deadline = self._last_tick + period * (1.5 if wait_face else 1.0)
        with self._kick:
            if not self._kicked and deadline > now:
                self._kick.wait(timeout=deadline - now)
            kicked, self._kicked = self._kicked, False
        if self._stop.is_set():
            return
        now = clock.now()
        if kicked:
            # never faster than the tick rate: at least 0.6 periods after the last tick and 2 after the one before.
            # A face result that comes sooner is ticked at that moment rather than dropped: face results do not come
            # evenly spaced (a frame held while the face is steady, video.steady_face_fps, is ready ~1 ms after
            # capture, an analysed one ~10-15 ms after), and dropping them cost a fifth of the states
            earliest = max(self._last_tick + 0.6 * period, self._prev_tick + 2.0 * period)
            if now < earliest:
                if self._stop.wait(earliest - now):
                    return
                now = clock.now()
            self._prev_tick, self._last_tick = self._last_tick, now
            self._ticks_since_face = 0
        else:
            if now < deadline - 1e-3:
                return  # woke early (spurious wake-up): wait again
            self._prev_tick, self._last_tick = self._last_tick, (deadline if now - deadline < period else now)
            self._ticks_since_face += 1
        self.tick(now)

    def tick(self, now: float) -> AffectState:
        t0 = time.perf_counter()
        vec, info = self.engine.vector(now)
        state, prev = self.people.step(vec, info, now)
        if self.recorder is not None and self.recorder.features:
            state.features = vec
        self.apply_sensors(state, now)
        self.stage_s["tick"] += time.perf_counter() - t0
        if self.hub:
            bs = None
            if self.cfg.osc.blendshapes:  # the face of the classic stream (the primary person's, with several)
                raw = info.blendshapes if self.people.single else self.people.primary_blendshapes()
                if raw is not None:
                    from bridge.features.face import BLENDSHAPE_NAMES
                    bs = dict(zip(BLENDSHAPE_NAMES, raw.tolist()))
            self.hub.publish(state, changed=state.label if prev else None, previous=prev, blendshapes=bs)
        self.last_state = state
        if self.on_state:
            self.on_state(state)
        return state

    def apply_sensors(self, state: AffectState, now: float) -> None:
        """Body sensors into the state (``state.sensors``; arousal fusion when ``sensors.fusion_weight`` > 0).
        A model reset (new visitor) starts new sensor baselines."""
        if self.sensors is None:
            return
        if self.runtime.resets != self._sensor_resets:
            self._sensor_resets = self.runtime.resets
            self.sensors.reset()
        snap = self.sensors.snapshot(now)
        state.sensors = snap
        if snap and self.cfg.sensors.fusion_weight > 0:
            state.arousal = self.sensors.fuse_arousal(state.arousal, snap)

    def _health_body(self) -> None:
        self._stop.wait(1.0)
        if self._stop.is_set():
            return
        if time.monotonic() - self._site_saved >= SITE_SAVE_S:
            self.save_site()
        if self.hub is not None:
            self.hub.publish_health(self.health())

    def save_site(self) -> None:
        """Write the site adaptation to ``audio.site_file`` (if set); a failure is logged, never raised."""
        self._site_saved = time.monotonic()
        site, path = self.engine.site, self.cfg.audio.site_file
        if site is None or not path:
            return
        with self.engine.lock:  # a copy of the statistics under the lock; the disk write outside it (the ticks wait)
            snap = site.copy()
        try:
            snap.save(path)
        except OSError as e:
            log.error("cannot save the site adaptation to %s (%s): check the path and its permissions; what was "
                      "learned is kept in memory", path, e)

    def health(self) -> dict:
        src = {}
        for name, s in (("audio", self.audio_src), ("video", self.video_src)):
            src[name] = s.health() if s is not None else {"status": "off"}
        h = {"sources": src, "workers": {w.name: w.health() for w in self.workers},
             "model": {"resets": self.runtime.resets, "seq": self.runtime.seq,
                       "muted": {"face": self.engine.face_muted, "voice": self.engine.audio_muted},
                       "face_calibration": describe_calibration(self.engine.calibration),
                       "site": self.engine.site.health() if self.engine.site is not None else {"status": "off"}},
             "t": clock.wall_now()}
        h["people"] = self.people.health()
        if self.hub:
            h["outputs"] = self.hub.health()
        if self.recorder is not None:
            h["recorder"] = self.recorder.health()
        if self.sensors is not None:
            h["sensors"] = self.sensors.health()
        return h

    # ---------------------------------------------------------------- control
    def start_recording(self, path: str) -> tuple[bool, str]:
        from bridge.output.recorder import Recorder

        if not isinstance(path, str) or not path:
            return False, "record_start needs a file path"
        if self.recorder is not None and self.recorder.active:
            return False, f"already recording to {self.recorder.path}"
        rec = Recorder(path, self.cfg.record.features)
        try:
            rec.start()
        except (OSError, ValueError) as e:  # ValueError: a path with a NUL byte
            return False, f"cannot record to {path}: {e}"
        self.recorder = rec
        if self.hub:
            self.hub.sinks.append(rec)
        return True, f"recording to {path}"

    def stop_recording(self) -> tuple[bool, str]:
        rec, self.recorder = self.recorder, None
        if rec is None:
            return False, "not recording"
        if self.hub and rec in self.hub.sinks:
            self.hub.sinks.remove(rec)
        rec.stop()
        return True, f"recorded {rec.written} states to {rec.path}"

    def handle_command(self, msg: dict) -> dict:
        """Commands from the patch (OSC or WebSocket). Unknown or malformed ones are refused, never fatal."""
        cmd = msg.get("cmd")
        ok, detail = True, ""
        if cmd == "reset":
            self.runtime.reset()
            self.engine.reset()
            self.people.reset()
            detail = "model state reset"
        elif cmd == "mute":
            target, on = msg.get("target"), msg.get("on", True)
            if target not in ("face", "voice") or not isinstance(on, (bool, int)):
                ok, detail = False, 'mute needs "target": "face"|"voice" and "on": true|false'
            else:
                setattr(self.engine, "face_muted" if target == "face" else "audio_muted", bool(on))
                if target == "face":
                    self.people.face_muted = bool(on)
                detail = f"{target} {'muted' if on else 'unmuted'}"
        elif cmd == "calibrate":
            sec = msg.get("seconds", self.cfg.video.calibration_s)
            if not isinstance(sec, (int, float)) or isinstance(sec, bool) or not (0.2 <= sec <= 30):
                ok, detail = False, "calibrate takes seconds between 0.2 and 30 (default video.calibration_s)"
            elif self.cfg.video.calibration == "off" or self.engine.calibration.reference is None:
                ok, detail = False, ("face calibration is off (video.calibration: off)"
                                     if self.cfg.video.calibration == "off" else
                                     "face calibration unavailable: the FER+ head's neutral reference is missing")
            else:
                self.engine.calibrate(float(sec))
                self.people.calibrate(float(sec))  # several visitors: everyone in view
                detail = f"calibrating: the next {float(sec):g} s of face are the visitor's resting face"
        elif cmd == "rate":
            hz = msg.get("hz")
            if not isinstance(hz, (int, float)) or isinstance(hz, bool) or not (1 <= hz <= 120):
                ok, detail = False, "rate needs hz between 1 and 120"
            else:
                self.tick_hz = float(hz)
                detail = f"tick rate {hz} Hz"
        elif cmd == "record_start":
            ok, detail = self.start_recording(msg.get("path") or self.cfg.record.path or "recording.jsonl")
        elif cmd == "record_stop":
            ok, detail = self.stop_recording()
        elif cmd == "status":
            if self.hub:
                self.hub.publish_health(self.health())
            detail = "health sent"
        else:
            ok, detail = False, (f"unknown command {cmd!r}; known: reset, calibrate, mute, rate, record_start, "
                                 "record_stop, status")
        if not ok:
            log.info("refused command %r: %s", msg, detail)
        return {"type": "ack", "cmd": cmd if isinstance(cmd, str) else None, "ok": ok, "detail": detail}


# -------------------------------------------------------------------- offline
def process_files(audio: str | Path | None = None, video: str | Path | None = None, config: Config | None = None,
                  weights: str | None = None, face_model: str | None = None) -> list[AffectState]:
    """The live pipeline on files with a virtual clock (time = position in the file): identical results at any
    speed. Ticks follow face results when there is video, else the tick rate — as live."""
    from bridge.capture.audio import iter_audio_file
    from bridge.config import Config as _Config

    cfg = config or _Config()
    if audio is None and video is None:
        raise ValueError("process_files needs audio=..., video=... or both")
    model = load_model(cfg, weights)
    model.reset()
    engine = FeatureEngine(cfg.audio, cfg.video, use_audio=audio is not None, use_face=video is not None)
    engine.site = site_adaptation(cfg, model)
    runtime = AffectRuntime(model, cfg.events, cfg.model.reset_after_s, cfg.model.face_fusion)
    people = PeopleEngine(cfg, model, runtime, engine.audio_dim)
    blocks = iter(iter_audio_file(str(audio), cfg.audio.block_ms)) if audio is not None else iter(())
    pending = next(blocks, None)
    states: list[AffectState] = []

    def feed_audio_until(t: float) -> None:
        nonlocal pending
        while pending is not None and pending.t_end <= t + 1e-9:
            engine.push_audio(pending.samples, pending.t_end)
            pending = next(blocks, None)

    if video is not None:
        from bridge.capture.video import iter_video_file
        from bridge.features import face_model as fm
        from bridge.features.face import FaceTracker

        tracker = FaceTracker(str(fm.resolve(face_model or cfg.video.face_model)), cfg.video.min_detection_confidence,
                              cfg.video.max_input_side, small_faces=cfg.video.small_faces,
                              num_faces=cfg.people.num_faces, expression_fps=cfg.video.expression_fps,
                              search_fps=cfg.people.search_fps)
        gate = FrameGate.from_config(cfg.video)
        last = None
        try:
            for frame in iter_video_file(str(video)):
                obs = face_observation(gate, tracker, frame.image, frame.t_capture, last)
                feed_audio_until(frame.t_capture)
                if obs is not None:  # None: a frame above video.face_fps, not analysed; the tick still comes
                    last = obs
                    feed_faces(engine, people, tracker, obs)
                states.append(people.step(*engine.vector(frame.t_capture), frame.t_capture)[0])
        finally:
            tracker.close()
    else:
        k = 1
        while pending is not None:
            t = k / cfg.model.tick_hz
            feed_audio_until(t)
            states.append(people.step(*engine.vector(t), t)[0])
            k += 1
    return states


def face_observation(gate: FrameGate, tracker, image, t_capture: float, last):
    """The face observation for one camera frame, as the gate decides: the landmarker's (``run``), the last one
    re-stamped to this frame's time (``same``: the frame did not change; ``hold``: the face is steady, the
    landmarker runs at video.steady_face_fps), or None (``drop``: above face_fps)."""
    verdict = gate.decide(image, t_capture)
    if verdict == "drop":
        return None
    if verdict in ("same", "hold") and last is not None:
        return dataclasses.replace(last, t_capture=t_capture)
    obs = tracker.process(image, t_capture)
    faces = getattr(tracker, "faces", None)
    gate.seen(obs.present, t_capture, faces if faces is not None else [obs])
    return obs


def feed_faces(engine: FeatureEngine, people: PeopleEngine, tracker, obs) -> None:
    """One frame's faces: with one face tracked the feature engine gets it, as always; with several, each person
    gets its own (the engine then carries the room's voice only). The tracker follows every face. An observation
    re-used for an unchanged frame (re-stamped) re-uses the tracker's faces of that frame, re-stamped too."""
    if people.single:
        engine.push_face(obs)
    faces = getattr(tracker, "faces", None)
    if faces is None:
        faces = [obs] if obs.present else []
    faces = [f if f.t_capture == obs.t_capture else dataclasses.replace(f, t_capture=obs.t_capture) for f in faces]
    people.push_faces(faces, obs.t_capture)


def probs_array(states: list[AffectState]) -> np.ndarray:
    return np.array([[s.probs[n] for n in LABELS] for s in states])
