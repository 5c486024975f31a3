"""GPU-path wrappers of the batched affine warp kernels in ``warp.cu`` (CUDA or the CPU emulator).

Port of cv::warpAffine(..., INTER_LINEAR | WARP_INVERSE_MAP, BORDER_CONSTANT), imgwarp.cpp
(OpenCV <= 4.10, as used by OpenFace's Patch_experts.cpp and Face_utils.cpp AlignFaceMask), and of
AlignFaceMask's triangulation mask (PAW::PAW's pixel mask, PAW.cpp) fused with it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gpuau.kernels.loader import contiguous, on_device

BLOCK = (16, 16, 1)
MAX_GRID_Z = 65535
CHAIN_BLOCK = 64  # faces per block of warp_mask_chain_*


class WarpArgs(NamedTuple):
    """Validated arguments of :func:`warp_affine` (arrays on the caller's device)."""

    images: object  # (B, H, W, C) uint8 | float32, C-contiguous
    image_index: object  # (N,) int32
    matrices: object  # (N, 2, 3) float64
    out_shape: tuple  # (N, out_h, out_w[, C])
    border: float  # border value as the image dtype stores it


def check_warp_args(xp, images, image_index, matrices, out_h: int, out_w: int, border=0) -> WarpArgs:
    """Validate and normalise :func:`warp_affine`'s arguments for array module ``xp``.

    Shared by the kernel wrapper and the Numba twin (:mod:`gpuau.cpu.warp_affine`).
    """
    images = xp.asarray(images)
    if images.dtype not in (np.uint8, np.float32):
        raise TypeError(f"warp_affine: images must be uint8 or float32, got {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"warp_affine: images must be (B,H,W) or (B,H,W,C), got shape {images.shape}")
    has_channels = images.ndim == 4
    images = xp.ascontiguousarray(images if has_channels else images[..., None])
    image_index = contiguous(xp, xp.asarray(image_index).reshape(-1), np.int32)
    matrices = xp.asarray(matrices)
    if matrices.shape != (image_index.shape[0], 2, 3):
        raise ValueError(
            f"warp_affine: matrices must be (N,2,3) with N = len(image_index) = {image_index.shape[0]}, "
            f"got {matrices.shape}"
        )
    matrices = contiguous(xp, matrices, np.float64)  # float32 -> float64 is exact
    out_h, out_w = int(out_h), int(out_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"warp_affine: output size must be positive, got {out_h}x{out_w}")
    # OpenCV's border value: saturate_cast to the image type.
    border = float(np.clip(np.rint(border), 0, 255)) if images.dtype == np.uint8 else float(np.float32(border))
    shape = (image_index.shape[0], out_h, out_w) + ((images.shape[3],) if has_channels else ())
    return WarpArgs(images, image_index, matrices, shape, border)


@on_device
def warp_affine(backend, images, image_index, matrices, out_h: int, out_w: int, border=0):
    """Bilinear affine warps of a batch of images, one output per (image, matrix) pair.

    Reproduces ``cv2.warpAffine(images[image_index[n]], matrices[n], (out_w, out_h),
    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
    borderValue=border)`` bit for bit as OpenCV <= 4.10 computes it: source positions on a 1/32
    pixel grid from fixed-point arithmetic, 15-bit integer weights for uint8.

    Port of cv::warpAffine / WarpAffineInvoker / remapBilinear, OpenCV imgwarp.cpp.

    Parameters
    ----------
    backend : gpuau.device.Backend
        ``cuda`` or ``emulated``.
    images, image_index, matrices, out_h, out_w, border
        As :func:`gpuau.cpu.warp_affine.warp_affine` (arrays on ``backend``'s device).

    Returns
    -------
    (N, out_h, out_w) or (N, out_h, out_w, C), the dtype of ``images``, on ``backend``'s device
    """
    xp = backend.xp
    args = check_warp_args(xp, images, image_index, matrices, out_h, out_w, border)
    n, out_h, out_w = args.out_shape[:3]
    out = xp.empty(args.out_shape, dtype=args.images.dtype)
    if n == 0:
        return out
    b, h, w, c = args.images.shape
    if args.images.dtype == np.uint8:
        kernel, border_arg = "warp_affine_u8", np.int32(args.border)
    else:
        kernel, border_arg = "warp_affine_f32", np.float32(args.border)
    grid = (-(-out_w // BLOCK[0]), -(-out_h // BLOCK[1]), min(n, MAX_GRID_Z))
    backend.load_module("warp").get_function(kernel)(
        grid,
        BLOCK,
        (
            args.images, np.int32(b), np.int32(h), np.int32(w), np.int32(c),
            args.image_index, args.matrices, np.int32(n), np.int32(out_h), np.int32(out_w),
            border_arg, out,
        ),
    )
    return out


def check_mask_args(xp, points, triangulation, n: int):
    """Validate :func:`warp_affine_masked`'s mask arguments for array module ``xp``.

    Shared by the kernel wrapper and the Numba twin (:mod:`gpuau.cpu.warp_affine`).

    Returns
    -------
    points : (N, P, 2) float32, C-contiguous
    triangulation : (T, 3) int32 NumPy array, C-contiguous, indices in ``[0, P)`` (checked on the host)
    """
    points = contiguous(xp, points, np.float32)
    if points.ndim != 3 or points.shape[0] != n or points.shape[2] != 2:
        raise ValueError(f"warp_affine_masked: points must be ({n}, P, 2), got {points.shape}")
    triangulation = contiguous(np, triangulation, np.int32)
    if triangulation.ndim != 2 or triangulation.shape[1] != 3:
        raise ValueError(f"warp_affine_masked: triangulation must be (T, 3), got {triangulation.shape}")
    if triangulation.size and (int(triangulation.min()) < 0 or int(triangulation.max()) >= points.shape[1]):
        raise ValueError(f"warp_affine_masked: triangulation indices must lie in [0, {points.shape[1]})")
    return points, triangulation


@on_device
def warp_affine_masked(backend, images, image_index, matrices, out_h: int, out_w: int, points, triangulation):
    """Bilinear affine warps with everything outside a triangulated shape set to 0 (one fused kernel).

    Port of ``AlignFaceMask`` (Face_utils.cpp): the warp of :func:`warp_affine` (border 0), then
    PAW's pixel mask of the triangulation of ``points`` (PAW::PAW, PAW.cpp) applied.

    Parameters
    ----------
    backend : gpuau.device.Backend
        ``cuda`` or ``emulated``.
    images, image_index, matrices, out_h, out_w, points, triangulation
        As :func:`gpuau.cpu.warp_affine.warp_affine_masked` (arrays on ``backend``'s device, except
        ``triangulation``: a host array, a model constant checked without a device round trip).

    Returns
    -------
    (N, out_h, out_w) or (N, out_h, out_w, C), the dtype of ``images``, on ``backend``'s device

    Notes
    -----
    Launches ``warp_affine_masked_*`` (one thread per output pixel) and, when some face has a pixel
    only a degenerate triangle's test covers, ``warp_mask_chain_*`` (one thread per face, replaying
    OpenFace's serial scan); the second launch always runs, so the host never waits on the device.
    """
    xp = backend.xp
    args = check_warp_args(xp, images, image_index, matrices, out_h, out_w)
    n, out_h, out_w = args.out_shape[:3]
    points, triangulation = check_mask_args(xp, points, triangulation, n)
    out = xp.empty(args.out_shape, dtype=args.images.dtype)
    if n == 0:
        return out
    n_tris = int(triangulation.shape[0])
    vertices = xp.ascontiguousarray(points[:, xp.asarray(triangulation)].reshape(n, n_tris, 6))
    ambiguous = xp.zeros(n, np.int32)
    b, h, w, c = args.images.shape
    suffix = "u8" if args.images.dtype == np.uint8 else "f32"
    module = backend.load_module("warp")
    i32 = np.int32
    common = (args.images, i32(b), i32(h), i32(w), i32(c), args.image_index, args.matrices, i32(n), i32(out_h),
              i32(out_w), vertices, i32(n_tris), ambiguous, out)
    grid = (-(-out_w // BLOCK[0]), -(-out_h // BLOCK[1]), min(n, MAX_GRID_Z))
    module.get_function(f"warp_affine_masked_{suffix}")(grid, BLOCK, common)
    module.get_function(f"warp_mask_chain_{suffix}")((-(-n // CHAIN_BLOCK), 1, 1), (CHAIN_BLOCK, 1, 1), common)
    return out
