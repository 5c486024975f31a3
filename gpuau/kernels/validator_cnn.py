"""GPU-path wrappers of the validator CNN's layers in ``validator_cnn.cu`` (CUDA or the CPU emulator).

Port of ``convolution_direct_blas``, ``max_pooling`` and ``fully_connected``, CNN_utils.cpp; same
arguments and results as :func:`gpuau.cpu.validator_cnn.convolution`,
:func:`gpuau.cpu.validator_cnn.max_pooling` and :func:`gpuau.cpu.validator_cnn.fully_connected`.
"""
from __future__ import annotations

import numpy as np

from gpuau.kernels.loader import contiguous, on_device

BLOCK = 256


def _launch(backend, name: str, total: int, args: tuple) -> None:
    if total:
        backend.load_module("validator_cnn").get_function(name)((-(-total // BLOCK), 1, 1), (BLOCK, 1, 1), args)


def _f32(xp, a, ndim: int, what: str):
    a = contiguous(xp, a, np.float32)
    if a.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {a.shape}")
    return a


@on_device
def convolution(backend, maps, kernels, biases):
    """Valid cross-correlation of a batch of map stacks with a bank of kernels, plus biases.

    Parameters
    ----------
    backend : gpuau.device.Backend
    maps : (B, n_in, H, W) float32
    kernels : (n_out, n_in, kh, kw) float32
    biases : (n_out,) float32

    Returns
    -------
    (B, n_out, H - kh + 1, W - kw + 1) float32 on the backend's device
    """
    xp = backend.xp
    maps, kernels, biases = _f32(xp, maps, 4, "maps"), _f32(xp, kernels, 4, "kernels"), _f32(xp, biases, 1, "biases")
    n_out, n_in, kh, kw = (int(v) for v in kernels.shape)
    b, c, h, w = (int(v) for v in maps.shape)
    if c != n_in or biases.shape != (n_out,):
        raise ValueError(f"maps of shape {maps.shape} do not match kernels {kernels.shape} and biases {biases.shape}")
    out = xp.empty((b, n_out, h - kh + 1, w - kw + 1), np.float32)
    i32 = np.int32
    _launch(backend, "convolution", out.size,
            (maps, kernels, biases, i32(b), i32(n_in), i32(h), i32(w), i32(n_out), i32(kh), i32(kw), out))
    return out


@on_device
def max_pooling(backend, maps, kernel: int = 2, stride: int = 2):
    """Max-pooling of square windows, a window running past the map clipped to it.

    Parameters
    ----------
    backend : gpuau.device.Backend
    maps : (B, C, H, W) float32
    kernel, stride : int

    Returns
    -------
    (B, C, H_out, W_out) float32 on the backend's device, ``round((L - kernel) / stride) + 1`` a side
    """
    xp = backend.xp
    maps = _f32(xp, maps, 4, "maps")
    b, c, h, w = (int(v) for v in maps.shape)
    out_h, out_w = (int(np.floor(np.float32(n - kernel) / np.float32(stride) + 0.5)) + 1 for n in (h, w))
    out = xp.empty((b, c, out_h, out_w), np.float32)
    i32 = np.int32
    _launch(backend, "max_pooling", out.size,
            (maps, i32(b * c), i32(h), i32(w), i32(kernel), i32(stride), i32(out_h), i32(out_w), out))
    return out


@on_device
def fully_connected(backend, x, weights, biases):
    """Fully connected layer on flattened features: ``x @ weights + biases``.

    Parameters
    ----------
    backend : gpuau.device.Backend
    x : (B, n_in) float32
    weights : (n_in, n_out) float32
    biases : (n_out,) float32

    Returns
    -------
    (B, n_out) float32 on the backend's device
    """
    xp = backend.xp
    x, weights, biases = _f32(xp, x, 2, "features"), _f32(xp, weights, 2, "weights"), _f32(xp, biases, 1, "biases")
    if x.shape[1] != weights.shape[0] or biases.shape != weights.shape[1:]:
        raise ValueError(f"features of shape {x.shape} do not match weights {weights.shape} and biases {biases.shape}")
    out = xp.empty((x.shape[0], weights.shape[1]), np.float32)
    i32 = np.int32
    _launch(backend, "fully_connected", out.size,
            (x, weights, biases, i32(x.shape[0]), i32(x.shape[1]), i32(weights.shape[1]), out))
    return out
