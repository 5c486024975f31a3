"""Shared helpers of the AU tests: reference landmarks in, OpenFace-format CSV out (compared with the
reference CSV by :func:`reference.compare`)."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from gpuau.au import AUAnalyzer
from gpuau.io import openface_columns, write_openface_csv
from gpuau.landmarks.pdm import AU_PDM, PDM
from reference import global_params, landmarks_2d, local_params

VIDEOS = {"default": "default.wmv", "changeLighting": "changeLighting.wmv", "2015-10-15-15-14": "2015-10-15-15-14.avi"}


def reference_landmarks(df: pd.DataFrame) -> np.ndarray:
    """Best estimate of OpenFace's float landmarks from a reference CSV, (N, 68, 2) float32.

    The CSV rounds landmarks to 0.1 px, which alone moves AU intensities by ~0.01.  OpenFace's
    landmarks are the PDM shape of its parameters (written to 3 decimals), so the shape of
    ``p_*`` is placed by the similarity (least squares, float64) that best fits the rounded
    landmarks; rows without a tracked face keep the CSV values.
    """
    pdm = PDM.load(AU_PDM)
    lm, g, p = landmarks_2d(df, np.float64), global_params(df), local_params(df)
    out = lm.astype(np.float32)
    for i in np.flatnonzero(df["success"].to_numpy() > 0.5):
        shape = pdm.calc_shape_2d(g[i], p[i]).astype(np.float64)
        a, b = shape - shape.mean(0), lm[i] - lm[i].mean(0)
        c = (a * b).sum() / (a * a).sum()
        s = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / (a * a).sum()
        out[i] = (a @ np.array([[c, s], [-s, c]]) + lm[i].mean(0)).astype(np.float32)
    return out


def run_video(media_dir, df: pd.DataFrame, video: str, landmarks: np.ndarray) -> dict:
    """Frames of ``video`` + reference landmarks/success -> post-processed AU columns."""
    cap = cv2.VideoCapture(str(media_dir / video))
    analyzer = AUAnalyzer()
    success = df["success"].to_numpy() > 0.5
    for i in range(len(df)):
        ok, frame = cap.read()
        assert ok, f"{video}: frame {i} missing"
        analyzer.add_frame(frame, landmarks[i], bool(success[i]), float(df["timestamp"].iloc[i]))
    cap.release()
    return analyzer.finish()


def write_candidate(path, df: pd.DataFrame, aus: dict):
    """The reference's non-AU columns (gaze left out) with our AU columns, as an OpenFace CSV."""
    reg = [c[:-2] for c in aus if c.endswith("_r")]
    cls = [c[:-2] for c in aus if c.endswith("_c")]
    cols = openface_columns(reg, cls)
    table = {c: (aus[c] if c in aus else df[c].to_numpy()) for c in cols}
    return write_openface_csv(path, table, order=cols)

