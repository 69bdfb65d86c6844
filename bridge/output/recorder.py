"""Record states to JSONL (one ``state`` message per line, plus events) without blocking the tick.

A writer thread drains a bounded queue; if the disk is full or the file unwritable, recording stops with a clear
log message and the live path carries on. Only derived numbers are written — never frames or audio.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path

from bridge.frames import AffectState
from bridge.output import schema

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, path: str | Path, features: bool = False, max_queue: int = 1024):
        self.path = Path(path)
        self.features = features
        self._q: queue.Queue = queue.Queue(max_queue)
        self.written = 0
        self.dropped = 0
        self.error = ""
        self._thread: threading.Thread | None = None
        self.active = False

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")  # fails here, at once, if unwritable
        self.active = True
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()
        log.info("recording states to %s", self.path)

    def __call__(self, state: AffectState, changed: str | None) -> None:
        """The OutputHub sink: queue and return."""
        if not self.active:
            return
        msg = schema.state_message(state, state.t_emit or 0.0, 0.0, 0.0)
        msg["t_capture_mono"] = state.t_capture
        if changed:
            msg["changed"] = changed
        if self.features and state.features is not None:
            msg["features"] = [round(float(x), 5) for x in state.features]
        try:
            self._q.put_nowait(msg)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            msg = self._q.get()
            if msg is None:
                break
            try:
                self._f.write(json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n")
                self.written += 1
                if self.written % 30 == 0:
                    self._f.flush()
            except (OSError, ValueError) as e:
                self.error = str(e)
                self.active = False
                log.error("recording to %s stopped: %s. The live output continues; free some space or choose "
                          "another file and start recording again.", self.path, e)
                break
        try:
            self._f.close()
        except OSError as e:
            log.error("closing %s failed: %s", self.path, e)

    def stop(self) -> None:
        self.active = False
        if self._thread and self._thread.is_alive():
            self._q.put(None)
            self._thread.join(2.0)

    def health(self) -> dict:
        return {"path": str(self.path), "active": self.active, "written": self.written, "dropped": self.dropped,
                "error": self.error}
