"""A real Mosquitto broker for the tests: started on 127.0.0.1 on a free port, config in a temp dir.

``Broker(tmp).start()``; ``kill()`` is a crash (SIGKILL: no clean disconnects, last wills fire on the clients'
side only when the broker lives, so a crash is the harsh case); ``start()`` again on the same port.
``Broker(tmp, users={"td": "secret"})`` refuses anonymous clients (password file from mosquitto_passwd).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import free_port


def need_mosquitto() -> str:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        pytest.skip("mosquitto is not installed (apt install mosquitto): no MQTT broker")
    return exe


class Broker:
    def __init__(self, root: Path, users: dict[str, str] | None = None, port: int | None = None,
                 tls: dict[str, Path] | None = None):
        self.exe = need_mosquitto()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.root / "mosquitto.log"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice", "max_queued_messages 1000"]
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        if os.geteuid() == 0:
            lines.append("user root")  # stay root: the files below live in a root-owned temp dir
        if users:
            pw = self.root / "passwd"
            pw.write_text("")
            for u, p in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), u, p], check=True, capture_output=True,
                               timeout=20)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = self.root / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Broker":
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=fh, stderr=subprocess.STDOUT)
        fh.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {self.log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


class Collector:
    """A plain paho subscriber that keeps (arrival time, topic, payload)."""

    def __init__(self, port: int, topics: list[str], username: str | None = None, password: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.connected = False
        self.refused = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-collector-{free_port()}")
        if username:
            c.username_pw_set(username, password)

        def on_connect(client, userdata, flags, rc, props=None):
            if rc.is_failure:
                self.refused = str(rc)
                return
            self.connected = True
            if topics:
                client.subscribe([(t, 1) for t in topics])

        def on_message(client, userdata, m):
            self.messages.append((time.monotonic(), m.topic, m.payload, bool(m.retain)))

        c.on_connect = on_connect
        c.on_message = on_message
        c.reconnect_delay_set(0.2, 1.0)
        c.connect_async("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c

    def wait(self, cond, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.02)
        return cond()

    def on(self, suffix: str) -> list[tuple[float, str, bytes, bool]]:
        return [m for m in self.messages if m[1].endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_tls_files(d: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (d / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = d / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True, timeout=30)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=emotion-bridge test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": crt, "key": key}
