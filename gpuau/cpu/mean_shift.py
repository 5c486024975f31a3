"""Mean-shift over the kernel density estimate (KDE) of patch expert response maps, Numba.

Port of ``CLNF::NonVectorisedMeanShift_precalc_kde`` and the landmark likelihood loop of
``CLNF::NU_RLMS``, LandmarkDetectorModel.cpp.  The Gaussian KDE kernel is looked up in a table
precomputed on a 0.1 px grid of offsets inside the response window (float32, OpenFace's order).
"""
from __future__ import annotations

from functools import lru_cache

import numba as nb
import numpy as np

KDE_STEP = np.float32(0.1)


@lru_cache(maxsize=None)
def kde_table(resp_size: int, a: float) -> np.ndarray:
    """Precomputed KDE kernels ``exp(a ((dy - i)^2 + (dx - j)^2))`` on a 0.1 px grid.

    Parameters
    ----------
    resp_size : int
        Response window size ``R``.
    a : float
        ``-0.5 / sigma^2`` (as float32).

    Returns
    -------
    ndarray (S*S, R*R) float32
        Row ``x * S + y`` holds the kernel for ``dx = 0.1 x``, ``dy = 0.1 y``; ``S`` is the
        number of grid steps OpenFace's loops visit.
    """
    af = np.float32(a)
    limit = np.float32(resp_size) / KDE_STEP
    steps = int(np.ceil(limit))  # loop "x < resp_size / step" over integers
    grid = np.arange(steps, dtype=np.float32) * KDE_STEP
    idx = np.arange(resp_size, dtype=np.float32)
    vx = (grid[:, None] - idx[None, :]) ** 2  # (S, R): (d - i)^2
    # row (x, y): entries (ii, jj) = exp(a * ((dy - ii)^2 + (dx - jj)^2))
    e = vx[None, :, :, None] + vx[:, None, None, :]  # [x, y, ii, jj] = vx[y, ii] + vx[x, jj]
    # in place: the 11-wide window's table is 5.9 MB, and each fresh temporary of it costs its page faults
    np.multiply(e, af, out=e)
    np.exp(e, out=e)
    return e.reshape(steps * steps, resp_size * resp_size)


@nb.njit(cache=True, nogil=True)
def mean_shift(responses, dxs, dys, visible, kde, out):
    """Mean-shift vectors of all landmarks in the reference frame.

    Parameters
    ----------
    responses : ndarray (n, R, R) float32
    dxs, dys : ndarray (n,) float32
        Current landmark offsets inside the response windows.
    visible : ndarray (n,) int32
    kde : ndarray (S*S, R*R) float32
        From :func:`kde_table`.
    out : ndarray (n, 2) float32
        Mean shifts ``(msx, msy)``; zero for invisible landmarks.
    """
    n = responses.shape[0]
    r = responses.shape[1]
    step = np.float32(0.1)
    stride = int(np.float32(r) / step + 0.5)
    hi = np.float32(np.float32(r) - step)
    for i in range(n):
        if visible[i] == 0:
            out[i, 0] = 0.0
            out[i, 1] = 0.0
            continue
        dx = dxs[i]
        dy = dys[i]
        if not dx >= 0:  # a NaN too: the KDE table's first kernel, not a read outside it
            dx = np.float32(0.0)
        if not dy >= 0:
            dy = np.float32(0.0)
        if dx > hi:
            dx = hi
        if dy > hi:
            dy = hi
        closest_col = int(np.float64(np.float32(dy / step)) + 0.5)
        closest_row = int(np.float64(np.float32(dx / step)) + 0.5)
        row = closest_row * stride + closest_col
        mx = np.float32(0.0)
        my = np.float32(0.0)
        s = np.float32(0.0)
        k = 0
        for ii in range(r):
            for jj in range(r):
                v = responses[i, ii, jj] * kde[row, k]
                s += v
                mx += v * np.float32(jj)
                my += v * np.float32(ii)
                k += 1
        out[i, 0] = mx / s - dx
        out[i, 1] = my / s - dy


@nb.njit(cache=True, nogil=True)
def landmark_likelihoods(responses, dxs, dys, visible, sigma):
    """Per-landmark likelihoods: responses weighted by a Gaussian at the current offsets.

    Parameters
    ----------
    responses : ndarray (n, R, R) float32
    dxs, dys : ndarray (n,) float32
    visible : ndarray (n,) int32
    sigma : float

    Returns
    -------
    ndarray (n,) float32
        ``-1e8`` for invisible landmarks.
    """
    n = responses.shape[0]
    r = responses.shape[1]
    out = np.full(n, np.float32(-1e8), np.float32)
    s2 = np.float64(np.float32(sigma) * np.float32(sigma))
    for i in range(n):
        if visible[i] == 0:
            continue
        dx = dxs[i]
        dy = dys[i]
        s = np.float32(0.0)
        for ii in range(r):
            vx = (dy - np.float32(ii)) * (dy - np.float32(ii))
            for jj in range(r):
                vy = (dx - np.float32(jj)) * (dx - np.float32(jj))
                v = np.float32(responses[i, ii, jj] * np.exp(-0.5 * np.float64(np.float32(vx + vy)) / s2))
                s += v
        out[i] = s
    return out


@nb.njit(cache=True, nogil=True)
def model_log_likelihoods(lhoods, visible):
    """Model log-likelihood of each face: mean over its visible landmarks of ``log(likelihood + 1e-8)``,
    accumulated in float32 as OpenFace does (the end of ``CLNF::NU_RLMS``).

    Parameters
    ----------
    lhoods : ndarray (F, n) float32
        From :func:`landmark_likelihoods`.
    visible : ndarray (F, n) int32

    Returns
    -------
    ndarray (F,) float32
    """
    out = np.empty(lhoods.shape[0], np.float32)
    for f in range(lhoods.shape[0]):
        ll = np.float32(0.0)
        count = 0
        for i in range(lhoods.shape[1]):
            if visible[f, i] != 0:
                ll = np.float32(np.float64(ll) + np.log(np.float64(lhoods[f, i]) + 1e-8))
                count += 1
        out[f] = ll / np.float32(count)
    return out
