"""The ``emotion-bridge`` command."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console

from bridge import __version__
from bridge.config import ConfigError, load_config

console = Console(stderr=True)
log = logging.getLogger("bridge")


def _setup_logging(level: str, file: str | None = None, max_bytes: int = 5_000_000, backups: int = 5) -> None:
    from rich.logging import RichHandler

    handlers: list[logging.Handler] = [RichHandler(console=console, show_path=False, rich_tracebacks=False)]
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(fh)
    logging.basicConfig(level=level, format="%(message)s", handlers=handlers, force=True)


def _fail(msg: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {msg}", highlight=False)
    sys.exit(code)


def _source(v: str) -> int | str:
    return int(v) if v.isdigit() else v


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="emotion-bridge")
def main() -> None:
    """Face + voice -> streaming emotion model -> OSC and WebSocket (for TouchDesigner and friends)."""


def _overrides(**kw) -> dict:
    o: dict = {}
    if kw.get("video") is not None:
        o["video.source"] = _source(kw["video"])
    if kw.get("audio") is not None:
        o["audio.source"] = _source(kw["audio"])
    if kw.get("no_video"):
        o["video.enabled"] = False
    if kw.get("no_audio"):
        o["audio.enabled"] = False
    if kw.get("osc"):
        o["osc.targets"] = list(kw["osc"])
    if kw.get("ws"):
        host, _, port = kw["ws"].rpartition(":")
        if not host or not port.isdigit():
            _fail(f"--ws expects HOST:PORT, got {kw['ws']!r}")
        o["websocket.host"], o["websocket.port"] = host, int(port)
    if kw.get("speed"):
        o["sources.speed"] = kw["speed"]
    if kw.get("loop"):
        o["sources.loop"] = True
    if kw.get("face_model"):
        o["video.face_model"] = kw["face_model"]
    if kw.get("weights"):
        o["model.weights"] = kw["weights"]
    if kw.get("no_monitor"):
        o["monitor.enabled"] = False
    if kw.get("monitor_port") is not None:
        o["monitor.port"] = kw["monitor_port"]
    if kw.get("log_level"):
        o["logging.level"] = kw["log_level"].upper()
    if kw.get("mqtt"):
        from bridge.output.mqtt import parse_hostport

        try:
            o["mqtt.host"], o["mqtt.port"] = parse_hostport(kw["mqtt"])
        except ValueError as e:
            _fail(f"--mqtt: {e}")
        o["mqtt.enabled"] = True
    if kw.get("site"):
        o["mqtt.site"] = kw["site"]
    if kw.get("bridge_id"):
        o["mqtt.bridge_id"] = kw["bridge_id"]
    if kw.get("people"):
        o["people.num_faces"] = kw["people"]
    return o


def _load(config: str | None, overrides: dict):
    try:
        return load_config(config, overrides)
    except ConfigError as e:
        _fail(str(e))


_run_options = [
    click.option("--config", "-c", type=click.Path(dir_okay=False), help="YAML config (see configs/)."),
    click.option("--video", metavar="SRC", help="Camera index, video file or stream URL (rtsp://, http://)."),
    click.option("--audio", metavar="SRC", help="Microphone index or name part, or an audio file."),
    click.option("--no-video", is_flag=True, help="Voice only."),
    click.option("--no-audio", is_flag=True, help="Face only."),
    click.option("--osc", metavar="HOST:PORT", multiple=True, help="OSC target (repeatable). Default 127.0.0.1:7000."),
    click.option("--ws", metavar="HOST:PORT", help="WebSocket server address. Default 127.0.0.1:9980."),
    click.option("--speed", type=click.Choice(["realtime", "max"]), help="Pace of file sources."),
    click.option("--loop", is_flag=True, help="Repeat file sources."),
    click.option("--face-model", type=click.Path(dir_okay=False), help="MediaPipe face_landmarker.task file."),
    click.option("--weights", type=click.Path(dir_okay=False), help="Affect model weights (.pt)."),
    click.option("--no-monitor", is_flag=True, help="Do not serve the browser monitor page."),
    click.option("--monitor-port", type=int, help="Port of the browser monitor page (default 9981)."),
    click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)),
    click.option("--mqtt", metavar="HOST[:PORT]", help="Also publish to this MQTT broker (see docs/SCALING.md)."),
    click.option("--site", metavar="NAME", help="MQTT site: topics emotion-bridge/<site>/<bridge-id>/... "
                                                "(default: default)."),
    click.option("--bridge-id", metavar="NAME", help="This bridge's name on MQTT (default: the host name)."),
    click.option("--people", type=click.IntRange(1, 8), metavar="N",
                 help="Several visitors: faces tracked, a state per person (people.num_faces; default 4; 1: "
                      "exactly the single-visitor bridge). With --source simulate: a group of N simulated visitors "
                      "(default 1)."),
]


def run_options(f):
    for opt in reversed(_run_options):
        f = opt(f)
    return f


@main.command()
@run_options
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No live status line.")
@click.option("--source", type=click.Choice(["live", "simulate"]),
              help="live: camera + microphone (default). simulate: a simulated visitor, no camera or microphone "
                   "needed (implied by --script).")
@click.option("--script", type=click.Path(dir_okay=False),
              help="Timeline YAML for the simulated visitor (see configs/scripts/demo_timeline.yaml); "
                   "without it the visitor wanders through the labels at random.")
@click.option("--seed", type=int, help="Random seed of the simulated visitor (same seed, same visitor).")
@click.option("--preview", is_flag=True,
              help="Show the camera with face landmarks, label and valence/arousal in a window (needs a display).")
def run(config, duration, quiet, source, script, seed, preview, **kw):
    """Run the bridge: capture -> features -> model -> OSC / WebSocket."""
    cfg = _load(config, {**_overrides(**kw), **click.get_current_context().meta.get("bridge.overrides", {})})
    _setup_logging(cfg.logging.level, cfg.logging.file, cfg.logging.max_bytes, cfg.logging.backups)
    if source == "live" and script:
        _fail("--script drives the simulated visitor: use it with --source simulate (or leave --source out)")
    if (source or ("simulate" if script else "live")) == "simulate":
        from bridge.rehearsal import ScriptError, build_simulated_bridge

        try:
            # the simulated group is --people N (default: the one simulated visitor; the bridge's 4 slots are
            # sent either way), not the default people.num_faces
            bridge = build_simulated_bridge(cfg, script, seed, group=kw.get("people") or 1)
        except ScriptError as e:
            _fail(str(e))
    else:
        from bridge.live import build_bridge

        try:
            bridge = build_bridge(cfg)
        except Exception as e:  # start-up problems become one clear message
            from bridge.live import StartupError

            if isinstance(e, StartupError):
                _fail(str(e))
            raise

    _stop_on_signals(bridge)
    bridge.start()
    status = None if quiet else _status_printer()
    window = None
    if preview:
        from bridge.preview import attach_preview

        window = attach_preview(bridge)  # None without a display
    try:
        if window is not None:
            window.run_alongside(lambda: bridge.run(duration, status))
        else:
            bridge.run(duration, status)
    finally:
        bridge.stop()
        if status:
            console.print()
        lat = sorted(bridge.hub.latencies_ms) if bridge.hub else []
        if lat:
            p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
            g = bridge.gate.counts
            log.info("sent %d states; capture-to-wire latency p50 %.1f ms, p99 %.1f ms; %d face frames (the "
                     "landmarker ran on %d, %d held (steady faces, or a group sharing it), %d still)",
                     bridge.hub.published,
                     p(0.5), p(0.99), bridge.face_frames, g["run"], g["hold"], g["same"])
    _exit_now(0)


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown. Everything the bridge owns is stopped, closed and
    flushed by now; unloading torch and MediaPipe takes another 0.5-2 s, and MediaPipe's exit handlers wait for
    its usage-metrics upload (5-10 s where DNS does not answer). A service manager stopping the bridge should
    not wait for that."""
    logging.shutdown()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _stop_on_signals(bridge) -> None:
    """SIGINT / SIGTERM ask the bridge to stop; the command's ``finally`` does the clean shutdown."""

    def _stop(signum, _frame):
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        bridge._stop.set()

    signal.signal(signal.SIGINT, _stop)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _stop)


def _status_printer():
    import time

    last = [0.0]
    interactive = console.is_terminal

    def show(bridge) -> None:
        now = time.monotonic()
        if not interactive and now - last[0] < 5.0:
            return
        last[0] = now
        s = bridge.last_state
        hub = bridge.hub
        lat = hub.latencies_ms[-1] if hub and hub.latencies_ms else float("nan")
        h = bridge.health()["sources"]
        src = " ".join(f"{k}:{v.get('status')}" for k, v in h.items())
        if hub is not None and getattr(hub, "mqtt", None) is not None:
            src += f" mqtt:{hub.mqtt.status}"
        if s is None:
            line = f"waiting for input… {src}"
        else:
            line = (f"{hub.fps if hub else 0:5.1f} fps  {lat:5.1f} ms  {s.label:>9s} {s.confidence:4.2f}  "
                    f"V{s.valence:+.2f} A{s.arousal:+.2f}  face:{int(s.face_present)} voice:{int(s.voice_active)}  "
                    f"{src}")
        if interactive:
            console.print(line.ljust(100), end="\r", highlight=False, soft_wrap=True)
        else:
            console.print(line, highlight=False)

    return show


@main.command("config")
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="YAML config to merge over the defaults.")
def config_cmd(config):
    """Print the effective configuration (defaults -> file)."""
    from bridge.config import dump_config

    click.echo(dump_config(_load(config, {})))


@main.command()
def devices():
    """List microphones and cameras with the indices to put in the config."""
    from bridge.capture.audio import list_devices

    d = list_devices()
    console.print("[bold]Microphones[/] (audio.source: index or part of the name)")
    for i in d.get("inputs", []):
        console.print(f"  {i['index']:>3}  {i['name']}  ({i.get('default_samplerate', '?')} Hz, {i.get('hostapi', '')})"
                      + ("  [default]" if i.get("default") else ""), highlight=False)
    if not d.get("inputs"):
        console.print("  none found" + (f" ({d['error']})" if d.get("error") else ""))
    console.print("[bold]Cameras[/] (video.source: index)")
    for c in d.get("cameras", []):
        console.print(f"  {c['index']:>3}  {c.get('width', '?')}x{c.get('height', '?')}", highlight=False)
    if not d.get("cameras"):
        console.print("  none found")


@main.command()
@click.option("--fetch", is_flag=True, help="Download the face model if it is missing.")
@click.option("--face-model", type=click.Path(dir_okay=False), help="Check this file instead.")
def models(fetch, face_model):
    """Show where the face model and affect weights are (and fetch the face model)."""
    from bridge.features import face_model as fm
    from bridge.model.affect import WeightsError, default_weights_path, load_weights

    try:
        p = fm.resolve(face_model, download=fetch)
        console.print(f"face model: {p}  (sha256 {fm.sha256(p)[:16]}…)", highlight=False)
    except fm.FaceModelError as e:
        console.print(f"[yellow]face model:[/] {e}", highlight=False)
    try:
        _, meta = load_weights(None)
        console.print(f"affect weights: {default_weights_path()}  (val UAR {meta.get('val_uar_audio_only', 0):.1%}, "
                      f"{meta.get('data_license', '')})", highlight=False)
    except WeightsError as e:
        console.print(f"[yellow]affect weights:[/] {e}", highlight=False)


# the recipe of the shipped weights, without importing torch for every command
_TRAIN_DEFAULTS = {"epochs": 14, "chain_sets": 3, "speed_perturb": 0.1, "members": 3}


@main.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", default="bridge/model/weights/default.pt", show_default=True, help="Weights file to write.")
@click.option("--epochs", default=_TRAIN_DEFAULTS["epochs"], show_default=True)
@click.option("--seed", default=0, show_default=True, help="Network initialisation, batch order, synthetic faces.")
@click.option("--data-seed", default=0, show_default=True,
              help="Chaining, speed perturbation and microphone/room/noise augmentation of the training audio.")
@click.option("--no-augment", is_flag=True, help="No microphone/room/noise augmentation (speed perturbation only).")
@click.option("--val-actors", default="15,16,17,18", show_default=True, help="RAVDESS actors held out.")
@click.option("--chain-sets", default=_TRAIN_DEFAULTS["chain_sets"], show_default=True,
              help="Different random chainings of the clips (each after the first speed-perturbed and "
                   "through a random microphone, room and noise per speaker).")
@click.option("--speed-perturb", default=_TRAIN_DEFAULTS["speed_perturb"], show_default=True,
              help="Chain sets after the first play each clip at a random speed within 1 ± this (0: off).")
@click.option("--members", default=_TRAIN_DEFAULTS["members"], show_default=True,
              help="Networks trained alike from seeds SEED, SEED+1, ... and shipped as one ensemble (their mean).")
@click.option("--workers", default=2, show_default=True)
@click.option("--artifacts", default="artifacts/train", show_default=True, help="Curves, confusion, report.")
@click.option("--no-baselines", is_flag=True)
@click.option("--speech-encoder", is_flag=True,
              help="Also feed the pretrained speech embedding (run the bridge with audio.speech_encoder: true). "
                   "Helps only when visitors speak the training data's language and sentences; see the model card.")
@click.option("--synthetic-faces", is_flag=True,
              help="Train the face branch on the synthetic face generator alone, without FER+ (much weaker face-only "
                   "states). By default FER+ real faces are required ($BRIDGE_FERPLUS or ../shared/data/ferplus).")
def train(data, out, epochs, seed, data_seed, no_augment, val_actors, chain_sets, speed_perturb, members, workers,
          artifacts, no_baselines, speech_encoder, synthetic_faces):
    """Train the streaming affect model on a RAVDESS folder or a manifest CSV."""
    _setup_logging("INFO")
    from bridge.config import AudioConfig
    from bridge.training.face_real import FaceBankError
    from bridge.training.train import TrainConfig, train_members as _train

    cfg = TrainConfig(data=data, out=out, epochs=epochs, seed=seed, data_seed=data_seed, augment=not no_augment,
                      val_actors=tuple(int(a) for a in val_actors.split(",") if a), chain_sets=chain_sets,
                      speed_perturb=speed_perturb, members=members, workers=workers, artifacts=artifacts,
                      baselines=not no_baselines,
                      audio=AudioConfig(speech_encoder=speech_encoder), real_faces=not synthetic_faces)
    try:
        rep = _train(cfg)
    except FaceBankError as e:
        raise click.ClickException(str(e)) from None
    v, f = rep["val_clips_audio_only"], rep["val_clips_fresh_audio_only"]
    console.print(f"validation (audio only, unseen speakers): UAR {v['uar']:.1%}, accuracy {v['accuracy']:.1%} "
                  f"on {v['n_clips']} clips in speaker sessions; fresh state per clip: UAR {f['uar']:.1%} "
                  f"-> {out}; report in {artifacts}/report.json")


@main.command("calibrate-labels")
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write the calibrated weights (default: "
              "WEIGHTS itself).")
@click.option("--workers", default=2, show_default=True)
def calibrate_labels(weights, data, out, workers):
    """Give weights trained before the label calibration existed (2026-12-03) their calibration: fitted on the
    training speakers named in the weights, whose clips DATA (the training data) must hold, exactly as
    `emotion-bridge train` now ends. Without it a new visitor's voice leans to the loud labels."""
    _setup_logging("INFO")
    from bridge.model.affect import WeightsError
    from bridge.training.train import recalibrate_labels

    try:
        meta = recalibrate_labels(weights, data, out or weights, workers=workers)
    except WeightsError as e:
        _fail(str(e))
    console.print(f"label calibration {meta['label_bias']} -> {out or weights}; validation (audio only): UAR "
                  f"{meta['val_uar_audio_only']:.1%} in sessions, {meta['val_uar_fresh_clips_audio_only']:.1%} "
                  f"fresh", highlight=False)


@main.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--weights", type=click.Path(dir_okay=False), help="Default: the packaged weights.")
@click.option("--actors", default="", help="Only these RAVDESS actors, e.g. 19,20,21.")
@click.option("--out", default="artifacts/evaluate", show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--robustness", is_flag=True,
              help="Voice: also the table over microphone/room conditions (clean, +20 dB, -20 dB, pink and babble "
                   "noise at 10 dB SNR, reverb RT60 0.6 s), each clip through process_files from a fresh state.")
@click.option("--per-speaker-label", type=int, default=None,
              help="Voice: --robustness on at most N clips per speaker and label (a seeded draw; default all).")
@click.option("--limit", default=0, help="Faces: score a random subset of this many images (0: all).")
@click.option("--through-model", is_flag=True,
              help="Faces: also hold each face in front of the full affect model (face only, with the face fusion "
                   "as the bridge runs it) and score its label.")
@click.option("--face-model", type=click.Path(dir_okay=False), help="Faces: MediaPipe face_landmarker.task.")
@click.option("--min-agreement", default=0.0, show_default=True,
              help="FER+ npz: only faces whose majority label has at least this share of the votes (clear faces).")
def evaluate(data, weights, actors, out, workers, robustness, per_speaker_label, limit, through_model, face_model,
             min_agreement):
    """UAR, accuracy, per-class recall, confusion matrix (PNG) on labelled data.

    DATA is a folder of labelled clips (RAVDESS or the Spanish set's naming, or a manifest): UAR with each clip
    from a fresh state (a new visitor; the primary number), then in whole-speaker sessions, valence/arousal CCC;
    --robustness adds the condition table. Or faces: a FER+ npz (images + votes) or a folder of face images with
    one sub-folder per label (happy/, sad/, ...), scored through the live face path (landmarker -> crop ->
    expression network -> head)."""
    _setup_logging("INFO")
    from bridge.labels import LABELS
    from bridge.model.affect import WeightsError
    from bridge.training.train import evaluate as _evaluate

    if _is_face_data(Path(data)):
        _evaluate_faces(data, out, limit, through_model, weights, face_model, min_agreement)
        return

    def progress(cond, r):
        console.print(f"  {cond:>10s}: UAR {r['uar']:.1%}" + (f"   arousal high/low UAR {r['arousal_uar']:.1%}"
                                                              if "arousal_uar" in r else ""), highlight=False)

    try:
        res = _evaluate(data, weights, out, {int(a) for a in actors.split(",") if a} or None, workers,
                        robustness=robustness, per_speaker_label=per_speaker_label, progress=progress)
    except WeightsError as e:
        _fail(str(e))
    console.print(f"clips {res['n_clips']}  speakers {len(res['speakers'])}  labels {res['n_labels']}"
                  + (f"  (skipped {res['skipped_files']} unreadable or < 0.3 s)" if res["skipped_files"] else ""))
    console.print(f"each clip from a fresh state (a new visitor): UAR {res['uar']:.1%}   accuracy "
                  f"{res['accuracy']:.1%}   CCC valence {res['ccc_valence']:.3f}   CCC arousal {res['ccc_arousal']:.3f}")
    s = res["session"]
    console.print(f"whole-speaker sessions: UAR {s['uar']:.1%}, accuracy {s['accuracy']:.1%}")
    if "arousal_uar" in res:
        console.print(f"high vs low arousal (sign of the arousal output): fresh {res['arousal_uar']:.1%}, "
                      f"sessions {s['arousal_uar']:.1%}; AUC fresh {res['arousal_auc']:.3f}, sessions "
                      f"{s['arousal_auc']:.3f}", highlight=False)
    if "fresh_site" in res:
        f = res["fresh_site"]
        console.print(f"fresh state, site adaptation having heard the other speakers (an installation after its first "
                      f"visitors): UAR {f['uar']:.1%}" + (f", high vs low arousal {f['arousal_uar']:.1%}, AUC "
                                                         f"{f['arousal_auc']:.3f}" if "arousal_uar" in f else ""),
                      highlight=False)
    if "neutral_mean_arousal" in res:
        console.print(f"neutral clips come out at valence {res['neutral_mean_valence']:+.2f}, arousal "
                      f"{res['neutral_mean_arousal']:+.2f} (fresh; calibrated: near 0)", highlight=False)
    console.print("recall (fresh): " + "  ".join(f"{k} {v:.0%}" for k, v in res["recall"].items()
                                                 if v == v), highlight=False)
    console.print("confusion (fresh; rows true, cols predicted): " + " ".join(n[:4] for n in LABELS))
    for name, row in zip(LABELS, res["confusion"]):
        console.print(f"  {name:>9s} " + " ".join(f"{x:4d}" for x in row), highlight=False)
    if robustness:
        from bridge.training.robustness import format_table

        console.print(format_table({Path(data).name: res["robustness"]}), highlight=False)
    console.print(f"saved {out}/confusion.png and {out}/evaluation.json")


def _is_face_data(p: Path) -> bool:
    from bridge.training.face_eval import IMAGE_EXT, folder_label

    if p.is_file():
        return p.suffix == ".npz"
    subs = [d for d in p.iterdir() if d.is_dir() and folder_label(d.name)]
    return bool(subs) and any(f.suffix.lower() in IMAGE_EXT for d in subs for f in d.iterdir())


def _evaluate_faces(data, out, limit, through_model, weights, face_model, min_agreement=0.0):
    from bridge.features.expression import EXPRESSION_LABELS
    from bridge.model.affect import WeightsError
    from bridge.training.face_eval import evaluate_faces

    out = out if out != "artifacts/evaluate" else "artifacts/evaluate-faces"
    try:
        res = evaluate_faces(data, out, limit, face_model, through_model, weights, min_agreement=min_agreement)
    except (FileNotFoundError, WeightsError) as e:
        _fail(str(e))
    for key, title in (("face_path", "face path (landmarker -> crop -> network -> head)"),
                       ("affect_model_face_only", "affect model, face only")):
        if key not in res:
            continue
        r = res[key]
        console.print(f"{title}: {r['n']} faces, accuracy {r['accuracy']:.1%}, UAR {r['uar']:.1%} "
                      f"(no face found: {r['no_face']})")
        console.print("  recall: " + "  ".join(f"{k} {v:.0%}" for k, v in r["recall"].items()), highlight=False)
    console.print("confusion (rows true, cols predicted, last: no face): " + " ".join(n[:4] for n in EXPRESSION_LABELS))
    for name, row in zip(EXPRESSION_LABELS, res["face_path"]["confusion"]):
        console.print(f"  {name:>9s} " + " ".join(f"{x:5d}" for x in row), highlight=False)
    console.print(f"saved {out}/confusion.png and {out}/evaluation.json")


@main.command()
@click.option("--markdown", is_flag=True, help="Markdown tables (as in the READMEs).")
def schema(markdown):
    """Print every OSC address and JSON field the bridge sends."""
    from bridge.output import schema as s

    if markdown:
        click.echo(s.markdown_tables())
    else:
        click.echo(json.dumps(s.hello_message(__version__), indent=2))


@main.command(context_settings={"show_default": False})
@click.argument("out", metavar="OUT.jsonl", type=click.Path(dir_okay=False))
@click.option("--features", is_flag=True,
              help="Also write the model's input feature vector of every state (live runs; the simulated visitor "
                   "has none).")
@click.option("--overwrite", is_flag=True, help="Replace OUT.jsonl if it exists (otherwise the command refuses).")
@click.pass_context
def record(ctx, out, features, overwrite, **kw):
    """Run (live or --source simulate) and record every state to OUT.jsonl.

    Takes every option of `run`. One JSON `state` message per line (seq, t_capture, t_emit, valence, arousal,
    confidence, label, probs, face, voice; "changed" on the line where the label changed). Only these numbers
    are written: never camera frames or audio. Play it back with `emotion-bridge replay OUT.jsonl`.
    """
    p = Path(out)
    if p.exists():
        if not overwrite:
            _fail(f"{p} exists; choose another name or pass --overwrite to replace it")
        try:
            p.write_text("", encoding="utf-8")
        except OSError as e:
            _fail(f"cannot write {p}: {e}")
    ctx.meta["bridge.overrides"] = {"record.path": str(p), **({"record.features": True} if features else {})}
    ctx.invoke(run, **kw)
    n = sum(1 for _ in open(p, encoding="utf-8")) if p.is_file() else 0
    log.info("recorded %d states to %s", n, p)


record.params.extend(q for q in run.params if q.name not in {p.name for p in record.params})


def _replay_speed(ctx, param, value):
    from bridge.rehearsal import parse_speed

    try:
        return parse_speed(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use realtime, max or a factor such as 2 or 0.5") from None


@main.command()
@click.argument("file", metavar="FILE.jsonl", type=click.Path(exists=True, dir_okay=False))
@click.option("--speed", default="realtime", show_default=True, callback=_replay_speed, metavar="realtime|max|FLOAT",
              help="realtime: the recorded pace; max: as fast as possible (~1000 states/s); 2 = twice as fast.")
@click.option("--loop", is_flag=True, help="Start again at the end (until Ctrl+C or --duration).")
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="YAML config (outputs, monitor, logging).")
@click.option("--osc", metavar="HOST:PORT", multiple=True, help="OSC target (repeatable). Default 127.0.0.1:7000.")
@click.option("--ws", metavar="HOST:PORT", help="WebSocket server address. Default 127.0.0.1:9980.")
@click.option("--no-monitor", is_flag=True, help="Do not serve the browser monitor page.")
@click.option("--monitor-port", type=int, help="Port of the browser monitor page (default 9981).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No live status line.")
@click.option("--mqtt", metavar="HOST[:PORT]", help="Also publish to this MQTT broker (see docs/SCALING.md).")
@click.option("--site", metavar="NAME", help="MQTT site (default: default).")
@click.option("--bridge-id", metavar="NAME", help="This bridge's name on MQTT (default: the host name).")
def replay(file, speed, loop, config, duration, quiet, **kw):
    """Send a recording (from `record`) again over OSC and WebSocket, as if it were live.

    Values are kept; seq, t_capture and t_emit are new (latency_ms is the replay's own). /emotion/changed fires
    where the recorded label changes. Malformed lines are skipped and counted in the log. The `reset` command
    rewinds to the first state; mute works as live.
    """
    import math

    cfg = _load(config, _overrides(**kw))
    _setup_logging(cfg.logging.level, cfg.logging.file, cfg.logging.max_bytes, cfg.logging.backups)
    from bridge.rehearsal import RecordingError, build_replay_bridge

    try:
        bridge = build_replay_bridge(cfg, file, speed, loop)
    except RecordingError as e:
        _fail(str(e))

    _stop_on_signals(bridge)
    bridge.start()
    status = None if quiet or math.isinf(speed) else _status_printer()
    try:
        bridge.run(duration, status)
    finally:
        bridge.stop()
        if status:
            console.print()
        log.info("replayed %d states from %s%s", bridge.hub.published if bridge.hub else 0, file,
                 f" ({bridge.loops} loops)" if bridge.loops else "")


@main.command()
@click.option("--quick", is_flag=True, help="Short durations (under two minutes in all).")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write every number as JSON to this file.")
@click.option("--only", default="", metavar="NAME,...",
              help="Only these sections: wire, cpu, stages, faces, audio, smoothing, fanout, growth (default: all).")
@click.option("--face-model", type=click.Path(dir_okay=False), help="MediaPipe face_landmarker.task file.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Affect model weights (default: the packaged ones).")
@click.option("--report", type=click.Path(dir_okay=False),
              help="Training report with the smoothing section (default: artifacts/train/report.json).")
def bench(quick, out, only, face_model, weights, report):
    """Measure capture-to-wire latency, CPU share, audio-feature cost, smoothing, WebSocket fan-out and cost
    growth with the window, on a generated face video and speech (see docs/PERFORMANCE.md)."""
    from bridge import bench as b

    try:
        names = [x.strip() for x in only.split(",") if x.strip()] or None
        unknown = [x for x in names or [] if x not in b.sections()]
        if unknown:
            _fail(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(b.sections())}")
        res = b.run(quick=quick, out=out, only=names, face_model=face_model, weights=weights, report=report,
                    progress=lambda msg: console.print(f"[dim]{msg}[/]", highlight=False),
                    command="emotion-bridge " + " ".join(sys.argv[1:]))
    except b.BenchUnavailable as e:
        _fail(str(e))
    b.print_table(res, Console())
    if out:
        console.print(f"results: {out}", highlight=False)
    if res["errors"]:
        sys.exit(1)


@main.command()
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="YAML config (mqtt:, room:, websocket:).")
@click.option("--mqtt", metavar="HOST[:PORT]", help="The broker the bridges publish to (default: mqtt.host:port).")
@click.option("--site", metavar="NAME", help="Site to aggregate: emotion-bridge/<site>/+/state (default: default).")
@click.option("--osc", metavar="HOST:PORT", multiple=True,
              help="Where the /room/... bundles go (repeatable). Default 127.0.0.1:7002.")
@click.option("--ws", metavar="HOST:PORT", help="The room's WebSocket server. Default 127.0.0.1:9982.")
@click.option("--rate", type=float, help="Room states per second (default 10).")
@click.option("--stale", type=float, help="Seconds without a state before a bridge drops out (default 3).")
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No status line.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def room(config, mqtt, site, osc, ws, rate, stale, duration, quiet, log_level):
    """Aggregate every bridge of a site (through the MQTT broker) into one room: visitor count, confidence-weighted
    valence/arousal, label shares, per-bridge rows; out over OSC /room/..., WebSocket and MQTT."""
    import time

    o: dict = {"mqtt.enabled": True}
    if mqtt:
        from bridge.output.mqtt import parse_hostport

        try:
            o["mqtt.host"], o["mqtt.port"] = parse_hostport(mqtt)
        except ValueError as e:
            _fail(f"--mqtt: {e}")
    if site:
        o["mqtt.site"] = site
    if osc:
        o["room.osc_targets"] = list(osc)
    if ws:
        host, _, port = ws.rpartition(":")
        if not host or not port.isdigit():
            _fail(f"--ws expects HOST:PORT, got {ws!r}")
        o["room.ws_host"], o["room.ws_port"] = host, int(port)
    if rate:
        o["room.rate_hz"] = rate
    if stale:
        o["room.stale_s"] = stale
    if log_level:
        o["logging.level"] = log_level.upper()
    cfg = _load(config, o)
    _setup_logging(cfg.logging.level, cfg.logging.file, cfg.logging.max_bytes, cfg.logging.backups)
    from bridge.room import RoomService

    svc = RoomService(cfg)
    stop = {"flag": False}

    def _stop(signum, _frame):
        stop["flag"] = True

    signal.signal(signal.SIGINT, _stop)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _stop)
    try:
        svc.start()
    except OSError as e:
        _fail(str(e))
    t_end = None if duration is None else time.monotonic() + duration
    last = 0.0
    try:
        while not stop["flag"] and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.2)
            if not quiet and time.monotonic() - last >= (1.0 if console.is_terminal else 5.0) and svc.last:
                last = time.monotonic()
                m = svc.last
                console.print(f"room {cfg.mqtt.site}: {m['count']} visitors, {m['bridges']} bridges "
                              f"({len(m['stale'])} stale)  V{m['valence']:+.2f} A{m['arousal']:+.2f} {m['label']:>9s}"
                              f"  mqtt:{svc.status} refused:{m['refused']}", highlight=False)
    finally:
        svc.stop()
        log.info("room: %d states received, %d refused", svc.agg.received, svc.agg.n_refused)
    _exit_now(0)
