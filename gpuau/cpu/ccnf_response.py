"""CCNF patch expert response maps: Numba im2col + BLAS products.

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


@nb.njit(cache=True, nogil=True)
def _im2col_one(area, patch_h, patch_w, out):
    a_h, a_w = area.shape
    r_h = a_h - patch_h + 1
    r_w = a_w - patch_w + 1
    n_in = patch_h * patch_w
    count = np.float32(n_in)
    for i in range(r_h):  # y
        for j in range(r_w):  # x
            row = out[i * r_w + j]
            s = np.float32(0.0)
            for yy in range(patch_h):
                for xx in range(patch_w):
                    v = area[i + yy, j + xx]
                    s += v
                    row[xx * patch_h + yy + 1] = v
            mean = s / count
            sq = np.float32(0.0)
            for t in range(1, n_in + 1):
                d = row[t] - mean
                row[t] = d
                sq += d * d
            norm = np.float32(np.sqrt(sq))
            if norm == 0:
                norm = np.float32(1.0)
            norm = np.float32(1.0 / np.float64(norm))
            row[0] = 1.0
            for t in range(1, n_in + 1):
                row[t] *= norm


@nb.njit(cache=True, nogil=True)
def im2col_contrast_norm(areas, patch_h, patch_w, out):
    """Normalised windows of a batch of areas of interest.

    Parameters
    ----------
    areas : ndarray (N, A, A) float32
    patch_h, patch_w : int
    out : ndarray (N, R*R, 1 + patch_h*patch_w) float32
        Row ``y * R + x``: ``[1, window (column-major) - mean, / L2 norm]``.
    """
    for n in range(areas.shape[0]):
        _im2col_one(areas[n], patch_h, patch_w, out[n])


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
    w_t = np.ascontiguousarray(np.asarray(weights, np.float32).transpose(0, 2, 1))
    x = np.matmul(cols, w_t)  # (N, P, K) neuron activations
    alphas = np.asarray(alphas, np.float64)
    gain = np.where(alphas > 1e-4, 2.0 * alphas, 0.0)[:, None, :]
    terms = gain / (1.0 + np.exp(-x.astype(np.float64)))
    resp = np.empty((n, r_h * r_w), np.float32)
    _neuron_sum(terms, resp)
    out = np.matmul(np.asarray(sigmas, np.float32), resp[:, :, None])[:, :, 0]
    lo = np.minimum(out.min(axis=1, keepdims=True), np.float32(0))
    return (out - lo).reshape(n, r_h, r_w)
