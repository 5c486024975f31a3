"""GPU-path wrappers of the PDM kernels in ``pdm_fit.cu``, one launch for a batch of faces (one block per
face): ``PDM::CalcParams`` (PDM parameters fitted to landmarks) and ``PDM::CalcShape2D`` (landmarks of
parameters).  Same arguments and results as :func:`gpuau.cpu.pdm_fit.calc_params_batch` and
:func:`gpuau.cpu.pdm_fit.shape_2d_batch`.
"""
from __future__ import annotations

import numpy as np

from gpuau.kernels.loader import contiguous, on_device
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
    targets = contiguous(xp, targets, np.float32)
    if targets.ndim != 3 or targets.shape[2] != 2:
        raise ValueError(f"calc_params_batch: targets must be (F, n, 2), got {targets.shape}")
    n_faces, n = int(targets.shape[0]), int(targets.shape[1])
    m = int(pc.shape[1])
    mean = contiguous(xp, mean, np.float32)
    pc = contiguous(xp, pc, np.float32)
    eig = contiguous(xp, eig, np.float32)
    rotations = contiguous(xp, rotations, np.float32)
    if mean.shape != (3 * n,) or pc.shape != (3 * n, m) or eig.shape != (m,) or rotations.shape != (n_faces, 3):
        raise ValueError(f"calc_params_batch: expected mean ({3 * n},), pc ({3 * n}, {m}), eig ({m},) and rotations "
                         f"({n_faces}, 3), got {mean.shape}, {pc.shape}, {eig.shape}, {rotations.shape}")
    g = xp.empty((n_faces, 6), np.float32)
    p = xp.empty((n_faces, m), np.float32)
    if n_faces:
        backend.load_module("pdm_fit", (("N_POINTS", n), ("N_MODES", m))).get_function("calc_params_batch")(
            (n_faces, 1, 1), (THREADS, 1, 1), (mean, pc, eig, targets, rotations, g, p))
    return g, p


def check_pdm_args(xp, name, mean, pc, g, p):
    """Validate a PDM and a batch of its parameters for array module ``xp`` (shared by the kernel wrappers that
    take them and their Numba twins): float32 ``mean`` (3n,), ``pc`` (3n, m), ``g`` (F, 6), ``p`` (F, m),
    C-contiguous; ``name`` is the caller's, for the message."""
    mean, pc, g, p = (contiguous(xp, a, np.float32) for a in (mean, pc, g, p))
    if mean.ndim != 1 or mean.shape[0] % 3 or pc.ndim != 2 or pc.shape[:1] != mean.shape:
        raise ValueError(f"{name}: need mean (3n,) and pc (3n, m), got {mean.shape}, {pc.shape}")
    if g.ndim != 2 or g.shape[1] != 6 or p.shape != (g.shape[0], pc.shape[1]):
        raise ValueError(f"{name}: need g (F, 6) and p (F, {pc.shape[1]}), got {g.shape}, {p.shape}")
    return mean, pc, g, p


@on_device
def shape_2d_batch(backend, mean, pc, g, p):
    """``PDM::CalcShape2D`` of a batch of faces on ``backend`` (``cuda`` or ``emulated``): ``mean`` (3n,), ``pc``
    (3n, m), ``g`` (F, 6), ``p`` (F, m) float32 -> (F, n, 2) float32 on the backend's device."""
    mean, pc, g, p = check_pdm_args(backend.xp, "shape_2d_batch", mean, pc, g, p)
    n, m = int(mean.shape[0]) // 3, int(pc.shape[1])
    out = backend.xp.empty((int(g.shape[0]), n, 2), np.float32)
    if len(out):
        backend.load_module("pdm_fit", (("N_POINTS", n), ("N_MODES", m))).get_function("shape_2d_batch")(
            (len(out), 1, 1), (THREADS, 1, 1), (mean, pc, g, p, out))
    return out
