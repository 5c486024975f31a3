"""CCNF patch expert response maps: Numba im2col (eight areas side by side) + BLAS products.

Port of ``CCNF_patch_expert::ResponseOpenBlas`` and ``im2colContrastNormBias``,
CCNF_patch_expert.cpp, with OpenFace's structure: every ``patch_h x patch_w`` window of the area
of interest becomes a row ``[1, normalised window (column-major)]`` (mean-centred, scaled to unit
L2 norm, float32 in OpenFace's summation order); one single-precision matrix product with the
neuron rows ``[bias, norm_weight * filter]`` gives all neurons' activations; each neuron adds
``2 alpha / (1 + exp(-x))`` in turn; the map is multiplied by the expert's CCNF covariance
``Sigma`` (a second single-precision product) and shifted to be non-negative.
"""
from __future__ import annotations

import numba as nb
import numpy as np


LANES = 8
"""Areas whose windows :func:`im2col_contrast_norm` normalises side by side."""


@nb.njit(cache=True, nogil=True)
def im2col_contrast_norm(areas, patch_h, patch_w, out):
    """Normalised windows of a batch of areas of interest.

    Each window's mean and squared norm are float32 sums in OpenFace's order (row-major for the
    sum, column-major for the squares), serial dependency chains; so the same window of
    :data:`LANES` areas is normalised at once (the areas interleaved, eight independent chains in
    registers; element indexing only, no array views in the inner loops).

    Parameters
    ----------
    areas : ndarray (N, A, A) float32
    patch_h, patch_w : int
    out : ndarray (N, R*R, 1 + patch_h*patch_w) float32
        Row ``y * R + x``: ``[1, window (column-major) - mean, / L2 norm]``.
    """
    n, a_h, a_w = areas.shape
    r_h = a_h - patch_h + 1
    r_w = a_w - patch_w + 1
    n_in = patch_h * patch_w
    count = np.float32(n_in)
    groups = (n + LANES - 1) // LANES
    lanes = np.zeros((groups, a_h * a_w, LANES), np.float32)
    for k in range(n):
        for y in range(a_h):
            for x in range(a_w):
                lanes[k // LANES, y * a_w + x, k % LANES] = areas[k, y, x]
    tail = np.empty((LANES, r_h * r_w, n_in + 1), np.float32)  # rows of a last, partial group
    sq = np.empty(LANES, np.float32)
    for g in range(groups):
        if (g + 1) * LANES <= n:
            dst, k = out, g * LANES
        else:
            dst, k = tail, 0
        for i in range(r_h):
            for j in range(r_w):
                p = i * r_w + j
                s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
                for yy in range(patch_h):
                    for xx in range(patch_w):
                        q = (i + yy) * a_w + j + xx
                        s0 += lanes[g, q, 0]
                        s1 += lanes[g, q, 1]
                        s2 += lanes[g, q, 2]
                        s3 += lanes[g, q, 3]
                        s4 += lanes[g, q, 4]
                        s5 += lanes[g, q, 5]
                        s6 += lanes[g, q, 6]
                        s7 += lanes[g, q, 7]
                m0, m1, m2, m3 = s0 / count, s1 / count, s2 / count, s3 / count
                m4, m5, m6, m7 = s4 / count, s5 / count, s6 / count, s7 / count
                q0 = q1 = q2 = q3 = q4 = q5 = q6 = q7 = np.float32(0.0)
                t = 1
                for xx in range(patch_w):
                    for yy in range(patch_h):
                        q = (i + yy) * a_w + j + xx
                        d0 = lanes[g, q, 0] - m0
                        d1 = lanes[g, q, 1] - m1
                        d2 = lanes[g, q, 2] - m2
                        d3 = lanes[g, q, 3] - m3
                        d4 = lanes[g, q, 4] - m4
                        d5 = lanes[g, q, 5] - m5
                        d6 = lanes[g, q, 6] - m6
                        d7 = lanes[g, q, 7] - m7
                        dst[k, p, t] = d0
                        dst[k + 1, p, t] = d1
                        dst[k + 2, p, t] = d2
                        dst[k + 3, p, t] = d3
                        dst[k + 4, p, t] = d4
                        dst[k + 5, p, t] = d5
                        dst[k + 6, p, t] = d6
                        dst[k + 7, p, t] = d7
                        q0 += d0 * d0
                        q1 += d1 * d1
                        q2 += d2 * d2
                        q3 += d3 * d3
                        q4 += d4 * d4
                        q5 += d5 * d5
                        q6 += d6 * d6
                        q7 += d7 * d7
                        t += 1
                sq[0], sq[1], sq[2], sq[3], sq[4], sq[5], sq[6], sq[7] = q0, q1, q2, q3, q4, q5, q6, q7
                for lane in range(min(LANES, n - g * LANES)):
                    norm = np.float32(np.sqrt(sq[lane]))
                    if norm == 0:
                        norm = np.float32(1.0)
                    norm = np.float32(1.0 / np.float64(norm))
                    out[g * LANES + lane, p, 0] = 1.0
                    for t in range(1, n_in + 1):
                        out[g * LANES + lane, p, t] = dst[k + lane, p, t] * norm


@nb.njit(cache=True, nogil=True)
def _neuron_sum(terms, out):
    """``out[n, p] = sum_k terms[n, p, k]``, neuron by neuron in float32 (OpenFace's order)."""
    for n in range(terms.shape[0]):
        for p in range(terms.shape[1]):
            r = np.float32(0.0)
            for k in range(terms.shape[2]):
                r = np.float32(np.float64(r) + terms[n, p, k])
            out[n, p] = r


def ccnf_response(areas, weights, alphas, sigmas, patch_h: int = 11, patch_w: int = 11):
    """Response maps of CCNF patch experts over areas of interest.

    Parameters
    ----------
    areas : ndarray (N, A, A) float32
        Areas of interest, ``A = R + patch - 1``.
    weights : ndarray (N, K, 1 + patch_h*patch_w) float32
        Neuron rows ``[bias, norm_weight * filter (column-major)]``.
    alphas : ndarray (N, K) float64
        Neuron alphas; neurons with ``alpha <= 1e-4`` (padding included) are skipped.
    sigmas : ndarray (N, R*R, R*R) float32
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
    cols = np.empty((n, r_h * r_w, patch_h * patch_w + 1), np.float32)
    im2col_contrast_norm(areas, patch_h, patch_w, cols)
    x = np.matmul(cols, np.asarray(weights, np.float32).transpose(0, 2, 1))  # (N, P, K) neuron activations
    alphas = np.asarray(alphas, np.float64)
    gain = np.where(alphas > 1e-4, 2.0 * alphas, 0.0)[:, None, :]
    terms = gain / (1.0 + np.exp(-x.astype(np.float64)))
    resp = np.empty((n, r_h * r_w), np.float32)
    _neuron_sum(terms, resp)
    out = np.matmul(np.asarray(sigmas, np.float32), resp[:, :, None])[:, :, 0]
    lo = np.minimum(out.min(axis=1, keepdims=True), np.float32(0))
    return (out - lo).reshape(n, r_h, r_w)
