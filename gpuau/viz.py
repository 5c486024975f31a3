"""Pictures of results: annotated videos (landmarks, head-pose axes, eyes and gaze, AU intensity bars) and AU plots.

Both read an OpenFace CSV (gpuau's or OpenFace's own), so they also show OpenFace's results.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import numpy as np

from gpuau._atomic import atomic_path
from gpuau.io import read_openface_table

AXIS_LENGTH_MM = 70.0
_AXIS_COLOURS = ((0, 0, 255), (0, 200, 0), (255, 80, 0))  # BGR: x red, y green, z blue
GAZE_LENGTH_MM = 50.0
_GAZE_COLOUR = (110, 220, 0)  # BGR, OpenFace's visualiser's
_EYE_OUTLINES = ((0, 8), (8, 20), (20, 28))
"""Closed outlines of each eye model's 28 points (``Visualizer::SetObservationGaze``): the iris, the eyelids and the
pupil; the eyelids in blue, the others in red."""


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
"""The containers :func:`render_video` writes (OpenCV takes other names, a ``.gif``, for a numbered image series)."""


def _au_names(table: dict) -> list:
    return sorted(c for c in table if re.fullmatch(r"AU\d+_r", c))


def _face_table(csv_path, face_id: int) -> "tuple[dict, np.ndarray]":
    """The OpenFace table of ``csv_path`` and which of its rows are face ``face_id``'s (a table without ``face_id``
    holds face 0).  ValueError for a photo's table, whose rows are its faces (FaceLandmarkImg's ``face`` column), with
    no frames to draw on or plot over; and for a face the table lacks: a mistyped id would give a video or plot with
    no face, as an untracked one."""
    table = read_openface_table(csv_path)
    if "frame" not in table:
        raise ValueError(f"{csv_path}: not the table of a video or image folder (no frame column; a photo's table has a "
                         f"row per face): render and plot take the CSV of a video")
    ids = table["face_id"].astype(int) if "face_id" in table else np.zeros(len(table["frame"]), int)
    rows = ids == face_id
    if len(ids) and not rows.any():
        faces = ", ".join(map(str, np.unique(ids)))
        raise ValueError(f"{csv_path}: no face {face_id} in it (its face ids: {faces}); choose one of them")
    return table, rows


def project_pose_axes(pose: np.ndarray, intrinsics, length: float = AXIS_LENGTH_MM) -> np.ndarray:
    """Image points of the head's origin and its x, y, z axes.

    Parameters
    ----------
    pose : (6,) float
        ``pose_Tx, pose_Ty, pose_Tz`` (mm) and ``pose_Rx, pose_Ry, pose_Rz`` (Euler angles, rad), as in the CSV.
    intrinsics : (fx, fy, cx, cy)
    length : float
        Axis length in mm.

    Returns
    -------
    (4, 2) float
        Origin, then the tips of the x, y and z axes.
    """
    from gpuau.landmarks.rotation import euler_to_rotation_matrix

    fx, fy, cx, cy = intrinsics
    r = np.asarray(euler_to_rotation_matrix(np.asarray(pose[3:6], np.float64)), np.float64)
    pts = np.vstack([np.zeros(3), r.T * length]) + np.asarray(pose[:3], np.float64)
    z = np.where(np.abs(pts[:, 2]) < 1e-6, 1e-6, pts[:, 2])
    return np.stack([fx * pts[:, 0] / z + cx, fy * pts[:, 1] / z + cy], axis=1)


def project_gaze(row: dict, intrinsics, length: float = GAZE_LENGTH_MM) -> np.ndarray:
    """Image points of each eye's pupil (the mean of its 8 iris points in camera space, ``eye_lmk_X/Y/Z``) and of the
    point ``length`` mm along its gaze (``gaze_0_*``, ``gaze_1_*``), as OpenFace's visualiser draws the gaze.

    Returns
    -------
    (2, 2, 2) float
        Per eye (left, right): the pupil, then the gaze's tip.
    """
    fx, fy, cx, cy = intrinsics
    pts = []
    for e in range(2):
        pupil = np.mean([[row[f"eye_lmk_{a}_{28 * e + i}"] for a in "XYZ"] for i in range(8)], axis=0)
        pts.append([pupil, pupil + length * np.array([row[f"gaze_{e}_{a}"] for a in "xyz"])])
    pts = np.array(pts, np.float64)
    z = np.where(np.abs(pts[..., 2]) < 1e-6, 1e-6, pts[..., 2])
    return np.stack([fx * pts[..., 0] / z + cx, fy * pts[..., 1] / z + cy], axis=-1)


def _draw_gaze(out: np.ndarray, row: dict, intrinsics) -> None:
    import cv2

    for e in range(2):
        points = np.array([[row[f"eye_lmk_x_{28 * e + i}"], row[f"eye_lmk_y_{28 * e + i}"]] for i in range(28)])
        for start, stop in _EYE_OUTLINES:
            colour = (255, 0, 0) if start == 8 else (0, 0, 255)
            cv2.polylines(out, [np.round(points[start:stop]).astype(np.int32)], True, colour, 1, cv2.LINE_AA)
    for pupil, tip in project_gaze(row, intrinsics):
        cv2.line(out, tuple(int(round(v)) for v in pupil), tuple(int(round(v)) for v in tip), _GAZE_COLOUR, 2,
                 cv2.LINE_AA)


def draw_frame(image: np.ndarray, row: dict, au_names: list, intrinsics) -> np.ndarray:
    """Draw one CSV row onto a copy of its BGR frame: landmarks, pose axes, the eyes and their gaze (when the CSV has
    them), and AU bars on a side panel.

    Returns
    -------
    (H, W + panel, 3) uint8
    """
    import cv2

    h, w = image.shape[:2]
    panel_w = 190
    out = np.zeros((h, w + panel_w, 3), np.uint8)
    out[:, :w] = image
    ok = row.get("success", 1) >= 0.5
    if ok and "x_0" in row:
        for i in range(68):
            cv2.circle(out, (int(round(row[f"x_{i}"])), int(round(row[f"y_{i}"]))), 2, (0, 255, 255), -1, cv2.LINE_AA)
    if ok and "pose_Tz" in row and row["pose_Tz"] > 0:
        pose = np.array([row[k] for k in ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")])
        pts = project_pose_axes(pose, intrinsics)
        o = tuple(int(round(v)) for v in pts[0])
        for tip, colour in zip(pts[1:], _AXIS_COLOURS):
            cv2.line(out, o, tuple(int(round(v)) for v in tip), colour, 2, cv2.LINE_AA)
    if ok and "gaze_0_x" in row:
        _draw_gaze(out, row, intrinsics)
    text = f"conf {row.get('confidence', 0):.2f}" + ("" if ok else "  no face")
    cv2.putText(out, text, (w + 8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    step = max(12, min(24, (h - 30) // max(1, len(au_names))))
    for k, name in enumerate(au_names):
        y = 30 + k * step
        value = float(row.get(name, 0.0)) if ok else 0.0
        cv2.putText(out, name[:-2], (w + 8, y + step - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (220, 220, 220), 1, cv2.LINE_AA)
        length = int(round(np.clip(value, 0, 5) / 5 * (panel_w - 60)))
        present = float(row.get(name[:-2] + "_c", 0.0)) >= 0.5
        cv2.rectangle(out, (w + 52, y + 3), (w + 52 + length, y + step - 3), (60, 200, 60) if present else (160, 160, 160), -1)
    return out


def _check_frames_stored(path: Path, frames: int, output: Path) -> None:
    """Raise OSError unless the video at ``path`` holds ``frames`` frames: OpenCV's writer reports no failed write (a
    full disk left a video without its index, under the output's name)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    stored = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    if stored != frames:
        full = shutil.disk_usage(path.parent).free < 1 << 20
        raise OSError(errno.ENOSPC if full else errno.EIO,
                      f"{output}: the video writer stored {stored} of {frames} frames"
                      + (": the disk is full (free space and run again)" if full else ""))


def render_video(video, csv_path, output, *, face_id: int = 0, orientation: str = "openface", camera=None) -> Path:
    """Annotated copy of ``video`` with the results of ``csv_path`` (one face: ``face_id``), written atomically.

    The container of ``output`` follows its extension (``.mp4`` uses the ``mp4v`` codec, ``.avi`` MJPG).
    ``orientation``: how the analysis turned a rotated video (:data:`gpuau.video.ORIENTATIONS`), so that the
    drawing lands on the frames it was made from; ``camera``: the analysis's (``Analyzer(camera=...)``), with which
    the pose axes and the gaze are projected.
    """
    import cv2

    from gpuau.video import camera_intrinsics, open_source

    output = Path(output)
    if output.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"{output}: write the annotated video as {', '.join(VIDEO_SUFFIXES)}")
    table, rows = _face_table(csv_path, face_id)
    if "x_0" not in table:
        raise ValueError(f"{csv_path}: no 2D landmark columns to draw (a table of --columns without 2Dfp); give "
                         "render a table with them, or no CSV (it analyses the video)")
    names = _au_names(table)
    index = {f: i for i, f in zip(np.flatnonzero(rows), table["frame"][rows].astype(int))}
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if output.suffix.lower() == ".avi" else "mp4v"))
    with open_source(video, orientation=orientation) as source, atomic_path(output) as tmp:
        intrinsics = camera_intrinsics(source.width, source.height, camera)
        tmp_video = tmp.with_suffix(output.suffix)  # the container follows the name
        writer, written = None, 0
        try:
            try:
                for frame in source:
                    i = index.get(frame.index + 1)
                    row = {k: v[i] for k, v in table.items()} if i is not None else {"success": 0.0}
                    img = draw_frame(frame.image, row, names, intrinsics)
                    if writer is None:
                        writer = cv2.VideoWriter(str(tmp_video), fourcc, source.fps or 30.0,
                                                 (img.shape[1], img.shape[0]))
                        if not writer.isOpened():
                            raise OSError(f"{output}: OpenCV cannot write this container; use .mp4 or .avi")
                    writer.write(img)
                    written += 1
            finally:
                if writer is not None:
                    writer.release()
            last = int(table["frame"].max()) if len(table["frame"]) else 0
            if last > written:
                raise ValueError(f"{csv_path}: its rows run to frame {last}, and {video} has {written} frames: it is "
                                 "another video's table (or the video was cut since); give the CSV of this video")
            _check_frames_stored(tmp_video, written, output)
            os.replace(tmp_video, tmp)
        finally:
            tmp_video.unlink(missing_ok=True)
    return output


def plot_aus(csv_path, output, *, face_id: int = 0) -> Path:
    """AU intensities over time, one small panel per AU (presence shaded), saved as an image (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("gpuau plot needs matplotlib: pip install matplotlib") from e
    table, keep = _face_table(csv_path, face_id)
    names = _au_names(table)
    if not names:
        raise ValueError(f"{csv_path}: no AU intensity columns")
    if "success" in table:
        keep &= table["success"] >= 0.5
    t = table["timestamp"][keep] if "timestamp" in table and table["timestamp"].any() else table["frame"][keep]
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 1.6 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, names):
        ax.plot(t, table[name][keep], lw=0.9, color="tab:blue")
        c = name[:-2] + "_c"
        if c in table:
            ax.fill_between(t, 0, 5, where=table[c][keep] >= 0.5, color="tab:orange", alpha=0.15, lw=0)
        ax.set_title(name[:-2], fontsize=8, loc="left")
        ax.set_ylim(0, 5)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("time (s)" if "timestamp" in table and table["timestamp"].any() else "frame", fontsize=9)
    fig.suptitle(f"{Path(csv_path).name}: AU intensity (0-5); shaded where present", fontsize=10)
    fig.tight_layout()
    output = Path(output)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, dpi=110, format=output.suffix.lstrip(".") or "png")
    plt.close(fig)
    return output
