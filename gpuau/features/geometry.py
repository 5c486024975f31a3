"""Geometry features of the AU predictors: the non-rigid PDM shape offset and its parameters.

Port of the ``geom_descriptor_frame`` construction in ``FaceAnalyser::AddNextFrame`` (FaceAnalyser.cpp).
"""
from __future__ import annotations

import numpy as np

from gpuau.cpu.geometry import geometry_rows

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
    geometry_rows(np.ascontiguousarray(princ_comp, np.float32), p.reshape(-1, p.shape[-1]),
                  out.reshape(-1, out.shape[-1]))
    return out
