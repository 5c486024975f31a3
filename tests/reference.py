"""OpenFace's reference CSVs (``shared/reference/openface-clnf``) in tests and benchmarks: the table, its
landmark and PDM parameter columns as arrays, and the shared comparison tool."""
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
