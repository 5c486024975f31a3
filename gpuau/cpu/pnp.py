"""Perspective-n-point refinement of head poses, batched over faces (Numba).

OpenFace's ``GetPose`` refines the weak-perspective pose of a fit with ``cv::solvePnP``
(``SOLVEPNP_ITERATIVE``, ``useExtrinsicGuess``), which in OpenCV 4.x is ``cvFindExtrinsicCameraParams2``
from the given guess: Levenberg-Marquardt (``CvLevMarq``: at most 20 iterations, stop when the
parameters move by less than ``FLT_EPSILON`` relative, damping ``JtJ``'s diagonal by ``1 + 10^k``)
over the rotation vector and translation, with the reprojection errors and Jacobians of
``cvProjectPoints2`` (no distortion) and ``cvRodrigues2``.  This is that algorithm in double
precision, one face after another; the result is rounded to float32 as OpenFace's ``cv::Vec3f``.

Measured on default.wmv's 288 reference fits: the float32 result equals OpenCV 4.6's
``cv::solvePnP`` on every face (OpenCV 5's rewritten solver stops elsewhere: up to 2.6e-5 rad and
2e-4 mm away).  The only difference from OpenCV is the 6 x 6 solve of each step (Cholesky here,
SVD there), which changes nothing at float32.

Twin of ``gpuau/kernels/pnp.cu`` (one thread per face): the same double arithmetic in the same
order, so both give the same bits.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from gpuau.kernels.pnp import check_pnp_args

MAX_ITERATIONS = 20
"""``cvFindExtrinsicCameraParams2``'s ``max_iter``."""
EPSILON = 1.1920928955078125e-07
"""Its stopping threshold on the relative change of the parameters (``FLT_EPSILON``)."""
_DBL_EPSILON = 2.220446049250313e-16

# cvRodrigues2's tables: the identity and d[r]_x / dr_i (row i = derivative by r_i)
_I = np.array([1, 0, 0, 0, 1, 0, 0, 0, 1], np.float64)
_D_R_X = np.array([[0, 0, 0, 0, 0, -1, 0, 1, 0],
                   [0, 0, 1, 0, 0, 0, -1, 0, 0],
                   [0, -1, 0, 1, 0, 0, 0, 0, 0]], np.float64)


@nb.njit(cache=True, nogil=True)
def _rodrigues(r, R, dRdr):
    """Rotation matrix ``R`` (9,) of the rotation vector ``r`` (3,) and its Jacobian ``dRdr`` (27,):
    ``dRdr[9 * i + k]`` = d R[k] / d r[i] (``cvRodrigues2``, vector to matrix)."""
    theta = math.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
    if theta < _DBL_EPSILON:
        for k in range(9):
            R[k] = _I[k]
        for k in range(27):
            dRdr[k] = 0.0
        dRdr[5] = dRdr[15] = dRdr[19] = -1.0
        dRdr[7] = dRdr[11] = dRdr[21] = 1.0
        return
    c = math.cos(theta)
    s = math.sin(theta)
    c1 = 1.0 - c
    itheta = 1.0 / theta
    rx = r[0] * itheta
    ry = r[1] * itheta
    rz = r[2] * itheta
    rrt = (rx * rx, rx * ry, rx * rz, rx * ry, ry * ry, ry * rz, rx * rz, ry * rz, rz * rz)
    r_x = (0.0, -rz, ry, rz, 0.0, -rx, -ry, rx, 0.0)
    for k in range(9):
        R[k] = c * _I[k] + c1 * rrt[k] + s * r_x[k]
    drrt = (rx + rx, ry, rz, ry, 0.0, 0.0, rz, 0.0, 0.0,  # d(r r^T) / dr_i, row i
            0.0, rx, 0.0, rx, ry + ry, rz, 0.0, rz, 0.0,
            0.0, 0.0, rx, 0.0, 0.0, ry, rx, ry, rz + rz)
    for i in range(3):
        ri = rx if i == 0 else (ry if i == 1 else rz)
        a0 = -s * ri
        a1 = (s - 2.0 * c1 * itheta) * ri
        a2 = c1 * itheta
        a3 = (c - s * itheta) * ri
        a4 = s * itheta
        for k in range(9):
            dRdr[9 * i + k] = a0 * _I[k] + a1 * rrt[k] + a2 * drrt[9 * i + k] + a3 * r_x[k] + a4 * _D_R_X[i, k]


@nb.njit(cache=True, nogil=True)
def _project(M, m, camera, p, R, dRdr, JtJ, JtErr, with_jacobian):
    """Reprojection error norm of the points ``M`` (n, 3) at pose ``p`` against ``m`` (n, 2) and,
    with ``with_jacobian``, the normal equations ``JtJ`` (6, 6) and ``JtErr`` (6,) of the errors
    ``projection - m`` (``cvProjectPoints2`` without distortion; parameters ``(rvec, tvec)``)."""
    fx, fy, cx, cy = camera[0], camera[1], camera[2], camera[3]
    _rodrigues(p[:3], R, dRdr)
    if with_jacobian:
        JtJ[:] = 0.0
        JtErr[:] = 0.0
    sq = 0.0
    row = np.empty(6)
    for i in range(M.shape[0]):
        X = float(M[i, 0])
        Y = float(M[i, 1])
        Z = float(M[i, 2])
        x = R[0] * X + R[1] * Y + R[2] * Z + p[3]
        y = R[3] * X + R[4] * Y + R[5] * Z + p[4]
        z = R[6] * X + R[7] * Y + R[8] * Z + p[5]
        z = 1.0 / z if z != 0.0 else 1.0
        x *= z
        y *= z
        ex = (x * fx + cx) - float(m[i, 0])
        ey = (y * fy + cy) - float(m[i, 1])
        sq += ex * ex
        sq += ey * ey
        if not with_jacobian:
            continue
        for axis in range(2):  # the rows of the point's x and y errors
            e = ex if axis == 0 else ey
            f = fx if axis == 0 else fy
            v = x if axis == 0 else y
            for j in range(3):
                d = 9 * j
                dz0 = X * dRdr[d + 6] + Y * dRdr[d + 7] + Z * dRdr[d + 8]
                if axis == 0:
                    d0 = X * dRdr[d] + Y * dRdr[d + 1] + Z * dRdr[d + 2]
                else:
                    d0 = X * dRdr[d + 3] + Y * dRdr[d + 4] + Z * dRdr[d + 5]
                row[j] = f * (z * (d0 - v * dz0))
            row[3] = f * z if axis == 0 else 0.0
            row[4] = 0.0 if axis == 0 else f * z
            row[5] = f * (-v * z)
            for a in range(6):
                for b in range(a, 6):
                    JtJ[a, b] += row[a] * row[b]
                JtErr[a] += row[a] * e
    if with_jacobian:
        for a in range(6):
            for b in range(a):
                JtJ[a, b] = JtJ[b, a]
    return math.sqrt(sq)


@nb.njit(cache=True, nogil=True)
def _step(JtJ, JtErr, damping, previous, p, L):
    """``p = previous - (JtJ with its diagonal times 1 + 10^damping)^-1 JtErr`` (``CvLevMarq::step``),
    solved by Cholesky; a matrix that is not positive definite leaves ``p = previous``."""
    scale = 1.0 + math.exp(damping * math.log(10.0))
    for a in range(6):
        for b in range(a + 1):
            s = JtJ[a, b] * scale if a == b else JtJ[a, b]
            for k in range(b):
                s -= L[a, k] * L[b, k]
            if a == b:
                if not s > 0.0:
                    p[:] = previous
                    return
                L[a, a] = math.sqrt(s)
            else:
                L[a, b] = s / L[b, b]
    y = np.empty(6)
    for a in range(6):
        s = JtErr[a]
        for k in range(a):
            s -= L[a, k] * y[k]
        y[a] = s / L[a, a]
    for a in range(5, -1, -1):
        s = y[a]
        for k in range(a + 1, 6):
            s -= L[k, a] * y[k]
        y[a] = s / L[a, a]
    for a in range(6):
        p[a] = previous[a] - y[a]


@nb.njit(cache=True, nogil=True)
def _relative_change(p, previous):
    """``cv::norm(p, previous, NORM_RELATIVE | NORM_L2)``."""
    d = 0.0
    n = 0.0
    for a in range(6):
        d += (p[a] - previous[a]) * (p[a] - previous[a])
        n += previous[a] * previous[a]
    return math.sqrt(d) / (math.sqrt(n) + _DBL_EPSILON)


@nb.njit(cache=True, nogil=True)
def refine_pose(M, m, camera, p):
    """Levenberg-Marquardt from ``p`` (6,) float64 ``(rvec, tvec)``, in place, as ``CvLevMarq`` runs
    it in ``cvFindExtrinsicCameraParams2``: a step from the Jacobian at the last accepted pose; while
    it raises the error norm, more damping and a new step from the same pose (up to damping 10^16);
    then less damping, and stop after 20 accepted steps or a relative change under ``FLT_EPSILON``.

    Parameters
    ----------
    M : (n, 3) float32 ; m : (n, 2) float32
        Model points and their image positions.
    camera : (4,) float64
        ``fx, fy, cx, cy``.
    p : (6,) float64
    """
    R = np.empty(9)
    dRdr = np.empty(27)
    JtJ = np.empty((6, 6))
    JtErr = np.empty(6)
    L = np.zeros((6, 6))
    previous = p.copy()
    damping = -3
    previous_error = _project(M, m, camera, p, R, dRdr, JtJ, JtErr, True)
    _step(JtJ, JtErr, damping, previous, p, L)
    iterations = 0
    while True:
        error = _project(M, m, camera, p, R, dRdr, JtJ, JtErr, False)
        if error > previous_error:
            damping += 1
            if damping <= 16:
                _step(JtJ, JtErr, damping, previous, p, L)
                continue
        damping = max(damping - 1, -16)
        iterations += 1
        if iterations >= MAX_ITERATIONS or _relative_change(p, previous) < EPSILON:
            return
        previous_error = error
        _project(M, m, camera, p, R, dRdr, JtJ, JtErr, True)
        previous[:] = p
        _step(JtJ, JtErr, damping, previous, p, L)


@nb.njit(cache=True, nogil=True)
def _solve_pnp(object_points, image_points, intrinsics, rvecs, tvecs, out):
    p = np.empty(6)
    camera = np.empty(4)
    for f in range(object_points.shape[0]):
        for a in range(3):
            p[a] = float(rvecs[f, a])
            p[3 + a] = float(tvecs[f, a])
        for a in range(4):
            camera[a] = float(intrinsics[f, a])
        refine_pose(object_points[f], image_points[f], camera, p)
        for a in range(6):
            out[f, a] = np.float32(p[a])


def solve_pnp(object_points, image_points, intrinsics, rvecs, tvecs) -> np.ndarray:
    """Refined ``(rvec, tvec)`` of each face, as ``cv::solvePnP(..., useExtrinsicGuess=true)`` in
    OpenCV 4.x gives them (no distortion; see the module docstring).

    Port of ``cvFindExtrinsicCameraParams2`` from a guess with ``CvLevMarq``, ``cvProjectPoints2`` and
    ``cvRodrigues2`` (OpenCV 4.x calibration.cpp, compat_ptsetreg.cpp).

    Parameters
    ----------
    object_points : (N, n, 3) float32
        Model points (the PDM's 3D shape).
    image_points : (N, n, 2) float32
        Their image positions (the fitted landmarks).
    intrinsics : (N, 4) float32
        ``fx, fy, cx, cy`` of each face's camera.
    rvecs, tvecs : (N, 3) float32
        Initial rotation vectors and translations.

    Returns
    -------
    (N, 6) float32
        ``rvec`` then ``tvec`` of each face.
    """
    args = check_pnp_args(np, object_points, image_points, intrinsics, rvecs, tvecs)
    out = np.empty((len(args.object_points), 6), np.float32)
    _solve_pnp(*args, out)
    return out
