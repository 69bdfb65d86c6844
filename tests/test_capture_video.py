"""Video capture with real parts: real video files of a face (cv2.VideoWriter), a FIFO whose writer stalls
mid-stream (a real blocking cv2 read), an MJPEG-over-HTTP camera that hangs and comes back, a camera index that
does not exist."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from bridge.capture.base import CaptureError
from bridge.capture.video import (CameraSource, FileVideoSource, iter_video_file, list_cameras, open_video,
                                  to_bgr_uint8, video_info)
from bridge.clock import now
from bridge.config import SourcesConfig, VideoConfig
from bridge.frames import VideoFrame

from conftest import FACE_GAP

N_FRAMES = 90  # face_video: 3 s at 30 fps


def wait_status(src, status: str, timeout: float, drain: bool = True) -> dict:
    deadline = now() + timeout
    while now() < deadline:
        h = src.health()
        if h["status"] == status:
            return h
        if drain:
            src.wait_frame(0.02)
        else:
            time.sleep(0.02)
    raise AssertionError(f"status never became {status!r} within {timeout}s: {src.health()}")


def check_frame(f: VideoFrame, shape=(480, 640, 3)) -> None:
    assert isinstance(f, VideoFrame)
    assert f.image.dtype == np.uint8 and f.image.shape == shape and f.image.flags.c_contiguous


# ------------------------------------------------------------------------------------------------ offline path


def test_iter_video_file_is_deterministic(face_video):
    a = list(iter_video_file(face_video))
    b = list(iter_video_file(face_video))
    assert len(a) == len(b) == N_FRAMES
    assert [f.index for f in a] == list(range(N_FRAMES))
    assert [f.t_capture for f in a] == [i / 30.0 for i in range(N_FRAMES)]
    for f, g in zip(a, b):
        check_frame(f)
        assert np.array_equal(f.image, g.image)
    # it is the face, moving: consecutive frames differ a little, not a lot
    d = np.abs(a[10].image.astype(int) - a[11].image.astype(int)).mean()
    assert 0.5 < d < 40
    assert video_info(face_video) == {"fps": 30.0, "frames": N_FRAMES, "width": 640, "height": 480}


def test_gap_video_has_black_segment(face_video_gap):
    means = [f.image.mean() for f in iter_video_file(face_video_gap)]
    assert len(means) == N_FRAMES
    i0, i1 = FACE_GAP
    assert max(means[i0:i1]) < 3 and min(means[:i0] + means[i1:]) > 40


# ------------------------------------------------------------------------------------------------ file sources


@pytest.mark.slow
def test_realtime_newest_frame_wins_then_ends(face_video):
    src = FileVideoSource(face_video, speed="realtime")
    src.start()
    got: list[VideoFrame] = []
    t0 = now()
    while not src.ended and now() - t0 < 8:
        f = src.wait_frame(0.5)
        if f is not None:
            got.append(f)
            time.sleep(0.1)  # a consumer slower than 30 fps
    elapsed = now() - t0
    h = src.health()
    src.stop()
    assert src.ended and h["status"] == "ended"
    assert 2.8 < elapsed < 4.5  # paced at the file's 30 fps
    idx = [f.index for f in got]
    assert all(b > a for a, b in zip(idx, idx[1:])) and idx[-1] == N_FRAMES - 1
    assert h["dropped"] > 30 and h["frames"] == N_FRAMES and h["delivered"] + h["dropped"] == N_FRAMES
    assert all(b.t_capture > a.t_capture for a, b in zip(got, got[1:]))
    for f in got:
        check_frame(f)
        assert f.t_capture <= now()
    t1 = now()
    assert src.wait_frame(1.0) is None and now() - t1 < 0.1  # stopped: no waiting


def test_max_speed_delivers_every_frame(face_video):
    ref = list(iter_video_file(face_video))
    src = FileVideoSource(face_video, speed="max")
    src.start()
    got: list[VideoFrame] = []
    t0 = now()
    while not src.ended and now() - t0 < 10:
        f = src.wait_frame(0.5)
        if f is not None:
            got.append(f)
            if len(got) % 10 == 0:
                time.sleep(0.05)  # an uneven consumer must not lose frames either
    h = src.health()
    assert h["status"] == "ended"
    t1 = now()
    assert src.wait_frame(1.0) is None and now() - t1 < 0.1  # ended: no waiting
    src.stop()
    assert [f.index for f in got] == list(range(N_FRAMES))
    assert h["dropped"] == 0
    assert all(np.array_equal(f.image, r.image) for f, r in zip(got, ref))  # not mirrored: as recorded
    assert all(b.t_capture > a.t_capture for a, b in zip(got, got[1:]))


def test_loop_repeats_with_increasing_indices(face_video):
    src = open_video(VideoConfig(source=str(face_video)), SourcesConfig(speed="max", loop=True))
    assert isinstance(src, FileVideoSource)
    src.start()
    got = []
    while len(got) < int(N_FRAMES * 1.6):
        f = src.wait_frame(1.0)
        assert f is not None
        got.append(f)
    h = src.health()
    src.stop()
    assert [f.index for f in got] == list(range(len(got)))
    assert not src.ended and h["loops"] >= 1 and h["status"] == "ok"
    assert np.array_equal(got[N_FRAMES].image, got[0].image)


# ------------------------------------------------------------------------------------------------ live faults


def _unblock_fifo_openers(fifo, seconds: float = 1.0) -> None:
    """A reader blocked in open(2) on a FIFO waits for a writer: be one, briefly, so it gets EOF and exits."""
    deadline = now() + seconds
    while now() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader waiting (any more)
            time.sleep(0.05)
            continue
        os.close(fd)
        time.sleep(0.05)


@pytest.mark.slow
def test_watchdog_abandons_a_read_that_blocks_forever(make_face_video, tmp_path):
    """A FIFO whose writer sends half an MJPEG AVI and then stalls: cv2.read() blocks in read(2) for good."""
    avi = make_face_video("fifo_src", codec="MJPG")
    ref = list(iter_video_file(avi))
    data = avi.read_bytes()
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    release = threading.Event()

    def writer():
        try:
            with open(fifo, "wb") as f:  # blocks until the capture opens the FIFO
                f.write(data[: len(data) // 2])
                f.flush()
                release.wait(30)  # stall with the pipe open
        except BrokenPipeError:
            pass

    threading.Thread(target=writer, daemon=True).start()
    watchdog = 0.5
    src = CameraSource(str(fifo), watchdog_s=watchdog, open_timeout_s=1.0, backoff_initial_s=0.2,
                       backoff_max_s=0.4, mirror=True)
    assert src.kind == "live-file"
    src.start()
    try:
        got = []
        t0 = now()
        while src.health()["status"] != "ok" or not got:
            f = src.wait_frame(0.1)
            if f is not None:
                got.append(f)
            assert now() - t0 < 5, src.health()
        while src.health()["status"] == "ok":
            f = src.wait_frame(0.05)
            if f is not None:
                got.append(f)
            assert now() - t0 < 5, src.health()
        t_reconnecting = now()
        h = src.health()
        assert "watchdog" in h["detail"] and h["errors"] >= 1
        assert t_reconnecting - got[-1].t_capture < watchdog + 0.4
        assert h["abandoned_threads"] >= 1
        for f in got:  # mirrored in wait_frame
            check_frame(f)
            assert np.array_equal(f.image, ref[f.index].image[:, ::-1])
        time.sleep(1.0)  # it keeps trying (the reopened FIFO has nothing to say either)
        assert src.health()["status"] == "reconnecting"
    finally:
        t1 = now()
        src.stop(timeout=2.0)
        stop_s = now() - t1
        release.set()  # EOF: the blocked reads return and the abandoned threads exit
        _unblock_fifo_openers(fifo)
    assert stop_s < 2.5
    assert src.health()["status"] == "off"


@pytest.mark.slow
def test_hung_ip_camera_is_reopened(face_video, mjpeg_server):
    server = mjpeg_server(face_video, stall_after=15)
    src = open_video(VideoConfig(source=server.url, watchdog_s=0.6, mirror=False),
                     SourcesConfig(backoff_initial_s=0.2, backoff_max_s=1.0))
    assert isinstance(src, CameraSource) and src.kind == "stream"
    src.start()
    try:
        wait_status(src, "ok", 10)
        assert server.stalled.wait(5)
        t_stall = now()
        h = wait_status(src, "reconnecting", 3)
        assert now() - t_stall < 0.6 + 0.5 and "watchdog" in h["detail"]
        wait_status(src, "ok", 10)
        src.wait_frame(0)
        t_back = now()
        after = [f for f in (src.wait_frame(1.0) for _ in range(10)) if f is not None]
        h = src.health()
    finally:
        t1 = now()
        src.stop()
        assert now() - t1 < 2.5
    assert server.connections >= 2 and h["reconnects"] >= 1
    assert len(after) >= 8 and after[0].t_capture >= t_back - 0.1
    assert all(b.index > a.index for a, b in zip(after, after[1:]))
    for f in after:
        check_frame(f)


def test_missing_camera_keeps_retrying_without_hanging():
    src = CameraSource(42, backoff_initial_s=0.1, backoff_max_s=0.2, watchdog_s=0.5)
    assert src.kind == "camera"
    src.start()
    try:
        h = wait_status(src, "reconnecting", 2)
        time.sleep(0.8)
        h = src.health()
        assert h["status"] == "reconnecting" and "could not open camera 42" in h["detail"]
        assert h["errors"] >= 2 and h["reconnects"] >= 1
        assert src.wait_frame(0.05) is None
    finally:
        t0 = now()
        src.stop()
        assert now() - t0 < 2.0
    src.stop()
    assert src.health()["status"] == "off"


# ------------------------------------------------------------------------------------------------ small parts


def test_frames_are_normalised_to_bgr_uint8():
    assert to_bgr_uint8(None) is None
    assert to_bgr_uint8(np.zeros((0, 0, 3), np.uint8)) is None
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_bgr_uint8(g)
    assert out.shape == (3, 4, 3) and np.array_equal(out[:, :, 1], g)
    assert to_bgr_uint8(g[:, :, None]).shape == (3, 4, 3)
    bgra = np.full((2, 2, 4), 7, np.uint8)
    assert to_bgr_uint8(bgra).shape == (2, 2, 3)
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert to_bgr_uint8(deep).dtype == np.uint8 and to_bgr_uint8(deep).max() == 255
    big = np.zeros((2160, 3840, 3), np.uint8)
    assert to_bgr_uint8(big).shape == big.shape  # passed through; the face stage downsizes
    assert to_bgr_uint8(np.zeros((2, 2, 2), np.uint8)) is None


def test_open_video_choices_and_errors(face_video, tmp_path):
    s = SourcesConfig()
    assert isinstance(open_video(VideoConfig(source=0), s), CameraSource)
    assert isinstance(open_video(VideoConfig(source="1"), s), CameraSource)
    assert open_video(VideoConfig(source="rtsp://127.0.0.1:8554/cam"), s).kind == "stream"
    assert isinstance(open_video(VideoConfig(source=str(face_video)), s), FileVideoSource)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        open_video(VideoConfig(source=str(tmp_path / "missing.mp4")), s)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CaptureError):
        open_video(VideoConfig(source=str(junk)), s)
    with pytest.raises(FileNotFoundError):
        iter_video_file(tmp_path / "missing.avi")


def test_list_cameras_is_quick():
    t0 = now()
    cams = list_cameras()
    assert isinstance(cams, list) and now() - t0 < 5
    for c in cams:
        assert {"index", "width", "height", "backend"} <= set(c)
