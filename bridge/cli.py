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
    click.option("--people", type=click.IntRange(1, 8), metavar="N",
                 help="Several visitors: faces tracked, a state per person (people.num_faces; default 1). "
                      "With --source simulate: a group of N simulated visitors."),
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
            bridge = build_simulated_bridge(cfg, script, seed)
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
            log.info("sent %d states; capture-to-wire latency p50 %.1f ms, p99 %.1f ms", bridge.hub.published,
                     p(0.5), p(0.99))
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
_TRAIN_DEFAULTS = {"epochs": 14, "chain_sets": 5, "speed_perturb": 0.1}


@main.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", default="bridge/model/weights/default.pt", show_default=True, help="Weights file to write.")
@click.option("--epochs", default=_TRAIN_DEFAULTS["epochs"], show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--val-actors", default="15,16,17,18", show_default=True, help="RAVDESS actors held out.")
@click.option("--chain-sets", default=_TRAIN_DEFAULTS["chain_sets"], show_default=True,
              help="Different random chainings of the clips (each after the first speed-perturbed).")
@click.option("--speed-perturb", default=_TRAIN_DEFAULTS["speed_perturb"], show_default=True,
              help="Chain sets after the first play each clip at a random speed within 1 ± this (0: off).")
@click.option("--workers", default=2, show_default=True)
@click.option("--artifacts", default="artifacts/train", show_default=True, help="Curves, confusion, report.")
@click.option("--no-baselines", is_flag=True)
def train(data, out, epochs, seed, val_actors, chain_sets, speed_perturb, workers, artifacts, no_baselines):
    """Train the streaming affect model on a RAVDESS folder or a manifest CSV."""
    _setup_logging("INFO")
    from bridge.training.train import TrainConfig, train as _train

    cfg = TrainConfig(data=data, out=out, epochs=epochs, seed=seed,
                      val_actors=tuple(int(a) for a in val_actors.split(",") if a), chain_sets=chain_sets,
                      speed_perturb=speed_perturb, workers=workers, artifacts=artifacts, baselines=not no_baselines)
    rep = _train(cfg)
    v, f = rep["val_clips_audio_only"], rep["val_clips_fresh_audio_only"]
    console.print(f"validation (audio only, unseen speakers): UAR {v['uar']:.1%}, accuracy {v['accuracy']:.1%} "
                  f"on {v['n_clips']} clips in speaker sessions; fresh state per clip: UAR {f['uar']:.1%} "
                  f"-> {out}; report in {artifacts}/report.json")


@main.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--weights", type=click.Path(dir_okay=False), help="Default: the packaged weights.")
@click.option("--actors", default="", help="Only these RAVDESS actors, e.g. 19,20,21.")
@click.option("--out", default="artifacts/evaluate", show_default=True)
@click.option("--workers", default=2, show_default=True)
def evaluate(data, weights, actors, out, workers):
    """UAR, accuracy, per-class recall, confusion matrix (PNG) and valence/arousal CCC on labelled clips."""
    _setup_logging("INFO")
    from bridge.labels import LABELS
    from bridge.model.affect import WeightsError
    from bridge.training.train import evaluate as _evaluate

    try:
        res = _evaluate(data, weights, out, {int(a) for a in actors.split(",") if a} or None, workers)
    except WeightsError as e:
        _fail(str(e))
    console.print(f"clips {res['n_clips']}  speakers {len(res['speakers'])}")
    console.print(f"UAR {res['uar']:.1%}   accuracy {res['accuracy']:.1%}   CCC valence {res['ccc_valence']:.3f}   "
                  f"CCC arousal {res['ccc_arousal']:.3f}")
    f = res["fresh_clips"]
    console.print(f"(each clip from a fresh model state: UAR {f['uar']:.1%}, accuracy {f['accuracy']:.1%})")
    console.print("recall: " + "  ".join(f"{k} {v:.0%}" for k, v in res["recall"].items()), highlight=False)
    console.print("confusion (rows true, cols predicted): " + " ".join(n[:4] for n in LABELS))
    for name, row in zip(LABELS, res["confusion"]):
        console.print(f"  {name:>9s} " + " ".join(f"{x:4d}" for x in row), highlight=False)
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
              help="Only these sections: wire, cpu, audio, smoothing, fanout, growth (default: all).")
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
