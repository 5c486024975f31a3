"""Piece-wise affine warp (PAW): warps the face inside a triangulated landmark shape onto a fixed
destination shape, one affine map per triangle, sampled bilinearly.

Port of PAW.cpp.  A warp has two parts: the destination side (:class:`PAWModel`: which triangle
covers each destination pixel and that triangle's barycentric coefficients), computed once per
destination shape (:func:`paw_from_shape`) or read from a model file, and the source side
(:func:`warp_coefficients`, :func:`warp_maps`, :func:`warp`) computed per image from the fitted
landmarks.  Landmarks are ``(n, 2)`` arrays of ``(x, y)``; arithmetic is float32 in OpenFace's order.
"""
from __future__ import annotations

import numpy as np

from gpuau.cpu import paw as kern
from gpuau.cpu.paw import triangle_map
from gpuau.models.validator_file import PAWModel

_F = np.float32

__all__ = ["PAWModel", "barycentric_coefficients", "triangle_map", "paw_from_shape", "warp_coefficients", "warp_maps", "warp"]


def barycentric_coefficients(destination: np.ndarray, triangulation: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """Coefficients expressing a destination point in each triangle's barycentric frame.

    For a point ``(x, y)`` of triangle ``t`` with vertices ``j, k, l``, its weights on the edges
    ``k - j`` and ``l - j`` are ``alpha[t] @ (1, x, y)`` and ``beta[t] @ (1, x, y)``.
    Port of the ``alpha``/``beta`` precomputation in ``PAW::PAW``, PAW.cpp.

    Parameters
    ----------
    destination : ndarray (n, 2)
        Destination shape.
    triangulation : ndarray (T, 3) int
        Vertex indices ``j, k, l`` of each triangle.

    Returns
    -------
    alpha, beta : ndarray (T, 3) float32
    """
    d = np.asarray(destination, dtype=_F)
    tri = np.asarray(triangulation)
    xj, yj = d[tri[:, 0], 0], d[tri[:, 0], 1]
    c1 = d[tri[:, 2], 1] - yj
    c2 = d[tri[:, 2], 0] - xj
    c4 = d[tri[:, 1], 1] - yj
    c3 = d[tri[:, 1], 0] - xj
    c5 = c3 * c1 - c2 * c4
    alpha = np.stack([(yj * c2 - xj * c1) / c5, c1 / c5, -c2 / c5], axis=1)
    beta = np.stack([(xj * c4 - yj * c3) / c5, -c4 / c5, c3 / c5], axis=1)
    return alpha.astype(_F), beta.astype(_F)


def paw_from_shape(destination: np.ndarray, triangulation: np.ndarray, bounds: "tuple[float, float, float, float] | None" = None) -> PAWModel:
    """Build the warp onto a destination shape.

    Port of the two ``PAW::PAW`` constructors, PAW.cpp.

    Parameters
    ----------
    destination : ndarray (n, 2)
        Destination shape.
    triangulation : ndarray (T, 3) int
    bounds : (min_x, min_y, max_x, max_y), optional
        Destination area; defaults to the shape's bounding box.

    Returns
    -------
    PAWModel
        Grid of ``int(max_x - min_x + 1.5)`` x ``int(max_y - min_y + 1.5)`` pixels.
    """
    d = np.asarray(destination, dtype=_F)
    tri = np.asarray(triangulation, dtype=np.int32)
    if bounds is None:
        min_x, max_x = float(d[:, 0].min()), float(d[:, 0].max())
        min_y, max_y = float(d[:, 1].min()), float(d[:, 1].max())
    else:
        min_x, min_y, max_x, max_y = (float(_F(b)) for b in bounds)
    width, height = int(max_x - min_x + 1.5), int(max_y - min_y + 1.5)
    triangle_id = triangle_map(d, tri, min_x, min_y, width, height)
    alpha, beta = barycentric_coefficients(d, tri)
    return PAWModel(
        destination_landmarks=d,
        triangulation=tri,
        triangle_id=triangle_id,
        pixel_mask=(triangle_id != -1).astype(np.uint8),
        alpha=alpha,
        beta=beta,
        min_x=min_x,
        min_y=min_y,
    )


def warp_coefficients(paw: PAWModel, source: np.ndarray) -> np.ndarray:
    """Affine map of each triangle from destination to source coordinates.

    Source ``x = c0 + c1 * x_d + c2 * y_d`` and ``y = c3 + c4 * x_d + c5 * y_d``.
    Port of ``PAW::CalcCoeff``, PAW.cpp.

    Parameters
    ----------
    paw : PAWModel
    source : ndarray (..., n, 2)
        Source landmarks (leading axes batch several faces).

    Returns
    -------
    ndarray (..., T, 6) float32
    """
    s = np.asarray(source, dtype=_F)
    tri = paw.triangulation
    a, b = paw.alpha, paw.beta
    out = []
    for axis in (0, 1):
        c1 = s[..., tri[:, 0], axis]
        c2 = s[..., tri[:, 1], axis] - c1
        c3 = s[..., tri[:, 2], axis] - c1
        out += [c1 + c2 * a[:, 0] + c3 * b[:, 0], c2 * a[:, 1] + c3 * b[:, 1], c2 * a[:, 2] + c3 * b[:, 2]]
    return np.stack(out, axis=-1)


def warp_maps(paw: PAWModel, coefficients: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """Source coordinates of every destination pixel (``-1`` outside the face).

    Port of ``PAW::WarpRegion``, PAW.cpp.

    Parameters
    ----------
    paw : PAWModel
    coefficients : ndarray (..., T, 6) float32
        From :func:`warp_coefficients`.

    Returns
    -------
    map_x, map_y : ndarray (..., h, w) float32
    """
    c = np.asarray(coefficients, dtype=_F)
    map_x, map_y = kern.warp_maps(paw.triangle_id, c.reshape(-1, *c.shape[-2:]), paw.min_x, paw.min_y)
    shape = c.shape[:-2] + paw.triangle_id.shape
    return map_x.reshape(shape), map_y.reshape(shape)


def warp(image: np.ndarray, paw: PAWModel, source: np.ndarray) -> np.ndarray:
    """Warp the face inside ``source`` onto the PAW's destination grid.

    Bilinear sampling as OpenFace's ``cv::remap`` (``INTER_LINEAR``, constant 0 border, sampling
    positions rounded to 1/32 pixel; :func:`gpuau.cpu.paw.remap`).  Port of ``PAW::Warp``, PAW.cpp.
    One face on the host; the detection validator warps its batches with ``validator_faces``
    (:func:`gpuau.cpu.paw.validator_faces`, ``warp.cu`` on a GPU), the same per-pixel arithmetic.

    Parameters
    ----------
    image : ndarray (H, W) float32
    paw : PAWModel
    source : ndarray (n, 2)
        Landmarks in ``image`` coordinates.

    Returns
    -------
    ndarray (h, w) float32
    """
    map_x, map_y = warp_maps(paw, warp_coefficients(paw, source))
    return kern.remap(image, map_x, map_y)
