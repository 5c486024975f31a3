"""The float32 summation orders of OpenBLAS 0.3.21's AVX-512 small-matrix ``sgemm`` kernel (Debian's, the one
x86-64 CPUs with AVX-512 run for OpenFace's small products), found against the library through ``ctypes``.

For ``C(m, n) = sum_k A(m, k) B(k, n)`` the kernel takes the rows ``m`` in blocks of :data:`LANES`, each value
one fused multiply-add chain over ``k`` ascending, from 0; but when the last ``M % 16`` rows number 1 to 8 and
``K >= 32`` (:func:`dot_from`), each of those rows' values is :data:`LANES` chains, lane ``l`` over
``k = l, l + 16, ...``, added by :func:`lane_sum` (in adjacent pairs for a value of a block of 4 rows or 4
columns, by halves otherwise).  OpenFace's CCNF products (``gpuau.cpu.ccnf_response``) and
``PDM::CalcShape3D`` (``gpuau.cpu.pdm_fit.shape_3d``) follow them.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu.fp import fmaf

LANES = 16
"""Width of OpenBLAS's AVX-512 float32 vectors: the lanes of its dot-product path."""


@nb.njit(cache=True, nogil=True, inline="always")
def dot_from(m_rows, k_len):
    """First of the rows that the kernel computes by its dot-product path (``m_rows`` if none): the last
    ``m_rows % 16`` when they are 1 to 8 and ``k_len >= 32``."""
    tail = m_rows % LANES
    return m_rows - tail if 1 <= tail <= 8 and k_len >= 32 else m_rows


@nb.njit(cache=True, nogil=True, inline="always")
def lane_sum(lanes, adjacent):
    """The sum of :data:`LANES` partial sums as the kernel adds them: in adjacent pairs level by level
    (its reductions of 4 rows or 4 columns at once) or, with ``adjacent`` false, the upper half onto the
    lower one level by level (``_mm512_reduce_add_ps``); ``lanes`` is overwritten."""
    n = LANES
    while n > 1:
        n //= 2
        for i in range(n):
            if adjacent:
                lanes[i] = lanes[2 * i] + lanes[2 * i + 1]
            else:
                lanes[i] = lanes[i] + lanes[i + n]
    return lanes[0]


@nb.njit(cache=True, nogil=True, inline="always")
def one_row(a, b, out, lanes):
    """``out[n] = sum_k a[k] * b[n, k]`` as the kernel computes a one-row product (``M = 1``, ``A = a``,
    ``B(k, n) = b[n, k]``): the dot-product path from ``K = 32`` on, one chain below.  ``lanes`` (16,)
    float32 is scratch."""
    n_cols, k_len = b.shape
    zero = np.float32(0.0)
    if dot_from(1, k_len) == 0:
        k16 = k_len // LANES * LANES
        for n in range(n_cols):
            for i in range(LANES):
                lanes[i] = zero
            for k0 in range(0, k16, LANES):
                for i in range(LANES):
                    lanes[i] = fmaf(a[k0 + i], b[n, k0 + i], lanes[i])
            for i in range(k_len - k16):
                lanes[i] = fmaf(a[k16 + i], b[n, k16 + i], lanes[i])
            out[n] = lane_sum(lanes, n < n_cols // 4 * 4)
    else:
        for n in range(n_cols):
            v = zero
            for k in range(k_len):
                v = fmaf(a[k], b[n, k], v)
            out[n] = v
