"""The browser monitor: a single static page (served here) that is a WebSocket client of the bridge.

``POST /analyze`` (with an ``analyzer``, see :mod:`bridge.analyze`) takes a recorded file and answers its
states and a summary as JSON; localhost only unless ``analyze.token`` is set.

``MonitorServer`` serves ``static/index.html``, ``app.js`` and ``style.css`` and ``/config.json`` with
stdlib ``http.server.ThreadingHTTPServer`` in a daemon thread. Only those four paths exist (a fixed table,
read into memory at start), so there is no directory listing and no way to reach another file; every
response is ``Cache-Control: no-store`` with a strict Content-Security-Policy (the page loads nothing
from elsewhere, so it works offline). Request logging goes to :mod:`logging` at DEBUG.

``/config.json`` tells the page the WebSocket port (the page connects to ``ws://<its own host>:<port>``)
and the label anchors on the valence/arousal circumplex from :mod:`bridge.labels`, so the page has no
copy of them. A WebSocket token is never put in ``/config.json``: with ``websocket.token`` set, open the
page as ``http://127.0.0.1:9981/?token=...`` and it passes the token on.

Wiring (done by the CLI): start the :class:`~bridge.output.hub.OutputHub` first, then
``MonitorServer(cfg.monitor.host, cfg.monitor.port, ws_url_port=hub.ws.port, token=cfg.websocket.token)``.
The hub allows the page's Origin (``http://127.0.0.1:<monitor port>`` ...) on the WebSocket.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from bridge import __version__
from bridge.labels import LABELS, VA
from bridge.output.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
FILES: dict[str, tuple[str, str]] = {  # URL path -> (file in static/, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TRAIL_SECONDS = 3.0
DRAIN_MAX = 256 * 1024 * 1024  # a refused upload up to this size is read and discarded before the answer

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; "
                                "frame-ancestors 'none'"),
}


def _is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK or host.startswith("127.")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "emotion-bridge-monitor"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    monitor: MonitorServer  # set on the per-server subclass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def _refuse(self) -> None:
        self._send(405, b"method not allowed\n", "text/plain; charset=utf-8", extra={"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/analyze" or self.monitor.analyzer is None:
            self.close_connection = True  # the body (if any) was not read
            self._refuse()
            return
        self._analyze()

    # ------------------------------------------------------------ POST /analyze (bridge.analyze)
    def _json(self, code: int, obj: dict, extra: dict | None = None) -> None:
        self._send(code, json.dumps(obj, separators=(",", ":"), allow_nan=False).encode(), "application/json",
                   extra=extra)

    def _error(self, code: int, message: str, extra: dict | None = None, unread_body: bool = True) -> None:
        if unread_body:
            # An upload we refuse is read and thrown away (up to DRAIN_MAX), so that a plain client that sends
            # the whole body before reading the answer gets the message instead of a broken pipe; then close.
            length = self.headers.get("Content-Length", "")
            left = int(length) if length.isdigit() and int(length) <= DRAIN_MAX else 0
            try:
                self.connection.settimeout(10)
                while left > 0:
                    chunk = self.rfile.read(min(1 << 20, left))
                    if not chunk:
                        break
                    left -= len(chunk)
            except OSError:
                pass
            self.close_connection = True
            extra = {**(extra or {}), "Connection": "close"}
        self._json(code, {"error": message, "status": code}, extra)

    def _analyze(self) -> None:
        from urllib.parse import parse_qs

        from bridge.analyze import AnalyzeError, parse_multipart

        an = self.monitor.analyzer
        if not self.monitor.host_allowed(self.headers.get("Host", "")):
            self._error(421, "wrong host")
            return
        token = an.token
        if not _is_loopback(self.monitor.host) and not token:
            self._error(403, f"POST /analyze is off while the monitor listens on {self.monitor.host} (not "
                             f"loopback) without a token: set analyze.token in the config")
            return
        if token:
            auth = self.headers.get("Authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else (
                parse_qs(urlsplit(self.path).query).get("token", [""])[0])
            import hmac

            if not hmac.compare_digest(given.encode(), token.encode()):
                self._error(401, "missing or wrong token: send Authorization: Bearer <analyze.token>",
                            extra={"WWW-Authenticate": "Bearer"})
                return
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            self._error(411, "Content-Length required (chunked uploads are not accepted)")
            return
        if not length.isdigit():
            self._error(400, f"bad Content-Length {length!r}")
            return
        n = int(length)
        if n > an.max_bytes:
            self._error(413, f"upload of {n} bytes is larger than analyze.max_bytes ({an.max_bytes}); "
                             f"raise it in the config or send a shorter file")
            return
        if n == 0:
            self._error(400, "empty upload: send a wav, flac, mp3 or mp4 file as the body or as the `file` field",
                        unread_body=False)
            return
        if not an.try_begin():
            self._error(429, "another analysis is running; one at a time: retry when it is done",
                        extra={"Retry-After": "2"})
            return
        result: dict | None = None
        failure: AnalyzeError | None = None
        try:
            self.connection.settimeout(30)
            body = bytearray()
            while len(body) < n:
                chunk = self.rfile.read(min(1 << 20, n - len(body)))
                if not chunk:
                    break
                body += chunk
            if len(body) < n:
                failure = AnalyzeError(400, f"the upload ended after {len(body)} of {n} bytes")
            else:
                ctype = self.headers.get("Content-Type", "")
                data = bytes(body)
                if ctype.lower().startswith("multipart/form-data"):
                    data = parse_multipart(data, ctype)
                result = an.analyze(data)
        except AnalyzeError as e:
            failure = e
        except OSError as e:  # the client went away or stalled
            log.info("analyze: upload failed: %s", e)
            self.close_connection = True
            return
        finally:
            an.end()  # before the answer: a client may send its next upload the moment it has read this one
        if failure is not None:
            self._error(failure.status, failure.message, unread_body=False)
        else:
            self._json(200, result)

    def _serve(self, head: bool) -> None:
        if not self.monitor.host_allowed(self.headers.get("Host", "")):
            self._send(421, b"wrong host\n", "text/plain; charset=utf-8", head=head)
            return
        path = urlsplit(self.path).path
        if path == "/config.json":
            body = json.dumps(self.monitor.config(), separators=(",", ":")).encode()
            self._send(200, body, "application/json", head=head)
            return
        entry = self.monitor.files.get(path)
        if entry is None:
            self._send(404, b"not found\n", "text/plain; charset=utf-8", head=head)
            return
        body, ctype = entry
        self._send(200, body, ctype, head=head)

    def _send(self, code: int, body: bytes, ctype: str, head: bool = False, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**_SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server API
        log.debug("monitor %s: " + format, self.address_string(), *args)

    def log_error(self, format: str, *args) -> None:  # noqa: A002
        log.info("monitor %s: " + format, self.address_string(), *args)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        log.debug("monitor: error while serving %s", client_address, exc_info=True)


class MonitorServer:
    """Serves the monitor page. ``port=0`` picks a free port; ``.port`` holds the real one after ``start()``.

    ``ws_url_port`` (alias ``ws_port``) is the bridge's WebSocket port: an int, or a callable returning it
    for a WebSocket server started on port 0. ``token`` is only used to tell the page that one is required.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9981, ws_url_port: int | Callable[[], int] = 9980,
                 token: str | None = None, *, ws_port: int | Callable[[], int] | None = None, analyzer=None):
        self.host, self.port = host, port
        self.analyzer = analyzer  # bridge.analyze.Analyzer: POST /analyze (None: 405)
        self._ws_port = ws_url_port if ws_port is None else ws_port
        self._token_required = bool(token)
        self.files: dict[str, tuple[bytes, str]] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.files = {url: ((STATIC / name).read_bytes(), ctype) for url, (name, ctype) in FILES.items()}
        handler = type("MonitorHandler", (_Handler,), {"monitor": self})
        family_host = self.host.strip("[]")
        server_cls = _HTTPServer
        if ":" in family_host:  # IPv6 literal
            import socket

            server_cls = type("_HTTPServer6", (_HTTPServer,), {"address_family": socket.AF_INET6})
        try:
            self._httpd = server_cls((family_host, self.port), handler)
        except OSError as e:
            raise OSError(f"monitor cannot listen on {self.host}:{self.port}: {e}. Is another bridge running? "
                          f"Pick another port with monitor.port in the config.") from None
        self.port = self._httpd.server_address[1]
        if not _is_loopback(self.host):
            log.warning("monitor page listens on %s:%d: reachable from other machines on the network. "
                        "It only shows the emotion values; check your firewall.", self.host, self.port)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="monitor-http", daemon=True)
        self._thread.start()
        log.info("monitor page at %s", self.url)

    def stop(self, timeout: float = 2.0) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.analyzer is not None:
            self.analyzer.close()

    @property
    def url(self) -> str:
        host = self.host if not self.host.startswith("0.0.0.0") else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    # ------------------------------------------------------------ content
    @property
    def ws_port(self) -> int:
        return int(self._ws_port() if callable(self._ws_port) else self._ws_port)

    def config(self) -> dict:
        return {
            "ws_port": self.ws_port,
            "token_required": self._token_required,
            "labels": list(LABELS),
            "va": {name: list(VA[name]) for name in LABELS},
            "schema_version": SCHEMA_VERSION,
            "version": __version__,
            "trail_seconds": TRAIL_SECONDS,
        }

    def host_allowed(self, host_header: str) -> bool:
        """Bound to loopback, only loopback Host names are answered (a DNS-rebinding page can't read us)."""
        if not _is_loopback(self.host):
            return True
        name = host_header.rsplit(":", 1)[0] if not host_header.startswith("[") else host_header.split("]")[0] + "]"
        return _is_loopback(name) if name else False


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use
    p = argparse.ArgumentParser(description="Serve the emotion-bridge monitor page on its own.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9981)
    p.add_argument("--ws-port", type=int, default=9980, help="the bridge's WebSocket port")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = MonitorServer(a.host, a.port, a.ws_port)
    server.start()
    print(f"monitor page: {server.url} (Ctrl+C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
