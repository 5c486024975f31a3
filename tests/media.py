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


def files(folder) -> dict:
    """``{name: bytes}`` of the files in ``folder`` (hidden ones, such as temporary outputs, left out)."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}
