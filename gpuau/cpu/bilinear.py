"""OpenCV's fixed-point bilinear sampling (OpenCV <= 4.10's ``remapBilinear``), Numba: the taps and weights that
:mod:`gpuau.cpu.warp_affine` (``cv::warpAffine``) and :mod:`gpuau.cpu.paw` (``PAW::Warp``'s ``cv::remap``) share.

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
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload


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


WEIGHTS_U8, WEIGHTS_F32 = _weight_tables()


def blend(p00, p01, p10, p11, w, k):
    """Bilinear blend of four taps with the weights ``w[k]``, in the arithmetic of the tap type."""
    raise NotImplementedError("called from Numba only")


@overload(blend, inline="always")
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
                dst[y, x] = blend(img[sy, sx], img[sy, sx + 1], img[sy + 1, sx], img[sy + 1, sx + 1], w, k)
            elif sx >= width or sx + 1 < 0 or sy >= height or sy + 1 < 0:  # all four outside
                dst[y, x] = border
            else:
                p00, p01, p10, p11 = _border_taps(img, sx, sy, border)
                dst[y, x] = blend(p00, p01, p10, p11, w, k)


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
                    dst[y, x, c] = blend(img[sy, sx, c], img[sy, sx + 1, c], img[sy + 1, sx, c],
                                          img[sy + 1, sx + 1, c], w, k)
            elif sx >= width or sx + 1 < 0 or sy >= height or sy + 1 < 0:  # all four outside
                dst[y, x] = border
            else:
                for c in range(channels):
                    p00, p01, p10, p11 = _border_taps(img[:, :, c], sx, sy, border)
                    dst[y, x, c] = blend(p00, p01, p10, p11, w, k)


def warp_image(img, m, dst, border, w, cover):
    """One warp: :func:`_warp_gray` for (H, W) images, :func:`_warp_color` for (H, W, C); ``cover`` None, or
    a triangle map of the output (its pixels at -1 are 0)."""
    raise NotImplementedError("called from Numba only")


@overload(warp_image, inline="always")
def _warp_image_impl(img, m, dst, border, w, cover):
    if img.ndim == 2:
        return lambda img, m, dst, border, w, cover: _warp_gray(img, m, dst, border, w, cover)
    return lambda img, m, dst, border, w, cover: _warp_color(img, m, dst, border, w, cover)
