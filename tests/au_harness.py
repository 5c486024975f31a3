"""Shared helpers of the AU tests: reference landmarks in, OpenFace-format CSV out (compared with the
reference CSV by :func:`reference.compare`)."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from gpuau.au import AUAnalyzer
from gpuau.io import openface_columns, write_openface_csv
from gpuau.landmarks.pdm import AU_PDM, PDM
from reference import GLOBAL_PARAMS, LOCAL_PARAMS, landmarks_2d

VIDEOS = {"default": "default.wmv", "changeLighting": "changeLighting.wmv", "2015-10-15-15-14": "2015-10-15-15-14.avi"}


def _rotation_rows(euler: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """Rows x and y of ``Rx(pitch) @ Ry(yaw) @ Rz(roll)`` (OpenFace's ``Euler2RotationMatrix``), (F, 2, 3),
    and their derivatives by pitch, yaw and roll, (F, 3, 2, 3); float64."""
    a, b, c = euler.T
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    z = np.zeros_like(a)
    rows = np.stack([np.stack([cb * cc, -cb * sc, sb], 1),
                     np.stack([ca * sc + sa * sb * cc, ca * cc - sa * sb * sc, -sa * cb], 1)], 1)
    d_pitch = np.stack([np.stack([z, z, z], 1),
                        np.stack([-sa * sc + ca * sb * cc, -sa * cc - ca * sb * sc, -ca * cb], 1)], 1)
    d_yaw = np.stack([np.stack([-sb * cc, sb * sc, cb], 1), np.stack([sa * cb * cc, -sa * cb * sc, sa * sb], 1)], 1)
    d_roll = np.stack([np.stack([-cb * sc, -cb * cc, z], 1),
                       np.stack([ca * cc - sa * sb * sc, -ca * sc - sa * sb * cc, z], 1)], 1)
    return rows, np.stack([d_pitch, d_yaw, d_roll], 1)


def reference_landmarks(df: pd.DataFrame, iterations: int = 2) -> np.ndarray:
    """Best estimate of OpenFace's float landmarks from a reference CSV, (N, 68, 2) float32.

    OpenFace's landmarks are ``PDM::CalcShape2D`` of its 40 parameters ``p_*``, which the CSV prints to 3
    decimals, and the CSV rounds the landmarks themselves to 0.1 px (alone, that rounding moves AU
    intensities by ~0.01).  Both are measurements of the same shape: the estimate is the parameter set
    that best explains them, each weighted by its rounding's variance (landmarks 0.1**2 / 12, parameters
    0.001**2 / 12; a few Gauss-Newton steps in float64 from the printed parameters).  Rounding our own
    output and rebuilding it this way recovers our landmarks to 0.0035 px (mean per coordinate); rows
    without a tracked face keep the CSV values.
    """
    pdm = PDM.load(AU_PDM)
    n = pdm.n_points
    mean = pdm.mean_shape.astype(np.float64).reshape(3, n)
    basis = pdm.princ_comp.astype(np.float64).reshape(3, n, -1)
    lm = landmarks_2d(df, np.float64)
    out = lm.astype(np.float32)
    ok = np.flatnonzero(df["success"].to_numpy() > 0.5)
    if ok.size == 0:
        return out
    printed = df[GLOBAL_PARAMS + LOCAL_PARAMS].to_numpy(np.float64)[ok]
    observed = lm[ok].transpose(0, 2, 1).reshape(len(ok), 2 * n)  # all x, then all y
    w_landmark, w_param = 12 / 0.1 ** 2, 12 / 0.001 ** 2
    q = printed.copy()

    def shape(q):
        s3 = mean[None] + np.einsum("knm,fm->fkn", basis, q[:, 6:])
        rows, d_rows = _rotation_rows(q[:, 1:4])
        rotated = rows @ s3  # (F, 2, n)
        return s3, rows, d_rows, rotated, q[:, 0, None, None] * rotated + q[:, 4:6, None]

    for _ in range(iterations):
        s3, rows, d_rows, rotated, fitted = shape(q)
        scale = q[:, 0, None, None, None]
        jac = np.zeros((len(ok), 2, n, q.shape[1]))
        jac[..., 0] = rotated
        jac[..., 1:4] = scale * np.einsum("frdk,fkn->fdnr", d_rows, s3)
        jac[:, 0, :, 4] = 1.0
        jac[:, 1, :, 5] = 1.0
        jac[..., 6:] = scale * np.einsum("fdk,knm->fdnm", rows, basis)
        jac = jac.reshape(len(ok), 2 * n, -1)
        jt = jac.transpose(0, 2, 1)
        normal = w_landmark * (jt @ jac) + w_param * np.eye(q.shape[1])
        rhs = w_landmark * (jt @ (observed - fitted.reshape(len(ok), -1))[..., None])[..., 0] + w_param * (printed - q)
        q = q + np.linalg.solve(normal, rhs[..., None])[..., 0]
    out[ok] = shape(q)[-1].transpose(0, 2, 1).astype(np.float32)
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

