"""GPU-path wrapper of the batched perspective-n-point refinement in ``pnp.cu`` (CUDA or the CPU emulator).

One thread per face runs OpenCV 4.x's ``solvePnP`` Levenberg-Marquardt from the face's guess, in
double precision; same arguments and result as :func:`gpuau.cpu.pnp.solve_pnp` (its Numba twin, where
the algorithm is described).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gpuau.kernels.loader import contiguous, on_device

BLOCK = 64
"""Threads per block, one face each."""


class PnPArgs(NamedTuple):
    """Validated arguments of :func:`solve_pnp`: float32, C-contiguous, on the caller's device."""

    object_points: object  # (N, n, 3)
    image_points: object  # (N, n, 2)
    intrinsics: object  # (N, 4) fx, fy, cx, cy
    rvecs: object  # (N, 3)
    tvecs: object  # (N, 3)


def check_pnp_args(xp, object_points, image_points, intrinsics, rvecs, tvecs) -> PnPArgs:
    """Validate :func:`solve_pnp`'s arguments for array module ``xp`` (shared with the Numba twin)."""
    object_points, image_points, intrinsics, rvecs, tvecs = (contiguous(xp, a, np.float32) for a in (
        object_points, image_points, intrinsics, rvecs, tvecs))
    if object_points.ndim != 3 or object_points.shape[2] != 3:
        raise ValueError(f"solve_pnp: object_points must be (N, n, 3), got {object_points.shape}")
    n, points = object_points.shape[:2]
    for name, a, shape in (("image_points", image_points, (n, points, 2)), ("intrinsics", intrinsics, (n, 4)),
                           ("rvecs", rvecs, (n, 3)), ("tvecs", tvecs, (n, 3))):
        if a.shape != shape:
            raise ValueError(f"solve_pnp: {name} must be {shape} for {n} faces of {points} points, got {a.shape}")
    if points < 3 and n:
        raise ValueError(f"solve_pnp: at least 3 points per face, got {points}")
    return PnPArgs(object_points, image_points, intrinsics, rvecs, tvecs)


@on_device
def solve_pnp(backend, object_points, image_points, intrinsics, rvecs, tvecs):
    """Refined ``(rvec, tvec)`` of each face, one launch for the batch.

    Port of ``cvFindExtrinsicCameraParams2`` from a guess (OpenCV 4.x calibration.cpp); arguments and
    result as :func:`gpuau.cpu.pnp.solve_pnp`, on ``backend``'s device.

    Returns
    -------
    (N, 6) float32, on the backend's device
    """
    xp = backend.xp
    args = check_pnp_args(xp, object_points, image_points, intrinsics, rvecs, tvecs)
    n, points = args.object_points.shape[:2]
    out = xp.empty((n, 6), np.float32)
    if n == 0:
        return out
    backend.load_module("pnp").get_function("solve_pnp")(
        (-(-n // BLOCK), 1, 1), (BLOCK, 1, 1), (*args, out, np.int32(n), np.int32(points)))
    return out
