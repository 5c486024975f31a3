"""Layers of the CNN landmark detection validator, Numba, float32, one thread.

Port of ``convolution_direct_blas``, ``max_pooling`` and ``fully_connected``, CNN_utils.cpp, as
``DetectionValidator::CheckCNN`` (LandmarkDetectionValidator.cpp) uses them.  OpenFace multiplies an
im2col matrix by the weights with BLAS; here each output sums its products in the im2col column
order (input map, kernel column, kernel row) and adds the bias last, with no fused multiply-add.
The networks are small (about 4 M multiply-adds a face), so no BLAS thread pool is involved: the
validator runs beside Numba's parallel kernels without oversubscribing the cores.  CPU twins of
``gpuau/kernels/validator_cnn.cu`` (the same orders, the same bits).
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _convolution(maps, kernels, biases, out):
    # Output pixel (y, x) is computed at y * W + x of a flat buffer spanning the input's full width
    # W, so each kernel tap is one long contiguous multiply-add over all output rows (the columns
    # x >= W - kw + 1 wrap around and are dropped).  Taps are visited in im2col column order
    # (input map, kernel column, kernel row), four per pass, each added in turn.
    n_batch, n_in, h, w = maps.shape
    n_out, _, kh, kw = kernels.shape
    yb, xb = out.shape[2], out.shape[3]
    length = (yb - 1) * w + xb
    n_taps = n_in * kw * kh
    offsets = np.empty(n_taps, dtype=np.int64)
    t = 0
    for i in range(n_in):
        for kx in range(kw):
            for ky in range(kh):
                offsets[t] = (i * h + ky) * w + kx
                t += 1
    weights = np.empty(n_taps, dtype=np.float32)
    acc = np.empty(length, dtype=np.float32)
    for b in range(n_batch):
        src = maps[b].ravel()
        for o in range(n_out):
            t = 0
            for i in range(n_in):
                for kx in range(kw):
                    for ky in range(kh):
                        weights[t] = kernels[o, i, ky, kx]
                        t += 1
            acc[:] = 0
            t = 0
            while t + 4 <= n_taps:
                w0, w1, w2, w3 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
                s0 = src[offsets[t]:]
                s1 = src[offsets[t + 1]:]
                s2 = src[offsets[t + 2]:]
                s3 = src[offsets[t + 3]:]
                for p in range(length):
                    acc[p] = (((acc[p] + w0 * s0[p]) + w1 * s1[p]) + w2 * s2[p]) + w3 * s3[p]
                t += 4
            while t < n_taps:
                w0 = weights[t]
                s0 = src[offsets[t]:]
                for p in range(length):
                    acc[p] += w0 * s0[p]
                t += 1
            bias = biases[o]
            for y in range(yb):
                for x in range(xb):
                    out[b, o, y, x] = acc[y * w + x] + bias


def convolution(maps: np.ndarray, kernels: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """Valid cross-correlation of a batch of map stacks with a bank of kernels, plus biases.

    Port of ``convolution_direct_blas``, CNN_utils.cpp.

    Parameters
    ----------
    maps : ndarray (B, n_in, H, W) float32
    kernels : ndarray (n_out, n_in, kh, kw) float32
    biases : ndarray (n_out,) float32

    Returns
    -------
    ndarray (B, n_out, H - kh + 1, W - kw + 1) float32
    """
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    kernels = np.ascontiguousarray(kernels, dtype=np.float32)
    n_out, n_in, kh, kw = kernels.shape
    if maps.ndim != 4 or maps.shape[1] != n_in:
        raise ValueError(f"maps of shape {maps.shape} do not have the kernels' {n_in} input maps")
    b, _, h, w = maps.shape
    out = np.empty((b, n_out, h - kh + 1, w - kw + 1), dtype=np.float32)
    _convolution(maps, kernels, np.ascontiguousarray(biases, dtype=np.float32), out)
    return out


@nb.njit(cache=True, nogil=True)
def _max_pooling(maps, kernel, stride, out):
    n_batch, n_maps, h, w = maps.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for b in range(n_batch):
        for c in range(n_maps):
            m = maps[b, c]
            for oy in range(out_h):
                y = oy * stride
                y_end = min(h, y + kernel)
                for ox in range(out_w):
                    x = ox * stride
                    x_end = min(w, x + kernel)
                    best = np.float32(-3.4028234663852886e38)
                    for yi in range(y, y_end):  # any visiting order gives the same maximum
                        for xi in range(x, x_end):
                            if m[yi, xi] > best:
                                best = m[yi, xi]
                    out[b, c, oy, ox] = best


def max_pooling(maps: np.ndarray, kernel: int = 2, stride: int = 2) -> np.ndarray:
    """Max-pooling of square windows; a window running past the map is clipped to it.

    ``round((L - kernel) / stride) + 1`` outputs along a side of length ``L`` (halves rounded
    away from zero).  Port of ``max_pooling``, CNN_utils.cpp (the validator pools 2 x 2, stride 2).

    Parameters
    ----------
    maps : ndarray (B, C, H, W) float32
    kernel, stride : int

    Returns
    -------
    ndarray (B, C, H_out, W_out) float32
    """
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    b, c, h, w = maps.shape
    out_h, out_w = (int(np.floor(np.float32(n - kernel) / np.float32(stride) + 0.5)) + 1 for n in (h, w))
    out = np.empty((b, c, out_h, out_w), dtype=np.float32)
    _max_pooling(maps, kernel, stride, out)
    return out


@nb.njit(cache=True, nogil=True)
def _fully_connected(x, weights, biases, out):
    n_batch, n_in = x.shape
    n_out = weights.shape[1]
    for b in range(n_batch):
        acc = out[b]
        acc[:] = 0
        for k in range(n_in):
            v = x[b, k]
            w = weights[k]
            for o in range(n_out):
                acc[o] += v * w[o]
        for o in range(n_out):
            acc[o] += biases[o]


def fully_connected(x: np.ndarray, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """Fully connected layer on flattened features: ``x @ weights + biases``.

    Each output sums its products in input order and adds the bias last.
    Port of the flattened case of ``fully_connected``, CNN_utils.cpp.

    Parameters
    ----------
    x : ndarray (B, n_in) float32
    weights : ndarray (n_in, n_out) float32
    biases : ndarray (n_out,) float32

    Returns
    -------
    ndarray (B, n_out) float32
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != weights.shape[0]:
        raise ValueError(f"features of shape {x.shape} do not match weights of shape {weights.shape}")
    out = np.empty((x.shape[0], weights.shape[1]), dtype=np.float32)
    _fully_connected(x, weights, np.ascontiguousarray(biases, dtype=np.float32), out)
    return out
