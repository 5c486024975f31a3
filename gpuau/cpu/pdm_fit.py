"""PDM geometry and Gauss-Newton fitting loops compiled with Numba (float32, as OpenFace).

Ports, one Numba function each:

* ``Euler2RotationMatrix`` / ``RotationMatrix2Euler`` (RotationHelpers.h) and ``cv::Rodrigues`` in
  both directions (OpenCV calib3d: double precision, SVD orthonormalisation of the matrix);
* ``PDM::CalcShape3D``, ``CalcShape2D``, ``ComputeJacobian`` / ``ComputeRigidJacobian``,
  ``Orthonormalise``, ``UpdateModelParameters``, ``Clamp`` (PDM.cpp);
* the iteration loop of ``PDM::CalcParams`` (landmarks -> params, PDM.cpp).

``CLNF::NU_RLMS`` (the fit at a patch scale) is :mod:`gpuau.cpu.nu_rlms`, built from these.

Shapes: ``mean`` (3n,) and ``pc`` (3n, m) in OpenFace's x-block, y-block, z-block layout;
``g`` (6,) = ``[scale, rx, ry, rz, tx, ty]``; 2D shapes (n, 2); Jacobian rows all x then all y.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from gpuau.cpu.fp import fmaf
from gpuau.cpu.sgemm_order import LANES, one_row

F32 = np.float32


@nb.njit(cache=True, nogil=True)
def euler_to_rotation(e):
    """(3,) float32 Euler angles -> (3, 3) float32 rotation ``Rx Ry Rz``."""
    s1 = np.float32(np.sin(e[0]))
    s2 = np.float32(np.sin(e[1]))
    s3 = np.float32(np.sin(e[2]))
    c1 = np.float32(np.cos(e[0]))
    c2 = np.float32(np.cos(e[1]))
    c3 = np.float32(np.cos(e[2]))
    r = np.empty((3, 3), np.float32)
    # the sums fused as OpenFace's -O3 -march=native build fuses Euler2RotationMatrix (PDM.o)
    r[0, 0] = c2 * c3
    r[0, 1] = -c2 * s3
    r[0, 2] = s2
    r[1, 0] = fmaf(c1, s3, (c3 * s1) * s2)
    r[1, 1] = fmaf(-(s1 * s2), s3, c1 * c3)
    r[1, 2] = -c2 * s1
    r[2, 0] = fmaf(s1, s3, -((c1 * c3) * s2))
    r[2, 1] = fmaf(c1 * s2, s3, c3 * s1)
    r[2, 2] = c1 * c2
    return r


@nb.njit(cache=True, nogil=True)
def rotation_to_euler(r):
    """(3, 3) float32 rotation -> (3,) float32 Euler angles, through the quaternion."""
    one = np.float32(1.0)
    two = np.float32(2.0)
    four = np.float32(4.0)
    q0 = np.float32(np.sqrt(one + r[0, 0] + r[1, 1] + r[2, 2])) / two
    q1 = (r[2, 1] - r[1, 2]) / (four * q0)
    q2 = (r[0, 2] - r[2, 0]) / (four * q0)
    q3 = (r[1, 0] - r[0, 1]) / (four * q0)
    t1 = two * (q0 * q2 + q1 * q3)
    if t1 > one:
        t1 = one
    if t1 < -one:
        t1 = -one
    out = np.empty(3, np.float32)
    out[1] = np.float32(np.arcsin(t1))
    out[0] = np.float32(np.arctan2(two * (q0 * q1 - q2 * q3), q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3))
    out[2] = np.float32(np.arctan2(two * (q0 * q3 - q1 * q2), q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3))
    return out


@nb.njit(cache=True, nogil=True)
def _det3(a):
    return (a[0, 0] * (a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1])
            - a[0, 1] * (a[1, 0] * a[2, 2] - a[1, 2] * a[2, 0])
            + a[0, 2] * (a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0]))


@nb.njit(cache=True, nogil=True)
def polar_rotation(a32):
    """Orthogonal polar factor ``U V^T`` of a (3, 3) matrix with SVD ``U S V^T``, in double.

    Newton's iteration ``Q <- (Q + Q^-T) / 2`` (quadratic convergence); used where OpenCV takes
    ``U V^T`` from an SVD of a matrix with positive determinant (``cv::Rodrigues``,
    ``PDM::Orthonormalise``).
    """
    q = a32.astype(np.float64)
    for _ in range(50):
        d = _det3(q)
        # inverse transpose = cofactor matrix / det
        c = np.empty((3, 3), np.float64)
        c[0, 0] = q[1, 1] * q[2, 2] - q[1, 2] * q[2, 1]
        c[0, 1] = q[1, 2] * q[2, 0] - q[1, 0] * q[2, 2]
        c[0, 2] = q[1, 0] * q[2, 1] - q[1, 1] * q[2, 0]
        c[1, 0] = q[0, 2] * q[2, 1] - q[0, 1] * q[2, 2]
        c[1, 1] = q[0, 0] * q[2, 2] - q[0, 2] * q[2, 0]
        c[1, 2] = q[0, 1] * q[2, 0] - q[0, 0] * q[2, 1]
        c[2, 0] = q[0, 1] * q[1, 2] - q[0, 2] * q[1, 1]
        c[2, 1] = q[0, 2] * q[1, 0] - q[0, 0] * q[1, 2]
        c[2, 2] = q[0, 0] * q[1, 1] - q[0, 1] * q[1, 0]
        change = 0.0
        for i in range(3):
            for j in range(3):
                v = 0.5 * (q[i, j] + c[i, j] / d)
                change = max(change, abs(v - q[i, j]))
                q[i, j] = v
        if change < 1e-15:
            break
    return q


@nb.njit(cache=True, nogil=True)
def rodrigues_to_vector(r32):
    """(3, 3) rotation -> (3,) float32 axis-angle (``cv::Rodrigues``, computed in double)."""
    r = polar_rotation(r32)
    rx = r[2, 1] - r[1, 2]
    ry = r[0, 2] - r[2, 0]
    rz = r[1, 0] - r[0, 1]
    s = np.sqrt((rx * rx + ry * ry + rz * rz) * 0.25)
    c = (r[0, 0] + r[1, 1] + r[2, 2] - 1.0) * 0.5
    c = min(max(c, -1.0), 1.0)
    theta = np.arccos(c)
    if s < 1e-5:
        if c > 0:
            rx = 0.0
            ry = 0.0
            rz = 0.0
        else:
            rx = np.sqrt(max((r[0, 0] + 1.0) * 0.5, 0.0))
            ry = np.sqrt(max((r[1, 1] + 1.0) * 0.5, 0.0)) * (-1.0 if r[0, 1] < 0 else 1.0)
            rz = np.sqrt(max((r[2, 2] + 1.0) * 0.5, 0.0)) * (-1.0 if r[0, 2] < 0 else 1.0)
            if abs(rx) < abs(ry) and abs(rx) < abs(rz) and (r[1, 2] > 0) != (ry * rz > 0):
                rz = -rz
            theta /= np.sqrt(rx * rx + ry * ry + rz * rz)
            rx *= theta
            ry *= theta
            rz *= theta
    else:
        vth = 1.0 / (2.0 * s) * theta
        rx *= vth
        ry *= vth
        rz *= vth
    out = np.empty(3, np.float32)
    out[0] = rx
    out[1] = ry
    out[2] = rz
    return out


@nb.njit(cache=True, nogil=True)
def rodrigues_to_matrix(v32):
    """(3,) axis-angle -> (3, 3) float32 rotation (``cv::Rodrigues``, computed in double)."""
    rx = np.float64(v32[0])
    ry = np.float64(v32[1])
    rz = np.float64(v32[2])
    theta = np.sqrt(rx * rx + ry * ry + rz * rz)
    out = np.zeros((3, 3), np.float32)
    if theta < 2.220446049250313e-16:
        for i in range(3):
            out[i, i] = 1.0
        return out
    c = np.cos(theta)
    s = np.sin(theta)
    c1 = 1.0 - c
    it = 1.0 / theta
    rx *= it
    ry *= it
    rz *= it
    out[0, 0] = c + c1 * rx * rx
    out[0, 1] = c1 * rx * ry - s * rz
    out[0, 2] = c1 * rx * rz + s * ry
    out[1, 0] = c1 * rx * ry + s * rz
    out[1, 1] = c + c1 * ry * ry
    out[1, 2] = c1 * ry * rz - s * rx
    out[2, 0] = c1 * rx * rz - s * ry
    out[2, 1] = c1 * ry * rz + s * rx
    out[2, 2] = c + c1 * rz * rz
    return out


@nb.njit(cache=True, nogil=True)
def shape_3d(mean, pc, p):
    """``mean + pc @ p`` as (n, 3) float32, rounded as ``PDM::CalcShape3D``'s ``sgemm`` rounds it: one row of
    ``p`` times ``pc`` in OpenBLAS's order (:func:`gpuau.cpu.sgemm_order.one_row`), then ``+ mean``.  Equal to
    OpenFace's on every shape of ``tests/data/pdm_shapes_openface.npz`` (main, inner-face and eye PDMs)."""
    n = mean.shape[0] // 3
    flat = np.empty(3 * n, np.float32)
    one_row(p, pc, flat, np.empty(LANES, np.float32))
    out = np.empty((n, 3), np.float32)
    for d in range(3):
        for i in range(n):
            out[i, d] = flat[d * n + i] + mean[d * n + i]
    return out


@nb.njit(cache=True, nogil=True)
def project(s3, g):
    """Weak-perspective projection of an (n, 3) shape by global params -> (n, 2) float32."""
    r = euler_to_rotation(g[1:4])
    n = s3.shape[0]
    out = np.empty((n, 2), np.float32)
    for i in range(n):
        x = s3[i, 0]
        y = s3[i, 1]
        z = s3[i, 2]
        # s * (r0 . X) + t, fused as PDM::CalcShape2D is in OpenFace's build
        out[i, 0] = fmaf(g[0], fmaf(r[0, 2], z, fmaf(r[0, 0], x, r[0, 1] * y)), g[4])
        out[i, 1] = fmaf(g[0], fmaf(r[1, 2], z, fmaf(r[1, 0], x, r[1, 1] * y)), g[5])
    return out


@nb.njit(cache=True, nogil=True)
def shape_2d(mean, pc, g, p):
    """``PDM::CalcShape2D`` -> (n, 2) float32."""
    return project(shape_3d(mean, pc, p), g)


@nb.njit(cache=True, nogil=True)
def shape_2d_batch(mean, pc, g, p):
    """:func:`shape_2d` of a batch: ``g`` (F, 6), ``p`` (F, m) -> (F, n, 2) float32."""
    n_faces = p.shape[0]
    out = np.empty((n_faces, mean.shape[0] // 3, 2), np.float32)
    for f in range(n_faces):
        out[f] = shape_2d(mean, pc, g[f], p[f])
    return out


@nb.njit(cache=True, nogil=True)
def jacobian(mean, pc, g, p, rigid):
    """``PDM::ComputeJacobian`` (``rigid``: ``ComputeRigidJacobian``) -> (2n, 6 [+ m]) float32."""
    return jacobian_at(shape_3d(mean, pc, p), pc, g, rigid)


@nb.njit(cache=True, nogil=True)
def jacobian_at(s3, pc, g, rigid):
    """:func:`jacobian` at the 3D shape ``s3`` (n, 3) of the local params."""
    r = euler_to_rotation(g[1:4])
    n = s3.shape[0]
    m = pc.shape[1]
    k = 6 if rigid else 6 + m
    jac = np.zeros((2 * n, k), np.float32)
    s = g[0]
    for i in range(n):
        x = s3[i, 0]
        y = s3[i, 1]
        z = s3[i, 2]
        jac[i, 0] = x * r[0, 0] + y * r[0, 1] + z * r[0, 2]
        jac[n + i, 0] = x * r[1, 0] + y * r[1, 1] + z * r[1, 2]
        jac[i, 1] = s * (y * r[0, 2] - z * r[0, 1])
        jac[n + i, 1] = s * (y * r[1, 2] - z * r[1, 1])
        jac[i, 2] = -s * (x * r[0, 2] - z * r[0, 0])
        jac[n + i, 2] = -s * (x * r[1, 2] - z * r[1, 0])
        jac[i, 3] = s * (x * r[0, 1] - y * r[0, 0])
        jac[n + i, 3] = s * (x * r[1, 1] - y * r[1, 0])
        jac[i, 4] = 1.0
        jac[n + i, 5] = 1.0
        if not rigid:
            for j in range(m):
                vx = pc[i, j]
                vy = pc[n + i, j]
                vz = pc[2 * n + i, j]
                jac[i, 6 + j] = s * (r[0, 0] * vx + r[0, 1] * vy + r[0, 2] * vz)
                jac[n + i, 6 + j] = s * (r[1, 0] * vx + r[1, 1] * vy + r[1, 2] * vz)
    return jac


@nb.njit(cache=True, nogil=True)
def orthonormalise(r):
    """``PDM::Orthonormalise``: nearest rotation ``U diag(1, 1, det(U V^T)) V^T`` -> float32.

    The matrices it is given (identity plus a small skew-symmetric update) have a positive
    determinant, so this is the polar factor ``U V^T``.
    """
    return polar_rotation(r).astype(np.float32)


@nb.njit(cache=True, nogil=True)
def update_parameters(delta, g, p):
    """``PDM::UpdateModelParameters``: new (g, p); rotation composed on the right."""
    g2 = g.copy()
    g2[0] += delta[0]
    g2[4] += delta[4]
    g2[5] += delta[5]
    r1 = euler_to_rotation(g[1:4])
    r2 = np.eye(3, dtype=np.float32)
    r2[2, 1] = delta[1]
    r2[1, 2] = -delta[1]
    r2[0, 2] = delta[2]
    r2[2, 0] = -delta[2]
    r2[1, 0] = delta[3]
    r2[0, 1] = -delta[3]
    r2 = orthonormalise(r2)
    r3 = np.zeros((3, 3), np.float32)
    for i in range(3):
        for j in range(3):
            r3[i, j] = r1[i, 0] * r2[0, j] + r1[i, 1] * r2[1, j] + r1[i, 2] * r2[2, j]
    euler = rotation_to_euler(rodrigues_to_matrix(rodrigues_to_vector(r3)))
    if np.isnan(euler[0]) or np.isnan(euler[1]) or np.isnan(euler[2]):
        euler[:] = 0.0
    g2[1] = euler[0]
    g2[2] = euler[1]
    g2[3] = euler[2]
    p2 = p.copy()
    if delta.shape[0] > 6:
        for k in range(p.shape[0]):
            p2[k] = p[k] + delta[6 + k]
    return g2, p2


@nb.njit(cache=True, nogil=True)
def clamp(eig, p):
    """``PDM::Clamp``: local params limited to +-3 standard deviations."""
    out = p.copy()
    for k in range(p.shape[0]):
        v = np.float32(3.0) * np.float32(np.sqrt(eig[k]))
        if abs(out[k]) > v:
            out[k] = v if out[k] > 0 else -v
    return out


@nb.njit(cache=True, nogil=True)
def solve_cholesky(a, b):
    """``cv::solve(a, b, DECOMP_CHOLESKY)`` for a symmetric positive definite float32 system."""
    n = a.shape[0]
    lo = np.zeros((n, n), np.float64)
    for i in range(n):
        for j in range(i + 1):
            s = np.float64(a[i, j])
            for k in range(j):
                s -= lo[i, k] * lo[j, k]
            if i == j:
                lo[i, i] = np.sqrt(max(s, 1e-30))
            else:
                lo[i, j] = s / lo[j, j]
    y = np.empty(n, np.float64)
    for i in range(n):
        s = np.float64(b[i])
        for k in range(i):
            s -= lo[i, k] * y[k]
        y[i] = s / lo[i, i]
    x = np.empty(n, np.float32)
    xd = np.empty(n, np.float64)
    for i in range(n - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, n):
            s -= lo[k, i] * xd[k]
        xd[i] = s / lo[i, i]
        x[i] = xd[i]
    return x


@nb.njit(cache=True, nogil=True, inline="always")
def _add_products(h, rows, weighted, count):
    """``h`` (k*k, flat) plus the products ``weighted[i, a] * rows[i, b]`` of the first ``count`` rows, added to
    each entry in row order (with 4 rows, four a pass: a quarter of the loads and stores of ``h``)."""
    k = rows.shape[1]
    if count == 4:
        r0, r1, r2, r3 = rows[0], rows[1], rows[2], rows[3]
        for a in range(k):
            j0, j1, j2, j3 = weighted[0, a], weighted[1, a], weighted[2, a], weighted[3, a]
            o = a * k
            for b in range(k):
                h[o + b] = (((h[o + b] + j0 * r0[b]) + j1 * r1[b]) + j2 * r2[b]) + j3 * r3[b]
    else:
        for i in range(count):
            r = rows[i]
            for a in range(k):
                ja = weighted[i, a]
                o = a * k
                for b in range(k):
                    h[o + b] += ja * r[b]


@nb.njit(cache=True, nogil=True)
def normal_equations(jac, weights, resid):
    """``J^T W J`` and ``J^T W r`` in float32 (W diagonal), each entry summed over the rows in order (rows of zero
    weight add nothing and are skipped), the rows of ``J`` taken four at a time (:func:`_add_products`) and
    ``J^T W J`` kept flat so the inner loop vectorises."""
    rows, k = jac.shape
    h = np.zeros(k * k, np.float32)
    rhs = np.zeros(k, np.float32)
    taken = np.empty((4, k), np.float32)
    weighted = np.empty((4, k), np.float32)
    count = 0
    for r in range(rows):
        w = weights[r]
        if w == 0:
            continue
        for b in range(k):
            taken[count, b] = jac[r, b]
            weighted[count, b] = jac[r, b] * w
        for a in range(k):
            rhs[a] += weighted[count, a] * resid[r]
        count += 1
        if count == 4:
            _add_products(h, taken, weighted, 4)
            count = 0
    _add_products(h, taken, weighted, count)
    return h.reshape(k, k), rhs


@nb.njit(cache=True, nogil=True)
def _shape_vector(s2):
    n = s2.shape[0]
    v = np.empty(2 * n, np.float32)
    for i in range(n):
        v[i] = s2[i, 0]
        v[n + i] = s2[i, 1]
    return v


@nb.njit(cache=True, nogil=True)
def calc_params_batch(mean, pc, eig, targets, rotations):
    """``PDM::CalcParams`` (landmarks -> params) for a batch of faces; landmarks whose x is exactly 0
    are missing, as in OpenFace.  Twin of ``calc_params_batch`` in ``gpuau/kernels/pdm_fit.cu``.

    Parameters
    ----------
    mean : (3n,) ; pc : (3n, m) ; eig : (m,) float32
        The PDM.
    targets : (F, n, 2) float32
    rotations : (F, 3) float32
        Initial Euler angles.

    Returns
    -------
    g : (F, 6) float32 ; p : (F, m) float32
        Zeros for a face without landmarks.
    """
    n_faces, n = targets.shape[0], targets.shape[1]
    m = pc.shape[1]
    g = np.zeros((n_faces, 6), np.float32)
    p = np.zeros((n_faces, m), np.float32)
    for f in range(n_faces):
        idx = np.flatnonzero(targets[f, :, 0] != 0)
        k = idx.shape[0]
        if k == 0:
            continue
        rows = np.empty(3 * k, np.int64)
        for d in range(3):
            rows[d * k:(d + 1) * k] = d * n + idx
        g[f], p[f] = calc_params(mean[rows], pc[rows], eig, targets[f][idx], rotations[f])
    return g, p


@nb.njit(cache=True, nogil=True)
def calc_params(mean, pc, eig, target, rotation):
    """Iterations of ``PDM::CalcParams`` (landmarks -> params) on the visible points.

    Parameters
    ----------
    mean : (3k,) ; pc : (3k, m)
        PDM rows of the visible points only.
    eig : (m,)
    target : (k, 2) float32
    rotation : (3,) float32

    Returns
    -------
    g : (6,) float32 ; p : (m,) float32
    """
    k = target.shape[0]
    m = pc.shape[1]
    min_x = target[0, 0]
    max_x = target[0, 0]
    min_y = target[0, 1]
    max_y = target[0, 1]
    for i in range(k):
        min_x = min(min_x, target[i, 0])
        max_x = max(max_x, target[i, 0])
        min_y = min(min_y, target[i, 1])
        max_y = max(max_y, target[i, 1])
    width = abs(min_x - max_x)
    height = abs(min_y - max_y)
    p = np.zeros(m, np.float32)
    unit = np.zeros(6, np.float32)
    unit[0] = 1.0
    mb = shape_2d(mean, pc, unit, p)
    mw = mb[:, 0].max() - mb[:, 0].min()
    mh = mb[:, 1].max() - mb[:, 1].min()
    g = np.zeros(6, np.float32)
    g[0] = ((width / mw) + (height / mh)) / np.float32(2.0)
    g[1] = rotation[0]
    g[2] = rotation[1]
    g[3] = rotation[2]
    g[4] = (min_x + max_x) / np.float32(2.0)
    g[5] = (min_y + max_y) / np.float32(2.0)
    tvec = _shape_vector(target)
    reg = np.zeros(6 + m, np.float32)
    for j in range(m):
        reg[6 + j] = np.float32(1.0) / eig[j]
    ones = np.ones(2 * k, np.float32)

    s3 = shape_3d(mean, pc, p)
    cur = _shape_vector(project(s3, g))
    err = 0.0
    for i in range(2 * k):
        err += (cur[i] - tvec[i]) ** 2
    cur_error = np.float32(np.sqrt(err))
    not_improved = 0
    for _ in range(1000):
        s3 = shape_3d(mean, pc, p)
        resid = tvec - _shape_vector(project(s3, g))
        jac = jacobian_at(s3, pc, g, False)
        h, rhs = normal_equations(jac, ones, resid)
        for j in range(m):
            rhs[6 + j] -= reg[6 + j] * p[j]
            h[6 + j, 6 + j] += reg[6 + j]
        upd = solve_cholesky(h, rhs)
        for j in range(upd.shape[0]):
            upd[j] = np.float32(0.75) * upd[j]
        g, p = update_parameters(upd, g, p)
        # OpenFace measures the error with the new global params but the previous local ones.
        cur = _shape_vector(project(s3, g))
        err = 0.0
        for i in range(2 * k):
            err += (cur[i] - tvec[i]) ** 2
        error = np.float32(np.sqrt(err))
        if np.float32(0.999) * cur_error < error:
            not_improved += 1
            if not_improved == 3:
                break
        cur_error = error
    return g, p
