"""Piece-wise affine warp (PAW) rasterisation, warp maps and bilinear remap, Numba, float32 in
OpenFace's order.

Port of the pixel scan of ``PAW::PAW`` with ``PAW::findTriangle``, ``PAW::pointInTriangle`` and
``PAW::sameSide``, of ``PAW::WarpRegion``, PAW.cpp, and of the ``cv::remap`` call of ``PAW::Warp``
as OpenCV <= 4.10 computes it (imgwarp.cpp: RemapInvoker, remapBilinear).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu.bilinear import WEIGHTS_F32, blend, warp_image


@nb.njit(cache=True, nogil=True, inline="always")
def _same_side(x0, y0, x1, y1, x2, y2, x3, y3):
    """Whether (x0, y0) is on the same side of line (x2, y2)-(x3, y3) as (x1, y1), on the line included."""
    a = (x3 - x2) * (y0 - y2) - (x0 - x2) * (y3 - y2)
    b = (x3 - x2) * (y1 - y2) - (x1 - x2) * (y3 - y2)
    return a * b >= np.float32(0)


@nb.njit(cache=True, nogil=True, inline="always")
def _in_triangle(x0, y0, v, t):
    """``PAW::pointInTriangle`` of (x0, y0) and triangle ``t`` of ``v`` (T, 6): x1, y1, x2, y2, x3, y3."""
    x1, y1, x2, y2, x3, y3 = v[t, 0], v[t, 1], v[t, 2], v[t, 3], v[t, 4], v[t, 5]
    return (_same_side(x0, y0, x1, y1, x2, y2, x3, y3)
            and _same_side(x0, y0, x2, y2, x1, y1, x3, y3)
            and _same_side(x0, y0, x3, y3, x1, y1, x2, y2))


@nb.njit(cache=True, nogil=True)
def _triangle_map(vertices, min_x, min_y, out):
    n_tris = vertices.shape[0]
    height, width = out.shape
    lo_x = np.empty(n_tris, dtype=np.float32)
    hi_x = np.empty(n_tris, dtype=np.float32)
    lo_y = np.empty(n_tris, dtype=np.float32)
    hi_y = np.empty(n_tris, dtype=np.float32)
    for t in range(n_tris):
        lo_x[t] = min(vertices[t, 0], vertices[t, 2], vertices[t, 4])
        hi_x[t] = max(vertices[t, 0], vertices[t, 2], vertices[t, 4])
        lo_y[t] = min(vertices[t, 1], vertices[t, 3], vertices[t, 5])
        hi_y[t] = max(vertices[t, 1], vertices[t, 3], vertices[t, 5])
    rows = np.empty(n_tris, dtype=np.int64)  # triangles whose box spans the current row, in index order
    guess = -1
    for y in range(height):
        y0 = np.float32(y) + min_y
        n_rows = 0
        row_lo, row_hi = np.float32(np.inf), np.float32(-np.inf)  # x extent of those boxes
        for t in range(n_tris):
            # a NaN bound skips nothing, as in findTriangle
            if not (hi_y[t] < y0 or lo_y[t] > y0):
                rows[n_rows] = t
                n_rows += 1
                # a triangle with a NaN vertex passes no half-plane test: its bounds may be ignored
                if lo_x[t] < row_lo:
                    row_lo = lo_x[t]
                if hi_x[t] > row_hi:
                    row_hi = hi_x[t]
        for x in range(width):
            x0 = np.float32(x) + min_x
            if guess == -1 or not _in_triangle(x0, y0, vertices, guess):
                guess = -1
                if row_lo <= x0 <= row_hi:  # else outside every box of the row
                    for r in range(n_rows):
                        t = rows[r]
                        if hi_x[t] < x0 or lo_x[t] > x0:
                            continue
                        if _in_triangle(x0, y0, vertices, t):
                            guess = t
                            break
            out[y, x] = guess


def triangle_map(destination: np.ndarray, triangulation: np.ndarray, min_x: float, min_y: float, width: int, height: int) -> np.ndarray:
    """Triangle covering each pixel of a destination grid, exactly as OpenFace's raster scan finds it.

    Pixel ``(y, x)`` sits at ``(x + min_x, y + min_y)`` (float32).  Pixels are visited in raster
    order; the previous pixel's triangle is kept when the half-plane tests hold for it, otherwise
    the first triangle (in index order) whose bounding box and half-plane tests hold is taken.
    Port of the scan in ``PAW::PAW`` with ``PAW::findTriangle``, PAW.cpp.

    Parameters
    ----------
    destination : ndarray (n, 2)
        Destination shape ``(x, y)`` (rounded to float32).
    triangulation : ndarray (T, 3) int
        Vertex indices of each triangle.
    min_x, min_y : float
        Coordinates of pixel (0, 0) (rounded to float32).
    width, height : int

    Returns
    -------
    ndarray (height, width) int32
        Triangle index, -1 where no triangle covers the pixel.
    """
    d = np.asarray(destination, dtype=np.float32)
    tri = np.asarray(triangulation, dtype=np.int64)
    vertices = np.ascontiguousarray(d[tri].reshape(tri.shape[0], 6))
    out = np.empty((height, width), dtype=np.int32)
    _triangle_map(vertices, np.float32(min_x), np.float32(min_y), out)
    return out


@nb.njit(cache=True, nogil=True)
def masked_warp_range(images, image_index, matrices, vertices, out, zero, w, start, stop):
    """Outputs ``start`` to ``stop - 1`` of :func:`gpuau.cpu.warp_affine.warp_affine_masked`: per output, the
    :func:`triangle_map` of its shape, then the warp of the pixels it covers (the others 0).

    ``images`` (B, H, W) or (B, H, W, C); ``image_index`` (N,) int32 (outside ``[0, B)``: all 0); ``matrices``
    (N, 2, 3) float64 destination -> source; ``vertices`` (N, T, 6) float32, the corners of each output's
    triangles in its pixels; ``out`` (N, out_h, out_w[, C]); ``zero`` 0 of the image type (the border);
    ``w`` the weight table of the image type.
    """
    cover = np.empty((out.shape[1], out.shape[2]), np.int32)
    for n in range(start, stop):
        b = image_index[n]
        if b < 0 or b >= images.shape[0]:
            out[n][:] = zero
            continue
        _triangle_map(vertices[n], np.float32(0.0), np.float32(0.0), cover)
        warp_image(images[b], matrices[n].ravel(), out[n], zero, w, cover)


@nb.njit(cache=True, nogil=True, inline="always")
def _source_point(c, t, xi, yi):
    """Source position of destination point ``(xi, yi)`` of triangle ``t`` under the coefficients ``c``
    (T, 6) (``PAW::WarpRegion``'s float32 order)."""
    return (c[t, 0] + c[t, 1] * xi) + c[t, 2] * yi, (c[t, 3] + c[t, 4] * xi) + c[t, 5] * yi


@nb.njit(cache=True, nogil=True)
def _warp_maps(triangle_id, coefficients, min_x, min_y, map_x, map_y):
    n_batch = coefficients.shape[0]
    height, width = triangle_id.shape
    for b in range(n_batch):
        c = coefficients[b]
        for y in range(height):
            yi = np.float32(y) + min_y
            for x in range(width):
                t = triangle_id[y, x]
                if t < 0:
                    map_x[b, y, x] = -1
                    map_y[b, y, x] = -1
                else:
                    map_x[b, y, x], map_y[b, y, x] = _source_point(c, t, np.float32(x) + min_x, yi)


def warp_maps(triangle_id: np.ndarray, coefficients: np.ndarray, min_x: float, min_y: float) -> "tuple[np.ndarray, np.ndarray]":
    """Source coordinates of every destination pixel, ``-1`` outside the face.

    Port of ``PAW::WarpRegion``, PAW.cpp.

    Parameters
    ----------
    triangle_id : ndarray (h, w) int32
        Triangle of each destination pixel, -1 outside.
    coefficients : ndarray (B, T, 6) float32
        Per face, the affine map of each triangle (source ``x = c0 + c1 x_d + c2 y_d``,
        ``y = c3 + c4 x_d + c5 y_d``).
    min_x, min_y : float
        Destination coordinates of pixel (0, 0) (rounded to float32).

    Returns
    -------
    map_x, map_y : ndarray (B, h, w) float32
    """
    tid = np.ascontiguousarray(triangle_id, dtype=np.int32)
    c = np.ascontiguousarray(coefficients, dtype=np.float32)
    shape = (c.shape[0],) + tid.shape
    map_x, map_y = np.empty(shape, np.float32), np.empty(shape, np.float32)
    _warp_maps(tid, c, np.float32(min_x), np.float32(min_y), map_x, map_y)
    return map_x, map_y


@nb.njit(cache=True, nogil=True, inline="always")
def _sample(image, top, left, height, width, mx, my):
    """``cv::remap`` (``INTER_LINEAR``, constant 0 border, OpenCV <= 4.10) of the region
    ``image[top:top + height, left:left + width]`` at ``(mx, my)``, in float32 (taps of any type)."""
    border = np.float32(0)
    # cvRound(map * INTER_TAB_SIZE): the source position in 1/32 pixel
    fx = np.int64(np.rint(mx * np.float32(32)))
    fy = np.int64(np.rint(my * np.float32(32)))
    sx = min(max(fx >> 5, -32768), 32767)
    sy = min(max(fy >> 5, -32768), 32767)
    k = (fy & 31) * 32 + (fx & 31)
    if sx >= width or sx + 1 < 0 or sy >= height or sy + 1 < 0:
        return border
    x0_in, x1_in = sx >= 0, sx + 1 < width
    y0_in, y1_in = sy >= 0, sy + 1 < height
    p00 = np.float32(image[top + sy, left + sx]) if (y0_in and x0_in) else border
    p01 = np.float32(image[top + sy, left + sx + 1]) if (y0_in and x1_in) else border
    p10 = np.float32(image[top + sy + 1, left + sx]) if (y1_in and x0_in) else border
    p11 = np.float32(image[top + sy + 1, left + sx + 1]) if (y1_in and x1_in) else border
    return blend(p00, p01, p10, p11, WEIGHTS_F32, k)


@nb.njit(cache=True, nogil=True)
def _remap(image, map_x, map_y, out):
    height, width = image.shape
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            out[y, x] = _sample(image, 0, 0, height, width, map_x[y, x], map_y[y, x])


def remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bilinear sampling of a float image at per-pixel source positions, constant 0 border.

    Reproduces ``cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR)`` bit for bit as OpenCV <= 4.10
    (the version OpenFace ran with) computes it: each position is rounded to 1/32 pixel
    (``cvRound(map * 32)``) and the four taps are blended with the exact float32 weights of that
    fraction, summed left to right; taps outside the image read 0.  OpenCV >= 4.11 interpolates the
    unrounded position and differs by up to ~1.5 grey levels.
    Port of RemapInvoker and remapBilinear, OpenCV imgwarp.cpp.

    Parameters
    ----------
    image : ndarray (H, W) float32
    map_x, map_y : ndarray (h, w) float32
        Source ``x`` and ``y`` of each output pixel.

    Returns
    -------
    ndarray (h, w) float32
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    map_x = np.ascontiguousarray(map_x, dtype=np.float32)
    map_y = np.ascontiguousarray(map_y, dtype=np.float32)
    if map_x.shape != map_y.shape or image.ndim != 2 or map_x.ndim != 2:
        raise ValueError(f"remap of a {image.shape} image with maps {map_x.shape} and {map_y.shape}")
    out = np.empty(map_x.shape, dtype=np.float32)
    _remap(image, map_x, map_y, out)
    return out


@nb.njit(cache=True, nogil=True)
def _validator_faces(images, image_index, regions, coefficients, triangle_id, min_x, min_y, rank, mean, std, out):
    h, w = triangle_id.shape
    n = mean.shape[0]
    for f in range(coefficients.shape[0]):
        image = images[image_index[f]]
        left, top, width, height = regions[f, 0], regions[f, 1], regions[f, 2], regions[f, 3]
        c = coefficients[f]
        for y in range(h):
            yi = np.float32(y) + min_y
            for x in range(w):
                t = triangle_id[y, x]
                if t < 0:
                    out[f, y, x] = 0
                else:
                    mx, my = _source_point(c, t, np.float32(x) + min_x, yi)
                    out[f, y, x] = _sample(image, top, left, height, width, mx, my)
        # the face's pixels in column-major order: mean and mean square, serial float64 sums
        s = 0.0
        s2 = 0.0
        for x in range(w):
            for y in range(h):
                if rank[y, x] >= 0:
                    v = np.float64(out[f, y, x])
                    s += v
                    s2 += v * v
        m = s / n
        sd = np.sqrt(max(s2 / n - m * m, 0.0))
        centre = np.float32(m)
        scale = np.float32(1.0 / (sd if sd != 0 else 1.0))
        for y in range(h):
            for x in range(w):
                k = rank[y, x]
                out[f, y, x] = ((out[f, y, x] - centre) * scale - mean[k]) / std[k] if k >= 0 else np.float32(0)


def validator_faces(images, image_index, regions, coefficients, triangle_id, min_x: float, min_y: float, rank, mean,
                    std):
    """The validator network's inputs: each face's region warped onto its view's grid (PAW), then
    normalised over the face's pixels.

    Per face: :func:`remap` of ``images[image_index[f]]`` cut to ``regions[f]`` (taps outside the region
    read 0) at the source positions of ``coefficients[f]`` (``PAW::WarpRegion``, ``PAW::Warp``); then
    the pixels where ``rank >= 0`` (the view's mask, ranked in column-major order) are centred on their
    mean and scaled by one over their standard deviation (float64 sums in that order, rounded to
    float32), less the view's per-pixel ``mean`` and over its ``std``; 0 elsewhere.
    Port of ``DetectionValidator::Check`` up to ``CheckCNN``'s input, with
    ``NormaliseWarpedToVector``, LandmarkDetectionValidator.cpp.  Twin of ``validator_faces`` in
    ``gpuau/kernels/warp.cu``.

    Parameters
    ----------
    images : (B, H, W) uint8 or float32
        Grey frames.
    image_index : (F,) int
        Frame of each face.
    regions : (F, 4) int
        ``(left, top, width, height)`` of each face's region (:func:`~gpuau.landmarks.validator.validator_roi`).
    coefficients : (F, T, 6) float32
        :func:`~gpuau.landmarks.paw.warp_coefficients` of each face's landmarks in region coordinates.
    triangle_id : (h, w) int32
        The view's destination triangles, -1 outside.
    min_x, min_y : float
        Destination coordinates of pixel (0, 0).
    rank : (h, w) int32
        Index of each face pixel in column-major order, -1 outside the mask.
    mean, std : (n,) float32
        The view's normalisation of its ``n`` face pixels.

    Returns
    -------
    (F, h, w) float32
    """
    images = np.ascontiguousarray(images)
    if images.dtype not in (np.uint8, np.float32) or images.ndim != 3:
        raise ValueError(f"validator_faces: images must be (B, H, W) uint8 or float32, got {images.dtype} {images.shape}")
    coefficients = np.ascontiguousarray(coefficients, np.float32)
    out = np.empty((len(coefficients),) + np.shape(triangle_id), np.float32)
    _validator_faces(images, np.ascontiguousarray(image_index, np.int64), np.ascontiguousarray(regions, np.int64),
                     coefficients, np.ascontiguousarray(triangle_id, np.int32), np.float32(min_x), np.float32(min_y),
                     np.ascontiguousarray(rank, np.int32), np.ascontiguousarray(mean, np.float32),
                     np.ascontiguousarray(std, np.float32), out)
    return out
