"""Where the MediaPipe face model comes from: the config path, else $BRIDGE_FACE_MODEL, else the user cache;
if none exists it is downloaded from MediaPipe's official URL (progress bar, sha256 checked, atomic rename)."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
       "face_landmarker.task")
SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
FILENAME = "face_landmarker.task"
ENV = "BRIDGE_FACE_MODEL"


class FaceModelError(RuntimeError):
    pass


def cache_dir() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "emotion-bridge"


def cached_path() -> Path:
    return cache_dir() / FILENAME


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path) -> None:
    """A face model must exist and be the official bundle (or, for a user's own model, at least a task zip)."""
    if not path.is_file():
        raise FaceModelError(f"face model not found: {path}")
    digest = sha256(path)
    if digest != SHA256:
        if not zipfile.is_zipfile(path):  # a .task is a zip; a truncated one has no central directory
            raise FaceModelError(f"{path} is not a MediaPipe .task bundle (truncated, corrupt or an HTML error "
                                 f"page?). Delete it and run `emotion-bridge models --fetch`.")


def resolve(config_path: str | None = None, download: bool = True) -> Path:
    """Find (or fetch) the face model; raise FaceModelError with exact instructions when impossible."""
    for candidate, origin in ((config_path, "video.face_model / --face-model"), (os.environ.get(ENV), f"${ENV}")):
        if candidate:
            p = Path(candidate).expanduser()
            if not p.is_file():
                raise FaceModelError(f"face model from {origin} not found: {p}")
            verify(p)
            return p
    p = cached_path()
    if p.is_file():
        if sha256(p) == SHA256:
            return p
        p.unlink()  # a corrupt cache entry: fetch again
    if not download:
        raise FaceModelError(_offline_help(p, "download disabled"))
    try:
        fetch(p)
    except OSError as e:
        raise FaceModelError(_offline_help(p, str(e))) from None
    return p


def _offline_help(p: Path, why: str) -> str:
    return (f"the MediaPipe face model is missing and could not be downloaded ({why}).\n"
            f"  Download {URL}\n  on a machine with internet and place it at:\n    {p}\n"
            f"  (or pass --face-model PATH, or set {ENV}=PATH, or run with --no-video for voice only).\n"
            f"  Expected sha256: {SHA256}")


def fetch(dest: Path, url: str = URL, expected_sha256: str = SHA256, timeout: float = 30.0) -> Path:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, os.fdopen(fd, "wb") as out:
            total = int(r.headers.get("Content-Length") or 0) or None
            with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), transient=True) as prog:
                task = prog.add_task(f"downloading {dest.name}", total=total)
                for chunk in iter(lambda: r.read(1 << 16), b""):
                    out.write(chunk)
                    h.update(chunk)
                    prog.update(task, advance=len(chunk))
        if h.hexdigest() != expected_sha256:
            raise OSError(f"checksum mismatch for {url}: got {h.hexdigest()}, expected {expected_sha256}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
