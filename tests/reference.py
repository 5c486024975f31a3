"""OpenFace's reference CSVs (``shared/reference/openface-clnf``) in tests and benchmarks: the table, its
landmark and PDM parameter columns as arrays, the shared comparison tool, and the same kind of figures for the gaze
columns (which the shared tool does not compare)."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

GLOBAL_PARAMS = ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"]
LOCAL_PARAMS = [f"p_{i}" for i in range(34)]


def read_reference(path, nrows: "int | None" = None) -> pd.DataFrame:
    """An OpenFace CSV (``", "``-separated) as a table with plain column names; ``nrows``: the first rows only."""
    return pd.read_csv(path, skipinitialspace=True, nrows=nrows)


def landmarks_2d(df: pd.DataFrame, dtype=np.float32) -> np.ndarray:
    """``x_i``, ``y_i`` columns, (N, 68, 2)."""
    return np.stack([df[[f"x_{i}" for i in range(68)]].to_numpy(dtype),
                     df[[f"y_{i}" for i in range(68)]].to_numpy(dtype)], axis=2)


def landmarks_3d(df: pd.DataFrame, dtype=np.float64) -> np.ndarray:
    """Camera-space ``X_i``, ``Y_i``, ``Z_i`` columns (mm), (N, 68, 3)."""
    return np.stack([df[[f"{c}_{i}" for i in range(68)]].to_numpy(dtype) for c in "XYZ"], axis=2)


def global_params(df: pd.DataFrame) -> np.ndarray:
    """PDM global parameters ``p_scale, p_rx, p_ry, p_rz, p_tx, p_ty``, (N, 6) float32 (OpenFace's type)."""
    return df[GLOBAL_PARAMS].to_numpy(np.float32)


def local_params(df: pd.DataFrame) -> np.ndarray:
    """PDM local (shape) parameters ``p_0..p_33``, (N, 34) float32."""
    return df[LOCAL_PARAMS].to_numpy(np.float32)


@functools.cache
def _compare_tool(shared: Path):
    spec = importlib.util.spec_from_file_location("compare_openface", shared / "tools" / "compare_openface.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compare(reference_csv, candidate_csv, shared) -> dict:
    """``compare`` of the shared tool ``shared/tools/compare_openface.py``: its figures of ``candidate_csv``
    against ``reference_csv``."""
    return _compare_tool(Path(shared)).compare(str(reference_csv), str(candidate_csv))


GAZE_VECTORS = [f"gaze_{e}_{a}" for e in "01" for a in "xyz"]


def gaze_agreement(reference_csv, candidate_csv) -> "dict | None":
    """The gaze and eye-landmark columns of ``candidate_csv`` against ``reference_csv``, over the frames where both
    succeed (rows matched on ``frame`` and ``face_id``); None when either file has no gaze columns.

    Returns
    -------
    dict
        ``frames``; ``gaze_mae`` and ``gaze_max``: mean and largest absolute difference of the six gaze vector
        components; ``angle_mae``: of ``gaze_angle_x`` / ``_y`` (rad); ``left_angle_deg_mean`` / ``_max``: the angle
        between the left eye's vectors; ``eye_px_mean`` / ``eye_px_p99``: the 56 eye landmarks' distance (px);
        ``eye_depth_mae``: of ``eye_lmk_Z_*`` (mm; None when the reference keeps only the 2D eye landmarks).
    """
    ref, ours = read_reference(reference_csv), read_reference(candidate_csv)
    if "gaze_0_x" not in ref or "gaze_0_x" not in ours:
        return None
    m = ref.merge(ours, on=["frame", "face_id"], suffixes=("_r", "_o"))
    m = m[(m.success_r == 1) & (m.success_o == 1)]

    def diff(c):
        return (m[c + "_o"] - m[c + "_r"]).to_numpy(np.float64)

    gaze = np.abs(np.stack([diff(c) for c in GAZE_VECTORS]))
    left = [m[[f"gaze_0_{a}{s}" for a in "xyz"]].to_numpy(np.float64) for s in ("_r", "_o")]
    cos = np.clip(np.sum(left[0] * left[1], axis=1) / np.linalg.norm(left[0], axis=1) / np.linalg.norm(left[1], axis=1),
                  -1, 1)
    left_deg = np.degrees(np.arccos(cos))
    eyes = np.hypot(*(np.stack([diff(f"eye_lmk_{a}_{i}") for i in range(56)]) for a in "xy"))
    return {"frames": len(m), "gaze_mae": float(gaze.mean()), "gaze_max": float(gaze.max()),
            "angle_mae": float(np.abs(np.stack([diff("gaze_angle_x"), diff("gaze_angle_y")])).mean()),
            "left_angle_deg_mean": float(left_deg.mean()), "left_angle_deg_max": float(left_deg.max()),
            "eye_px_mean": float(eyes.mean()), "eye_px_p99": float(np.percentile(eyes, 99)),
            "eye_depth_mae": float(np.abs(np.stack([diff(f"eye_lmk_Z_{i}") for i in range(56)])).mean())
            if "eye_lmk_Z_0" in ref else None}
