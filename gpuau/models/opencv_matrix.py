"""OpenFace's two encodings of an OpenCV matrix, shared by every model parser.

* binary, ``ReadMatBin`` (LandmarkDetectorUtils.cpp; ``ReadMatBin`` in FaceDetectorMTCNN.cpp is the same):
  little-endian ``int32`` rows, cols and OpenCV type, then ``rows * cols`` values row by row;
* text, ``ReadMat`` (LandmarkDetectorUtils.cpp) and ``FaceAnalysis::ReadMat`` (Face_utils.cpp): the same
  three numbers, then the values, as whitespace-separated tokens.

Only single-channel types occur in OpenFace's model files; others are rejected.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CV_DTYPES = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.int32, 5: np.float32, 6: np.float64}
"""OpenCV single-channel type code -> NumPy element type."""


def cv_dtype(cv_type: int, where: str = "") -> np.dtype:
    """NumPy dtype (native byte order) of a single-channel OpenCV type code."""
    if cv_type not in CV_DTYPES:
        raise ValueError(f"{where}unsupported OpenCV matrix type {cv_type} (single-channel types 0-6 only)")
    return np.dtype(CV_DTYPES[cv_type])


class BinaryReader:
    """Sequential little-endian reader over a model file's bytes.

    Parameters
    ----------
    data : bytes
    path : path-like, optional
        Named in error messages.
    """

    def __init__(self, data: bytes, path: "str | os.PathLike | None" = None):
        self.data = data
        self.pos = 0
        self.path = path

    def _prefix(self) -> str:
        return f"{self.path}: " if self.path is not None else ""

    def scalars(self, dtype, count: int = 1) -> np.ndarray:
        """``count`` values of ``dtype`` (stored little-endian), (count,) in native byte order."""
        dt = np.dtype(dtype).newbyteorder("<")
        n = count * dt.itemsize
        if count < 0 or self.pos + n > len(self.data):
            raise ValueError(f"{self._prefix()}truncated at byte {self.pos} (needs {n} more)")
        out = np.frombuffer(self.data, dt, count, self.pos).astype(dt.newbyteorder("="))
        self.pos += n
        return out

    def int32(self) -> int:
        return int(self.scalars(np.int32)[0])

    def float64(self) -> float:
        return float(self.scalars(np.float64)[0])

    def matrix(self, dtype=None) -> np.ndarray:
        """One ``ReadMatBin`` matrix, (rows, cols), in the file's element type.

        Port of ``ReadMatBin``, LandmarkDetectorUtils.cpp.  With ``dtype`` the stored type must be
        that one (a file that does not follow the format's expectations is rejected, not converted).
        """
        start = self.pos
        rows, cols, cv_type = (int(v) for v in self.scalars(np.int32, 3))
        dt = cv_dtype(cv_type, f"{self._prefix()}byte {start}: ")
        if rows < 0 or cols < 0 or (dtype is not None and dt != np.dtype(dtype)):
            raise ValueError(f"{self._prefix()}expected a {np.dtype(dtype or dt).name} matrix at byte {start}, got "
                             f"rows={rows} cols={cols} type={cv_type}")
        return self.scalars(dt, rows * cols).reshape(rows, cols)

    def expect_end(self, what: str) -> None:
        """Raise if bytes are left after ``what`` (the last thing the format holds)."""
        if self.pos != len(self.data):
            raise ValueError(f"{self._prefix()}{len(self.data) - self.pos} trailing bytes after {what}")


def text_tokens(path: "str | os.PathLike") -> "list[str]":
    """Whitespace-separated tokens of a text model file, ``#`` comment lines left out
    (``SkipComments``, LandmarkDetectorUtils.cpp)."""
    with open(Path(path), "r") as f:
        lines = [ln for ln in f if not ln.lstrip().startswith("#")]
    return " ".join(lines).split()


def read_text_matrix(tokens: "list[str]", start: int = 0) -> "tuple[np.ndarray, int]":
    """One text matrix from a token list.

    Port of ``ReadMat``, LandmarkDetectorUtils.cpp (values are parsed as float64, then stored in the
    matrix's type).

    Parameters
    ----------
    tokens : list of str
        Tokens of the file (:func:`text_tokens`).
    start : int
        Index of the matrix's ``rows`` token.

    Returns
    -------
    matrix : ndarray (rows, cols)
    end : int
        Index of the token after the matrix.
    """
    rows, cols, cv_type = (int(t) for t in tokens[start:start + 3])
    dt = cv_dtype(cv_type)
    size = rows * cols
    values = np.array(tokens[start + 3:start + 3 + size], dtype=np.float64)
    if values.size != size:
        raise ValueError(f"text matrix at token {start}: expected {size} values, found {values.size}")
    return values.astype(dt).reshape(rows, cols), start + 3 + size
