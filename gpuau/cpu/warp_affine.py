"""Numba twin of ``warp.cu``: batched bilinear affine warps, bit-exact with OpenCV <= 4.10.

Port of cv::warpAffine -> WarpAffineInvoker -> remapBilinear, OpenCV imgwarp.cpp, with
``INTER_LINEAR | WARP_INVERSE_MAP`` and ``BORDER_CONSTANT`` (how OpenFace's Patch_experts.cpp cuts
areas of interest and Face_utils.cpp AlignFaceMask aligns faces).

OpenCV's arithmetic: :mod:`gpuau.cpu.bilinear`.

OpenCV >= 4.11 (and cv2 5.x) replaced this with a float32-coordinate implementation; its outputs
differ from OpenFace's by up to a few grey levels.
"""
from __future__ import annotations

import numba
import numpy as np

from gpuau.cpu import threads
from gpuau.cpu.bilinear import WEIGHTS_F32, WEIGHTS_U8, warp_image
from gpuau.cpu.paw import masked_warp_range
from gpuau.kernels.warp_affine import check_mask_args, check_warp_args


@numba.njit(cache=True, nogil=True)
def _warp_range(images, image_index, matrices, out, border, w, start, stop):
    """Outputs ``start`` to ``stop - 1`` of a batch, one at a time.

    Parameters
    ----------
    images : ndarray (B, H, W) or (B, H, W, C)
    image_index : ndarray (N,) int32
        Source image of each output; outside ``[0, B)``: an all-border output.
    matrices : ndarray (N, 2, 3) float64
        Destination -> source maps.
    out : ndarray (N, out_h, out_w) or (N, out_h, out_w, C), the dtype of ``images``
    border : scalar of the image type
    w : ndarray (1024, 4)
        Weight table of the image type (:data:`gpuau.cpu.bilinear.WEIGHTS_U8` or ``WEIGHTS_F32``).
    start, stop : int
    """
    for n in range(start, stop):
        b = image_index[n]
        if b < 0 or b >= images.shape[0]:
            out[n][:] = border
        else:
            warp_image(images[b], matrices[n].ravel(), out[n], border, w, None)


PARALLEL_MIN_VALUES = 1 << 22
"""Output values (pixels x channels) from which a batch is split between the calling thread and the
helper thread (:mod:`gpuau.cpu.threads`), each warping half of the outputs (~20 ms of work on one
core, ~110 aligned 112x112 BGR faces).  The pipeline's per-step batches (a few faces, the AU thread's
alignment) stay on their thread: a split there would queue behind the landmark fit's own work on the
helper."""


def warp_affine(images, image_index, matrices, out_h: int, out_w: int, border=0) -> np.ndarray:
    """Bilinear affine warps of a batch of images, one output per (image, matrix) pair.

    Reproduces ``cv2.warpAffine(images[image_index[n]], matrices[n], (out_w, out_h),
    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
    borderValue=border)`` bit for bit as OpenCV <= 4.10 computes it.  Serial (the GIL released) unless the
    batch is large (:data:`PARALLEL_MIN_VALUES`), then half of the outputs are warped on the helper thread
    (same code per output, same bits).

    Port of cv::warpAffine / WarpAffineInvoker / remapBilinear, OpenCV imgwarp.cpp.

    Parameters
    ----------
    images : (B, H, W) or (B, H, W, C) uint8 or float32
    image_index : (N,) int
        Which image each output is cut from; an index outside ``[0, B)`` gives an all-border output.
    matrices : (N, 2, 3) float64 or float32
        Destination -> source maps (OpenCV's inverse map).
    out_h, out_w : int
        Output size.
    border : float
        Constant border value (saturated to the image type).

    Returns
    -------
    (N, out_h, out_w) or (N, out_h, out_w, C), the dtype of ``images``
    """
    args = check_warp_args(np, images, image_index, matrices, out_h, out_w, border)
    out = np.empty(args.out_shape, dtype=args.images.dtype)
    if out.shape[0] == 0:
        return out
    border = args.images.dtype.type(args.border)
    images, target, weights = _kernel_arrays(args, out)
    threads.run_range(_warp_range, out.shape[0], images, args.image_index, args.matrices, target, border, weights,
                      split=out.size >= PARALLEL_MIN_VALUES)
    return out


def _kernel_arrays(args, out) -> tuple:
    """``(images, out, weights)`` as the range kernels take them: (B, H, W) and (N, out_h, out_w) planes for
    single-channel images (no channel loop), and the bilinear weight table of the image type."""
    weights = WEIGHTS_U8 if args.images.dtype == np.uint8 else WEIGHTS_F32
    if args.images.shape[3] == 1:
        return args.images.reshape(args.images.shape[:3]), out.reshape(out.shape[:3]), weights
    return args.images, out, weights


def warp_affine_masked(images, image_index, matrices, out_h: int, out_w: int, points, triangulation) -> np.ndarray:
    """Bilinear affine warps with everything outside a triangulated shape set to 0.

    :func:`warp_affine` with border 0, except that pixel ``(y, x)`` of output ``n`` is 0, and not warped, unless
    the triangulation of ``points[n]`` covers ``(x, y)`` as PAW's raster scan finds it
    (:func:`gpuau.cpu.paw.triangle_map`), computed per output before its warp.  Twin of ``warp_affine_masked_*``
    in ``warp.cu``.

    Port of ``AlignFaceMask`` (Face_utils.cpp) with the pixel mask of ``PAW::PAW`` (PAW.cpp).

    Parameters
    ----------
    images, image_index, matrices, out_h, out_w
        As :func:`warp_affine`.
    points : (N, P, 2) float
        Shape of each output in output pixels ``(x, y)`` (rounded to float32).
    triangulation : (T, 3) int
        Vertex indices into ``points``.

    Returns
    -------
    (N, out_h, out_w) or (N, out_h, out_w, C), the dtype of ``images``
    """
    args = check_warp_args(np, images, image_index, matrices, out_h, out_w)
    out = np.empty(args.out_shape, dtype=args.images.dtype)
    points, triangulation = check_mask_args(np, points, triangulation, out.shape[0])
    if out.shape[0] == 0:
        return out
    vertices = np.ascontiguousarray(points[:, triangulation].reshape(out.shape[0], -1, 6))
    images, target, weights = _kernel_arrays(args, out)
    threads.run_range(masked_warp_range, out.shape[0], images, args.image_index, args.matrices, vertices, target,
                      args.images.dtype.type(0), weights, split=out.size >= PARALLEL_MIN_VALUES)
    return out
