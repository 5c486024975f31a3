"""Frames of the shared media for tests and benchmarks, decoded by OpenCV as OpenFace's capture reads them."""
from __future__ import annotations

import cv2
import numpy as np


def read_frames(path, frames: "int | list[int]") -> "list[np.ndarray]":
    """BGR uint8 frames (H, W, 3) of a video: its first ``frames`` frames, or those 0-based indices."""
    wanted = list(range(frames)) if isinstance(frames, int) else list(frames)
    cap = cv2.VideoCapture(str(path))
    found = {}
    try:
        for i in range(max(wanted, default=-1) + 1):
            ok, frame = cap.read()
            assert ok, f"{path}: frame {i} did not decode"
            if i in wanted:
                found[i] = frame
    finally:
        cap.release()
    return [found[i] for i in wanted]


def write_clip(path, frames, fps: float = 10.0, fourcc: str = "MJPG"):
    """``frames`` (BGR uint8, one size) written as the video ``path`` (MJPG, or ``fourcc``: FFV1 is lossless);
    returns ``path``."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), path
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def files(folder) -> dict:
    """``{name: bytes}`` of the files in ``folder`` (hidden ones, such as temporary outputs, left out, and the corpus
    run's settings log, whose lines come in the order the outputs finish)."""
    from gpuau.corpus import SETTINGS_LOG

    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".") and p.name != SETTINGS_LOG}


def assert_retried_after_a_worker_died(report, out, fault, reference, stderr: str) -> None:
    """A corpus of sample1.jpg and clip30.avi whose worker died on clip30.avi (``fault`` named it, and the
    dying worker removed it) finished as if nothing had happened: both done, and their outputs equal to
    ``reference``'s (whichever scheduler ran it)."""
    assert not fault.exists()
    assert "worker died analysing" in stderr
    assert [(o.input.name, o.status, o.frames) for o in report.outcomes] == [("sample1.jpg", "done", 1),
                                                                            ("clip30.avi", "done", 30)]
    assert files(out) == {k: v for k, v in files(reference).items() if k in ("sample1.csv", "clip30.csv")}
    assert not list(out.glob(".*.tmp"))  # what the dead worker was writing is gone too


def decoding_threads(path) -> list:
    """The live decoding threads of the video ``path`` (gpuau.video names them ``decode:<file name>``)."""
    import threading

    return [t for t in threading.enumerate() if t.name == f"decode:{path.name}"]
