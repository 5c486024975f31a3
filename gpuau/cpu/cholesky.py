"""Cholesky inversion with OpenCV's float32 arithmetic, Numba (the CCNF patch experts' covariances,
:meth:`gpuau.landmarks.ccnf.CCNFScale.sigmas`)."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def cholesky_inverse(a):
    """Inverse of a symmetric positive definite float32 matrix with OpenCV's arithmetic.

    Port of ``cv::invert(src, dst, DECOMP_CHOLESKY)`` for ``CV_32F`` (``hal::Cholesky32f`` ->
    ``CholImpl``, matrix_decomp.cpp, with ``b`` the identity): ``L`` row by row with double sums of
    float32 products (the diagonal holds ``1 / L_ii``, from double ``t * t`` terms), then ``L y = I``
    and ``L^T x = y`` with double sums of float32 products, each result rounded to float32.  Serial
    and deterministic (OpenCV's LAPACK path, when present, depends on the BLAS thread count); the
    right-hand-side columns advance together so the inner loops vectorise, each entry keeping
    OpenCV's order.

    Parameters
    ----------
    a : ndarray (m, m) float32

    Returns
    -------
    ndarray (m, m) float32
        Zero where the matrix is not positive definite (a pivot below float32 epsilon), as
        ``cv::invert`` returns.
    """
    m = a.shape[0]
    low = a.copy()
    eps = np.finfo(np.float32).eps
    for i in range(m):
        for j in range(i):
            s = np.float64(low[i, j])
            for k in range(j):
                s -= low[i, k] * low[j, k]
            low[i, j] = np.float32(s * low[j, j])
        s = np.float64(low[i, i])
        for k in range(i):
            t = np.float64(low[i, k])
            s -= t * t
        if s < eps:
            return np.zeros((m, m), np.float32)
        low[i, i] = np.float32(1.0 / np.sqrt(s))
    x = np.eye(m, dtype=np.float32)
    acc = np.empty(m, np.float64)
    for i in range(m):
        for j in range(m):
            acc[j] = x[i, j]
        for k in range(i):
            lik = low[i, k]
            for j in range(m):
                acc[j] -= lik * x[k, j]
        for j in range(m):
            x[i, j] = np.float32(acc[j] * low[i, i])
    for i in range(m - 1, -1, -1):
        for j in range(m):
            acc[j] = x[i, j]
        for k in range(m - 1, i, -1):
            lki = low[k, i]
            for j in range(m):
                acc[j] -= lki * x[k, j]
        for j in range(m):
            x[i, j] = np.float32(acc[j] * low[i, i])
    return x
