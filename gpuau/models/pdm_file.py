"""Parser of OpenFace's point distribution model (PDM) text files.

A PDM file holds three matrices in OpenFace's text matrix format (``rows cols cv_type`` then the
values row by row), each after ``#`` comment lines: the mean shape (3n x 1, all x then all y then
all z), the principal components (3n x m) and the eigen values (1 x m).  Port of ``PDM::Read``,
PDM.cpp (matrices read by :mod:`gpuau.models.opencv_matrix`).
"""
from __future__ import annotations

import os

import numpy as np

from gpuau.models.opencv_matrix import read_text_matrix, text_tokens


def parse_pdm(path: "str | os.PathLike") -> "dict[str, np.ndarray]":
    """Parse a PDM text file.

    Parameters
    ----------
    path : path-like
        e.g. ``lib/local/LandmarkDetector/model/pdms/In-the-wild_aligned_PDM_68.txt``.

    Returns
    -------
    dict
        ``mean_shape`` (3n,) float32, ``princ_comp`` (3n, m) float32, ``eigen_values`` (m,) float32
        (OpenFace reads doubles and converts them to float).
    """
    tokens = text_tokens(path)
    mean, end = read_text_matrix(tokens)
    princ, end = read_text_matrix(tokens, end)
    eig, _ = read_text_matrix(tokens, end)
    return {
        "mean_shape": mean.astype(np.float32).reshape(-1),
        "princ_comp": princ.astype(np.float32),
        "eigen_values": eig.astype(np.float32).reshape(-1),
    }
