"""GPU-path wrapper of the NU-RLMS kernel in ``pdm_fit.cu``: a patch scale's whole fit for a batch of
faces in one launch (one block per face), the parameters never leaving the device between iterations.

Port of ``CLNF::NU_RLMS``, LandmarkDetectorModel.cpp; same arguments and results as
:func:`gpuau.cpu.nu_rlms.nu_rlms`.
"""
from __future__ import annotations

import numpy as np

from gpuau.kernels.loader import contiguous, on_device

THREADS = 128  # pdm_fit.cu's THREADS
KDE_STEP = np.float32(0.1)  # pdm_fit.cu's KDE_STEP (gpuau.cpu.mean_shift's): the KDE table's grid, in px


@on_device
def nu_rlms(backend, mean, pc, eig, responses, g, p, base, img_to_ref, ref_to_img, visible, weights, reg_factor,
            n_iter, kde, half, sigma, last):
    """``CLNF::NU_RLMS`` at one patch scale for a batch of faces, on ``backend`` (``cuda`` or ``emulated``).

    Parameters and results are those of the Numba twin :func:`gpuau.cpu.nu_rlms.nu_rlms` (``backend``
    first), the arrays taken from and returned on the backend's device: the PDM ``mean`` (3n,), ``pc``
    (3n, m), ``eig`` (m,); ``responses`` (F, n, R, R); the initial ``g`` (F, 6) and ``p`` (F, m);
    ``base``, ``img_to_ref``, ``ref_to_img``, ``visible``, ``weights``, ``reg_factor``, ``n_iter``,
    ``kde``, ``half``, ``sigma`` and ``last`` (F,) -> ``(g, p, last, likelihoods, landmark_likelihoods)``.
    """
    xp = backend.xp

    def f32(a, shape):
        return contiguous(xp, a, np.float32, shape, "nu_rlms")

    responses = xp.asarray(responses)
    if responses.dtype != np.float32 or responses.ndim != 4 or responses.shape[2] != responses.shape[3]:
        raise ValueError(f"nu_rlms: responses must be (F, n, R, R) float32, got {responses.shape} {responses.dtype}")
    n_faces, n, r = (int(v) for v in responses.shape[:3])
    m = int(pc.shape[1])
    mean, pc, eig = f32(mean, (3 * n,)), f32(pc, (3 * n, m)), f32(eig, (m,))
    g, p = f32(g, (n_faces, 6)), f32(p, (n_faces, m))
    base, weights = f32(base, (n_faces, n, 2)), f32(weights, (n_faces, 2 * n))
    img_to_ref, ref_to_img = f32(img_to_ref, (n_faces, 2, 2)), f32(ref_to_img, (n_faces, 2, 2))
    kde = contiguous(xp, kde, np.float32)
    stride = int(float(np.float32(r) / KDE_STEP) + 0.5)  # the table's kernels a side, as pdm_fit.cu's mean_shift
    if kde.ndim != 2 or kde.shape != (stride * stride, r * r):
        raise ValueError(f"nu_rlms: kde must be ({stride * stride}, {r * r}), got {kde.shape}")
    visible = contiguous(xp, visible, np.int32)
    last = contiguous(xp, last, np.int32)
    if visible.shape != (n_faces, n) or last.shape != (n_faces,):
        raise ValueError(f"nu_rlms: visible must be ({n_faces}, {n}) and last ({n_faces},), "
                         f"got {visible.shape}, {last.shape}")
    g_out, p_out = xp.empty_like(g), xp.empty_like(p)
    ends = xp.empty(n_faces, np.int32)
    ll = xp.empty(n_faces, np.float32)
    lhoods = xp.empty((n_faces, n), np.float32)
    if n_faces:
        responses = xp.ascontiguousarray(responses)
        i32, f = np.int32, np.float32
        module = backend.load_module("pdm_fit", (("N_POINTS", n), ("N_MODES", m)))
        module.get_function("nu_rlms")(
            (n_faces, 1, 1), (THREADS, 1, 1),
            (mean, pc, eig, responses, i32(r), g, p, base, img_to_ref, ref_to_img, visible, weights, f(reg_factor),
             i32(n_iter), kde, f(half), f(sigma), last, g_out, p_out, ends, ll, lhoods))
    return g_out, p_out, ends != 0, ll, lhoods
