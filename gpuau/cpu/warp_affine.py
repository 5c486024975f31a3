"""Numba twin of ``warp.cu``: batched bilinear affine warps, bit-exact with OpenCV <= 4.10.

Port of cv::warpAffine -> WarpAffineInvoker -> remapBilinear, OpenCV imgwarp.cpp, with
``INTER_LINEAR | WARP_INVERSE_MAP`` and ``BORDER_CONSTANT`` (how OpenFace's Patch_experts.cpp cuts
areas of interest and Face_utils.cpp AlignFaceMask aligns faces).

OpenCV's arithmetic, reproduced exactly:

* For destination pixel (x, y) and the dst->src matrix ``M`` (float64; a float32 matrix converts
  exactly), ``X = (cvRound((M1*y + M2)*1024) + 16 + cvRound(M0*x*1024)) >> 5`` and likewise ``Y``
  with ``M3..M5``: the source position in 1/32 pixel (``cvRound`` rounds half to even).
* The top-left tap is ``(X >> 5, Y >> 5)`` (saturated to int16), the fraction ``ax = X & 31``,
  ``ay = Y & 31``.
* uint8: weights ``(32-ay)(32-ax)*32, (32-ay)*ax*32, ay*(32-ax)*32, ay*ax*32`` (sum 2^15), result
  ``(sum + 2^14) >> 15``.  OpenCV's table stores 32767 and 1 for ``ax = ay = 0``; the result is the
  same.
* float32: weights ``(1-fy)(1-fx)`` ... with ``f = a/32`` (exact in float32), result
  ``((p00*w00 + p01*w01) + p10*w10) + p11*w11`` in float32, no fused multiply-add.
* A pixel whose 2x2 neighbourhood lies wholly outside the image is the border value; taps outside
  the image read the border value.

OpenCV >= 4.11 (and cv2 5.x) replaced this with a float32-coordinate implementation; its outputs
differ from OpenFace's by up to a few grey levels.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

from gpuau.cpu import threads
from gpuau.kernels.warp_affine import check_mask_args, check_warp_args


@numba.njit(cache=True, inline="always")
def _fixed(v):
    """cvRound(v * 1024): a coordinate in 1/1024 pixel (round half to even)."""
    return np.int64(np.rint(v * 1024.0))


def _weight_tables() -> "tuple[np.ndarray, np.ndarray]":
    """Bilinear weights of the 32 x 32 sub-pixel fractions (row ``ay * 32 + ax``: w00, w01, w10, w11).

    uint8: OpenCV's 15-bit integers ``(32-ay)(32-ax)*32 ...`` (sum 2^15); float32: ``(32-ay)(32-ax) / 1024 ...``,
    exact in float32.
    """
    ay, ax = np.divmod(np.arange(1024, dtype=np.int64), 32)
    w = np.stack([(32 - ay) * (32 - ax), (32 - ay) * ax, ay * (32 - ax), ay * ax], axis=1)
    return w * 32, w.astype(np.float32) * np.float32(1.0 / 1024.0)


_WEIGHTS_U8, _WEIGHTS_F32 = _weight_tables()


def _blend(p00, p01, p10, p11, w, k):
    """Bilinear blend of four taps with the weights ``w[k]``, in the arithmetic of the tap type."""
    raise NotImplementedError("called from Numba only")


@overload(_blend, inline="always")
def _blend_impl(p00, p01, p10, p11, w, k):
    if isinstance(p00, types.Integer):
        # uint8: 15-bit integer weights, rounded shift.
        def blend_u8(p00, p01, p10, p11, w, k):
            v = np.int64(p00) * w[k, 0] + np.int64(p01) * w[k, 1] + np.int64(p10) * w[k, 2] + np.int64(p11) * w[k, 3]
            return min(255, (v + 16384) >> 15)

        return blend_u8

    # float32: summed left to right in float32.
    def blend_f32(p00, p01, p10, p11, w, k):
        v = p00 * w[k, 0] + p01 * w[k, 1]
        v = v + p10 * w[k, 2]
        return v + p11 * w[k, 3]

    return blend_f32


@numba.njit(cache=True, nogil=True, inline="always")
def _column_offsets(m, out_w):
    """``cvRound(M0 * x * 1024)`` and ``cvRound(M3 * x * 1024)`` of each destination column."""
    adelta = np.empty(out_w, np.int64)
    bdelta = np.empty(out_w, np.int64)
    for x in range(out_w):
        adelta[x] = _fixed(m[0] * x)
        bdelta[x] = _fixed(m[3] * x)
    return adelta, bdelta


@numba.njit(cache=True, nogil=True, inline="always")
def _source(x0, y0, adelta, bdelta, x):
    """Top-left tap ``(sx, sy)`` (saturated to int16) and weight row ``ay * 32 + ax`` of destination column ``x``."""
    fx = (x0 + adelta[x]) >> 5  # source position in 1/32 pixel
    fy = (y0 + bdelta[x]) >> 5
    sx = min(max(fx >> 5, -32768), 32767)
    sy = min(max(fy >> 5, -32768), 32767)
    return sx, sy, (fy & 31) * 32 + (fx & 31)


@numba.njit(cache=True, nogil=True, inline="always")
def _border_taps(plane, sx, sy, border):
    """The four taps of a 2x2 neighbourhood partly outside ``plane`` (H, W): outside ones read ``border``."""
    height, width = plane.shape
    x0_in = sx >= 0
    x1_in = sx + 1 < width
    y0_in = sy >= 0
    y1_in = sy + 1 < height
    p00 = plane[sy, sx] if (y0_in and x0_in) else border
    p01 = plane[sy, sx + 1] if (y0_in and x1_in) else border
    p10 = plane[sy + 1, sx] if (y1_in and x0_in) else border
    p11 = plane[sy + 1, sx + 1] if (y1_in and x1_in) else border
    return p00, p01, p10, p11


@numba.njit(cache=True, nogil=True)
def _warp_gray(img, m, dst, border, w, cover):
    # img: (H, W); m: (6,) dst->src; dst: (out_h, out_w); w: weight table of the image type;
    # cover: None, or (out_h, out_w) int: pixels where it is -1 are set to 0 without being warped
    height, width = img.shape
    out_h, out_w = dst.shape
    adelta, bdelta = _column_offsets(m, out_w)
    for y in range(out_h):
        x0 = _fixed(m[1] * y + m[2]) + 16
        y0 = _fixed(m[4] * y + m[5]) + 16
        for x in range(out_w):
            if cover is not None and cover[y, x] == -1:
                dst[y, x] = 0
                continue
            sx, sy, k = _source(x0, y0, adelta, bdelta, x)
            if 0 <= sx < width - 1 and 0 <= sy < height - 1:  # all four taps inside
                dst[y, x] = _blend(img[sy, sx], img[sy, sx + 1], img[sy + 1, sx], img[sy + 1, sx + 1], w, k)
            elif sx >= width or sx + 1 < 0 or sy >= height or sy + 1 < 0:  # all four outside
                dst[y, x] = border
            else:
                p00, p01, p10, p11 = _border_taps(img, sx, sy, border)
                dst[y, x] = _blend(p00, p01, p10, p11, w, k)


@numba.njit(cache=True, nogil=True)
def _warp_color(img, m, dst, border, w, cover):
    # img: (H, W, C); m: (6,) dst->src; dst: (out_h, out_w, C); w: weight table of the image type; cover: as
    # _warp_gray's
    height, width, channels = img.shape
    out_h, out_w = dst.shape[:2]
    adelta, bdelta = _column_offsets(m, out_w)
    for y in range(out_h):
        x0 = _fixed(m[1] * y + m[2]) + 16
        y0 = _fixed(m[4] * y + m[5]) + 16
        for x in range(out_w):
            if cover is not None and cover[y, x] == -1:
                dst[y, x] = 0
                continue
            sx, sy, k = _source(x0, y0, adelta, bdelta, x)
            if 0 <= sx < width - 1 and 0 <= sy < height - 1:  # all four taps inside
                for c in range(channels):
                    dst[y, x, c] = _blend(img[sy, sx, c], img[sy, sx + 1, c], img[sy + 1, sx, c],
                                          img[sy + 1, sx + 1, c], w, k)
            elif sx >= width or sx + 1 < 0 or sy >= height or sy + 1 < 0:  # all four outside
                dst[y, x] = border
            else:
                for c in range(channels):
                    p00, p01, p10, p11 = _border_taps(img[:, :, c], sx, sy, border)
                    dst[y, x, c] = _blend(p00, p01, p10, p11, w, k)


def _warp_image(img, m, dst, border, w, cover):
    """One warp: :func:`_warp_gray` for (H, W) images, :func:`_warp_color` for (H, W, C); ``cover`` None, or
    a triangle map of the output (its pixels at -1 are 0)."""
    raise NotImplementedError("called from Numba only")


@overload(_warp_image, inline="always")
def _warp_image_impl(img, m, dst, border, w, cover):
    if img.ndim == 2:
        return lambda img, m, dst, border, w, cover: _warp_gray(img, m, dst, border, w, cover)
    return lambda img, m, dst, border, w, cover: _warp_color(img, m, dst, border, w, cover)


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
        Weight table of the image type (:func:`_weight_tables`).
    start, stop : int
    """
    for n in range(start, stop):
        b = image_index[n]
        if b < 0 or b >= images.shape[0]:
            out[n][:] = border
        else:
            _warp_image(images[b], matrices[n].ravel(), out[n], border, w, None)


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
    weights = _WEIGHTS_U8 if args.images.dtype == np.uint8 else _WEIGHTS_F32
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
    from gpuau.cpu.paw import masked_warp_range  # gpuau.cpu.paw imports this module

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
