"""CCNF patch expert response maps, Numba, parallel over landmarks (and faces).

Port of ``CCNF_patch_expert::ResponseOpenBlas`` and ``im2colContrastNormBias``,
CCNF_patch_expert.cpp.  For every position of a ``patch_h x patch_w`` window inside the area of
interest, the window is mean-centred and scaled to unit L2 norm (float32, OpenFace's summation
order); each neuron is a bias plus a dot product with that normalised window (the weights already
carry the neuron's norm weight), passed through ``2 alpha / (1 + exp(-x))`` and summed over
neurons.  The map is then multiplied by the expert's CCNF covariance ``Sigma`` and shifted to be
non-negative.
"""
from __future__ import annotations

import numba as nb
import numpy as np


K_PAD = 8  # neurons per expert, padded (OpenFace's experts have 7): one SIMD lane each


@nb.njit(cache=True, nogil=True)
def _response_one(area, weights, alphas, sigma, patch_h, patch_w, out):
    a_h, a_w = area.shape
    r_h = a_h - patch_h + 1
    r_w = a_w - patch_w + 1
    n_in = patch_h * patch_w
    k_neurons = weights.shape[0]
    # neuron weights transposed to (input, neuron) so the neuron loop is innermost; every
    # neuron's dot product still sums its inputs in order
    wt = np.zeros((n_in + 1, K_PAD), np.float32)
    active = np.zeros(K_PAD, np.float64)
    for k in range(k_neurons):
        if alphas[k] > 1e-4:
            active[k] = alphas[k]
            for t in range(n_in + 1):
                wt[t, k] = weights[k, t]
    col = np.empty(n_in, np.float32)
    acc = np.empty(K_PAD, np.float32)
    resp = np.zeros(r_h * r_w, np.float32)
    inv_n = np.float32(n_in)
    for i in range(r_h):  # y
        for j in range(r_w):  # x
            # im2colContrastNormBias: column-major patch, mean over rows then columns
            s = np.float32(0.0)
            for yy in range(patch_h):
                for xx in range(patch_w):
                    v = area[i + yy, j + xx]
                    s += v
                    col[xx * patch_h + yy] = v
            mean = s / inv_n
            sq = np.float32(0.0)
            for t in range(n_in):
                d = col[t] - mean
                col[t] = d
                sq += d * d
            norm = np.float32(np.sqrt(sq))
            if norm == 0:
                norm = np.float32(1.0)
            norm = np.float32(1.0 / np.float64(norm))
            for k in range(K_PAD):
                acc[k] = wt[0, k]
            for t in range(n_in):
                c = col[t] * norm
                for k in range(K_PAD):
                    acc[k] += wt[t + 1, k] * c
            total = np.float32(0.0)
            for k in range(k_neurons):
                if active[k] > 0:
                    total = np.float32(total + (2.0 * active[k]) / (1.0 + np.exp(-np.float64(acc[k]))))
            resp[i * r_w + j] = total
    # Sigma @ response (row-major map), accumulated column by column; then shift to non-negative
    m = r_h * r_w
    o = np.zeros(m, np.float32)
    for b in range(m):
        rb = resp[b]
        for a in range(m):
            o[a] += sigma[a, b] * rb
    lo = o.min()
    if lo > 0:
        lo = np.float32(0.0)
    for a in range(m):
        out[a // r_w, a % r_w] = o[a] - lo


@nb.njit(cache=True, parallel=True)
def _response_batch(areas, weights, alphas, sigmas, patch_h, patch_w, out):
    for n in nb.prange(areas.shape[0]):
        _response_one(areas[n], weights[n], alphas[n], sigmas[n], patch_h, patch_w, out[n])


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
    out = np.empty((n, a_h - patch_h + 1, a_w - patch_w + 1), np.float32)
    _response_batch(areas, np.ascontiguousarray(weights, dtype=np.float32), np.ascontiguousarray(alphas, dtype=np.float64),
                    np.ascontiguousarray(sigmas, dtype=np.float32), patch_h, patch_w, out)
    return out
