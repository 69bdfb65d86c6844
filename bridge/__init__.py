"""Emotion bridge: face + voice -> streaming affect model -> OSC / WebSocket."""

__version__ = "0.1.0"

from bridge.frames import AffectState  # noqa: E402

__all__ = ["AffectState", "process_files", "__version__"]


def process_files(audio=None, video=None, config=None, weights=None):
    """Run the live pipeline on files with a virtual clock; see :func:`bridge.pipeline.process_files`."""
    from bridge.pipeline import process_files as _pf

    return _pf(audio=audio, video=video, config=config, weights=weights)
