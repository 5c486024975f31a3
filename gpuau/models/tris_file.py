"""OpenFace's face triangulation (``tris_68_full.txt``), used to mask the aligned face.

Port of the triangulation read in FaceAnalyser::Read (FaceAnalysis::ReadMat, Face_utils.cpp, through
:mod:`gpuau.models.opencv_matrix`).
"""
from __future__ import annotations

import os

import numpy as np

from gpuau.models.cache import load_cached
from gpuau.models.opencv_matrix import read_text_matrix, text_tokens
from gpuau.models.store import AU_DIR, model_file


def parse_tris(path: "str | os.PathLike") -> dict:
    """Parse the triangulation file: one text matrix.

    Returns
    -------
    dict
        ``triangles`` (T, 3) int32: landmark indices of each triangle.
    """
    return {"triangles": read_text_matrix(text_tokens(path))[0]}


def load_tris(models: "str | os.PathLike | None" = None) -> np.ndarray:
    """The AU stage's triangulation, (111, 3) int32."""
    path = model_file(f"{AU_DIR}/tris_68_full.txt", models)
    return load_cached(path, parse_tris)["triangles"]
