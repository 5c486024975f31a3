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

from gpuau.kernels.warp_affine import check_warp_args


@numba.njit(cache=True, inline="always")
def _fixed(v):
    """cvRound(v * 1024): a coordinate in 1/1024 pixel (round half to even)."""
    return np.int64(np.rint(v * 1024.0))


def _blend(p00, p01, p10, p11, ax, ay):
    """Bilinear blend of four taps at fraction (ax, ay)/32, in the arithmetic of the tap type."""
    raise NotImplementedError("called from Numba only")


@overload(_blend, inline="always")
def _blend_impl(p00, p01, p10, p11, ax, ay):
    if isinstance(p00, types.Integer):
        # uint8: 15-bit integer weights, rounded shift.
        def blend_u8(p00, p01, p10, p11, ax, ay):
            v = (
                np.int64(p00) * ((32 - ay) * (32 - ax) * 32)
                + np.int64(p01) * ((32 - ay) * ax * 32)
                + np.int64(p10) * (ay * (32 - ax) * 32)
                + np.int64(p11) * (ay * ax * 32)
            )
            return min(255, (v + 16384) >> 15)

        return blend_u8

    # float32: exact float32 weights, summed left to right.
    def blend_f32(p00, p01, p10, p11, ax, ay):
        scale = np.float32(1.0 / 1024.0)
        w00 = np.float32((32 - ay) * (32 - ax)) * scale
        w01 = np.float32((32 - ay) * ax) * scale
        w10 = np.float32(ay * (32 - ax)) * scale
        w11 = np.float32(ay * ax) * scale
        v = p00 * w00 + p01 * w01
        v = v + p10 * w10
        return v + p11 * w11

    return blend_f32


@numba.njit(cache=True, nogil=True)
def _warp_one(img, m, dst, border):
    # img: (H, W, C); m: (6,) dst->src; dst: (out_h, out_w, C)
    height, width, channels = img.shape
    out_h, out_w = dst.shape[:2]
    adelta = np.empty(out_w, np.int64)
    bdelta = np.empty(out_w, np.int64)
    for x in range(out_w):
        adelta[x] = _fixed(m[0] * x)
        bdelta[x] = _fixed(m[3] * x)
    for y in range(out_h):
        x0 = _fixed(m[1] * y + m[2]) + 16
        y0 = _fixed(m[4] * y + m[5]) + 16
        for x in range(out_w):
            fx = (x0 + adelta[x]) >> 5  # source position in 1/32 pixel
            fy = (y0 + bdelta[x]) >> 5
            sx = min(max(fx >> 5, -32768), 32767)
            sy = min(max(fy >> 5, -32768), 32767)
            ax = fx & 31
            ay = fy & 31
            if 0 <= sx < width - 1 and 0 <= sy < height - 1:  # all four taps inside
                for c in range(channels):
                    dst[y, x, c] = _blend(
                        img[sy, sx, c], img[sy, sx + 1, c], img[sy + 1, sx, c], img[sy + 1, sx + 1, c], ax, ay
                    )
            elif sx >= width or sx + 1 < 0 or sy >= height or sy + 1 < 0:  # all four outside
                for c in range(channels):
                    dst[y, x, c] = border
            else:
                x0_in = sx >= 0
                x1_in = sx + 1 < width
                y0_in = sy >= 0
                y1_in = sy + 1 < height
                for c in range(channels):
                    p00 = img[sy, sx, c] if (y0_in and x0_in) else border
                    p01 = img[sy, sx + 1, c] if (y0_in and x1_in) else border
                    p10 = img[sy + 1, sx, c] if (y1_in and x0_in) else border
                    p11 = img[sy + 1, sx + 1, c] if (y1_in and x1_in) else border
                    dst[y, x, c] = _blend(p00, p01, p10, p11, ax, ay)


@numba.njit(cache=True, nogil=True)
def _warp_output(images, image_index, matrices, out, border, n):
    b = image_index[n]
    if b < 0 or b >= images.shape[0]:
        out[n][:] = border
    else:
        _warp_one(images[b], matrices[n].ravel(), out[n], border)


@numba.njit(cache=True, nogil=True)
def _warp_serial(images, image_index, matrices, out, border):
    for n in range(out.shape[0]):
        _warp_output(images, image_index, matrices, out, border, n)


@numba.njit(cache=True, nogil=True, parallel=True)
def _warp_parallel(images, image_index, matrices, out, border):
    for n in numba.prange(out.shape[0]):
        _warp_output(images, image_index, matrices, out, border, n)


PARALLEL_MIN_VALUES = 1 << 22
"""Output values (pixels x channels) from which a batch is split over Numba's threads: below it a
parallel launch (thread wake-up, and spinning threads on a loaded machine) costs more than it saves."""


def warp_affine(images, image_index, matrices, out_h: int, out_w: int, border=0) -> np.ndarray:
    """Bilinear affine warps of a batch of images, one output per (image, matrix) pair.

    Reproduces ``cv2.warpAffine(images[image_index[n]], matrices[n], (out_w, out_h),
    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
    borderValue=border)`` bit for bit as OpenCV <= 4.10 computes it.  Serial (the GIL released) unless the
    batch is large (:data:`PARALLEL_MIN_VALUES`), then parallel over the outputs.

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
    run = _warp_parallel if out.size >= PARALLEL_MIN_VALUES and numba.config.NUMBA_NUM_THREADS > 1 else _warp_serial
    run(args.images, args.image_index, args.matrices, out.reshape(out.shape[:3] + (-1,)), border)
    return out
