"""The 2x2 similarity (scale x rotation) between two shapes and its inverse, as OpenFace computes
them, for a batch of shape pairs (Numba; twin of ``gpuau/kernels/similarity.cu``).

Port of ``AlignShapesWithScale`` and ``AlignShapesKabsch2D`` (RotationHelpers.h) and of the
``Matx22f::inv(DECOMP_LU)`` that ``Patch_experts::Response`` applies to the result, with the
arithmetic of the OpenCV 4.x functions they call, so that the result equals OpenFace's bit for bit
(checked against OpenFace's header built with OpenCV 4.6, ``tests/data/similarity_opencv46.npz``):

* ``cv::mean`` of a column: a double sum in point order, times ``1. / n``, rounded to float;
* centring and squares in float; ``cv::sum`` of the ``n x 2`` squares in double, in the order of
  OpenCV's AVX2 ``Sum_SIMD<float, double>`` (lanes ``j`` and ``j + 8``, ``j + 4`` and ``j + 12`` of
  each 16 values paired, two 4-lane accumulators, then the lanes in order; the rest in groups of 4
  summed in float);
* the division by the RMS scale as ``cv::Mat / double`` evaluates it: times ``(float)(1 / s)``;
* ``src.t() * dst`` as OpenCV's small float ``gemm``: products summed in double in point order;
* ``cv::SVD`` of that 2x2 matrix: ``JacobiSVDImpl_<float>`` (one-sided Jacobi in float with
  double norms, ``eps = 2 FLT_EPSILON``, OpenCV's own ``hypot``, a seeded random vector for a zero
  singular value);
* ``vt.t() * corr * u.t()`` (and the determinant that picks ``corr``) as two more small gemms;
* the inverse's determinant fused as OpenFace's ``-O3 -march=native`` build fuses it:
  ``fmaf(a00, a11, -(a01 * a10))``.

Everything else is float32 or float64 arithmetic in that order, no fused multiply-add elsewhere,
and ``sqrt`` only: the CUDA twin rounds the same.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu.fp import fmaf
from gpuau.kernels.similarity import check_similarity_args

_F = np.float32
_FLT_MIN = float(np.finfo(np.float32).tiny)
_EPS = np.float32(2 * np.finfo(np.float32).eps)
_RNG_COEFF = np.uint64(4164903690)


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _hypot(a, b):
    """OpenCV's ``hypot`` template (lapack.cpp), in double."""
    a, b = abs(a), abs(b)
    if a > b:
        b /= a
        return a * np.sqrt(1.0 + b * b)
    if b > 0:
        a /= b
        return b * np.sqrt(1.0 + a * a)
    return 0.0


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _sq(v, i):
    """``v[i]`` squared in float32."""
    return v[i] * v[i]


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _cv_sum_squares(v, count):
    """``cv::sum`` of the float32 squares of ``v[:count]`` (``cv::pow(v, 2)``; a double, the order of the
    module docstring)."""
    acc = np.zeros(8)
    x = 0
    while x <= count - 16:
        for j in range(4):
            acc[j] += np.float64(_sq(v, x + j)) + np.float64(_sq(v, x + 8 + j))
            acc[4 + j] += np.float64(_sq(v, x + 4 + j)) + np.float64(_sq(v, x + 12 + j))
        x += 16
    s = 0.0
    for j in range(8):
        s += acc[j]
    while x <= count - 4:
        s += np.float64(((_sq(v, x) + _sq(v, x + 1)) + _sq(v, x + 2)) + _sq(v, x + 3))
        x += 4
    while x < count:
        s += np.float64(_sq(v, x))
        x += 1
    return s


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _centred_scaled(shape, buf):
    """``shape`` (n, 2) minus its column means, into ``buf`` (2n,) row-major, then divided by its RMS
    distance from the centre; returns that RMS scale (float32)."""
    n = shape.shape[0]
    for c in range(2):
        s = 0.0
        for i in range(n):
            s += np.float64(shape[i, c])
        mean = np.float32(s * (1.0 / n))
        for i in range(n):
            buf[2 * i + c] = shape[i, c] - mean
    scale = np.float32(np.sqrt(_cv_sum_squares(buf, 2 * n) / n))
    inv = np.float32(1.0 / np.float64(scale))
    for k in range(2 * n):
        buf[k] = buf[k] * inv
    return scale


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _rng_next(state):
    """``cv::RNG::next``: the new state and the 32-bit value it returns."""
    state = (state & np.uint64(0xFFFFFFFF)) * _RNG_COEFF + (state >> np.uint64(32))
    return state, state & np.uint64(0xFFFFFFFF)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _svd2(a, u, w, vt):
    """``cv::SVD(a)`` of a float32 2x2 ``a``: ``u``, ``w`` (descending), ``vt`` (float32), as
    ``_SVDcompute`` + ``JacobiSVDImpl_<float>`` compute them (At = a transposed; u = At transposed)."""
    at = np.empty((2, 2), np.float32)
    for i in range(2):
        for k in range(2):
            at[i, k] = a[k, i]
            vt[i, k] = _F(1.0) if i == k else _F(0.0)
    W = np.empty(2)
    for i in range(2):
        W[i] = np.float64(at[i, 0]) * at[i, 0] + np.float64(at[i, 1]) * at[i, 1]
    for it in range(30):
        p = np.float64(at[0, 0]) * at[1, 0] + np.float64(at[0, 1]) * at[1, 1]
        wa, wb = W[0], W[1]
        if abs(p) <= np.float64(_EPS) * np.sqrt(wa * wb):
            break
        p *= 2.0
        beta = wa - wb
        gamma = _hypot(p, beta)
        if beta < 0:
            delta = (gamma - beta) * 0.5
            s = np.float32(np.sqrt(delta / gamma))
            c = np.float32(p / (gamma * np.float64(s) * 2.0))
        else:
            c = np.float32(np.sqrt((gamma + beta) / (gamma * 2.0)))
            s = np.float32(p / (gamma * np.float64(c) * 2.0))
            delta = p * p * 0.5 / (gamma + beta)
        W[0] += delta
        W[1] -= delta
        keep_norms = it % 2 != 0 and W[0] > 0 and W[1] > 0
        norm0 = norm1 = 0.0
        for k in range(2):
            t0 = c * at[0, k] + s * at[1, k]
            t1 = -s * at[0, k] + c * at[1, k]
            at[0, k], at[1, k] = t0, t1
            norm0 += np.float64(t0) * t0
            norm1 += np.float64(t1) * t1
        if not keep_norms:
            W[0], W[1] = norm0, norm1
        for k in range(2):
            t0 = c * vt[0, k] + s * vt[1, k]
            t1 = -s * vt[0, k] + c * vt[1, k]
            vt[0, k], vt[1, k] = t0, t1
    for i in range(2):
        W[i] = np.sqrt(np.float64(at[i, 0]) * at[i, 0] + np.float64(at[i, 1]) * at[i, 1])
    if W[0] < W[1]:
        W[0], W[1] = W[1], W[0]
        for k in range(2):
            at[0, k], at[1, k] = at[1, k], at[0, k]
            vt[0, k], vt[1, k] = vt[1, k], vt[0, k]
    for i in range(2):
        w[i] = np.float32(W[i])
    state = np.uint64(0x12345678)
    for i in range(2):
        sd = W[i]
        while sd <= _FLT_MIN:
            # a zero singular value: a random +-1/m vector, orthogonalised against the rows before
            val0 = np.float32(0.5)
            for k in range(2):
                state, bits = _rng_next(state)
                at[i, k] = val0 if bits & np.uint64(256) else -val0
            for _ in range(2):
                for j in range(i):
                    sd = 0.0
                    for k in range(2):
                        sd += at[i, k] * at[j, k]
                    asum = np.float32(0.0)
                    for k in range(2):
                        t = np.float32(at[i, k] - sd * at[j, k])
                        at[i, k] = t
                        asum += abs(t)
                    asum = np.float32(1.0) / asum if asum != 0 else np.float32(0.0)
                    for k in range(2):
                        at[i, k] *= asum
            sd = np.sqrt(np.float64(at[i, 0]) * at[i, 0] + np.float64(at[i, 1]) * at[i, 1])
        s = np.float32(1.0 / sd)
        for k in range(2):
            at[i, k] *= s
    for i in range(2):
        for k in range(2):
            u[i, k] = at[k, i]


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _gemm2(a, b, out):
    """``out = a @ b`` for float32 2x2 matrices, each entry summed in double (OpenCV's small gemm)."""
    for i in range(2):
        for j in range(2):
            out[i, j] = np.float32(np.float64(a[i, 0]) * b[0, j] + np.float64(a[i, 1]) * b[1, j])


@nb.njit(cache=True, nogil=True, error_model="numpy")
def similarity_range(src, dst, out, start, stop):
    """Pairs ``start`` to ``stop - 1`` of :func:`similarity` (``dst`` of one shape or one per pair)."""
    n = src.shape[1]
    bs = np.empty(2 * n, np.float32)
    bd = np.empty(2 * n, np.float32)
    m = np.empty((2, 2), np.float32)
    u = np.empty((2, 2), np.float32)
    w = np.empty(2, np.float32)
    vt = np.empty((2, 2), np.float32)
    v = np.empty((2, 2), np.float32)
    ut = np.empty((2, 2), np.float32)
    p = np.empty((2, 2), np.float32)
    r = np.empty((2, 2), np.float32)
    for f in range(start, stop):
        s_src = _centred_scaled(src[f], bs)
        s_dst = _centred_scaled(dst[f if dst.shape[0] > 1 else 0], bd)
        scale = s_dst / s_src
        for i in range(2):
            for j in range(2):
                acc = 0.0
                for k in range(n):
                    acc += np.float64(bs[2 * k + i]) * bd[2 * k + j]
                m[i, j] = np.float32(acc)
        _svd2(m, u, w, vt)
        for i in range(2):
            for j in range(2):
                v[i, j], ut[i, j] = vt[j, i], u[j, i]
        _gemm2(v, ut, p)
        det = np.float64(p[0, 0]) * p[1, 1] - np.float64(p[0, 1]) * p[1, 0]
        if det <= 0:  # corr = diag(1, -1): no reflection
            v[0, 1], v[1, 1] = -v[0, 1], -v[1, 1]
        _gemm2(v, ut, r)
        a00, a01, a10, a11 = scale * r[0, 0], scale * r[0, 1], scale * r[1, 0], scale * r[1, 1]
        out[f, 0, 0, 0], out[f, 0, 0, 1], out[f, 0, 1, 0], out[f, 0, 1, 1] = a00, a01, a10, a11
        d = fmaf(a00, a11, -(a01 * a10))
        if d == 0:
            out[f, 1] = 0
        else:
            d = np.float32(1.0) / d
            out[f, 1, 0, 0], out[f, 1, 0, 1], out[f, 1, 1, 0], out[f, 1, 1, 1] = a11 * d, -a01 * d, -a10 * d, a00 * d


def similarity(src, dst) -> np.ndarray:
    """Similarity from each shape of ``src`` onto ``dst`` and its inverse, OpenFace's bits.

    Port of ``AlignShapesWithScale`` (RotationHelpers.h) and ``Matx22f::inv(DECOMP_LU)`` (the
    arithmetic of the module docstring).

    Parameters
    ----------
    src : array_like (F, n, 2) float32
        Shapes to map (``x, y`` per point).
    dst : array_like (F, n, 2) or (1, n, 2) float32
        Target shape of each pair, or one for all.

    Returns
    -------
    ndarray (F, 2, 2, 2) float32
        ``[f, 0]``: the 2x2 scale x rotation best mapping centred ``src[f]`` onto centred
        ``dst[f]``; ``[f, 1]``: its inverse (zeros if singular).
    """
    src, dst = check_similarity_args(np, src, dst)
    out = np.empty((len(src), 2, 2, 2), _F)
    similarity_range(src, dst, out, 0, len(src))
    return out
