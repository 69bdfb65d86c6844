"""``python -m bridge.demo``: try the bridge with no camera and no microphone.

Makes a short video of a real, smiling face (scikit-image's astronaut photo, with slight motion) and a spoken
sentence (espeak-ng), then runs the full live pipeline on them, paced at real time, so OSC, WebSocket and the
browser monitor behave exactly as with a webcam and a microphone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from bridge.features.face_model import cache_dir


def make_face_video(path: Path, seconds: float = 6.0, fps: float = 30.0, size=(640, 480)) -> Path:
    import cv2

    try:
        from skimage import data
    except ImportError:
        raise SystemExit("the demo needs scikit-image for its face photo: pip install scikit-image") from None
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = int(seconds * fps)
    for i in range(n):
        a = 2 * np.pi * i / n
        s = 0.9 + 0.03 * np.sin(2 * a)
        m = cv2.getRotationMatrix2D((256, 200), 2.0 * np.sin(a), s)
        m[:, 2] += (w / 2 - 256 + 12 * np.sin(a), h / 2 - 230 + 8 * np.cos(a))
        writer.write(cv2.warpAffine(face, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    writer.release()
    return path


def make_speech(path: Path, text: str = "Hello! I am so happy to see you here tonight. What a wonderful day.") -> Path:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise SystemExit("the demo needs espeak-ng to make speech (apt install espeak-ng / brew install espeak-ng), "
                         "or run the bridge on your own file: emotion-bridge run --audio my.wav --video my.mp4")
    subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True)
    return path


def main(argv: list[str] | None = None) -> None:
    d = cache_dir() / "demo"
    d.mkdir(parents=True, exist_ok=True)
    video = d / "face.mp4"
    audio = d / "speech.wav"
    if not video.is_file():
        make_face_video(video)
    if not audio.is_file():
        make_speech(audio)
    from bridge.cli import main as cli

    args = ["run", "--video", str(video), "--audio", str(audio), "--loop", "--duration", "30"]
    cli(args + list(argv if argv is not None else sys.argv[1:]), standalone_mode=True)


if __name__ == "__main__":
    main()
