"""CCNF patch expert response maps in OpenFace's float32 summation orders (Numba; large calls split
between two threads, each area mapped by the same serial code).

Port of ``CCNF_patch_expert::ResponseOpenBlas`` and ``im2colContrastNormBias``,
CCNF_patch_expert.cpp: every ``patch_h x patch_w`` window of the area of interest is mean-centred and
scaled to unit L2 norm; each neuron's activation is ``bias + normalised window . filter``; each neuron
adds ``2 alpha / (1 + expf(-x))`` in turn; the map is multiplied by the expert's CCNF covariance
``Sigma`` and shifted to be non-negative.

OpenFace does the two products with OpenBLAS's ``sgemm``, whose orders are reproduced here bit for bit
(:mod:`gpuau.cpu.sgemm_order`): for the activations ``A`` is the windows (``M`` = map positions in OpenFace's
column-major order, ``K`` = 1 + taps: the constant 1 times the bias first, then the taps column-major), ``B``
the neurons; for the Sigma product ``A`` is the map as one row (``M = 1``) and ``B(k, n) = Sigma[n, k]``.

``expf`` is :func:`gpuau.cpu.fp.expf`, glibc's.  ``gpuau/kernels/ccnf_response.cu`` computes the same
values in the same orders.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu import threads
from gpuau.cpu.fp import expf, fmaf
from gpuau.cpu.sgemm_order import LANES, dot_from, lane_sum, one_row
from gpuau.kernels.ccnf_response import expert_indices


PARALLEL_MIN_WORK = 1 << 19
"""Multiply-adds of the neuron activations (areas x map values x taps x neurons) from which a call
is shared between the calling thread and the helper thread (:mod:`gpuau.cpu.threads`), each
mapping chunks of the areas.  A tracked 640x480 face's main-model calls (68 areas, 7x7 or 9x9
maps: 2.8-4.7 M) are split; the eye models' 3x3 maps (0.2 M) are not, a thread hand-over costing
more than it saves there."""


@nb.njit(cache=True, nogil=True, inline="always")
def _fused_squares(n_in):
    """First tap whose square OpenFace's build adds with a fused multiply-add: GCC vectorises the
    sum of squares (products rounded, then added in order) 16 taps, then 8, at a time, and fuses the
    multiply-adds of the last ``n_in % 8`` (121 taps: the last one)."""
    return n_in // 16 * 16 + (8 if n_in % 16 >= 8 else 0)


@nb.njit(cache=True, nogil=True)
def im2col_contrast_norm(area, patch_h, patch_w, out, mean, scale, shifted):
    """Normalised windows of an area of interest, one column per window.

    Each window's mean and squared norm are float32 sums in OpenFace's order (row-major for the
    sum, column-major for the squares, the last squares fused: :func:`_fused_squares`), serial
    dependency chains; all windows advance together.  The area is first copied once per tap column
    ``xx`` as its columns ``xx .. xx + R_w - 1`` in rows of ``R_w`` (``shifted``): a tap's values over
    the windows, in the map's order ``p = y * R_w + x``, are then one contiguous run, so every loop
    over the windows is one long loop that vectorises (indices unsigned, so that no negative-index
    wraparound test stops the vectoriser).

    Parameters
    ----------
    area : ndarray (A_h, A_w) float32, C-contiguous
    patch_h, patch_w : int
    out : ndarray (patch_h*patch_w, R_h*R_w) float32
        ``out[t, y * R_w + x]``: tap ``t`` (column-major) of the window at ``(y, x)``, minus the
        window's mean, times the reciprocal of its L2 norm (1 for a flat window).
    mean, scale : ndarray (R_h*R_w,) float32
        Scratch.
    shifted : ndarray (patch_w*A_h*R_w,) float32
        Scratch: ``shifted[(xx * A_h + row) * R_w + x] = area[row, xx + x]``.
    """
    u = np.uint64
    a_h, a_w = u(area.shape[0]), u(area.shape[1])
    p_h, p_w = u(patch_h), u(patch_w)
    r_h, r_w = a_h - p_h + u(1), a_w - p_w + u(1)
    n_in = p_h * p_w
    n_p = r_h * r_w
    count = np.float32(patch_h * patch_w)
    for xx in range(p_w):
        for row in range(a_h):
            o = (xx * a_h + row) * r_w
            for x in range(r_w):
                shifted[o + x] = area[row, xx + x]
    for p in range(n_p):
        mean[p] = np.float32(0.0)
        scale[p] = np.float32(0.0)
    # four taps a pass (row-major for the sum), each added in turn: a quarter of the loads and stores
    # (tap (yy, xx) of window p: shifted[(xx * A_h + yy) * R_w + p])
    i = u(0)
    while i + u(4) <= n_in:
        o0 = ((i % p_w) * a_h + i // p_w) * r_w
        o1 = (((i + u(1)) % p_w) * a_h + (i + u(1)) // p_w) * r_w
        o2 = (((i + u(2)) % p_w) * a_h + (i + u(2)) // p_w) * r_w
        o3 = (((i + u(3)) % p_w) * a_h + (i + u(3)) // p_w) * r_w
        for p in range(n_p):
            mean[p] = (((mean[p] + shifted[o0 + p]) + shifted[o1 + p]) + shifted[o2 + p]) + shifted[o3 + p]
        i += u(4)
    for i in range(i, n_in):
        o0 = ((i % p_w) * a_h + i // p_w) * r_w
        for p in range(n_p):
            mean[p] = mean[p] + shifted[o0 + p]
    for p in range(n_p):
        mean[p] = mean[p] / count
    # the squares column-major (tap t = xx * patch_h + yy: shifted[(xx * A_h + yy) * R_w + p], that is
    # shifted[((t // p_h) * A_h + t % p_h) * R_w + p]), four a pass up to the fused ones
    fused = u(_fused_squares(patch_h * patch_w))
    t = u(0)
    while t + u(4) <= fused:
        o0 = ((t // p_h) * a_h + t % p_h) * r_w
        o1 = (((t + u(1)) // p_h) * a_h + (t + u(1)) % p_h) * r_w
        o2 = (((t + u(2)) // p_h) * a_h + (t + u(2)) % p_h) * r_w
        o3 = (((t + u(3)) // p_h) * a_h + (t + u(3)) % p_h) * r_w
        for p in range(n_p):
            m = mean[p]
            v0, v1, v2, v3 = shifted[o0 + p] - m, shifted[o1 + p] - m, shifted[o2 + p] - m, shifted[o3 + p] - m
            scale[p] = (((scale[p] + v0 * v0) + v1 * v1) + v2 * v2) + v3 * v3
        t += u(4)
    for t in range(t, n_in):
        o0 = ((t // p_h) * a_h + t % p_h) * r_w
        if t < fused:
            for p in range(n_p):
                v = shifted[o0 + p] - mean[p]
                scale[p] = scale[p] + v * v
        else:
            for p in range(n_p):
                v = shifted[o0 + p] - mean[p]
                scale[p] = fmaf(v, v, scale[p])
    for p in range(n_p):
        norm = np.float32(np.sqrt(scale[p]))
        if norm == 0:
            norm = np.float32(1.0)
        scale[p] = np.float32(1.0 / np.float64(norm))
    for t in range(n_in):
        o0 = ((t // p_h) * a_h + t % p_h) * r_w
        for p in range(n_p):
            out[t, p] = (shifted[o0 + p] - mean[p]) * scale[p]


@nb.njit(cache=True, nogil=True)
def _area_response(areas, patch_h, patch_w, weights, gains, sigmas, out, f, e, cols, x, r, mean, scale, shifted,
                   lanes):
    """Windows, neuron activations, sigmoid sum, Sigma product and shift of area ``f`` with expert
    ``e`` (the orders of the module docstring) into ``out[f]``; ``cols`` (T, P), ``x`` (K, P),
    ``r``, ``mean`` and ``scale`` (P,), ``shifted`` (patch_w * A_h * R_w,) and ``lanes`` (16,) float32 are
    scratch."""
    n_resp = out.shape[1]
    n_in = patch_h * patch_w
    n_neurons = weights.shape[1]
    r_h = areas.shape[1] - patch_h + 1
    r_w = areas.shape[2] - patch_w + 1
    im2col_contrast_norm(areas[f], patch_h, patch_w, cols, mean, scale, shifted)
    one, zero = np.float32(1.0), np.float32(0.0)
    for k in range(n_neurons):
        b = fmaf(one, weights[e, k, 0], zero)
        for p in range(n_resp):
            x[k, p] = b
    # four taps a pass: the same chains, a quarter of the loads and stores of x
    u = np.uint64
    t = u(0)
    while t + u(4) <= u(n_in):
        for k in range(u(n_neurons)):
            w0, w1 = weights[e, k, t + u(1)], weights[e, k, t + u(2)]
            w2, w3 = weights[e, k, t + u(3)], weights[e, k, t + u(4)]
            for p in range(u(n_resp)):
                x[k, p] = fmaf(cols[t + u(3), p], w3, fmaf(cols[t + u(2), p], w2,
                                                          fmaf(cols[t + u(1), p], w1, fmaf(cols[t, p], w0, x[k, p]))))
        t += u(4)
    for t in range(t, u(n_in)):
        for k in range(u(n_neurons)):
            w = weights[e, k, t + u(1)]
            for p in range(u(n_resp)):
                x[k, p] = fmaf(cols[t, p], w, x[k, p])
    # OpenFace's rows (positions) m = x * R_h + y from dot_from on: the dot-product path
    dot = dot_from(n_resp, n_in + 1)
    for m in range(dot, n_resp):
        p = (m % r_h) * r_w + m // r_h
        adjacent_rows = m - dot < (n_resp - dot) // 4 * 4
        for k in range(n_neurons):
            for i in range(LANES):
                lanes[i] = zero
            lanes[0] = fmaf(one, weights[e, k, 0], zero)
            for t in range(n_in):
                i = (t + 1) % LANES
                lanes[i] = fmaf(cols[t, p], weights[e, k, t + 1], lanes[i])
            x[k, p] = lane_sum(lanes, adjacent_rows or k < n_neurons // 4 * 4)
    for p in range(n_resp):
        r[p] = zero
    for k in range(n_neurons):
        gain = gains[e, k]
        if gain == 0.0:
            continue
        for p in range(n_resp):
            r[p] = np.float32(np.float64(r[p]) + gain / (1.0 + np.float64(expf(-x[k, p]))))
    one_row(r, sigmas[e], out[f], lanes)  # the Sigma product: one row
    lo = zero
    for p in range(n_resp):
        lo = min(lo, out[f, p])
    for p in range(n_resp):
        out[f, p] = out[f, p] - lo


@nb.njit(cache=True, nogil=True)
def _response_range(areas, patch_h, patch_w, weights, gains, sigmas, experts, out, start, stop):
    """Response maps of areas ``start`` to ``stop - 1`` (the orders of the module docstring), one
    area at a time so that its windows stay in cache.

    Parameters
    ----------
    areas : ndarray (N, A_h, A_w) float32
    patch_h, patch_w : int
    weights : ndarray (E, K, 1 + T) float32, ``T = patch_h*patch_w``
    gains : ndarray (E, K) float64
        ``2 alpha``, 0 for skipped neurons.
    sigmas : ndarray (E, P, P) float32
    experts : ndarray (N,) int64
        Area ``f`` is expert ``experts[f]`` (-1: a map of zeros).
    out : ndarray (N, P) float32
    start, stop : int
    """
    n_resp = out.shape[1]
    cols = np.empty((patch_h * patch_w, n_resp), np.float32)
    x = np.empty((weights.shape[1], n_resp), np.float32)
    r = np.empty(n_resp, np.float32)
    mean = np.empty(n_resp, np.float32)
    scale = np.empty(n_resp, np.float32)
    shifted = np.empty(patch_w * areas.shape[1] * (areas.shape[2] - patch_w + 1), np.float32)
    lanes = np.empty(LANES, np.float32)
    for f in range(start, stop):
        if experts[f] < 0:
            out[f] = 0.0
            continue
        _area_response(areas, patch_h, patch_w, weights, gains, sigmas, out, f, experts[f], cols, x, r, mean, scale,
                       shifted, lanes)


def ccnf_response(areas, weights, alphas, sigmas, patch_h: int = 11, patch_w: int = 11, experts=None):
    """Response maps of CCNF patch experts over areas of interest.

    Parameters
    ----------
    areas : ndarray (N, A, A) float32
        Areas of interest, ``A = R + patch - 1``.
    weights : ndarray (E, K, 1 + patch_h*patch_w) float32
        Neuron rows ``[bias, norm_weight * filter (column-major)]`` of ``E`` experts.
    alphas : ndarray (E, K) float64
        Neuron alphas; neurons with ``alpha <= 1e-4`` (padding included) are skipped.
    sigmas : ndarray (E, R*R, R*R) float32
        CCNF covariance of each expert for this window size.
    patch_h, patch_w : int
    experts : ndarray (N,) int, optional
        Expert of each area (e.g. every view's experts in one table, each face's landmarks indexing its
        view's), -1 for a map of zeros (an invisible landmark); default: area ``i`` is expert ``i % E``,
        ``N`` a multiple of ``E`` (one expert per area, one for all, or the landmarks of several faces seen
        from one view).

    Returns
    -------
    ndarray (N, R, R) float32
        Response maps, row = y.
    """
    areas = np.ascontiguousarray(areas, dtype=np.float32)
    n, a_h, a_w = areas.shape
    r_h, r_w = a_h - patch_h + 1, a_w - patch_w + 1
    alphas = np.asarray(alphas, np.float64)
    gains = np.where(alphas > 1e-4, 2.0 * alphas, 0.0)
    out = np.empty((n, r_h * r_w), np.float32)
    weights = np.asarray(weights, np.float32)
    sigmas = np.asarray(sigmas, np.float32)
    experts = expert_indices(n, len(weights), experts)
    # the helper thread maps chunks of the areas while this thread maps others
    threads.run_range(_response_range, n, areas, patch_h, patch_w, weights, gains, sigmas, experts, out,
                      split=n * r_h * r_w * weights.shape[1] * patch_h * patch_w >= PARALLEL_MIN_WORK)
    return out.reshape(n, r_h, r_w)
