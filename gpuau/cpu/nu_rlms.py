"""``CLNF::NU_RLMS`` (LandmarkDetectorModel.cpp) as ``CLNF::Fit`` runs it at one patch scale, compiled
with Numba (float32, as OpenFace): rigid and non-rigid passes of mean-shift + regularised
Gauss-Newton steps of the PDM parameters, then the likelihoods; one call per scale, no Python
between.  CPU twin of ``gpuau/kernels/nu_rlms.cu`` (same arguments and results, bit for bit).

Shapes as in :mod:`gpuau.cpu.pdm_fit`: ``mean`` (3n,) and ``pc`` (3n, m), ``g`` (6,) =
``[scale, rx, ry, rz, tx, ty]``, Jacobian rows all x then all y.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu.mean_shift import landmark_likelihoods, mean_shift, model_log_likelihoods
from gpuau.cpu.pdm_fit import clamp, jacobian_at, normal_equations, project, shape_3d, solve_cholesky, update_parameters


@nb.njit(cache=True, nogil=True)
def nu_rlms_offsets(mean, pc, g, p, base, img_to_ref, half, it, prev, dxs, dys):
    """First half of a ``CLNF::NU_RLMS`` iteration: stop test, then the landmarks' offsets in
    their response windows.

    Parameters
    ----------
    g : (6,) ; p : (m,) float32
        Current params.
    base : (n, 2) float32
        Shape the response maps are centred on.
    img_to_ref : (2, 2) float32
    half : float32
        ``(R - 1) // 2``.
    it : int
        Iteration number.
    prev : (n, 2) float32
        Shape of the previous iteration (updated).
    dxs, dys : (n,) float32
        Filled with the offsets (left as they are when the fit has converged).

    Returns
    -------
    stop : bool
        True when the shape moved less than 0.01 px since the previous iteration.
    s3 : (n, 3) float32
        3D shape of ``p`` (for :func:`nu_rlms_update`).
    """
    n = base.shape[0]
    s3 = shape_3d(mean, pc, p)
    cur = project(s3, g)
    if it > 0:
        d = 0.0
        for i in range(n):
            d += (np.float64(cur[i, 0]) - prev[i, 0]) ** 2 + (np.float64(cur[i, 1]) - prev[i, 1]) ** 2
        if np.sqrt(d) < 0.01:
            return True, s3
    prev[:, :] = cur
    for i in range(n):
        ox = cur[i, 0] - base[i, 0]
        oy = cur[i, 1] - base[i, 1]
        dxs[i] = (ox * img_to_ref[0, 0] + oy * img_to_ref[0, 1]) + half
        dys[i] = (ox * img_to_ref[1, 0] + oy * img_to_ref[1, 1]) + half
    return False, s3


@nb.njit(cache=True, nogil=True)
def nu_rlms_update(s3, pc, eig, g, p, shifts, ref_to_img, weights, reg_factor, rigid):
    """Second half of a ``CLNF::NU_RLMS`` iteration: the regularised Gauss-Newton step of the
    (rigid or all) params towards the mean-shifts, clamped.

    Parameters
    ----------
    s3 : (n, 3) float32
        3D shape of ``p`` (from :func:`nu_rlms_offsets`).
    shifts : (n, 2) float32
        Mean-shifts in the reference frame.
    ref_to_img : (2, 2) float32
    weights : (2n,) float32
        NU-RLMS weights, zero for invisible landmarks.
    reg_factor : float32
    rigid : bool

    Returns
    -------
    g, p : float32 arrays
    """
    n = shifts.shape[0]
    m = pc.shape[1]
    jac = jacobian_at(s3, pc, g, rigid)
    ms = np.empty(2 * n, np.float32)
    for i in range(n):
        ms[i] = shifts[i, 0] * ref_to_img[0, 0] + shifts[i, 1] * ref_to_img[0, 1]
        ms[n + i] = shifts[i, 0] * ref_to_img[1, 0] + shifts[i, 1] * ref_to_img[1, 1]
    h, rhs = normal_equations(jac, weights, ms)
    if not rigid:
        for j in range(m):
            reg = reg_factor / eig[j]
            rhs[6 + j] -= reg * p[j]
            h[6 + j, 6 + j] += reg
    upd = solve_cholesky(h, rhs)
    g, p = update_parameters(upd, g, p)
    return g, clamp(eig, p)


@nb.njit(cache=True, nogil=True)
def visible_weights(weights, visible):
    """(F, 2n) NU-RLMS weights with the rows of invisible landmarks zeroed."""
    n = visible.shape[1]
    w = weights.copy()
    for f in range(w.shape[0]):
        for i in range(n):
            if visible[f, i] == 0:
                w[f, i] = 0.0
                w[f, n + i] = 0.0
    return w


@nb.njit(cache=True, nogil=True)
def nu_rlms(mean, pc, eig, responses, g, p, base, img_to_ref, ref_to_img, visible, weights, reg_factor,
            n_iter, kde, half, sigma, last):
    """``CLNF::NU_RLMS`` as ``CLNF::Fit`` runs it at one patch scale, for a batch of faces fitted with one
    model and one window size, in one call: per face, a rigid then a non-rigid pass of iterations of
    mean-shift on its response maps then a regularised Gauss-Newton step of the (global or all) PDM
    params, clamped, until the shape stops moving; then the likelihoods of the faces whose fit ends
    at this scale (:func:`gpuau.cpu.mean_shift.landmark_likelihoods`,
    :func:`gpuau.cpu.mean_shift.model_log_likelihoods`).

    Parameters
    ----------
    responses : (F, n, R, R) float32
    g : (F, 6) ; p : (F, m) float32
        Initial params.
    base : (F, n, 2) float32
        Shapes the response maps are centred on.
    img_to_ref, ref_to_img : (F, 2, 2) float32
    visible : (F, n) int32
    weights : (F, 2n) float32
        NU-RLMS weights (ones when the weight factor is 0).
    reg_factor : float32
    n_iter : int
        Iterations of each pass at most.
    kde : (S*S, R*R) float32
        KDE table of this window size and sigma.
    half : float32
        ``(R - 1) // 2``.
    sigma : float
        Sigma of the likelihoods.
    last : (F,) bool
        Faces that skip the next scale (or have none).

    Returns
    -------
    g : (F, 6) ; p : (F, m) float32
    last : (F,) bool
        ``last``, or the scale after the rigid pass below 0.30 (the fit ends here).
    likelihoods : (F,) float32
        Model log-likelihood of the faces whose fit ends here (0 for the others).
    landmark_likelihoods : (F, n) float32
        Theirs per landmark, ``-1e8`` for invisible landmarks (and for the other faces).
    """
    n_faces, n = base.shape[0], base.shape[1]
    w = visible_weights(weights, visible)
    g_out = g.copy()
    p_out = p.copy()
    ends = last.copy()
    ll = np.zeros(n_faces, np.float32)
    lhoods = np.full((n_faces, n), np.float32(-1e8), np.float32)
    dxs = np.zeros(n, np.float32)
    dys = np.zeros(n, np.float32)
    prev = np.zeros((n, 2), np.float32)
    shifts = np.zeros((n, 2), np.float32)
    for f in range(n_faces):
        gf = g[f].copy()
        pf = p[f].copy()
        for rigid in (True, False):
            for it in range(n_iter):
                stop, s3 = nu_rlms_offsets(mean, pc, gf, pf, base[f], img_to_ref[f], half, it, prev, dxs, dys)
                if stop:
                    break
                mean_shift(responses[f], dxs, dys, visible[f], kde, shifts)
                gf, pf = nu_rlms_update(s3, pc, eig, gf, pf, shifts, ref_to_img[f], w[f], reg_factor, rigid)
            if rigid and gf[0] < 0.30:
                ends[f] = True
        g_out[f] = gf
        p_out[f] = pf
        if ends[f]:
            lhoods[f] = landmark_likelihoods(responses[f], dxs, dys, visible[f], sigma)
            ll[f] = model_log_likelihoods(lhoods[f:f + 1], visible[f:f + 1])[0]
    return g_out, p_out, ends, ll, lhoods
