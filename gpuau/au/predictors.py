"""Linear AU predictors stacked into one weight matrix: one matmul per batch of faces.

OpenFace predicts every AU model as ``(x - means - median) @ w + b`` (``median`` = 0 for static
models; ``x`` = FHOG + geometry).  Because the models are linear this equals
``x @ w + (b - means @ w) - median @ w``, so a frame is summarised by its *projection* ``x @ W``
(one value per model) and the person's median enters as one more projection.

Port of ``Predict`` in SVR_static_lin_regressors.cpp, SVR_dynamic_lin_regressors.cpp,
SVM_static_lin.cpp and SVM_dynamic_lin.cpp.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import numpy as np

from gpuau.models.au_file import AUModels


@dataclass(frozen=True, eq=False)
class StackedAUModels:
    """All AU models of a list file as one linear map.

    Columns ``[:num_reg]`` are intensity (SVR) models, ``[num_reg:]`` presence (SVM) models, each in
    OpenFace's prediction order (static models first, then dynamic ones).

    Attributes
    ----------
    reg_names, cls_names : list of str
    weights : (D, K) float64
    offset : (K,) float64
        ``bias - means @ weights``.
    dynamic : (K,) bool
        Models that subtract the person's running median.
    cutoff : (num_reg,) float64
        Quantile of the person's predictions used as neutral offset (-1: none).
    cls_pos, cls_neg : (K - num_reg,) float64
        Output of a presence model for a positive / non-positive decision value.
    """

    reg_names: list
    cls_names: list
    weights: np.ndarray
    offset: np.ndarray
    dynamic: np.ndarray
    cutoff: np.ndarray
    cls_pos: np.ndarray
    cls_neg: np.ndarray

    @property
    def num_reg(self) -> int:
        return len(self.reg_names)

    @classmethod
    def from_models(cls, m: AUModels) -> "StackedAUModels":
        weights = np.concatenate([m.reg_weights, m.cls_weights], axis=1)
        means = np.concatenate([m.reg_means, m.cls_means], axis=0)
        bias = np.concatenate([m.reg_bias, m.cls_bias])
        offset = bias - np.einsum("kd,dk->k", means, weights)
        return cls(
            reg_names=[str(n) for n in m.reg_names],
            cls_names=[str(n) for n in m.cls_names],
            weights=np.ascontiguousarray(weights),
            offset=offset,
            dynamic=np.concatenate([m.reg_dynamic, m.cls_dynamic]),
            cutoff=m.reg_cutoff.copy(),
            cls_pos=m.cls_pos.copy(),
            cls_neg=m.cls_neg.copy(),
        )

    def to_backend(self, backend) -> "StackedAUModels":
        """The same models with their arrays on ``backend``'s device (itself on the CPU backend)."""
        if backend.xp is np:
            return self
        return replace(self, **{name: backend.asarray(getattr(self, name))  # on GPU N for cuda:N
                                for name in ("weights", "offset", "dynamic", "cls_pos", "cls_neg")})


def project(weights, hog, geometry):
    """Projections ``[hog, geometry] @ weights`` of a batch of faces.

    On the host each face is projected on its own (one BLAS product per face), so a face's
    projection does not depend on the batch it is in; on the GPU the batch is one matmul.

    Parameters
    ----------
    weights : (D, K) float64
    hog : (N, Dh) float
    geometry : (N, D - Dh) float
        On the device of ``weights``.

    Returns
    -------
    (N, K) float64
    """
    dh = hog.shape[-1]
    wh, wg = weights[:dh], weights[dh:]
    if isinstance(weights, np.ndarray):
        out = np.empty((hog.shape[0], weights.shape[1]))
        for i in range(hog.shape[0]):
            out[i] = np.asarray(hog[i], np.float64) @ wh + np.asarray(geometry[i], np.float64) @ wg
        return out
    return hog.astype(np.float64) @ wh + geometry.astype(np.float64) @ wg


def decision_values(models: StackedAUModels, projections: np.ndarray, median_projection: np.ndarray) -> np.ndarray:
    """Raw model outputs from projections and the projection of the person's median.

    Parameters
    ----------
    models : StackedAUModels
    projections : (N, K) or (K,) float64
    median_projection : (K,) or (N, K) float64
        ``[hog_median, geometry_median] @ weights`` (of each face's person).

    Returns
    -------
    (N, K) or (K,) float64
        Intensities (unclipped) in ``[..., :num_reg]``, SVM decision values after.
    """
    return projections + models.offset - _xp(median_projection).where(models.dynamic, median_projection, 0.0)


def presence(models: StackedAUModels, decisions: np.ndarray) -> np.ndarray:
    """SVM outputs (``pos`` where the decision value is > 0, else ``neg``) of ``decisions[..., num_reg:]``."""
    d = decisions[..., models.num_reg:]
    return _xp(d).where(d > 0, models.cls_pos, models.cls_neg)


def _xp(a):
    """Array module of ``a``: NumPy, or its device arrays' module (CuPy, or the emulated backend's)."""
    return np if isinstance(a, np.ndarray) else sys.modules[type(a).__module__]
