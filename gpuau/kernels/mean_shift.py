"""GPU-path wrappers of the KDE mean-shift and landmark likelihood kernels in ``mean_shift.cu``.

Port of ``CLNF::NonVectorisedMeanShift_precalc_kde`` and the landmark likelihood loop of
``CLNF::NU_RLMS``, LandmarkDetectorModel.cpp; same arguments and results as
:func:`gpuau.cpu.mean_shift.mean_shift` and :func:`gpuau.cpu.mean_shift.landmark_likelihoods`.
"""
from __future__ import annotations

import numpy as np

from gpuau.kernels.loader import on_device

BLOCK = 64


def _landmark_args(xp, responses, dxs, dys, visible):
    responses = xp.asarray(responses)
    if responses.dtype != np.float32 or responses.ndim != 3 or responses.shape[1] != responses.shape[2]:
        raise ValueError(f"mean_shift: responses must be (n, R, R) float32, got {responses.shape} {responses.dtype}")
    n = int(responses.shape[0])
    dxs = xp.ascontiguousarray(xp.asarray(dxs), dtype=np.float32)
    dys = xp.ascontiguousarray(xp.asarray(dys), dtype=np.float32)
    visible = xp.ascontiguousarray(xp.asarray(visible), dtype=np.int32)
    if dxs.shape != (n,) or dys.shape != (n,) or visible.shape != (n,):
        raise ValueError(f"mean_shift: dxs, dys and visible must be ({n},), got {dxs.shape}, {dys.shape}, {visible.shape}")
    return xp.ascontiguousarray(responses), dxs, dys, visible, n, int(responses.shape[1])


@on_device
def mean_shift(backend, responses, dxs, dys, visible, kde, out):
    """Mean-shift vectors of all landmarks in the reference frame, on ``backend`` (``cuda`` or ``emulated``).

    Port of ``CLNF::NonVectorisedMeanShift_precalc_kde``, LandmarkDetectorModel.cpp.

    Parameters
    ----------
    backend : gpuau.device.Backend
    responses : (n, R, R) float32
    dxs, dys : (n,) float32
        Current landmark offsets inside the response windows.
    visible : (n,) int32
    kde : (S*S, R*R) float32
        From :func:`gpuau.cpu.mean_shift.kde_table` (on the backend's device).
    out : (n, 2) float32, C-contiguous, on the backend's device
        Filled with the mean shifts ``(msx, msy)``; zero for invisible landmarks.
    """
    xp = backend.xp
    responses, dxs, dys, visible, n, r = _landmark_args(xp, responses, dxs, dys, visible)
    kde = xp.ascontiguousarray(xp.asarray(kde), dtype=np.float32)
    if kde.ndim != 2 or kde.shape[1] != r * r:
        raise ValueError(f"mean_shift: kde must be (S*S, {r * r}), got {kde.shape}")
    if not isinstance(out, xp.ndarray) or out.dtype != np.float32 or out.shape != (n, 2) or not out.flags.c_contiguous:
        raise ValueError(f"mean_shift: out must be a C-contiguous ({n}, 2) float32 {xp.__name__} array")
    if n == 0:
        return
    i32 = np.int32
    backend.load_module("mean_shift").get_function("mean_shift")(
        (-(-n // BLOCK), 1, 1), (BLOCK, 1, 1), (responses, dxs, dys, visible, kde, i32(n), i32(r), out))


@on_device
def landmark_likelihoods(backend, responses, dxs, dys, visible, sigma):
    """Per-landmark likelihoods: response maps weighted by a Gaussian at the current offsets.

    Port of the landmark likelihood loop of ``CLNF::NU_RLMS``, LandmarkDetectorModel.cpp.

    Parameters
    ----------
    backend : gpuau.device.Backend
    responses : (n, R, R) float32
    dxs, dys : (n,) float32
    visible : (n,) int32
    sigma : float

    Returns
    -------
    (n,) float32 on the backend's device
        ``-1e8`` for invisible landmarks.
    """
    xp = backend.xp
    responses, dxs, dys, visible, n, r = _landmark_args(xp, responses, dxs, dys, visible)
    out = xp.empty(n, np.float32)
    if n == 0:
        return out
    i32 = np.int32
    backend.load_module("mean_shift").get_function("landmark_likelihoods")(
        (-(-n // BLOCK), 1, 1), (BLOCK, 1, 1), (responses, dxs, dys, visible, i32(n), i32(r), np.float32(sigma), out))
    return out
