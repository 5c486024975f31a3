"""Clips made from the shared sample videos to exercise what the reference videos never do: a face that
leaves the frame and comes back, a cut to another person, a mirrored, rolled, shrunken or occluded face.

OpenFace's own output for them comes from running its ``FeatureExtraction`` on the FFV1 (lossless) files
that :func:`write_clip` writes (``python -m benchmarks.versus_openface --openface PATH``); the tests use
the copies in ``tests/data/openface-derived`` (:data:`EXACT`: clips whose frames are copies, flips or
constant fills of decoded frames, so every OpenCV version builds the same pixels).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np

CLIPS = {
    # name: (what it exercises, fps)
    "gap": ("default.wmv with 20 grey frames after frame 120: tracking lost, the face re-detected", 15.0),
    "late": ("31 grey frames, default.wmv frames 0-149, 150 grey frames, frames 150-287: a face before tracking "
             "ever started, and after it was given up (over 100 failures)", 15.0),
    "cut": ("default.wmv frames 0-143 then 2015-10-15-15-14.avi frames 0-143: a cut to another person", 15.0),
    "mirror": ("changeLighting.wmv flipped left-right", 15.0),
    "occlude": ("default.wmv with the lower face blacked out in frames 100-139", 15.0),
    "roll": ("default.wmv rotated by 25 degrees about the image centre", 15.0),
    "sideways": ("default.wmv turned a quarter (480x640, the face on its side): OpenFace fails two frames in three",
                 15.0),
    "small": ("2015-10-15-15-14.avi frames 0-299 at 320x240 (OpenCV INTER_AREA)", 30.0),
    "odd": ("default.wmv cropped to an odd frame size, 637x475", 15.0),
}
"""Derived clips: what each is and its frame rate."""

EXACT = ("gap", "late", "cut", "mirror", "occlude")
"""Clips built without resampling (the same pixels with any OpenCV) whose OpenFace CSVs are kept and compared whole
(``sideways`` is exact too, but its tracking is too unstable to compare whole: ``test_tracking_step.py``)."""


def _decode(path: Path) -> list:
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        cap.release()


def clip_frames(name: str, media: Path) -> "tuple[list, float]":
    """BGR frames and frame rate of the derived clip ``name`` (:data:`CLIPS`), built from ``media``."""
    if name not in CLIPS:
        raise KeyError(f"unknown derived clip {name!r}: one of {sorted(CLIPS)}")
    media = Path(media)
    fps = CLIPS[name][1]
    if name == "mirror":
        return [cv2.flip(f, 1) for f in _decode(media / "changeLighting.wmv")], fps
    if name in ("cut", "small"):
        other = _decode(media / "2015-10-15-15-14.avi")
        if name == "small":
            return [cv2.resize(f, (320, 240), interpolation=cv2.INTER_AREA) for f in other[:300]], fps
    d = _decode(media / "default.wmv")
    grey = np.full_like(d[0], 128)
    if name == "gap":
        return d[:120] + [grey] * 20 + d[120:], fps
    if name == "late":
        return [grey] * 31 + d[:150] + [grey] * 150 + d[150:], fps
    if name == "cut":
        return d[:144] + other[:144], fps
    if name == "odd":
        return [np.ascontiguousarray(f[3:478, 2:639]) for f in d], fps
    if name == "sideways":
        return [np.ascontiguousarray(np.rot90(f)) for f in d], fps
    if name == "occlude":
        out = [f.copy() for f in d]
        for f in out[100:140]:
            f[300:480, 200:460] = 0
        return out, fps
    h, w = d[0].shape[:2]  # roll
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0)
    return [cv2.warpAffine(f, rot, (w, h)) for f in d], fps


def write_clip(name: str, media: Path, folder: Path) -> Path:
    """The derived clip ``name`` as a lossless FFV1 ``.avi`` in ``folder`` (what OpenFace is run on).

    OpenCV's writer rounds odd frame sizes down to even ones, so clips of an odd size go through the
    ``ffmpeg`` command instead (raw BGR frames in, FFV1 out: the same pixels)."""
    frames, fps = clip_frames(name, media)
    path = Path(folder) / f"{name}.avi"
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        if shutil.which("ffmpeg") is None:
            raise RuntimeError(f"{path}: a {w}x{h} clip needs the ffmpeg command (OpenCV's writer evens the size)")
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "ffv1", str(path)]
        subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
        return path
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    if not out.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write FFV1 video here")
    try:
        for f in frames:
            out.write(f)
    finally:
        out.release()
    return path
