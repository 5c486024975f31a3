"""GPU-path wrapper of the ``response_areas`` kernel in ``pdm_fit.cu``: where a patch scale's response maps
are computed, for a batch of faces in one launch (one block per face), from parameters that stay on the device.

Port of the part of ``Patch_experts::Response`` (Patch_experts.cpp) and ``CLNF::Fit`` before the patch
experts run: ``GetViewIdx``, ``PDM::CalcShape2D`` of the shape and of the reference shape,
``AlignShapesWithScale`` and its inverse, and each landmark's area-of-interest matrix.  Same arguments and
results as :func:`gpuau.cpu.response_areas.response_areas`.
"""
from __future__ import annotations

import numpy as np

from gpuau.kernels.loader import contiguous, on_device
from gpuau.kernels.nu_rlms import THREADS
from gpuau.kernels.pdm_fit import check_pdm_args


def check_response_areas_args(xp, mean, pc, centers, g, p):
    """Validate :func:`response_areas`' arrays for array module ``xp`` (shared with the Numba twin): the PDM's
    (:func:`~gpuau.kernels.pdm_fit.check_pdm_args`) and float64 ``centers`` (V, 3), C-contiguous."""
    mean, pc, g, p = check_pdm_args(xp, "response_areas", mean, pc, g, p)
    centers = contiguous(xp, centers, np.float64)
    if centers.ndim != 2 or centers.shape[1] != 3 or len(centers) == 0:
        raise ValueError(f"response_areas: centers must be (V, 3) with V >= 1, got {centers.shape}")
    return mean, pc, centers, g, p


@on_device
def response_areas(backend, mean, pc, centers, g, p, patch_scaling: float, size: int):
    """Views, shapes, similarities and area-of-interest matrices of a batch of faces on ``backend`` (``cuda``
    or ``emulated``); arguments and results as :func:`gpuau.cpu.response_areas.response_areas`, on the
    backend's device."""
    xp = backend.xp
    mean, pc, centers, g, p = check_response_areas_args(xp, mean, pc, centers, g, p)
    n_faces, n, m = int(g.shape[0]), int(mean.shape[0]) // 3, int(pc.shape[1])
    views = xp.empty(n_faces, np.int32)
    base = xp.empty((n_faces, n, 2), np.float32)
    sims = xp.empty((n_faces, 2, 2, 2), np.float32)
    matrices = xp.empty((n_faces, n, 2, 3), np.float32)
    if n_faces:
        backend.load_module("pdm_fit", (("N_POINTS", n), ("N_MODES", m))).get_function("response_areas")(
            (n_faces, 1, 1), (THREADS, 1, 1),
            (mean, pc, centers, np.int32(len(centers)), g, p, np.float32(patch_scaling), np.int32(size), views, base,
             sims, matrices))
    return views, base, sims, matrices
