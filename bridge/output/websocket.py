"""WebSocket server (TouchDesigner's WebSocket DAT and the browser monitor are its clients).

Runs its own asyncio loop in a daemon thread. ``broadcast(text)`` may be called from any thread and returns at
once: each client has a small bounded queue drained by its own writer task, so a client that stops reading only
loses its own oldest messages (counted as ``skipped``) and is disconnected after ``stall_s`` without progress;
the pipeline and the other clients never wait for it. Incoming text frames are commands (JSON), rate-limited
per client; frames above ``max_message_bytes`` close that connection (code 1009).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bridge.output.schema import dumps

log = logging.getLogger(__name__)

CommandHandler = Callable[[dict], dict]


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    queue: asyncio.Queue
    skipped: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    tokens: float = 20.0
    t_tokens: float = field(default_factory=time.monotonic)
    flood_drops: int = 0


class WebSocketServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 9980, *, hello: Callable[[], dict] | None = None,
                 on_command: CommandHandler | None = None, token: str | None = None,
                 max_message_bytes: int = 65536, max_queue: int = 8, stall_s: float = 5.0,
                 allowed_origins: list[str] | None = None, commands_per_s: float = 20.0):
        self.host, self.port = host, port
        self._hello = hello
        self._on_command = on_command
        self._token = token
        self._max_size = max_message_bytes
        self._max_queue = max_queue
        self._stall_s = stall_s
        self._origins = allowed_origins
        self._rate = commands_per_s
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.counters = {"connections": 0, "dropped_clients": 0, "skipped": 0, "bad_messages": 0,
                         "rejected": 0, "flood_drops": 0}

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 5.0) -> None:
        self._thread = threading.Thread(target=self._run, name="websocket", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("WebSocket server did not start in time")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported to start(); nothing else can catch it in this thread
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await serve(self._handler, self.host, self.port, max_size=self._max_size,
                                 process_request=self._process_request, origins=self._origins,
                                 ping_interval=10, ping_timeout=10, write_limit=2 ** 16)
        except OSError as e:
            raise OSError(f"WebSocket server cannot listen on {self.host}:{self.port}: {e}. "
                          f"Is another bridge running? Pick another port with --ws HOST:PORT "
                          f"or websocket.port in the config.") from None
        sock = next(iter(server.sockets))
        self.port = sock.getsockname()[1]
        self._ready.set()
        watchdog = asyncio.create_task(self._watchdog())
        await self._stop.wait()
        watchdog.cancel()
        server.close()
        await server.wait_closed()

    def stop(self, timeout: float = 2.0) -> None:
        if self._loop and self._stop and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        if self._thread:
            self._thread.join(timeout)

    @property
    def n_clients(self) -> int:
        return len(self._clients)

    # ------------------------------------------------------------ sending
    def broadcast(self, msg: dict | str) -> None:
        """Queue a message for every client; never blocks."""
        if self._loop is None or not self._clients:
            return
        text = msg if isinstance(msg, str) else dumps(msg)
        try:
            self._loop.call_soon_threadsafe(self._fanout, text)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _fanout(self, text: str) -> None:
        for c in list(self._clients):
            if c.queue.full():
                c.queue.get_nowait()
                c.skipped += 1
                self.counters["skipped"] += 1
            c.queue.put_nowait(text)

    async def _writer(self, c: _Client) -> None:
        while True:
            text = await c.queue.get()
            await c.ws.send(text)
            c.last_progress = time.monotonic()

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for c in list(self._clients):
                if c.queue.full() and now - c.last_progress > self._stall_s:
                    log.warning("dropping WebSocket client %s: not reading for %.1f s", c.ws.remote_address,
                                now - c.last_progress)
                    self.counters["dropped_clients"] += 1
                    c.ws.transport.abort()  # a client that never reads can't take part in a close handshake

    # ------------------------------------------------------------ receiving
    def _process_request(self, connection, request):
        if self._token:
            q = parse_qs(urlsplit(request.path).query)
            auth = request.headers.get("Authorization", "")
            if q.get("token", [None])[0] != self._token and auth != f"Bearer {self._token}":
                self.counters["rejected"] += 1
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        c = _Client(ws, asyncio.Queue(maxsize=self._max_queue))
        self._clients.add(c)
        self.counters["connections"] += 1
        if self._hello:
            c.queue.put_nowait(dumps(self._hello()))
        writer = asyncio.create_task(self._writer(c))
        try:
            async for raw in ws:
                self._receive(c, raw)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(c)
            writer.cancel()

    def _receive(self, c: _Client, raw: str | bytes) -> None:
        now = time.monotonic()
        c.tokens = min(self._rate, c.tokens + (now - c.t_tokens) * self._rate)
        c.t_tokens = now
        if c.tokens < 1.0:
            c.flood_drops += 1
            self.counters["flood_drops"] += 1
            if c.flood_drops in (1, 100, 1000):
                log.warning("WebSocket client %s sends commands too fast; dropping (%d so far)",
                            c.ws.remote_address, c.flood_drops)
            return
        c.tokens -= 1.0
        reply: dict
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise ValueError("a command must be a JSON object")
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurdly nested JSON
            self.counters["bad_messages"] += 1
            log.info("ignored malformed WebSocket message: %s", e)
            reply = {"type": "ack", "cmd": None, "ok": False, "detail": f"malformed message: {e}"}
        else:
            if self._on_command is None:
                reply = {"type": "ack", "cmd": msg.get("cmd"), "ok": False, "detail": "commands not enabled"}
            else:
                try:
                    reply = self._on_command(msg)
                except Exception as e:  # a command must never take the server down
                    log.exception("command %r failed", msg)
                    reply = {"type": "ack", "cmd": msg.get("cmd"), "ok": False, "detail": str(e)}
        if c.queue.full():
            c.queue.get_nowait()
            c.skipped += 1
        c.queue.put_nowait(dumps(reply))
