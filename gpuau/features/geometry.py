"""Geometry features of the AU predictors: the non-rigid PDM shape offset and its parameters.

Port of the ``geom_descriptor_frame`` construction in ``FaceAnalyser::AddNextFrame`` (FaceAnalyser.cpp).
"""
from __future__ import annotations

import numba as nb
import numpy as np

import gpuau.cpu  # noqa: F401  (before the kernels below: the folder of Numba's cache)

GEOMETRY_SIZE = 238
"""204 shape offsets (68 x, 68 y, 68 z) + 34 local parameters."""


def geometry_descriptor(princ_comp: np.ndarray, params_local: np.ndarray) -> np.ndarray:
    """``[princ_comp @ p_local, p_local]`` in float64.

    Parameters
    ----------
    princ_comp : (204, 34) float32
        PDM principal components.
    params_local : (34,) or (N, 34) float
        Local PDM parameters (zeros for frames where tracking failed).

    Returns
    -------
    (238,) or (N, 238) float64
    """
    p = np.asarray(params_local, np.float32)
    out = np.empty(p.shape[:-1] + (princ_comp.shape[0] + p.shape[-1],))
    _geometry(np.ascontiguousarray(princ_comp, np.float32), p.reshape(-1, p.shape[-1]), out.reshape(-1, out.shape[-1]))
    return out


@nb.njit(cache=True, nogil=True)
def _geometry(pc, p, out):
    # float64 sums mode by mode from 0.0, so a face's result does not depend on the batch it is in (BLAS would)
    rows, modes = pc.shape
    for n in range(p.shape[0]):
        for r in range(rows):
            acc = 0.0
            for k in range(modes):
                acc += np.float64(p[n, k]) * np.float64(pc[r, k])
            out[n, r] = acc
        for k in range(modes):
            out[n, rows + k] = p[n, k]
