"""Point distribution model (PDM): 3D shape = mean + principal components @ local params, placed
in the image by a weak-perspective similarity (scale, rotation, 2D translation).

Port of PDM.cpp (OpenFace 2.0).  Everything is float32 as in OpenFace.  Conventions:

* ``params_global`` (6,) = ``[scale, rx, ry, rz, tx, ty]`` (Euler angles as in
  :mod:`gpuau.landmarks.rotation`);
* ``params_local`` (m,) = non-rigid shape parameters;
* 2D shapes are ``(n, 2)`` arrays; Jacobian rows are all x rows then all y rows (OpenFace's
  ``(2n, 1)`` shape vector layout).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from gpuau.landmarks.rotation import (
    axis_angle_to_euler,
    euler_to_rotation_matrix,
    rotation_matrix_to_axis_angle,
)
from gpuau.models.cache import load_cached
from gpuau.models.pdm_file import parse_pdm
from gpuau.models.store import model_file

_F = np.float32

MAIN_PDM = "lib/local/LandmarkDetector/model/pdms/In-the-wild_aligned_PDM_68.txt"
AU_PDM = "lib/local/FaceAnalyser/AU_predictors/In-the-wild_aligned_PDM_68.txt"


@dataclass(frozen=True, eq=False)
class PDM:
    """A point distribution model.

    Attributes
    ----------
    mean_shape : ndarray (3n,) float32
        All x, then all y, then all z.
    princ_comp : ndarray (3n, m) float32
    eigen_values : ndarray (m,) float32
    """

    mean_shape: np.ndarray
    princ_comp: np.ndarray
    eigen_values: np.ndarray

    @classmethod
    def from_file(cls, path: "str | os.PathLike") -> "PDM":
        """Load (through the parsed-model cache) a PDM text file."""
        a = load_cached(path, parse_pdm)
        return cls(a["mean_shape"], a["princ_comp"], a["eigen_values"])

    @classmethod
    def load(cls, rel: str = MAIN_PDM, models: "str | os.PathLike | None" = None) -> "PDM":
        """Load a PDM by its OpenFace repository path (default: the main 68-point model)."""
        return cls.from_file(model_file(rel, models))

    @property
    def n_points(self) -> int:
        return self.mean_shape.shape[0] // 3

    @property
    def n_modes(self) -> int:
        return self.eigen_values.shape[0]

    def calc_shape_3d(self, params_local) -> np.ndarray:
        """3D shape of local params (port of ``PDM::CalcShape3D``).

        Parameters
        ----------
        params_local : array_like (m,)

        Returns
        -------
        ndarray (n, 3) float32
        """
        p = np.asarray(params_local, dtype=_F).reshape(-1)
        s = self.mean_shape + self.princ_comp @ p
        return s.reshape(3, -1).T

    def calc_shape_2d(self, params_global, params_local) -> np.ndarray:
        """Image landmarks of a parameter set (port of ``PDM::CalcShape2D``).

        Parameters
        ----------
        params_global : array_like (6,)
        params_local : array_like (m,)

        Returns
        -------
        ndarray (n, 2) float32
        """
        g = np.asarray(params_global, dtype=_F)
        return project_shape(self.calc_shape_3d(params_local), g)

    def calc_bounding_box(self, params_global, params_local) -> np.ndarray:
        """Bounding box ``(x, y, w, h)`` of the 2D shape (port of ``PDM::CalcBoundingBox``).

        Returns
        -------
        ndarray (4,) float32
        """
        s = self.calc_shape_2d(params_global, params_local)
        lo, hi = s.min(axis=0), s.max(axis=0)
        return np.array([lo[0], lo[1], abs(lo[0] - hi[0]), abs(lo[1] - hi[1])], dtype=_F)

    def calc_params_from_box(self, bbox, params_local=None, rotation=(0.0, 0.0, 0.0)) -> np.ndarray:
        """Global params placing the (rotated) shape in a box (port of ``PDM::CalcParams`` with a
        bounding box).

        Parameters
        ----------
        bbox : array_like (4,)
            ``(x, y, w, h)``.
        params_local : array_like (m,), optional
            Defaults to zeros (the mean shape).
        rotation : array_like (3,)

        Returns
        -------
        ndarray (6,) float32
        """
        if params_local is None:
            params_local = np.zeros(self.n_modes, _F)
        shape = self.calc_shape_3d(params_local)
        rot = euler_to_rotation_matrix(rotation)
        rotated = rot @ shape.T  # (3, n)
        # minMaxLoc reports doubles; the arithmetic below mixes them with floats as the C++ does.
        min_x, max_x = float(rotated[0].min()), float(rotated[0].max())
        min_y, max_y = float(rotated[1].min()), float(rotated[1].max())
        bx, by, bw, bh = (_F(v) for v in bbox)
        width = _F(abs(min_x - max_x))
        height = _F(abs(min_y - max_y))
        scaling = ((bw / width) + (bh / height)) / _F(2)
        tx = bx + bw / _F(2)
        ty = by + bh / _F(2)
        tx = _F(tx - float(scaling) * (min_x + max_x) / 2.0)
        ty = _F(ty - float(scaling) * (min_y + max_y) / 2.0)
        r = np.asarray(rotation, dtype=_F)
        return np.array([scaling, r[0], r[1], r[2], tx, ty], dtype=_F)

    def calc_jacobian(self, params_global, params_local, weights=None) -> "tuple[np.ndarray, np.ndarray]":
        """Jacobian of the 2D shape w.r.t. global and local params (port of
        ``PDM::ComputeJacobian``).

        Parameters
        ----------
        params_global : array_like (6,)
        params_local : array_like (m,)
        weights : ndarray (2n,), optional
            Diagonal of OpenFace's weight matrix ``W``.

        Returns
        -------
        jacobian : ndarray (2n, 6 + m) float32
        jacobian_t_w : ndarray (6 + m, 2n) float32
            ``(W @ J).T``.
        """
        g = np.asarray(params_global, dtype=_F)
        rigid = _rigid_jacobian(self.calc_shape_3d(params_local), g)
        rot = euler_to_rotation_matrix(g[1:4])
        n, m = self.n_points, self.n_modes
        v = self.princ_comp.reshape(3, n, m)
        s = g[0]
        jl_x = s * (rot[0, 0] * v[0] + rot[0, 1] * v[1] + rot[0, 2] * v[2])
        jl_y = s * (rot[1, 0] * v[0] + rot[1, 1] * v[1] + rot[1, 2] * v[2])
        jac = np.concatenate([rigid, np.concatenate([jl_x, jl_y], axis=0)], axis=1)
        return jac, _weighted_transpose(jac, weights)

    def calc_rigid_jacobian(self, params_global, params_local, weights=None) -> "tuple[np.ndarray, np.ndarray]":
        """Jacobian of the 2D shape w.r.t. the global params only (port of
        ``PDM::ComputeRigidJacobian``).

        Returns
        -------
        jacobian : ndarray (2n, 6) float32
        jacobian_t_w : ndarray (6, 2n) float32
        """
        g = np.asarray(params_global, dtype=_F)
        jac = _rigid_jacobian(self.calc_shape_3d(params_local), g)
        return jac, _weighted_transpose(jac, weights)

    def update_model_parameters(self, delta_p, params_global, params_local) -> "tuple[np.ndarray, np.ndarray]":
        """Apply a parameter update (port of ``PDM::UpdateModelParameters``).

        Scale and translation are added; the rotation update is composed as a small-angle
        rotation (orthonormalised) on the right of the current rotation.

        Parameters
        ----------
        delta_p : array_like (6,) or (6 + m,)
        params_global : array_like (6,)
        params_local : array_like (m,)

        Returns
        -------
        params_global : ndarray (6,) float32
        params_local : ndarray (m,) float32
        """
        return update_model_parameters(delta_p, params_global, params_local)

    def clamp(self, params_global, params_local) -> "tuple[np.ndarray, np.ndarray]":
        """Clamp local params to +-3 standard deviations (port of ``PDM::Clamp``).

        Returns
        -------
        params_global : ndarray (6,) float32
            Unchanged.
        params_local : ndarray (m,) float32
        """
        p = np.asarray(params_local, dtype=_F)
        v = _F(3) * np.sqrt(self.eigen_values)
        return np.asarray(params_global, dtype=_F), np.clip(p, -v, v).astype(_F)

    def calc_params(self, landmarks_2d, rotation=(0.0, 0.0, 0.0)) -> "tuple[np.ndarray, np.ndarray]":
        """Fit global and local params to 2D landmarks by Gauss-Newton (port of
        ``PDM::CalcParams`` with landmark locations).

        Landmarks whose x is exactly 0 are treated as missing, as in OpenFace.

        Parameters
        ----------
        landmarks_2d : array_like (n, 2)
        rotation : array_like (3,)
            Initial Euler angles.

        Returns
        -------
        params_global : ndarray (6,) float32
        params_local : ndarray (m,) float32
        """
        lm = np.asarray(landmarks_2d, dtype=_F)
        n_all, m = self.n_points, self.n_modes
        visible = lm[:, 0] != 0
        mean3 = self.mean_shape.reshape(3, n_all)[:, visible]
        pc3 = self.princ_comp.reshape(3, n_all, m)[:, visible]
        sub = PDM(mean3.reshape(-1), pc3.reshape(-1, m), self.eigen_values)
        n = int(visible.sum())
        target = np.concatenate([lm[visible, 0], lm[visible, 1]])  # (2n,)

        lo, hi = lm[visible].min(axis=0), lm[visible].max(axis=0)
        width, height = abs(lo[0] - hi[0]), abs(lo[1] - hi[1])
        model_box = sub.calc_bounding_box(np.array([1, 0, 0, 0, 0, 0], _F), np.zeros(m, _F))
        scaling = ((width / model_box[2]) + (height / model_box[3])) / _F(2)
        rot = np.asarray(rotation, dtype=_F)
        glob = np.array([scaling, rot[0], rot[1], rot[2], (lo[0] + hi[0]) / _F(2), (lo[1] + hi[1]) / _F(2)], _F)
        loc = np.zeros(m, _F)

        def shape_vec(g, l_):
            s2 = sub.calc_shape_2d(g, l_)
            return np.concatenate([s2[:, 0], s2[:, 1]])

        cur_error = _F(np.linalg.norm(shape_vec(glob, loc) - target))
        reg = np.zeros(6 + m, _F)
        reg[6:] = _F(1) / self.eigen_values
        not_improved = 0
        for _ in range(1000):
            resid = target - shape_vec(glob, loc)
            jac, jac_t = sub.calc_jacobian(glob, loc)
            rhs = jac_t @ resid
            rhs[6:] -= reg[6:] * loc
            hessian = jac_t @ jac + np.diag(reg)
            update = _F(0.75) * _solve_cholesky(hessian, rhs)
            glob, loc = update_model_parameters(update, glob, loc)
            error = _F(np.linalg.norm(shape_vec(glob, loc) - target))
            if _F(0.999) * cur_error < error:
                not_improved += 1
                if not_improved == 3:
                    break
            cur_error = error
        return glob, loc


def project_shape(shape_3d: np.ndarray, params_global: np.ndarray) -> np.ndarray:
    """Weak-perspective projection ``s * R[:2] @ X + t`` of a 3D shape.

    Parameters
    ----------
    shape_3d : ndarray (n, 3) float32
    params_global : ndarray (6,) float32

    Returns
    -------
    ndarray (n, 2) float32
    """
    g = np.asarray(params_global, dtype=_F)
    rot = euler_to_rotation_matrix(g[1:4])
    x, y, z = shape_3d[:, 0], shape_3d[:, 1], shape_3d[:, 2]
    u = g[0] * (rot[0, 0] * x + rot[0, 1] * y + rot[0, 2] * z) + g[4]
    v = g[0] * (rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z) + g[5]
    return np.stack([u, v], axis=1).astype(_F)


def _rigid_jacobian(shape_3d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(2n, 6) Jacobian of the projection w.r.t. ``[scale, rx, ry, rz, tx, ty]``."""
    r = euler_to_rotation_matrix(g[1:4])
    s = g[0]
    x, y, z = shape_3d[:, 0], shape_3d[:, 1], shape_3d[:, 2]
    n = x.shape[0]
    one, zero = np.ones(n, _F), np.zeros(n, _F)
    jx = np.stack(
        [
            x * r[0, 0] + y * r[0, 1] + z * r[0, 2],
            s * (y * r[0, 2] - z * r[0, 1]),
            -s * (x * r[0, 2] - z * r[0, 0]),
            s * (x * r[0, 1] - y * r[0, 0]),
            one,
            zero,
        ],
        axis=1,
    )
    jy = np.stack(
        [
            x * r[1, 0] + y * r[1, 1] + z * r[1, 2],
            s * (y * r[1, 2] - z * r[1, 1]),
            -s * (x * r[1, 2] - z * r[1, 0]),
            s * (x * r[1, 1] - y * r[1, 0]),
            zero,
            one,
        ],
        axis=1,
    )
    return np.concatenate([jx, jy], axis=0).astype(_F)


def _weighted_transpose(jac: np.ndarray, weights) -> np.ndarray:
    if weights is None:
        return np.ascontiguousarray(jac.T)
    return np.ascontiguousarray((jac * np.asarray(weights, dtype=_F)[:, None]).T)


def _solve_cholesky(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``cv::solve(a, b, x, DECOMP_CHOLESKY)`` in float32."""
    ok, x = cv2.solve(a.astype(_F), b.astype(_F).reshape(-1, 1), flags=cv2.DECOMP_CHOLESKY)
    return x.reshape(-1)


def orthonormalise(r: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix through SVD (port of ``PDM::Orthonormalise``).

    Parameters
    ----------
    r : ndarray (3, 3) float32

    Returns
    -------
    ndarray (3, 3) float32
    """
    w, u, vt = cv2.SVDecomp(np.asarray(r, dtype=_F))
    d = np.eye(3, dtype=_F)
    d[2, 2] = _F(np.linalg.det((u @ vt).astype(np.float64)))
    return (u @ d @ vt).astype(_F)


def update_model_parameters(delta_p, params_global, params_local) -> "tuple[np.ndarray, np.ndarray]":
    """Apply a parameter update; see :meth:`PDM.update_model_parameters` (port of
    ``PDM::UpdateModelParameters``)."""
    d = np.asarray(delta_p, dtype=_F).reshape(-1)
    g = np.array(params_global, dtype=_F)
    g[0] += d[0]
    g[4] += d[4]
    g[5] += d[5]
    r1 = euler_to_rotation_matrix(g[1:4])
    r2 = np.eye(3, dtype=_F)
    r2[2, 1], r2[1, 2] = d[1], -d[1]
    r2[0, 2], r2[2, 0] = d[2], -d[2]
    r2[1, 0], r2[0, 1] = d[3], -d[3]
    r2 = orthonormalise(r2)
    euler = axis_angle_to_euler(rotation_matrix_to_axis_angle(r1 @ r2))
    if np.isnan(euler).any():
        euler = np.zeros(3, _F)
    g[1:4] = euler
    loc = np.array(params_local, dtype=_F)
    if d.shape[0] > 6:
        loc = loc + d[6:]
    return g, loc
