"""Where a patch scale's response maps are computed, for a batch of faces (Numba; twin of the
``response_areas`` kernel in ``gpuau/kernels/pdm_fit.cu``): each face's view, its shape and the reference
shape, the similarities between them, and each landmark's area of interest.

Port of the part of ``Patch_experts::Response`` (Patch_experts.cpp) and ``CLNF::Fit`` before the patch
experts run: ``Patch_experts::GetViewIdx``, ``PDM::CalcShape2D`` of the shape and of the reference shape
(scale ``patch_scaling``, no rotation, no translation), ``AlignShapesWithScale`` and its
``inv(DECOMP_LU)`` (:func:`gpuau.cpu.similarity.similarity`), and the ``sim`` matrix of each landmark's
``warpAffine``.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu.fp import fmaf
from gpuau.cpu.pdm_fit import project, shape_3d
from gpuau.cpu.similarity import similarity
from gpuau.kernels.response_areas import check_response_areas_args

_F = np.float32


@nb.njit(cache=True, nogil=True)
def nearest_views(rotations, centers):
    """Index of the view centre closest to each rotation (first of equals), the squared distance in float32
    from double differences, ``v1*v1 + v2*v2 + v3*v3`` fused as Patch_experts.o fuses ``GetViewIdx``'s sum.

    rotations : (F, 3) float32 ; centers : (V, 3) float64 -> (F,) int32
    """
    out = np.zeros(rotations.shape[0], np.int32)
    for f in range(rotations.shape[0]):
        best = np.float32(0.0)
        for v in range(centers.shape[0]):
            d1 = np.float32(np.float64(rotations[f, 0]) - centers[v, 0])
            d2 = np.float32(np.float64(rotations[f, 1]) - centers[v, 1])
            d3 = np.float32(np.float64(rotations[f, 2]) - centers[v, 2])
            d = fmaf(d3, d3, fmaf(d1, d1, d2 * d2))
            if v == 0 or d < best:
                best, out[f] = d, v
    return out


@nb.njit(cache=True, nogil=True)
def _shapes(mean, pc, g, p, patch_scaling):
    """``CalcShape2D`` of each face at ``g`` and at the reference ``(patch_scaling, 0, 0, 0, 0, 0)``."""
    n_faces, n = g.shape[0], mean.shape[0] // 3
    base = np.empty((n_faces, n, 2), np.float32)
    ref = np.empty((n_faces, n, 2), np.float32)
    g_ref = np.zeros(6, np.float32)
    g_ref[0] = patch_scaling
    for f in range(n_faces):
        s3 = shape_3d(mean, pc, p[f])
        base[f] = project(s3, g[f])
        ref[f] = project(s3, g_ref)
    return base, ref


def area_matrices(centres: np.ndarray, sim_ref_to_img: np.ndarray, size: int) -> np.ndarray:
    """Destination -> source affine maps of the areas of interest around landmarks.

    Port of the ``sim`` matrix of ``Patch_experts::Response``: a ``size x size`` crop rotated and
    scaled by ``sim_ref_to_img`` and centred on each landmark (float32 arithmetic).

    Parameters
    ----------
    centres : ndarray (N, 2) float32
        Landmark positions in the image.
    sim_ref_to_img : ndarray (2, 2) or (N, 2, 2) float32
        One similarity for all areas, or one per area.
    size : int
        ``window_size + patch_size - 1``.

    Returns
    -------
    ndarray (N, 2, 3) float32
    """
    c = np.asarray(centres, _F)
    sim = np.asarray(sim_ref_to_img, _F)
    a1 = sim[..., 0, 0]
    b1 = -sim[..., 0, 1]
    half = (_F(size) - _F(1)) / _F(2)
    m = np.empty((c.shape[0], 2, 3), _F)
    m[:, 0, 0] = a1
    m[:, 0, 1] = -b1
    m[:, 0, 2] = c[:, 0] - a1 * half + b1 * half
    m[:, 1, 0] = b1
    m[:, 1, 1] = a1
    m[:, 1, 2] = c[:, 1] - a1 * half - b1 * half
    return m


def response_areas(mean, pc, centers, g, p, patch_scaling: float, size: int):
    """Views, shapes, similarities and area-of-interest matrices of a batch of faces at one patch scale.

    Parameters
    ----------
    mean : (3n,) float32 ; pc : (3n, m) float32
        The PDM.
    centers : (V, 3) float64
        Head-pose centre (Euler angles) of each view of the scale's patch experts.
    g : (F, 6) float32 ; p : (F, m) float32
        The faces' parameters.
    patch_scaling : float
        Scale of the reference shape the patch experts were trained at.
    size : int
        Side of the areas of interest, ``window_size + patch_size - 1``.

    Returns
    -------
    views : (F,) int32
        ``GetViewIdx`` of each face.
    base : (F, n, 2) float32
        The faces' shapes, on which the response maps are centred.
    sims : (F, 2, 2, 2) float32
        ``sims[f, 0]``: image -> reference similarity, ``sims[f, 1]``: its inverse.
    matrices : (F, n, 2, 3) float32
        Destination -> image map of each landmark's area of interest (:func:`area_matrices`).
    """
    mean, pc, centers, g, p = check_response_areas_args(np, mean, pc, centers, g, p)
    n_faces, n = len(g), mean.shape[0] // 3
    views = nearest_views(np.ascontiguousarray(g[:, 1:4]), centers)
    base, ref = _shapes(mean, pc, g, p, _F(patch_scaling))
    sims = similarity(base, ref)
    matrices = area_matrices(base.reshape(-1, 2), np.repeat(sims[:, 1], n, axis=0), size)
    return views, base, sims, matrices.reshape(n_faces, n, 2, 3)
