"""Dataset loaders: RAVDESS file naming (audio-only FLAC/WAV and the audio-visual MP4 release) and a generic
manifest CSV (path,label[,speaker,start,end,valence,arousal]) for a user's own labelled recordings."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.labels import LABELS, va_target

SR = 16000
AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg"}
RAVDESS_EMOTIONS = {f"{i + 1:02d}": name for i, name in enumerate(LABELS)}  # 01 neutral ... 08 surprised


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    speaker: str
    intensity: int = 1  # RAVDESS: 1 normal, 2 strong
    start: float | None = None
    end: float | None = None
    valence: float | None = None
    arousal: float | None = None
    has_video: bool = False

    @property
    def va(self) -> tuple[float, float]:
        if self.valence is not None and self.arousal is not None:
            return self.valence, self.arousal
        return va_target(self.label, self.intensity)


def parse_ravdess_name(path: Path) -> Clip | None:
    """``MM-VV-EE-II-SS-RR-AA.ext``: modality 01 AV / 02 video-only / 03 audio-only; vocal channel 01 speech."""
    parts = path.stem.split("-")
    if len(parts) != 7 or not all(p.isdigit() for p in parts):
        return None
    modality, channel, emo, inten, _stmt, _rep, actor = parts
    if channel != "01" or emo not in RAVDESS_EMOTIONS:
        return None  # song is out of scope
    if modality == "03" and path.suffix.lower() in AUDIO_EXT:
        return Clip(path, RAVDESS_EMOTIONS[emo], f"actor{actor}", int(inten))
    if modality == "01" and path.suffix.lower() == ".mp4":  # audio-visual: audio track plus frames
        return Clip(path, RAVDESS_EMOTIONS[emo], f"actor{actor}", int(inten), has_video=True)
    return None  # 02 = video-only (no audio track): not used for the voice model


def load_ravdess(root: str | Path, actors: set[int] | None = None) -> list[Clip]:
    clips = []
    for p in sorted(Path(root).rglob("*")):
        c = parse_ravdess_name(p) if p.is_file() else None
        if c and (actors is None or int(c.speaker[5:]) in actors):
            clips.append(c)
    return clips


def load_manifest(csv_path: str | Path) -> list[Clip]:
    base = Path(csv_path).parent
    clips = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            label = (row.get("label") or "").strip().lower()
            if label not in LABELS:
                raise ValueError(f"{csv_path}:{i}: label {label!r} is not one of {', '.join(LABELS)}")
            p = Path(row["path"])
            p = p if p.is_absolute() else base / p

            def num(k: str) -> float | None:
                v = (row.get(k) or "").strip()
                return float(v) if v else None

            clips.append(Clip(p, label, (row.get("speaker") or "").strip() or "unknown", 2, num("start"),
                              num("end"), num("valence"), num("arousal"), p.suffix.lower() == ".mp4"))
    return clips


# Spanish emotional speech (../shared/data/spanish-emotion-16k): label = the file name's first word
SPANISH_LABELS = {"alegria": "happy", "asco": "disgust", "ira": "angry", "miedo": "fearful", "neutro": "neutral",
                  "sorpresa": "surprised", "tristeza": "sad"}


def load_spanish(root: str | Path, speakers: set[int] | None = None) -> list[Clip]:
    """``speakerNN/<Emotion>_<n>.flac`` (validation only: its source states no license)."""
    clips = []
    for p in sorted(Path(root).glob("speaker*/*")):
        lab = SPANISH_LABELS.get(p.stem.split("_")[0].lower())
        if lab is None or p.suffix.lower() not in AUDIO_EXT:
            continue
        if speakers is not None and int(p.parent.name[7:] or -1) not in speakers:
            continue
        clips.append(Clip(p, lab, p.parent.name, 2))
    return clips


def load_dataset(src: str | Path, actors: set[int] | None = None) -> list[Clip]:
    src = Path(src)
    if src.is_file() and src.suffix.lower() == ".csv":
        return load_manifest(src)
    if src.is_dir():
        return load_ravdess(src, actors) or load_spanish(src, actors)
    raise FileNotFoundError(f"{src}: expected a RAVDESS folder or a manifest .csv")


def read_audio(clip: Clip) -> np.ndarray:
    """Mono float32 at 16 kHz (any rate/format, audio track of mp4 through librosa/audioread)."""
    import librosa
    import soundfile as sf

    try:
        y, sr = sf.read(str(clip.path), dtype="float32", always_2d=True)
        y = y.mean(axis=1)
    except (RuntimeError, sf.LibsndfileError):
        y, sr = librosa.load(str(clip.path), sr=None, mono=True)
    if sr != SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=SR)
    if clip.start is not None or clip.end is not None:
        a = int((clip.start or 0) * SR)
        b = int(clip.end * SR) if clip.end is not None else len(y)
        y = y[a:b]
    return np.ascontiguousarray(y, dtype=np.float32)


def file_digest(paths: list[Path]) -> str:
    """Hash of the files' contents (the feature cache key and the training data list hash)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(hashlib.sha1(p.read_bytes()).digest())
    return h.hexdigest()
