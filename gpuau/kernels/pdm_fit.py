"""GPU-path wrapper of the ``PDM::CalcParams`` kernel in ``pdm_fit.cu``: PDM parameters fitted to the
landmarks of a batch of faces in one launch (one block per face).

Port of ``PDM::CalcParams`` (landmarks -> params), PDM.cpp; same arguments and results as
:func:`gpuau.cpu.pdm_fit.calc_params_batch`.
"""
from __future__ import annotations

import numpy as np

from gpuau.kernels.loader import on_device
from gpuau.kernels.nu_rlms import THREADS


@on_device
def calc_params_batch(backend, mean, pc, eig, targets, rotations):
    """``PDM::CalcParams`` for a batch of faces on ``backend`` (``cuda`` or ``emulated``).

    Parameters
    ----------
    backend : gpuau.device.Backend
    mean : (3n,) ; pc : (3n, m) ; eig : (m,) float32
        The PDM.
    targets : (F, n, 2) float32
        Landmarks; those whose x is exactly 0 are missing, as in OpenFace.
    rotations : (F, 3) float32
        Initial Euler angles.

    Returns
    -------
    g : (F, 6) float32 ; p : (F, m) float32
        On the backend's device; zeros for a face without landmarks.
    """
    xp = backend.xp
    targets = xp.ascontiguousarray(xp.asarray(targets), dtype=np.float32)
    if targets.ndim != 3 or targets.shape[2] != 2:
        raise ValueError(f"calc_params_batch: targets must be (F, n, 2), got {targets.shape}")
    n_faces, n = int(targets.shape[0]), int(targets.shape[1])
    m = int(pc.shape[1])
    mean = xp.ascontiguousarray(xp.asarray(mean), dtype=np.float32)
    pc = xp.ascontiguousarray(xp.asarray(pc), dtype=np.float32)
    eig = xp.ascontiguousarray(xp.asarray(eig), dtype=np.float32)
    rotations = xp.ascontiguousarray(xp.asarray(rotations), dtype=np.float32)
    if mean.shape != (3 * n,) or pc.shape != (3 * n, m) or eig.shape != (m,) or rotations.shape != (n_faces, 3):
        raise ValueError(f"calc_params_batch: expected mean ({3 * n},), pc ({3 * n}, {m}), eig ({m},) and rotations "
                         f"({n_faces}, 3), got {mean.shape}, {pc.shape}, {eig.shape}, {rotations.shape}")
    g = xp.empty((n_faces, 6), np.float32)
    p = xp.empty((n_faces, m), np.float32)
    if n_faces:
        backend.load_module("pdm_fit", (("N_POINTS", n), ("N_MODES", m))).get_function("calc_params_batch")(
            (n_faces, 1, 1), (THREADS, 1, 1), (mean, pc, eig, targets, rotations, g, p))
    return g, p
