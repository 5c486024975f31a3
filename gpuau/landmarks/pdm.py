"""Point distribution model (PDM): 3D shape = mean + principal components @ local params, placed
in the image by a weak-perspective similarity (scale, rotation, 2D translation).

Port of PDM.cpp (OpenFace 2.0); the arithmetic is in :mod:`gpuau.cpu.pdm_fit` (Numba, float32 as
in OpenFace).  Conventions:

* ``params_global`` (6,) = ``[scale, rx, ry, rz, tx, ty]`` (Euler angles as in
  :mod:`gpuau.landmarks.rotation`);
* ``params_local`` (m,) = non-rigid shape parameters;
* 2D shapes are ``(n, 2)`` arrays; Jacobian rows are all x rows then all y rows (OpenFace's
  ``(2n, 1)`` shape vector layout).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from gpuau._kept import kept_with
from gpuau.cpu import pdm_fit as kern
from gpuau.device import resolve_device
from gpuau.kernels.loader import device_context
from gpuau.landmarks.rotation import euler_to_rotation_matrix
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
        return kern.shape_3d(self.mean_shape, self.princ_comp, _vec(params_local))

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
        return kern.shape_2d(self.mean_shape, self.princ_comp, _vec(params_global), _vec(params_local))

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
        jac = kern.jacobian(self.mean_shape, self.princ_comp, _vec(params_global), _vec(params_local), False)
        return jac, _weighted_transpose(jac, weights)

    def calc_rigid_jacobian(self, params_global, params_local, weights=None) -> "tuple[np.ndarray, np.ndarray]":
        """Jacobian of the 2D shape w.r.t. the global params only (port of
        ``PDM::ComputeRigidJacobian``).

        Returns
        -------
        jacobian : ndarray (2n, 6) float32
        jacobian_t_w : ndarray (6, 2n) float32
        """
        jac = kern.jacobian(self.mean_shape, self.princ_comp, _vec(params_global), _vec(params_local), True)
        return jac, _weighted_transpose(jac, weights)

    def clamp(self, params_global, params_local) -> "tuple[np.ndarray, np.ndarray]":
        """Clamp local params to +-3 standard deviations (port of ``PDM::Clamp``).

        Returns
        -------
        params_global : ndarray (6,) float32
            Unchanged.
        params_local : ndarray (m,) float32
        """
        return _vec(params_global), kern.clamp(self.eigen_values, _vec(params_local))

    def calc_params(self, landmarks_2d, rotation=(0.0, 0.0, 0.0)) -> "tuple[np.ndarray, np.ndarray]":
        """Fit global and local params to 2D landmarks by Gauss-Newton (port of
        ``PDM::CalcParams`` with landmark locations): :meth:`calc_params_batch` of one face.

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
        g, p = self.calc_params_batch(np.asarray(landmarks_2d, _F)[None], np.asarray(rotation, _F)[None])
        return g[0], p[0]

    def calc_params_batch(self, landmarks_2d, rotations=None, *, backend="cpu") -> tuple:
        """:meth:`calc_params` of many faces at once, through ``backend.kernels.calc_params_batch``
        (on a GPU one block per face; each face's params are the ones it gets alone).

        Parameters
        ----------
        landmarks_2d : array_like (F, n, 2)
            On the host or on the backend's device.
        rotations : array_like (F, 3), optional
            Initial Euler angles (default zeros).
        backend : str or Backend

        Returns
        -------
        params_global : (F, 6) float32 ; params_local : (F, m) float32
            On the backend's device.
        """
        backend = resolve_device(backend)
        xp = backend.xp
        with device_context(backend):  # cuda:N: the arrays on GPU N
            lm = xp.ascontiguousarray(xp.asarray(landmarks_2d), dtype=_F).reshape(-1, self.n_points, 2)
            rot = (xp.zeros((len(lm), 3), _F) if rotations is None
                   else xp.ascontiguousarray(xp.asarray(rotations), dtype=_F).reshape(-1, 3))
            return backend.kernels.calc_params_batch(*self.arrays(backend), lm, rot)

    def shape_2d_batch(self, params_global, params_local, *, backend="cpu"):
        """:meth:`calc_shape_2d` of many faces at once, through ``backend.kernels.shape_2d_batch``: ``params_global``
        (F, 6) and ``params_local`` (F, m) float32 on the backend's device -> (F, n, 2) float32 there."""
        backend = resolve_device(backend)
        return backend.kernels.shape_2d_batch(*self.arrays(backend)[:2], params_global, params_local)

    def arrays(self, backend) -> "tuple":
        """``(mean_shape, princ_comp, eigen_values)`` on ``backend``'s device (copied there once)."""
        return kept_with(self, (PDM.arrays, backend),
                         lambda: tuple(backend.asarray(a) for a in (self.mean_shape, self.princ_comp,
                                                                    self.eigen_values)))


def _vec(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=_F).reshape(-1)


def _weighted_transpose(jac: np.ndarray, weights) -> np.ndarray:
    if weights is None:
        return np.ascontiguousarray(jac.T)
    return np.ascontiguousarray((jac * np.asarray(weights, dtype=_F)[:, None]).T)
