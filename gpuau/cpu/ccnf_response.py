"""CCNF patch expert response maps in a fixed float32 summation order (Numba; large calls split
between two threads, each area mapped by the same serial code).

Port of ``CCNF_patch_expert::ResponseOpenBlas`` and ``im2colContrastNormBias``,
CCNF_patch_expert.cpp, with OpenFace's structure: every ``patch_h x patch_w`` window of the area
of interest is mean-centred and scaled to unit L2 norm (float32 in OpenFace's summation order);
each neuron's activation is ``bias + normalised window . filter``; each neuron adds
``2 alpha / (1 + exp(-x))`` in turn; the map is multiplied by the expert's CCNF covariance
``Sigma`` and shifted to be non-negative.

OpenFace does the two products through OpenBLAS, whose summation order is the library's own.
Here every sum has one stated order, shared bit for bit with ``gpuau/kernels/ccnf_response.cu``:
an activation is the bias, then ``+ v_t * w_t`` over the window's column-major taps ``t``; a map
value is ``0 + Sigma[p, q] * map[q]`` over ``q`` ascending; float32, each product and sum
rounded (no fused multiply-add).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu import threads


ROWS = 4
"""Rows of ``Sigma`` that :func:`_area_response` multiplies by the map side by side."""

PARALLEL_MIN_WORK = 1 << 19
"""Multiply-adds of the neuron activations (areas x map values x taps x neurons) from which a call
is shared between the calling thread and the helper thread (:mod:`gpuau.cpu.threads`), each
mapping chunks of the areas.  A tracked 640x480 face's main-model calls (68 areas, 7x7 or 9x9
maps: 2.8-4.7 M, ~1-1.6 ms on one core) are split; the eye models' 3x3 maps (0.2 M, ~0.17 ms)
are not, a thread hand-over costing more than it saves there."""


@nb.njit(cache=True, nogil=True)
def im2col_contrast_norm(area, patch_h, patch_w, out):
    """Normalised windows of an area of interest, one column per window.

    Each window's mean and squared norm are float32 sums in OpenFace's order (row-major for the
    sum, column-major for the squares), serial dependency chains; all windows advance together
    (independent chains: the inner loops run over window origins ``y * A_w + x``, ``x`` up to
    ``A_w`` so that they are contiguous, and vectorise; indices are unsigned so that no
    negative-index wraparound test stops the vectoriser).

    Parameters
    ----------
    area : ndarray (A_h, A_w) float32
    patch_h, patch_w : int
    out : ndarray (patch_h*patch_w, R_h*R_w) float32
        ``out[t, y * R_w + x]``: tap ``t`` (column-major) of the window at ``(y, x)``, minus the
        window's mean, divided by its L2 norm (1 for a flat window).
    """
    u = np.uint64
    a_h, a_w = u(area.shape[0]), u(area.shape[1])
    p_h, p_w = u(patch_h), u(patch_w)
    r_h, r_w = a_h - p_h + u(1), a_w - p_w + u(1)
    n_in = p_h * p_w
    count = np.float32(patch_h * patch_w)
    span = r_h * a_w  # window origins y * A_w + x (those with x >= R_w are computed and unused)
    src = np.zeros(a_h * a_w + p_w, np.float32)
    mean = np.zeros(span, np.float32)
    scale = np.zeros(span, np.float32)
    d = np.empty((n_in, span), np.float32)
    for y in range(a_h):
        for x in range(a_w):
            src[y * a_w + x] = area[y, x]
    for yy in range(p_h):
        for xx in range(p_w):
            off = yy * a_w + xx
            for q in range(span):
                mean[q] = mean[q] + src[off + q]
    for q in range(span):
        mean[q] = mean[q] / count
    t = u(0)
    for xx in range(p_w):
        for yy in range(p_h):
            off = yy * a_w + xx
            for q in range(span):
                v = src[off + q] - mean[q]
                d[t, q] = v
                scale[q] = scale[q] + v * v
            t += u(1)
    for q in range(span):
        norm = np.float32(np.sqrt(scale[q]))
        if norm == 0:
            norm = np.float32(1.0)
        scale[q] = np.float32(1.0 / np.float64(norm))
    for t in range(n_in):
        for y in range(r_h):
            for x in range(r_w):
                out[t, y * r_w + x] = d[t, y * a_w + x] * scale[y * a_w + x]


@nb.njit(cache=True, nogil=True)
def _area_response(areas, patch_h, patch_w, weights, gains, sigmas, out, f, cols, x, r):
    """Windows, neuron activations, sigmoid sum, Sigma product and shift of area ``f`` with expert
    ``f % E`` (the fixed orders of the module docstring) into ``out[f]``; ``cols`` (T, P), ``x`` (K, P)
    and ``r`` (P,) float32 are scratch."""
    n_resp = out.shape[1]
    n_in = patch_h * patch_w
    n_neurons = weights.shape[1]
    e = f % weights.shape[0]
    im2col_contrast_norm(areas[f], patch_h, patch_w, cols)
    for k in range(n_neurons):
        b = weights[e, k, 0]
        for p in range(n_resp):
            x[k, p] = b
    for t in range(np.uint64(n_in)):
        for k in range(np.uint64(n_neurons)):
            w = weights[e, k, t + np.uint64(1)]
            for p in range(np.uint64(n_resp)):
                x[k, p] = x[k, p] + cols[t, p] * w
    for p in range(n_resp):
        r[p] = np.float32(0.0)
    for k in range(n_neurons):
        gain = gains[e, k]
        if gain == 0.0:
            continue
        for p in range(n_resp):
            r[p] = np.float32(np.float64(r[p]) + gain / (1.0 + np.exp(-np.float64(x[k, p]))))
    p = 0
    while p + ROWS <= n_resp:
        v0 = v1 = v2 = v3 = np.float32(0.0)
        for q in range(n_resp):
            rq = r[q]
            v0 = v0 + sigmas[e, p, q] * rq
            v1 = v1 + sigmas[e, p + 1, q] * rq
            v2 = v2 + sigmas[e, p + 2, q] * rq
            v3 = v3 + sigmas[e, p + 3, q] * rq
        out[f, p], out[f, p + 1], out[f, p + 2], out[f, p + 3] = v0, v1, v2, v3
        p += ROWS
    for p in range(p, n_resp):
        v = np.float32(0.0)
        for q in range(n_resp):
            v = v + sigmas[e, p, q] * r[q]
        out[f, p] = v
    lo = np.float32(0.0)
    for p in range(n_resp):
        lo = min(lo, out[f, p])
    for p in range(n_resp):
        out[f, p] = out[f, p] - lo


@nb.njit(cache=True, nogil=True)
def _response_range(areas, patch_h, patch_w, weights, gains, sigmas, out, start, stop):
    """Response maps of areas ``start`` to ``stop - 1`` (the orders of the module docstring), one
    area at a time so that its windows stay in cache.

    Parameters
    ----------
    areas : ndarray (N, A_h, A_w) float32
    patch_h, patch_w : int
    weights : ndarray (E, K, 1 + T) float32, ``T = patch_h*patch_w``
        Area ``f`` is expert ``f % E``.
    gains : ndarray (E, K) float64
        ``2 alpha``, 0 for skipped neurons.
    sigmas : ndarray (E, P, P) float32
    out : ndarray (N, P) float32
    start, stop : int
    """
    n_resp = out.shape[1]
    cols = np.empty((patch_h * patch_w, n_resp), np.float32)
    x = np.empty((weights.shape[1], n_resp), np.float32)
    r = np.empty(n_resp, np.float32)
    for f in range(start, stop):
        _area_response(areas, patch_h, patch_w, weights, gains, sigmas, out, f, cols, x, r)


def ccnf_response(areas, weights, alphas, sigmas, patch_h: int = 11, patch_w: int = 11):
    """Response maps of CCNF patch experts over areas of interest.

    Parameters
    ----------
    areas : ndarray (N, A, A) float32
        Areas of interest, ``A = R + patch - 1``.
    weights : ndarray (E, K, 1 + patch_h*patch_w) float32
        Neuron rows ``[bias, norm_weight * filter (column-major)]`` of ``E`` experts, ``N`` a
        multiple of ``E``: area ``i`` is expert ``i % E`` (one expert per area, one for all, or the
        visible landmarks of several faces seen from one view, with no copy of the experts).
    alphas : ndarray (E, K) float64
        Neuron alphas; neurons with ``alpha <= 1e-4`` (padding included) are skipped.
    sigmas : ndarray (E, R*R, R*R) float32
        CCNF covariance of each expert for this window size.
    patch_h, patch_w : int

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
    if (len(weights) == 0 and n) or (len(weights) and n % len(weights)):
        raise ValueError(f"ccnf_response: {n} areas do not cycle over {len(weights)} experts (N must be a multiple of E)")
    # the helper thread maps chunks of the areas while this thread maps others
    threads.run_range(_response_range, n, areas, patch_h, patch_w, weights, gains, sigmas, out,
                      split=n * r_h * r_w * weights.shape[1] * patch_h * patch_w >= PARALLEL_MIN_WORK)
    return out.reshape(n, r_h, r_w)
