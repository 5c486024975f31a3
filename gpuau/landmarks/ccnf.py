"""CCNF patch experts: the per-scale model object (views, neuron rows, CCNF covariances) that the fit's
response maps read (the maps themselves: ``clnf.patch_responses``).

Port of the model side of ``Patch_experts``, Patch_experts.cpp, and
``CCNF_patch_expert::ComputeSigmas``, CCNF_patch_expert.cpp (with ``cv::invert(DECOMP_CHOLESKY)``,
OpenCV's ``CholImpl``, matrix_decomp.cpp).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from gpuau.cpu.cholesky import cholesky_inverse
from gpuau.models.cache import load_cached
from gpuau.models.ccnf_file import parse_ccnf

_F = np.float32

SIGMAS_VERSION = 2
"""Version of :meth:`CCNFScale.sigmas`' arithmetic and layout in its disk cache key: raise it when that changes
(2: every view's covariances of a window size in one array)."""


@dataclass(eq=False)
class CCNFScale:
    """The CCNF patch experts of one patch scale.

    Attributes
    ----------
    patch_scaling : float
        Scale of the reference shape the experts were trained at.
    centers : ndarray (V, 3) float64
        Head-pose centre (Euler angles, radians) of each view.
    visibility : ndarray (V, n) int32
    arrays : dict
        The parsed file (see :func:`gpuau.models.ccnf_file.parse_ccnf`).
    path : Path or None
        The file, whose identity keys the on-disk cache of the covariances (None: not cached).
    """

    patch_scaling: float
    centers: np.ndarray
    visibility: np.ndarray
    arrays: dict = field(repr=False)
    path: "Path | None" = None
    _sigmas: dict = field(default_factory=dict, repr=False)
    _experts: dict = field(default_factory=dict, repr=False)
    _neuron_rows: dict = field(default_factory=dict, repr=False)
    _view_arrays: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_file(cls, path: "str | os.PathLike") -> "CCNFScale":
        a = load_cached(path, parse_ccnf)
        return cls(float(a["patch_scaling"]), a["centers"], a["visibility"], a, Path(path))

    @cached_property
    def patch_size(self) -> "tuple[int, int]":
        """(height, width) of the patch experts (all experts of these models share one size)."""
        h = self.arrays["view0/height"]
        w = self.arrays["view0/width"]
        return int(h.max()), int(w.max())

    def view_arrays(self, backend) -> "tuple":
        """``(centers, visibility)`` on the backend's device (copied there once): the views' head-pose
        centres (V, 3) float64 and their landmarks' visibility (V, n) int32, for ``response_areas`` and the
        per-face gathers of ``clnf.patch_responses``."""
        if backend not in self._view_arrays:
            self._view_arrays[backend] = (backend.asarray(np.asarray(self.centers, np.float64)),
                                          backend.asarray(np.asarray(self.visibility, np.int32)))
        return self._view_arrays[backend]

    def weights(self, view: int) -> np.ndarray:
        """(n, K, 1 + h*w) float32 neuron rows of one view."""
        return self.arrays[f"view{view}/weights"]

    def alphas(self, view: int) -> np.ndarray:
        """(n, K) float64 neuron alphas of one view."""
        return self.arrays[f"view{view}/alphas"]

    def confidence(self, view: int) -> np.ndarray:
        """(n,) float64 patch confidences of one view."""
        return self.arrays[f"view{view}/confidence"]

    def sigmas(self, view: int, window_size: int) -> np.ndarray:
        """CCNF covariances of all experts of a view for a response window size: ``view_sigmas(w)[view]``.

        Returns
        -------
        ndarray (n, w*w, w*w) float32
            Zero matrices for empty (invisible) experts.
        """
        return self.view_sigmas(window_size)[view]

    def view_sigmas(self, window_size: int) -> np.ndarray:
        """CCNF covariances of every view's experts for a response window size, ``(V, n, w*w, w*w)`` float32
        (computed once, and kept in the parsed-model cache on disk beside the file's other arrays, mapped
        in place: a start reads them instead of inverting ~7 x 68 matrices, and touches only the views it uses).

        Port of ``CCNF_patch_expert::ComputeSigmas``: ``Sigma = inv(2 (sum(alpha) I + sum_b
        beta_b S_b))`` by Cholesky (:func:`gpuau.cpu.cholesky.cholesky_inverse`), in float32; ``S_b`` are the file's
        sigma components for this window size (none for the eye models).
        """
        if window_size not in self._sigmas:
            compute = lambda _: {"sigmas": np.stack([self._compute_sigmas(v, window_size)  # noqa: E731
                                                     for v in range(len(self.visibility))])}
            if self.path is None:
                self._sigmas[window_size] = compute(None)["sigmas"]
            else:
                name = f"{__name__}.sigmas/{SIGMAS_VERSION}/w{window_size}"
                self._sigmas[window_size] = load_cached(self.path, compute, name=name)["sigmas"]
        return self._sigmas[window_size]

    def _compute_sigmas(self, view: int, window_size: int) -> np.ndarray:
        comps = self.arrays.get(f"sigma_components_{window_size}")
        m = window_size * window_size
        if comps is None:
            comps = np.zeros((0, m, m), _F)
        alphas = self.alphas(view)
        betas = self.arrays[f"view{view}/betas"]
        n_neurons = self.arrays[f"view{view}/n_neurons"]
        out = np.zeros((alphas.shape[0], m, m), _F)
        eye = np.eye(m, dtype=_F)
        for i in range(alphas.shape[0]):
            if n_neurons[i] == 0:
                continue
            sum_alphas = _F(0)
            for a in alphas[i, : n_neurons[i]]:
                sum_alphas = _F(np.float64(sum_alphas) + a)
            q2 = np.zeros((m, m), _F)
            for b in range(comps.shape[0]):
                q2 = q2 + _F(betas[i, b]) * comps[b]
            sigma_inv = _F(2) * (sum_alphas * eye + q2)
            out[i] = cholesky_inverse(sigma_inv)
        return out

    def expert_table(self, window_size: int, backend) -> "tuple":
        """Every view's experts in one table for a response window size, ready for
        ``backend.kernels.ccnf_response``: landmark ``l`` of view ``v`` is expert ``v * n + l``.  On the CPU
        the covariances are :meth:`view_sigmas`' mapped array itself (no copy), and the neuron rows a copy
        only for models with several views (~1.6 MB).

        Returns
        -------
        weights : (V n, K, 1 + h*w) float32 ; alphas : (V n, K) float64 ; sigmas : (V n, w*w, w*w) float32
            On the backend's device.
        """
        key = (window_size, backend)
        if key not in self._experts:
            if backend not in self._neuron_rows:  # the neuron rows and alphas, shared by every window size
                views = range(len(self.visibility))
                rows = [np.concatenate([get(v) for v in views]) if len(views) > 1 else get(0)
                        for get in (self.weights, self.alphas)]
                self._neuron_rows[backend] = tuple(backend.asarray(a) for a in rows)
            sigmas = self.view_sigmas(window_size)
            self._experts[key] = self._neuron_rows[backend] + (backend.asarray(sigmas.reshape(-1, *sigmas.shape[2:])),)
        return self._experts[key]
