"""OpenFace's face triangulation (``tris_68_full.txt``), used to mask the aligned face.

Port of FaceAnalysis::ReadMat (Face_utils.cpp) for the triangulation read in FaceAnalyser::Read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gpuau.models.cache import load_cached
from gpuau.models.store import AU_DIR, model_file

_CV_DEPTH = {0: np.uint8, 4: np.int32, 5: np.float32, 6: np.float64}


def parse_tris(path: "str | os.PathLike") -> dict:
    """Parse a text matrix: rows, cols, OpenCV type, then the values row by row.

    Returns
    -------
    dict
        ``triangles`` (T, 3) int32: landmark indices of each triangle.
    """
    tokens = Path(path).read_text().split()
    rows, cols, cv_type = (int(t) for t in tokens[:3])
    values = np.array(tokens[3 : 3 + rows * cols], dtype=np.float64)
    if values.size != rows * cols:
        raise ValueError(f"{path}: expected {rows * cols} values, found {values.size}")
    return {"triangles": values.reshape(rows, cols).astype(_CV_DEPTH[cv_type & 7])}


def load_tris(models: "str | os.PathLike | None" = None) -> np.ndarray:
    """The AU stage's triangulation, (111, 3) int32."""
    path = model_file(f"{AU_DIR}/tris_68_full.txt", models)
    return load_cached(path, parse_tris)["triangles"]
