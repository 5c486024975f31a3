"""Parser of OpenFace's point distribution model (PDM) text files.

A PDM file holds three matrices in OpenFace's text matrix format (``rows cols cv_type`` then the
values row by row), each after ``#`` comment lines: the mean shape (3n x 1, all x then all y then
all z), the principal components (3n x m) and the eigen values (1 x m).  Port of ``PDM::Read``,
PDM.cpp, and ``ReadMat`` / ``SkipComments``, LandmarkDetectorUtils.cpp.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# OpenCV type codes that OpenFace's text matrices use.
_CV_DTYPES = {0: np.uint8, 4: np.int32, 5: np.float32, 6: np.float64}


def read_text_matrices(tokens: "list[str]", start: int, count: int) -> "tuple[list[np.ndarray], int]":
    """Read ``count`` consecutive text matrices from a token list.

    Port of ``ReadMat``, LandmarkDetectorUtils.cpp (values are read at the file's precision).

    Parameters
    ----------
    tokens : list of str
        Whitespace-separated tokens of the file, comment lines removed.
    start : int
        Index of the first matrix's ``rows`` token.
    count : int
        Number of matrices to read.

    Returns
    -------
    matrices : list of ndarray, each (rows, cols)
    end : int
        Index of the token after the last matrix.
    """
    out = []
    i = start
    for _ in range(count):
        rows, cols, cv_type = int(tokens[i]), int(tokens[i + 1]), int(tokens[i + 2])
        i += 3
        size = rows * cols
        values = np.array(tokens[i:i + size], dtype=np.float64)
        i += size
        out.append(values.astype(_CV_DTYPES[cv_type]).reshape(rows, cols))
    return out, i


def _tokens_without_comments(path: Path) -> "list[str]":
    with open(path, "r") as f:
        lines = [ln for ln in f if not ln.lstrip().startswith("#")]
    return " ".join(lines).split()


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
    tokens = _tokens_without_comments(Path(path))
    (mean, princ, eig), _ = read_text_matrices(tokens, 0, 3)
    return {
        "mean_shape": mean.astype(np.float32).reshape(-1),
        "princ_comp": princ.astype(np.float32),
        "eigen_values": eig.astype(np.float32).reshape(-1),
    }
