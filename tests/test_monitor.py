"""The browser monitor: MonitorServer's HTTP surface, the bridge's Origin allow-list, and the real page in
headless Debian Chromium (Playwright) while states are published from Python at ~30 Hz.

The screenshot lands in artifacts/monitor.png.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import socket
import threading
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from bridge import __version__, clock
from bridge.config import load_config
from bridge.frames import AffectState
from bridge.labels import LABELS, VA
from bridge.monitor.server import MonitorServer
from bridge.output.hub import OutputHub

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hub(monitor_port: int) -> OutputHub:
    cfg = load_config(overrides={"websocket.port": 0, "osc.enabled": False, "monitor.enabled": True,
                                 "monitor.port": monitor_port})
    hub = OutputHub(cfg)
    hub.start()
    return hub


@pytest.fixture(scope="module")
def stack():
    """A real OutputHub (WebSocket on a free port, Origin allow-list for the monitor) and the MonitorServer."""
    mport = _free_port()
    holder = {"hub": _hub(mport)}
    mon = MonitorServer("127.0.0.1", mport, ws_url_port=lambda: holder["hub"].ws.port)
    mon.start()
    try:
        yield holder, mon
    finally:
        mon.stop()
        holder["hub"].stop()


def _get(mon: MonitorServer, path: str, method: str = "GET", host: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", mon.port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- HTTP surface
def test_config_json(stack):
    holder, mon = stack
    status, headers, body = _get(mon, "/config.json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    cfg = json.loads(body)
    assert cfg["ws_port"] == holder["hub"].ws.port
    assert cfg["labels"] == list(LABELS)
    assert cfg["va"] == {k: list(v) for k, v in VA.items()}
    assert cfg["version"] == __version__ and cfg["token_required"] is False
    assert "token" not in cfg


def test_static_files(stack):
    _, mon = stack
    for path, ctype in (("/", "text/html"), ("/index.html", "text/html"), ("/app.js", "text/javascript"),
                        ("/style.css", "text/css")):
        status, headers, body = _get(mon, path)
        assert status == 200, path
        assert headers["Content-Type"].startswith(ctype)
        assert headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body
    status, headers, body = _get(mon, "/app.js", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000
    assert _get(mon, "/config.json", method="POST")[0] == 405
    # nothing on the page comes from elsewhere (offline galleries)
    for path in ("/", "/app.js", "/style.css"):
        text = _get(mon, path)[2].decode()
        assert "http://" not in text and "https://" not in text and "@import" not in text, path


@pytest.mark.parametrize("path", ["/nope", "/static/app.js", "/../server.py", "/..%2fserver.py", "/%2e%2e/server.py",
                                  "/static/../server.py", "//etc/passwd", "/app.js/..", "/static/", "/..",
                                  "/index.html/../../config.py", "/.%2e/.%2e/bridge/config.py"])
def test_unknown_paths_and_traversal_are_404(stack, path):
    _, mon = stack
    status, headers, body = _get(mon, path)
    assert status == 404, path
    assert headers["Cache-Control"] == "no-store"
    assert b"not found" in body


def test_foreign_host_header_is_refused(stack):
    _, mon = stack
    assert _get(mon, "/config.json", host="evil.example")[0] == 421
    assert _get(mon, "/config.json", host=f"localhost:{mon.port}")[0] == 200


def test_websocket_rejects_a_foreign_origin(stack):
    holder, mon = stack
    url = f"ws://127.0.0.1:{holder['hub'].ws.port}/"
    with pytest.raises(InvalidStatus) as e:
        with ws_connect(url, origin="http://evil.example", open_timeout=5):
            pass
    assert e.value.response.status_code == 403
    for origin in (f"http://127.0.0.1:{mon.port}", f"http://localhost:{mon.port}", None):  # the page; TD (none)
        with ws_connect(url, origin=origin, open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"


def test_non_loopback_host_warns(caplog):
    mon = MonitorServer("0.0.0.0", 0, ws_port=9980)
    with caplog.at_level(logging.WARNING, logger="bridge.monitor.server"):
        mon.start()
    try:
        assert any("reachable from other machines" in r.getMessage() for r in caplog.records)
        assert mon.port != 0
        assert _get(mon, "/config.json", host="192.168.1.50:9981")[0] == 200  # any Host when on the network
    finally:
        mon.stop()


def test_token_flag_and_port_in_use():
    mon = MonitorServer("127.0.0.1", 0, 9980, token="secret")
    mon.start()
    try:
        cfg = json.loads(_get(mon, "/config.json")[2])
        assert cfg["token_required"] is True and "secret" not in json.dumps(cfg)
        with pytest.raises(OSError, match="monitor cannot listen"):
            MonitorServer("127.0.0.1", mon.port, 9980).start()
    finally:
        mon.stop()


# ----------------------------------------------------------------------------- the page in Chromium
def _probs_around(v: float, a: float) -> dict[str, float]:
    w = {n: math.exp(-4.0 * ((v - VA[n][0]) ** 2 + (a - VA[n][1]) ** 2)) for n in LABELS}
    s = sum(w.values())
    return {n: x / s for n, x in w.items()}


class Publisher(threading.Thread):
    """Publishes states at ~30 Hz: valence/arousal go round the circumplex, labels follow, face and voice
    come and go; a health message once a second."""

    def __init__(self, holder: dict):
        super().__init__(daemon=True)
        self.holder = holder
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        seq, label, t0, last_health = 0, "neutral", time.monotonic(), 0.0
        while not self.halt.is_set():
            t = time.monotonic() - t0
            v, a = 0.8 * math.cos(1.4 * t), 0.75 * math.sin(1.4 * t)
            probs = _probs_around(v, a)
            new = max(probs, key=probs.get)
            changed, previous = (new, label) if new != label else (None, None)
            label = new
            seq += 1
            tc = clock.now() - 0.035
            state = AffectState(seq=seq, t_capture=tc, t_capture_wall=clock.to_wall(tc), valence=v, arousal=a,
                                probs=probs, label=label, confidence=0.55 + 0.4 * abs(math.sin(t)),
                                face_present=int(t / 1.5) % 3 != 2, voice_active=int(t / 0.8) % 2 == 0,
                                face_age_ms=20.0, voice_age_ms=15.0, loudness_db=-28.0, pitch_hz=170.0)
            hub = self.holder["hub"]
            try:
                hub.publish(state, changed=changed, previous=previous)
                if t - last_health >= 1.0:
                    last_health = t
                    hub.publish_health({"sources": {
                        "camera": {"status": "ok", "detail": "640x480 @ 30 fps"},
                        "microphone": {"status": "reconnecting", "detail": "device unplugged, retry in 2 s"},
                        "model": {"status": "ok", "detail": "cpu, 1 thread"}},
                        "counters": {"states": seq, "dropped_frames": 3}})
            except Exception:  # the hub may be between restarts in the reconnect test
                pass
            self.sent += 1
            self.halt.wait(1 / 30)


def _canvas_stats(page) -> dict:
    return page.evaluate("""() => {
        const c = document.getElementById('circumplex');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0, hash = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] > 0) painted++;
            hash = (hash * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) % 1000000007;
        }
        return {painted, total: d.length / 4, hash, w: c.width, h: c.height};
    }""")


def test_page_shows_live_values_in_chromium(stack):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    holder, mon = stack
    pub = Publisher(holder)
    pub.start()
    problems: list[str] = []
    foreign: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
                page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                        if m.type == "error" else None)
                page.on("request", lambda r: foreign.append(r.url)
                        if not r.url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")) else None)
                page.goto(mon.url)
                page.wait_for_selector('#conn[data-state="connected"]', timeout=10000)

                labels, valences = set(), set()
                stats = []
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline:
                    labels.add(page.inner_text("#label"))
                    valences.add(page.inner_text("#valence"))
                    stats.append(_canvas_stats(page))
                    page.wait_for_timeout(250)
                assert len(valences - {"–"}) >= 4, valences
                assert len(labels - {"–"}) >= 2, labels
                assert labels - {"–"} <= set(LABELS)
                assert all(s["painted"] > 0.2 * s["total"] for s in stats), stats[-1]
                assert len({s["hash"] for s in stats}) >= 4  # the trail/point move

                assert page.inner_text("#conn") == "connected"
                assert float(page.inner_text("#fps")) > 10
                for sel in ("#lat-p50", "#lat-p95", "#delay-p50", "#delay-p95"):
                    assert page.inner_text(sel) != "–", sel
                assert 20 < float(page.inner_text("#lat-p50")) < 200
                assert page.locator("#probs .bar").count() == len(LABELS)
                assert page.locator("#probs .name.current").count() == 1
                health = page.inner_text("#health")
                assert "camera" in health and "reconnecting" in health and "microphone" in health
                assert page.get_attribute("#face", "data-on") in ("0", "1")
                assert f"bridge {__version__}" in page.inner_text("#version")

                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "monitor.png"))

                # the bridge goes away and comes back (on another port): the page says so, then reconnects
                holder["hub"].stop()
                page.wait_for_selector('#conn[data-state="disconnected"]', timeout=10000)
                holder["hub"] = _hub(mon.port)
                page.wait_for_selector('#conn[data-state="connected"]', timeout=10000)
                seq_before = int(page.inner_text("#seq"))
                page.wait_for_timeout(400)
                assert int(page.inner_text("#seq")) > seq_before
            finally:
                browser.close()
    finally:
        pub.halt.set()
        pub.join(2)
    assert not problems, problems
    assert not foreign, foreign
