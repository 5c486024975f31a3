"""GPU-path wrapper of the batched shape similarity in ``similarity.cu`` (CUDA or the CPU emulator).

One thread per shape pair computes OpenFace's ``AlignShapesWithScale`` and the inverse
``Patch_experts::Response`` takes of it; same arguments and result as
:func:`gpuau.cpu.similarity.similarity` (its Numba twin, where the arithmetic is described).
"""
from __future__ import annotations

import numpy as np

from gpuau.kernels.loader import contiguous, on_device

BLOCK = 64
"""Threads per block, one shape pair each."""
MAX_POINTS = 68
"""Points per shape that ``similarity.cu``'s per-thread buffers hold."""


def check_similarity_args(xp, src, dst):
    """Validate :func:`similarity`'s arguments for array module ``xp`` (shared with the Numba twin):
    float32, C-contiguous ``src`` (F, n, 2) and ``dst`` (F or 1, n, 2)."""
    src = contiguous(xp, src, np.float32)
    dst = contiguous(xp, dst, np.float32)
    if src.ndim != 3 or src.shape[2] != 2:
        raise ValueError(f"similarity: src must be (F, n, 2), got {src.shape}")
    f, n = src.shape[:2]
    if dst.ndim != 3 or dst.shape[1:] != (n, 2) or dst.shape[0] not in (1, f):
        raise ValueError(f"similarity: dst must be ({f}, {n}, 2) or (1, {n}, 2), got {dst.shape}")
    if n < 1:
        raise ValueError("similarity: shapes need at least one point")
    return src, dst


@on_device
def similarity(backend, src, dst):
    """Similarity of each shape pair and its inverse, one launch for the batch.

    Port of ``AlignShapesWithScale`` (RotationHelpers.h) and ``Matx22f::inv(DECOMP_LU)``; arguments
    and result as :func:`gpuau.cpu.similarity.similarity`, on ``backend``'s device.

    Returns
    -------
    (F, 2, 2, 2) float32, on the backend's device
    """
    xp = backend.xp
    src, dst = check_similarity_args(xp, src, dst)
    f, n = src.shape[:2]
    if n > MAX_POINTS:
        raise ValueError(f"similarity: at most {MAX_POINTS} points per shape on the GPU path, got {n}")
    out = xp.empty((f, 2, 2, 2), np.float32)
    if f == 0:
        return out
    backend.load_module("similarity").get_function("similarity")(
        (-(-f // BLOCK), 1, 1), (BLOCK, 1, 1), (src, dst, out, np.int32(f), np.int32(n), np.int32(dst.shape[0])))
    return out
