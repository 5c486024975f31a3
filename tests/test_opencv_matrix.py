"""The shared reader of OpenFace's matrix encodings (``ReadMatBin`` / ``ReadMat``): element types, and the
malformed inputs every parser relies on it to reject (the real files are covered by each parser's tests)."""
import numpy as np
import pytest

from gpuau.models.opencv_matrix import BinaryReader, read_text_matrix, text_tokens
from gpuau.models.store import LANDMARK_DIR, model_file


def _mat_bin(rows, cols, cv_type, values: np.ndarray) -> bytes:
    return np.array([rows, cols, cv_type], "<i4").tobytes() + values.tobytes()


@pytest.mark.parametrize("cv_type, dtype", [(0, np.uint8), (4, np.int32), (5, np.float32), (6, np.float64)])
def test_binary_matrix_types(cv_type, dtype):
    values = np.arange(6, dtype=np.dtype(dtype).newbyteorder("<"))
    r = BinaryReader(_mat_bin(2, 3, cv_type, values))
    m = r.matrix()
    assert m.dtype == dtype and m.dtype.isnative
    np.testing.assert_array_equal(m, np.arange(6).reshape(2, 3))
    r.expect_end("the matrix")


def test_malformed_binary_is_rejected():
    good = _mat_bin(2, 2, 5, np.ones(4, "<f4"))
    with pytest.raises(ValueError, match="m.dat: truncated at byte 12"):
        BinaryReader(good[:-1], "m.dat").matrix()
    with pytest.raises(ValueError, match="expected a float64 matrix"):
        BinaryReader(good).matrix(np.float64)
    with pytest.raises(ValueError, match="unsupported OpenCV matrix type 13"):  # CV_32FC2
        BinaryReader(_mat_bin(2, 1, 13, np.ones(4, "<f4"))).matrix()
    r = BinaryReader(good + b"\0", "m.dat")
    r.matrix()
    with pytest.raises(ValueError, match="m.dat: 1 trailing bytes after the matrix"):
        r.expect_end("the matrix")


def test_text_matrices_of_a_real_file():
    tokens = text_tokens(model_file(f"{LANDMARK_DIR}/pdms/In-the-wild_aligned_PDM_68.txt"))
    assert not any(t.startswith("#") for t in tokens)
    mean, end = read_text_matrix(tokens)
    princ, end = read_text_matrix(tokens, end)
    eig, end = read_text_matrix(tokens, end)
    assert (mean.shape, princ.shape, eig.shape, end) == ((204, 1), (204, 34), (1, 34), len(tokens))
    assert mean.dtype == np.float64
    with pytest.raises(ValueError, match="expected 6 values, found 5"):
        read_text_matrix("2 3 4 1 2 3 4 5".split())
